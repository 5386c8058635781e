"""The serial MCU codec (drivers/serial_mcu_protocol.py) against docs/serial-mcu-protocol.md.

Round trips for every frame and message; corrupted frames are rejected and never
mis-decoded; the spec's worked examples are the codec's exact bytes. The corruption
properties run derandomized: a CRC-16 misses a random multi-byte corruption with a
probability of about 2^-16, so a property over arbitrary corruption must not depend on
the luck of one run; the classes with a guarantee (bursts up to 16 bits in the body,
truncation) are exact, and every single-byte substitution of two sample frames is
checked exhaustively.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial_mcu_protocol import (
    MAX_PAYLOAD,
    Boot,
    Contactor,
    Faults,
    Frame,
    FrameError,
    FrameReader,
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
    ResetCause,
    SelfTest,
    SelfTestResult,
    SetContactor,
    SetLock,
    SetPwm,
    Temperature,
    Unknown,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    decode_body,
    encode_body,
    encode_frame,
    frame_of,
    next_seq,
    pack,
    unpack,
)

SPEC = Path(__file__).resolve().parents[2] / "docs" / "serial-mcu-protocol.md"

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
i16 = st.integers(-0x8000, 0x7FFF)

frames = st.builds(
    Frame,
    msg_type=u8,
    payload=st.binary(max_size=MAX_PAYLOAD),
    seq=u8,
    ack=u8,
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Heartbeat, st.integers(0, 0xFFFFFFFF), u16, u8),
    st.builds(Hello, u16, u16),
    st.builds(SetPwm, st.sampled_from(PilotMode), st.integers(0, 1000)),
    st.builds(SetContactor, st.booleans()),
    st.builds(SetLock, st.booleans()),
    st.builds(Ident, u8, u8, u8, u16, st.sampled_from(ResetCause)),
    st.builds(Boot, u8, u8, u8, u16, st.sampled_from(ResetCause)),
    st.builds(Pilot, st.sampled_from(PilotLevel), st.sampled_from(PilotMode), u16, i16, i16),
    st.builds(Contactor, st.booleans(), st.sampled_from(Mirror)),
    st.builds(Faults, st.integers(0, 0xFFFFFFFF)),
    st.builds(Pp, u8, u16),
    st.builds(Lock, st.booleans(), st.sampled_from(LockPosition), st.sampled_from(LockResult)),
    st.builds(Temperature, i16, u16),
    st.builds(SelfTestResult, st.sampled_from(SelfTest)),
)


def decoded(stream: bytes) -> list[Frame]:
    return FrameReader().feed(stream)


# --- the spec --------------------------------------------------------------------------------


def test_crc_is_ccitt_false_with_check_value_0x29b1() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_worked_examples_in_the_spec_are_the_codec_s_exact_bytes() -> None:
    text = SPEC.read_text(encoding="utf-8")
    block = re.search(r"worked-examples: begin -->(.*?)<!-- worked-examples: end", text, re.S)
    assert block is not None
    hex_lines = re.findall(r"^(body|wire): ([0-9A-F ]+)$", block.group(1), re.M)
    examples = [
        frame_of(SetContactor(True), seq=1, ack=0),
        frame_of(Pilot(PilotLevel.C, PilotMode.PWM, 533, 6000, -12000), seq=7, ack=1),
        frame_of(Heartbeat(1000, 0, HeartbeatFlag.SESSION), seq=0, ack=7),
        frame_of(Hello(200, 1000), seq=1, ack=0),
    ]
    expected = []
    for frame in examples:
        expected += [("body", encode_body(frame)), ("wire", encode_frame(frame))]
    assert [(kind, bytes.fromhex(value)) for kind, value in hex_lines] == expected


def test_sequence_numbers_run_1_to_255_and_skip_0() -> None:
    assert next_seq(0) == 1
    assert next_seq(254) == 255
    assert next_seq(255) == 1


# --- round trips -----------------------------------------------------------------------------


@given(st.binary(max_size=600))
def test_cobs_round_trips_and_leaves_no_zero_byte(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


@given(frames)
def test_frame_round_trips_through_the_wire(frame: Frame) -> None:
    assert decoded(encode_frame(frame)) == [frame]


@given(st.lists(frames, max_size=8))
def test_back_to_back_frames_decode_in_order(batch: list[Frame]) -> None:
    assert decoded(b"".join(encode_frame(frame) for frame in batch)) == batch


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    msg_type, payload = pack(message)
    assert unpack(msg_type, payload) == message


# --- corruption ------------------------------------------------------------------------------


@settings(derandomize=True, max_examples=300)
@given(frames, st.data())
def test_a_bit_flip_anywhere_on_the_wire_never_yields_a_frame(
    frame: Frame, data: st.DataObject
) -> None:
    wire = bytearray(encode_frame(frame))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    assert decoded(bytes(wire)) == []


@given(frames, st.data())
def test_bursts_of_up_to_16_bits_in_the_body_are_always_caught(
    frame: Frame, data: st.DataObject
) -> None:
    body = encode_body(frame)
    width = data.draw(st.integers(1, 16))
    start = data.draw(st.integers(0, len(body) * 8 - width))
    pattern = data.draw(st.integers(0, (1 << width) - 1)) | 1 | (1 << (width - 1))
    value = int.from_bytes(body, "big") ^ (pattern << (len(body) * 8 - start - width))
    with pytest.raises(FrameError):
        decode_body(value.to_bytes(len(body), "big"))


@given(frames, st.data())
def test_a_frame_cut_short_is_rejected(frame: Frame, data: st.DataObject) -> None:
    wire = encode_frame(frame)
    # Keep the leading delimiter and lose at least one byte before the trailing one.
    cut = data.draw(st.integers(1, len(wire) - 2))
    assert decoded(wire[:cut] + b"\x00") == []


@settings(derandomize=True, max_examples=300)
@given(frames, st.data())
def test_a_byte_dropped_or_inserted_never_yields_a_frame(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(frame))
    position = data.draw(st.integers(1, len(wire) - 2))
    if data.draw(st.booleans()):
        del wire[position]
    else:
        wire.insert(position, data.draw(st.integers(1, 255)))
    assert decoded(bytes(wire)) == []


@pytest.mark.parametrize(
    "frame",
    [
        frame_of(SetContactor(True), seq=1, ack=0),
        frame_of(Pilot(PilotLevel.C, PilotMode.PWM, 533, 6000, -12000), seq=7, ack=1),
    ],
    ids=["set_contactor", "pilot"],
)
def test_every_single_byte_substitution_is_rejected(frame: Frame) -> None:
    wire = encode_frame(frame)
    before, after = encode_frame(Frame(MsgType.ACK, ack=3)), encode_frame(Frame(MsgType.ACK))
    for position in range(len(wire)):
        for value in range(256):
            if value == wire[position]:
                continue
            corrupted = wire[:position] + bytes((value,)) + wire[position + 1 :]
            frames_out = decoded(before + corrupted + after)
            # The neighbours survive or fall with a damaged delimiter; the frame never
            # comes out, nor does anything that was not sent.
            assert frame not in frames_out
            assert all(f in (Frame(MsgType.ACK, ack=3), Frame(MsgType.ACK)) for f in frames_out)


@settings(derandomize=True)
@given(st.binary(max_size=300), frames)
def test_the_reader_resynchronises_on_the_next_delimiter_after_noise(
    noise: bytes, frame: Frame
) -> None:
    assert decoded(noise + encode_frame(frame))[-1:] == [frame]


def test_garbled_frames_are_counted_and_a_partial_first_frame_is_not() -> None:
    reader = FrameReader()
    good = encode_frame(frame_of(SetLock(True), seq=2))
    bad = bytearray(good)
    bad[3] ^= 0x40
    assert reader.feed(b"\x17\x42" + bytes(bad) + good) == [frame_of(SetLock(True), seq=2)]
    assert reader.garbled == 1


def test_an_overlong_run_without_delimiter_counts_once_and_is_dropped() -> None:
    reader = FrameReader()
    good = encode_frame(frame_of(SetLock(False), seq=3))
    assert reader.feed(b"\x00" + b"\x01" * 500 + good) == [frame_of(SetLock(False), seq=3)]
    assert reader.garbled == 1


def test_a_frame_of_another_protocol_version_is_rejected() -> None:
    body = bytearray(encode_body(frame_of(SetLock(True), seq=1)))
    body[0] = 2
    body[-2:] = crc16_ccitt_false(bytes(body[:-2])).to_bytes(2, "big")
    with pytest.raises(FrameError, match="version"):
        decode_body(bytes(body))


# --- messages --------------------------------------------------------------------------------


def test_an_unknown_message_type_is_tolerated_as_unknown() -> None:
    assert unpack(0x7E, b"\x01\x02") == Unknown(0x7E, b"\x01\x02")


@pytest.mark.parametrize(
    ("msg_type", "payload", "complaint"),
    [
        (MsgType.SET_CONTACTOR, b"", "payload of 0 bytes"),
        (MsgType.SET_CONTACTOR, b"\x02", "expected 0 or 1"),
        (MsgType.SET_PWM, b"\x01\xe9\x03", "exceeds 1000"),
        (MsgType.SET_PWM, b"\x07\x00\x00", "mode"),
        (MsgType.PILOT, b"\x09\x01\x00\x00\x00\x00\x00\x00", "state"),
        (MsgType.LOCK, b"\x01\x01\x09", "result"),
        (MsgType.CONTACTOR, b"\x01\x05", "mirror"),
    ],
)
def test_a_payload_that_does_not_fit_its_type_is_a_message_error(
    msg_type: MsgType, payload: bytes, complaint: str
) -> None:
    with pytest.raises(MessageError, match=complaint):
        unpack(msg_type, payload)


def test_a_field_out_of_range_cannot_be_packed() -> None:
    with pytest.raises(ValueError):
        pack(Hello(70000, 1000))
    with pytest.raises(ValueError):
        encode_frame(Frame(MsgType.ACK, payload=bytes(MAX_PAYLOAD + 1)))
