"""OCPP 1.6 Smart Charging payloads (agent.ocpp.v16.smart_charging): the wire's
ChargingProfile to the core model, the composite schedule back to the wire (checked
against the official GetCompositeSchedule.conf schema), the Smart Charging keys, the
Power.Offered measurand and 1.6 timestamps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
import pytest

from agent.core.composite import CompositePeriod, CompositeSchedule
from agent.core.profiles import ProfileKind, ProfilePurpose, RateUnit, Recurrence
from agent.core.station import Station
from agent.ocpp.dialects import OCPP16
from agent.ocpp.v16.config_keys import BY_NAME, ConfigurationKeys, normalise
from agent.ocpp.v16.mapping import offered_power_w, parse_timestamp, sampled_values, timestamp
from agent.ocpp.v16.smart_charging import (
    Ocpp16SmartCharging,
    WirePeriod,
    allowed_units,
    capped_periods,
    composite_payload,
    profile_from_wire,
    station_total,
)
from agent.store import Store
from agent.store.profiles import ProfileStore
from drivers.types import MeterSample
from tests.fakes import FakeClock

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2025, 3, 1, 9, 30, 15, 250000, tzinfo=UTC)


def wire(
    purpose: str = "TxDefaultProfile", kind: str = "Absolute", **fields: Any
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
    }
    schedule.update(fields.pop("schedule", {}))
    return {
        "chargingProfileId": 3,
        "stackLevel": 2,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **fields,
    }


def to_model(data: dict[str, Any], evse_id: int = 1, tx: str | None = None) -> Any:
    return profile_from_wire(data, evse_id=evse_id, transaction_id=tx, received_at=RECEIVED)


# -- the wire's ChargingProfile -> the core model ---------------------------------------------


def test_every_field_of_a_recurring_profile_is_mapped() -> None:
    data = wire(
        "TxDefaultProfile",
        "Recurring",
        recurrencyKind="Weekly",
        validFrom="2025-03-01T00:00:00Z",
        validTo="2025-04-01T02:00:00+02:00",
        schedule={
            "startSchedule": "2025-03-01T08:00:00.000Z",
            "duration": 3600,
            "chargingRateUnit": "W",
            "minChargingRate": 1380.5,
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000},
                {"startPeriod": 1800, "limit": 3680.5, "numberPhases": 1},
            ],
        },
    )
    profile = to_model(data, evse_id=2)
    assert (profile.profile_id, profile.evse_id, profile.stack_level) == (3, 2, 2)
    assert profile.purpose is ProfilePurpose.TX_DEFAULT
    assert profile.kind is ProfileKind.RECURRING
    assert profile.recurrence is Recurrence.WEEKLY
    assert profile.valid_from == datetime(2025, 3, 1, tzinfo=UTC)
    assert profile.valid_to == datetime(2025, 4, 1, tzinfo=UTC)
    schedule = profile.schedule
    assert schedule.rate_unit is RateUnit.WATT
    assert schedule.start_schedule == T0
    assert schedule.duration_s == 3600
    assert schedule.min_charging_rate == 1380.5
    assert [(p.start_s, p.limit, p.number_phases) for p in schedule.periods] == [
        (0, 11000.0, None),
        (1800, 3680.5, 1),
    ]
    assert profile.transaction_id is None


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        ("ChargePointMaxProfile", ProfilePurpose.STATION_MAX),
        ("TxDefaultProfile", ProfilePurpose.TX_DEFAULT),
        ("TxProfile", ProfilePurpose.TX),
    ],
)
def test_purposes_map_to_the_core_purposes(purpose: str, expected: ProfilePurpose) -> None:
    data = wire(purpose, "Relative", transactionId=42)
    profile = to_model(data, tx="7")
    assert profile.purpose is expected
    # Only a TxProfile names a transaction: the local id the caller gives, never the wire's.
    assert profile.transaction_id == ("7" if expected is ProfilePurpose.TX else None)


def test_absolute_without_start_schedule_is_relative_to_the_start_of_charging() -> None:
    # Section 7.13, startSchedule: "If absent the schedule will be relative to start of charging."
    for purpose in ("TxDefaultProfile", "TxProfile"):
        profile = to_model(wire(purpose, "Absolute"), tx="1")
        assert profile.kind is ProfileKind.RELATIVE
        assert profile.schedule.start_schedule is None


def test_a_charge_point_max_profile_without_start_schedule_starts_when_received() -> None:
    profile = to_model(wire("ChargePointMaxProfile", "Absolute"), evse_id=0)
    assert profile.kind is ProfileKind.ABSOLUTE
    assert profile.schedule.start_schedule == RECEIVED.replace(microsecond=0)


def test_a_relative_profile_ignores_a_start_schedule() -> None:
    profile = to_model(wire(kind="Relative", schedule={"startSchedule": "2025-03-01T08:00:00Z"}))
    assert profile.kind is ProfileKind.RELATIVE
    assert profile.schedule.start_schedule is None


def test_recurrency_kind_matters_only_for_recurring_profiles() -> None:
    data = wire(
        kind="Absolute", recurrencyKind="Daily", schedule={"startSchedule": "2025-03-01T08:00:00Z"}
    )
    assert to_model(data).recurrence is None
    daily = wire(
        kind="Recurring", recurrencyKind="Daily", schedule={"startSchedule": "2025-03-01T08:00:00Z"}
    )
    assert to_model(daily).recurrence is Recurrence.DAILY


def test_a_date_that_is_not_one_raises_value_error() -> None:
    with pytest.raises(ValueError):
        to_model(wire(validFrom="yesterday"))


def test_allowed_units_read_the_key_quantities() -> None:
    assert allowed_units(["Current", "Power"]) == {RateUnit.AMPERE, RateUnit.WATT}
    assert allowed_units(["Current"]) == {RateUnit.AMPERE}
    assert allowed_units(["Power", "Energy"]) == {RateUnit.WATT}


# -- composite -> the wire ------------------------------------------------------------------


def schedule(
    periods: list[tuple[int, float | None, int | None]], unit: RateUnit = RateUnit.AMPERE
) -> CompositeSchedule:
    return CompositeSchedule(
        evse_id=1,
        start=T0,
        duration_s=600,
        rate_unit=unit,
        periods=tuple(CompositePeriod(*p) for p in periods),
    )


def test_the_hardware_maximum_bounds_and_fills_a_connector_composite() -> None:
    capped = capped_periods(
        schedule([(0, None, None), (100, 40.0, 3), (200, 10.0, 1)]), 32.0, 3, 230.0
    )
    assert capped == [WirePeriod(0, 32.0), WirePeriod(100, 32.0, 3), WirePeriod(200, 10.0, 1)]


def test_the_hardware_maximum_is_converted_to_watts_with_the_periods_phases() -> None:
    capped = capped_periods(
        schedule([(0, None, None), (60, 20000.0, 1), (120, 5000.0, 3)], RateUnit.WATT),
        16.0,
        3,
        230.0,
    )
    assert capped == [
        WirePeriod(0, 16.0 * 230.0 * 3),  # no profile: on the EVSE's phases
        WirePeriod(60, 16.0 * 230.0, 1),  # one phase can carry 3680 W at most
        WirePeriod(120, 5000.0, 3),
    ]


def test_connector_0_sums_the_connectors_under_the_station_maximum() -> None:
    evse_1 = [WirePeriod(0, 10.0), WirePeriod(300, 32.0)]
    evse_2 = [WirePeriod(0, 16.0), WirePeriod(100, 6.0, 1)]
    station = schedule([(0, None, None), (200, 20.0, 3)])
    assert station_total([evse_1, evse_2], station) == [
        WirePeriod(0, 26.0),
        WirePeriod(100, 16.0),
        WirePeriod(200, 16.0),
        WirePeriod(300, 20.0, 3),  # 38 A would exceed the station's 20 A
    ]


@pytest.fixture(scope="module")
def composite_conf_schema() -> Any:
    text = (SCHEMAS / "GetCompositeScheduleResponse.json").read_text(encoding="utf-8")
    return fastjsonschema.compile(json.loads(text))


def test_the_composite_payload_is_rounded_down_merged_and_schema_valid(
    composite_conf_schema: Any,
) -> None:
    periods = [
        WirePeriod(0, 13.0434),
        WirePeriod(30, 13.06),  # the same on the wire: merged
        WirePeriod(60, 6900.0, 3),
        WirePeriod(90, 7.99999999),
    ]
    start = datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC)
    payload = composite_payload(1, start, 120, RateUnit.AMPERE, periods)
    assert payload == {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": "2025-03-01T08:00:05.000Z",
        "chargingSchedule": {
            "duration": 120,
            "startSchedule": "2025-03-01T08:00:05.000Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 13.0},
                {"startPeriod": 60, "limit": 6900.0, "numberPhases": 3},
                {"startPeriod": 90, "limit": 8.0},
            ],
        },
    }
    composite_conf_schema(payload)
    assert OCPP16.check("GetCompositeSchedule", payload, response=True) is None


# -- the handlers on a station without EVSEs (the station's own profiles) -------------------


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as opened:
        yield opened


def smart_charging(store: Store, *, with_profiles: bool = True, **keys: str) -> Ocpp16SmartCharging:
    station = Station(
        clock=FakeClock(T0),
        journal=store,
        settings=store,
        profiles=ProfileStore(store) if with_profiles else None,
    )
    return Ocpp16SmartCharging(
        station=station,
        store=store,
        keys=ConfigurationKeys(store, install_defaults=keys, fixed={}),
        connectors={},
    )


def station_max(unit: str, limit: float) -> dict[str, Any]:
    return wire(
        "ChargePointMaxProfile",
        schedule={
            "chargingRateUnit": unit,
            "startSchedule": "2025-03-01T08:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    )


async def test_a_unit_the_station_does_not_allow_is_rejected_and_nothing_installed(
    store: Store,
) -> None:
    smart = smart_charging(store, ChargingScheduleAllowedChargingRateUnit="Current")
    request = {"connectorId": 0, "csChargingProfiles": station_max("W", 11000)}
    assert await smart.on_set_charging_profile(request) == {"status": "Rejected"}
    assert smart.profiles is not None and smart.profiles.count() == 0
    request = {"connectorId": 0, "csChargingProfiles": station_max("A", 16)}
    assert await smart.on_set_charging_profile(request) == {"status": "Accepted"}
    assert smart.station.smart.site_capacity_a == 16.0  # the loop sees it at once


async def test_an_unknown_connector_is_rejected(store: Store) -> None:
    smart = smart_charging(store)
    request = {"connectorId": 3, "csChargingProfiles": wire()}
    assert await smart.on_set_charging_profile(request) == {"status": "Rejected"}
    composite = await smart.on_get_composite_schedule({"connectorId": 3, "duration": 60})
    assert composite == {"status": "Rejected"}


@pytest.mark.parametrize("duration_s", [0, 31 * 86_400 + 1])
async def test_a_composite_duration_out_of_range_is_rejected(store: Store, duration_s: int) -> None:
    smart = smart_charging(store)
    answer = await smart.on_get_composite_schedule({"connectorId": 0, "duration": duration_s})
    assert answer == {"status": "Rejected"}


async def test_without_a_profile_store_set_charging_profile_is_not_supported(store: Store) -> None:
    smart = smart_charging(store, with_profiles=False)
    request = {"connectorId": 0, "csChargingProfiles": station_max("A", 16)}
    assert await smart.on_set_charging_profile(request) == {"status": "NotSupported"}
    assert await smart.on_clear_charging_profile({}) == {"status": "Unknown"}


async def test_the_default_composite_unit_follows_the_allowed_units(store: Store) -> None:
    smart = smart_charging(store, ChargingScheduleAllowedChargingRateUnit="Power")
    request = {"connectorId": 0, "csChargingProfiles": station_max("W", 11040)}
    assert await smart.on_set_charging_profile(request) == {"status": "Accepted"}
    answer = await smart.on_get_composite_schedule({"connectorId": 0, "duration": 60})
    assert answer["chargingSchedule"]["chargingRateUnit"] == "W"


# -- keys, measurands, timestamps -------------------------------------------------------------


def test_the_allowed_rate_unit_key_takes_only_current_and_power() -> None:
    key = BY_NAME["ChargingScheduleAllowedChargingRateUnit"]
    assert normalise(key, "Power, Current") == "Power,Current"
    assert normalise(key, "Current,Energy") is None
    assert normalise(key, "") is None
    for name in ("ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods"):
        assert BY_NAME[name].readonly
    assert BY_NAME["MaxChargingProfilesInstalled"].readonly


def test_power_offered_is_the_offered_current_on_every_energized_phase() -> None:
    three = MeterSample(
        energy_import_wh=0, power_w=0, current_a=(0, 0, 0), voltage_v=(230, 231, 229)
    )
    one = MeterSample(energy_import_wh=0, power_w=0, current_a=(0, 0, 0), voltage_v=(230, 0, 0))
    blind = MeterSample(energy_import_wh=0, power_w=0, current_a=(0, 0, 0), voltage_v=(0, 0, 0))
    assert offered_power_w(three, 10.0) == 6900.0
    assert offered_power_w(one, 10.0) == 2300.0
    assert offered_power_w(blind, 10.0) == 6900.0  # no voltage reading: nominal, 3 phases
    (value,) = sampled_values(three, ["Power.Offered"], "Sample.Periodic", 16.0)
    assert value == {
        "value": "11040",
        "context": "Sample.Periodic",
        "measurand": "Power.Offered",
        "unit": "W",
    }


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-01T08:00:00Z",
        "2025-03-01T08:00:00.000Z",
        "2025-03-01T10:00:00+02:00",
        "2025-03-01T08:00:00",
    ],
)
def test_timestamps_parse_to_aware_utc(text: str) -> None:
    at = parse_timestamp(text)
    assert at == T0 and at.tzinfo is UTC
    assert parse_timestamp(timestamp(at)) == at


def test_a_timestamp_round_trips_in_other_zones() -> None:
    at = datetime(2025, 3, 1, 9, 0, 0, 123000, tzinfo=timezone(timedelta(hours=1)))
    assert parse_timestamp(timestamp(at)) == at
