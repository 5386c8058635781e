"""Contract of PowerModule (drivers/interfaces.py), run over every implementation.

The output is watched through `read()`, the contract's own window on it, while the
harness moves the output model's clock one step at a time; steps are bounded, so a
module that never gets there fails instead of hanging.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from drivers.interfaces import DriverError, PowerModule
from drivers.types import FaultCode, FaultEvent, PowerModuleCapabilities, PowerModuleReading
from tests.contract.conftest import EventRecorder, PowerModuleHarness

STEP_S = 0.5
MAX_STEPS = 200  # 100 s of model time: far beyond any ramp a harness sets up
SETTLE_S = 30.0  # once there, the output must stay there
SETPOINT_V = 400.0
LIMIT_A = 10.0


class Matching:
    """Equal to every event the predicate accepts (EventRecorder.wait_for compares by ==)."""

    def __init__(self, predicate: Callable[[object], bool]) -> None:
        self._predicate = predicate

    def __eq__(self, other: object) -> bool:
        return self._predicate(other)

    __hash__ = None  # type: ignore[assignment]


def fault(code: FaultCode, active: bool) -> Matching:
    """A FaultEvent with this code and state, whatever its detail says."""
    return Matching(lambda e: isinstance(e, FaultEvent) and (e.code, e.active) == (code, active))


async def started(harness: PowerModuleHarness) -> EventRecorder[object]:
    recorder: EventRecorder[object] = EventRecorder()
    await harness.module.start(recorder)
    return recorder


async def read_until(
    harness: PowerModuleHarness, predicate: Callable[[PowerModuleReading], bool]
) -> list[PowerModuleReading]:
    """Read, letting model time pass between readings, until `predicate` holds; all readings."""
    readings = [await harness.module.read()]
    for _ in range(MAX_STEPS):
        if predicate(readings[-1]):
            return readings
        await harness.let_time_pass(STEP_S)
        readings.append(await harness.module.read())
    raise AssertionError(f"never reached; last readings: {readings[-3:]}")


async def settled(harness: PowerModuleHarness) -> PowerModuleReading:
    """A reading after letting the output settle for SETTLE_S of model time."""
    await harness.let_time_pass(SETTLE_S)
    return await harness.module.read()


def near(value: float, target: float) -> bool:
    return math.isclose(value, target, rel_tol=0.01, abs_tol=0.5)


async def switch_on(harness: PowerModuleHarness, voltage_v: float, current_a: float) -> None:
    await harness.module.set_output(voltage_v, current_a)
    await harness.module.set_enabled(True)


async def test_power_module_implements_the_protocol(
    power_module_harness: PowerModuleHarness,
) -> None:
    module = power_module_harness.module
    assert isinstance(module, PowerModule)
    caps = module.capabilities
    assert isinstance(caps, PowerModuleCapabilities)
    assert 0 <= caps.min_voltage_v < caps.max_voltage_v
    assert caps.max_current_a > 0 and caps.max_power_w > 0


async def test_start_leaves_the_output_off(power_module_harness: PowerModuleHarness) -> None:
    await started(power_module_harness)
    await power_module_harness.let_time_pass(10.0)
    reading = await power_module_harness.module.read()
    assert reading.output_on is False
    assert reading.voltage_v == pytest.approx(0.0, abs=0.5)
    assert reading.current_a == pytest.approx(0.0, abs=0.1)
    await power_module_harness.until_output_at_hardware(False)


async def test_an_enabled_output_ramps_up_to_the_setpoint_without_overshoot(
    power_module_harness: PowerModuleHarness,
) -> None:
    await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, LIMIT_A)
    readings = await read_until(power_module_harness, lambda r: near(r.voltage_v, SETPOINT_V))
    readings.append(await settled(power_module_harness))
    voltages = [r.voltage_v for r in readings]
    assert voltages == sorted(voltages)  # approaching, never falling back
    assert max(voltages) <= SETPOINT_V * 1.01
    assert readings[-1].output_on is True
    await power_module_harness.until_output_at_hardware(True)


async def test_a_load_draws_no_more_than_the_current_limit(
    power_module_harness: PowerModuleHarness,
) -> None:
    limit_a = 50.0
    await power_module_harness.set_load(4.0)  # 400 V would drive 100 A through it
    await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, limit_a)
    readings = await read_until(power_module_harness, lambda r: near(r.current_a, limit_a))
    readings.append(await settled(power_module_harness))
    assert readings[-1].current_a == pytest.approx(limit_a, rel=0.01)
    assert max(r.current_a for r in readings) <= limit_a * 1.01
    assert readings[-1].voltage_v == pytest.approx(limit_a * 4.0, rel=0.02)  # the voltage sags


async def test_setpoints_beyond_the_capabilities_raise_and_are_not_carried_out(
    power_module_harness: PowerModuleHarness,
) -> None:
    module = power_module_harness.module
    caps = module.capabilities
    await started(power_module_harness)
    await module.set_output(SETPOINT_V, LIMIT_A)
    beyond = [
        (caps.max_voltage_v * 1.1, 1.0),
        (SETPOINT_V, caps.max_current_a * 1.1),
        (SETPOINT_V, -1.0),
        (math.nan, 1.0),
        (SETPOINT_V, math.inf),
    ]
    if caps.min_voltage_v > 0:
        beyond.append((caps.min_voltage_v / 2, 1.0))
    if caps.max_voltage_v * caps.max_current_a > caps.max_power_w:  # so in the harnesses
        beyond.append((caps.max_voltage_v, caps.max_power_w / caps.max_voltage_v * 1.5))
    for voltage_v, current_a in beyond:
        with pytest.raises(DriverError):
            await module.set_output(voltage_v, current_a)
    assert await power_module_harness.setpoint_at_hardware() == (SETPOINT_V, LIMIT_A)
    # At the limits is not beyond them.
    at_limits_v = max(caps.min_voltage_v, caps.max_power_w / caps.max_current_a)
    at_limits_a = min(caps.max_current_a, caps.max_power_w / at_limits_v)
    await module.set_output(at_limits_v, at_limits_a)
    assert await power_module_harness.setpoint_at_hardware() == pytest.approx(
        (at_limits_v, at_limits_a)
    )


async def test_set_output_and_set_enabled_are_idempotent(
    power_module_harness: PowerModuleHarness,
) -> None:
    module = power_module_harness.module
    await started(power_module_harness)
    await module.set_output(SETPOINT_V, LIMIT_A)
    await module.set_output(SETPOINT_V, LIMIT_A)
    await module.set_enabled(True)
    await module.set_enabled(True)  # a toggle would switch it off again
    await read_until(power_module_harness, lambda r: r.output_on and near(r.voltage_v, SETPOINT_V))
    assert await power_module_harness.setpoint_at_hardware() == (SETPOINT_V, LIMIT_A)
    await module.set_enabled(False)
    await module.set_enabled(False)
    await power_module_harness.until_output_at_hardware(False)
    await module.set_enabled(True)
    await power_module_harness.until_output_at_hardware(True)


async def test_switching_off_brings_the_output_down(
    power_module_harness: PowerModuleHarness,
) -> None:
    await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, LIMIT_A)
    await read_until(power_module_harness, lambda r: near(r.voltage_v, SETPOINT_V))
    await power_module_harness.module.set_enabled(False)
    last = (await read_until(power_module_harness, lambda r: near(r.voltage_v, 0.0)))[-1]
    assert last.output_on is False
    await power_module_harness.until_output_at_hardware(False)


Inject = Callable[[PowerModuleHarness, bool], Awaitable[None]]


@pytest.mark.parametrize(
    ("inject", "code"),
    [
        pytest.param(
            lambda h, on: h.overheat(on), FaultCode.OVER_TEMPERATURE, id="over_temperature"
        ),
        pytest.param(
            lambda h, on: h.fail_internally(on), FaultCode.POWER_MODULE_FAULT, id="internal"
        ),
    ],
)
async def test_a_module_fault_arrives_once_and_clears(
    power_module_harness: PowerModuleHarness, inject: Inject, code: FaultCode
) -> None:
    recorder = await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, LIMIT_A)
    await inject(power_module_harness, True)
    raised = await recorder.wait_for(fault(code, True))
    await inject(power_module_harness, True)  # still there: not news
    for _ in range(2):  # readings see the standing fault again
        await power_module_harness.module.read()
    await inject(power_module_harness, False)
    cleared = await recorder.wait_for(fault(code, False), after=raised)
    reported = [
        e.active
        for e in recorder.events[: cleared + 1]
        if isinstance(e, FaultEvent) and e.code == code
    ]
    assert reported == [True, False]


async def test_stop_switches_the_output_off(power_module_harness: PowerModuleHarness) -> None:
    await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, LIMIT_A)
    await power_module_harness.until_output_at_hardware(True)
    await power_module_harness.module.stop()
    await power_module_harness.until_output_at_hardware(False)


async def test_a_restart_keeps_the_output_off(power_module_harness: PowerModuleHarness) -> None:
    module = power_module_harness.module
    await started(power_module_harness)
    await switch_on(power_module_harness, SETPOINT_V, LIMIT_A)
    await power_module_harness.until_output_at_hardware(True)
    await module.stop()
    await started(power_module_harness)
    assert (await module.read()).output_on is False
    await power_module_harness.until_output_at_hardware(False)
