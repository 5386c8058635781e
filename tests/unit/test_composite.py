"""The composite schedule (agent.core.composite), rule by rule, on hand-made profile sets.

Each test states a rule of OCPP 1.6 section 3.13 / 2.0.1 K08 as a user would check it:
the limit at given instants and the periods a GetCompositeSchedule would report. The
property tests against a second-by-second reference are in test_composite_reference.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.composite import (
    CompositePeriod,
    RunningTransaction,
    composite_schedule,
    convert_limit,
)
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    SchedulePeriod,
)

MIDNIGHT = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # a Monday
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
A, W = RateUnit.AMPERE, RateUnit.WATT
HOUR = 3600


def at(seconds: float, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=seconds)


def profile(
    profile_id: int,
    *periods: tuple[int, float] | tuple[int, float, int],
    purpose: ProfilePurpose = ProfilePurpose.TX_DEFAULT,
    evse_id: int = 1,
    stack_level: int = 0,
    kind: ProfileKind = ProfileKind.ABSOLUTE,
    start: datetime | None = T0,
    unit: RateUnit = A,
    duration_s: int | None = None,
    **fields: Any,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        evse_id=evse_id,
        purpose=purpose,
        stack_level=stack_level,
        kind=kind,
        schedule=ChargingSchedule(
            rate_unit=unit,
            periods=tuple(SchedulePeriod(*period) for period in periods),
            start_schedule=None if kind is ProfileKind.RELATIVE else start,
            duration_s=duration_s,
        ),
        **fields,
    )


def limits(
    profiles: list[ChargingProfile],
    *,
    evse_id: int = 1,
    start: datetime = T0,
    duration_s: int = 4 * HOUR,
    unit: RateUnit = A,
    transaction: RunningTransaction | None = None,
) -> list[tuple[int, float | None]]:
    """The composite's periods as (start offset, limit) pairs."""
    composite = composite_schedule(
        profiles,
        evse_id=evse_id,
        start=start,
        duration_s=duration_s,
        rate_unit=unit,
        transaction=transaction,
    )
    return [(period.start_s, period.limit) for period in composite.periods]


def test_without_profiles_nothing_limits_the_evse() -> None:
    composite = composite_schedule([], evse_id=1, start=T0, duration_s=HOUR, rate_unit=A)

    assert composite.periods == (CompositePeriod(0, None, None),)
    assert composite.limit_at(at(1800)) is None
    assert composite.next_change_after(T0) is None


def test_the_specs_daily_profile_limits_to_6_kw_between_08_00_and_20_00() -> None:
    # OCPP 1.6 section 3.13.7, the example data structure.
    daily = profile(
        100,
        (0, 11000.0, 3),
        (8 * HOUR, 6000.0, 3),
        (20 * HOUR, 11000.0, 3),
        kind=ProfileKind.RECURRING,
        recurrence=Recurrence.DAILY,
        start=datetime(2013, 1, 1, tzinfo=UTC),
        unit=W,
        duration_s=24 * HOUR,
    )
    day = limits([daily], start=MIDNIGHT, duration_s=48 * HOUR, unit=W)

    assert day == [
        (0, 11000.0),
        (8 * HOUR, 6000.0),
        (20 * HOUR, 11000.0),
        (32 * HOUR, 6000.0),
        (44 * HOUR, 11000.0),
    ]
    in_amps = limits([daily], start=MIDNIGHT, duration_s=12 * HOUR)
    assert in_amps == [(0, 11000.0 / (230 * 3)), (8 * HOUR, 6000.0 / (230 * 3))]


def test_the_highest_stack_level_prevails_and_falls_back_when_its_duration_ends() -> None:
    base = profile(1, (0, 32.0), stack_level=0)
    boost = profile(2, (0, 10.0), (600, 12.0), stack_level=3, duration_s=HOUR)

    assert limits([base, boost]) == [(0, 10.0), (600, 12.0), (HOUR, 32.0)]


def test_without_a_duration_the_top_level_never_falls_back() -> None:
    # OCPP 1.6 section 3.13.2: "If you use Stacking without a duration, on the highest
    # stack level, the Charge Point will never fall back to a lower stack level profile."
    base = profile(1, (0, 32.0), stack_level=0)
    top = profile(2, (0, 10.0), stack_level=1)

    assert limits([base, top], duration_s=100 * HOUR) == [(0, 10.0)]


def test_a_profile_outside_its_validity_gives_way_to_the_lower_level() -> None:
    # 1.6 section 3.13.2: a replacement valid from the future reverts to the default
    # behaviour until validFrom is reached.
    base = profile(1, (0, 32.0))
    window = profile(2, (0, 8.0), stack_level=1, valid_from=at(HOUR), valid_to=at(2 * HOUR))

    assert limits([base, window]) == [(0, 32.0), (HOUR, 8.0), (2 * HOUR, 32.0)]


def test_an_absolute_schedule_says_nothing_before_its_start() -> None:
    base = profile(1, (0, 32.0))
    later = profile(2, (0, 6.0), stack_level=1, start=at(1800))

    assert limits([base, later]) == [(0, 32.0), (1800, 6.0)]


def test_a_tx_profile_overrules_tx_default_for_its_transaction_only() -> None:
    default = profile(1, (0, 32.0))
    tx = profile(2, (0, 10.0), purpose=ProfilePurpose.TX, transaction_id="tx-1")
    running = RunningTransaction("tx-1", T0)
    other = RunningTransaction("tx-2", T0)

    assert limits([default, tx], transaction=running) == [(0, 10.0)]
    assert limits([default, tx], transaction=other) == [(0, 32.0)]
    assert limits([default, tx]) == [(0, 32.0)]
    assert limits([default, tx], evse_id=2, transaction=running) == [(0, None)]


def test_tx_default_applies_where_the_tx_profile_has_ended() -> None:
    default = profile(1, (0, 32.0))
    tx = profile(2, (0, 10.0), purpose=ProfilePurpose.TX, transaction_id="tx-1", duration_s=HOUR)

    assert limits([default, tx], transaction=RunningTransaction("tx-1", T0)) == [
        (0, 10.0),
        (HOUR, 32.0),
    ]


def test_an_evse_zero_tx_default_applies_to_every_evse() -> None:
    everywhere = profile(1, (0, 20.0), evse_id=0)

    assert limits([everywhere], evse_id=1) == [(0, 20.0)]
    assert limits([everywhere], evse_id=2) == [(0, 20.0)]


def test_an_evse_tx_default_replaces_the_evse_zero_one_on_its_level_for_that_evse_only() -> None:
    # OCPP 1.6 section 3.13.1: "the TxDefaultProfile SHALL be replaced only for that
    # specific connector". Here the EVSE's own profile has ended after an hour, and the
    # EVSE 0 profile on the same level does not come back on EVSE 1.
    everywhere = profile(1, (0, 20.0), evse_id=0, stack_level=1)
    own = profile(2, (0, 12.0), evse_id=1, stack_level=1, duration_s=HOUR)
    lower = profile(3, (0, 30.0), evse_id=0, stack_level=0)

    assert limits([everywhere, own, lower], evse_id=1) == [(0, 12.0), (HOUR, 30.0)]
    assert limits([everywhere, own, lower], evse_id=2) == [(0, 20.0)]


def test_tx_defaults_on_evse_zero_and_an_evse_stack_on_different_levels() -> None:
    everywhere = profile(1, (0, 20.0), evse_id=0, stack_level=2, duration_s=HOUR)
    own = profile(2, (0, 12.0), evse_id=1, stack_level=1)

    assert limits([everywhere, own], evse_id=1) == [(0, 20.0), (HOUR, 12.0)]


def test_the_station_maximum_caps_the_transaction_limit() -> None:
    station = profile(1, (0, 16.0), (HOUR, 40.0), purpose=ProfilePurpose.STATION_MAX, evse_id=0)
    default = profile(2, (0, 32.0))

    assert limits([station, default]) == [(0, 16.0), (HOUR, 32.0)]


def test_a_gap_in_one_purpose_leaves_the_other_purpose_in_force() -> None:
    station = profile(1, (0, 16.0), purpose=ProfilePurpose.STATION_MAX, evse_id=0, duration_s=HOUR)
    default = profile(2, (0, 32.0), start=at(2 * HOUR))

    assert limits([station, default]) == [(0, 16.0), (HOUR, None), (2 * HOUR, 32.0)]


def test_the_station_composite_is_its_maximum_only() -> None:
    station = profile(1, (0, 63.0), purpose=ProfilePurpose.STATION_MAX, evse_id=0)
    default = profile(2, (0, 10.0), evse_id=0)

    assert limits([station, default], evse_id=0) == [(0, 63.0)]


def test_watts_and_amps_are_compared_in_the_requested_unit_with_each_periods_phases() -> None:
    station = profile(1, (0, 16 * 230 * 3.0), purpose=ProfilePurpose.STATION_MAX, evse_id=0, unit=W)
    single_phase = profile(2, (0, 20.0, 1), (HOUR, 20.0, 3))
    composite = composite_schedule(
        [station, single_phase], evse_id=1, start=T0, duration_s=2 * HOUR, rate_unit=W
    )

    assert composite.periods == (
        CompositePeriod(0, 20 * 230 * 1.0, 1),  # 4.6 kW on one phase is below 11 kW
        CompositePeriod(HOUR, 16 * 230 * 3.0, 3),  # 13.8 kW on three is not
    )


def test_on_equal_limits_the_period_with_fewer_phases_is_reported() -> None:
    station = profile(1, (0, 16.0, 3), purpose=ProfilePurpose.STATION_MAX, evse_id=0)
    default = profile(2, (0, 16.0, 1))
    composite = composite_schedule(
        [station, default], evse_id=1, start=T0, duration_s=HOUR, rate_unit=A
    )

    assert composite.periods == (CompositePeriod(0, 16.0, 1),)


def test_the_voltage_is_a_parameter() -> None:
    watts = profile(1, (0, 7360.0), unit=W)
    composite = composite_schedule(
        [watts], evse_id=1, start=T0, duration_s=HOUR, rate_unit=A, voltage_v=120.0
    )

    assert composite.limit_at(T0) == pytest.approx(7360.0 / (120.0 * 3))
    assert convert_limit(16.0, from_unit=A, to_unit=W, number_phases=1) == 16.0 * 230


def test_a_relative_profile_starts_at_the_transaction_start() -> None:
    relative = profile(1, (0, 6.0), (HOUR, 16.0), kind=ProfileKind.RELATIVE)
    started_half_an_hour_ago = RunningTransaction("tx-1", at(-1800))

    assert limits([relative], transaction=started_half_an_hour_ago) == [(0, 6.0), (1800, 16.0)]


def test_without_a_transaction_a_relative_profile_starts_at_the_window() -> None:
    relative = profile(1, (0, 6.0), (HOUR, 16.0), kind=ProfileKind.RELATIVE, duration_s=2 * HOUR)

    assert limits([relative], start=at(5000)) == [(0, 6.0), (HOUR, 16.0), (2 * HOUR, None)]


def test_a_recurring_profile_is_not_in_force_before_its_start_schedule() -> None:
    daily = profile(
        1, (0, 8.0), kind=ProfileKind.RECURRING, recurrence=Recurrence.DAILY, start=at(HOUR)
    )

    assert limits([daily]) == [(0, None), (HOUR, 8.0)]


def test_a_daily_profile_shorter_than_a_day_falls_back_for_the_rest_of_each_day() -> None:
    base = profile(1, (0, 32.0), start=MIDNIGHT)
    night = profile(
        2,
        (0, 10.0),
        stack_level=1,
        kind=ProfileKind.RECURRING,
        recurrence=Recurrence.DAILY,
        start=MIDNIGHT + timedelta(hours=22),
        duration_s=8 * HOUR,
    )

    assert limits([base, night], start=MIDNIGHT, duration_s=48 * HOUR) == [
        (0, 32.0),
        (22 * HOUR, 10.0),
        (30 * HOUR, 32.0),
        (46 * HOUR, 10.0),
    ]


def test_a_weekly_profile_restarts_on_the_same_weekday() -> None:
    weekly = profile(
        1,
        (0, 16.0),
        (5 * 24 * HOUR, 32.0),  # weekend from Saturday 00:00
        kind=ProfileKind.RECURRING,
        recurrence=Recurrence.WEEKLY,
        start=MIDNIGHT - timedelta(weeks=3),
    )
    week = limits([weekly], start=MIDNIGHT, duration_s=8 * 24 * HOUR)

    assert week == [(0, 16.0), (5 * 24 * HOUR, 32.0), (7 * 24 * HOUR, 16.0)]


def test_a_recurrence_longer_than_its_period_is_cut_by_the_next_recurrence() -> None:
    daily = profile(
        1,
        (0, 10.0),
        (23 * HOUR, 20.0),
        kind=ProfileKind.RECURRING,
        recurrence=Recurrence.DAILY,
        start=MIDNIGHT,
        duration_s=30 * HOUR,
    )

    assert limits([daily], start=MIDNIGHT, duration_s=48 * HOUR) == [
        (0, 10.0),
        (23 * HOUR, 20.0),
        (24 * HOUR, 10.0),
        (47 * HOUR, 20.0),
    ]


def test_equal_neighbouring_limits_are_merged_into_one_period() -> None:
    first = profile(1, (0, 16.0), stack_level=1, duration_s=HOUR)
    then = profile(2, (0, 16.0), (2 * HOUR, 8.0))

    assert limits([first, then]) == [(0, 16.0), (2 * HOUR, 8.0)]


def test_limit_at_and_next_change_after_follow_the_periods() -> None:
    stepped = profile(1, (0, 6.0), (600, 10.0), (1200, 16.0))
    composite = composite_schedule([stepped], evse_id=1, start=T0, duration_s=HOUR, rate_unit=A)

    assert composite.limit_at(at(599.9)) == 6.0
    assert composite.limit_at(at(600)) == 10.0
    assert composite.next_change_after(T0) == at(600)
    assert composite.next_change_after(at(600)) == at(1200)
    assert composite.next_change_after(at(1200)) is None
    assert composite.end == at(HOUR)
    with pytest.raises(ValueError, match="outside"):
        composite.limit_at(at(HOUR))
    with pytest.raises(ValueError, match="outside"):
        composite.limit_at(at(-1))


def test_the_window_starts_on_a_whole_second() -> None:
    composite = composite_schedule(
        [profile(1, (0, 6.0), (600, 10.0))],
        evse_id=1,
        start=at(0.75),
        duration_s=HOUR,
        rate_unit=A,
    )

    assert composite.start == T0
    assert composite.next_change_after(at(1)) == at(600)


def test_profiles_of_other_evses_do_not_count() -> None:
    other = profile(1, (0, 6.0), evse_id=2)

    assert limits([other], evse_id=1) == [(0, None)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 0},
        {"voltage_v": 0.0},
        {"start": datetime(2025, 3, 3, 12, 0)},
    ],
)
def test_an_impossible_request_is_a_value_error(kwargs: dict[str, Any]) -> None:
    request: dict[str, Any] = {"evse_id": 1, "start": T0, "duration_s": HOUR, "rate_unit": A}
    with pytest.raises(ValueError):
        composite_schedule([], **(request | kwargs))


def test_the_result_does_not_depend_on_the_order_of_the_profiles() -> None:
    profiles = [
        profile(1, (0, 32.0)),
        profile(2, (0, 10.0), stack_level=2, duration_s=HOUR),
        profile(3, (0, 20.0), evse_id=0, stack_level=1, valid_to=at(3 * HOUR)),
        replace(profile(4, (0, 25.0)), purpose=ProfilePurpose.STATION_MAX, evse_id=0),
    ]
    expected = [(0, 10.0), (HOUR, 20.0), (3 * HOUR, 25.0)]

    assert limits(profiles) == expected
    assert limits(profiles[::-1]) == expected
