"""The serial MCU protocol, version 1: framing, CRC, sequencing values and message codecs.

Pure functions and values only, shared by the agent's driver (drivers/serial_mcu.py) and
the reference MCU emulator (simulator/mcu_emulator.py). No I/O, no timers, no asyncio:
whoever owns a byte stream feeds it to a `FrameReader` and writes what `encode_frame`
returns. docs/serial-mcu-protocol.md is the normative text for board vendors; this
module must agree with it byte for byte (a unit test checks the worked example there).

On the wire a frame is COBS(body) between two 0x00 delimiters (so every frame resynchronises
a receiver that joined mid-stream; back-to-back delimiters are idle fill), where

    body = version u8 | seq u8 | ack u8 | type u8 | len u8 | payload[len] | crc16 (2 bytes)

and the CRC is CRC-16/CCITT-FALSE over everything before it, sent high byte first (so a
receiver may run the CRC over the whole body and check for 0). Every other multi-byte
field is little-endian. A frame that fails COBS, length, version or CRC checks is dropped
and counted; it is never partly used. The explicit length byte makes a frame cut short by
a stray 0x00 fail deterministically rather than by CRC chance.

It must not know about pyserial, the agent, IEC 61851 or OCPP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar, Final, get_args

PROTOCOL_VERSION: Final = 1
HEADER_SIZE: Final = 5
CRC_SIZE: Final = 2
MAX_PAYLOAD: Final = 64
MAX_BODY: Final = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
#: COBS adds at most one byte per 254 (one here, as MAX_BODY < 254).
MAX_ENCODED: Final = MAX_BODY + 1
DELIMITER: Final = b"\x00"

#: Defaults both sides use until HELLO says otherwise (docs: "Timing").
DEFAULT_HEARTBEAT_MS: Final = 200
DEFAULT_TIMEOUT_MS: Final = 1000
NO_CURRENT_LIMIT: Final = 0xFFFF


class FrameError(ValueError):
    """Bytes between two delimiters are not a valid frame."""


class MessageError(ValueError):
    """A valid frame carries a payload that does not fit its message type."""


# --- CRC and COBS -------------------------------------------------------------------------


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result contains no 0x00 byte."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out.append(255)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Undo cobs_encode; raises FrameError for a zero byte or a block past the end."""
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise FrameError("zero byte inside a COBS frame")
        end = index + code
        if end > len(data):
            raise FrameError("COBS block runs past the end of the frame")
        block = data[index + 1 : end]
        if 0 in block:
            raise FrameError("zero byte inside a COBS frame")
        out += block
        index = end
        if code < 255 and index < len(data):
            out.append(0)
    return bytes(out)


# --- frames -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: a message type and payload with its sequencing fields."""

    msg_type: int
    payload: bytes = b""
    seq: int = 0  # 0: not sequenced (ACK, HEARTBEAT); 1..255 otherwise
    ack: int = 0  # the last sequenced frame accepted from the peer (0: none)
    version: int = PROTOCOL_VERSION


def encode_body(frame: Frame) -> bytes:
    """The frame's body with its CRC (before COBS); raises ValueError for bad fields."""
    for name in ("seq", "ack", "msg_type", "version"):
        value = getattr(frame, name)
        if not 0 <= value <= 255:
            raise ValueError(f"{name} must fit in one byte, got {value}")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    head = bytes((frame.version, frame.seq, frame.ack, frame.msg_type, len(frame.payload)))
    data = head + frame.payload
    return data + crc16_ccitt_false(data).to_bytes(2, "big")


def wire_bytes(body: bytes) -> bytes:
    """A body as sent: a leading and a trailing delimiter around COBS(body)."""
    return DELIMITER + cobs_encode(body) + DELIMITER


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of a frame (see wire_bytes); raises ValueError for bad fields."""
    return wire_bytes(encode_body(frame))


def decode_body(body: bytes) -> Frame:
    """Check and split a body (after COBS); raises FrameError."""
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame of {len(body)} bytes is shorter than a header and CRC")
    length = body[4]
    if len(body) != HEADER_SIZE + length + CRC_SIZE:
        raise FrameError(f"length field says {length} payload bytes, frame has {len(body)}")
    if crc16_ccitt_false(body) != 0:
        raise FrameError("CRC mismatch")
    if body[0] != PROTOCOL_VERSION:
        raise FrameError(f"unsupported protocol version {body[0]}")
    return Frame(
        msg_type=body[3],
        payload=bytes(body[HEADER_SIZE:-CRC_SIZE]),
        seq=body[1],
        ack=body[2],
        version=body[0],
    )


def decode_frame(chunk: bytes) -> Frame:
    """Decode the bytes between two delimiters; raises FrameError."""
    if len(chunk) > MAX_ENCODED:
        raise FrameError(f"frame of {len(chunk)} bytes exceeds {MAX_ENCODED}")
    return decode_body(cobs_decode(chunk))


class FrameReader:
    """Splits a byte stream at delimiters and decodes frames, counting garbled ones.

    Bytes before the first delimiter are a partial frame (the reader joined mid-stream)
    and are dropped without counting. An over-long run without a delimiter is dropped
    and counted once.
    """

    def __init__(self) -> None:
        self.garbled = 0
        self.last_error = ""
        self._buffer = bytearray()
        self._synced = False
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame]:
        """Return the frames completed by `data`, in order."""
        frames: list[Frame] = []
        for byte in data:
            if byte != 0:
                if len(self._buffer) < MAX_ENCODED:
                    self._buffer.append(byte)
                else:
                    self._overflow = True
                continue
            chunk, overflow = bytes(self._buffer), self._overflow
            self._buffer.clear()
            self._overflow = False
            if not self._synced:
                self._synced = True
                continue
            if not chunk and not overflow:
                continue  # back-to-back delimiters: allowed as idle fill
            if overflow:
                self._count("frame longer than the maximum")
                continue
            try:
                frames.append(decode_frame(chunk))
            except FrameError as exc:
                self._count(str(exc))
        return frames

    def _count(self, reason: str) -> None:
        self.garbled += 1
        self.last_error = reason


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 1..255, wrapping to 1 (0 means unsequenced)."""
    return 1 if seq >= 255 else seq + 1


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


UNSEQUENCED: Final = frozenset({MsgType.ACK, MsgType.HEARTBEAT})
#: Accepted even when their seq repeats the last one: they start a new session.
SESSION_START: Final = frozenset({MsgType.HELLO, MsgType.BOOT})
#: What the MCU sends in answer to HELLO, in this order (the agent's snapshot).
SNAPSHOT: Final = (
    MsgType.IDENT,
    MsgType.PILOT,
    MsgType.CONTACTOR,
    MsgType.FAULTS,
    MsgType.PP,
    MsgType.LOCK,
    MsgType.TEMPERATURE,
)


def is_sequenced(msg_type: int) -> bool:
    """Whether frames of this type carry a seq and must be acknowledged."""
    return msg_type not in UNSEQUENCED


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


def frame_of(message: Message, *, seq: int = 0, ack: int = 0) -> Frame:
    """A frame carrying `message`; raises ValueError for a field out of range."""
    msg_type, payload = pack(message)
    return Frame(msg_type, payload, seq=seq, ack=ack)


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
