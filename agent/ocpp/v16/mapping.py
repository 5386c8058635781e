"""OCPP 1.6 mapping tables: core vocabulary to and from the 1.6 wire.

Status, error codes, stop reasons, authorization status and measurands: every
translation between the neutral core and OCPP 1.6 is a table or a small function here,
so the adapter itself reads as behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from agent.core.events import AuthStatus, sample_from_payload
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
    """An OCPP timestamp: UTC, milliseconds, 'Z'."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


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
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def energy_wh(value: float) -> int:
    """meterStart/meterStop: integer Wh (rounded down: never bill what was not metered)."""
    return int(value)


def sampled_values(
    sample: MeterSample, measurands: Iterable[str], context: str, offered_current_a: float
) -> list[dict[str, Any]]:
    """SampledValue entries for the requested measurands of one sample."""
    values: list[dict[str, Any]] = []

    def add(measurand: str, value: float, unit: str | None, **extra: str) -> None:
        entry = {"value": number(value), "context": context, "measurand": measurand}
        if unit is not None:
            entry["unit"] = unit
        entry.update(extra)
        values.append(entry)

    for measurand in measurands:
        if measurand == "Energy.Active.Import.Register":
            add(measurand, sample.energy_import_wh, "Wh", location="Outlet")
        elif measurand == "Energy.Active.Export.Register":
            add(measurand, sample.energy_export_wh, "Wh", location="Outlet")
        elif measurand == "Power.Active.Import":
            add(measurand, sample.power_w, "W", location="Outlet")
        elif measurand == "Current.Import":
            for phase, current in zip(PHASES, sample.current_a, strict=True):
                add(measurand, current, "A", phase=phase, location="Outlet")
        elif measurand == "Current.Offered":
            add(measurand, offered_current_a, "A")
        elif measurand == "Power.Offered":
            add(measurand, offered_power_w(sample, offered_current_a), "W")
        elif measurand == "Voltage":
            for phase, voltage in zip(PHASES, sample.voltage_v, strict=True):
                add(measurand, voltage, "V", phase=f"{phase}-N", location="Outlet")
        elif measurand == "Frequency" and sample.frequency_hz is not None:
            add(measurand, sample.frequency_hz, None)  # 1.6 UnitOfMeasure has no Hz
        elif measurand == "SoC" and sample.soc_percent is not None:
            add(measurand, sample.soc_percent, "Percent", location="EV")
        elif measurand == "Temperature" and sample.temperature_c is not None:
            add(measurand, sample.temperature_c, "Celsius", location="Body")
    return values


def meter_value(payload: Mapping[str, Any], measurands: Iterable[str]) -> dict[str, Any] | None:
    """One MeterValue element from a journal sample payload, or None if nothing to report."""
    if "energy_import_wh" not in payload:
        return None
    sample = sample_from_payload(payload)
    context = READING_CONTEXT[SampleContext(payload["context"])]
    values = sampled_values(sample, measurands, context, float(payload.get("offered_current_a", 0)))
    if not values:
        return None
    return {"timestamp": timestamp(datetime.fromisoformat(payload["at"])), "sampledValue": values}
