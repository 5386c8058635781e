"""1/3-phase switching in the simulator: the plant's supply phases, the sim board's
`set_phases` (PhaseSwitchingBoard), and the core switching a charging EV through them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from agent.core.evse import ConnectorSpec, Evse
from agent.core.station import Station
from agent.store import Store
from drivers.interfaces import DriverError, PhaseSwitchingBoard
from drivers.types import BoardCapabilities, BoardEvent, ContactorEvent
from simulator.drivers import SimBoardSupport, SimPowerMeter
from simulator.ev import EvParameters, SimEv
from simulator.plant import PilotMode, Plant
from tests.fakes import FakeAuthorizer, FakeClock, settle, wait_until
from tests.unit.conftest import TAG

DUTY_16_A = 16.0 / 0.6


class Monotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def charging(plant: Plant, ev: SimEv) -> None:
    plant.plug_in(ev)
    plant.set_pilot(PilotMode.PWM, DUTY_16_A)
    plant.set_contactor(True)


def test_a_one_phase_supply_carries_a_three_phase_car_on_l1_only() -> None:
    clock = Monotonic()
    plant = Plant(monotonic=clock)
    plant.set_supply_phases(1)
    charging(plant, SimEv(EvParameters(phases=3)))
    assert plant.current_a == (16.0, 0.0, 0.0)
    clock.now_s = 3600.0
    plant.step()
    assert plant.energy_import_wh == pytest.approx(230.0 * 16.0)  # one phase for an hour


def test_switching_the_supply_back_to_three_phases_restores_the_cars_phases() -> None:
    plant = Plant(monotonic=Monotonic())
    plant.set_supply_phases(1)
    plant.set_supply_phases(3)
    charging(plant, SimEv(EvParameters(phases=3)))
    assert plant.current_a == (16.0, 16.0, 16.0)
    assert plant.supply_phases == 3


def test_the_plant_refuses_a_phase_count_other_than_one_or_three() -> None:
    with pytest.raises(ValueError):
        Plant(monotonic=Monotonic()).set_supply_phases(2)


def test_a_watcher_sees_every_change_of_the_power_path() -> None:
    plant = Plant(monotonic=Monotonic())
    seen: list[tuple[float, float, float]] = []
    stop = plant.watch(lambda: seen.append(plant.current_a))
    charging(plant, SimEv())
    plant.set_supply_phases(1)
    stop()
    plant.set_contactor(False)
    assert seen[-1] == (16.0, 0.0, 0.0)
    assert (16.0, 16.0, 16.0) in seen


def board(plant: Plant, *, can_switch: bool = True, phases: int = 3) -> SimBoardSupport:
    caps = BoardCapabilities(max_current_a=32.0, phases=phases, can_switch_phases=can_switch)
    return SimBoardSupport(plant, caps)


async def test_the_sim_board_switches_phases_with_the_contactor_open() -> None:
    plant = Plant(monotonic=Monotonic())
    sim = board(plant)
    assert isinstance(sim, PhaseSwitchingBoard)
    await sim.set_phases(1)
    assert plant.supply_phases == 1
    await sim.set_phases(1)  # idempotent
    await sim.set_phases(3)
    assert plant.supply_phases == 3


@pytest.mark.parametrize(
    ("can_switch", "phases", "asked", "closed"),
    [
        (False, 3, 1, False),  # no phase relay
        (True, 3, 2, False),  # no such count
        (True, 1, 3, False),  # more phases than the supply has
        (True, 3, 1, True),  # never under load
    ],
)
async def test_the_sim_board_refuses_what_its_hardware_could_not_do(
    can_switch: bool, phases: int, asked: int, closed: bool
) -> None:
    plant = Plant(monotonic=Monotonic())
    if closed:
        charging(plant, SimEv())
    with pytest.raises(DriverError):
        await board(plant, can_switch=can_switch, phases=phases).set_phases(asked)
    assert plant.supply_phases == 3


def near(currents: tuple[float, float, float], expected: tuple[float, float, float]) -> bool:
    """Whether the currents are those expected, to within the PWM duty's resolution."""
    return all(abs(a - b) < 0.1 for a, b in zip(currents, expected, strict=True))


@dataclass
class PhaseRig:
    clock: FakeClock
    plant: Plant
    station: Station
    evse: Evse
    contactor: list[bool]


@pytest.fixture
async def phase_rig() -> AsyncIterator[PhaseRig]:
    """A station whose one EVSE has a sim board with a phase relay, charging a car."""
    clock = FakeClock()
    store = Store(":memory:")
    plant = Plant(monotonic=clock.monotonic)
    station = Station(clock=clock, journal=store, settings=store)
    station.authorizer = FakeAuthorizer()
    evse = Evse(
        evse_id=1,
        connectors=(ConnectorSpec(1, "cType2", 32, 3),),
        board=board(plant),
        meter=SimPowerMeter(plant),
        lock=None,
        **station.evse_kwargs(),  # type: ignore[arg-type]
    )
    station.add_evse(evse)
    contactor: list[bool] = []

    def on_event(event: BoardEvent) -> None:
        if isinstance(event, ContactorEvent):
            contactor.append(event.closed)

    plant.subscribe(on_event)
    await station.start()
    plant.plug_in(SimEv())
    station.present_token(1, TAG)
    await wait_until(lambda: plant.current_a[0] > 0, "energy flows")
    yield PhaseRig(clock, plant, station, evse, contactor)
    await station.shutdown()
    await settle(5)
    store.close()


async def test_the_core_switches_a_charging_ev_to_one_phase_and_back(
    phase_rig: PhaseRig,
) -> None:
    rig = phase_rig
    assert rig.plant.current_a == pytest.approx((32.0, 32.0, 32.0), abs=0.1)
    rig.evse.apply_limit(16.0, phases=1)
    await wait_until(lambda: near(rig.plant.current_a, (16.0, 0.0, 0.0)), "one phase at 16 A")
    assert rig.plant.supply_phases == 1 and rig.evse.active_phases == 1
    assert rig.contactor[-2:] == [False, True]  # opened to switch, closed after

    rig.evse.apply_limit(16.0, phases=3)
    await wait_until(lambda: near(rig.plant.current_a, (16.0, 16.0, 16.0)), "three phases")
    assert rig.plant.supply_phases == 3
