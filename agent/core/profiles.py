"""Charging profiles, version-neutral: the model and its validation.

A charging profile is a schedule of limits (amperes per phase or watts in total) with a
purpose, a stack level and a validity window (OCPP 1.6 section 3.13 and 7.8-7.14, OCPP
2.0.1 functional block K). The adapters map each version's SetChargingProfile payload
onto these types; the composite schedule (agent/core/composite.py) and the store
(agent/store/profiles.py) work only with them.

Vocabulary, mapped per version by the adapters:

- `ProfilePurpose.STATION_MAX`: ChargePointMaxProfile (1.6) / ChargingStationMaxProfile
  (2.0.1), on EVSE 0 only; `TX_DEFAULT`: TxDefaultProfile, on one EVSE or on EVSE 0 for
  all of them; `TX`: TxProfile, on one EVSE for one transaction.
- `ProfileKind.ABSOLUTE` starts at `start_schedule`; `RECURRING` starts at
  `start_schedule` and restarts every day or week after it; `RELATIVE` starts at the
  transaction's start.

Times: every datetime is timezone-aware (stored as given, compared as instants). Daily
and weekly recurrences are fixed 86,400 s and 604,800 s steps from `start_schedule`: no
local time zone and no daylight saving time is applied anywhere (OCPP 1.6 section 3.14
recommends UTC; a CSMS wanting local-time behaviour sends a matching `start_schedule`).

Validation (`validate_profile`) returns the first reason a profile must be Rejected, or
None; the limits a station advertises (ChargeProfileMaxStackLevel,
ChargingScheduleMaxPeriods, ChargingScheduleAllowedChargingRateUnit and the 2.0.1
equivalents) are parameters. It checks the profile on its own; conflicts with installed
profiles are the store's business (agent/store/profiles.py).

This module must not: do I/O, read a clock, know an OCPP version's wire names, or decide
what an EVSE draws (composite.py computes the limit; the smart-charging loop applies it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Final

__all__ = [
    "DEFAULT_NUMBER_PHASES",
    "SECONDS_PER_DAY",
    "SECONDS_PER_WEEK",
    "ChargingProfile",
    "ChargingSchedule",
    "ProfileKind",
    "ProfileLimits",
    "ProfilePurpose",
    "RateUnit",
    "Recurrence",
    "RejectReason",
    "SchedulePeriod",
    "validate_profile",
]

#: Phases assumed when a period does not say (OCPP 1.6 section 7.12 and 7.14).
DEFAULT_NUMBER_PHASES: Final = 3
SECONDS_PER_DAY: Final = 86_400
SECONDS_PER_WEEK: Final = 7 * SECONDS_PER_DAY


class ProfilePurpose(StrEnum):
    """What a profile limits (its stacking group)."""

    STATION_MAX = "station_max"  # the whole station's supply; EVSE 0 only
    TX_DEFAULT = "tx_default"  # any transaction on an EVSE (EVSE 0: on every EVSE)
    TX = "tx"  # one transaction; overrules TX_DEFAULT while it covers the instant


class ProfileKind(StrEnum):
    """Where a profile's schedule starts."""

    ABSOLUTE = "absolute"  # at start_schedule
    RECURRING = "recurring"  # at start_schedule, again every day or week
    RELATIVE = "relative"  # at the start of the transaction


class Recurrence(StrEnum):
    """How often a RECURRING schedule restarts (counted from start_schedule)."""

    DAILY = "daily"
    WEEKLY = "weekly"

    @property
    def period_s(self) -> int:
        """The length of one recurrence in seconds."""
        return SECONDS_PER_DAY if self is Recurrence.DAILY else SECONDS_PER_WEEK


class RateUnit(StrEnum):
    """The unit of a schedule's limits."""

    AMPERE = "A"  # per phase (OCPP 1.6 section 7.12)
    WATT = "W"  # total over all phases


class RejectReason(StrEnum):
    """Why a profile is Rejected (every one maps to the wire status Rejected)."""

    NO_PERIODS = "no_periods"
    FIRST_PERIOD_NOT_AT_ZERO = "first_period_not_at_zero"
    PERIODS_OUT_OF_ORDER = "periods_out_of_order"
    TOO_MANY_PERIODS = "too_many_periods"
    UNSUPPORTED_UNIT = "unsupported_unit"
    NEGATIVE_LIMIT = "negative_limit"
    INVALID_NUMBER_PHASES = "invalid_number_phases"
    INVALID_DURATION = "invalid_duration"
    INVALID_MIN_CHARGING_RATE = "invalid_min_charging_rate"
    NEGATIVE_STACK_LEVEL = "negative_stack_level"
    STACK_LEVEL_TOO_HIGH = "stack_level_too_high"
    VALID_TO_BEFORE_VALID_FROM = "valid_to_before_valid_from"
    MISSING_START_SCHEDULE = "missing_start_schedule"
    START_SCHEDULE_ON_RELATIVE = "start_schedule_on_relative"
    MISSING_RECURRENCE = "missing_recurrence"
    UNKNOWN_EVSE = "unknown_evse"
    STATION_MAX_NOT_ON_STATION = "station_max_not_on_station"
    STATION_MAX_RELATIVE = "station_max_relative"
    TX_PROFILE_ON_STATION = "tx_profile_on_station"
    TX_PROFILE_WITHOUT_TRANSACTION = "tx_profile_without_transaction"
    NO_ACTIVE_TRANSACTION = "no_active_transaction"
    TRANSACTION_NOT_ON_EVSE = "transaction_not_on_evse"
    # Raised by the store, which sees the installed profiles (agent/store/profiles.py).
    TOO_MANY_PROFILES = "too_many_profiles"
    CONFLICTING_PROFILE = "conflicting_profile"


def _require_aware(name: str, at: datetime | None) -> None:
    """Raise ValueError if `at` is a naive datetime."""
    if at is not None and at.utcoffset() is None:
        raise ValueError(f"naive {name} {at!r}: profile times are timezone-aware")


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """From `start_s` seconds after the schedule's start on, `limit` applies.

    `limit` is in the schedule's `rate_unit`. `number_phases` None means "not given":
    3 is assumed wherever phases matter (OCPP 1.6 section 7.14).
    """

    start_s: int
    limit: float
    number_phases: int | None = None

    @property
    def phases(self) -> int:
        """The number of phases to assume for this period."""
        return DEFAULT_NUMBER_PHASES if self.number_phases is None else self.number_phases


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """Limits over time: periods in order, from `start_schedule` (or the tx start).

    `duration_s` None: the last period lasts for ever (for RECURRING: until the next
    recurrence). `min_charging_rate` is carried for the load balancer, in `rate_unit`.
    """

    rate_unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    start_schedule: datetime | None = None
    duration_s: int | None = None
    min_charging_rate: float | None = None

    def __post_init__(self) -> None:
        """Raise ValueError for a naive `start_schedule`."""
        _require_aware("start_schedule", self.start_schedule)


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """One charging profile as installed on EVSE `evse_id` (0: the station).

    `transaction_id` names the transaction a TX profile belongs to (the identifier the
    core and the composite's caller use; the adapters map the wire's id onto it); it is
    ignored for other purposes. `valid_from` None: valid since it was received;
    `valid_to` None: valid until replaced or cleared. Valid means
    `valid_from <= t < valid_to`.
    """

    profile_id: int
    evse_id: int
    purpose: ProfilePurpose
    stack_level: int
    kind: ProfileKind
    schedule: ChargingSchedule
    recurrence: Recurrence | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None

    def __post_init__(self) -> None:
        """Raise ValueError for a naive `valid_from` or `valid_to`."""
        _require_aware("valid_from", self.valid_from)
        _require_aware("valid_to", self.valid_to)

    def is_valid_at(self, at: datetime) -> bool:
        """Whether `at` lies in the profile's validity window."""
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_to is None or at < self.valid_to


@dataclass(frozen=True, slots=True)
class ProfileLimits:
    """What the station accepts (its advertised smart-charging capabilities).

    `evse_ids`: the EVSEs that exist (None: do not check). `max_installed`: how many
    profiles may be installed at once (MaxChargingProfilesInstalled; the store checks
    it, None: no limit).
    """

    max_stack_level: int
    max_periods: int
    allowed_units: frozenset[RateUnit] = frozenset(RateUnit)
    evse_ids: frozenset[int] | None = None
    max_installed: int | None = None


def validate_profile(
    profile: ChargingProfile,
    limits: ProfileLimits,
    *,
    active_transactions: Mapping[int, str] | None = None,
) -> RejectReason | None:
    """The first reason `profile` must be Rejected, or None if it may be installed.

    `active_transactions` maps EVSE id to the transaction running there; when given, a
    TX profile must name the transaction running on its EVSE (1.6 section 3.13.1,
    2.0.1 K01.FR.09/K01.FR.33). Checks the profile alone, never installed profiles.
    """
    return (
        _check_target(profile, limits, active_transactions)
        or _check_kind(profile)
        or _check_levels(profile, limits)
        or _check_schedule(profile.schedule, limits)
    )


def _check_target(
    profile: ChargingProfile,
    limits: ProfileLimits,
    active_transactions: Mapping[int, str] | None,
) -> RejectReason | None:
    """Check that the purpose fits the EVSE and, for TX, the transaction."""
    evse_id = profile.evse_id
    if evse_id < 0 or (
        evse_id != 0 and limits.evse_ids is not None and evse_id not in limits.evse_ids
    ):
        return RejectReason.UNKNOWN_EVSE  # 2.0.1 K01.FR.28
    if profile.purpose is ProfilePurpose.STATION_MAX:
        if profile.evse_id != 0:
            return RejectReason.STATION_MAX_NOT_ON_STATION  # 1.6 section 3.13.1, K01.FR.03
        if profile.kind is ProfileKind.RELATIVE:
            return RejectReason.STATION_MAX_RELATIVE  # 2.0.1 K01.FR.38
    if profile.purpose is ProfilePurpose.TX:
        if profile.evse_id == 0:
            return RejectReason.TX_PROFILE_ON_STATION  # 1.6 section 3.13.1, K01.FR.16
        if profile.transaction_id is None:
            return RejectReason.TX_PROFILE_WITHOUT_TRANSACTION  # 2.0.1 K01.FR.03
        if active_transactions is not None:
            running = active_transactions.get(profile.evse_id)
            if running is None:
                return RejectReason.NO_ACTIVE_TRANSACTION  # 1.6 section 3.13.1, K01.FR.09
            if running != profile.transaction_id:
                return RejectReason.TRANSACTION_NOT_ON_EVSE  # 2.0.1 K01.FR.33
    return None


def _check_kind(profile: ChargingProfile) -> RejectReason | None:
    """Check that the kind has what it needs: a start, a recurrence."""
    start = profile.schedule.start_schedule
    if profile.kind is ProfileKind.RELATIVE:
        # The start is the transaction's; a start_schedule would contradict it.
        return RejectReason.START_SCHEDULE_ON_RELATIVE if start is not None else None  # K01.FR.41
    if start is None:
        return RejectReason.MISSING_START_SCHEDULE  # 2.0.1 K01.FR.40
    if profile.kind is ProfileKind.RECURRING and profile.recurrence is None:
        return RejectReason.MISSING_RECURRENCE
    return None


def _check_levels(profile: ChargingProfile, limits: ProfileLimits) -> RejectReason | None:
    """Check the stack level against the station's maximum and the validity window."""
    if profile.stack_level < 0:
        return RejectReason.NEGATIVE_STACK_LEVEL  # 1.6 section 7.8: "integer >= 0"
    if profile.stack_level > limits.max_stack_level:
        return RejectReason.STACK_LEVEL_TOO_HIGH  # ChargeProfileMaxStackLevel
    valid_from, valid_to = profile.valid_from, profile.valid_to
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        return RejectReason.VALID_TO_BEFORE_VALID_FROM  # an empty window is never valid
    return None


def _check_schedule(schedule: ChargingSchedule, limits: ProfileLimits) -> RejectReason | None:
    """Check the schedule: unit, period count and order, limits, phases, duration."""
    if schedule.rate_unit not in limits.allowed_units:
        return RejectReason.UNSUPPORTED_UNIT  # 2.0.1 K01.FR.26
    periods = schedule.periods
    if not periods:
        return RejectReason.NO_PERIODS  # 1.6 section 7.13: 1..* periods
    if len(periods) > limits.max_periods:
        return RejectReason.TOO_MANY_PERIODS  # ChargingScheduleMaxPeriods
    if periods[0].start_s != 0:
        return RejectReason.FIRST_PERIOD_NOT_AT_ZERO  # 1.6 section 7.13, K01.FR.31
    for before, after in pairwise(periods):
        if after.start_s <= before.start_s:
            return RejectReason.PERIODS_OUT_OF_ORDER  # 2.0.1 K01.FR.35
    for period in periods:
        if period.limit < 0:
            return RejectReason.NEGATIVE_LIMIT
        if period.number_phases is not None and not 1 <= period.number_phases <= 3:
            return RejectReason.INVALID_NUMBER_PHASES
    if schedule.duration_s is not None and schedule.duration_s <= 0:
        return RejectReason.INVALID_DURATION
    if schedule.min_charging_rate is not None and schedule.min_charging_rate < 0:
        return RejectReason.INVALID_MIN_CHARGING_RATE
    return None
