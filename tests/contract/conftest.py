"""Harnesses for the driver contract suites: one factory per implementation.

Each contract suite runs over every implementation of its Protocol. An implementation
joins with a module tests/contract/harness_<driver>.py whose lists (BOARD_HARNESSES, ...)
are appended to the ones below at import: the
harness owns the driver and the far end it talks to (for the simulator a Plant and a car;
for a serial board a pty pair and a scripted MCU), and lets the suite act on that far end
("connect an EV", "jam the lock") and observe the hardware ("is the contactor closed?").

Events reach the suites through an EventRecorder, which the suites await instead of
sleeping, so drivers that deliver events a loop iteration later pass the same suite.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import pytest

from drivers.interfaces import (
    BoardSupport,
    ConnectorLock,
    IsolationMonitor,
    PowerMeter,
    PowerModule,
    TokenReader,
)
from drivers.types import BoardCapabilities, FaultCode, PowerModuleCapabilities
from simulator.drivers import SimBoardSupport, SimConnectorLock, SimPowerMeter, SimTokenReader
from simulator.drivers_dc import SimIsolationMonitor, SimPowerModule
from simulator.ev import SimEv
from simulator.plant import PilotMode, Plant

T = TypeVar("T")

EVENT_TIMEOUT_S = 2.0


class EventRecorder(Generic[T]):
    """A sink that records events and lets a test await one of them."""

    def __init__(self) -> None:
        self.events: list[T] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: T) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(self, event: T, *, after: int = 0) -> int:
        """Return the index of the first `event` at or after `after`, awaiting it if needed."""
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                for index in range(after, len(self.events)):
                    if self.events[index] == event:
                        return index
                self._arrived.clear()
                await self._arrived.wait()


class FakeClock:
    """A monotonic clock that moves only when the harness says so."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


# --- harness contracts ------------------------------------------------------------------


class BoardHarness(Protocol):
    """A BoardSupport implementation together with the far end of its pilot and contactor."""

    @property
    def board(self) -> BoardSupport: ...

    async def connect_ev(self) -> None:
        """Make the far end present a car that wants power (B; C on a valid PWM)."""

    async def contactor_closed_at_hardware(self) -> bool:
        """Whether the power path is really closed."""
        ...

    async def pilot_mode_at_hardware(self) -> str:
        """What is driven onto the pilot: "off" (+12 V), "pwm" or "f" (-12 V)."""
        ...

    async def close(self) -> None:
        """Release everything the harness opened."""


class MeterHarness(Protocol):
    """A PowerMeter implementation together with a load it measures."""

    @property
    def meter(self) -> PowerMeter: ...

    async def let_energy_flow(self, seconds: float) -> None:
        """Let the load draw power for `seconds` (real or simulated)."""

    async def silence_meter(self) -> None:
        """Make the meter stop answering (bus cut, device off)."""

    async def close(self) -> None:
        """Release everything the harness opened."""


class LockHarness(Protocol):
    """A ConnectorLock implementation together with its motor and feedback."""

    @property
    def lock(self) -> ConnectorLock: ...

    async def jam(self) -> None:
        """Block the lock mechanically so that it can no longer move."""

    async def close(self) -> None:
        """Release everything the harness opened."""


class ReaderHarness(Protocol):
    """A TokenReader implementation together with a way to present cards to it."""

    @property
    def reader(self) -> TokenReader: ...

    async def present(self, id_token: str) -> None:
        """Present the card `id_token` to the reader."""

    async def close(self) -> None:
        """Release everything the harness opened."""


class PowerModuleHarness(Protocol):
    """A PowerModule implementation together with its output, load and far end.

    The far end's output model runs on a clock the harness moves (`let_time_pass`); the
    driver's own timing (polls, timeouts) may run on real time.
    """

    @property
    def module(self) -> PowerModule: ...

    async def let_time_pass(self, seconds: float) -> None:
        """Move the output model's clock on by `seconds`."""

    async def set_load(self, load_ohm: float | None) -> None:
        """Connect a resistive load to the output (None: open circuit)."""

    async def overheat(self, active: bool) -> None:
        """Make the module report over-temperature, or cool it down."""

    async def fail_internally(self, active: bool) -> None:
        """Make the module report an internal fault of its own, or recover."""

    async def setpoint_at_hardware(self) -> tuple[float, float]:
        """The (voltage_v, current_a) setpoint the module holds, once sent commands arrived."""
        ...

    async def until_output_at_hardware(self, on: bool) -> None:
        """Return once the module's DC output is really on (off); TimeoutError if it never is."""

    async def close(self) -> None:
        """Release everything the harness opened."""


class IsolationHarness(Protocol):
    """An IsolationMonitor implementation together with the insulation it measures."""

    @property
    def monitor(self) -> IsolationMonitor: ...

    async def set_resistance(self, resistance_ohm: float) -> None:
        """Change the insulation resistance between the DC output and PE."""

    async def fail_device(self, active: bool) -> None:
        """Make the IMD report a failure of its own (its self-test then fails), or heal."""

    async def until_measuring_at_hardware(self, on: bool) -> None:
        """Return once the IMD is (is not) measuring; TimeoutError if it never is."""

    async def close(self) -> None:
        """Release everything the harness opened."""


# --- the simulator's harnesses ---------------------------------------------------------------


class SimBoardHarness:
    def __init__(self, capabilities: BoardCapabilities) -> None:
        self.plant = Plant(monotonic=FakeClock())
        self._board = SimBoardSupport(self.plant, capabilities)

    @property
    def board(self) -> BoardSupport:
        return self._board

    async def connect_ev(self) -> None:
        self.plant.plug_in(SimEv())

    async def contactor_closed_at_hardware(self) -> bool:
        return self.plant.contactor_closed

    async def pilot_mode_at_hardware(self) -> str:
        return str(self.plant.pilot_mode)

    async def close(self) -> None:
        if self._board.started:
            await self._board.stop()


async def sim_board() -> BoardHarness:
    return SimBoardHarness(BoardCapabilities(max_current_a=32.0))


async def sim_board_without_feedback() -> BoardHarness:
    return SimBoardHarness(BoardCapabilities(max_current_a=16.0, has_contactor_feedback=False))


class SimMeterHarness:
    def __init__(self) -> None:
        self._clock = FakeClock()
        self.plant = Plant(monotonic=self._clock)
        self.plant.plug_in(SimEv())
        self.plant.set_pilot(PilotMode.PWM, 50.0)
        self.plant.set_contactor(True)
        self._meter = SimPowerMeter(self.plant)

    @property
    def meter(self) -> PowerMeter:
        return self._meter

    async def let_energy_flow(self, seconds: float) -> None:
        self._clock.now_s += seconds

    async def silence_meter(self) -> None:
        self.plant.raise_fault(FaultCode.METER_LOST, "contract test")

    async def close(self) -> None:
        return None


async def sim_meter() -> MeterHarness:
    return SimMeterHarness()


class SimLockHarness:
    def __init__(self) -> None:
        self._lock = SimConnectorLock(Plant(monotonic=FakeClock()))

    @property
    def lock(self) -> ConnectorLock:
        return self._lock

    async def jam(self) -> None:
        self._lock.jammed = True

    async def close(self) -> None:
        return None


async def sim_lock() -> LockHarness:
    return SimLockHarness()


class SimReaderHarness:
    def __init__(self) -> None:
        self._reader = SimTokenReader(monotonic=FakeClock())

    @property
    def reader(self) -> TokenReader:
        return self._reader

    async def present(self, id_token: str) -> None:
        self._reader.tap(id_token)

    async def close(self) -> None:
        await self._reader.stop()


async def sim_reader() -> ReaderHarness:
    return SimReaderHarness()


#: The DC harnesses' power stage: 1000 V, 100 A, but 30 kW (so power limits bite).
DC_CAPABILITIES = PowerModuleCapabilities(
    max_voltage_v=1000.0, max_current_a=100.0, max_power_w=30_000.0, min_voltage_v=150.0
)


class SimPowerModuleHarness:
    def __init__(self) -> None:
        self._clock = FakeClock()
        self._module = SimPowerModule(DC_CAPABILITIES, ramp_v_per_s=100.0, monotonic=self._clock)

    @property
    def module(self) -> PowerModule:
        return self._module

    async def let_time_pass(self, seconds: float) -> None:
        self._clock.now_s += seconds

    async def set_load(self, load_ohm: float | None) -> None:
        self._module.set_load(load_ohm)

    async def overheat(self, active: bool) -> None:
        self._module.over_temperature(active)

    async def fail_internally(self, active: bool) -> None:
        self._module.inject_fault(FaultCode.POWER_MODULE_FAULT, active, "contract test")

    async def setpoint_at_hardware(self) -> tuple[float, float]:
        return self._module.setpoint_voltage_v, self._module.setpoint_current_a

    async def until_output_at_hardware(self, on: bool) -> None:
        if self._module.delivering != on:  # the model changes at once or never
            raise TimeoutError(f"simulated output is not {'on' if on else 'off'}")

    async def close(self) -> None:
        await self._module.stop()


async def sim_power_module() -> PowerModuleHarness:
    return SimPowerModuleHarness()


class SimIsolationHarness:
    def __init__(self) -> None:
        self._monitor = SimIsolationMonitor(alarm_threshold_ohm=100_000.0)

    @property
    def monitor(self) -> IsolationMonitor:
        return self._monitor

    async def set_resistance(self, resistance_ohm: float) -> None:
        self._monitor.set_resistance(resistance_ohm)

    async def fail_device(self, active: bool) -> None:
        self._monitor.set_device_failure(active)

    async def until_measuring_at_hardware(self, on: bool) -> None:
        if self._monitor.measuring != on:  # the model changes at once or never
            raise TimeoutError(f"simulated IMD is {'not ' if on else ''}measuring")

    async def close(self) -> None:
        await self._monitor.stop()


async def sim_isolation_monitor() -> IsolationHarness:
    return SimIsolationHarness()


# --- the implementation lists: real drivers append their factories here ----------------------

BOARD_HARNESSES: list[Callable[[], Awaitable[BoardHarness]]] = [
    sim_board,
    sim_board_without_feedback,
]
METER_HARNESSES: list[Callable[[], Awaitable[MeterHarness]]] = [sim_meter]
LOCK_HARNESSES: list[Callable[[], Awaitable[LockHarness]]] = [sim_lock]
READER_HARNESSES: list[Callable[[], Awaitable[ReaderHarness]]] = [sim_reader]
POWER_MODULE_HARNESSES: list[Callable[[], Awaitable[PowerModuleHarness]]] = [sim_power_module]
ISOLATION_HARNESSES: list[Callable[[], Awaitable[IsolationHarness]]] = [sim_isolation_monitor]


def _discover_harnesses() -> None:
    """Append the harnesses of every tests/contract/harness_*.py module.

    A real driver's harness module defines any of BOARD_HARNESSES, METER_HARNESSES,
    LOCK_HARNESSES, READER_HARNESSES, POWER_MODULE_HARNESSES, ISOLATION_HARNESSES (lists
    of async factories); they join the suites here, so adding a driver never edits this
    file.
    """
    for path in sorted(Path(__file__).parent.glob("harness_*.py")):
        module = importlib.import_module(f"tests.contract.{path.stem}")
        BOARD_HARNESSES.extend(getattr(module, "BOARD_HARNESSES", []))
        METER_HARNESSES.extend(getattr(module, "METER_HARNESSES", []))
        LOCK_HARNESSES.extend(getattr(module, "LOCK_HARNESSES", []))
        READER_HARNESSES.extend(getattr(module, "READER_HARNESSES", []))
        POWER_MODULE_HARNESSES.extend(getattr(module, "POWER_MODULE_HARNESSES", []))
        ISOLATION_HARNESSES.extend(getattr(module, "ISOLATION_HARNESSES", []))


_discover_harnesses()


def _factory_id(factory: Callable[[], object]) -> str:
    return factory.__name__


@pytest.fixture(params=BOARD_HARNESSES, ids=_factory_id)
async def board_harness(request: pytest.FixtureRequest) -> AsyncIterator[BoardHarness]:
    harness: BoardHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=METER_HARNESSES, ids=_factory_id)
async def meter_harness(request: pytest.FixtureRequest) -> AsyncIterator[MeterHarness]:
    harness: MeterHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=LOCK_HARNESSES, ids=_factory_id)
async def lock_harness(request: pytest.FixtureRequest) -> AsyncIterator[LockHarness]:
    harness: LockHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=READER_HARNESSES, ids=_factory_id)
async def reader_harness(request: pytest.FixtureRequest) -> AsyncIterator[ReaderHarness]:
    harness: ReaderHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=POWER_MODULE_HARNESSES, ids=_factory_id)
async def power_module_harness(
    request: pytest.FixtureRequest,
) -> AsyncIterator[PowerModuleHarness]:
    harness: PowerModuleHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=ISOLATION_HARNESSES, ids=_factory_id)
async def isolation_harness(request: pytest.FixtureRequest) -> AsyncIterator[IsolationHarness]:
    harness: IsolationHarness = await request.param()
    try:
        yield harness
    finally:
        await harness.close()
