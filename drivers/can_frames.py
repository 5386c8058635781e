"""CAN frames of the DC power path: Infypower V1.13 power modules and a Bender iso165C IMD.

Responsible for turning values into payload bytes and identifiers and back, exactly as
documented in docs/can-power-module.md (which cites where each fact comes from). Pure
functions and values only: no bus, no python-can, no clock, so they are tested byte for
byte and a laptop without python-can imports them.

Must not decide anything: which flags are faults is a table here (`FAULT_FLAGS`), but
when to poll, time out or report is the drivers' business (drivers/can_power.py).

* Infypower REG/CEG series, protocol V1.13: 29-bit identifiers, 8-byte big-endian
  payloads, 125 kbit/s.
* Bender iso165C: 11-bit IMD_Request 0x22 / IMD_Response 0x23 / cyclic IMD_Info 0x37,
  16-bit little-endian words.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum

from drivers.types import FaultCode, PowerModuleCapabilities


class FrameError(ValueError):
    """A frame whose payload does not decode (wrong length, impossible value)."""


# --- Infypower REG/CEG V1.13 frames ---------------------------------------------------------

CONTROLLER_ADDRESS = 0xF0
DEVICE_SINGLE = 0x0A  # "device number" field: controller <-> one module
DEVICE_GROUP = 0x0B  # controller <-> a module group
READ_REQUEST = bytes(8)  # every read command carries 8 zero bytes


class InfyCommand(IntEnum):
    """Command numbers (CAN ID bits 21-16) used by this driver."""

    READ_VI = 0x03
    READ_STATUS = 0x04
    READ_CAPABILITIES = 0x0A
    SET_ON_OFF = 0x1A
    SET_VI = 0x1C


#: The commands a module answers with data (the others are writes, not answered).
READ_COMMANDS = frozenset(
    {InfyCommand.READ_VI, InfyCommand.READ_STATUS, InfyCommand.READ_CAPABILITIES}
)


@dataclass(frozen=True, slots=True)
class InfyId:
    """The fields of a V1.13 29-bit identifier."""

    command: int
    destination: int
    source: int
    device: int = DEVICE_SINGLE
    error_code: int = 0  # in answers: 0 normal, 2 command invalid, 3 data invalid


def encode_infy_id(ident: InfyId) -> int:
    """The 29-bit identifier: error(28-26) device(25-22) command(21-16) dst(15-8) src(7-0)."""
    return (
        (ident.error_code & 0x07) << 26
        | (ident.device & 0x0F) << 22
        | (ident.command & 0x3F) << 16
        | (ident.destination & 0xFF) << 8
        | (ident.source & 0xFF)
    )


def decode_infy_id(arbitration_id: int) -> InfyId:
    """The fields of a 29-bit identifier."""
    return InfyId(
        command=(arbitration_id >> 16) & 0x3F,
        destination=(arbitration_id >> 8) & 0xFF,
        source=arbitration_id & 0xFF,
        device=(arbitration_id >> 22) & 0x0F,
        error_code=(arbitration_id >> 26) & 0x07,
    )


def encode_set_vi(voltage_v: float, current_a: float) -> bytes:
    """0x1C payload: voltage in mV and current in mA, each an unsigned 32-bit big-endian."""
    return struct.pack(">II", round(voltage_v * 1000), round(current_a * 1000))


def encode_on_off(on: bool) -> bytes:
    """0x1A payload: byte 0 is 0x00 for on, 0x01 for off; the rest is reserved (zero)."""
    return bytes([0x00 if on else 0x01]) + bytes(7)


def check_payload(data: bytes | bytearray) -> bytes:
    if len(data) != 8:
        raise FrameError(f"payload of {len(data)} bytes, V1.13 frames carry 8")
    return bytes(data)


def decode_vi(data: bytes | bytearray) -> tuple[float, float]:
    """0x03 answer: (voltage_v, current_a) as two IEEE 754 float32 big-endian."""
    voltage_v, current_a = struct.unpack(">ff", check_payload(data))
    if not (math.isfinite(voltage_v) and math.isfinite(current_a)):
        raise FrameError(f"non-finite reading {voltage_v} V, {current_a} A")
    return voltage_v, current_a


def decode_capabilities(data: bytes | bytearray) -> PowerModuleCapabilities:
    """0x0A answer: max V, min V (1 V), max current (0.1 A), rated power (10 W); u16 BE."""
    max_v, min_v, max_i, power = struct.unpack(">HHHH", check_payload(data))
    return PowerModuleCapabilities(
        max_voltage_v=float(max_v),
        max_current_a=max_i / 10,
        max_power_w=power * 10.0,
        min_voltage_v=float(min_v),
    )


#: 0x04 answer: (byte, bit) of each flag. Byte 7 is "state 0", 6 "state 1", 5 "state 2".
STATUS_FLAGS: dict[tuple[int, int], str] = {
    (7, 0): "output_short_current",
    (7, 4): "sleeping",
    (7, 5): "discharge_abnormal",
    (6, 0): "dc_side_off",
    (6, 1): "fault_alarm",
    (6, 2): "protection_alarm",
    (6, 3): "fan_fault_alarm",
    (6, 4): "over_temperature_alarm",
    (6, 5): "output_over_voltage_alarm",
    (6, 6): "walk_in_enable",
    (6, 7): "communication_interrupt_alarm",
    (5, 0): "power_limit_status",
    (5, 1): "id_repeat_alarm",
    (5, 2): "load_sharing_alarm",
    (5, 3): "input_phase_lost_alarm",
    (5, 4): "input_unbalanced_alarm",
    (5, 5): "input_low_voltage_alarm",
    (5, 6): "input_over_voltage_protection",
    (5, 7): "pfc_side_off",
}

#: Flags that are faults, and the code each becomes. The other flags are states
#: (dc_side_off, walk_in_enable, ...) or warnings the module rides through (fan, load
#: sharing, input unbalance); they are reported in PowerModuleReading.flags only.
FAULT_FLAGS: dict[str, FaultCode] = {
    "output_short_current": FaultCode.OVER_CURRENT,
    "discharge_abnormal": FaultCode.POWER_MODULE_FAULT,
    "fault_alarm": FaultCode.POWER_MODULE_FAULT,
    "protection_alarm": FaultCode.POWER_MODULE_FAULT,
    "over_temperature_alarm": FaultCode.OVER_TEMPERATURE,
    "output_over_voltage_alarm": FaultCode.OVER_VOLTAGE,
    "communication_interrupt_alarm": FaultCode.POWER_MODULE_FAULT,
    "id_repeat_alarm": FaultCode.POWER_MODULE_FAULT,
    "input_phase_lost_alarm": FaultCode.POWER_MODULE_FAULT,
    "input_low_voltage_alarm": FaultCode.UNDER_VOLTAGE,
    "input_over_voltage_protection": FaultCode.OVER_VOLTAGE,
}


@dataclass(frozen=True, slots=True)
class InfyStatus:
    """A decoded 0x04 answer."""

    group: int
    temperature_c: int
    flags: frozenset[str]

    @property
    def output_on(self) -> bool:
        """Whether the DC side is delivering (the module does not report dc_side_off)."""
        return "dc_side_off" not in self.flags


def decode_status(data: bytes | bytearray) -> InfyStatus:
    """0x04 answer: byte 2 group, byte 4 ambient temperature (int8, degC), bytes 5-7 flags."""
    payload = check_payload(data)
    flags = frozenset(
        name for (byte, bit), name in STATUS_FLAGS.items() if payload[byte] & (1 << bit)
    )
    temperature_c = struct.unpack_from(">b", payload, 4)[0]
    return InfyStatus(group=payload[2], temperature_c=temperature_c, flags=flags)


def fault_causes(flags: frozenset[str]) -> dict[FaultCode, list[str]]:
    """The fault codes the flags raise, each with the flag names behind it (sorted)."""
    causes: dict[FaultCode, list[str]] = {}
    for name in sorted(flags):
        if name in FAULT_FLAGS:
            causes.setdefault(FAULT_FLAGS[name], []).append(name)
    return causes


# --- Bender iso165C frames ------------------------------------------------------------------

IMD_REQUEST_ID = 0x22
IMD_RESPONSE_ID = 0x23
IMD_INFO_ID = 0x37


class ImdCommand(IntEnum):
    """IMD_Request command bytes used by this driver."""

    SELF_TEST = 0x21  # word 1: scenario, 1 = overall
    SET_ALARM_THRESHOLD = 0x28  # word 1: kOhm ("error threshold")
    SET_WARNING_THRESHOLD = 0x29  # word 1: kOhm
    LOCK = 0xCA  # word 1: 0 unlocked / 1 locked, word 2: password
    MEASUREMENT = 0xCB  # word 1: 1 enable / 0 disable


SELF_TEST_OVERALL = 1

# IMD_Info word 2 (D_IMC_STATUS) and word 3 (D_VIFC_STATUS) bits.
IMC_INSULATION_FAULT = 1 << 0
IMC_CHASSIS_FAULT = 1 << 1
IMC_SYSTEM_FAILURE = 1 << 2
IMC_SELF_TEST_RUNNING = 1 << 4
IMC_INSULATION_WARNING = 1 << 5
VIFC_MEASUREMENT_OFF = 1 << 0
VIFC_VALUE_OUTDATED = 1 << 8
VIFC_OVERALL_SELF_TEST_NOT_RUN = 1 << 12


def encode_imd_request(command: int, word1: int = 0, word2: int = 0) -> bytes:
    """IMD_Request payload: command byte, then two 16-bit little-endian words, zero-padded."""
    return struct.pack("<BHH", command, word1, word2) + bytes(3)


@dataclass(frozen=True, slots=True)
class ImdInfo:
    """A decoded IMD_Info frame."""

    resistance_kohm: int
    imc_status: int
    vifc_status: int

    @property
    def valid(self) -> bool:
        """A current measurement from a healthy device that is measuring."""
        return not (
            self.vifc_status & (VIFC_MEASUREMENT_OFF | VIFC_VALUE_OUTDATED)
            or self.imc_status & (IMC_SYSTEM_FAILURE | IMC_SELF_TEST_RUNNING)
        )


def decode_imd_info(data: bytes | bytearray) -> ImdInfo:
    """IMD_Info: word 1 R_iso (kOhm), word 2 D_IMC_STATUS, word 3 D_VIFC_STATUS; u16 LE."""
    if len(data) < 6:
        raise FrameError(f"IMD_Info of {len(data)} bytes, expected at least 6")
    resistance_kohm, imc, vifc = struct.unpack_from("<HHH", bytes(data))
    return ImdInfo(resistance_kohm, imc, vifc)
