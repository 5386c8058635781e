"""IEC 61851-1 Annex A: the PWM duty mapping (Tables A.7/A.8) and the pilot decoder (Table A.3).

The expected values are written from the standard's meaning, not copied from the code:
state A is "no EV", B "EV connected, not ready", C/D "EV ready (D: with ventilation)",
E "pilot shorted / no supply", F "EVSE not available" (an error when we do not drive it).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.core.iec61851 import (
    EvEvent,
    PilotDecoder,
    current_for_duty_percent,
    duty_percent_for_current,
)
from drivers.types import PilotState

A, B, C, D, E, F = (
    PilotState.A,
    PilotState.B,
    PilotState.C,
    PilotState.D,
    PilotState.E,
    PilotState.F,
)
PLUGGED, UNPLUGGED, READY, NOT_READY, ERROR, CLEARED = (
    EvEvent.PLUGGED,
    EvEvent.UNPLUGGED,
    EvEvent.READY,
    EvEvent.NOT_READY,
    EvEvent.PILOT_ERROR,
    EvEvent.PILOT_ERROR_CLEARED,
)

# --- PWM duty for a current limit (EVSE side, Table A.7) -------------------------------------


@pytest.mark.parametrize(
    ("current_a", "duty_percent"),
    [
        (5.9, None),  # below 6 A an AC EV may not be asked to charge
        (0.0, None),
        (-10.0, None),
        (6.0, 10.0),  # 10 % = 6 A, the lowest current PWM expresses
        (16.0, 26.67),  # 16 / 0.6
        (32.0, 53.33),
        (51.0, 85.0),  # top of the "duty x 0.6" branch
        (52.5, 85.0),  # 85 % is still 51 A: never offer more than the limit
        (53.0, 85.2),  # "(duty - 64) x 2.5" branch: 53 / 2.5 + 64
        (63.0, 89.2),
        (80.0, 96.0),  # 96 % = 80 A, the highest current PWM expresses
        (100.0, 96.0),  # capped at 80 A
    ],
)
def test_duty_for_current_follows_table_a7(current_a: float, duty_percent: float | None) -> None:
    assert duty_percent_for_current(current_a) == duty_percent


@pytest.mark.parametrize(
    ("duty_percent", "current_a"),
    [
        (5.0, 0.0),  # digital communication only
        (7.9, 0.0),
        (8.0, 6.0),  # 8 % <= duty < 10 %: 6 A
        (9.9, 6.0),
        (10.0, 6.0),
        (50.0, 30.0),
        (85.0, 51.0),
        (85.2, 53.0),
        (96.0, 80.0),
        (97.0, 80.0),
        (97.1, 0.0),  # above 97 %: charging not allowed
        (100.0, 0.0),
    ],
)
def test_current_for_duty_follows_table_a8(duty_percent: float, current_a: float) -> None:
    assert current_for_duty_percent(duty_percent) == pytest.approx(current_a)


@pytest.mark.parametrize("current_a", [a for a in range(6, 81) if a != 52])
def test_ev_reads_back_the_current_limit_within_0_01_a(current_a: int) -> None:
    duty = duty_percent_for_current(current_a)
    assert duty is not None
    assert current_for_duty_percent(duty) == pytest.approx(current_a, abs=0.01)


@pytest.mark.parametrize("current_a", [51.01, 52.0, 52.49])
def test_limit_between_51_and_52_5_a_offers_51_a_because_table_a7_has_no_step_there(
    current_a: float,
) -> None:
    duty = duty_percent_for_current(current_a)
    assert duty == 85.0
    assert current_for_duty_percent(duty) == pytest.approx(51.0)


@given(
    st.floats(min_value=6.0, max_value=80.0),
    st.floats(min_value=6.0, max_value=80.0),
)
@example(51.0, 51.01)  # the edge of Table A.7's two formulas
def test_duty_never_decreases_when_the_limit_rises(low_a: float, high_a: float) -> None:
    low_a, high_a = sorted((low_a, high_a))
    low_duty = duty_percent_for_current(low_a)
    high_duty = duty_percent_for_current(high_a)
    assert low_duty is not None and high_duty is not None
    assert low_duty <= high_duty


@given(st.floats(min_value=6.0, max_value=80.0))
@example(52.5078125)  # found by hypothesis: rounds down to 85.00 %, read as 51 A
def test_ev_never_reads_more_than_the_limit_beyond_pwm_rounding(current_a: float) -> None:
    duty = duty_percent_for_current(current_a)
    assert duty is not None
    # A duty rounded to 0.01 % is worth at most 0.0125 A (0.005 % x 2.5 A/%).
    assert current_for_duty_percent(duty) <= current_a + 0.0125
    # The table's 51-52.5 A gap, which the 0.01 % duty rounding widens by 0.0125 A: a
    # limit just above 52.5 A rounds to 85.00 %, read as 51 A (less, never more).
    assert current_for_duty_percent(duty) >= current_a - 1.5 - 0.0125


# --- the pilot decoder (Table A.3) -----------------------------------------------------------


def decoder_in(state: PilotState) -> PilotDecoder:
    """A fresh decoder that has seen `state` (from A: E and F have not seen a car)."""
    decoder = PilotDecoder()
    decoder.feed(state)
    return decoder


# Every transition source -> target with the EV events it means. E and F are primed from
# A, so their "cleared" rows show a car arriving only if the new state has one.
TRANSITIONS: dict[PilotState, dict[PilotState, list[EvEvent]]] = {
    A: {
        A: [],
        B: [PLUGGED],
        C: [PLUGGED, READY],
        D: [PLUGGED, READY],
        E: [ERROR],
        F: [ERROR],
    },
    B: {
        A: [UNPLUGGED],
        B: [],
        C: [READY],
        D: [READY],
        E: [ERROR],
        F: [ERROR],
    },
    C: {
        A: [NOT_READY, UNPLUGGED],
        B: [NOT_READY],
        C: [],
        D: [],  # still ready, now asking for ventilation
        E: [NOT_READY, ERROR],  # energy must stop: the EV is no longer seen as ready
        F: [NOT_READY, ERROR],
    },
    D: {
        A: [NOT_READY, UNPLUGGED],
        B: [NOT_READY],
        C: [],
        D: [],
        E: [NOT_READY, ERROR],
        F: [NOT_READY, ERROR],
    },
    E: {
        A: [CLEARED],
        B: [CLEARED, PLUGGED],
        C: [CLEARED, PLUGGED, READY],
        D: [CLEARED, PLUGGED, READY],
        E: [],
        F: [],  # still in error: one error, not two
    },
    F: {
        A: [CLEARED],
        B: [CLEARED, PLUGGED],
        C: [CLEARED, PLUGGED, READY],
        D: [CLEARED, PLUGGED, READY],
        E: [],
        F: [],
    },
}


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (source, target, expected)
        for source, row in TRANSITIONS.items()
        for target, expected in row.items()
    ],
    ids=lambda value: value.value if isinstance(value, PilotState) else None,
)
def test_every_pilot_transition_yields_the_events_table_a3_implies(
    source: PilotState, target: PilotState, expected: list[EvEvent]
) -> None:
    assert decoder_in(source).feed(target) == expected


def test_the_transition_table_covers_all_36_transitions() -> None:
    assert {(s, t) for s, row in TRANSITIONS.items() for t in row} == {
        (s, t) for s in PilotState for t in PilotState
    }


def feed_all(decoder: PilotDecoder, states: list[PilotState]) -> list[list[EvEvent]]:
    return [decoder.feed(state) for state in states]


def test_plug_charge_pause_unplug_sequence() -> None:
    assert feed_all(PilotDecoder(), [B, C, B, A]) == [[PLUGGED], [READY], [NOT_READY], [UNPLUGGED]]


def test_direct_jump_a_to_c_is_plugged_then_ready() -> None:
    assert PilotDecoder().feed(C) == [PLUGGED, READY]


def test_direct_jump_c_to_a_is_not_ready_then_unplugged() -> None:
    assert decoder_in(C).feed(A) == [NOT_READY, UNPLUGGED]


def test_error_while_connected_and_cleared_does_not_replug() -> None:
    assert feed_all(decoder_in(B), [E, B]) == [[ERROR], [CLEARED]]


def test_error_while_charging_stops_readiness_and_clearing_restores_it() -> None:
    assert feed_all(decoder_in(C), [E, C]) == [[NOT_READY, ERROR], [CLEARED, READY]]


def test_error_without_a_car_then_a_car_is_plugged_in() -> None:
    assert feed_all(PilotDecoder(), [E, B]) == [[ERROR], [CLEARED, PLUGGED]]


def test_error_while_connected_then_unplugged() -> None:
    assert feed_all(decoder_in(B), [E, A]) == [[ERROR], [CLEARED, UNPLUGGED]]


def test_error_switching_between_e_and_f_is_one_error() -> None:
    assert feed_all(decoder_in(B), [E, F, E, B]) == [[ERROR], [], [], [CLEARED]]


@pytest.mark.parametrize("source", [A, B, C, D])
def test_state_f_that_we_drive_ourselves_is_not_an_error(source: PilotState) -> None:
    decoder = decoder_in(source)
    assert decoder.feed(F, driving_f=True) == []
    assert decoder.feed(source) == []  # nothing happened while we held the pilot at -12 V


def test_car_paused_while_we_drove_f_is_seen_when_we_stop() -> None:
    decoder = decoder_in(C)
    assert decoder.feed(F, driving_f=True) == []
    assert decoder.feed(B) == [NOT_READY]
    assert decoder.feed(F, driving_f=True) == []
    assert decoder.feed(A) == [UNPLUGGED]


@pytest.mark.parametrize("state", list(PilotState))
def test_repeated_state_gives_no_events(state: PilotState) -> None:
    decoder = decoder_in(state)
    assert decoder.feed(state) == []
    assert decoder.feed(state) == []


@given(st.lists(st.sampled_from(list(PilotState)), max_size=40))
def test_plugged_and_unplugged_alternate_and_match_the_last_good_state(
    states: list[PilotState],
) -> None:
    decoder = PilotDecoder()
    connected = False
    ready = False
    in_error = False
    for state in states:
        for event in decoder.feed(state):
            if event == PLUGGED:
                assert not connected
                connected = True
            elif event == UNPLUGGED:
                assert connected and not ready
                connected = False
            elif event == READY:
                assert connected and not ready
                ready = True
            elif event == NOT_READY:
                assert ready
                ready = False
            elif event == ERROR:
                assert not in_error and not ready
                in_error = True
            elif event == CLEARED:
                assert in_error
                in_error = False
        if state in (E, F):
            assert in_error and not ready
        else:
            assert not in_error
            assert connected == (state != A)
            assert ready == (state in (C, D))
