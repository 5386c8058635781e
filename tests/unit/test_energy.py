"""Local energy management's pure rules (agent/core/energy.py): headroom from a site meter
reading, off-peak windows and their boundaries, PV surplus with hysteresis and phases."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.energy import (
    PvClaim,
    PvRegulator,
    PvSettings,
    Window,
    drawing_phases,
    off_peak_state,
    other_loads_a,
    share_surplus,
    signed_currents,
    site_headroom_a,
    surplus_w,
)

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = frozenset(range(5))
ALL_DAYS = frozenset(range(7))

# -- headroom ------------------------------------------------------------------------------


def test_headroom_is_the_limit_less_the_other_loads_on_the_most_loaded_phase() -> None:
    # Site reads 30/20/10 A, of which the EVSEs draw 16 A on every phase: other loads
    # are 14/4/-6 A, so 40 - 14 = 26 A are left for the EVSEs.
    site = (30.0, 20.0, 10.0)
    evses = [(16.0, 16.0, 16.0)]
    assert other_loads_a(site, evses) == (14.0, 4.0, -6.0)
    assert site_headroom_a(40.0, site, evses) == 26.0


def test_headroom_is_never_negative_when_the_other_loads_exceed_the_limit() -> None:
    assert site_headroom_a(32.0, (50.0, 10.0, 10.0), []) == 0.0


def test_export_leaves_more_headroom_than_the_limit() -> None:
    # PV exports 10 A on every phase and no EV draws: the EVSEs may take 42 A per phase
    # before the connection imports 32 A.
    assert site_headroom_a(32.0, (-10.0, -10.0, -10.0), []) == 42.0


def test_current_magnitudes_take_the_sign_of_each_phase_power() -> None:
    assert signed_currents((5.0, 6.0, 7.0), (1000.0, -1200.0, 0.0)) == (5.0, -6.0, 7.0)
    assert signed_currents((5.0, -6.0, 7.0)) == (5.0, -6.0, 7.0)


@given(
    limit=st.floats(0, 200),
    other=st.tuples(*[st.floats(-100, 100)] * 3),
    evses=st.lists(st.tuples(*[st.floats(0, 80)] * 3), max_size=4),
)
def test_evses_drawing_the_headroom_keep_every_phase_within_the_limit(
    limit: float,
    other: tuple[float, float, float],
    evses: list[tuple[float, float, float]],
) -> None:
    site = tuple(o + sum(e[p] for e in evses) for p, o in enumerate(other))
    headroom = site_headroom_a(limit, site, evses)
    assert headroom >= 0.0
    for phase in range(3):  # the EVSEs drawing exactly the headroom on this phase
        assert other[phase] + headroom <= max(limit, other[phase]) + 1e-6


def test_surplus_is_export_plus_what_the_evs_draw() -> None:
    assert surplus_w(-2000.0, [1500.0]) == 3500.0
    assert surplus_w(500.0, []) == -500.0


def test_drawing_phases_counts_phases_carrying_a_load() -> None:
    assert drawing_phases((10.0, 0.2, 0.0)) == 1
    assert drawing_phases((10.0, 10.0, 10.0)) == 3


# -- off-peak windows ----------------------------------------------------------------------


def test_a_night_window_runs_into_the_next_morning() -> None:
    night = [Window(WEEKDAYS, time(22, 0), time(6, 0))]
    monday_23h = datetime(2025, 6, 2, 23, 0, tzinfo=BERLIN)
    state = off_peak_state(night, BERLIN, monday_23h)
    assert state.inside
    assert state.until == datetime(2025, 6, 3, 6, 0, tzinfo=BERLIN)


def test_outside_a_window_the_next_boundary_is_the_next_start() -> None:
    night = [Window(WEEKDAYS, time(22, 0), time(6, 0))]
    state = off_peak_state(night, BERLIN, datetime(2025, 6, 2, 12, 0, tzinfo=BERLIN))
    assert not state.inside
    assert state.until == datetime(2025, 6, 2, 22, 0, tzinfo=BERLIN)


def test_the_window_belongs_to_the_day_it_starts_on() -> None:
    night = [Window(WEEKDAYS, time(22, 0), time(6, 0))]
    # Friday night's window runs into Saturday; none starts on Saturday evening.
    assert off_peak_state(night, BERLIN, datetime(2025, 6, 7, 3, 0, tzinfo=BERLIN)).inside
    saturday_23h = off_peak_state(night, BERLIN, datetime(2025, 6, 7, 23, 0, tzinfo=BERLIN))
    assert not saturday_23h.inside
    assert saturday_23h.until == datetime(2025, 6, 9, 22, 0, tzinfo=BERLIN)  # Monday


def test_adjacent_windows_merge_into_one_interval() -> None:
    windows = [
        Window(WEEKDAYS, time(0, 0), time(0, 0)),  # all day on weekdays
        Window(frozenset({5}), time(0, 0), time(12, 0)),  # and Saturday morning
    ]
    state = off_peak_state(windows, UTC, T0)
    assert state.inside
    assert state.until == datetime(2025, 6, 7, 12, 0, tzinfo=UTC)


def test_windows_covering_the_whole_week_never_end() -> None:
    state = off_peak_state([Window(ALL_DAYS, time(6, 0), time(6, 0))], BERLIN, T0)
    assert state.inside and state.until is None


def test_no_window_ahead_means_no_boundary() -> None:
    assert off_peak_state([], UTC, T0).until is None


def test_a_window_follows_daylight_saving_time() -> None:
    # Berlin goes from CET (+1) to CEST (+2) on 2025-03-30: 22:00 local is 21:00 UTC the
    # evening before and 20:00 UTC that evening.
    night = [Window(ALL_DAYS, time(22, 0), time(6, 0))]
    before = off_peak_state(night, BERLIN, datetime(2025, 3, 29, 12, 0, tzinfo=UTC))
    after = off_peak_state(night, BERLIN, datetime(2025, 3, 30, 12, 0, tzinfo=UTC))
    assert before.until == datetime(2025, 3, 29, 21, 0, tzinfo=UTC)
    assert after.until == datetime(2025, 3, 30, 20, 0, tzinfo=UTC)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        off_peak_state([], UTC, datetime(2025, 1, 1))


_clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
_windows = st.lists(
    st.builds(Window, st.frozensets(st.integers(0, 6), min_size=1), _clock_times, _clock_times),
    min_size=1,
    max_size=3,
)
_instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    windows=_windows,
    now=_instants,
    zone=st.sampled_from([UTC, BERLIN, ZoneInfo("America/New_York")]),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_the_state_holds_until_the_boundary_and_flips_there(
    windows: list[Window], now: datetime, zone: ZoneInfo, fraction: float
) -> None:
    state = off_peak_state(windows, zone, now)
    if state.until is None:  # windows covering the whole week: inside for good
        assert state.inside
        later = now + timedelta(days=30) * fraction
        assert off_peak_state(windows, zone, later) == state
        return
    assert state.until > now
    # timedelta products round to the microsecond: stay strictly before the boundary.
    between = min(now + (state.until - now) * fraction, state.until - timedelta(microseconds=1))
    assert off_peak_state(windows, zone, between) == state
    assert off_peak_state(windows, zone, state.until).inside is not state.inside


@settings(max_examples=200, deadline=None)
@given(windows=_windows, now=_instants)
def test_in_utc_the_state_is_the_plain_weekday_and_clock_rule(
    windows: list[Window], now: datetime
) -> None:
    def inside(w: Window) -> bool:
        t = now.time()
        if w.end > w.start:
            return now.weekday() in w.days and w.start <= t < w.end
        yesterday = (now.weekday() - 1) % 7
        return (now.weekday() in w.days and t >= w.start) or (yesterday in w.days and t < w.end)

    assert off_peak_state(windows, UTC, now).inside == any(inside(w) for w in windows)


# -- PV surplus ------------------------------------------------------------------------------


def _run(regulator: PvRegulator, surplus: float, seconds: int, start: datetime = T0) -> object:
    decision = None
    for s in range(seconds + 1):
        decision = regulator.update(start + timedelta(seconds=s), surplus)
    return decision


def test_pv_starts_only_after_the_surplus_held_for_the_start_delay() -> None:
    regulator = PvRegulator(
        PvSettings(start_surplus_w=2000, start_delay_s=60), max_phases=3, can_switch=False
    )
    assert regulator.update(T0, 5000).current_a == 0.0
    assert regulator.update(T0 + timedelta(seconds=59), 5000).current_a == 0.0
    decision = regulator.update(T0 + timedelta(seconds=60), 6900)
    assert decision.from_surplus
    assert decision.current_a == 10.0  # 6900 W / (230 V * 3)


def test_pv_a_dip_below_the_start_threshold_restarts_the_delay() -> None:
    regulator = PvRegulator(
        PvSettings(start_surplus_w=2000, start_delay_s=60), max_phases=3, can_switch=False
    )
    regulator.update(T0, 5000)
    regulator.update(T0 + timedelta(seconds=30), 1000)  # a cloud
    assert regulator.update(T0 + timedelta(seconds=70), 5000).current_a == 0.0
    assert regulator.update(T0 + timedelta(seconds=130), 5000).current_a > 0.0


def test_pv_follows_the_surplus_at_no_less_than_the_minimum_current() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=0, stop_surplus_w=1000), max_phases=3, can_switch=False
    )
    assert regulator.update(T0, 11040).current_a == 16.0
    assert regulator.update(T0 + timedelta(seconds=1), 2000).current_a == 6.0  # in the band


def test_pv_stops_below_the_stop_threshold_after_the_stop_delay() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=0, stop_surplus_w=1000, stop_delay_s=300),
        max_phases=3,
        can_switch=False,
    )
    regulator.update(T0, 8000)
    assert regulator.update(T0 + timedelta(seconds=10), 500).current_a == 6.0
    assert regulator.update(T0 + timedelta(seconds=309), 500).current_a == 6.0
    stopped = regulator.update(T0 + timedelta(seconds=310), 500)
    assert stopped.current_a == 0.0 and not stopped.from_surplus


def test_pv_min_current_option_keeps_the_minimum_instead_of_pausing() -> None:
    regulator = PvRegulator(
        PvSettings(keep_min_current=True, start_delay_s=0), max_phases=3, can_switch=False
    )
    decision = regulator.update(T0, 0.0)
    assert decision.current_a == 6.0 and not decision.from_surplus


def test_pv_derived_thresholds_follow_the_minimum_power_on_the_phases_the_ev_takes() -> None:
    switching = PvRegulator(PvSettings(), max_phases=3, can_switch=True)
    fixed = PvRegulator(PvSettings(), max_phases=3, can_switch=False)
    assert switching.start_w == pytest.approx(6 * 230)
    assert switching.stop_w == pytest.approx(switching.start_w / 2)
    assert fixed.start_w == pytest.approx(6 * 230)  # its EV's phases unknown: a probe
    fixed.saw_drawing(3, supply_phases=3)
    assert fixed.start_w == pytest.approx(6 * 230 * 3)
    assert fixed.stop_w == pytest.approx(6 * 230 * 3 / 2)


def test_pv_a_one_phase_car_on_a_fixed_three_phase_supply_starts_on_a_one_phase_surplus() -> None:
    """The bench's visitor (issue 6): 2 kW of surplus is enough for a one-phase car."""
    regulator = PvRegulator(PvSettings(start_delay_s=60), max_phases=3, can_switch=False)
    assert _run(regulator, 2000, 60).current_a == 6.0  # started: 3 x 6 A offered
    regulator.saw_drawing(1, supply_phases=3)  # its meter: one phase carries the load
    decision = regulator.update(T0 + timedelta(seconds=65), 2000)
    assert decision.from_surplus and decision.current_a == 8.6  # 2000 W on one phase
    assert regulator.stop_w == pytest.approx(690)


def test_pv_a_three_phase_car_probed_on_a_one_phase_surplus_stops_at_its_first_reading() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=60, stop_delay_s=300), max_phases=3, can_switch=False
    )
    _run(regulator, 2000, 60)
    assert regulator.charging
    regulator.saw_drawing(3, supply_phases=3)
    stopped = regulator.update(T0 + timedelta(seconds=65), 2000)
    assert stopped.current_a == 0.0 and not regulator.charging  # not after 300 s
    # Now its threshold is three phases': 2 kW no longer starts it, 4.2 kW does.
    assert _run(regulator, 2000, 120, T0 + timedelta(seconds=70)).current_a == 0.0
    assert _run(regulator, 4200, 60, T0 + timedelta(seconds=200)).current_a == 6.0


def test_pv_learns_nothing_from_a_one_phase_supply_and_forgets_at_the_session_end() -> None:
    regulator = PvRegulator(PvSettings(), max_phases=3, can_switch=True)
    regulator.saw_drawing(1, supply_phases=1)
    assert regulator.ev_phases is None
    regulator.saw_drawing(1, supply_phases=3)
    assert regulator.ev_phases == 1
    regulator.reset()
    assert regulator.ev_phases is None


def test_pv_starts_on_one_phase_with_a_small_surplus_and_switches_up_after_the_delay() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=0, phase_delay_s=120), max_phases=3, can_switch=True
    )
    first = regulator.update(T0, 2300)
    assert (first.phases, first.current_a) == (1, 10.0)
    assert regulator.update(T0 + timedelta(seconds=10), 6900).phases == 1
    assert regulator.update(T0 + timedelta(seconds=129), 6900).phases == 1
    up = regulator.update(T0 + timedelta(seconds=130), 6900)
    assert (up.phases, up.current_a) == (3, 10.0)


def test_pv_switches_down_to_one_phase_when_three_would_need_the_grid() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=0, phase_delay_s=60), max_phases=3, can_switch=True
    )
    assert regulator.update(T0, 9000).phases == 3
    assert regulator.update(T0 + timedelta(seconds=1), 3000).phases == 3
    down = regulator.update(T0 + timedelta(seconds=61), 3000)
    assert (down.phases, down.current_a) == (1, 13.0)


def test_pv_does_not_switch_phases_on_a_board_that_cannot() -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=0, phase_delay_s=0), max_phases=3, can_switch=False
    )
    assert regulator.update(T0, 4140).phases == 3
    assert regulator.update(T0 + timedelta(seconds=600), 3000).phases == 3


def test_pv_a_one_phase_car_gets_the_whole_surplus_on_its_phase() -> None:
    regulator = PvRegulator(PvSettings(start_delay_s=0), max_phases=3, can_switch=False)
    regulator.saw_drawing(1, supply_phases=3)
    assert regulator.update(T0, 4600).current_a == 20.0


def test_pv_reset_starts_the_next_session_from_a_pause() -> None:
    regulator = PvRegulator(PvSettings(start_delay_s=30), max_phases=3, can_switch=True)
    _run(regulator, 8000, 40)
    assert regulator.charging
    regulator.reset()
    assert regulator.update(T0 + timedelta(seconds=50), 8000).current_a == 0.0
    assert regulator.phases == 1


@settings(max_examples=100, deadline=None)
@given(
    surpluses=st.lists(st.floats(-5000, 20000), min_size=1, max_size=60),
    can_switch=st.booleans(),
)
def test_pv_never_offers_below_the_minimum_and_switches_at_most_once_per_delay(
    surpluses: list[float], can_switch: bool
) -> None:
    regulator = PvRegulator(
        PvSettings(start_delay_s=10, stop_delay_s=10, phase_delay_s=30),
        max_phases=3,
        can_switch=can_switch,
    )
    switches: list[int] = []
    phases = regulator.phases
    for step, surplus in enumerate(surpluses):
        decision = regulator.update(T0 + timedelta(seconds=5 * step), surplus)
        assert decision.current_a == 0.0 or decision.current_a >= 6.0
        assert decision.phases in ((1, 3) if can_switch else (3,))
        if decision.phases != phases and regulator.charging:
            switches.append(step)
        phases = decision.phases
    # A switch needs its condition held for 30 s: 6 steps of 5 s at least.
    assert all(b - a >= 6 for a, b in itertools.pairwise(switches))


# -- sharing the surplus between PV EVSEs ----------------------------------------------------


def _claim(
    evse_id: int, *, charging: bool, need: float = 1380, want: float = 7360, since: float = 0
) -> PvClaim:
    return PvClaim(evse_id, charging, since or evse_id, need_w=need, want_w=want)


def test_surplus_for_one_start_goes_to_the_first_waiting_not_half_to_each() -> None:
    shares = share_surplus(2000, [_claim(1, charging=False), _claim(2, charging=False)])
    assert shares[1] == pytest.approx(2000)  # above its 1380 W threshold: it starts
    assert shares[2] < 1380  # what is left: it waits


def test_charging_sessions_keep_their_minimum_before_a_waiting_one_is_admitted() -> None:
    shares = share_surplus(
        3000,
        [_claim(2, charging=False, since=1), _claim(1, charging=True, need=4140, since=9)],
    )
    assert shares == {1: pytest.approx(3000), 2: pytest.approx(0)}
    shares = share_surplus(
        7000, [_claim(2, charging=False, since=1), _claim(1, charging=True, need=4140, want=11040)]
    )
    # 4140 + 1380 as minimums, the 1480 W left shared equally.
    assert shares == {1: pytest.approx(4880), 2: pytest.approx(2120)}


def test_an_ev_taking_less_leaves_the_rest_to_the_others() -> None:
    """The bench's waiting car (issue 6): its unused half must not be exported."""
    full = PvClaim(2, True, 2.0, need_w=1380, want_w=0.0, headroom_w=460)  # draws 0 A
    shares = share_surplus(7000, [_claim(1, charging=True, want=11040), full])
    assert shares[1] == pytest.approx(7000)  # all of it: none held back for EVSE 2
    assert shares[2] == pytest.approx(460)  # shown its headroom only
    shares = share_surplus(20000, [_claim(1, charging=True, want=11040), full])
    # What nobody can use is shown to both.
    assert shares[2] == pytest.approx(460 + 20000 - 11040)


@settings(max_examples=200, deadline=None)
@given(
    surplus=st.floats(-2000, 30000),
    specs=st.lists(
        st.tuples(st.booleans(), st.sampled_from([690.0, 1380.0, 4140.0]), st.floats(0, 22000)),
        min_size=1,
        max_size=4,
    ),
)
def test_surplus_shares_never_give_away_more_than_there_is(
    surplus: float, specs: list[tuple[bool, float, float]]
) -> None:
    claims = [
        PvClaim(i, charging, float(i), need_w=need, want_w=want, headroom_w=460.0)
        for i, (charging, need, want) in enumerate(specs, start=1)
    ]
    shares = share_surplus(surplus, claims)
    # What the EVs can take of their shares (headroom is shown, not counted).
    usable = sum(
        min(shares[c.evse_id] - c.headroom_w, c.want_w) for c in claims if _admitted(c, shares)
    )
    assert usable <= max(0.0, surplus) + 1e-6
    for c in claims:  # a waiting EVSE is offered its start only if it is admitted
        assert shares[c.evse_id] >= 0.0


def _admitted(claim: PvClaim, shares: dict[int, float]) -> bool:
    return claim.charging or shares[claim.evse_id] >= claim.need_w
