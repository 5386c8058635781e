"""OCPP 2.0.1 block K mapping: wire profiles to the core's model and back, composites on
the wire, the reasonCodes of refusals, external-limit significance, offered power, and the
SmartChargingCtrlr catalogue.

Every payload the mapping writes is checked against the official 2.0.1 schema.
"""

# Test names carry the OCPP 2.0.1 requirement ids as the spec writes them (K01_FR_22).
# ruff: noqa: N802

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.composite import CompositePeriod, CompositeSchedule
from agent.core.events import sample_payload
from agent.core.ports import SampleContext
from agent.core.profiles import ProfileKind, ProfilePurpose, RateUnit, RejectReason
from agent.ocpp.dialects import OCPP201
from agent.ocpp.v201 import metering
from agent.ocpp.v201.charging_limits import significant
from agent.ocpp.v201.device_model import wire_time
from agent.ocpp.v201.smart_charging import (
    REASON_CODES,
    ProfileMappingError,
    bounded,
    composite_to_wire,
    parse_time,
    profile_from_wire,
    profile_to_wire,
    rejected,
    station_composite,
)
from agent.ocpp.v201.variables import Mutability, station_variables
from drivers.types import MeterSample

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

#: The reasonCodes of OCPP 2.0.1 Part 2 Appendix 5 that block K answers use.
APPENDIX_5 = frozenset(
    {
        "DuplicateProfile",
        "InvalidProfile",
        "InvalidSchedule",
        "InvalidStackLevel",
        "InvalidValue",
        "MissingParam",
        "OutOfStorage",
        "TooManyElements",
        "TxNotFound",
        "UnknownEvse",
        "UnsupportedRateUnit",
    }
)


def validate(action: str, payload: dict[str, Any], *, response: bool) -> None:
    """Raise if `payload` violates the official 2.0.1 schema."""
    OCPP201.validator(action, response=response)(payload)


def wire_profile(**overrides: Any) -> dict[str, Any]:
    """A TxDefaultProfile as a CSMS sends it, with every optional field set."""
    wire: dict[str, Any] = {
        "id": 7,
        "stackLevel": 2,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Weekly",
        "validFrom": wire_time(T0),
        "validTo": wire_time(T0 + timedelta(days=30)),
        "chargingSchedule": [
            {
                "id": 70,
                "startSchedule": wire_time(T0),
                "duration": 3600,
                "chargingRateUnit": "W",
                "minChargingRate": 1380.5,
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
                    {"startPeriod": 900, "limit": 3680.0, "numberPhases": 1},
                    {"startPeriod": 1800, "limit": 7400.5},
                ],
            }
        ],
    }
    wire.update(overrides)
    return wire


def report(wire: dict[str, Any]) -> dict[str, Any]:
    """A ReportChargingProfilesRequest carrying one profile."""
    return {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [wire]}


# -- the wire to the core and back ---------------------------------------------------------


def test_profile_from_wire_takes_every_2_0_1_field() -> None:
    profile, schedule_id = profile_from_wire(1, wire_profile())
    assert schedule_id == 70
    assert profile.profile_id == 7 and profile.evse_id == 1 and profile.stack_level == 2
    assert profile.purpose is ProfilePurpose.TX_DEFAULT
    assert profile.kind is ProfileKind.RECURRING and profile.recurrence is not None
    assert profile.valid_from == T0 and profile.valid_to == T0 + timedelta(days=30)
    schedule = profile.schedule
    assert schedule.rate_unit is RateUnit.WATT and schedule.start_schedule == T0
    assert schedule.duration_s == 3600 and schedule.min_charging_rate == 1380.5
    assert [(p.start_s, p.limit, p.number_phases) for p in schedule.periods] == [
        (0, 11000.0, 3),
        (900, 3680.0, 1),
        (1800, 7400.5, None),
    ]


def test_profile_round_trips_to_the_wire_unchanged_and_schema_valid() -> None:
    wire = wire_profile()
    profile, schedule_id = profile_from_wire(1, wire)
    back = profile_to_wire(profile, schedule_id=schedule_id)
    assert back == wire
    validate("ReportChargingProfiles", report(back), response=False)


def test_tx_profile_transaction_id_is_mapped_both_ways() -> None:
    wire = wire_profile(chargingProfilePurpose="TxProfile", transactionId="ab12-7")
    profile, _ = profile_from_wire(1, wire, transaction_id=lambda text: text.split("-")[1])
    assert profile.transaction_id == "7"
    back = profile_to_wire(profile, schedule_id=70, transaction_id=lambda local: f"ab12-{local}")
    assert back["transactionId"] == "ab12-7"
    unknown = profile_to_wire(profile, schedule_id=70, transaction_id=lambda local: None)
    assert "transactionId" not in unknown


@given(
    kind=st.sampled_from(["Absolute", "Relative", "Recurring"]),
    purpose=st.sampled_from(["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"]),
    unit=st.sampled_from(["A", "W"]),
    starts=st.lists(st.integers(0, 86_399), min_size=1, max_size=24, unique=True),
    tenths=st.lists(st.integers(0, 100_000), min_size=24, max_size=24),
    phases=st.lists(st.sampled_from([None, 1, 2, 3]), min_size=24, max_size=24),
    stack=st.integers(0, 8),
    offset_s=st.integers(-(10**8), 10**8),
)
def test_any_schema_valid_profile_round_trips(
    kind: str,
    purpose: str,
    unit: str,
    starts: list[int],
    tenths: list[int],
    phases: list[int | None],
    stack: int,
    offset_s: int,
) -> None:
    periods: list[dict[str, Any]] = []
    for start_s, limit, number_phases in zip(sorted(starts), tenths, phases, strict=False):
        period: dict[str, Any] = {"startPeriod": start_s, "limit": limit / 10}
        if number_phases is not None:
            period["numberPhases"] = number_phases
        periods.append(period)
    schedule: dict[str, Any] = {
        "id": 3,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods,
    }
    if kind != "Relative":
        schedule["startSchedule"] = wire_time(T0 + timedelta(seconds=offset_s))
    wire: dict[str, Any] = {
        "id": 1,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
    }
    if kind == "Recurring":
        wire["recurrencyKind"] = "Daily"
    validate("SetChargingProfile", {"evseId": 1, "chargingProfile": wire}, response=False)
    profile, schedule_id = profile_from_wire(1, wire)
    assert profile_to_wire(profile, schedule_id=schedule_id) == wire


def test_limits_go_on_the_wire_with_one_decimal() -> None:
    wire = wire_profile()
    wire["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] = 10.04
    profile, _ = profile_from_wire(1, wire)
    back = profile_to_wire(profile, schedule_id=70)
    assert back["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 10.0


def test_K01_FR_22_external_constraints_cannot_be_set() -> None:
    with pytest.raises(ProfileMappingError) as raised:
        profile_from_wire(
            0, wire_profile(chargingProfilePurpose="ChargingStationExternalConstraints")
        )
    assert raised.value.reason_code == "InvalidValue"


def test_more_than_one_schedule_is_refused() -> None:
    wire = wire_profile()
    wire["chargingSchedule"] = wire["chargingSchedule"] * 2
    with pytest.raises(ProfileMappingError) as raised:
        profile_from_wire(1, wire)
    assert raised.value.reason_code == "TooManyElements"


def test_K01_FR_20_phase_to_use_is_refused_without_ac_phase_switching() -> None:
    wire = wire_profile()
    wire["chargingSchedule"][0]["chargingSchedulePeriod"][1]["phaseToUse"] = 2
    with pytest.raises(ProfileMappingError) as raised:
        profile_from_wire(1, wire)
    assert raised.value.reason_code == "InvalidSchedule"


def test_date_times_parse_to_aware_utc() -> None:
    assert parse_time("2025-03-01T12:00:00Z") == T0
    assert parse_time("2025-03-01T13:00:00+01:00") == T0
    assert parse_time("2025-03-01T12:00:00") == T0  # naive counts as UTC
    assert parse_time("2025-03-01T13:00:00+01:00").tzinfo == UTC
    with pytest.raises(ProfileMappingError) as raised:
        profile_from_wire(1, wire_profile(validFrom="yesterday"))
    assert raised.value.reason_code == "InvalidValue"


def test_every_reject_reason_has_an_appendix_5_reason_code() -> None:
    assert set(REASON_CODES) == set(RejectReason)
    assert set(REASON_CODES.values()) <= APPENDIX_5


def test_rejected_answer_is_schema_valid_and_truncates_its_detail() -> None:
    answer = rejected("InvalidSchedule", "x" * 600)
    assert len(answer["statusInfo"]["additionalInfo"]) == 512
    validate("SetChargingProfile", answer, response=True)
    assert rejected("TxNotFound") == {
        "status": "Rejected",
        "statusInfo": {"reasonCode": "TxNotFound"},
    }


# -- composite schedules ----------------------------------------------------------------------


def composite(
    *periods: tuple[int, float | None, int | None], evse_id: int = 1
) -> CompositeSchedule:
    return CompositeSchedule(
        evse_id=evse_id,
        start=T0,
        duration_s=600,
        rate_unit=RateUnit.AMPERE,
        periods=tuple(CompositePeriod(s, limit, phases) for s, limit, phases in periods),
    )


def test_composite_is_bounded_by_the_evse_maximum_which_fills_unlimited_periods() -> None:
    schedule = bounded(
        composite((0, None, None), (60, 10.0, 3), (120, 40.0, 3), (300, 8.06, 1)), 32.0, 3
    )
    wire = composite_to_wire(schedule)
    assert wire["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 32.0, "numberPhases": 3},
        {"startPeriod": 60, "limit": 10.0, "numberPhases": 3},
        {"startPeriod": 120, "limit": 32.0, "numberPhases": 3},  # above the EVSE's own maximum
        {"startPeriod": 300, "limit": 8.0, "numberPhases": 1},  # rounded down
    ]
    assert wire["scheduleStart"] == "2025-03-01T12:00:00.000Z"
    assert (wire["evseId"], wire["duration"], wire["chargingRateUnit"]) == (1, 600, "A")
    validate("GetCompositeSchedule", {"status": "Accepted", "schedule": wire}, response=True)


def test_bounded_composite_merges_neighbours_that_end_up_equal() -> None:
    schedule = bounded(composite((0, 40.0, 3), (60, None, None), (120, 16.0, 3)), 32.0, 3)
    assert [(p.start_s, p.limit) for p in schedule.periods] == [(0, 32.0), (120, 16.0)]
    with pytest.raises(ValueError):
        composite_to_wire(composite((0, None, None)))


def test_station_composite_sums_the_evses_under_the_station_maximum() -> None:
    one = bounded(composite((0, 10.0, 3), (60, None, None)), 32.0, 3)
    two = bounded(composite((0, None, None), evse_id=2), 16.0, 1)
    station = composite((0, None, None), (120, 40.0, 3), (300, None, None), evse_id=0)
    total = station_composite(station, [one, two])
    assert total.evse_id == 0
    assert [(p.start_s, p.limit, p.number_phases) for p in total.periods] == [
        (0, 26.0, 3),
        (60, 48.0, 3),
        (120, 40.0, 3),  # the ChargingStationMaxProfile
        (300, 48.0, 3),
    ]


# -- external limits, offered power, the catalogue ---------------------------------------------


@pytest.mark.parametrize(
    ("reported", "now", "percent", "expected"),
    [
        (10.0, 9.5, 10.0, False),
        (10.0, 8.9, 10.0, True),
        (10.0, 11.0, 10.0, False),  # exactly 10 %: not more than
        (10.0, 10.1, 0.0, True),
        (0.0, 6.0, 50.0, True),
        (0.0, 0.0, 0.0, False),
    ],
)
def test_K12_limit_change_significance(
    reported: float, now: float, percent: float, expected: bool
) -> None:
    assert significant(reported, now, percent) is expected


def test_power_offered_is_on_the_phases_the_supply_is_switched_to() -> None:
    sample = MeterSample(
        energy_import_wh=1000.0,
        power_w=1380.0,
        current_a=(6.0, 0.0, 0.0),
        voltage_v=(230.0, 230.0, 230.0),
    )
    payload = dict(sample_payload(sample, SampleContext.PERIODIC, T0, 6.0))
    measurands = [metering.CURRENT_OFFERED, metering.POWER_OFFERED]

    def values(*, offered_phases: int | None) -> list[float]:
        entries = metering.sampled_values(
            payload, measurands, "Sample.Periodic", phases=3, offered_phases=offered_phases
        )
        return [entry["value"] for entry in entries]

    assert values(offered_phases=None) == [6.0, 6.0 * 230 * 3]
    assert values(offered_phases=1) == [6.0, 6.0 * 230]
    payload["offered_phases"] = 3  # a sample that recorded its phases keeps them
    assert values(offered_phases=1) == [6.0, 6.0 * 230 * 3]


def test_smart_charging_ctrlr_variables_and_their_mutability() -> None:
    catalogue = station_variables([(1, [(1, "cType2")])], phase_switching=True)
    smart = {
        (d.variable.name, d.variable.instance): d
        for d in catalogue
        if d.component.name == "SmartChargingCtrlr"
    }
    read_write = {"Enabled", "LimitChangeSignificance", "NotifyChargingLimitWithSchedules"}
    for (name, _), definition in smart.items():
        mutability = definition.mutability[next(iter(definition.mutability))]
        expected = Mutability.READ_WRITE if name in read_write else Mutability.READ_ONLY
        assert mutability == expected, name
    assert set(smart) == {
        ("Available", None),
        ("Enabled", None),
        ("Entries", "ChargingProfiles"),
        ("LimitChangeSignificance", None),
        ("PeriodsPerSchedule", None),
        ("ProfileStackLevel", None),
        ("RateUnit", None),
        ("ExternalControlSignalsEnabled", None),
        ("NotifyChargingLimitWithSchedules", None),
        ("Phases3to1", None),
        ("ACPhaseSwitchingSupported", None),
    }
    assert smart[("Entries", "ChargingProfiles")].max_limit is not None
    assert smart[("Phases3to1", None)].default == "true"
    assert smart[("ACPhaseSwitchingSupported", None)].default == "false"
