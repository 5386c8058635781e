"""CAN frames of the DC power path (drivers/can_frames.py), byte for byte.

Reference captures are the ones EVerest's InfyPower module uses for its vcan simulation
(modules/HardwareDrivers/PowerSupplies/InfyPower/wireshark/sim_module0_responses.sh), so
the decoding agrees with an independent implementation of V1.13, not only with itself.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.can_frames import (
    FAULT_FLAGS,
    IMC_INSULATION_FAULT,
    IMC_SELF_TEST_RUNNING,
    IMC_SYSTEM_FAILURE,
    STATUS_FLAGS,
    VIFC_MEASUREMENT_OFF,
    VIFC_VALUE_OUTDATED,
    FrameError,
    ImdCommand,
    InfyCommand,
    InfyId,
    decode_capabilities,
    decode_imd_info,
    decode_infy_id,
    decode_status,
    decode_vi,
    encode_imd_request,
    encode_infy_id,
    encode_on_off,
    encode_set_vi,
    fault_causes,
)
from drivers.types import FaultCode

# --- Infypower V1.13 ----------------------------------------------------------------------


@given(
    command=st.integers(0, 0x3F),
    destination=st.integers(0, 0xFF),
    source=st.integers(0, 0xFF),
    device=st.integers(0, 0x0F),
    error_code=st.integers(0, 0x07),
)
def test_identifier_fields_survive_a_round_trip_within_29_bits(
    command: int, destination: int, source: int, device: int, error_code: int
) -> None:
    ident = InfyId(command, destination, source, device, error_code)
    arbitration_id = encode_infy_id(ident)
    assert arbitration_id < 1 << 29
    assert decode_infy_id(arbitration_id) == ident


def test_identifier_layout_matches_a_captured_request_and_answer() -> None:
    # Controller 0xF0 asks module 0 for V/I: 028300F0; module 0 answers: 0283F000.
    request = InfyId(InfyCommand.READ_VI, destination=0x00, source=0xF0)
    assert encode_infy_id(request) == 0x028300F0
    answer = decode_infy_id(0x0283F000)
    assert (answer.command, answer.destination, answer.source) == (0x03, 0xF0, 0x00)
    assert answer.device == 0x0A and answer.error_code == 0


def test_an_answer_with_an_error_code_says_so_in_the_top_bits() -> None:
    assert decode_infy_id(0x0A83F000).error_code == 2  # command invalid


def test_setpoints_are_millivolts_and_milliamps_big_endian() -> None:
    assert encode_set_vi(500.0, 10.0) == bytes.fromhex("0007A12000002710")
    assert encode_set_vi(0.0, 0.0) == bytes(8)
    assert encode_set_vi(750.5, 33.333) == struct.pack(">II", 750_500, 33_333)


def test_on_is_zero_and_off_is_one_in_the_first_byte() -> None:
    assert encode_on_off(True) == bytes(8)
    assert encode_on_off(False) == bytes([1, 0, 0, 0, 0, 0, 0, 0])


def test_output_reading_is_two_big_endian_floats() -> None:
    assert decode_vi(bytes.fromhex("43FA000040600000")) == (500.0, 3.5)


def test_capabilities_are_scaled_volts_tenths_of_amps_and_tens_of_watts() -> None:
    caps = decode_capabilities(bytes.fromhex("01F400C803E803E8"))
    assert caps.max_voltage_v == 500.0
    assert caps.min_voltage_v == 200.0
    assert caps.max_current_a == 100.0
    assert caps.max_power_w == 10_000.0


def test_captured_status_is_a_healthy_module_at_27_degrees_with_walk_in() -> None:
    status = decode_status(bytes.fromhex("000000021B004000"))
    assert status.temperature_c == 27
    assert status.flags == {"walk_in_enable"}
    assert status.output_on
    assert fault_causes(status.flags) == {}


def test_negative_ambient_temperature_is_signed() -> None:
    assert decode_status(bytes([0, 0, 0, 0, 0xF6, 0, 0, 0])).temperature_c == -10


@pytest.mark.parametrize(("position", "name"), list(STATUS_FLAGS.items()))
def test_each_status_flag_has_its_own_bit(position: tuple[int, int], name: str) -> None:
    payload = bytearray(8)
    byte, bit = position
    payload[byte] = 1 << bit
    assert decode_status(payload).flags == {name}


def test_dc_side_off_means_the_output_is_off() -> None:
    assert not decode_status(bytes([0, 0, 0, 0, 25, 0, 0x01, 0])).output_on


@pytest.mark.parametrize(
    ("flag", "code"),
    [
        ("over_temperature_alarm", FaultCode.OVER_TEMPERATURE),
        ("input_low_voltage_alarm", FaultCode.UNDER_VOLTAGE),
        ("input_over_voltage_protection", FaultCode.OVER_VOLTAGE),
        ("output_over_voltage_alarm", FaultCode.OVER_VOLTAGE),
        ("output_short_current", FaultCode.OVER_CURRENT),
        ("fault_alarm", FaultCode.POWER_MODULE_FAULT),
        ("input_phase_lost_alarm", FaultCode.POWER_MODULE_FAULT),
    ],
)
def test_fault_flags_become_their_fault_code(flag: str, code: FaultCode) -> None:
    assert fault_causes(frozenset({flag})) == {code: [flag]}


@pytest.mark.parametrize(
    "flag", ["fan_fault_alarm", "load_sharing_alarm", "walk_in_enable", "dc_side_off"]
)
def test_states_and_warnings_are_not_faults(flag: str) -> None:
    assert fault_causes(frozenset({flag})) == {}


def test_two_flags_of_one_code_are_one_fault_naming_both() -> None:
    causes = fault_causes(frozenset({"protection_alarm", "fault_alarm", "over_temperature_alarm"}))
    assert causes == {
        FaultCode.POWER_MODULE_FAULT: ["fault_alarm", "protection_alarm"],
        FaultCode.OVER_TEMPERATURE: ["over_temperature_alarm"],
    }


def test_every_fault_flag_is_a_status_flag() -> None:
    assert set(FAULT_FLAGS) <= set(STATUS_FLAGS.values())


@pytest.mark.parametrize("decode", [decode_vi, decode_status, decode_capabilities])
@pytest.mark.parametrize("length", [0, 3, 7, 9])
def test_a_payload_that_is_not_8_bytes_is_a_frame_error(decode: object, length: int) -> None:
    with pytest.raises(FrameError):
        decode(bytes(length))  # type: ignore[operator]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_reading_is_a_frame_error(value: float) -> None:
    with pytest.raises(FrameError):
        decode_vi(struct.pack(">ff", value, 1.0))


# --- Bender iso165C -------------------------------------------------------------------------


def test_imd_request_is_command_then_little_endian_words() -> None:
    assert encode_imd_request(ImdCommand.SET_ALARM_THRESHOLD, 100) == bytes(
        [0x28, 100, 0, 0, 0, 0, 0, 0]
    )
    assert encode_imd_request(ImdCommand.LOCK, 1, 0xFFFF) == bytes(
        [0xCA, 1, 0, 0xFF, 0xFF, 0, 0, 0]
    )
    assert encode_imd_request(ImdCommand.SELF_TEST, 1)[:3] == bytes([0x21, 1, 0])


def test_imd_info_words_are_little_endian() -> None:
    info = decode_imd_info(bytes([0x88, 0x13, 0x21, 0x00, 0x01, 0x10, 0, 0]))
    assert info.resistance_kohm == 5000
    assert info.imc_status == 0x0021
    assert info.vifc_status == 0x1001


def test_an_imd_info_shorter_than_three_words_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_imd_info(bytes(5))


@pytest.mark.parametrize(
    ("imc", "vifc", "valid"),
    [
        (0, 0, True),
        (IMC_INSULATION_FAULT, 0, True),  # a valid measurement of a bad insulation
        (0, VIFC_MEASUREMENT_OFF, False),
        (0, VIFC_VALUE_OUTDATED, False),
        (IMC_SYSTEM_FAILURE, 0, False),
        (IMC_SELF_TEST_RUNNING, 0, False),
    ],
)
def test_a_measurement_is_valid_only_from_a_healthy_measuring_device(
    imc: int, vifc: int, valid: bool
) -> None:
    assert decode_imd_info(struct.pack("<HHH", 120, imc, vifc)).valid is valid
