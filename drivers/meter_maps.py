"""Register maps of DIN-rail energy meters, as data, and the arithmetic on them.

A `MeterMap` says where a meter keeps each quantity (`Quantity`): which register table
(input or holding), which address, how many 16-bit words, how the words encode the value
(type, word order, a raw value that means "not available") and the scale from the raw
number to the unit in the quantity's name (Wh, W, A, V, Hz). From that data this module
plans the reads (`MeterMap.plan_reads`: as few requests as the meter allows) and decodes
the answers (`MeterMap.decode`). The Modbus driver (drivers/modbus_meter.py) and the test
peer (simulator/modbus_meter_peer.py, which uses `RegisterSpec.encode`) share these maps;
because a wrong address would then cancel out between the two, the unit tests pin the
addresses to the published tables and the codecs to fixed byte patterns.

Addresses are protocol (0-based) addresses, as sent in the request PDU: "30001" in a
manual is address 0x0000 of the input registers.

This module must not do I/O and must not import pymodbus: it is importable (and unit
tested) on a machine without the `modbus` extra.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

#: The Modbus limit of a Read Holding/Input Registers request (Modbus Application
#: Protocol V1.1b3, sections 6.3 and 6.4: quantity 1 to 125).
MODBUS_MAX_READ_REGISTERS = 125


class RegisterKind(StrEnum):
    """Which register table a value lives in, and so which function code reads it."""

    INPUT = "input"  # function code 0x04
    HOLDING = "holding"  # function code 0x03

    @property
    def function_code(self) -> int:
        """The Modbus function code that reads this table."""
        return 0x04 if self is RegisterKind.INPUT else 0x03


class ValueType(StrEnum):
    """How the words of one value are to be read."""

    FLOAT32 = "float32"  # IEEE 754 single precision, two words
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"


class WordOrder(StrEnum):
    """Order of the 16-bit words of a multi-word value (bytes in a word are big-endian)."""

    BIG = "big"  # most significant word first ("ABCD")
    LITTLE = "little"  # least significant word first ("CDAB", Carlo Gavazzi)


_STRUCT: dict[ValueType, tuple[str, int]] = {
    ValueType.FLOAT32: ("f", 2),
    ValueType.INT16: ("h", 1),
    ValueType.UINT16: ("H", 1),
    ValueType.INT32: ("i", 2),
    ValueType.UINT32: ("I", 2),
    ValueType.INT64: ("q", 4),
    ValueType.UINT64: ("Q", 4),
}


class Quantity(StrEnum):
    """What a meter reports; the suffix is the unit the map's scale converts to."""

    ENERGY_IMPORT_WH = "energy_import_wh"
    ENERGY_EXPORT_WH = "energy_export_wh"
    POWER_W = "power_w"  # total active power, signed (negative = export)
    POWER_L1_W = "power_l1_w"
    POWER_L2_W = "power_l2_w"
    POWER_L3_W = "power_l3_w"
    CURRENT_L1_A = "current_l1_a"
    CURRENT_L2_A = "current_l2_a"
    CURRENT_L3_A = "current_l3_a"
    VOLTAGE_L1_V = "voltage_l1_v"  # line to neutral
    VOLTAGE_L2_V = "voltage_l2_v"
    VOLTAGE_L3_V = "voltage_l3_v"
    FREQUENCY_HZ = "frequency_hz"


PHASE_POWERS = (Quantity.POWER_L1_W, Quantity.POWER_L2_W, Quantity.POWER_L3_W)
PHASE_CURRENTS = (Quantity.CURRENT_L1_A, Quantity.CURRENT_L2_A, Quantity.CURRENT_L3_A)
PHASE_VOLTAGES = (Quantity.VOLTAGE_L1_V, Quantity.VOLTAGE_L2_V, Quantity.VOLTAGE_L3_V)


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where one value is and how to turn its words into a physical value.

    physical value = raw * scale; `not_available` is the raw value the meter sends when it
    has no value (ABB sends all ones, or the largest positive number for signed types).
    """

    kind: RegisterKind
    address: int
    value_type: ValueType
    scale: float = 1.0
    word_order: WordOrder = WordOrder.BIG
    not_available: int | None = None

    def __post_init__(self) -> None:
        """Reject specs that cannot be read; raises ValueError."""
        if not 0 <= self.address <= 0xFFFF - (self.word_count - 1):
            raise ValueError(f"address {self.address:#06x} outside the register space")
        if not (math.isfinite(self.scale) and self.scale != 0.0):
            raise ValueError(f"scale must be finite and non-zero, got {self.scale}")

    @property
    def word_count(self) -> int:
        """How many 16-bit registers the value occupies."""
        return _STRUCT[self.value_type][1]

    @property
    def end(self) -> int:
        """The address just past the value."""
        return self.address + self.word_count

    def _to_bytes(self, words: Sequence[int]) -> bytes:
        ordered = list(words) if self.word_order is WordOrder.BIG else list(reversed(words))
        return b"".join(word.to_bytes(2, "big") for word in ordered)

    def _from_bytes(self, data: bytes) -> list[int]:
        words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        return words if self.word_order is WordOrder.BIG else list(reversed(words))

    def decode(self, words: Sequence[int]) -> float | None:
        """The physical value of these words, None if the meter marks it not available.

        Raises ValueError for a wrong number of words or a word outside 0..0xFFFF.
        """
        if len(words) != self.word_count:
            raise ValueError(f"{self.value_type} needs {self.word_count} words, got {len(words)}")
        if any(not 0 <= word <= 0xFFFF for word in words):
            raise ValueError(f"register words must be 0..0xFFFF, got {list(words)}")
        code, _ = _STRUCT[self.value_type]
        raw: int | float = struct.unpack(f">{code}", self._to_bytes(words))[0]
        if isinstance(raw, float):
            return None if not math.isfinite(raw) else raw * self.scale
        if self.not_available is not None and raw == self.not_available:
            return None
        return raw * self.scale

    def encode(self, value: float) -> list[int]:
        """The words a meter sends for `value` (what a test peer serves).

        Raises ValueError when `value` does not fit the type at this scale.
        """
        code, _ = _STRUCT[self.value_type]
        raw = value / self.scale
        try:
            if self.value_type is ValueType.FLOAT32:
                data = struct.pack(f">{code}", raw)
            else:
                data = struct.pack(f">{code}", round(raw))
        except (struct.error, OverflowError) as exc:
            raise ValueError(
                f"{value} does not fit {self.value_type} at scale {self.scale}"
            ) from exc
        return self._from_bytes(data)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers from `address` of one table."""

    kind: RegisterKind
    address: int
    count: int

    @property
    def end(self) -> int:
        """The address just past the block."""
        return self.address + self.count

    def covers(self, spec: RegisterSpec) -> bool:
        """Whether every word of `spec` is in this block."""
        return spec.kind is self.kind and self.address <= spec.address and spec.end <= self.end


@dataclass(frozen=True, slots=True)
class MeterMap:
    """Where a meter model keeps each quantity, and how much it answers per request.

    `max_read_registers` is the most registers the meter returns for one request;
    `max_gap_registers` is the widest run of registers between two wanted values that
    may be read along (and thrown away) to save a request: the meter answers for those
    addresses, they are just not needed.
    """

    name: str
    title: str
    registers: Mapping[Quantity, RegisterSpec]
    max_read_registers: int = MODBUS_MAX_READ_REGISTERS
    max_gap_registers: int = 0
    sources: str = ""

    def __post_init__(self) -> None:
        """Reject maps that cannot be planned; raises ValueError."""
        if Quantity.ENERGY_IMPORT_WH not in self.registers:
            raise ValueError(f"map {self.name}: the import energy register is required")
        if not 1 <= self.max_read_registers <= MODBUS_MAX_READ_REGISTERS:
            raise ValueError(f"map {self.name}: max_read_registers must be 1..125")
        if self.max_gap_registers < 0:
            raise ValueError(f"map {self.name}: max_gap_registers must be >= 0")
        for kind in RegisterKind:
            specs = sorted(
                (s for s in self.registers.values() if s.kind is kind), key=lambda s: s.address
            )
            for before, after in itertools.pairwise(specs):
                if after.address < before.end:
                    raise ValueError(
                        f"map {self.name}: registers at {before.address:#06x} and "
                        f"{after.address:#06x} overlap"
                    )
            for spec in specs:
                if spec.word_count > self.max_read_registers:
                    raise ValueError(f"map {self.name}: a value is wider than one read")

    def plan_reads(self) -> tuple[ReadBlock, ...]:
        """The fewest read requests (within the meter's limits) that cover every register."""
        blocks: list[ReadBlock] = []
        for kind in RegisterKind:
            specs = sorted(
                (s for s in self.registers.values() if s.kind is kind), key=lambda s: s.address
            )
            start: int | None = None
            end = 0
            for spec in specs:
                if (
                    start is not None
                    and spec.address - end <= self.max_gap_registers
                    and spec.end - start <= self.max_read_registers
                ):
                    end = spec.end
                    continue
                if start is not None:
                    blocks.append(ReadBlock(kind, start, end - start))
                start, end = spec.address, spec.end
            if start is not None:
                blocks.append(ReadBlock(kind, start, end - start))
        return tuple(blocks)

    def decode(self, answers: Sequence[tuple[ReadBlock, Sequence[int]]]) -> dict[Quantity, float]:
        """Every available quantity from the answers to `plan_reads()`.

        Quantities the meter marks not available are left out. Raises ValueError when an
        answer has the wrong length or a register is not covered by any answer.
        """
        for block, words in answers:
            if len(words) != block.count:
                raise ValueError(
                    f"read of {block.count} registers at {block.address:#06x} "
                    f"answered with {len(words)}"
                )
        values: dict[Quantity, float] = {}
        for quantity, spec in self.registers.items():
            for block, words in answers:
                if block.covers(spec):
                    offset = spec.address - block.address
                    value = spec.decode(words[offset : offset + spec.word_count])
                    if value is not None:
                        values[quantity] = value
                    break
            else:
                raise ValueError(f"register of {quantity} at {spec.address:#06x} was not read")
        return values


def _float32_input(address: int, scale: float = 1.0) -> RegisterSpec:
    return RegisterSpec(RegisterKind.INPUT, address, ValueType.FLOAT32, scale)


# Eastron SDM630 Modbus V2 and SDM72D-M V2 share the layout of the first input registers:
# float32, most significant word first, V, A, W, Hz as is and energy in kWh.
_EASTRON: Mapping[Quantity, RegisterSpec] = MappingProxyType(
    {
        Quantity.VOLTAGE_L1_V: _float32_input(0x0000),
        Quantity.VOLTAGE_L2_V: _float32_input(0x0002),
        Quantity.VOLTAGE_L3_V: _float32_input(0x0004),
        Quantity.CURRENT_L1_A: _float32_input(0x0006),
        Quantity.CURRENT_L2_A: _float32_input(0x0008),
        Quantity.CURRENT_L3_A: _float32_input(0x000A),
        Quantity.POWER_L1_W: _float32_input(0x000C),
        Quantity.POWER_L2_W: _float32_input(0x000E),
        Quantity.POWER_L3_W: _float32_input(0x0010),
        Quantity.POWER_W: _float32_input(0x0034),
        Quantity.FREQUENCY_HZ: _float32_input(0x0046),
        Quantity.ENERGY_IMPORT_WH: _float32_input(0x0048, 1000.0),  # kWh
        Quantity.ENERGY_EXPORT_WH: _float32_input(0x004A, 1000.0),  # kWh
    }
)

SDM630 = MeterMap(
    name="sdm630",
    title="Eastron SDM630 Modbus (V2)",
    registers=_EASTRON,
    # 0x0000-0x004B in one request (76 registers), reading along the unused parameter
    # numbers between total power and frequency, as sdm_modbus does (batch 1).
    max_read_registers=80,
    max_gap_registers=40,
    sources=(
        "Eastron SDM630 Modbus protocol (input registers 30001-30075), as transcribed in "
        "merlokk/SmartHome lib/eastron.h and nmakel/sdm_modbus src/sdm_modbus/sdm.py. "
        "Not confirmed from the vendor document itself: the limit of 80 registers per "
        "request (Eastron's '40 parameters'); sdm_modbus reads 76 at once."
    ),
)

SDM72 = MeterMap(
    name="sdm72",
    title="Eastron SDM72D-M V2",
    registers=_EASTRON,
    max_read_registers=80,
    max_gap_registers=40,
    sources=(
        "Eastron SDM72D-M V2 manual as transcribed in volkszaehler/mbmd "
        "meters/rs485/sdm72v2.go and nmakel/sdm_modbus (class SDM72V2): same addresses as "
        "the SDM630. The first-generation SDM72D has only total power (0x0034) and the "
        "energy registers; per-phase values read from it are not documented (unconfirmed "
        "whether it answers them, so use this map with the V2 only)."
    ),
)

_ABB_NA_U16 = 0xFFFF
_ABB_NA_U32 = 0xFFFFFFFF
_ABB_NA_I32 = 0x7FFFFFFF
_ABB_NA_U64 = 0xFFFFFFFFFFFFFFFF


def _abb(address: int, value_type: ValueType, scale: float, not_available: int) -> RegisterSpec:
    return RegisterSpec(
        RegisterKind.HOLDING, address, value_type, scale, WordOrder.BIG, not_available
    )


# ABB B23/B24 (System pro M compact): holding registers, integers, most significant word
# first; energy in 0.01 kWh (= 10 Wh), V in 0.1 V, A in 0.01 A, W in 0.01 W, Hz in 0.01 Hz.
_ABB: Mapping[Quantity, RegisterSpec] = MappingProxyType(
    {
        Quantity.ENERGY_IMPORT_WH: _abb(0x5000, ValueType.UINT64, 10.0, _ABB_NA_U64),
        Quantity.ENERGY_EXPORT_WH: _abb(0x5004, ValueType.UINT64, 10.0, _ABB_NA_U64),
        Quantity.VOLTAGE_L1_V: _abb(0x5B00, ValueType.UINT32, 0.1, _ABB_NA_U32),
        Quantity.VOLTAGE_L2_V: _abb(0x5B02, ValueType.UINT32, 0.1, _ABB_NA_U32),
        Quantity.VOLTAGE_L3_V: _abb(0x5B04, ValueType.UINT32, 0.1, _ABB_NA_U32),
        Quantity.CURRENT_L1_A: _abb(0x5B0C, ValueType.UINT32, 0.01, _ABB_NA_U32),
        Quantity.CURRENT_L2_A: _abb(0x5B0E, ValueType.UINT32, 0.01, _ABB_NA_U32),
        Quantity.CURRENT_L3_A: _abb(0x5B10, ValueType.UINT32, 0.01, _ABB_NA_U32),
        Quantity.POWER_W: _abb(0x5B14, ValueType.INT32, 0.01, _ABB_NA_I32),
        Quantity.POWER_L1_W: _abb(0x5B16, ValueType.INT32, 0.01, _ABB_NA_I32),
        Quantity.POWER_L2_W: _abb(0x5B18, ValueType.INT32, 0.01, _ABB_NA_I32),
        Quantity.POWER_L3_W: _abb(0x5B1A, ValueType.INT32, 0.01, _ABB_NA_I32),
        Quantity.FREQUENCY_HZ: _abb(0x5B2C, ValueType.UINT16, 0.01, _ABB_NA_U16),
    }
)

_ABB_SOURCES = (
    "ABB B23/B24 user manual 2CMC485003M0201, chapter 9 (register table), as used by "
    "openWB/core packages/modules/common/b23.py (addresses, scales and the all-ones / "
    "max-positive 'not available' values); import and export active energy are uint64 "
    "(the signed int64 at 0x5008 is net energy, not read here). Not confirmed: the most "
    "registers per request (the Modbus limit of 125 is assumed); the plan needs 8 + 45."
)

ABB_B23 = MeterMap(
    name="abb_b23",
    title="ABB B23 (System pro M compact)",
    registers=_ABB,
    max_gap_registers=16,
    sources=_ABB_SOURCES,
)

ABB_B24 = MeterMap(
    name="abb_b24",
    title="ABB B24 (System pro M compact)",
    registers=_ABB,
    max_gap_registers=16,
    sources=_ABB_SOURCES + " The B24 shares the B23's register map.",
)


def _em340(address: int, value_type: ValueType, scale: float) -> RegisterSpec:
    return RegisterSpec(RegisterKind.HOLDING, address, value_type, scale, WordOrder.LITTLE)


# Carlo Gavazzi EM340: int32 with the least significant word first; V in 0.1 V, A in
# 0.001 A, W in 0.1 W, energy in 0.1 kWh (= 100 Wh), Hz as int16 in 0.1 Hz.
EM340 = MeterMap(
    name="em340",
    title="Carlo Gavazzi EM340",
    registers=MappingProxyType(
        {
            Quantity.VOLTAGE_L1_V: _em340(0x0000, ValueType.INT32, 0.1),
            Quantity.VOLTAGE_L2_V: _em340(0x0002, ValueType.INT32, 0.1),
            Quantity.VOLTAGE_L3_V: _em340(0x0004, ValueType.INT32, 0.1),
            Quantity.CURRENT_L1_A: _em340(0x000C, ValueType.INT32, 0.001),
            Quantity.CURRENT_L2_A: _em340(0x000E, ValueType.INT32, 0.001),
            Quantity.CURRENT_L3_A: _em340(0x0010, ValueType.INT32, 0.001),
            Quantity.POWER_L1_W: _em340(0x0012, ValueType.INT32, 0.1),
            Quantity.POWER_L2_W: _em340(0x0014, ValueType.INT32, 0.1),
            Quantity.POWER_L3_W: _em340(0x0016, ValueType.INT32, 0.1),
            Quantity.POWER_W: _em340(0x0028, ValueType.INT32, 0.1),
            Quantity.FREQUENCY_HZ: _em340(0x0033, ValueType.INT16, 0.1),
            Quantity.ENERGY_IMPORT_WH: _em340(0x0034, ValueType.INT32, 100.0),
            Quantity.ENERGY_EXPORT_WH: _em340(0x004E, ValueType.INT32, 100.0),
        }
    ),
    # Carlo Gavazzi protocol table 2.9-7: at most 50 words per request (default).
    max_read_registers=50,
    max_gap_registers=26,
    sources=(
        "Carlo Gavazzi 'EM300 Series and ET300 Series Communication Protocol' table 2.4-1, "
        "as transcribed in merbanan/homeassistant_em340_emu src/em340_emu/registers.py "
        "(also 50 words per request) and volkszaehler/mbmd meters/rs485/"
        "carlogavazzi-ex3x0.go; kWh(-) TOT at 0x004E agrees with victronenergy/"
        "dbus-modbus-client carlo_gavazzi.py. The meter answers function 0x03 and 0x04 "
        "alike; holding (0x03) is used here."
    ),
)

#: Every built-in map by the name a config gives in `map:`.
MAPS: Mapping[str, MeterMap] = MappingProxyType(
    {m.name: m for m in (SDM630, SDM72, ABB_B23, ABB_B24, EM340)}
)
