"""One EVSE's faults and limits through whole sessions: the same rig as test_session.py.

Faults raised by the board, the pilot decoder, the meter, the lock and the reader, and a
charging limit below 6 A, each checked on the simulated hardware (the contactor opens at
once) and on the published status. The rig is in tests/unit/conftest.py; waiting is
always for an observable condition or a FakeClock step, never on wall time.
"""

from __future__ import annotations

from datetime import timedelta

from agent.core.events import StatusChanged
from agent.core.evse import REGISTER_PERSIST_S
from drivers.types import FaultCode, PilotEvent, PilotState
from simulator.ev import SimEv
from tests.fakes import settle, wait_until
from tests.unit.conftest import TAG, LifecycleHold, Rig, S

# --- faults and limits -------------------------------------------------------------------


async def test_fault_opens_the_contactor_at_once_and_clearing_it_resumes_charging(
    rig: Rig,
) -> None:
    await rig.start_charging()
    local_id = rig.tx().local_id

    async with LifecycleHold(rig.evse):
        rig.plant.raise_fault(FaultCode.GROUND_FAULT, "30 mA residual current")
        await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")
    await rig.wait_status(S.FAULTED)
    faulted = [e for e in rig.events if isinstance(e, StatusChanged) and e.status == S.FAULTED]
    assert [e.fault for e in faulted] == [FaultCode.GROUND_FAULT]

    rig.plant.clear_fault(FaultCode.GROUND_FAULT)
    await wait_until(lambda: rig.plant.contactor_closed, "contactor closed again")
    await rig.wait_status(S.CHARGING)
    assert rig.tx().local_id == local_id
    assert rig.tx().stopped_at is None


async def test_limit_below_6_a_suspends_charging_by_the_evse(rig: Rig) -> None:
    await rig.start_charging()

    # No public "set limit" command on Evse yet: change the input, then re-report the
    # pilot (a no-op for the decoder) so the outputs and the status are recomputed.
    rig.evse.limit_a = 5.0
    rig.evse.on_board_event(PilotEvent(rig.evse.pilot))
    await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")
    await rig.wait_status(S.SUSPENDED_EVSE)
    assert rig.plant.duty_percent is None
    await settle()
    assert rig.evse.status() == S.SUSPENDED_EVSE  # the EV going to B is still the EVSE's doing

    rig.evse.limit_a = 16.0
    rig.evse.on_board_event(PilotEvent(rig.evse.pilot))
    await wait_until(lambda: rig.plant.contactor_closed, "contactor closed again")
    assert rig.plant.duty_percent == 26.67
    await rig.wait_status(S.CHARGING)


async def test_meter_failure_outside_a_transaction_is_reported_as_meter_lost(
    rig: Rig,
) -> None:
    rig.station.policy.aligned_interval_s = 60.0
    rig.station.policy_changed()  # as an adapter does after changing the policy
    rig.clock.advance(1.0)
    next_tick = rig.clock.now().replace(second=0) + timedelta(seconds=60)
    await wait_until(lambda: next_tick in rig.clock.deadlines(), "aligned sampler waiting")

    rig.meter.failing = True
    rig.clock.set(next_tick)
    await rig.wait_status(S.FAULTED)
    assert rig.evse.statuses()[1] == (S.FAULTED, FaultCode.METER_LOST)

    rig.meter.failing = False
    next_tick += timedelta(seconds=60)
    await wait_until(lambda: next_tick in rig.clock.deadlines(), "aligned sampler waiting")
    rig.clock.set(next_tick)
    await rig.wait_status(S.AVAILABLE)


async def test_meter_failure_during_a_transaction_stops_energy_and_reports_meter_lost(
    rig: Rig,
) -> None:
    await rig.start_charging()
    rig.meter.failing = True
    reads = rig.meter.reads
    rig.clock.advance(REGISTER_PERSIST_S)  # the register persistence reads the meter

    await wait_until(lambda: rig.meter.reads > reads, "meter read")
    await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")
    await rig.wait_status(S.FAULTED)
    assert rig.evse.statuses()[1] == (S.FAULTED, FaultCode.METER_LOST)


async def test_an_idle_evse_notices_a_dead_meter_and_recovers(rig: Rig) -> None:
    """The meter is watched outside transactions too: a dead meter faults an idle EVSE
    (nobody starts a session that could not be billed) and clears when it answers."""
    from agent.core.evse import IDLE_METER_POLL_S

    rig.meter.failing = True
    rig.clock.advance(IDLE_METER_POLL_S)
    await rig.wait_status(S.FAULTED)
    assert rig.evse.statuses()[1] == (S.FAULTED, FaultCode.METER_LOST)
    assert not rig.evse.available_for_new_session()

    rig.meter.failing = False
    rig.clock.advance(IDLE_METER_POLL_S)
    await rig.wait_status(S.AVAILABLE)


async def test_a_jammed_lock_faults_the_session_until_a_retry_locks_it(rig: Rig) -> None:
    from agent.core.evse import LOCK_RETRY_S

    rig.lock.jammed = True
    rig.plant.plug_in(SimEv())
    await rig.wait_status(S.PREPARING)
    rig.station.present_token(1, TAG)
    await rig.wait_status(S.FAULTED)
    assert rig.evse.statuses()[1] == (S.FAULTED, FaultCode.LOCK_FAILURE)
    assert not rig.plant.contactor_closed
    await settle()  # the retry starts waiting
    rig.lock.jammed = False
    rig.clock.advance(LOCK_RETRY_S)
    await rig.wait_status(S.CHARGING)
    assert rig.lock.locked and rig.plant.contactor_closed


async def test_a_fault_two_witnesses_raised_stays_until_both_clear(rig: Rig) -> None:
    """The board and the pilot decoder can both report PILOT_FAULT; one of them clearing
    does not clear what the other still sees."""
    from drivers.types import FaultEvent, PilotEvent

    rig.evse.on_board_event(FaultEvent(FaultCode.PILOT_FAULT, True, "diode missing"))
    rig.evse.on_board_event(PilotEvent(PilotState.E))  # the decoder sees a short too
    await rig.wait_status(S.FAULTED)
    rig.evse.on_board_event(PilotEvent(PilotState.A))  # the decoder's reason has gone
    await settle()
    assert FaultCode.PILOT_FAULT in rig.evse.faults
    rig.evse.on_board_event(FaultEvent(FaultCode.PILOT_FAULT, False))
    await rig.wait_status(S.AVAILABLE)


async def test_a_reader_failure_is_reported_but_does_not_stop_charging(rig: Rig) -> None:
    """ReaderFailure is advisory: the CSMS hears of it with the current status, and a
    session (remote start, or one already running) goes on."""
    from drivers.types import FaultEvent

    report = rig.evse.fault_sink("reader")
    report(FaultEvent(FaultCode.READER_FAILURE, True, "USB reader gone"))
    await wait_until(
        lambda: rig.evse.statuses()[1] == (S.AVAILABLE, FaultCode.READER_FAILURE),
        "advisory fault reported with Available",
    )
    await rig.start_charging()
    assert rig.evse.statuses()[1] == (S.CHARGING, FaultCode.READER_FAILURE)
    report(FaultEvent(FaultCode.READER_FAILURE, False))
    await wait_until(lambda: rig.evse.statuses()[1] == (S.CHARGING, None), "cleared")
