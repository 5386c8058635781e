"""Values and events that drivers speak.

These types are the vocabulary shared by every driver (real or simulated) and the
agent core. They carry no IEC 61851 or OCPP logic: a driver reports what the hardware
sees (a pilot voltage level, a contactor mirror contact, a fault condition) and the core
decides what it means.

Faults are data: a closed catalogue of codes (`FaultCode`). A driver raises a fault by
sending a `FaultEvent(code, active=True)` and clears it with `active=False`. Exceptions
from driver methods mean only "could not carry out this command".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PilotState(StrEnum):
    """Control pilot state as measured on the EVSE side (IEC 61851-1 Table A.3)."""

    A = "A"  # +12 V: no EV connected
    B = "B"  # +9 V: EV connected, not ready to take energy
    C = "C"  # +6 V: EV connected, ready, ventilation not required
    D = "D"  # +3 V: EV connected, ready, ventilation required
    E = "E"  # 0 V: short to PE or no supply (error)
    F = "F"  # -12 V: EVSE not available (or diode fault seen as such)


class FaultCode(StrEnum):
    """The closed catalogue of faults a driver or the core can report.

    Each OCPP adapter maps these codes to its own error codes by a table.
    """

    GROUND_FAULT = "ground_fault"
    RCD_TRIP = "rcd_trip"
    OVER_CURRENT = "over_current"
    OVER_VOLTAGE = "over_voltage"
    UNDER_VOLTAGE = "under_voltage"
    OVER_TEMPERATURE = "over_temperature"
    CONTACTOR_WELDED = "contactor_welded"
    CONTACTOR_STUCK_OPEN = "contactor_stuck_open"
    PILOT_FAULT = "pilot_fault"  # diode missing, pilot short (state E), implausible level
    LOCK_FAILURE = "lock_failure"
    METER_LOST = "meter_lost"
    READER_FAILURE = "reader_failure"
    MCU_TIMEOUT = "mcu_timeout"
    INTERNAL_ERROR = "internal_error"
    # DC power path, appended last so that the order of the codes above (the order
    # primary_fault() reports by) is unchanged.
    # Insulation below the IMD's alarm threshold, or the IMD cannot vouch for it (device
    # failure, earth connection fault, a silent IMD).
    ISOLATION_FAULT = "isolation_fault"
    POWER_MODULE_FAULT = "power_module_fault"  # DC module internal fault or silent module


class TokenType(StrEnum):
    """Kinds of identifier a token reader or a remote party can present."""

    ISO14443 = "ISO14443"
    ISO15693 = "ISO15693"
    CENTRAL = "Central"
    EMAID = "eMAID"
    KEY_CODE = "KeyCode"
    LOCAL = "Local"
    MAC_ADDRESS = "MacAddress"
    NO_AUTHORIZATION = "NoAuthorization"


@dataclass(frozen=True, slots=True)
class PilotEvent:
    """The measured pilot state changed (or is reported for the first time)."""

    state: PilotState


@dataclass(frozen=True, slots=True)
class ContactorEvent:
    """The contactor mirror contact (or the commanded state, on boards without one)."""

    closed: bool


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault condition became active or cleared."""

    code: FaultCode
    active: bool
    detail: str = ""


BoardEvent = PilotEvent | ContactorEvent | FaultEvent


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One reading of an energy meter. Per-phase tuples hold L1, L2, L3 (zeros if absent)."""

    energy_import_wh: float
    power_w: float
    current_a: tuple[float, float, float]
    voltage_v: tuple[float, float, float]
    energy_export_wh: float = 0.0
    frequency_hz: float | None = None
    soc_percent: float | None = None
    temperature_c: float | None = None


@dataclass(frozen=True, slots=True)
class TokenRead:
    """A token presented at a reader: the UID or code, normalised by the driver."""

    id_token: str
    token_type: TokenType = TokenType.ISO14443


@dataclass(frozen=True, slots=True)
class BoardCapabilities:
    """What an EVSE's board can do, reported once by the driver."""

    max_current_a: float
    phases: int = 3
    has_contactor_feedback: bool = True
    can_switch_phases: bool = False


@dataclass(frozen=True, slots=True)
class PowerModuleCapabilities:
    """Static limits of a DC power stage (all of its modules together)."""

    max_voltage_v: float
    max_current_a: float
    max_power_w: float
    min_voltage_v: float = 0.0


@dataclass(frozen=True, slots=True)
class PowerModuleReading:
    """What a DC power stage measures at its output, and the state it reports.

    `flags` are the module's own status and warning names (for example "walk_in_enable",
    "fan_fault_alarm"), reported as seen; faults among them also arrive as FaultEvents.
    """

    voltage_v: float
    current_a: float
    output_on: bool
    temperature_c: float | None = None
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class IsolationReading:
    """One insulation measurement of an IMD (IEC 61557-8) on the DC output.

    `valid` is False when the device is not measuring, its value is outdated, or it
    reports a device failure; `resistance_ohm` is then the last value it sent.
    `warning` is the device's own pre-alarm (resistance below its warning threshold).
    """

    resistance_ohm: float
    valid: bool
    warning: bool = False


@dataclass(frozen=True, slots=True)
class IsolationSelfTest:
    """The verdict of an IMD self-test requested with `start_self_test()`."""

    passed: bool
    detail: str = ""


IsolationEvent = IsolationReading | IsolationSelfTest | FaultEvent
