"""What a driver at the charger sees: the indicator state derived from the core's events.

Two layers of tests:

* `IndicatorLogic` alone, fed hand-made events at chosen times (a pure function of its
  inputs, so time is just a datetime passed in);
* the real core (Station, Evse, simulated plant, SQLite journal in memory) driving a
  SimIndicator through `drive_indicator`, the wiring proposed for agent/app.py, with a
  FakeClock: every tap a driver makes, and the light the driver sees after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.events import (
    AuthorizationOutcome,
    AuthResult,
    AuthStatus,
    IdToken,
    MeterValuesSampled,
    PhaseChanged,
    StationEvent,
    StatusChanged,
    TokenHandling,
    TokenPresented,
    TxMessageQueued,
)
from agent.core.evse import ConnectorSpec, Evse
from agent.core.feedback import (
    Display,
    FeedbackTimings,
    IndicatorLogic,
    steady_state,
)
from agent.core.ports import SampleContext
from agent.core.station import Station
from agent.core.status import ConnectorStatus, SessionPhase
from agent.indicators import drive_indicator
from agent.store import Store
from drivers.indicator import IndicatorState
from drivers.interfaces import DriverError
from drivers.types import BoardCapabilities, FaultCode, MeterSample
from simulator.drivers import SimBoardSupport, SimPowerMeter
from simulator.ev import SimEv
from simulator.indicator import IndicatorChange, SimIndicator
from simulator.plant import Plant
from tests.fakes import FakeClock, settle, wait_until

I = IndicatorState  # noqa: E741 - short, and used in nearly every line
C = ConnectorStatus
P = SessionPhase
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TAG = IdToken("04A2B3C4D5")
OTHER_TAG = IdToken("DEADBEEF")


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def status(value: ConnectorStatus, connector_id: int = 1, evse_id: int = 1) -> StatusChanged:
    fault = FaultCode.RCD_TRIP if value == C.FAULTED else None
    return StatusChanged(evse_id, connector_id, value, fault, T0)


def outcome(result: AuthStatus, evse_id: int = 1) -> AuthorizationOutcome:
    return AuthorizationOutcome(evse_id, TAG, AuthResult(result))


H = TokenHandling


def tap(evse_id: int = 1, handling: TokenHandling = H.CHECKING) -> TokenPresented:
    """A tap as the EVSE announces it (by default: a check starts)."""
    return TokenPresented(evse_id, TAG, handling)


def fed(*events: tuple[float, StationEvent]) -> IndicatorLogic:
    """A logic for EVSE 1 fed `(seconds after T0, event)` pairs in order."""
    logic = IndicatorLogic(1)
    for seconds, event in events:
        logic.feed(event, at(seconds))
    return logic


# -- the steady state ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "statuses", "expected"),
    [
        (P.IDLE, [], I.IDLE),
        (P.IDLE, [C.AVAILABLE], I.IDLE),
        (P.PLUGGED, [C.PREPARING], I.IDLE),  # a car waits for a tap: ready
        (P.AUTHORIZED, [C.PREPARING], I.ACCEPTED),  # a tap waits for a car: plug in
        (P.TRANSACTION, [C.CHARGING], I.CHARGING),
        (P.TRANSACTION, [C.SUSPENDED_EV], I.CHARGING),
        (P.TRANSACTION, [C.SUSPENDED_EVSE], I.CHARGING),
        (P.FINISHING, [C.FINISHING], I.IDLE),
        (P.IDLE, [C.RESERVED], I.RESERVED),
        (P.IDLE, [C.UNAVAILABLE], I.UNAVAILABLE),
        (P.AUTHORIZED, [C.UNAVAILABLE], I.UNAVAILABLE),
        (P.IDLE, [C.FAULTED], I.FAULT),
        (P.TRANSACTION, [C.FAULTED], I.FAULT),
        (P.TRANSACTION, [C.CHARGING, C.UNAVAILABLE], I.CHARGING),  # busy on connector 1
        (P.IDLE, [C.AVAILABLE, C.FAULTED], I.FAULT),
    ],
)
def test_the_steady_state_follows_phase_and_statuses(
    phase: SessionPhase, statuses: list[ConnectorStatus], expected: IndicatorState
) -> None:
    assert steady_state(phase, statuses) == expected


def test_a_new_logic_shows_idle_steadily() -> None:
    assert (IndicatorLogic(1).display, IndicatorLogic(1).deadline) == (Display(I.IDLE), None)


def test_events_of_other_evses_and_other_kinds_change_nothing() -> None:
    sample = MeterSample(0.0, 0.0, (0.0, 0.0, 0.0), (230.0, 230.0, 230.0))
    logic = fed(
        (0, status(C.FAULTED, evse_id=2)),
        (0, outcome(AuthStatus.INVALID, evse_id=2)),
        (0, tap(evse_id=2)),
        (0, PhaseChanged(2, P.TRANSACTION)),
        (0, TxMessageQueued(1, 7)),
        (0, MeterValuesSampled(1, 1, sample, SampleContext.CLOCK, T0, 0.0)),
    )
    assert logic.display == Display(I.IDLE)


# -- taps ------------------------------------------------------------------------------------


def test_tap_accepted_shows_authorizing_then_accepted_then_charging() -> None:
    logic = fed((0, PhaseChanged(1, P.PLUGGED)), (0, status(C.PREPARING)))
    assert logic.feed(tap(), at(1)) == Display(I.AUTHORIZING, at(41))
    assert logic.feed(outcome(AuthStatus.ACCEPTED), at(2)) == Display(I.ACCEPTED, at(4))
    logic.feed(PhaseChanged(1, P.TRANSACTION), at(2.1))
    logic.feed(status(C.CHARGING), at(2.1))
    assert logic.expire(at(3.9)).state == I.ACCEPTED  # the answer stays up its full time
    assert logic.expire(at(4)) == Display(I.CHARGING)


def test_tap_accepted_before_the_car_keeps_accepted_until_the_car_arrives() -> None:
    logic = fed((0, tap()), (1, outcome(AuthStatus.ACCEPTED)), (1, PhaseChanged(1, P.AUTHORIZED)))
    assert logic.expire(at(10)) == Display(I.ACCEPTED)  # steady now: plug in
    logic.feed(PhaseChanged(1, P.TRANSACTION), at(20))
    assert logic.feed(status(C.CHARGING), at(20)) == Display(I.CHARGING)


def test_tap_rejected_shows_rejected_for_its_time_then_idle_again() -> None:
    logic = fed((0, tap()), (1, outcome(AuthStatus.INVALID)))
    assert logic.display == Display(I.REJECTED, at(4))
    assert logic.deadline == at(4)
    assert logic.expire(at(3.99)).state == I.REJECTED
    assert logic.expire(at(4)) == Display(I.IDLE)


@pytest.mark.parametrize(
    "refusal",
    [AuthStatus.BLOCKED, AuthStatus.EXPIRED, AuthStatus.INVALID, AuthStatus.CONCURRENT_TX],
)
def test_every_refusal_is_shown_as_rejected(refusal: AuthStatus) -> None:
    assert fed((0, tap()), (0, outcome(refusal))).display.state == I.REJECTED


def test_a_foreign_card_during_charging_is_rejected_then_charging_shows_again() -> None:
    logic = fed((0, PhaseChanged(1, P.TRANSACTION)), (0, status(C.CHARGING)))
    logic.feed(tap(handling=H.CONCURRENT), at(5))
    assert logic.feed(outcome(AuthStatus.CONCURRENT_TX), at(5)) == Display(I.REJECTED, at(8))
    assert logic.expire(at(8)) == Display(I.CHARGING)


def test_the_stop_tap_is_accepted_when_the_transaction_ends() -> None:
    logic = fed((0, PhaseChanged(1, P.TRANSACTION)), (0, status(C.CHARGING)))
    assert logic.feed(tap(handling=H.ENDING), at(5)).state == I.AUTHORIZING
    assert logic.feed(PhaseChanged(1, P.FINISHING), at(6)) == Display(I.ACCEPTED, at(8))
    logic.feed(status(C.FINISHING), at(6))
    assert logic.expire(at(8)) == Display(I.IDLE)


def test_the_cancel_tap_is_accepted_when_the_authorization_ends() -> None:
    logic = fed(
        (0, tap()),
        (0, outcome(AuthStatus.ACCEPTED)),
        (0, PhaseChanged(1, P.AUTHORIZED)),
        (0, status(C.PREPARING)),
    )
    assert logic.feed(tap(handling=H.ENDING), at(5)).state == I.AUTHORIZING
    assert logic.feed(PhaseChanged(1, P.IDLE), at(5.5)).state == I.ACCEPTED


def test_the_cancel_tap_needs_the_accepted_card() -> None:
    logic = fed(
        (0, tap()),
        (0, outcome(AuthStatus.ACCEPTED)),
        (0, PhaseChanged(1, P.AUTHORIZED)),
        (0, status(C.PREPARING)),
        (5, TokenPresented(1, OTHER_TAG, H.CHECKING)),  # a new check, answered by an outcome
    )
    assert logic.display.state == I.AUTHORIZING
    logic.feed(PhaseChanged(1, P.IDLE), at(6))  # ConnectionTimeOut, not this tap
    assert logic.display.state == I.AUTHORIZING


def test_the_stop_tap_of_a_faulted_transaction_is_still_taken() -> None:
    logic = fed((0, PhaseChanged(1, P.TRANSACTION)), (0, status(C.FAULTED)))
    assert logic.feed(tap(handling=H.ENDING), at(1)).state == I.AUTHORIZING
    assert logic.feed(PhaseChanged(1, P.FINISHING), at(2)).state == I.ACCEPTED
    assert logic.expire(at(4)) == Display(I.FAULT)


def test_a_car_plugged_in_while_the_card_is_checked_keeps_authorizing() -> None:
    logic = fed((0, tap()))
    logic.feed(PhaseChanged(1, P.PLUGGED), at(1))
    assert logic.feed(status(C.PREPARING), at(1)).state == I.AUTHORIZING


def test_an_answer_that_never_comes_ends_authorizing_after_the_timeout() -> None:
    logic = fed((0, tap()))
    assert logic.expire(at(39.9)).state == I.AUTHORIZING
    assert logic.expire(at(40)) == Display(I.IDLE)


def test_a_second_tap_while_authorizing_does_not_restart_the_wait() -> None:
    logic = fed((0, tap()), (10, tap(handling=H.BUSY)))
    assert logic.deadline == at(40)


def test_a_remote_start_without_a_tap_shows_accepted() -> None:
    assert fed((0, outcome(AuthStatus.ACCEPTED))).display == Display(I.ACCEPTED, at(2))
    assert Display(I.ACCEPTED, at(2)).hold_s(at(0.5)) == 1.5


def test_a_new_answer_replaces_the_one_shown() -> None:
    logic = fed((0, tap()), (0, outcome(AuthStatus.INVALID)), (1, tap()))
    assert logic.display.state == I.AUTHORIZING
    assert logic.feed(outcome(AuthStatus.ACCEPTED), at(2)) == Display(I.ACCEPTED, at(4))


def test_timings_are_data() -> None:
    logic = IndicatorLogic(1, timings=FeedbackTimings(accepted_s=5, authorizing_timeout_s=9))
    assert logic.feed(tap(), T0).until == at(9)
    assert logic.feed(outcome(AuthStatus.ACCEPTED), T0).until == at(5)
    with pytest.raises(ValueError, match="rejected_s"):
        FeedbackTimings(rejected_s=0)


# -- faults, availability, reservation -------------------------------------------------------


def test_a_fault_shows_at_once_and_clears_back_to_idle() -> None:
    logic = fed((0, status(C.FAULTED)))
    assert logic.display == Display(I.FAULT)
    assert logic.feed(status(C.AVAILABLE), at(5)) == Display(I.IDLE)


def test_a_fault_cancels_the_accepted_answer_shown() -> None:
    logic = fed((0, tap()), (1, outcome(AuthStatus.ACCEPTED)))
    assert logic.feed(status(C.FAULTED), at(1.5)) == Display(I.FAULT)
    assert logic.deadline is None


def test_a_fault_during_charging_shows_fault_and_its_end_shows_charging() -> None:
    logic = fed((0, PhaseChanged(1, P.TRANSACTION)), (0, status(C.CHARGING)))
    assert logic.feed(status(C.FAULTED), at(1)) == Display(I.FAULT)
    assert logic.feed(status(C.SUSPENDED_EVSE), at(2)) == Display(I.CHARGING)


@pytest.mark.parametrize(
    ("blocked", "steady"), [(C.FAULTED, I.FAULT), (C.UNAVAILABLE, I.UNAVAILABLE)]
)
def test_a_tap_the_core_cannot_take_is_answered_rejected(
    blocked: ConnectorStatus, steady: IndicatorState
) -> None:
    logic = fed((0, status(blocked)))
    assert logic.feed(tap(handling=H.DROPPED), at(1)) == Display(I.REJECTED, at(4))
    assert logic.expire(at(4)) == Display(steady)


def test_a_reserved_evse_shows_reserved_and_a_tap_there_is_checked() -> None:
    logic = fed((0, status(C.RESERVED)))
    assert logic.display == Display(I.RESERVED)
    assert logic.feed(tap(), at(1)).state == I.AUTHORIZING
    logic.feed(outcome(AuthStatus.INVALID), at(2))
    assert logic.expire(at(5)) == Display(I.RESERVED)


EVENTS = st.one_of(
    st.sampled_from(list(ConnectorStatus)).map(status),
    st.sampled_from(list(SessionPhase)).map(lambda phase: PhaseChanged(1, phase)),
    st.sampled_from(list(AuthStatus)).map(outcome),
    st.sampled_from(list(TokenHandling)).map(lambda handling: tap(handling=handling)),
)


@given(st.lists(st.tuples(st.floats(0, 60), EVENTS), max_size=30))
def test_every_transient_state_ends_and_a_fault_always_shows(
    steps: list[tuple[float, StationEvent]],
) -> None:
    logic = IndicatorLogic(1)
    now = T0
    for gap_s, event in steps:
        now += timedelta(seconds=gap_s)
        display = logic.feed(event, now)
        if isinstance(event, StatusChanged) and event.status == C.FAULTED:
            assert display == Display(I.FAULT)
        if display.until is not None:
            assert now < display.until <= now + timedelta(seconds=40)
    later = logic.expire(now + timedelta(seconds=40))
    assert later.until is None
    assert later.state == logic.steady


# -- the simulated indicator -----------------------------------------------------------------


async def test_the_sim_indicator_records_each_change_with_its_time_and_hold() -> None:
    clock = FakeClock(T0)
    indicator = SimIndicator(now=clock.now)
    seen: list[IndicatorChange] = []
    indicator.listeners.append(seen.append)
    await indicator.start()
    assert indicator.state is None  # dark until told
    await indicator.show(I.IDLE)
    clock.advance(1.0)
    await indicator.show(I.IDLE)  # the same steady state again: nothing changes
    await indicator.show(I.REJECTED, hold_s=3.0)
    assert indicator.history == [
        IndicatorChange(at(0), I.IDLE),
        IndicatorChange(at(1), I.REJECTED, 3.0),
    ]
    assert seen == indicator.history


async def test_the_sim_indicator_falls_back_when_a_hold_runs_out() -> None:
    clock = FakeClock(T0)
    indicator = SimIndicator(now=clock.now)
    await indicator.start()
    await indicator.show(I.CHARGING)
    await indicator.show(I.ACCEPTED, hold_s=2.0)
    clock.advance(1.9)
    assert indicator.state_at(clock.now()) == I.ACCEPTED
    clock.advance(0.1)
    assert indicator.state == I.CHARGING


async def test_the_sim_indicator_refuses_to_show_when_stopped() -> None:
    indicator = SimIndicator()
    with pytest.raises(DriverError):
        await indicator.show(I.IDLE)
    await indicator.start()
    await indicator.show(I.FAULT)
    await indicator.stop()
    assert indicator.state is None
    assert indicator.states == [I.FAULT]


# -- the real core driving a simulated indicator ---------------------------------------------


async def sleep_until(clock: FakeClock, deadline: datetime) -> None:
    """Return once `clock` reaches `deadline` (the delay is taken when the task runs)."""
    await clock.sleep((deadline - clock.now()).total_seconds())


class GateAuthorizer:
    """Answers `result` once the test opens the gate (a CSMS that takes its time)."""

    def __init__(self) -> None:
        self.result = AuthResult(AuthStatus.ACCEPTED)
        self.gate = asyncio.Event()

    async def authorize(self, token: IdToken) -> AuthResult:
        await self.gate.wait()
        return self.result


@dataclass
class Charger:
    """One simulated EVSE with its indicator, as the driver sees it."""

    clock: FakeClock
    plant: Plant
    station: Station
    evse: Evse
    authorizer: GateAuthorizer
    logic: IndicatorLogic
    indicator: SimIndicator
    wake: asyncio.Event

    def on_event(self, event: StationEvent) -> None:
        self.logic.feed(event, self.clock.now())
        self.wake.set()

    def tap(self, token: IdToken = TAG) -> None:
        """Present a card as the reader sink in app.py does (the EVSE announces it)."""
        self.station.present_token(self.evse.id, token)

    async def answer(self, result: AuthStatus) -> None:
        """Let the pending card check return `result`."""
        self.authorizer.result = AuthResult(result)
        self.authorizer.gate.set()
        await settle(20)
        self.authorizer.gate.clear()

    async def start_charging(self) -> None:
        """Plug in, tap an accepted card, wait out the answer: charging shows."""
        self.plant.plug_in(SimEv())
        await self.status(C.PREPARING)
        self.tap()
        await self.answer(AuthStatus.ACCEPTED)
        self.clock.advance(2.0)
        await self.shows(I.CHARGING)

    async def shows(self, state: IndicatorState) -> None:
        """Wait until the indicator was told to show `state` (not only fell back to it)."""
        await wait_until(
            lambda: self.indicator.state == state and self.indicator.states[-1] == state,
            f"indicator shows {state}",
        )

    async def status(self, value: ConnectorStatus) -> None:
        await wait_until(lambda: self.evse.status() == value, f"status {value}")


@pytest.fixture
async def charger(tmp_path: Path) -> AsyncIterator[Charger]:
    clock = FakeClock(T0)
    register = tmp_path / "register.json"
    register.write_text(json.dumps({"energy_import_wh": 1000.0}))
    plant = Plant(monotonic=clock.monotonic, register_path=register)
    store = Store(":memory:")
    station = Station(clock=clock, journal=store, settings=store)
    authorizer = GateAuthorizer()
    station.authorizer = authorizer
    evse = Evse(
        evse_id=1,
        connectors=(ConnectorSpec(1, "cType2", 32, 3),),
        board=SimBoardSupport(plant, BoardCapabilities(max_current_a=32.0, phases=3)),
        meter=SimPowerMeter(plant),
        lock=None,
        **station.evse_kwargs(),  # type: ignore[arg-type]
    )
    station.add_evse(evse)
    indicator = SimIndicator(now=clock.now)
    made = Charger(
        clock, plant, station, evse, authorizer, IndicatorLogic(1), indicator, asyncio.Event()
    )
    station.subscribe(made.on_event)
    await station.start()
    await indicator.start()
    driver = asyncio.create_task(drive_indicator(made.logic, indicator, made.wake, clock))
    try:
        yield made
    finally:
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        await indicator.stop()
        await station.shutdown()
        store.close()
    await settle(5)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leaked, f"tasks leaked: {leaked}"


async def test_driver_plugs_in_taps_and_sees_accepted_then_charging(charger: Charger) -> None:
    await charger.shows(I.IDLE)
    charger.plant.plug_in(SimEv())
    await charger.status(C.PREPARING)
    charger.tap()
    await charger.shows(I.AUTHORIZING)
    await charger.answer(AuthStatus.ACCEPTED)
    await charger.shows(I.ACCEPTED)
    await charger.status(C.CHARGING)
    assert charger.indicator.state == I.ACCEPTED  # the answer stays up its full time
    charger.clock.advance(2.0)
    await charger.shows(I.CHARGING)
    assert charger.indicator.states == [I.IDLE, I.AUTHORIZING, I.ACCEPTED, I.CHARGING]
    assert charger.indicator.history[2].hold_s == 2.0


async def test_driver_taps_first_sees_accepted_until_the_car_charges(charger: Charger) -> None:
    charger.tap()
    await charger.answer(AuthStatus.ACCEPTED)
    await charger.status(C.PREPARING)
    charger.clock.advance(5.0)
    await settle(20)
    assert charger.indicator.state == I.ACCEPTED  # plug in now
    charger.plant.plug_in(SimEv())
    await charger.shows(I.CHARGING)


async def test_driver_with_a_refused_card_sees_rejected_then_idle(charger: Charger) -> None:
    charger.tap()
    await charger.shows(I.AUTHORIZING)
    await charger.answer(AuthStatus.BLOCKED)
    await charger.shows(I.REJECTED)
    charger.clock.advance(2.9)
    await settle(20)
    assert charger.indicator.state == I.REJECTED
    charger.clock.advance(0.1)
    await charger.shows(I.IDLE)
    assert charger.indicator.states == [I.IDLE, I.AUTHORIZING, I.REJECTED, I.IDLE]


async def test_driver_stops_with_a_tap_and_sees_accepted(charger: Charger) -> None:
    await charger.start_charging()
    charger.tap()  # the same card again: stop
    await charger.status(C.FINISHING)
    await charger.shows(I.ACCEPTED)
    charger.clock.advance(2.0)
    await charger.shows(I.IDLE)
    assert not charger.plant.contactor_closed


async def test_a_foreign_card_during_charging_is_rejected_at_once(charger: Charger) -> None:
    await charger.start_charging()
    charger.tap(OTHER_TAG)
    await charger.shows(I.REJECTED)
    charger.clock.advance(3.0)
    await charger.shows(I.CHARGING)
    assert I.AUTHORIZING not in charger.indicator.states


async def test_a_fault_while_charging_shows_fault_and_its_end_charging(charger: Charger) -> None:
    await charger.start_charging()
    charger.plant.raise_fault(FaultCode.OVER_TEMPERATURE, "95 C")
    await charger.shows(I.FAULT)
    charger.plant.clear_fault(FaultCode.OVER_TEMPERATURE)
    await charger.shows(I.CHARGING)


async def test_a_tap_on_a_faulted_evse_is_answered_rejected(charger: Charger) -> None:
    charger.plant.raise_fault(FaultCode.RCD_TRIP, "30 mA")
    await charger.shows(I.FAULT)
    charger.tap()
    await charger.shows(I.REJECTED)  # the core drops it; the driver still gets an answer
    assert charger.evse.state == P.IDLE
    charger.clock.advance(3.0)
    await charger.shows(I.FAULT)
    charger.plant.clear_fault(FaultCode.RCD_TRIP)
    await charger.shows(I.IDLE)


async def test_the_stop_tap_during_a_fault_ends_the_transaction_and_is_accepted(
    charger: Charger,
) -> None:
    await charger.start_charging()
    charger.plant.raise_fault(FaultCode.OVER_TEMPERATURE, "95 C")
    await charger.shows(I.FAULT)
    charger.tap()
    await charger.shows(I.ACCEPTED)
    assert charger.evse.state == P.FINISHING
    charger.clock.advance(2.0)
    await charger.shows(I.FAULT)


async def test_an_inoperative_evse_shows_unavailable_and_rejects_taps(charger: Charger) -> None:
    charger.station.set_operative(1, False)
    await charger.shows(I.UNAVAILABLE)
    charger.tap()
    await charger.shows(I.REJECTED)
    charger.clock.advance(3.0)
    await charger.shows(I.UNAVAILABLE)


async def test_the_evse_announces_how_it_handles_each_tap(charger: Charger) -> None:
    announced: list[TokenHandling] = []
    charger.station.subscribe(
        lambda e: announced.append(e.handling) if isinstance(e, TokenPresented) else None
    )
    charger.plant.plug_in(SimEv())
    await charger.status(C.PREPARING)
    charger.tap()  # checked
    charger.tap(OTHER_TAG)  # ignored: a check is in flight
    await charger.answer(AuthStatus.ACCEPTED)
    await charger.status(C.CHARGING)
    charger.tap(OTHER_TAG)  # someone else's card: refused at once
    charger.tap()  # the session's card: stops it
    await charger.status(C.FINISHING)
    assert announced == [H.CHECKING, H.BUSY, H.CONCURRENT, H.ENDING]
