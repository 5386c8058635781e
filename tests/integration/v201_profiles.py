"""Acting as a CSMS for OCPP 2.0.1 block K (smart charging) in integration tests.

Builders of ChargingProfileType payloads, the K requests with their follow-ups
(GetChargingProfiles awaits every ReportChargingProfiles of its requestId), readers of
composite schedules and of the offered current in TransactionEvents, and a recorder of
the PWM duties the board is given. Shared by test_v201_smart_charging.py and
test_v201_composite_and_limits.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.ocpp.v201.device_model import wire_time
from simulator.csms import Csms
from simulator.plant import PilotMode
from tests.integration.conftest import CP_ID
from tests.integration.v201_station import RunningStation201, value_of

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]
#: Meter values every second, with the offered current and power.
FAST_METER = {
    "SampledDataCtrlr/TxUpdatedInterval": "1",
    "SampledDataCtrlr/TxUpdatedMeasurands": "Energy.Active.Import.Register,Current.Offered,"
    "Power.Offered,Current.Import",
}


def at(offset_s: float = 0.0) -> str:
    """A wire dateTime `offset_s` from now."""
    return wire_time(datetime.now(UTC) + timedelta(seconds=offset_s))


def profile(
    profile_id: int,
    *periods: tuple[int, float],
    purpose: str = "TxDefaultProfile",
    kind: str = "Absolute",
    stack: int = 0,
    unit: str = "A",
    start: str | None = None,
    duration: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ChargingProfileType; periods as (startPeriod, limit); an Absolute or Recurring
    one starts now unless `start` says otherwise; its schedule id is 10 x the profile id."""
    schedule: dict[str, Any] = {
        "id": profile_id * 10,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if kind != "Relative":
        schedule["startSchedule"] = start or at()
    if duration is not None:
        schedule["duration"] = duration
    return {
        "id": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
        **extra,
    }


async def set_profile(csms: Csms, evse_id: int, wire: dict[str, Any]) -> dict[str, Any]:
    """SetChargingProfile; the answer."""
    return await csms.call(CP, "SetChargingProfile", {"evseId": evse_id, "chargingProfile": wire})


async def get_profiles(
    csms: Csms, request_id: int, evse_id: int | None = None, **criteria: Any
) -> list[dict[str, Any]]:
    """GetChargingProfiles; the ReportChargingProfiles that followed ([] for NoProfiles)."""
    payload: dict[str, Any] = {"requestId": request_id, "chargingProfile": criteria}
    if evse_id is not None:
        payload["evseId"] = evse_id
    answer = await csms.call(CP, "GetChargingProfiles", payload)
    if answer["status"] == "NoProfiles":
        return []
    assert answer["status"] == "Accepted", answer

    def last(report: dict[str, Any]) -> bool:
        return bool(report["requestId"] == request_id and not report["tbc"])

    await csms.wait_for("ReportChargingProfiles", where=last)
    return [r for r in csms.calls("ReportChargingProfiles") if r["requestId"] == request_id]


def reported_ids(reports: list[dict[str, Any]]) -> dict[int, list[int]]:
    """{evseId: [profile ids]} of ReportChargingProfiles requests."""
    return {r["evseId"]: [p["id"] for p in r["chargingProfile"]] for r in reports}


async def composite(csms: Csms, evse_id: int, duration: int, unit: str | None = None) -> Any:
    """GetCompositeSchedule; the answer."""
    payload: dict[str, Any] = {"evseId": evse_id, "duration": duration}
    if unit is not None:
        payload["chargingRateUnit"] = unit
    return await csms.call(CP, "GetCompositeSchedule", payload)


def periods_of(answer: dict[str, Any]) -> list[tuple[int, float]]:
    """(startPeriod, limit) of a composite schedule answer."""
    return [(p["startPeriod"], p["limit"]) for p in answer["schedule"]["chargingSchedulePeriod"]]


def close_to(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Same limits in order, each start within 2 s (the request is not sent at the
    instant the profiles' schedules start)."""
    return len(actual) == len(expected) and all(
        a_limit == e_limit and abs(a_start - e_start) <= 2
        for (a_start, a_limit), (e_start, e_limit) in zip(actual, expected, strict=True)
    )


def pwm_log(running: RunningStation201, evse_id: int = 1) -> list[float]:
    """Record every PWM duty the board sets on the EVSE's pilot from now on."""
    plant = running.agent.hardware[evse_id].plant
    duties: list[float] = []
    original = plant.set_pilot

    def recording(mode: PilotMode, duty_percent: float = 0.0) -> None:
        if mode is PilotMode.PWM:
            duties.append(duty_percent)
        original(mode, duty_percent)

    plant.set_pilot = recording
    return duties


def offered(event: dict[str, Any], measurand: str = "Current.Offered") -> float | None:
    """The value of one measurand in a TransactionEvent, if it has it."""
    for meter_value in event.get("meterValue", []):
        for value in meter_value["sampledValue"]:
            if value.get("measurand") == measurand:
                return float(value["value"])
    return None


def offering(limit_a: float) -> Callable[[dict[str, Any]], bool]:
    """A TransactionEvent filter: it reports `limit_a` offered."""
    return lambda e: offered(e) == limit_a


def is_started(event: dict[str, Any]) -> bool:
    """A TransactionEvent filter: the Started one."""
    return bool(event["eventType"] == "Started")


async def installed_count(csms: Csms) -> str:
    """SmartChargingCtrlr.Entries(ChargingProfiles) as the CSMS reads it."""
    return await value_of(csms, "SmartChargingCtrlr", "Entries", instance="ChargingProfiles")
