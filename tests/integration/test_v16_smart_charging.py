"""OCPP 1.6 Smart Charging profile against the test CSMS, OCTT-style (1.6 OCTT test case
ids TC_056 .. TC_082): what the CSMS receives (answers, MeterValues with
Current.Offered/Power.Offered), what the pilot offers and what the simulated EV draws,
what the profile store keeps.

The agent runs on the wall clock (run_agent has no clock to inject), so schedules are
anchored on the current second and a period boundary is placed two to three seconds
ahead; the tests await MeterValues and the agent's state, never sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.iec61851 import duty_percent_for_current
from agent.ocpp.v16.mapping import parse_timestamp, timestamp
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation, until

HARDWARE_A = 32.0  # the simulated EVSE's maximum (config default)
VOLTS = 230.0
OFFERED = "Current.Offered,Power.Offered,Current.Import"


def profile(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]] | list[tuple[int, float, int]],
    *,
    kind: str = "Absolute",
    stack_level: int = 0,
    unit: str = "A",
    start: datetime | None = None,
    duration_s: int | None = None,
    transaction_id: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A 1.6 ChargingProfile payload (camelCase, as on the wire)."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": p[0], "limit": p[1], **({"numberPhases": p[2]} if len(p) > 2 else {})}
            for p in periods
        ],
    }
    if start is not None:
        schedule["startSchedule"] = timestamp(start)
    if duration_s is not None:
        schedule["duration"] = duration_s
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **extra,
    }
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


def this_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def set_profile(csms: Csms, connector: int, body: dict[str, Any]) -> str:
    answer = await csms.call(
        CP_ID, "SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body}
    )
    status: str = answer["status"]
    return status


async def composite(
    csms: Csms, connector: int, duration_s: int, unit: str | None = None
) -> dict[str, Any]:
    request: dict[str, Any] = {"connectorId": connector, "duration": duration_s}
    if unit is not None:
        request["chargingRateUnit"] = unit
    return await csms.call(CP_ID, "GetCompositeSchedule", request)


def limits(answer: dict[str, Any]) -> list[tuple[int, float]]:
    """(startPeriod, limit) of a GetCompositeSchedule.conf."""
    return [
        (p["startPeriod"], float(p["limit"]))
        for p in answer["chargingSchedule"]["chargingSchedulePeriod"]
    ]


def sampled(payload: dict[str, Any], measurand: str) -> float | None:
    """The first value of `measurand` in a MeterValues.req, None if absent."""
    for meter_value in payload["meterValue"]:
        for value in meter_value["sampledValue"]:
            if value.get("measurand") == measurand:
                return float(value["value"])
    return None


def offering(amps: float) -> Callable[[dict[str, Any]], bool]:
    """A MeterValues filter: Current.Offered is `amps`."""
    return lambda p: sampled(p, "Current.Offered") == amps


async def report_offered(csms: Csms) -> None:
    answer = await csms.call(
        CP_ID, "ChangeConfiguration", {"key": "MeterValuesSampledData", "value": OFFERED}
    )
    assert answer == {"status": "Accepted"}


async def charging(csms: Csms, station: RunningStation) -> int:
    """Plug, tap, await Charging; return the CSMS's transactionId once the agent has it."""
    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    agent = station.agent
    evse = agent.station.evses[1]

    def csms_id() -> str | None:
        return None if evse.tx is None else agent.store.get_transaction(evse.tx.local_id).csms_tx_id

    await until(agent, lambda: csms_id() is not None)
    return int(csms_id() or 0)


async def pilot_offers(station: RunningStation, amps: float) -> None:
    """Await the pilot's PWM offering `amps` (re-checked whenever the agent changes)."""
    plant = station.agent.hardware[1].plant
    await until(station.agent, lambda: plant.duty_percent == duty_percent_for_current(amps))


def ev_draws_within(station: RunningStation, amps: float) -> bool:
    """Whether the simulated EV draws current, at most `amps` (to the PWM's 0.01 % duty)."""
    draw: float = max(station.agent.hardware[1].plant.current_a)
    return 0 < draw <= amps + 0.01


# -- configuration (section 9.4) ----------------------------------------------------------


async def test_smart_charging_keys_are_reported_read_only(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(CP_ID, "GetConfiguration", {})
    keys = {k["key"]: k for k in answer["configurationKey"]}
    assert "SmartCharging" in keys["SupportedFeatureProfiles"]["value"].split(",")
    assert keys["ChargingScheduleAllowedChargingRateUnit"]["value"] == "Current,Power"
    for name in (
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
        "ChargingScheduleAllowedChargingRateUnit",
    ):
        assert keys[name]["readonly"] is True
        change = {"key": name, "value": "3"}
        assert await csms.call(CP_ID, "ChangeConfiguration", change) == {"status": "Rejected"}


# -- TC_056 .. TC_058: SetChargingProfile ---------------------------------------------------


async def test_tc_056_tx_default_profile_limits_every_new_transaction(
    csms: Csms, station: RunningStation
) -> None:
    await report_offered(csms)
    body = profile(1, "TxDefaultProfile", [(0, 10.0)], start=this_second() - timedelta(minutes=1))
    assert await set_profile(csms, 0, body) == "Accepted"

    tx_id = await charging(csms, station)
    meter = await csms.wait_for(
        "MeterValues", where=lambda p: sampled(p, "Current.Offered") is not None
    )
    await pilot_offers(station, 10.0)

    assert sampled(meter, "Current.Offered") == 10.0  # from the first sample on
    assert sampled(meter, "Power.Offered") == 10.0 * VOLTS * 3
    assert ev_draws_within(station, 10.0)
    assert meter["transactionId"] == tx_id
    assert station.agent.profiles.get(1) is not None  # a default outlives transactions


async def test_tc_056_a_connector_default_overrides_the_station_default(
    csms: Csms, station: RunningStation
) -> None:
    begin = this_second() - timedelta(minutes=1)
    assert (
        await set_profile(csms, 0, profile(1, "TxDefaultProfile", [(0, 20.0)], start=begin))
        == "Accepted"
    )
    assert (
        await set_profile(csms, 1, profile(2, "TxDefaultProfile", [(0, 12.0)], start=begin))
        == "Accepted"
    )
    await charging(csms, station)
    await pilot_offers(station, 12.0)
    assert limits(await composite(csms, 1, 60)) == [(0, 12.0)]


async def test_tc_057_tx_profile_lowers_the_running_transaction(
    csms: Csms, station: RunningStation
) -> None:
    await report_offered(csms)
    tx_id = await charging(csms, station)
    await csms.wait_for("MeterValues", where=offering(HARDWARE_A))
    body = profile(
        5,
        "TxProfile",
        [(0, 8.0)],
        kind="Relative",
        transaction_id=tx_id,
    )
    assert await set_profile(csms, 1, body) == "Accepted"

    meter = await csms.wait_for("MeterValues", where=offering(8.0))
    await pilot_offers(station, 8.0)
    assert sampled(meter, "Power.Offered") == 8.0 * VOLTS * 3
    assert ev_draws_within(station, 8.0)
    local_id = station.agent.station.evses[1].tx.local_id  # type: ignore[union-attr]
    stored = station.agent.profiles.get(5)
    assert stored is not None and stored.transaction_id == str(local_id)

    # The TxProfile ends with its transaction (section 3.13.1).
    station.tap("CARD")
    await csms.wait_for("StopTransaction")
    await until(station.agent, lambda: station.agent.profiles.get(5) is None)
    assert limits(await composite(csms, 1, 60)) == [(0, HARDWARE_A)]


async def test_tc_057_tx_profile_without_transaction_id_takes_the_running_one(
    csms: Csms, station: RunningStation
) -> None:
    await charging(csms, station)
    assert (
        await set_profile(csms, 1, profile(5, "TxProfile", [(0, 9.0)], kind="Relative"))
        == "Accepted"
    )
    await pilot_offers(station, 9.0)


async def test_tc_058_tx_profile_without_a_running_transaction_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    body = profile(5, "TxProfile", [(0, 8.0)], kind="Relative", transaction_id=1)
    assert await set_profile(csms, 1, body) == "Rejected"
    unnamed = profile(6, "TxProfile", [(0, 8.0)], kind="Relative")
    assert await set_profile(csms, 1, unnamed) == "Rejected"
    await charging(csms, station)
    wrong = profile(7, "TxProfile", [(0, 8.0)], kind="Relative", transaction_id=99)
    assert await set_profile(csms, 1, wrong) == "Rejected"
    on_station = profile(8, "TxProfile", [(0, 8.0)], kind="Relative", transaction_id=1)
    assert await set_profile(csms, 0, on_station) == "Rejected"
    assert station.agent.profiles.count() == 0
    assert station.agent.station.evses[1].limit_a == HARDWARE_A


# -- TC_059, TC_060: RemoteStartTransaction with a charging profile -------------------------


async def test_tc_059_remote_start_with_a_tx_profile_follows_it(
    csms: Csms, station: RunningStation
) -> None:
    station.plug()
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    request = {
        "connectorId": 1,
        "idTag": "APP",
        "chargingProfile": profile(7, "TxProfile", [(0, 10.0), (3600, 6.0)], kind="Relative"),
    }
    assert await csms.call(CP_ID, "RemoteStartTransaction", request) == {"status": "Accepted"}
    await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    await pilot_offers(station, 10.0)

    answer = await composite(csms, 1, 300, "A")
    assert answer["status"] == "Accepted" and answer["connectorId"] == 1
    assert answer["chargingSchedule"]["duration"] == 300
    assert answer["chargingSchedule"]["chargingRateUnit"] == "A"
    assert limits(answer) == [(0, 10.0)]
    started = parse_timestamp(answer["scheduleStart"])
    assert abs((started - datetime.now(UTC)).total_seconds()) < 5
    assert ev_draws_within(station, 10.0)
    local_id = station.agent.station.evses[1].tx.local_id  # type: ignore[union-attr]
    assert station.agent.profiles.get(7).transaction_id == str(local_id)  # type: ignore[union-attr]

    stop = {"transactionId": 1}  # the test CSMS's first
    assert await csms.call(CP_ID, "RemoteStopTransaction", stop) == {"status": "Accepted"}
    await csms.wait_for("StopTransaction")
    await until(station.agent, lambda: station.agent.profiles.count() == 0)


async def test_tc_059_a_remote_start_that_times_out_drops_its_profile(
    csms: Csms, station_factory: Callable[..., Any]
) -> None:
    running: RunningStation = await station_factory(csms, settings={"ConnectionTimeOut": 1})
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    request = {
        "connectorId": 1,
        "idTag": "APP",
        "chargingProfile": profile(7, "TxProfile", [(0, 10.0)], kind="Relative"),
    }
    assert await csms.call(CP_ID, "RemoteStartTransaction", request) == {"status": "Accepted"}
    smart = running.agent.station.smart
    assert smart.held_profile(1) is not None
    await until(running.agent, lambda: smart.held_profile(1) is None)
    # A later transaction started by a card is not limited by it.
    running.plug()
    running.tap("CARD")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    await pilot_offers(running, HARDWARE_A)
    assert running.agent.profiles.count() == 0


@pytest.mark.parametrize(
    "charging_profile",
    [
        profile(7, "TxDefaultProfile", [(0, 10.0)], kind="Relative"),
        profile(7, "ChargePointMaxProfile", [(0, 10.0)], start=this_second()),
        profile(7, "TxProfile", [(0, 10.0)], kind="Relative", transaction_id=1),
        profile(7, "TxProfile", [(0, 10.0)], kind="Relative", stack_level=99),
    ],
    ids=["TxDefaultProfile", "ChargePointMaxProfile", "with-transactionId", "invalid"],
)
async def test_tc_060_remote_start_with_a_wrong_profile_is_rejected(
    csms: Csms, station: RunningStation, charging_profile: dict[str, Any]
) -> None:
    station.plug()
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    request = {"connectorId": 1, "idTag": "APP", "chargingProfile": charging_profile}
    assert await csms.call(CP_ID, "RemoteStartTransaction", request) == {"status": "Rejected"}
    evse = station.agent.station.evses[1]
    assert not evse.authorizing and evse.tx is None and evse.token is None
    assert station.agent.station.smart.held_profile(1) is None
    assert station.agent.profiles.count() == 0
    assert csms.calls("StartTransaction") == []


# -- TC_066: GetCompositeSchedule -----------------------------------------------------------


async def test_tc_066_get_composite_schedule_merges_the_purposes(
    csms: Csms, station: RunningStation
) -> None:
    tx_id = await charging(csms, station)
    t0 = this_second()
    max_profile = profile(1, "ChargePointMaxProfile", [(0, 20.0)], start=t0, duration_s=86400)
    default = profile(
        2, "TxDefaultProfile", [(0, 6.0), (100, 8.0), (200, 10.0)], start=t0, duration_s=400
    )
    tx = profile(
        3,
        "TxProfile",
        [(0, 7.0), (50, 25.0)],
        start=t0,
        duration_s=150,
        stack_level=1,
        transaction_id=tx_id,
    )
    assert await set_profile(csms, 0, max_profile) == "Accepted"
    assert await set_profile(csms, 1, default) == "Accepted"
    assert await set_profile(csms, 1, tx) == "Accepted"

    amps = await composite(csms, 1, 400, "A")
    shift = int((parse_timestamp(amps["scheduleStart"]) - t0).total_seconds())
    expected = [(0, 7.0), (50, 20.0), (150, 8.0), (200, 10.0), (400, 20.0)]
    wanted = _shifted(expected, shift, 400)
    assert limits(amps) == wanted
    assert amps["scheduleStart"] == amps["chargingSchedule"]["startSchedule"]

    watts = await composite(csms, 1, 400, "W")
    assert limits(watts) == [(s, limit * VOLTS * 3) for s, limit in wanted]
    assert watts["chargingSchedule"]["chargingRateUnit"] == "W"
    # Connector 0: what the station as a whole may draw (one EVSE: the same).
    assert limits(await composite(csms, 0, 400, "A"))[: len(wanted)] == wanted
    assert await composite(csms, 2, 400) == {"status": "Rejected"}


def _shifted(
    expected: list[tuple[int, float]], shift: int, duration_s: int
) -> list[tuple[int, float]]:
    """`expected` (offsets from t0) seen from a composite starting `shift` s after t0."""
    seen: list[tuple[int, float]] = []
    for index, (offset, limit) in enumerate(expected):
        end = expected[index + 1][0] if index + 1 < len(expected) else None
        if end is not None and end <= shift:
            continue
        start = max(0, offset - shift)
        if start < duration_s:
            seen.append((start, limit))
    return seen


async def test_tc_066_connector_0_reports_the_station_total(
    csms: Csms, station_factory: Callable[..., Any]
) -> None:
    await station_factory(csms, evses=2)
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 2)
    t0 = this_second() - timedelta(seconds=10)
    assert (
        await set_profile(csms, 1, profile(1, "TxDefaultProfile", [(0, 10.0)], start=t0))
        == "Accepted"
    )
    assert limits(await composite(csms, 0, 60)) == [(0, 10.0 + HARDWARE_A)]
    assert (
        await set_profile(csms, 0, profile(2, "ChargePointMaxProfile", [(0, 16.0)], start=t0))
        == "Accepted"
    )
    assert limits(await composite(csms, 0, 60)) == [(0, 16.0)]
    assert limits(await composite(csms, 2, 60)) == [(0, 16.0)]


# -- TC_067: ClearChargingProfile -----------------------------------------------------------


async def test_tc_067_clear_by_id_by_criteria_and_all(csms: Csms, station: RunningStation) -> None:
    t0 = this_second() - timedelta(seconds=10)
    assert (
        await set_profile(csms, 0, profile(1, "ChargePointMaxProfile", [(0, 20.0)], start=t0))
        == "Accepted"
    )
    assert (
        await set_profile(
            csms, 1, profile(2, "TxDefaultProfile", [(0, 10.0)], start=t0, stack_level=1)
        )
        == "Accepted"
    )
    assert (
        await set_profile(
            csms, 0, profile(3, "TxDefaultProfile", [(0, 8.0)], start=t0, stack_level=2)
        )
        == "Accepted"
    )
    assert limits(await composite(csms, 1, 60)) == [(0, 8.0)]

    clear = "ClearChargingProfile"
    assert await csms.call(CP_ID, clear, {"id": 3}) == {"status": "Accepted"}
    assert limits(await composite(csms, 1, 60)) == [(0, 10.0)]
    by_criteria = {"connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}
    assert await csms.call(CP_ID, clear, by_criteria) == {"status": "Accepted"}
    assert limits(await composite(csms, 1, 60)) == [(0, 20.0)]
    assert await csms.call(CP_ID, clear, {"id": 3}) == {"status": "Unknown"}
    assert await csms.call(CP_ID, clear, {"connectorId": 1}) == {"status": "Unknown"}
    assert await csms.call(CP_ID, clear, {}) == {"status": "Accepted"}
    assert limits(await composite(csms, 1, 60)) == [(0, HARDWARE_A)]
    assert station.agent.profiles.count() == 0


# -- TC_072: stacking -----------------------------------------------------------------------


async def test_tc_072_stacked_tx_default_profiles_fall_back_when_the_higher_ends(
    csms: Csms, station: RunningStation
) -> None:
    t0 = this_second()
    low = profile(
        1, "TxDefaultProfile", [(0, 6.0), (100, 8.0), (200, 10.0)], start=t0, duration_s=400
    )
    high = profile(
        2, "TxDefaultProfile", [(0, 10.0), (100, 6.0)], start=t0, duration_s=150, stack_level=1
    )
    assert await set_profile(csms, 1, low) == "Accepted"
    assert await set_profile(csms, 1, high) == "Accepted"
    answer = await composite(csms, 1, 350, "A")
    shift = int((parse_timestamp(answer["scheduleStart"]) - t0).total_seconds())
    expected = [(0, 10.0), (100, 6.0), (150, 8.0), (200, 10.0)]
    assert limits(answer) == _shifted(expected, shift, 350)


# -- TC_082: ChargePointMaxProfile ----------------------------------------------------------


async def test_tc_082_charge_point_max_profile_limits_the_station(
    csms: Csms, station: RunningStation
) -> None:
    await report_offered(csms)
    await charging(csms, station)
    # The EV draws what it is offered before the profile comes: see
    # test_tc_082_a_station_max_set_as_charging_begins_is_not_stuck_at_6_a otherwise.
    await csms.wait_for(
        "MeterValues", where=lambda p: (sampled(p, "Current.Import") or 0) > HARDWARE_A - 0.1
    )
    t0 = this_second() - timedelta(seconds=10)
    on_connector = profile(1, "ChargePointMaxProfile", [(0, 10.0)], start=t0)
    assert await set_profile(csms, 1, on_connector) == "Rejected"
    assert station.agent.profiles.count() == 0  # only on connector 0 (section 3.13.1)
    body = profile(1, "ChargePointMaxProfile", [(0, 10.0)], start=t0)
    assert await set_profile(csms, 0, body) == "Accepted"
    await csms.wait_for("MeterValues", where=offering(10.0))
    await pilot_offers(station, 10.0)
    assert ev_draws_within(station, 10.0)
    assert limits(await composite(csms, 0, 60)) == [(0, 10.0)]


# -- bad input: Rejected, nothing installed, nothing replaced --------------------------------

_T0 = datetime(2025, 1, 1, tzinfo=UTC)
BAD_PROFILES = {
    "periods-out-of-order": profile(1, "TxDefaultProfile", [(0, 6.0), (60, 8.0), (30, 10.0)]),
    "first-period-not-at-0": profile(1, "TxDefaultProfile", [(10, 6.0)]),
    "too-many-periods": profile(1, "TxDefaultProfile", [(60 * i, 6.0 + i) for i in range(25)]),
    "stack-level-above-maximum": profile(1, "TxDefaultProfile", [(0, 6.0)], stack_level=9),
    "valid-to-before-valid-from": profile(
        1,
        "TxDefaultProfile",
        [(0, 6.0)],
        validFrom=timestamp(_T0 + timedelta(days=2)),
        validTo=timestamp(_T0 + timedelta(days=1)),
    ),
    "recurring-without-start": profile(
        1, "TxDefaultProfile", [(0, 6.0)], kind="Recurring", recurrencyKind="Daily"
    ),
    "four-phases": profile(1, "TxDefaultProfile", [(0, 6.0, 4)], kind="Relative"),
    "charge-point-max-on-a-connector": profile(1, "ChargePointMaxProfile", [(0, 6.0)]),
}


@pytest.mark.parametrize("name", sorted(BAD_PROFILES))
async def test_a_bad_profile_is_rejected_and_the_installed_one_stays(
    csms: Csms, station: RunningStation, name: str
) -> None:
    # (An unsupported unit needs a station allowing one unit only: the unit tests.)
    good = profile(1, "TxDefaultProfile", [(0, 12.0)], kind="Relative")
    assert await set_profile(csms, 1, good) == "Accepted"
    before = station.agent.profiles.profiles()

    assert await set_profile(csms, 1, BAD_PROFILES[name]) == "Rejected"
    assert station.agent.profiles.profiles() == before  # id 1 was not replaced
    assert limits(await composite(csms, 1, 60)) == [(0, 12.0)]


# -- the loop: period boundaries, persistence ------------------------------------------------


async def test_a_profile_changes_the_pilot_at_its_period_boundary(
    csms: Csms, station: RunningStation
) -> None:
    await report_offered(csms)
    tx_id = await charging(csms, station)
    t0 = this_second()
    boundary = t0 + timedelta(seconds=4)
    body = profile(4, "TxProfile", [(0, 16.0), (4, 8.0)], start=t0, transaction_id=tx_id)
    assert await set_profile(csms, 1, body) == "Accepted"
    await pilot_offers(station, 16.0)

    after = await csms.wait_for("MeterValues", where=offering(8.0))
    await pilot_offers(station, 8.0)
    assert ev_draws_within(station, 8.0)
    assert _sampled_at(after) >= boundary
    for meter in csms.calls("MeterValues"):
        offered, at = sampled(meter, "Current.Offered"), _sampled_at(meter)
        if at < boundary:
            assert offered in (HARDWARE_A, 16.0), (at, offered)
        elif at >= boundary + timedelta(seconds=0.5):
            assert offered == 8.0, (at, offered)


def _sampled_at(meter: dict[str, Any]) -> datetime:
    return parse_timestamp(meter["meterValue"][0]["timestamp"])


async def test_profiles_survive_a_reset(csms: Csms, station: RunningStation) -> None:
    t0 = this_second() - timedelta(seconds=10)
    body = profile(1, "TxDefaultProfile", [(0, 10.0)], start=t0)
    assert await set_profile(csms, 1, body) == "Accepted"
    assert await csms.call(CP_ID, "Reset", {"type": "Soft"}) == {"status": "Accepted"}
    await station.wait_agent(2)
    await csms.wait_for("BootNotification", count=2)
    await csms.wait_for("StatusNotification", count=2, where=lambda p: p["connectorId"] == 1)

    assert limits(await composite(csms, 1, 60)) == [(0, 10.0)]
    await charging(csms, station)
    await pilot_offers(station, 10.0)


async def test_tc_082_a_station_max_set_as_charging_begins_is_not_stuck_at_6_a(
    csms: Csms, station_factory: Callable[..., Any]
) -> None:
    running: RunningStation = await station_factory(csms, settings={"MeterValueSampleInterval": 2})
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    await charging(csms, running)  # the meter last read 0 A, at the transaction's start
    t0 = this_second() - timedelta(seconds=10)
    body = profile(1, "ChargePointMaxProfile", [(0, 10.0)], start=t0)
    assert await set_profile(csms, 0, body) == "Accepted"
    evse = running.agent.station.evses[1]
    # The EV takes all it is offered: its share must reach the station's 10 A.
    await until(running.agent, lambda: evse.limit_a == 10.0, timeout_s=5)
