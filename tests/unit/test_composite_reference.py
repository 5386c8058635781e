"""The composite schedule against a plain reference evaluator, second by second.

`reference_limit` is written apart from agent.core.composite and as naively as the rules
read (OCPP 1.6 section 3.13, 2.0.1 K08): at one instant, evaluate every profile directly
(validity, where its schedule starts, which period is in force), take the highest stack
level per purpose, TX before TX_DEFAULT, the minimum across purposes. It works on
datetimes and steps recurrences one at a time; the implementation works on integer
seconds and period boundaries. Hypothesis generates profile sets of every kind around a
small window (recurrences placed so that a day or week boundary falls inside it,
RELATIVE profiles with and without a transaction) and the composite must equal the
reference at every second of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.composite import CompositeSchedule, RunningTransaction, composite_schedule
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    SchedulePeriod,
)

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
VOLTS = 230.0
ONE_SECOND = timedelta(seconds=1)
Limit = tuple[float | None, int | None]

# -- the reference ------------------------------------------------------------------------


def reference_period(
    profile: ChargingProfile, t: datetime, relative_start: datetime
) -> SchedulePeriod | None:
    """The period of `profile` in force at `t`, evaluated directly from the rules."""
    if profile.valid_from is not None and t < profile.valid_from:
        return None
    if profile.valid_to is not None and t >= profile.valid_to:
        return None
    schedule = profile.schedule
    length_s = schedule.duration_s
    if profile.kind is ProfileKind.RELATIVE:
        begin = relative_start
    else:
        assert schedule.start_schedule is not None
        begin = schedule.start_schedule
    if t < begin:
        return None
    if profile.kind is ProfileKind.RECURRING:
        step = timedelta(days=1 if profile.recurrence is Recurrence.DAILY else 7)
        while begin + step <= t:  # walk to the recurrence that covers t
            begin += step
        step_s = step.total_seconds()
        length_s = int(step_s if length_s is None else min(length_s, step_s))
    elapsed_s = (t - begin).total_seconds()
    if length_s is not None and elapsed_s >= length_s:
        return None
    in_force = None
    for period in schedule.periods:
        if period.start_s <= elapsed_s:
            in_force = period
    return in_force


def in_unit(limit: float, unit: RateUnit, wanted: RateUnit, phases: int) -> float:
    """A limit in the wanted unit: watts = amps per phase x volts x phases."""
    if unit == wanted:
        return limit
    if wanted == RateUnit.WATT:
        return limit * VOLTS * phases
    return limit / (VOLTS * phases)


def reference_limit(
    profiles: list[ChargingProfile],
    t: datetime,
    *,
    evse_id: int,
    window_start: datetime,
    unit: RateUnit,
    transaction: RunningTransaction | None,
) -> Limit:
    """(limit, phases) the rules give for `evse_id` at instant `t`."""
    relative_start = window_start if transaction is None else transaction.started_at

    def applies(profile: ChargingProfile, purpose: ProfilePurpose) -> bool:
        if profile.purpose != purpose:
            return False
        if purpose == ProfilePurpose.STATION_MAX:
            return True
        if evse_id == 0:
            return False
        if purpose == ProfilePurpose.TX:
            return (
                profile.evse_id == evse_id
                and transaction is not None
                and profile.transaction_id == transaction.transaction_id
            )
        if profile.evse_id == evse_id:
            return True
        shadowed = any(
            other.purpose == ProfilePurpose.TX_DEFAULT
            and other.evse_id == evse_id
            and other.stack_level == profile.stack_level
            for other in profiles
        )
        return profile.evse_id == 0 and not shadowed

    def prevailing(purpose: ProfilePurpose) -> tuple[ChargingProfile, SchedulePeriod] | None:
        best = None
        for profile in profiles:
            if not applies(profile, purpose):
                continue
            period = reference_period(profile, t, relative_start)
            if period is None:
                continue
            rank = (profile.stack_level, profile.profile_id)
            if best is None or rank > best[0]:
                best = (rank, profile, period)
        return None if best is None else (best[1], best[2])

    found = [
        prevailing(ProfilePurpose.STATION_MAX),
        prevailing(ProfilePurpose.TX) or prevailing(ProfilePurpose.TX_DEFAULT),
    ]
    options = [
        (in_unit(period.limit, profile.schedule.rate_unit, unit, period.phases), period.phases)
        for profile, period in (item for item in found if item is not None)
    ]
    if not options:
        return None, None
    return min(options)


# -- profile sets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    profiles: list[ChargingProfile]
    evse_id: int
    start: datetime
    duration_s: int
    unit: RateUnit
    transaction: RunningTransaction | None


#: Mostly the id of the running transaction ("tx-1"), so TX profiles often apply.
TX_IDS = st.sampled_from(["tx-1", "tx-1", "tx-2"])


@st.composite
def periods(
    draw: st.DrawFn, *, spread_s: int, recurrence_s: int | None
) -> tuple[SchedulePeriod, ...]:
    """1-4 periods, the first at 0; for a recurrence some near its end (so they show)."""
    offsets = st.integers(1, spread_s)
    if recurrence_s is not None:
        offsets = offsets | st.integers(recurrence_s - spread_s, recurrence_s - 1)
    starts = sorted(draw(st.sets(offsets, max_size=3)))
    return tuple(
        SchedulePeriod(
            start_s,
            float(draw(st.integers(0, 40))),
            draw(st.none() | st.integers(1, 3)),
        )
        for start_s in [0, *starts]
    )


@st.composite
def profiles(draw: st.DrawFn, profile_id: int, spread_s: int) -> ChargingProfile:
    """One profile of any purpose and kind with times within `spread_s` of T0."""
    near = st.integers(-spread_s, spread_s).map(lambda s: T0 + timedelta(seconds=s))
    purpose = draw(st.sampled_from(ProfilePurpose))
    evse_id = {
        ProfilePurpose.STATION_MAX: st.just(0),
        ProfilePurpose.TX: st.sampled_from([1, 1, 2]),
        ProfilePurpose.TX_DEFAULT: st.sampled_from([0, 1, 2]),
    }[purpose]
    kinds = list(ProfileKind)
    if purpose == ProfilePurpose.STATION_MAX:
        kinds.remove(ProfileKind.RELATIVE)  # 2.0.1 K01.FR.38
    kind = draw(st.sampled_from(kinds))
    recurrence = None
    recurrence_s = None
    start: datetime | None = None
    durations = st.none() | st.integers(1, 2 * spread_s)
    if kind == ProfileKind.ABSOLUTE:
        start = draw(near)
    elif kind == ProfileKind.RECURRING:
        recurrence = draw(st.sampled_from(Recurrence))
        recurrence_s = recurrence.period_s
        # 0-2 recurrences back, so a recurrence boundary lands near the window.
        start = draw(near) - draw(st.integers(0, 2)) * timedelta(seconds=recurrence_s)
        durations = durations | st.integers(recurrence_s - spread_s, recurrence_s + spread_s)
    valid_from = draw(st.none() | near)
    valid_to = draw(st.none() | near)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        valid_from, valid_to = valid_to - ONE_SECOND, valid_from + ONE_SECOND
    unit = draw(st.sampled_from(RateUnit))
    schedule_periods = draw(periods(spread_s=spread_s, recurrence_s=recurrence_s))
    if unit == RateUnit.WATT:  # watts in the range amps give
        schedule_periods = tuple(
            SchedulePeriod(p.start_s, p.limit * 500, p.number_phases) for p in schedule_periods
        )
    return ChargingProfile(
        profile_id=profile_id,
        evse_id=draw(evse_id),
        purpose=purpose,
        stack_level=draw(st.integers(0, 3)),
        kind=kind,
        recurrence=recurrence,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=draw(TX_IDS) if purpose == ProfilePurpose.TX else None,
        schedule=ChargingSchedule(
            rate_unit=unit,
            periods=schedule_periods,
            start_schedule=start,
            duration_s=draw(durations),
        ),
    )


@st.composite
def cases(draw: st.DrawFn, *, spread_s: int, max_profiles: int) -> Case:
    """A profile set, an EVSE, a window near T0 and maybe a running transaction."""
    count = draw(st.integers(0, max_profiles) | st.integers(max_profiles // 2, max_profiles))
    ids = draw(st.permutations(range(1, count + 1)))
    started_at = st.integers(-2 * spread_s, spread_s).map(lambda s: T0 + timedelta(seconds=s))
    transaction = draw(st.none() | st.builds(RunningTransaction, st.just("tx-1"), started_at))
    return Case(
        profiles=[draw(profiles(profile_id, spread_s)) for profile_id in ids],
        evse_id=draw(st.sampled_from([1, 1, 2, 0])),
        start=T0 + timedelta(seconds=draw(st.integers(-spread_s, spread_s))),
        duration_s=draw(st.one_of(*[st.integers(spread_s, 2 * spread_s)] * 3, st.integers(1, 60))),
        unit=draw(st.sampled_from(RateUnit)),
        transaction=transaction,
    )


# -- the properties ------------------------------------------------------------------------


def check_against_reference(case: Case) -> None:
    """The composite equals the reference at every second and is well formed."""
    composite = composite_schedule(
        case.profiles,
        evse_id=case.evse_id,
        start=case.start,
        duration_s=case.duration_s,
        rate_unit=case.unit,
        transaction=case.transaction,
    )
    instants = [case.start + k * ONE_SECOND for k in range(case.duration_s)]
    expected = [
        reference_limit(
            case.profiles,
            t,
            evse_id=case.evse_id,
            window_start=case.start,
            unit=case.unit,
            transaction=case.transaction,
        )
        for t in instants
    ]
    got = [_limit_and_phases(composite, t) for t in instants]
    assert got == expected
    _check_shape(composite)
    for k, t in enumerate(instants):
        change = next((j for j in range(k + 1, len(expected)) if expected[j] != expected[k]), None)
        assert composite.next_change_after(t) == (None if change is None else instants[change])


def _limit_and_phases(composite: CompositeSchedule, t: datetime) -> Limit:
    period = composite.period_at(t)
    assert composite.limit_at(t) == period.limit
    return period.limit, period.number_phases


def _check_shape(composite: CompositeSchedule) -> None:
    starts = [period.start_s for period in composite.periods]
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    assert starts[-1] < composite.duration_s
    pairs = list(zip(composite.periods, composite.periods[1:], strict=False))
    assert all((a.limit, a.number_phases) != (b.limit, b.number_phases) for a, b in pairs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(spread_s=240, max_profiles=6))
def test_the_composite_equals_the_reference_at_every_second(case: Case) -> None:
    check_against_reference(case)


@pytest.mark.slow
@pytest.mark.timeout(600)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(spread_s=1800, max_profiles=10))
def test_the_composite_equals_the_reference_over_longer_windows(case: Case) -> None:
    check_against_reference(case)


def test_the_reference_agrees_on_a_hand_checked_case() -> None:
    # Guards the reference itself: a daily profile from 22:00, eight hours long, over a
    # base of 32 A, seen at 21:59:59, 22:00:00, 05:59:59 and 06:00:00.
    base = ChargingProfile(
        1,
        1,
        ProfilePurpose.TX_DEFAULT,
        0,
        ProfileKind.ABSOLUTE,
        ChargingSchedule(RateUnit.AMPERE, (SchedulePeriod(0, 32.0),), start_schedule=T0),
    )
    night = ChargingProfile(
        2,
        1,
        ProfilePurpose.TX_DEFAULT,
        1,
        ProfileKind.RECURRING,
        ChargingSchedule(
            RateUnit.AMPERE,
            (SchedulePeriod(0, 10.0, 1),),
            start_schedule=T0 - timedelta(hours=2),
            duration_s=8 * 3600,
        ),
        recurrence=Recurrence.DAILY,
    )

    def ref(seconds: int) -> Limit:
        t = T0 + timedelta(seconds=seconds)
        return reference_limit(
            [base, night], t, evse_id=1, window_start=T0, unit=RateUnit.AMPERE, transaction=None
        )

    assert ref(22 * 3600 - 1) == (32.0, 3)
    assert ref(22 * 3600) == (10.0, 1)
    assert ref(30 * 3600 - 1) == (10.0, 1)
    assert ref(30 * 3600) == (32.0, 3)
