"""Contract of BoardSupport (drivers/interfaces.py), run over every implementation."""

from __future__ import annotations

from drivers.interfaces import BoardSupport
from drivers.types import BoardCapabilities, BoardEvent, ContactorEvent, PilotEvent, PilotState
from tests.contract.conftest import BoardHarness, EventRecorder

VALID_DUTY_PERCENT = 50.0  # 30 A: well inside the charging range of IEC 61851-1 Table A.8


async def started(harness: BoardHarness) -> EventRecorder[BoardEvent]:
    recorder: EventRecorder[BoardEvent] = EventRecorder()
    await harness.board.start(recorder)
    return recorder


async def test_board_implements_the_protocol(board_harness: BoardHarness) -> None:
    board = board_harness.board
    assert isinstance(board, BoardSupport)
    assert isinstance(board.capabilities, BoardCapabilities)
    assert board.capabilities.max_current_a > 0
    assert board.capabilities.phases in (1, 2, 3)


async def test_start_reports_the_pilot_state_at_once(board_harness: BoardHarness) -> None:
    recorder = await started(board_harness)
    await recorder.wait_for(PilotEvent(PilotState.A))
    assert recorder.events[0] == PilotEvent(PilotState.A)
    if board_harness.board.capabilities.has_contactor_feedback:
        await recorder.wait_for(ContactorEvent(closed=False))


async def test_start_reports_an_ev_already_plugged_in(board_harness: BoardHarness) -> None:
    await board_harness.connect_ev()
    recorder = await started(board_harness)
    await recorder.wait_for(PilotEvent(PilotState.B))
    assert recorder.events[0] == PilotEvent(PilotState.B)


async def test_pwm_lets_a_ready_ev_reach_c_and_back_to_b(board_harness: BoardHarness) -> None:
    recorder = await started(board_harness)
    await board_harness.connect_ev()
    plugged = await recorder.wait_for(PilotEvent(PilotState.B))
    await board_harness.board.pwm_on(VALID_DUTY_PERCENT)
    ready = await recorder.wait_for(PilotEvent(PilotState.C), after=plugged)
    assert await board_harness.pilot_mode_at_hardware() == "pwm"
    await board_harness.board.pwm_off()
    await recorder.wait_for(PilotEvent(PilotState.B), after=ready)
    assert await board_harness.pilot_mode_at_hardware() == "off"


async def test_repeated_pwm_on_reports_the_state_once(board_harness: BoardHarness) -> None:
    board = board_harness.board
    recorder = await started(board_harness)
    await board_harness.connect_ev()
    plugged = await recorder.wait_for(PilotEvent(PilotState.B))
    await board.pwm_on(VALID_DUTY_PERCENT)
    await board.pwm_on(VALID_DUTY_PERCENT)
    await board.pwm_on(VALID_DUTY_PERCENT - 10.0)  # a new duty without a gap: still C
    await board.pwm_off()
    # Events arrive in order, so any duplicate would precede the B that ends the run.
    back = await recorder.wait_for(PilotEvent(PilotState.B), after=plugged + 1)
    assert recorder.events[plugged + 1 : back] == [PilotEvent(PilotState.C)]


async def test_repeated_pwm_f_reports_f_once(board_harness: BoardHarness) -> None:
    board = board_harness.board
    recorder = await started(board_harness)
    idle = await recorder.wait_for(PilotEvent(PilotState.A))
    await board.pwm_f()
    await board.pwm_f()
    assert await board_harness.pilot_mode_at_hardware() == "f"
    await board.pwm_off()
    back = await recorder.wait_for(PilotEvent(PilotState.A), after=idle + 1)
    pilot = [e for e in recorder.events[idle + 1 : back] if isinstance(e, PilotEvent)]
    assert pilot == [PilotEvent(PilotState.F)]


async def test_set_contactor_is_reflected_and_idempotent(board_harness: BoardHarness) -> None:
    board = board_harness.board
    recorder = await started(board_harness)
    await recorder.wait_for(PilotEvent(PilotState.A))
    await board.set_contactor(True)
    await board.set_contactor(True)
    closed = await recorder.wait_for(ContactorEvent(closed=True))
    assert await board_harness.contactor_closed_at_hardware()
    await board.set_contactor(False)
    await board.set_contactor(False)
    opened = await recorder.wait_for(ContactorEvent(closed=False), after=closed)
    assert recorder.events[closed:opened] == [ContactorEvent(closed=True)]
    assert not await board_harness.contactor_closed_at_hardware()
    # One more command as a barrier: a duplicate open would show up before it.
    await board.set_contactor(True)
    again = await recorder.wait_for(ContactorEvent(closed=True), after=opened)
    assert recorder.events[opened:again] == [ContactorEvent(closed=False)]


async def test_stop_opens_the_contactor_and_holds_the_pilot_at_12_v(
    board_harness: BoardHarness,
) -> None:
    board = board_harness.board
    recorder = await started(board_harness)
    await board_harness.connect_ev()
    await board.pwm_on(VALID_DUTY_PERCENT)
    await board.set_contactor(True)
    await recorder.wait_for(ContactorEvent(closed=True))
    await board.stop()
    assert not await board_harness.contactor_closed_at_hardware()
    assert await board_harness.pilot_mode_at_hardware() == "off"


async def test_start_after_stop_reports_the_pilot_state_again(
    board_harness: BoardHarness,
) -> None:
    first = await started(board_harness)
    await first.wait_for(PilotEvent(PilotState.A))
    await board_harness.board.stop()
    await board_harness.connect_ev()
    second = await started(board_harness)
    await second.wait_for(PilotEvent(PilotState.B))
    assert PilotEvent(PilotState.B) not in first.events
