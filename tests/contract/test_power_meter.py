"""Contract of PowerMeter (drivers/interfaces.py), run over every implementation."""

from __future__ import annotations

import math

import pytest

from drivers.interfaces import DriverError, PowerMeter
from tests.contract.conftest import MeterHarness


async def test_meter_implements_the_protocol(meter_harness: MeterHarness) -> None:
    assert isinstance(meter_harness.meter, PowerMeter)


async def test_reading_is_a_complete_sample(meter_harness: MeterHarness) -> None:
    sample = await meter_harness.meter.read()
    assert len(sample.current_a) == 3
    assert len(sample.voltage_v) == 3
    assert math.isfinite(sample.energy_import_wh)
    assert sample.energy_import_wh >= 0.0


async def test_energy_never_decreases_and_grows_under_load(
    meter_harness: MeterHarness,
) -> None:
    readings_wh = []
    for _ in range(6):
        readings_wh.append((await meter_harness.meter.read()).energy_import_wh)
        await meter_harness.let_energy_flow(60.0)
    assert readings_wh == sorted(readings_wh)
    assert readings_wh[-1] > readings_wh[0]


async def test_silent_meter_raises_driver_error(meter_harness: MeterHarness) -> None:
    await meter_harness.silence_meter()
    with pytest.raises(DriverError):
        await meter_harness.meter.read()
