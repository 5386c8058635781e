"""The serial MCU protocol, version 1: framing, CRC, sequencing values and message codecs.

Pure functions and values only, shared by the agent's driver (drivers/serial_mcu.py) and
the reference MCU emulator (simulator/mcu_emulator.py). No I/O, no timers, no asyncio:
whoever owns a byte stream feeds it to a `FrameReader` and writes what `encode_frame`
returns. docs/serial-mcu-protocol.md is the normative text for board vendors; this
module must agree with it byte for byte (a unit test checks the worked example there).
The message types, values and payload layouts are in drivers/serial_mcu_messages.py;
this module re-exports them, so it stays the one import for the whole protocol.

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

from dataclasses import dataclass
from typing import Final

from drivers.serial_mcu_messages import (
    KNOWN_FAULT_BITS,
    NO_CURRENT_LIMIT,
    Ack,
    Boot,
    Contactor,
    FaultBit,
    Faults,
    Feature,
    Heartbeat,
    HeartbeatFlag,
    Hello,
    Ident,
    Lock,
    LockPosition,
    LockResult,
    Message,
    MessageError,
    Mirror,
    MsgType,
    Pilot,
    PilotLevel,
    PilotMode,
    Pp,
    RcdSelfTest,
    ResetCause,
    SelfTest,
    SelfTestResult,
    SetContactor,
    SetLock,
    SetPwm,
    Temperature,
    Unknown,
    pack,
    unpack,
)

__all__ = [
    "CRC_SIZE",
    "DEFAULT_HEARTBEAT_MS",
    "DEFAULT_TIMEOUT_MS",
    "DELIMITER",
    "HEADER_SIZE",
    "KNOWN_FAULT_BITS",
    "MAX_BODY",
    "MAX_ENCODED",
    "MAX_PAYLOAD",
    "NO_CURRENT_LIMIT",
    "PROTOCOL_VERSION",
    "SESSION_START",
    "SNAPSHOT",
    "UNSEQUENCED",
    "Ack",
    "Boot",
    "Contactor",
    "FaultBit",
    "Faults",
    "Feature",
    "Frame",
    "FrameError",
    "FrameReader",
    "Heartbeat",
    "HeartbeatFlag",
    "Hello",
    "Ident",
    "Lock",
    "LockPosition",
    "LockResult",
    "Message",
    "MessageError",
    "Mirror",
    "MsgType",
    "Pilot",
    "PilotLevel",
    "PilotMode",
    "Pp",
    "RcdSelfTest",
    "ResetCause",
    "SelfTest",
    "SelfTestResult",
    "SetContactor",
    "SetLock",
    "SetPwm",
    "Temperature",
    "Unknown",
    "cobs_decode",
    "cobs_encode",
    "crc16_ccitt_false",
    "decode_body",
    "decode_frame",
    "encode_body",
    "encode_frame",
    "frame_of",
    "is_sequenced",
    "next_seq",
    "pack",
    "unpack",
    "wire_bytes",
]

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


class FrameError(ValueError):
    """Bytes between two delimiters are not a valid frame."""


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


# --- sequencing ---------------------------------------------------------------------------


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


def frame_of(message: Message, *, seq: int = 0, ack: int = 0) -> Frame:
    """A frame carrying `message`; raises ValueError for a field out of range."""
    msg_type, payload = pack(message)
    return Frame(msg_type, payload, seq=seq, ack=ack)
