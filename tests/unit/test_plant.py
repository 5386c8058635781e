"""Physics of the simulated plant and car, driven by a fake monotonic clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.interfaces import DriverError
from drivers.types import (
    BoardCapabilities,
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
)
from simulator.drivers import SimBoardSupport, SimPowerMeter
from simulator.ev import EvParameters, SimEv
from simulator.plant import PilotMode, Plant, offered_current_a

# 16 A per phase (IEC 61851-1 Table A.8: duty = current / 0.6).
DUTY_16_A = 16.0 / 0.6
DUTY_32_A = 32.0 / 0.6


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_plant(clock: FakeClock, **kwargs: object) -> tuple[Plant, list[BoardEvent]]:
    plant = Plant(monotonic=clock, **kwargs)  # type: ignore[arg-type]
    events: list[BoardEvent] = []
    plant.subscribe(events.append)
    return plant, events


def charging_plant(
    clock: FakeClock, ev: SimEv | None = None, duty_percent: float = DUTY_16_A, **kwargs: object
) -> tuple[Plant, SimEv, list[BoardEvent]]:
    """A plant with a car plugged in, PWM on and the contactor closed."""
    plant, events = make_plant(clock, **kwargs)
    car = ev if ev is not None else SimEv()
    plant.plug_in(car)
    plant.set_pilot(PilotMode.PWM, duty_percent)
    plant.set_contactor(True)
    events.clear()
    return plant, car, events


def pilot_events(events: list[BoardEvent]) -> list[PilotState]:
    return [e.state for e in events if isinstance(e, PilotEvent)]


# --- offered current (IEC 61851-1 Table A.8) ----------------------------------------------


@pytest.mark.parametrize(
    ("duty_percent", "expected_a"),
    [
        (5.0, 0.0),  # digital communication only
        (8.0, 6.0),
        (9.0, 6.0),
        (10.0, 6.0),
        (DUTY_32_A, 32.0),
        (85.0, 51.0),
        (90.0, 65.0),
        (96.0, 80.0),
        (98.0, 0.0),
        (100.0, 0.0),
    ],
)
def test_offered_current_follows_duty_table(duty_percent: float, expected_a: float) -> None:
    assert offered_current_a(duty_percent) == pytest.approx(expected_a)


@pytest.mark.parametrize(("duty_percent", "expected_a"), [(10.0, 6.0), (53.33, 32.0), (96.0, 80.0)])
def test_charge_current_follows_the_duty(
    clock: FakeClock, duty_percent: float, expected_a: float
) -> None:
    plant, _, _ = charging_plant(
        clock, SimEv(EvParameters(max_current_a=80.0)), duty_percent=duty_percent
    )
    assert plant.current_a == pytest.approx((expected_a,) * 3, abs=0.01)


def test_charge_current_is_capped_by_the_ev_maximum(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock, SimEv(EvParameters(max_current_a=16.0)), duty_percent=96.0)
    assert plant.current_a == pytest.approx((16.0, 16.0, 16.0))


def test_single_phase_ev_draws_on_l1_only(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock, SimEv(EvParameters(phases=1)))
    assert plant.current_a == pytest.approx((16.0, 0.0, 0.0))
    assert plant.power_w == pytest.approx(230.0 * 16.0)


def test_no_power_without_closed_contactor(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock)
    plant.set_contactor(False)
    clock.advance(3600)
    plant.step()
    assert plant.pilot_state is PilotState.C
    assert plant.power_w == 0.0
    assert plant.energy_import_wh == 0.0


# --- energy and state of charge -------------------------------------------------------------


def test_energy_is_power_times_scaled_time(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock, time_scale=10.0)
    assert plant.power_w == pytest.approx(3 * 230.0 * 16.0)
    clock.advance(36.0)  # 360 simulated seconds
    plant.step()
    assert plant.energy_import_wh == pytest.approx(11040.0 * 360.0 / 3600.0)


def test_soc_rises_by_energy_over_capacity(clock: FakeClock) -> None:
    plant, car, _ = charging_plant(clock, SimEv(EvParameters(battery_wh=40000.0, soc_percent=20)))
    clock.advance(3600.0)
    plant.step()
    assert plant.energy_import_wh == pytest.approx(11040.0)
    assert car.soc_percent == pytest.approx(20.0 + 11040.0 / 40000.0 * 100.0)


def test_energy_is_integrated_up_to_each_change(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock)
    clock.advance(600.0)
    plant.set_contactor(False)  # no step() before: the command must integrate first
    clock.advance(600.0)
    plant.step()
    assert plant.energy_import_wh == pytest.approx(11040.0 / 6.0)


def test_ev_pause_integrates_before_it_takes_effect(clock: FakeClock) -> None:
    plant, car, _ = charging_plant(clock)
    clock.advance(600.0)
    car.pause()
    clock.advance(600.0)
    plant.step()
    assert plant.energy_import_wh == pytest.approx(11040.0 / 6.0)


def test_charge_current_tapers_near_full(clock: FakeClock) -> None:
    car = SimEv(EvParameters(soc_percent=90.0))
    assert car.charge_current_a(32.0) == pytest.approx(32.0 * 0.55)
    assert SimEv(EvParameters(soc_percent=79.0)).charge_current_a(32.0) == 32.0
    plant, _, _ = charging_plant(clock, car, duty_percent=DUTY_32_A)
    assert plant.current_a == pytest.approx((17.6, 17.6, 17.6), abs=0.01)


def test_full_ev_goes_to_b_and_stops_drawing(clock: FakeClock) -> None:
    plant, car, events = charging_plant(clock, SimEv(EvParameters(soc_percent=99.9)))
    clock.advance(3600.0)
    plant.step()
    plant.step()
    assert pilot_events(events) == [PilotState.B]
    assert car.soc_percent == pytest.approx(100.0)
    assert not car.wants_power
    assert plant.current_a == (0.0, 0.0, 0.0)
    # Only the energy that filled the battery was delivered, not an hour of it.
    assert plant.energy_import_wh < 0.2 / 100.0 * 40000.0


def test_ev_stops_at_its_target_soc(clock: FakeClock) -> None:
    car = SimEv(EvParameters(soc_percent=50.0, target_soc_percent=60.0))
    plant, _, events = charging_plant(clock, car)
    clock.advance(10 * 3600.0)
    plant.step()
    assert pilot_events(events) == [PilotState.B]
    assert car.soc_percent == pytest.approx(60.0, abs=0.01)
    assert plant.energy_import_wh == pytest.approx(4000.0, abs=5.0)


def test_pause_and_resume_switch_between_b_and_c(clock: FakeClock) -> None:
    plant, car, events = charging_plant(clock)
    car.pause()
    assert plant.pilot_state is PilotState.B
    assert plant.power_w == 0.0
    car.resume()
    assert pilot_events(events) == [PilotState.B, PilotState.C]
    assert plant.power_w > 0.0


def test_ventilation_ev_charges_in_state_d(clock: FakeClock) -> None:
    plant, _, _ = charging_plant(clock, SimEv(EvParameters(ventilation=True)))
    assert plant.pilot_state is PilotState.D
    assert plant.power_w > 0.0


# --- pilot states -------------------------------------------------------------------------


def test_pilot_follows_plug_and_pwm(clock: FakeClock) -> None:
    plant, events = make_plant(clock)
    assert plant.pilot_state is PilotState.A
    plant.plug_in(SimEv())
    plant.set_pilot(PilotMode.PWM, DUTY_16_A)
    plant.set_pilot(PilotMode.OFF)
    assert pilot_events(events) == [PilotState.B, PilotState.C, PilotState.B]


def test_invalid_duty_keeps_the_ev_in_b(clock: FakeClock) -> None:
    plant, events = make_plant(clock)
    plant.plug_in(SimEv())
    plant.set_pilot(PilotMode.PWM, 5.0)  # digital communication only
    assert plant.pilot_state is PilotState.B
    assert pilot_events(events) == [PilotState.B]


def test_unplug_returns_to_a_and_stops_power(clock: FakeClock) -> None:
    plant, car, events = charging_plant(clock)
    assert plant.unplug() is car
    assert plant.unplug() is None
    assert pilot_events(events) == [PilotState.A]
    assert plant.ev is None
    assert plant.power_w == 0.0


def test_pilot_driven_to_minus_12_v_reads_f(clock: FakeClock) -> None:
    plant, _, events = charging_plant(clock)
    plant.set_pilot(PilotMode.F)
    assert plant.power_w == 0.0
    plant.set_pilot(PilotMode.OFF)
    assert pilot_events(events) == [PilotState.F, PilotState.B]


def test_forced_pilot_overrides_physics_until_released(clock: FakeClock) -> None:
    plant, _, events = charging_plant(clock)
    plant.force_pilot(PilotState.E)
    assert plant.power_w == 0.0
    plant.force_pilot(PilotState.E)
    plant.force_pilot(None)
    assert pilot_events(events) == [PilotState.E, PilotState.C]
    with pytest.raises(ValueError):
        plant.force_pilot(PilotState.A)


def test_unchanged_state_emits_no_pilot_event(clock: FakeClock) -> None:
    plant, _, events = charging_plant(clock)
    for _ in range(5):
        clock.advance(1.0)
        plant.step()
    plant.set_pilot(PilotMode.PWM, DUTY_16_A)
    plant.set_contactor(True)
    assert events == []


def test_an_ev_cannot_be_plugged_into_two_plants(clock: FakeClock) -> None:
    car = SimEv()
    first, _ = make_plant(clock)
    second, _ = make_plant(clock)
    first.plug_in(car)
    with pytest.raises(ValueError):
        second.plug_in(car)
    first.unplug()
    second.plug_in(car)
    assert second.pilot_state is PilotState.B


# --- register persistence -----------------------------------------------------------------


def test_register_survives_a_new_plant(clock: FakeClock, tmp_path: Path) -> None:
    register = tmp_path / "meter.json"
    plant, _, _ = charging_plant(clock, register_path=register)
    clock.advance(3600.0)
    plant.step()
    plant.save_register()
    assert json.loads(register.read_text())["energy_import_wh"] == pytest.approx(11040.0)
    assert list(tmp_path.iterdir()) == [register]  # no temporary file left behind
    reloaded = Plant(monotonic=clock, register_path=register)
    assert reloaded.energy_import_wh == pytest.approx(11040.0)


async def test_meter_read_persists_the_register(clock: FakeClock, tmp_path: Path) -> None:
    register = tmp_path / "meter.json"
    plant, _, _ = charging_plant(clock, register_path=register)
    clock.advance(1800.0)
    sample = await SimPowerMeter(plant).read()
    assert sample.energy_import_wh == pytest.approx(5520.0)
    assert Plant(register_path=register).energy_import_wh == pytest.approx(5520.0)


def test_corrupt_register_file_is_refused(tmp_path: Path) -> None:
    register = tmp_path / "meter.json"
    register.write_text("{not json")
    with pytest.raises(ValueError, match=r"meter\.json"):
        Plant(register_path=register)


# --- faults and the sim drivers ---------------------------------------------------------------


async def test_meter_lost_makes_read_raise(clock: FakeClock) -> None:
    plant, car, events = charging_plant(clock)
    meter = SimPowerMeter(plant)
    plant.raise_fault(FaultCode.METER_LOST, "no Modbus answer")
    with pytest.raises(DriverError):
        await meter.read()
    plant.clear_fault(FaultCode.METER_LOST)
    sample = await meter.read()
    assert sample.soc_percent == car.soc_percent
    assert sample.frequency_hz == 50.0
    assert events == [
        FaultEvent(FaultCode.METER_LOST, True, "no Modbus answer"),
        FaultEvent(FaultCode.METER_LOST, False),
    ]


async def test_welded_contactor_keeps_feedback_closed(clock: FakeClock) -> None:
    plant, _ = make_plant(clock)
    plant.plug_in(SimEv())
    board = SimBoardSupport(plant, BoardCapabilities(max_current_a=32.0))
    events: list[BoardEvent] = []
    await board.start(events.append)
    await board.pwm_on(DUTY_16_A)
    await board.set_contactor(True)
    plant.weld_contactor(True)
    await board.set_contactor(False)
    contactor = [e.closed for e in events if isinstance(e, ContactorEvent)]
    assert contactor == [False, True, True]
    assert plant.contactor_closed
    assert plant.power_w > 0.0  # a welded contactor still conducts
    plant.weld_contactor(False)
    assert events[-1] == ContactorEvent(closed=False)
    assert plant.power_w == 0.0


async def test_run_steps_the_plant_until_cancelled() -> None:
    ticks = iter(range(0, 10**6, 600))  # every reading of the clock is 10 minutes later
    plant = Plant(monotonic=lambda: float(next(ticks)))
    full = asyncio.Event()
    plant.subscribe(lambda e: full.set() if e == PilotEvent(PilotState.B) else None)
    plant.plug_in(SimEv(EvParameters(soc_percent=95.0)))
    plant.set_pilot(PilotMode.PWM, DUTY_32_A)
    plant.set_contactor(True)
    full.clear()  # plugging in reported B before charging began
    runner = asyncio.create_task(plant.run(tick_s=0.0))
    try:
        await asyncio.wait_for(full.wait(), timeout=5.0)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert plant.pilot_state is PilotState.B
    assert plant.energy_import_wh > 0.0


async def test_run_wakes_when_a_steady_draw_ends_not_only_at_each_tick() -> None:
    # Fleet mode (issue 8): run() sleeps while nothing can change by itself. A change
    # wakes it, and the end of the car's steady draw (its target SoC, below the taper)
    # is reported then, long before the next 60 s tick.
    plant = Plant(time_scale=100.0)  # real monotonic time; 16 s of charging = 0.16 s
    full = asyncio.Event()
    plant.subscribe(lambda e: full.set() if e == PilotEvent(PilotState.B) else None)
    runner = asyncio.create_task(plant.run(tick_s=60.0))
    try:
        await asyncio.sleep(0)  # run() is waiting: no EV, nothing flows
        plant.plug_in(
            SimEv(EvParameters(battery_wh=1000.0, soc_percent=50.0, target_soc_percent=60.0))
        )
        plant.set_pilot(PilotMode.PWM, DUTY_32_A)
        plant.set_contactor(True)
        assert plant.pilot_state is PilotState.C
        full.clear()  # plugging in reported B before charging began
        await asyncio.wait_for(full.wait(), timeout=5.0)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert plant.ev is not None and plant.ev.soc_percent == pytest.approx(60.0, abs=0.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.floats(0.0, 7200.0)),
            st.tuples(st.just("duty"), st.floats(0.0, 100.0)),
            st.tuples(st.sampled_from(["off", "f", "close", "open", "pause", "resume"])),
            st.tuples(st.sampled_from(["plug", "unplug", "weld", "unweld"])),
        ),
        max_size=40,
    )
)
def test_register_never_decreases_and_soc_stays_within_bounds(
    actions: list[tuple[str] | tuple[str, float]],
) -> None:
    clock = FakeClock()
    plant = Plant(monotonic=clock, time_scale=5.0)
    car = SimEv(EvParameters(soc_percent=70.0))
    previous_wh = 0.0
    for action in actions:
        match action:
            case ("advance", float(seconds)):
                clock.advance(seconds)
                plant.step()
            case ("duty", float(duty)):
                plant.set_pilot(PilotMode.PWM, duty)
            case ("off",):
                plant.set_pilot(PilotMode.OFF)
            case ("f",):
                plant.set_pilot(PilotMode.F)
            case ("close" | "open",):
                plant.set_contactor(action[0] == "close")
            case ("pause",):
                car.pause()
            case ("resume",):
                car.resume()
            case ("plug",):
                if plant.ev is None:
                    plant.plug_in(car)
            case ("unplug",):
                plant.unplug()
            case ("weld" | "unweld",):
                plant.weld_contactor(action[0] == "weld")
        assert plant.energy_import_wh >= previous_wh
        assert 0.0 <= car.soc_percent <= 100.0
        if plant.pilot_state not in (PilotState.C, PilotState.D):
            assert plant.power_w == 0.0
        previous_wh = plant.energy_import_wh
