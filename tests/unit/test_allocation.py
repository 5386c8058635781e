"""Sharing a supply limit between EVSEs (agent.core.allocation), example- and property-based."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.core.allocation import MIN_CURRENT_A, Demand, allocate, wanted_a


def active(evse_id: int, cap: float = 32.0, *, running: bool = True, **kw: float) -> Demand:
    return Demand(evse_id=evse_id, active=True, running=running, cap_a=cap, **kw)


def test_equal_shares_when_everyone_wants_more_than_the_capacity() -> None:
    shares = allocate(40.0, [active(1), active(2), active(3), active(4)])
    assert shares == {1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0}


def test_an_evse_without_a_session_gets_nothing_under_a_shared_limit() -> None:
    idle = Demand(evse_id=2, active=False, running=False, cap_a=32.0)
    assert allocate(40.0, [active(1), idle]) == {1: 32.0, 2: 0.0}


def test_without_a_shared_limit_each_active_evse_gets_its_cap() -> None:
    assert allocate(None, [active(1, 16.0), active(2, 32.0)]) == {1: 16.0, 2: 32.0}


def test_what_one_evse_cannot_take_goes_to_the_others() -> None:
    shares = allocate(40.0, [active(1, cap=8.0), active(2), active(3)])
    assert shares == {1: 8.0, 2: 16.0, 3: 16.0}


def test_running_sessions_keep_their_minimum_before_a_newcomer_gets_any() -> None:
    newcomer = active(3, running=False, since=100.0)
    shares = allocate(13.0, [active(1, since=1.0), active(2, since=2.0), newcomer])
    assert shares[3] == 0.0
    assert shares[1] + shares[2] == 13.0


def test_first_come_first_served_among_sessions_not_yet_drawing() -> None:
    early = active(1, running=False, since=10.0)
    late = active(2, running=False, since=20.0)
    assert allocate(7.0, [late, early]) == {1: 7.0, 2: 0.0}


def test_an_ev_drawing_less_than_offered_releases_the_rest() -> None:
    lazy = active(1, offered_a=20.0, drawing_a=8.0)
    shares = allocate(40.0, [lazy, active(2)])
    assert shares[1] == 10.0  # its draw plus the ramp margin
    assert shares[2] == 30.0


def test_an_ev_drawing_what_it_is_offered_is_not_treated_as_self_limited() -> None:
    busy = active(1, offered_a=20.0, drawing_a=19.5)
    assert allocate(40.0, [busy, active(2)]) == {1: 20.0, 2: 20.0}


def test_an_evse_capped_below_the_minimum_is_paused() -> None:
    assert allocate(40.0, [active(1, cap=4.0), active(2)]) == {1: 0.0, 2: 32.0}


demands = st.lists(
    st.builds(
        Demand,
        evse_id=st.integers(1, 10_000),
        active=st.booleans(),
        running=st.booleans(),
        cap_a=st.floats(0, 80),
        offered_a=st.floats(0, 80),
        drawing_a=st.none() | st.floats(0, 80),
        since=st.floats(0, 1e6),
    ),
    max_size=8,
    unique_by=lambda d: d.evse_id,
)


@given(st.floats(0, 200), demands)
def test_shares_never_exceed_capacity_cap_or_go_between_zero_and_the_minimum(
    capacity: float, evses: list[Demand]
) -> None:
    shares = allocate(capacity, evses)
    assert sum(shares.values()) <= capacity + 1e-6
    for d in evses:
        share = shares[d.evse_id]
        assert share == 0.0 or MIN_CURRENT_A <= share <= max(d.cap_a, MIN_CURRENT_A) + 1e-9
        if not d.active:
            assert share == 0.0


@given(st.floats(0, 200), demands)
def test_capacity_is_not_left_unused_while_an_admitted_evse_wants_more(
    capacity: float, evses: list[Demand]
) -> None:
    shares = allocate(capacity, evses)
    spare = capacity - sum(shares.values())
    admitted = [d for d in evses if shares[d.evse_id] > 0]
    if spare > 1e-6 and admitted:
        assert all(shares[d.evse_id] >= wanted_a(d) - 1e-6 for d in admitted)


def test_an_ev_staying_at_its_own_limit_keeps_its_trimmed_share_without_oscillating() -> None:
    first = allocate(40.0, [active(1, offered_a=20.0, drawing_a=8.0), active(2)])
    again = allocate(40.0, [active(1, offered_a=first[1], drawing_a=8.0), active(2)])
    assert first == again == {1: 10.0, 2: 30.0}


def test_an_ev_taking_its_headroom_gets_its_full_share_back() -> None:
    assert allocate(40.0, [active(1, offered_a=10.0, drawing_a=10.0), active(2)]) == {
        1: 20.0,
        2: 20.0,
    }
