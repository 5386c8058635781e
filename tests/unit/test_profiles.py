"""The version-neutral charging profile model and its validation (agent.core.profiles).

Each rejection reason is pinned by a profile that differs from a valid one in exactly the
field the rule is about (OCPP 1.6 sections 3.13 and 7.8-7.14, 2.0.1 K01 requirements).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    RejectReason,
    SchedulePeriod,
    validate_profile,
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
LIMITS = ProfileLimits(max_stack_level=8, max_periods=4, evse_ids=frozenset({1, 2}))
R = RejectReason


def schedule(*periods: tuple[int, float], **fields: Any) -> ChargingSchedule:
    base = ChargingSchedule(
        rate_unit=RateUnit.AMPERE,
        periods=tuple(SchedulePeriod(start_s, limit) for start_s, limit in periods),
        start_schedule=T0,
    )
    return replace(base, **fields)


def tx_default(**fields: Any) -> ChargingProfile:
    base = ChargingProfile(
        profile_id=1,
        evse_id=1,
        purpose=ProfilePurpose.TX_DEFAULT,
        stack_level=0,
        kind=ProfileKind.ABSOLUTE,
        schedule=schedule((0, 16.0), (3600, 10.0)),
    )
    return replace(base, **fields)


def test_a_well_formed_profile_of_each_kind_is_accepted() -> None:
    absolute = tx_default()
    recurring = tx_default(kind=ProfileKind.RECURRING, recurrence=Recurrence.DAILY)
    relative = tx_default(
        kind=ProfileKind.RELATIVE, schedule=schedule((0, 6.0), start_schedule=None)
    )
    station = tx_default(purpose=ProfilePurpose.STATION_MAX, evse_id=0)
    tx = tx_default(purpose=ProfilePurpose.TX, transaction_id="tx-1")
    for profile in (absolute, recurring, relative, station, tx):
        assert validate_profile(profile, LIMITS) is None, profile


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        (tx_default(schedule=schedule()), R.NO_PERIODS),
        (tx_default(schedule=schedule((10, 16.0))), R.FIRST_PERIOD_NOT_AT_ZERO),
        (tx_default(schedule=schedule((0, 16.0), (600, 8.0), (300, 6.0))), R.PERIODS_OUT_OF_ORDER),
        (tx_default(schedule=schedule((0, 16.0), (600, 8.0), (600, 6.0))), R.PERIODS_OUT_OF_ORDER),
        (
            tx_default(schedule=schedule(*((i * 60, 6.0) for i in range(5)))),
            R.TOO_MANY_PERIODS,
        ),
        (tx_default(schedule=schedule((0, -1.0))), R.NEGATIVE_LIMIT),
        (tx_default(schedule=schedule((0, 16.0), duration_s=0)), R.INVALID_DURATION),
        (
            tx_default(schedule=schedule((0, 16.0), min_charging_rate=-1.0)),
            R.INVALID_MIN_CHARGING_RATE,
        ),
        (tx_default(stack_level=9), R.STACK_LEVEL_TOO_HIGH),
        (tx_default(stack_level=-1), R.NEGATIVE_STACK_LEVEL),
        (
            tx_default(valid_from=T0, valid_to=T0 - timedelta(seconds=1)),
            R.VALID_TO_BEFORE_VALID_FROM,
        ),
        (tx_default(valid_from=T0, valid_to=T0), R.VALID_TO_BEFORE_VALID_FROM),
        (tx_default(schedule=schedule((0, 16.0), start_schedule=None)), R.MISSING_START_SCHEDULE),
        (
            tx_default(
                kind=ProfileKind.RECURRING, schedule=schedule((0, 16.0), start_schedule=None)
            ),
            R.MISSING_START_SCHEDULE,
        ),
        (tx_default(kind=ProfileKind.RELATIVE), R.START_SCHEDULE_ON_RELATIVE),
        (tx_default(kind=ProfileKind.RECURRING), R.MISSING_RECURRENCE),
        (tx_default(evse_id=3), R.UNKNOWN_EVSE),
        (tx_default(evse_id=-1), R.UNKNOWN_EVSE),
        (tx_default(purpose=ProfilePurpose.STATION_MAX), R.STATION_MAX_NOT_ON_STATION),
        (
            tx_default(
                purpose=ProfilePurpose.STATION_MAX,
                evse_id=0,
                kind=ProfileKind.RELATIVE,
                schedule=schedule((0, 16.0), start_schedule=None),
            ),
            R.STATION_MAX_RELATIVE,
        ),
        (
            tx_default(purpose=ProfilePurpose.TX, evse_id=0, transaction_id="tx-1"),
            R.TX_PROFILE_ON_STATION,
        ),
        (tx_default(purpose=ProfilePurpose.TX), R.TX_PROFILE_WITHOUT_TRANSACTION),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_malformed_profile_is_rejected_with_its_reason(
    profile: ChargingProfile, reason: RejectReason
) -> None:
    assert validate_profile(profile, LIMITS) == reason


def test_a_unit_the_station_does_not_allow_is_rejected() -> None:
    amps_only = replace(LIMITS, allowed_units=frozenset({RateUnit.AMPERE}))
    watts = tx_default(schedule=schedule((0, 11000.0), rate_unit=RateUnit.WATT))

    assert validate_profile(watts, amps_only) == RejectReason.UNSUPPORTED_UNIT
    assert validate_profile(watts, LIMITS) is None


def test_the_stack_level_may_equal_the_station_maximum() -> None:
    assert validate_profile(tx_default(stack_level=8), LIMITS) is None


def test_periods_up_to_the_maximum_are_accepted() -> None:
    four = tx_default(schedule=schedule(*((i * 60, 6.0) for i in range(4))))
    assert validate_profile(four, LIMITS) is None


@pytest.mark.parametrize("phases", [0, 4])
def test_a_period_with_an_impossible_number_of_phases_is_rejected(phases: int) -> None:
    bad = tx_default(
        schedule=replace(schedule(), periods=(SchedulePeriod(0, 16.0, number_phases=phases),))
    )
    assert validate_profile(bad, LIMITS) == RejectReason.INVALID_NUMBER_PHASES


def test_an_evse_zero_tx_default_applies_to_all_and_needs_no_evse_list() -> None:
    assert validate_profile(tx_default(evse_id=0), LIMITS) is None
    assert validate_profile(tx_default(evse_id=7), replace(LIMITS, evse_ids=None)) is None


def test_a_tx_profile_must_name_the_transaction_running_on_its_evse() -> None:
    tx = tx_default(purpose=ProfilePurpose.TX, transaction_id="tx-1")

    assert validate_profile(tx, LIMITS, active_transactions={1: "tx-1"}) is None
    assert (
        validate_profile(tx, LIMITS, active_transactions={2: "tx-1"})
        == RejectReason.NO_ACTIVE_TRANSACTION
    )
    assert (
        validate_profile(tx, LIMITS, active_transactions={1: "tx-2"})
        == RejectReason.TRANSACTION_NOT_ON_EVSE
    )


def test_active_transactions_do_not_concern_other_purposes() -> None:
    assert validate_profile(tx_default(), LIMITS, active_transactions={}) is None


@pytest.mark.parametrize("field", ["valid_from", "valid_to"])
def test_a_naive_validity_time_is_a_programming_error(field: str) -> None:
    with pytest.raises(ValueError, match="naive"):
        tx_default(**{field: datetime(2025, 3, 1, 8, 0)})


def test_a_naive_start_schedule_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        schedule((0, 16.0), start_schedule=datetime(2025, 3, 1, 8, 0))


def test_validity_includes_valid_from_and_excludes_valid_to() -> None:
    profile = tx_default(valid_from=T0, valid_to=T0 + timedelta(hours=1))

    assert not profile.is_valid_at(T0 - timedelta(microseconds=1))
    assert profile.is_valid_at(T0)
    assert profile.is_valid_at(T0 + timedelta(minutes=59, seconds=59))
    assert not profile.is_valid_at(T0 + timedelta(hours=1))
    assert tx_default().is_valid_at(datetime(1999, 1, 1, tzinfo=UTC))


def test_a_period_without_phases_assumes_three() -> None:
    assert SchedulePeriod(0, 16.0).phases == 3
    assert SchedulePeriod(0, 16.0, number_phases=1).phases == 1


def test_recurrences_last_a_day_and_a_week() -> None:
    assert Recurrence.DAILY.period_s == 86_400
    assert Recurrence.WEEKLY.period_s == 604_800
