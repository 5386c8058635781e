"""Contract of IsolationMonitor (drivers/interfaces.py), run over every implementation.

Resistances are round kilo-ohms, which every IMD reports exactly; thresholds are taken
from the monitor under test, never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from drivers.interfaces import IsolationMonitor
from drivers.types import FaultCode, FaultEvent, IsolationReading, IsolationSelfTest
from tests.contract.conftest import EventRecorder, IsolationHarness


class Matching:
    """Equal to every event the predicate accepts (EventRecorder.wait_for compares by ==)."""

    def __init__(self, predicate: Callable[[object], bool]) -> None:
        self._predicate = predicate

    def __eq__(self, other: object) -> bool:
        return self._predicate(other)

    __hash__ = None  # type: ignore[assignment]


def fault(active: bool) -> Matching:
    """An ISOLATION_FAULT event in this state, whatever its detail says."""
    return Matching(
        lambda e: (
            isinstance(e, FaultEvent) and (e.code, e.active) == (FaultCode.ISOLATION_FAULT, active)
        )
    )


def reading(*, valid: bool, resistance_ohm: float | None = None) -> Matching:
    """A reading that is (not) valid, of `resistance_ohm` if given."""
    return Matching(
        lambda e: (
            isinstance(e, IsolationReading)
            and e.valid is valid
            and (resistance_ohm is None or math.isclose(e.resistance_ohm, resistance_ohm))
        )
    )


def self_test(*, passed: bool) -> Matching:
    return Matching(lambda e: isinstance(e, IsolationSelfTest) and e.passed is passed)


async def started(harness: IsolationHarness) -> EventRecorder[object]:
    recorder: EventRecorder[object] = EventRecorder()
    await harness.monitor.start(recorder)
    return recorder


def healthy_ohm(harness: IsolationHarness) -> float:
    """Well above the alarm threshold, in round kilo-ohms."""
    return math.ceil(harness.monitor.alarm_threshold_ohm * 20 / 1000) * 1000


async def test_isolation_monitor_implements_the_protocol(
    isolation_harness: IsolationHarness,
) -> None:
    monitor = isolation_harness.monitor
    assert isinstance(monitor, IsolationMonitor)
    assert math.isfinite(monitor.alarm_threshold_ohm) and monitor.alarm_threshold_ohm > 0


async def test_measuring_starts_only_when_asked_and_stops_when_told(
    isolation_harness: IsolationHarness,
) -> None:
    monitor = isolation_harness.monitor
    healthy = healthy_ohm(isolation_harness)
    await isolation_harness.set_resistance(healthy)
    recorder = await started(isolation_harness)
    await isolation_harness.until_measuring_at_hardware(False)
    before = len(recorder.events)
    await monitor.set_measuring(True)
    await monitor.set_measuring(True)
    await isolation_harness.until_measuring_at_hardware(True)
    measured = await recorder.wait_for(reading(valid=True, resistance_ohm=healthy))
    assert reading(valid=True) not in recorder.events[:before]
    await monitor.set_measuring(False)
    await isolation_harness.until_measuring_at_hardware(False)
    await recorder.wait_for(reading(valid=False), after=measured)


async def test_insulation_below_the_alarm_threshold_is_an_isolation_fault_that_clears(
    isolation_harness: IsolationHarness,
) -> None:
    monitor = isolation_harness.monitor
    low = math.floor(monitor.alarm_threshold_ohm / 2 / 1000) * 1000
    recorder = await started(isolation_harness)
    await monitor.set_measuring(True)
    await isolation_harness.set_resistance(low)
    raised = await recorder.wait_for(fault(True))
    await recorder.wait_for(reading(valid=True, resistance_ohm=low))
    await isolation_harness.set_resistance(healthy_ohm(isolation_harness))
    await recorder.wait_for(fault(False), after=raised)


async def test_insulation_above_the_alarm_threshold_raises_no_alarm(
    isolation_harness: IsolationHarness,
) -> None:
    healthy = healthy_ohm(isolation_harness)
    await isolation_harness.set_resistance(healthy)
    recorder = await started(isolation_harness)
    await isolation_harness.monitor.set_measuring(True)
    await recorder.wait_for(reading(valid=True, resistance_ohm=healthy))
    assert fault(True) not in recorder.events


async def test_a_healthy_device_passes_its_self_test(isolation_harness: IsolationHarness) -> None:
    recorder = await started(isolation_harness)
    await isolation_harness.monitor.start_self_test()
    await recorder.wait_for(self_test(passed=True))
    assert self_test(passed=False) not in recorder.events


async def test_a_failed_device_is_an_isolation_fault_and_fails_its_self_test(
    isolation_harness: IsolationHarness,
) -> None:
    recorder = await started(isolation_harness)
    await isolation_harness.fail_device(True)
    raised = await recorder.wait_for(fault(True))
    await isolation_harness.monitor.start_self_test()
    await recorder.wait_for(self_test(passed=False))
    assert self_test(passed=True) not in recorder.events
    await isolation_harness.fail_device(False)
    await recorder.wait_for(fault(False), after=raised)


async def test_stop_stops_measuring(isolation_harness: IsolationHarness) -> None:
    monitor = isolation_harness.monitor
    await started(isolation_harness)
    await monitor.set_measuring(True)
    await isolation_harness.until_measuring_at_hardware(True)
    await monitor.stop()
    await isolation_harness.until_measuring_at_hardware(False)
