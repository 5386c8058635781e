"""The serial MCU protocol, version 1: message type codes, field values and payload layouts.

Each message is a frozen dataclass whose `TYPE` is its type code and whose `FORMAT` is its
little-endian payload layout (docs/serial-mcu-protocol.md section 6); `pack` and `unpack`
turn one into a (type, payload) pair and back, checking every enumerated field. Framing,
CRC, COBS and sequencing live in drivers/serial_mcu_protocol.py, which re-exports every
name here, so importers keep using that module.

Pure values and functions only: no frames, no I/O, no timers, no asyncio. It must not know
about pyserial, the agent, IEC 61851 logic or OCPP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar, Final, get_args

#: TEMPERATURE `allowed_current_da` when the board is not derating.
NO_CURRENT_LIMIT: Final = 0xFFFF


class MessageError(ValueError):
    """A valid frame carries a payload that does not fit its message type."""


# --- message types and values --------------------------------------------------------------


class MsgType(IntEnum):
    """Message type codes: 0x0x both ways, 0x1x agent to MCU, 0x8x MCU to agent."""

    ACK = 0x01
    HEARTBEAT = 0x02
    HELLO = 0x10
    SET_PWM = 0x11
    SET_CONTACTOR = 0x12
    SET_LOCK = 0x13
    RCD_SELFTEST = 0x14
    BOOT = 0x80
    IDENT = 0x81
    PILOT = 0x82
    CONTACTOR = 0x83
    FAULTS = 0x84
    PP = 0x85
    LOCK = 0x86
    TEMPERATURE = 0x87
    SELFTEST_RESULT = 0x88


class PilotMode(IntEnum):
    """What the MCU drives onto the pilot."""

    OFF = 0  # constant +12 V (state x1)
    PWM = 1  # 1 kHz +-12 V with a duty cycle (state x2)
    F = 2  # constant -12 V: EVSE not available


class PilotLevel(IntEnum):
    """The pilot state the MCU measures (IEC 61851-1 Table A.3)."""

    A = 0
    B = 1
    C = 2
    D = 3
    E = 4
    F = 5


class ResetCause(IntEnum):
    """Why the MCU started, as its reset controller reports it."""

    POWER_ON = 0
    WATCHDOG = 1
    BROWN_OUT = 2
    SOFTWARE = 3
    EXTERNAL = 4
    OTHER = 255


class Feature(IntFlag):
    """Hardware the board has (IDENT/BOOT `features`)."""

    CONTACTOR_MIRROR = 1 << 0
    LOCK = 1 << 1
    RCD = 1 << 2
    PP = 1 << 3
    TEMPERATURE = 1 << 4


class Mirror(IntEnum):
    """The contactor's auxiliary (mirror) contact."""

    OPEN = 0
    CLOSED = 1
    NOT_FITTED = 0xFF


class LockPosition(IntEnum):
    """Where the lock's feedback switch says the pin is."""

    UNLOCKED = 0
    LOCKED = 1
    MOVING = 2  # between the end positions (or the feedback is implausible)
    NOT_FITTED = 0xFF


class LockResult(IntEnum):
    """The outcome of the last lock motion."""

    IN_PROGRESS = 0
    REACHED = 1
    FAILED = 2  # the motor did not reach the position in time (jammed, blocked)


class SelfTest(IntEnum):
    """The outcome of an RCD self-test."""

    PASSED = 0
    FAILED = 1
    REFUSED = 2  # not run: the contactor is closed


class HeartbeatFlag(IntFlag):
    """HEARTBEAT `flags`. Unsequenced, so it gets through even when acks do not."""

    SESSION = 1 << 0  # MCU: an agent session is up (HELLO received, no lapse since)


class FaultBit(IntFlag):
    """The FAULTS report bitfield. Unknown bits are faults too (INTERNAL_ERROR)."""

    RCD_DC_6MA = 1 << 0
    RCD_AC_30MA = 1 << 1
    RCD_SELFTEST_FAILED = 1 << 2
    CONTACTOR_WELDED = 1 << 3
    CONTACTOR_STUCK_OPEN = 1 << 4
    OVER_TEMPERATURE = 1 << 5
    PILOT_FAULT = 1 << 6
    LOCK_FAILURE = 1 << 7
    PERMISSION_LAPSED = 1 << 8


KNOWN_FAULT_BITS: Final = int(
    FaultBit.RCD_DC_6MA
    | FaultBit.RCD_AC_30MA
    | FaultBit.RCD_SELFTEST_FAILED
    | FaultBit.CONTACTOR_WELDED
    | FaultBit.CONTACTOR_STUCK_OPEN
    | FaultBit.OVER_TEMPERATURE
    | FaultBit.PILOT_FAULT
    | FaultBit.LOCK_FAILURE
    | FaultBit.PERMISSION_LAPSED
)


# --- messages -----------------------------------------------------------------------------


def _enum(kind: type[IntEnum], value: int, field: str) -> int:
    try:
        kind(value)
    except ValueError:
        raise MessageError(f"{field}: unknown value {value}") from None
    return value


def _flag(value: int, field: str) -> bool:
    if value not in (0, 1):
        raise MessageError(f"{field}: expected 0 or 1, got {value}")
    return bool(value)


@dataclass(frozen=True, slots=True)
class Ack:
    """Carries only the ack field (sent at once after accepting a sequenced frame)."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Both ways, every heartbeat interval: the sender is alive (and its session state)."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IHB")
    uptime_ms: int
    rx_errors: int  # garbled frames received since start, saturating at 65535
    flags: int = 0  # HeartbeatFlag


@dataclass(frozen=True, slots=True)
class Hello:
    """Agent to MCU: start a session (revokes every permission) with these timings."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HH")
    heartbeat_ms: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class SetPwm:
    """Agent to MCU: drive the pilot (duty in 0.1 %, used only in PWM mode)."""

    TYPE: ClassVar[MsgType] = MsgType.SET_PWM
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BH")
    mode: PilotMode
    duty_permille: int = 0


@dataclass(frozen=True, slots=True)
class SetContactor:
    """Agent to MCU: permission to close the contactor (the MCU decides when it may)."""

    TYPE: ClassVar[MsgType] = MsgType.SET_CONTACTOR
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<B")
    closed: bool


@dataclass(frozen=True, slots=True)
class SetLock:
    """Agent to MCU: drive the connector lock."""

    TYPE: ClassVar[MsgType] = MsgType.SET_LOCK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<B")
    locked: bool


@dataclass(frozen=True, slots=True)
class RcdSelfTest:
    """Agent to MCU: run the residual current device's self-test."""

    TYPE: ClassVar[MsgType] = MsgType.RCD_SELFTEST
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class Ident:
    """MCU to agent: firmware and hardware; as BOOT, sent unasked after every reset."""

    TYPE: ClassVar[MsgType] = MsgType.IDENT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBBHB")
    fw_major: int
    fw_minor: int
    fw_patch: int
    features: int
    reset_cause: ResetCause


@dataclass(frozen=True, slots=True)
class Boot(Ident):
    """MCU to agent: the MCU (re)started; everything the agent granted is gone."""

    TYPE: ClassVar[MsgType] = MsgType.BOOT


@dataclass(frozen=True, slots=True)
class Pilot:
    """MCU to agent: the measured pilot state and what the MCU applies."""

    TYPE: ClassVar[MsgType] = MsgType.PILOT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBHhh")
    state: PilotLevel
    mode: PilotMode
    duty_permille: int  # applied (after the MCU's own limits); 0 unless PWM
    high_mv: int  # positive plateau
    low_mv: int  # negative plateau (-12 V while oscillating)


@dataclass(frozen=True, slots=True)
class Contactor:
    """MCU to agent: the coil drive and the mirror contact."""

    TYPE: ClassVar[MsgType] = MsgType.CONTACTOR
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BB")
    coil: bool
    mirror: Mirror


@dataclass(frozen=True, slots=True)
class Faults:
    """MCU to agent: every active fault condition (FaultBit)."""

    TYPE: ClassVar[MsgType] = MsgType.FAULTS
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I")
    bits: int


@dataclass(frozen=True, slots=True)
class Pp:
    """MCU to agent: the cable's ampacity from its PP resistor (0: none or tethered)."""

    TYPE: ClassVar[MsgType] = MsgType.PP
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BH")
    ampacity_a: int  # 0, 13, 20, 32, 63; 0xFF: resistance matches no coding
    resistance_ohm: int  # 0xFFFF: open circuit


@dataclass(frozen=True, slots=True)
class Lock:
    """MCU to agent: the lock's request, position and the result of the last motion."""

    TYPE: ClassVar[MsgType] = MsgType.LOCK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBB")
    requested: bool
    position: LockPosition
    result: LockResult


@dataclass(frozen=True, slots=True)
class Temperature:
    """MCU to agent: the hottest sensor and the current the board allows at it."""

    TYPE: ClassVar[MsgType] = MsgType.TEMPERATURE
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<hH")
    temperature_dc: int  # 0.1 degC
    allowed_current_da: int  # 0.1 A; NO_CURRENT_LIMIT: not derating


@dataclass(frozen=True, slots=True)
class SelfTestResult:
    """MCU to agent: the outcome of RCD_SELFTEST."""

    TYPE: ClassVar[MsgType] = MsgType.SELFTEST_RESULT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<B")
    result: SelfTest


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message type this side does not know (acknowledged and ignored)."""

    msg_type: int
    payload: bytes


Message = (
    Ack
    | Heartbeat
    | Hello
    | SetPwm
    | SetContactor
    | SetLock
    | RcdSelfTest
    | Ident
    | Boot
    | Pilot
    | Contactor
    | Faults
    | Pp
    | Lock
    | Temperature
    | SelfTestResult
)

_CLASSES: dict[int, type[Message]] = {cls.TYPE: cls for cls in get_args(Message)}


def pack(message: Message) -> tuple[int, bytes]:
    """The (type, payload) of a message; raises ValueError for a field out of range."""
    values = [int(getattr(message, field.name)) for field in fields(message)]
    try:
        return int(message.TYPE), message.FORMAT.pack(*values)
    except struct.error as exc:
        raise ValueError(f"{type(message).__name__}: {exc}") from exc


def unpack(msg_type: int, payload: bytes) -> Message | Unknown:
    """Decode a payload; Unknown for a type not in this version; raises MessageError."""
    cls = _CLASSES.get(msg_type)
    if cls is None:
        return Unknown(msg_type, payload)
    if len(payload) != cls.FORMAT.size:
        raise MessageError(
            f"{cls.__name__}: payload of {len(payload)} bytes, expected {cls.FORMAT.size}"
        )
    values = cls.FORMAT.unpack(payload)
    name = cls.__name__
    if cls is SetPwm:
        if values[1] > 1000:
            raise MessageError(f"{name}.duty_permille: {values[1]} exceeds 1000")
        return SetPwm(PilotMode(_enum(PilotMode, values[0], f"{name}.mode")), values[1])
    if cls is SetContactor:
        return SetContactor(_flag(values[0], f"{name}.closed"))
    if cls is SetLock:
        return SetLock(_flag(values[0], f"{name}.locked"))
    if cls is Ident or cls is Boot:
        cause = ResetCause(_enum(ResetCause, values[4], f"{name}.reset_cause"))
        ident_cls = Boot if cls is Boot else Ident
        return ident_cls(values[0], values[1], values[2], values[3], cause)
    if cls is Pilot:
        state = PilotLevel(_enum(PilotLevel, values[0], f"{name}.state"))
        mode = PilotMode(_enum(PilotMode, values[1], f"{name}.mode"))
        return Pilot(state, mode, values[2], values[3], values[4])
    if cls is Contactor:
        mirror = Mirror(_enum(Mirror, values[1], f"{name}.mirror"))
        return Contactor(_flag(values[0], f"{name}.coil"), mirror)
    if cls is Lock:
        position = LockPosition(_enum(LockPosition, values[1], f"{name}.position"))
        result = LockResult(_enum(LockResult, values[2], f"{name}.result"))
        return Lock(_flag(values[0], f"{name}.requested"), position, result)
    if cls is SelfTestResult:
        return SelfTestResult(SelfTest(_enum(SelfTest, values[0], f"{name}.result")))
    return cls(*values)
