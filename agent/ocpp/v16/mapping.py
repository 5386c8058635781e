"""OCPP 1.6 mapping tables: core vocabulary to and from the 1.6 wire.

Status, error codes, stop reasons, authorization status and measurands: every
translation between the neutral core and OCPP 1.6 is a table or a small function here,
so the adapter itself reads as behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from agent.core.events import SAMPLE_KEY, AuthStatus, sample_from_payload
from agent.core.ports import SampleContext, StopReason
from agent.core.reservations import ReserveResult
from agent.core.status import ConnectorStatus
from drivers.types import FaultCode, MeterSample

#: ChargePointErrorCode for each fault (OCPP 1.6 section 7.6).
ERROR_CODES: dict[FaultCode, str] = {
    FaultCode.GROUND_FAULT: "GroundFailure",
    FaultCode.RCD_TRIP: "GroundFailure",
    FaultCode.OVER_CURRENT: "OverCurrentFailure",
    FaultCode.OVER_VOLTAGE: "OverVoltage",
    FaultCode.UNDER_VOLTAGE: "UnderVoltage",
    FaultCode.OVER_TEMPERATURE: "HighTemperature",
    FaultCode.CONTACTOR_WELDED: "PowerSwitchFailure",
    FaultCode.CONTACTOR_STUCK_OPEN: "PowerSwitchFailure",
    FaultCode.PILOT_FAULT: "OtherError",
    FaultCode.LOCK_FAILURE: "ConnectorLockFailure",
    FaultCode.METER_LOST: "PowerMeterFailure",
    FaultCode.READER_FAILURE: "ReaderFailure",
    FaultCode.MCU_TIMEOUT: "InternalError",
    FaultCode.INTERNAL_ERROR: "InternalError",
    FaultCode.ISOLATION_FAULT: "GroundFailure",  # insulation to PE: the nearest 1.6 code
    FaultCode.POWER_MODULE_FAULT: "InternalError",
}

#: StopTransaction.req reason for each core stop reason (section 7.42).
STOP_REASONS: dict[StopReason, str] = {
    StopReason.LOCAL: "Local",
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.DE_AUTHORIZED: "DeAuthorized",
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    StopReason.HARD_RESET: "HardReset",
    StopReason.SOFT_RESET: "SoftReset",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.REBOOT: "Reboot",
    StopReason.UNAVAILABLE: "Other",
    StopReason.UNLOCK: "UnlockCommand",
    StopReason.FAULT: "Other",
    StopReason.MASTER_PASS: "Local",
    StopReason.TIMEOUT: "Other",
    StopReason.STOPPED_BY_EV: "Other",
    StopReason.OTHER: "Other",
}

#: idTagInfo.status (section 7.1) to the core's verdict.
AUTH_STATUS: dict[str, AuthStatus] = {
    "Accepted": AuthStatus.ACCEPTED,
    "Blocked": AuthStatus.BLOCKED,
    "Expired": AuthStatus.EXPIRED,
    "Invalid": AuthStatus.INVALID,
    "ConcurrentTx": AuthStatus.CONCURRENT_TX,
}

#: ReserveNow.conf status for each reservation answer (section 7.40).
RESERVE_RESULTS: dict[ReserveResult, str] = {
    ReserveResult.ACCEPTED: "Accepted",
    ReserveResult.FAULTED: "Faulted",
    ReserveResult.OCCUPIED: "Occupied",
    ReserveResult.REJECTED: "Rejected",
    ReserveResult.UNAVAILABLE: "Unavailable",
}

READING_CONTEXT: dict[str, str] = {
    SampleContext.BEGIN: "Transaction.Begin",
    SampleContext.PERIODIC: "Sample.Periodic",
    SampleContext.CLOCK: "Sample.Clock",
    SampleContext.END: "Transaction.End",
    SampleContext.TRIGGER: "Trigger",
}

SUPPORTED_MEASURANDS: tuple[str, ...] = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Current.Import",
    "Current.Offered",
    "Power.Offered",
    "Voltage",
    "Frequency",
    "SoC",
    "Temperature",
)

PHASES = ("L1", "L2", "L3")

#: Nominal phase voltage for Power.Offered when the meter reports no voltage (1.6 section 7.12).
NOMINAL_VOLTAGE_V = 230.0
#: Below this a phase counts as not energized when summing voltages for Power.Offered.
ENERGIZED_MIN_V = 50.0


def status_value(status: ConnectorStatus) -> str:
    """ChargePointStatus for a derived status (the core uses 1.6's names)."""
    return status.value


def timestamp(at: datetime) -> str:
    """An OCPP timestamp: UTC, milliseconds (truncated), 'Z'."""
    # isoformat is C and about three times faster than strftime; "+00:00" is six chars.
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_timestamp(text: str) -> datetime:
    """An OCPP dateTime as an aware UTC datetime (no offset given: UTC, as section 3.14
    recommends); raises ValueError if it is not an ISO 8601 date and time."""
    at = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def offered_power_w(sample: MeterSample, offered_current_a: float) -> float:
    """Power.Offered: the offered current per phase times the voltage of every energized
    phase the meter sees (nominal voltage on three phases if it reports none)."""
    volts = sum(v for v in sample.voltage_v if v >= ENERGIZED_MIN_V)
    return offered_current_a * (volts if volts > 0 else NOMINAL_VOLTAGE_V * len(PHASES))


def number(value: float) -> str:
    """A meter value as OCPP 1.6 wants it: a decimal string, no exponent."""
    text = _NUMBERS.get(value)
    if text is None:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        if text in ("", "-0"):
            text = "0"
        if len(_NUMBERS) >= _NUMBERS_KEPT:
            _NUMBERS.clear()
        _NUMBERS[value] = text
    return text


#: Texts of recent meter values: currents, voltages and the like repeat sample after
#: sample, and formatting is most of what building a MeterValues costs (outbox replay).
_NUMBERS: dict[float, str] = {}
_NUMBERS_KEPT = 4096


def energy_wh(value: float) -> int:
    """meterStart/meterStop: integer Wh (rounded down: never bill what was not metered)."""
    return int(value)


def sampled_values(
    sample: MeterSample, measurands: Iterable[str], context: str, offered_current_a: float
) -> list[dict[str, Any]]:
    """SampledValue entries for the requested measurands of one sample (keys in the order
    the wire has always had them: value, context, measurand, unit, phase, location)."""
    values: list[dict[str, Any]] = []
    add = values.append
    for measurand in measurands:
        if measurand == "Energy.Active.Import.Register":
            value = number(sample.energy_import_wh)
            add({"value": value, "context": context, "measurand": measurand, **_WH_OUTLET})
        elif measurand == "Power.Active.Import":
            value = number(sample.power_w)
            add({"value": value, "context": context, "measurand": measurand, **_W_OUTLET})
        elif measurand in _PER_PHASE:
            unit, names = _PER_PHASE[measurand]
            readings = sample.current_a if unit == "A" else sample.voltage_v
            for phase, reading in zip(names, readings, strict=True):
                value = number(reading)
                add(
                    {
                        "value": value,
                        "context": context,
                        "measurand": measurand,
                        "unit": unit,
                        "phase": phase,
                        "location": "Outlet",
                    }
                )
        elif measurand == "Energy.Active.Export.Register":
            value = number(sample.energy_export_wh)
            add({"value": value, "context": context, "measurand": measurand, **_WH_OUTLET})
        elif measurand == "Current.Offered":
            value = number(offered_current_a)
            add({"value": value, "context": context, "measurand": measurand, "unit": "A"})
        elif measurand == "Power.Offered":
            value = number(offered_power_w(sample, offered_current_a))
            add({"value": value, "context": context, "measurand": measurand, "unit": "W"})
        elif measurand == "Frequency" and sample.frequency_hz is not None:
            value = number(sample.frequency_hz)  # 1.6 UnitOfMeasure has no Hz: no unit
            add({"value": value, "context": context, "measurand": measurand})
        elif measurand == "SoC" and sample.soc_percent is not None:
            value = number(sample.soc_percent)
            add({"value": value, "context": context, "measurand": measurand, **_PERCENT_EV})
        elif measurand == "Temperature" and sample.temperature_c is not None:
            value = number(sample.temperature_c)
            add({"value": value, "context": context, "measurand": measurand, **_CELSIUS_BODY})
    return values


_PER_PHASE: dict[str, tuple[str, tuple[str, ...]]] = {
    "Current.Import": ("A", PHASES),
    "Voltage": ("V", tuple(f"{phase}-N" for phase in PHASES)),
}
_WH_OUTLET = {"unit": "Wh", "location": "Outlet"}
_W_OUTLET = {"unit": "W", "location": "Outlet"}
_PERCENT_EV = {"unit": "Percent", "location": "EV"}
_CELSIUS_BODY = {"unit": "Celsius", "location": "Body"}


def meter_value(payload: Mapping[str, Any], measurands: Iterable[str]) -> dict[str, Any] | None:
    """One MeterValue element from a journal sample payload, or None if nothing to report."""
    if SAMPLE_KEY not in payload:
        return None
    sample = sample_from_payload(payload)
    raw_context = payload["context"]
    context = READING_CONTEXT.get(raw_context) or READING_CONTEXT[SampleContext(raw_context)]
    values = sampled_values(sample, measurands, context, float(payload.get("offered_current_a", 0)))
    if not values:
        return None
    return {"timestamp": timestamp(datetime.fromisoformat(payload["at"])), "sampledValue": values}
