"""The CAN DC drivers against device emulators on python-can's virtual bus (real frames).

`CanPowerModule` talks to an `InfyModulePeer`, `CanIsolationMonitor` to an `Iso165cPeer`
(simulator/can_module_peer.py); the drivers are built through the registry from config
options, as the agent builds them. Faults are injected at the peer and must arrive as
FaultEvents on the loop thread, and clear by themselves when the peer recovers. Every bus
is a fresh virtual channel. Nothing sleeps: tests await events, or the peer's state, and
the peer's output model runs on a fake clock.

The agent core has no DC session yet, so there is no end-to-end test through the agent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar
from uuid import uuid4

import pytest

from drivers import registry
from drivers.can_link import CanLink
from drivers.can_power import CanIsolationMonitor, CanPowerModule
from drivers.interfaces import DriverError, IsolationMonitor, PowerModule
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import FaultCode, FaultEvent, IsolationReading, IsolationSelfTest
from simulator.can_module_peer import InfyModulePeer, Iso165cPeer

T = TypeVar("T")
ADDRESS = 3


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class Recorder(Generic[T]):
    """A sink that records events (and the thread they came on) and lets a test await one."""

    def __init__(self) -> None:
        self.events: list[T] = []
        self.threads: set[int] = set()
        self._arrived = asyncio.Event()

    def __call__(self, event: T) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())
        self._arrived.set()

    async def wait_for(self, predicate: Callable[[T], bool], *, after: int = 0) -> int:
        """The index of the first event at or after `after` matching `predicate`."""
        async with asyncio.timeout(5.0):  # a bound for a broken driver, not a pace
            while True:
                for index in range(after, len(self.events)):
                    if predicate(self.events[index]):
                        return index
                self._arrived.clear()
                await self._arrived.wait()

    def faults(self) -> list[FaultEvent]:
        return [e for e in self.events if isinstance(e, FaultEvent)]


def is_fault(code: FaultCode, active: bool, text: str = "") -> Callable[[object], bool]:
    def match(event: object) -> bool:
        return (
            isinstance(event, FaultEvent)
            and event.code == code
            and event.active is active
            and text in event.detail
        )

    return match


@pytest.fixture
def channel() -> str:
    return f"cpagent-test-{uuid4().hex}"


@pytest.fixture
def context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=100.0, phases=3)


def module_options(channel: str, **extra: Any) -> dict[str, Any]:
    return {
        "interface": "virtual",
        "channel": channel,
        "address": ADDRESS,
        "max_voltage_v": 1000,
        "max_current_a": 100,
        "max_power_w": 30_000,
        "min_voltage_v": 150,
        "poll_interval_s": 0.02,
        "timeout_s": 0.25,
        **extra,
    }


def imd_options(channel: str, **extra: Any) -> dict[str, Any]:
    return {
        "interface": "virtual",
        "channel": channel,
        "alarm_threshold_ohm": 100_000,
        "warning_threshold_ohm": 500_000,
        "timeout_s": 0.25,
        "self_test_timeout_s": 1.0,
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def peer(channel: str, clock: FakeClock) -> Iterator[InfyModulePeer]:
    with InfyModulePeer(channel, address=ADDRESS, ramp_v_per_s=100.0, monotonic=clock) as device:
        yield device


@pytest.fixture
async def module(
    peer: InfyModulePeer, channel: str, context: DriverContext
) -> AsyncIterator[CanPowerModule]:
    driver = registry.factory("power_module", "can")(module_options(channel), context)
    yield driver
    await driver.stop()


@pytest.fixture
async def faults(module: CanPowerModule) -> Recorder[FaultEvent]:
    recorder: Recorder[FaultEvent] = Recorder()
    await module.start(recorder)
    return recorder


@pytest.fixture
def imd_peer(channel: str) -> Iterator[Iso165cPeer]:
    with Iso165cPeer(channel, info_period_s=0.02, self_test_s=0.05) as device:
        yield device


@pytest.fixture
async def imd(
    imd_peer: Iso165cPeer, channel: str, context: DriverContext
) -> AsyncIterator[CanIsolationMonitor]:
    driver = registry.factory("isolation_monitor", "can")(imd_options(channel), context)
    yield driver
    await driver.stop()


@pytest.fixture
async def imd_events(imd: CanIsolationMonitor) -> Recorder[object]:
    recorder: Recorder[object] = Recorder()
    await imd.start(recorder)
    return recorder


async def switch_on(module: CanPowerModule, peer: InfyModulePeer, v: float, i: float) -> None:
    await module.set_output(v, i)
    await module.set_enabled(True)
    await peer.wait_until(lambda p: p.commanded_on and p.setpoint_voltage_v == v)


# --- the power module -----------------------------------------------------------------------


async def test_the_registry_builds_a_power_module(module: CanPowerModule) -> None:
    assert isinstance(module, PowerModule)
    assert module.capabilities.max_power_w == 30_000.0
    assert module.capabilities.min_voltage_v == 150.0


async def test_start_switches_the_output_off_then_polls_output_and_status(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    await peer.wait_until(lambda p: len(p.commands(0x03)) >= 2 and len(p.commands(0x04)) >= 2)
    first = peer.received[0]
    assert first.is_extended_id
    assert first.arbitration_id == 0x0A << 22 | 0x1A << 16 | ADDRESS << 8 | 0xF0
    assert bytes(first.data) == bytes([1, 0, 0, 0, 0, 0, 0, 0])
    assert all(bytes(m.data) == bytes(8) for m in peer.commands(0x03))


async def test_setpoints_reach_the_module_as_millivolts_and_milliamps(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    await module.set_output(400.0, 50.0)
    await peer.wait_until(lambda p: p.setpoint_voltage_v == 400.0)
    assert peer.setpoint_current_a == 50.0
    (frame,) = peer.commands(0x1C)
    assert frame.arbitration_id == 0x0A << 22 | 0x1C << 16 | ADDRESS << 8 | 0xF0
    assert bytes(frame.data) == bytes.fromhex("00061A800000C350")


async def test_the_same_setpoint_twice_leaves_the_module_as_once(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    for _ in range(2):
        await module.set_output(400.0, 50.0)
        await module.set_enabled(True)
    await peer.wait_until(lambda p: len(p.commands(0x1C)) == 2 and len(p.commands(0x1A)) == 3)
    assert (peer.setpoint_voltage_v, peer.setpoint_current_a, peer.commanded_on) == (
        400.0,
        50.0,
        True,
    )


async def test_measured_voltage_follows_the_ramp_to_the_setpoint(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer, clock: FakeClock
) -> None:
    await switch_on(module, peer, 400.0, 50.0)
    clock.now_s += 2.0  # 100 V/s
    reading = await module.read()
    assert (reading.voltage_v, reading.current_a, reading.output_on) == (200.0, 0.0, True)
    clock.now_s += 3.0
    assert (await module.read()).voltage_v == 400.0


async def test_a_load_is_limited_to_the_current_setpoint(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer, clock: FakeClock
) -> None:
    peer.set_load(4.0)  # 400 V would drive 100 A
    await switch_on(module, peer, 400.0, 50.0)
    clock.now_s += 5.0
    reading = await module.read()
    assert reading.current_a == 50.0
    assert reading.voltage_v == 200.0  # constant current: the voltage sags
    assert reading.temperature_c == 25.0


async def test_switching_off_reaches_the_module_and_the_reading_says_off(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer, clock: FakeClock
) -> None:
    await switch_on(module, peer, 400.0, 10.0)
    await module.set_enabled(False)
    await peer.wait_until(lambda p: not p.commanded_on)
    clock.now_s += 5.0
    reading = await module.read()
    assert not reading.output_on
    assert "dc_side_off" in reading.flags
    assert reading.voltage_v == 0.0


async def test_setpoints_beyond_the_capabilities_are_refused_and_not_sent(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    for voltage_v, current_a in [(1200.0, 10.0), (400.0, 120.0), (400.0, 100.0), (100.0, 1.0)]:
        with pytest.raises(DriverError):
            await module.set_output(voltage_v, current_a)
    await module.set_output(300.0, 100.0)  # exactly 30 kW
    await peer.wait_until(lambda p: p.setpoint_voltage_v == 300.0)
    assert len(peer.commands(0x1C)) == 1


async def test_the_module_s_capabilities_are_asked_for_until_answered_then_no_more(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    await peer.wait_until(lambda p: len(p.commands(0x0A)) >= 1)
    await module.read()  # answered after the 0x0A answer, which is therefore in
    assert module.reported_capabilities is not None
    assert module.reported_capabilities.max_power_w == 30_000.0
    polls = len(peer.commands(0x04))
    await peer.wait_until(lambda p: len(p.commands(0x04)) >= polls + 2)  # none in flight
    asked = len(peer.commands(0x0A))
    await peer.wait_until(lambda p: len(p.commands(0x04)) >= polls + 7)
    assert len(peer.commands(0x0A)) == asked


@pytest.mark.parametrize(
    ("inject", "code", "detail"),
    [
        (InfyModulePeer.over_temperature, FaultCode.OVER_TEMPERATURE, "over_temperature_alarm"),
        (InfyModulePeer.input_under_voltage, FaultCode.UNDER_VOLTAGE, "input_low_voltage_alarm"),
    ],
)
async def test_a_module_fault_is_a_fault_event_that_clears_by_itself(
    module: CanPowerModule,
    faults: Recorder[FaultEvent],
    peer: InfyModulePeer,
    inject: Callable[[InfyModulePeer, bool], None],
    code: FaultCode,
    detail: str,
) -> None:
    await switch_on(module, peer, 400.0, 10.0)
    inject(peer, True)
    raised = await faults.wait_for(is_fault(code, True, detail))
    assert not peer.delivering  # the module protects itself
    inject(peer, False)
    await faults.wait_for(is_fault(code, False), after=raised)
    assert peer.delivering  # still commanded on: it resumes
    assert faults.threads == {threading.get_ident()}  # the sink runs on the loop thread


async def test_a_silent_module_is_a_power_module_fault_and_read_raises(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    await module.read()
    peer.silence(True)
    raised = await faults.wait_for(
        is_fault(FaultCode.POWER_MODULE_FAULT, True, f"no answer from module {ADDRESS}")
    )
    with pytest.raises(DriverError):
        await module.read()
    peer.silence(False)
    await faults.wait_for(is_fault(FaultCode.POWER_MODULE_FAULT, False), after=raised)
    assert (await module.read()).output_on is False


async def test_garbled_answers_are_dropped_and_a_module_that_only_garbles_is_a_fault(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    peer.garble(True)
    with pytest.raises(DriverError, match="garbled answer"):
        await module.read()
    raised = await faults.wait_for(is_fault(FaultCode.POWER_MODULE_FAULT, True, "no answer"))
    assert module.garbled_frames > 0
    peer.garble(False)
    await faults.wait_for(is_fault(FaultCode.POWER_MODULE_FAULT, False), after=raised)


async def test_a_refused_read_fails_at_once(
    peer: InfyModulePeer, channel: str, context: DriverContext
) -> None:
    # Slow polls: no poll answer is in flight to stand in for the refused one.
    options = module_options(channel, poll_interval_s=5.0, timeout_s=10.0)
    module = registry.factory("power_module", "can")(options, context)
    await module.start(Recorder[FaultEvent]())
    try:
        await peer.wait_until(lambda p: len(p.commands(0x0A)) == 1)
        await module.read()  # after the first poll's answers
        peer.refuse(0x03, True)
        with pytest.raises(DriverError, match="refused command 0x03"):
            await module.read()
        peer.refuse(0x03, False)
        assert (await module.read()).voltage_v == 0.0
    finally:
        await module.stop()


async def test_a_restarted_module_reports_a_standing_fault_again(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    peer.over_temperature(True)
    await faults.wait_for(is_fault(FaultCode.OVER_TEMPERATURE, True))
    await module.stop()
    again: Recorder[FaultEvent] = Recorder()
    await module.start(again)
    await again.wait_for(is_fault(FaultCode.OVER_TEMPERATURE, True, "over_temperature_alarm"))


async def test_one_code_with_two_causes_clears_only_when_both_have(
    module: CanPowerModule, faults: Recorder[FaultEvent], peer: InfyModulePeer
) -> None:
    peer.set_flag("fault_alarm", True)
    await faults.wait_for(is_fault(FaultCode.POWER_MODULE_FAULT, True, "fault_alarm"))
    peer.silence(True)
    await peer.wait_until(lambda p: len(p.commands(0x04)) >= 30)  # > timeout_s of silence
    peer.silence(False)
    peer.set_flag("fault_alarm", False)
    await faults.wait_for(is_fault(FaultCode.POWER_MODULE_FAULT, False))
    assert [(e.code, e.active) for e in faults.faults()] == [
        (FaultCode.POWER_MODULE_FAULT, True),
        (FaultCode.POWER_MODULE_FAULT, False),
    ]


async def test_stop_switches_the_module_off_and_closes_the_bus(
    module: CanPowerModule,
    faults: Recorder[FaultEvent],
    peer: InfyModulePeer,
    context: DriverContext,
) -> None:
    await switch_on(module, peer, 400.0, 10.0)
    await module.stop()
    await peer.wait_until(lambda p: not p.commanded_on)
    (link,) = context.shared.values()
    assert isinstance(link, CanLink) and not link.is_open
    with pytest.raises(DriverError):
        await module.set_enabled(True)


# --- the isolation monitor ------------------------------------------------------------------


def readings(recorder: Recorder[object]) -> list[IsolationReading]:
    return [e for e in recorder.events if isinstance(e, IsolationReading)]


async def test_the_registry_builds_an_isolation_monitor(imd: CanIsolationMonitor) -> None:
    assert isinstance(imd, IsolationMonitor)
    assert imd.alarm_threshold_ohm == 100_000.0


async def test_start_unlocks_the_device_and_sets_its_thresholds(
    imd_peer: Iso165cPeer, channel: str, context: DriverContext
) -> None:
    options = imd_options(channel, alarm_threshold_ohm=150_000, warning_threshold_ohm=600_000)
    driver = registry.factory("isolation_monitor", "can")(options, context)
    await driver.start(Recorder[object]())
    try:
        await imd_peer.wait_until(
            lambda p: (
                not p.locked and p.alarm_threshold_kohm == 150 and p.warning_threshold_kohm == 600
            )
        )
    finally:
        await driver.stop()


async def test_readings_arrive_in_ohms_and_are_valid_only_while_measuring(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    first = await imd_events.wait_for(lambda e: isinstance(e, IsolationReading))
    assert readings(imd_events)[0] == IsolationReading(5_000_000.0, valid=False)
    await imd.set_measuring(True)
    await imd_events.wait_for(lambda e: e == IsolationReading(5_000_000.0, valid=True), after=first)
    await imd.set_measuring(False)
    await imd_peer.wait_until(lambda p: not p.measuring)


async def test_insulation_below_the_alarm_is_an_isolation_fault_that_clears(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    await imd.set_measuring(True)
    imd_peer.set(resistance_ohm=80_000)
    raised = await imd_events.wait_for(
        is_fault(FaultCode.ISOLATION_FAULT, True, "insulation 80000 ohm below alarm threshold")
    )
    imd_peer.set(resistance_ohm=2_000_000)
    await imd_events.wait_for(is_fault(FaultCode.ISOLATION_FAULT, False), after=raised)
    assert imd_events.threads == {threading.get_ident()}


async def test_below_the_warning_threshold_is_a_warning_not_a_fault(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    imd_peer.set(resistance_ohm=300_000)
    await imd.set_measuring(True)
    await imd_events.wait_for(lambda e: e == IsolationReading(300_000.0, True, warning=True))
    assert imd_events.faults() == []


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        ({"chassis_fault": True}, "earth (chassis) connection fault"),
        ({"system_failure": True}, "device failure"),
        ({"silent": True}, "no IMD_Info for 0.25 s"),
    ],
)
async def test_an_imd_that_cannot_vouch_for_the_insulation_is_an_isolation_fault(
    imd: CanIsolationMonitor,
    imd_events: Recorder[object],
    imd_peer: Iso165cPeer,
    state: dict[str, bool],
    detail: str,
) -> None:
    imd_peer.set(**state)
    raised = await imd_events.wait_for(is_fault(FaultCode.ISOLATION_FAULT, True, detail))
    imd_peer.set(**{name: False for name in state})
    await imd_events.wait_for(is_fault(FaultCode.ISOLATION_FAULT, False), after=raised)


async def test_a_self_test_of_a_healthy_device_passes(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    await imd.start_self_test()
    await imd_events.wait_for(lambda e: e == IsolationSelfTest(True))
    assert imd_peer.self_test_done


async def test_a_self_test_of_a_failing_device_fails(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    imd_peer.set(system_failure=True)
    await imd.start_self_test()
    await imd_events.wait_for(lambda e: isinstance(e, IsolationSelfTest) and not e.passed)


async def test_a_self_test_without_an_answer_fails_in_time(
    imd_peer: Iso165cPeer, channel: str, context: DriverContext
) -> None:
    options = imd_options(channel, self_test_timeout_s=0.2)
    driver = registry.factory("isolation_monitor", "can")(options, context)
    events: Recorder[object] = Recorder()
    await driver.start(events)
    try:
        imd_peer.set(silent=True)
        await driver.start_self_test()
        await events.wait_for(
            lambda e: e == IsolationSelfTest(False, "no self-test result in time")
        )
    finally:
        await driver.stop()


async def test_stop_stops_measuring_at_the_device(
    imd: CanIsolationMonitor, imd_events: Recorder[object], imd_peer: Iso165cPeer
) -> None:
    await imd.set_measuring(True)
    await imd_peer.wait_until(lambda p: p.measuring)
    await imd.stop()
    await imd_peer.wait_until(lambda p: not p.measuring)


# --- the shared bus and the options ---------------------------------------------------------


async def test_a_module_and_an_imd_share_one_bus(
    peer: InfyModulePeer, imd_peer: Iso165cPeer, channel: str, context: DriverContext
) -> None:
    module = registry.factory("power_module", "can")(module_options(channel), context)
    imd = registry.factory("isolation_monitor", "can")(imd_options(channel), context)
    assert len(context.shared) == 1
    imd_events: Recorder[object] = Recorder()
    await module.start(Recorder[FaultEvent]())
    await imd.start(imd_events)
    try:
        await imd.set_measuring(True)
        assert (await module.read()).output_on is False
        await imd_events.wait_for(lambda e: isinstance(e, IsolationReading) and e.valid)
    finally:
        await module.stop()
        assert next(iter(context.shared.values())).is_open  # the IMD still uses it
        await imd.stop()
    assert not next(iter(context.shared.values())).is_open


def test_two_bitrates_on_one_channel_are_refused(channel: str, context: DriverContext) -> None:
    registry.factory("power_module", "can")(module_options(channel), context)
    with pytest.raises(DriverOptionError) as caught:
        registry.factory("isolation_monitor", "can")(imd_options(channel, bitrate=500_000), context)
    assert caught.value.key == "bitrate"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"address": None}, "address"),
        ({"address": 63}, "address"),
        ({"address": "3"}, "address"),
        ({"max_power_w": None}, "max_power_w"),
        ({"max_voltage_v": -1}, "max_voltage_v"),
        ({"timeout_s": 0.01}, "timeout_s"),
        ({"bitrate": 125_000.5}, "bitrate"),
        ({"channel": ""}, "channel"),
        ({"interface": "no-such-interface"}, "interface"),
        ({"adress": 3}, "adress"),
    ],
)
def test_a_bad_module_option_is_refused_by_name(
    channel: str, context: DriverContext, change: dict[str, Any], key: str
) -> None:
    options = {k: v for k, v in {**module_options(channel), **change}.items() if v is not None}
    with pytest.raises(DriverOptionError) as caught:
        CanPowerModule.from_options(options, context)
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"alarm_threshold_ohm": 10_000}, "alarm_threshold_ohm"),
        ({"warning_threshold_ohm": 50_000}, "warning_threshold_ohm"),
        ({"self_test_timeout_s": 0}, "self_test_timeout_s"),
    ],
)
def test_a_bad_imd_option_is_refused_by_name(
    channel: str, context: DriverContext, change: dict[str, Any], key: str
) -> None:
    with pytest.raises(DriverOptionError) as caught:
        CanIsolationMonitor.from_options(imd_options(channel, **change), context)
    assert caught.value.key == key


async def test_a_bus_that_cannot_be_opened_is_a_driver_error(context: DriverContext) -> None:
    options = module_options("cpagent-no-such-can0", interface="socketcan")
    module = CanPowerModule.from_options(options, context)
    with pytest.raises(DriverError):
        await module.start(Recorder[FaultEvent]())
    assert not module.started
