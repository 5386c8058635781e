"""Contract harnesses for drivers.can_power: the real drivers, a virtual CAN bus, emulators.

The far ends are simulator/can_module_peer.py on python-can's `virtual` interface (a
fresh channel per harness): an Infypower module emulator whose output model runs on the
harness's fake clock, and a Bender iso165C-style IMD emulator. The drivers are built from
config options, as the agent builds them, with short poll and timeout periods so the
suites stay quick. Nothing is mocked at the wire.

CAN commands are unacknowledged frames: a question about what the module holds first
makes a reading, whose answer comes back only after every frame sent before it (one bus,
one sender thread, one emulator thread: the order holds).
"""

from __future__ import annotations

import math
from uuid import uuid4

from drivers.can_power import CanIsolationMonitor, CanPowerModule
from drivers.interfaces import IsolationMonitor, PowerModule
from drivers.registry import DriverContext
from simulator.can_module_peer import InfyModulePeer, Iso165cPeer
from tests.contract.conftest import (
    DC_CAPABILITIES,
    FakeClock,
    IsolationHarness,
    PowerModuleHarness,
)

ADDRESS = 3
#: Fast timing (the defaults are 1 s polls, 3 s timeouts, a 30 s self-test timeout).
POLL_INTERVAL_S = 0.02
TIMEOUT_S = 0.25
ALARM_THRESHOLD_OHM = 100_000.0


def _context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=DC_CAPABILITIES.max_current_a, phases=3)


def _channel() -> str:
    return f"cpagent-contract-{uuid4().hex}"


class CanPowerModuleHarness:
    def __init__(self, module: CanPowerModule, peer: InfyModulePeer, clock: FakeClock) -> None:
        self._module = module
        self.peer = peer
        self._clock = clock

    @property
    def module(self) -> PowerModule:
        return self._module

    async def let_time_pass(self, seconds: float) -> None:
        self._clock.now_s += seconds

    async def set_load(self, load_ohm: float | None) -> None:
        self.peer.set_load(load_ohm)

    async def overheat(self, active: bool) -> None:
        self.peer.over_temperature(active)

    async def fail_internally(self, active: bool) -> None:
        self.peer.set_flag("fault_alarm", active)

    async def setpoint_at_hardware(self) -> tuple[float, float]:
        await self._module.read()  # a barrier: answered after every frame sent before it
        return self.peer.setpoint_voltage_v, self.peer.setpoint_current_a

    async def until_output_at_hardware(self, on: bool) -> None:
        await self.peer.wait_until(lambda peer: peer.delivering == on)

    async def close(self) -> None:
        try:
            await self._module.stop()
        finally:
            self.peer.close()


async def can_power_module() -> PowerModuleHarness:
    channel, clock = _channel(), FakeClock()
    caps = DC_CAPABILITIES
    peer = InfyModulePeer(
        channel,
        address=ADDRESS,
        max_voltage_v=caps.max_voltage_v,
        min_voltage_v=caps.min_voltage_v,
        max_current_a=caps.max_current_a,
        rated_power_w=caps.max_power_w,
        ramp_v_per_s=100.0,
        # The model clock jumps seconds between two frames, which the emulated module's
        # watchdog (off after 10 s without a controller frame) would count as silence.
        watchdog_s=math.inf,
        monotonic=clock,
    ).open()
    options = {
        "interface": "virtual",
        "channel": channel,
        "address": ADDRESS,
        "max_voltage_v": caps.max_voltage_v,
        "min_voltage_v": caps.min_voltage_v,
        "max_current_a": caps.max_current_a,
        "max_power_w": caps.max_power_w,
        "poll_interval_s": POLL_INTERVAL_S,
        "timeout_s": TIMEOUT_S,
    }
    return CanPowerModuleHarness(CanPowerModule.from_options(options, _context()), peer, clock)


class CanIsolationHarness:
    def __init__(self, monitor: CanIsolationMonitor, peer: Iso165cPeer) -> None:
        self._monitor = monitor
        self.peer = peer

    @property
    def monitor(self) -> IsolationMonitor:
        return self._monitor

    async def set_resistance(self, resistance_ohm: float) -> None:
        self.peer.set(resistance_ohm=resistance_ohm)

    async def fail_device(self, active: bool) -> None:
        self.peer.set(system_failure=active)

    async def until_measuring_at_hardware(self, on: bool) -> None:
        await self.peer.wait_until(lambda peer: peer.measuring == on)

    async def close(self) -> None:
        try:
            await self._monitor.stop()
        finally:
            self.peer.close()


async def can_isolation_monitor() -> IsolationHarness:
    channel = _channel()
    peer = Iso165cPeer(channel, info_period_s=POLL_INTERVAL_S, self_test_s=0.05).open()
    options = {
        "interface": "virtual",
        "channel": channel,
        "alarm_threshold_ohm": ALARM_THRESHOLD_OHM,
        "warning_threshold_ohm": 500_000.0,
        "timeout_s": TIMEOUT_S,
        "self_test_timeout_s": 1.0,
    }
    return CanIsolationHarness(CanIsolationMonitor.from_options(options, _context()), peer)


POWER_MODULE_HARNESSES = [can_power_module]
ISOLATION_HARNESSES = [can_isolation_monitor]
