"""Register maps as data (drivers/meter_maps.py): addresses, decoding and read planning."""

from __future__ import annotations

import itertools
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.meter_maps import (
    ABB_B23,
    EM340,
    MAPS,
    SDM630,
    MeterMap,
    Quantity,
    ReadBlock,
    RegisterKind,
    RegisterSpec,
    ValueType,
    WordOrder,
)

Q = Quantity
INPUT, HOLDING = RegisterKind.INPUT, RegisterKind.HOLDING


def test_the_five_common_din_rail_meters_have_maps() -> None:
    assert set(MAPS) == {"sdm630", "sdm72", "abb_b23", "abb_b24", "em340"}


@pytest.mark.parametrize(
    ("meter_map", "quantity", "kind", "address", "value_type", "scale"),
    [
        (SDM630, Q.VOLTAGE_L1_V, INPUT, 0x0000, ValueType.FLOAT32, 1.0),
        (SDM630, Q.CURRENT_L1_A, INPUT, 0x0006, ValueType.FLOAT32, 1.0),
        (SDM630, Q.POWER_L1_W, INPUT, 0x000C, ValueType.FLOAT32, 1.0),
        (SDM630, Q.POWER_W, INPUT, 0x0034, ValueType.FLOAT32, 1.0),
        (SDM630, Q.FREQUENCY_HZ, INPUT, 0x0046, ValueType.FLOAT32, 1.0),
        (SDM630, Q.ENERGY_IMPORT_WH, INPUT, 0x0048, ValueType.FLOAT32, 1000.0),
        (SDM630, Q.ENERGY_EXPORT_WH, INPUT, 0x004A, ValueType.FLOAT32, 1000.0),
        (ABB_B23, Q.ENERGY_IMPORT_WH, HOLDING, 0x5000, ValueType.UINT64, 10.0),
        (ABB_B23, Q.ENERGY_EXPORT_WH, HOLDING, 0x5004, ValueType.UINT64, 10.0),
        (ABB_B23, Q.VOLTAGE_L1_V, HOLDING, 0x5B00, ValueType.UINT32, 0.1),
        (ABB_B23, Q.CURRENT_L1_A, HOLDING, 0x5B0C, ValueType.UINT32, 0.01),
        (ABB_B23, Q.POWER_W, HOLDING, 0x5B14, ValueType.INT32, 0.01),
        (ABB_B23, Q.FREQUENCY_HZ, HOLDING, 0x5B2C, ValueType.UINT16, 0.01),
        (EM340, Q.VOLTAGE_L1_V, HOLDING, 0x0000, ValueType.INT32, 0.1),
        (EM340, Q.CURRENT_L1_A, HOLDING, 0x000C, ValueType.INT32, 0.001),
        (EM340, Q.POWER_L1_W, HOLDING, 0x0012, ValueType.INT32, 0.1),
        (EM340, Q.FREQUENCY_HZ, HOLDING, 0x0033, ValueType.INT16, 0.1),
        (EM340, Q.ENERGY_IMPORT_WH, HOLDING, 0x0034, ValueType.INT32, 100.0),
    ],
)
def test_registers_sit_where_the_manufacturer_publishes_them(
    meter_map: MeterMap,
    quantity: Quantity,
    kind: RegisterKind,
    address: int,
    value_type: ValueType,
    scale: float,
) -> None:
    spec = meter_map.registers[quantity]
    assert (spec.kind, spec.address, spec.value_type, spec.scale) == (
        kind,
        address,
        value_type,
        scale,
    )


def test_every_map_reads_all_quantities_of_a_three_phase_meter() -> None:
    for meter_map in MAPS.values():
        assert set(meter_map.registers) == set(Quantity), meter_map.name


def test_only_the_carlo_gavazzi_map_sends_the_low_word_first() -> None:
    orders = {m.name: {s.word_order for s in m.registers.values()} for m in MAPS.values()}
    assert orders.pop("em340") == {WordOrder.LITTLE}
    assert all(order == {WordOrder.BIG} for order in orders.values())


def test_float32_high_word_first_decodes_to_the_ieee_value() -> None:
    assert SDM630.registers[Q.VOLTAGE_L1_V].decode([0x4366, 0x0000]) == 230.0
    assert SDM630.registers[Q.ENERGY_IMPORT_WH].decode([0x3F80, 0x0000]) == 1000.0  # 1 kWh


def test_em340_int32_is_read_low_word_first() -> None:
    spec = EM340.registers[Q.CURRENT_L1_A]
    assert spec.decode([123_456 & 0xFFFF, 123_456 >> 16]) == pytest.approx(123.456)
    assert spec.encode(123.456) == [123_456 & 0xFFFF, 123_456 >> 16]


def test_abb_energy_is_a_uint64_in_hundredths_of_a_kwh() -> None:
    assert ABB_B23.registers[Q.ENERGY_IMPORT_WH].decode([0, 0, 0x0001, 0x86A0]) == 1_000_000.0


def test_signed_registers_decode_negative_values() -> None:
    assert ABB_B23.registers[Q.POWER_W].decode([0xFFFF, 0xFF38]) == pytest.approx(-2.0)
    assert EM340.registers[Q.POWER_L1_W].decode([0xFFF6, 0xFFFF]) == pytest.approx(-1.0)
    int64 = RegisterSpec(HOLDING, 0, ValueType.INT64, 10.0)
    assert int64.decode([0xFFFF] * 4) == -10.0


def test_values_the_meter_marks_not_available_decode_to_none() -> None:
    assert ABB_B23.registers[Q.VOLTAGE_L2_V].decode([0xFFFF, 0xFFFF]) is None
    assert ABB_B23.registers[Q.POWER_L2_W].decode([0x7FFF, 0xFFFF]) is None
    assert ABB_B23.registers[Q.FREQUENCY_HZ].decode([0xFFFF]) is None
    assert SDM630.registers[Q.VOLTAGE_L2_V].decode([0x7FC0, 0x0000]) is None  # NaN


def test_decoding_the_wrong_number_of_words_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 2 words"):
        SDM630.registers[Q.POWER_W].decode([0x4366])
    with pytest.raises(ValueError, match=r"0\.\.0xFFFF"):
        SDM630.registers[Q.POWER_W].decode([0x10000, 0])


def test_encoding_a_value_the_register_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        ABB_B23.registers[Q.FREQUENCY_HZ].encode(-50.0)
    with pytest.raises(ValueError, match="does not fit"):
        EM340.registers[Q.FREQUENCY_HZ].encode(5000.0)


_SPECS = [(m.name, q, s) for m in MAPS.values() for q, s in m.registers.items()]


@pytest.mark.parametrize(("map_name", "quantity", "spec"), _SPECS, ids=lambda v: str(v))
@settings(max_examples=30)
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_every_register_round_trips_a_plausible_value_within_its_resolution(
    map_name: str, quantity: Quantity, spec: RegisterSpec, fraction: float
) -> None:
    highest = {"energy": 9_000_000.0, "power": 40_000.0, "current": 80.0, "voltage": 300.0}
    kind = quantity.value.split("_")[0]
    value = 45.0 + fraction * 20.0 if kind == "frequency" else fraction * highest[kind]
    decoded = spec.decode(spec.encode(value))
    assert decoded is not None
    tolerance = 1e-6 * abs(value) if spec.value_type is ValueType.FLOAT32 else spec.scale / 2
    assert abs(decoded - value) <= tolerance + 1e-9, map_name


def test_each_meter_is_read_in_the_fewest_requests_it_allows() -> None:
    assert SDM630.plan_reads() == (ReadBlock(INPUT, 0x0000, 76),)
    assert MAPS["sdm72"].plan_reads() == (ReadBlock(INPUT, 0x0000, 76),)
    assert ABB_B23.plan_reads() == (ReadBlock(HOLDING, 0x5000, 8), ReadBlock(HOLDING, 0x5B00, 45))
    # The EM340 answers at most 50 words per request.
    assert EM340.plan_reads() == (ReadBlock(HOLDING, 0x0000, 42), ReadBlock(HOLDING, 0x0033, 29))


def test_decode_turns_the_answers_into_every_quantity() -> None:
    wanted = {
        Q.ENERGY_IMPORT_WH: 123_400.0,
        Q.ENERGY_EXPORT_WH: 5_600.0,
        Q.POWER_W: 11_000.0,
        Q.POWER_L1_W: 3_600.0,
        Q.POWER_L2_W: 3_700.0,
        Q.POWER_L3_W: -300.0,
        Q.CURRENT_L1_A: 16.0,
        Q.CURRENT_L2_A: 15.5,
        Q.CURRENT_L3_A: 15.25,
        Q.VOLTAGE_L1_V: 230.1,
        Q.VOLTAGE_L2_V: 229.9,
        Q.VOLTAGE_L3_V: 231.0,
        Q.FREQUENCY_HZ: 49.9,
    }
    for meter_map in MAPS.values():
        answers = []
        for block in meter_map.plan_reads():
            words = [0] * block.count
            for quantity, spec in meter_map.registers.items():
                if block.covers(spec):
                    at = spec.address - block.address
                    words[at : at + spec.word_count] = spec.encode(wanted[quantity])
            answers.append((block, words))
        decoded = meter_map.decode(answers)
        assert decoded.keys() == wanted.keys()
        for quantity, value in wanted.items():
            assert decoded[quantity] == pytest.approx(value), (meter_map.name, quantity)


def test_decode_refuses_an_answer_of_the_wrong_length() -> None:
    (block,) = SDM630.plan_reads()
    with pytest.raises(ValueError, match="answered with 75"):
        SDM630.decode([(block, [0] * 75)])


def test_decode_refuses_answers_that_miss_a_register() -> None:
    first, _ = EM340.plan_reads()
    with pytest.raises(ValueError, match="was not read"):
        EM340.decode([(first, [0] * first.count)])


def _map(
    registers: dict[Quantity, RegisterSpec],
    max_read_registers: int = 125,
    max_gap_registers: int = 0,
) -> MeterMap:
    return MeterMap(
        "test", "test", MappingProxyType(registers), max_read_registers, max_gap_registers
    )


def test_a_map_without_import_energy_is_refused() -> None:
    with pytest.raises(ValueError, match="import energy"):
        _map({Q.POWER_W: RegisterSpec(INPUT, 0, ValueType.FLOAT32)})


def test_a_map_with_overlapping_registers_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        _map(
            {
                Q.ENERGY_IMPORT_WH: RegisterSpec(INPUT, 0, ValueType.FLOAT32),
                Q.POWER_W: RegisterSpec(INPUT, 1, ValueType.FLOAT32),
            }
        )


def test_a_map_may_not_promise_more_than_a_modbus_read_carries() -> None:
    with pytest.raises(ValueError, match=r"1\.\.125"):
        _map(
            {Q.ENERGY_IMPORT_WH: RegisterSpec(INPUT, 0, ValueType.FLOAT32)}, max_read_registers=126
        )


@st.composite
def _random_maps(draw: st.DrawFn) -> MeterMap:
    types = list(ValueType)
    address = draw(st.integers(0, 50))
    registers: dict[Quantity, RegisterSpec] = {}
    for quantity in draw(st.permutations(list(Quantity))):
        kind = draw(st.sampled_from(list(RegisterKind)))
        spec = RegisterSpec(kind, address, draw(st.sampled_from(types)))
        registers[quantity] = spec
        address = spec.end + draw(st.integers(0, 30))
    return _map(
        registers,
        max_read_registers=draw(st.integers(4, 125)),
        max_gap_registers=draw(st.integers(0, 40)),
    )


@given(meter_map=_random_maps())
def test_a_plan_covers_every_register_within_the_limits_and_cannot_be_shortened(
    meter_map: MeterMap,
) -> None:
    plan = meter_map.plan_reads()
    for spec in meter_map.registers.values():
        assert sum(block.covers(spec) for block in plan) == 1
    for block in plan:
        assert 1 <= block.count <= meter_map.max_read_registers
        inside = sorted(
            (s for s in meter_map.registers.values() if block.covers(s)), key=lambda s: s.address
        )
        assert inside[0].address == block.address and inside[-1].end == block.end
        gaps = [b.address - a.end for a, b in itertools.pairwise(inside)]
        assert all(gap <= meter_map.max_gap_registers for gap in gaps)
    for before, after in itertools.pairwise(plan):
        if before.kind is after.kind:
            # Merging two neighbours would break a limit, else the plan was not minimal.
            assert (
                after.address - before.end > meter_map.max_gap_registers
                or after.end - before.address > meter_map.max_read_registers
            )
