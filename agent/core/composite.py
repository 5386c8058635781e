"""The composite schedule: the limit an EVSE may draw over time, from its profiles.

A pure function of the installed profiles, the EVSE, the running transaction (if any)
and a window `[start, start + duration_s)`. The rules (OCPP 1.6 sections 3.13.1-3.13.3,
OCPP 2.0.1 K08):

- Within one purpose, at each instant the profile with the highest stack level that is
  valid (`valid_from <= t < valid_to`) *and* whose schedule covers the instant
  prevails. A schedule does not cover an instant before its start or after its
  `duration_s`; there the next lower stack level applies ("gaps fall back", 1.6 section
  3.13.2: "without a duration, on the highest stack level, the Charge Point will never
  fall back"). Two profiles of one group on one stack level cannot both be installed
  (the store's rules); should it happen anyway, the higher profile id prevails.
- TX profiles apply only to their transaction (on its EVSE); TX_DEFAULT profiles apply
  at the instants no TX profile covers (1.6 section 3.13.1: the TxProfile "SHALL
  overrule the default charging profile").
- A TX_DEFAULT profile on EVSE 0 applies to every EVSE, except where that EVSE has its
  own TX_DEFAULT profile on the same stack level: 1.6 section 3.13.1 "In the event a
  TxDefaultProfile for connector 0 is installed, and the Central System sends a new
  profile with ConnectorId >0, the TxDefaultProfile SHALL be replaced only for that
  specific connector" (2.0.1 refuses the pair instead, K01.FR.52/K01.FR.53).
- Across purposes the minimum wins (1.6 section 3.13.3): limit = min(STATION_MAX,
  TX or TX_DEFAULT); a purpose with no covering profile sets no limit. The composite of
  EVSE 0 is the station's: STATION_MAX only.
- Limits are converted to the requested unit with the period's phases (3 if not given)
  and a nominal voltage (1.6 section 7.12: current per phase = power / (voltage *
  phases)); on a tie the period with fewer phases is reported.

Anchors: ABSOLUTE schedules start at `start_schedule`; RECURRING ones at
`start_schedule` and every day or week after it, never before it, each recurrence
ending at the next (or at `duration_s` if shorter); RELATIVE ones at the transaction's
start, or at the window's `start` when no transaction runs ("as if it started now", the
forecast a CSMS asks for with GetCompositeSchedule).

Resolution is one second (the wire's startPeriod and duration are whole seconds): every
time, the window's start included, is truncated to the whole second. Recurrences are
fixed 86,400 s / 604,800 s steps in UTC, no local time zone.

This module must not: do I/O, read a clock (the caller passes `start`), know an OCPP
version, or share the station maximum between EVSEs (the smart-charging loop does).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from agent.core.profiles import (
    ChargingProfile,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    SchedulePeriod,
)

__all__ = [
    "NOMINAL_VOLTAGE_V",
    "CompositePeriod",
    "CompositeSchedule",
    "RunningTransaction",
    "composite_schedule",
    "convert_limit",
]

#: The "set voltage for the area" of 1.6 section 7.12, used to convert W and A.
NOMINAL_VOLTAGE_V: Final = 230.0

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND: Final = timedelta(seconds=1)


def _to_s(at: datetime) -> int:
    """Whole seconds since the epoch, truncated; raise ValueError if `at` is naive."""
    if at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the composite takes aware times")
    return (at - _EPOCH) // _ONE_SECOND


def _from_s(seconds: int) -> datetime:
    """The aware UTC datetime `seconds` after the epoch."""
    return _EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class RunningTransaction:
    """The transaction running on the EVSE: TX profiles name it, RELATIVE ones start at it."""

    transaction_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """From `start_s` seconds after the composite's start on, `limit` applies.

    `limit` is in the composite's unit; None means no profile limits these instants
    (the EVSE's own maximum applies). `number_phases` is that of the deciding period
    (3 if it gave none), None with no limit.
    """

    start_s: int
    limit: float | None
    number_phases: int | None


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    """The limit on one EVSE over `[start, start + duration_s)`, as merged periods.

    Periods are in order, the first at 0, and no two neighbours have the same limit
    and phases (equal neighbours are merged).
    """

    evse_id: int
    start: datetime
    duration_s: int
    rate_unit: RateUnit
    periods: tuple[CompositePeriod, ...]

    @property
    def end(self) -> datetime:
        """The first instant after the window (recompute the composite by then)."""
        return self.start + timedelta(seconds=self.duration_s)

    def period_at(self, at: datetime) -> CompositePeriod:
        """The period covering `at`; raise ValueError if `at` is outside the window."""
        offset_s = _to_s(at) - _to_s(self.start)
        if not 0 <= offset_s < self.duration_s:
            raise ValueError(f"{at.isoformat()} is outside the composite's window")
        index = bisect_right([period.start_s for period in self.periods], offset_s) - 1
        return self.periods[index]

    def limit_at(self, at: datetime) -> float | None:
        """The limit at `at` (None: no limit); raise ValueError outside the window."""
        return self.period_at(at).limit

    def next_change_after(self, at: datetime) -> datetime | None:
        """The first instant after `at` where the limit changes (`start` if `at` is
        before the window), or None if none does before `end` (the smart-charging loop
        sleeps until then instead of polling, and recomputes at `end`)."""
        offset_s = _to_s(at) - _to_s(self.start)
        for period in self.periods:
            if period.start_s > offset_s:
                return self.start + timedelta(seconds=period.start_s)
        return None


def convert_limit(
    limit: float,
    *,
    from_unit: RateUnit,
    to_unit: RateUnit,
    number_phases: int,
    voltage_v: float = NOMINAL_VOLTAGE_V,
) -> float:
    """`limit` in `to_unit` (W = A per phase * voltage * phases, 1.6 section 7.12)."""
    if from_unit is to_unit:
        return limit
    if to_unit is RateUnit.WATT:
        return limit * voltage_v * number_phases
    return limit / (voltage_v * number_phases)


@dataclass(frozen=True, slots=True)
class _Timed:
    """A profile with its times in whole seconds, ready to evaluate at an instant."""

    profile: ChargingProfile
    starts_s: tuple[int, ...]  # the periods' start offsets
    valid_from_s: int | None
    valid_to_s: int | None
    anchor_s: int  # schedule start; for RECURRING, the first recurrence
    recurrence_s: int | None  # RECURRING: the length of one recurrence
    span_s: int | None  # how long one run of the schedule covers (None: for ever)

    @classmethod
    def of(cls, profile: ChargingProfile, relative_anchor_s: int) -> _Timed:
        """Prepare `profile`; RELATIVE schedules start at `relative_anchor_s`."""
        schedule = profile.schedule
        anchor_s = relative_anchor_s
        if profile.kind is not ProfileKind.RELATIVE and schedule.start_schedule is not None:
            anchor_s = _to_s(schedule.start_schedule)
        recurrence_s = None
        span_s = schedule.duration_s
        if profile.kind is ProfileKind.RECURRING and profile.recurrence is not None:
            recurrence_s = profile.recurrence.period_s
            span_s = recurrence_s if span_s is None else min(span_s, recurrence_s)
        return cls(
            profile=profile,
            starts_s=tuple(period.start_s for period in schedule.periods),
            valid_from_s=None if profile.valid_from is None else _to_s(profile.valid_from),
            valid_to_s=None if profile.valid_to is None else _to_s(profile.valid_to),
            anchor_s=anchor_s,
            recurrence_s=recurrence_s,
            span_s=span_s,
        )

    def run_start_s(self, t: int) -> int | None:
        """The start of the schedule run covering second `t` (None: before the first)."""
        if t < self.anchor_s:
            return None
        if self.recurrence_s is None:
            return self.anchor_s
        return self.anchor_s + (t - self.anchor_s) // self.recurrence_s * self.recurrence_s

    def period_at(self, t: int) -> SchedulePeriod | None:
        """The period in force at second `t`, or None if the profile says nothing then."""
        if self.valid_from_s is not None and t < self.valid_from_s:
            return None
        if self.valid_to_s is not None and t >= self.valid_to_s:
            return None
        run_s = self.run_start_s(t)
        if run_s is None:
            return None
        offset_s = t - run_s
        if self.span_s is not None and offset_s >= self.span_s:
            return None
        index = bisect_right(self.starts_s, offset_s) - 1
        return None if index < 0 else self.profile.schedule.periods[index]

    def boundaries(self, lo_s: int, hi_s: int) -> Iterator[int]:
        """Every second in `(lo_s, hi_s)` at which `period_at` may change (a superset)."""
        edges = [self.valid_from_s, self.valid_to_s]
        if self.recurrence_s is None:
            runs = [self.anchor_s]
        else:
            first = max(0, (lo_s - self.anchor_s) // self.recurrence_s)
            runs = []
            run_s = self.anchor_s + first * self.recurrence_s
            while run_s < hi_s:
                runs.append(run_s)
                run_s += self.recurrence_s
        for run_s in runs:
            edges.extend(run_s + start_s for start_s in self.starts_s)
            if self.span_s is not None:
                edges.append(run_s + self.span_s)
        return (edge for edge in edges if edge is not None and lo_s < edge < hi_s)


@dataclass(frozen=True, slots=True)
class _Groups:
    """The profiles that concern one EVSE, per purpose, highest precedence first."""

    station_max: tuple[_Timed, ...]
    tx: tuple[_Timed, ...]
    tx_default: tuple[_Timed, ...]

    def all(self) -> Iterator[_Timed]:
        """Every profile of every group."""
        yield from self.station_max
        yield from self.tx
        yield from self.tx_default


def _by_precedence(timed: Iterable[_Timed]) -> tuple[_Timed, ...]:
    """Highest stack level first; on a tie (the store prevents it) the higher id."""
    return tuple(
        sorted(timed, key=lambda t: (t.profile.stack_level, t.profile.profile_id), reverse=True)
    )


def _groups(
    profiles: Iterable[ChargingProfile],
    evse_id: int,
    transaction: RunningTransaction | None,
    relative_anchor_s: int,
) -> _Groups:
    """Sort the profiles that apply to `evse_id` into their purpose groups."""
    station_max: list[_Timed] = []
    tx: list[_Timed] = []
    own_default: list[_Timed] = []
    shared_default: list[_Timed] = []
    for profile in profiles:
        timed = _Timed.of(profile, relative_anchor_s)
        if profile.purpose is ProfilePurpose.STATION_MAX:
            station_max.append(timed)
        elif evse_id == 0:
            continue  # the station's composite is its maximum only
        elif profile.purpose is ProfilePurpose.TX:
            if (
                profile.evse_id == evse_id
                and transaction is not None
                and profile.transaction_id == transaction.transaction_id
            ):
                tx.append(timed)
        elif profile.evse_id == evse_id:
            own_default.append(timed)
        elif profile.evse_id == 0:
            shared_default.append(timed)
    own_levels = {timed.profile.stack_level for timed in own_default}
    tx_default = own_default + [
        timed for timed in shared_default if timed.profile.stack_level not in own_levels
    ]
    return _Groups(_by_precedence(station_max), _by_precedence(tx), _by_precedence(tx_default))


def _prevailing(group: tuple[_Timed, ...], t: int) -> tuple[_Timed, SchedulePeriod] | None:
    """The highest-precedence profile of `group` covering second `t`, with its period."""
    for timed in group:
        period = timed.period_at(t)
        if period is not None:
            return timed, period
    return None


def _limit_at(
    groups: _Groups, t: int, rate_unit: RateUnit, voltage_v: float
) -> tuple[float | None, int | None]:
    """(limit, phases) at second `t`: min(station max, tx or tx default)."""
    deciding = [
        found
        for found in (
            _prevailing(groups.station_max, t),
            _prevailing(groups.tx, t) or _prevailing(groups.tx_default, t),
        )
        if found is not None
    ]
    if not deciding:
        return None, None
    candidates = [
        (
            convert_limit(
                period.limit,
                from_unit=timed.profile.schedule.rate_unit,
                to_unit=rate_unit,
                number_phases=period.phases,
                voltage_v=voltage_v,
            ),
            period.phases,
        )
        for timed, period in deciding
    ]
    limit, phases = min(candidates)
    return limit, phases


def composite_schedule(
    profiles: Iterable[ChargingProfile],
    *,
    evse_id: int,
    start: datetime,
    duration_s: int,
    rate_unit: RateUnit,
    transaction: RunningTransaction | None = None,
    voltage_v: float = NOMINAL_VOLTAGE_V,
) -> CompositeSchedule:
    """The composite schedule of `evse_id` (0: the station) over the window.

    `profiles` may hold every installed profile; those of other EVSEs and other
    transactions are ignored. They are expected to have passed `validate_profile` (an
    ABSOLUTE or RECURRING one without `start_schedule` would start at the RELATIVE
    anchor). Raises ValueError for a naive time, `duration_s` < 1 or `voltage_v` <= 0.
    """
    if duration_s < 1:
        raise ValueError(f"duration_s must be >= 1, got {duration_s}")
    if voltage_v <= 0:
        raise ValueError(f"voltage_v must be > 0, got {voltage_v}")
    start_s = _to_s(start)
    end_s = start_s + duration_s
    anchor_s = start_s if transaction is None else _to_s(transaction.started_at)
    groups = _groups(profiles, evse_id, transaction, anchor_s)
    instants = {start_s}
    for timed in groups.all():
        instants.update(timed.boundaries(start_s, end_s))
    periods: list[CompositePeriod] = []
    for t in sorted(instants):
        limit, phases = _limit_at(groups, t, rate_unit, voltage_v)
        if periods and (periods[-1].limit, periods[-1].number_phases) == (limit, phases):
            continue
        periods.append(CompositePeriod(t - start_s, limit, phases))
    return CompositeSchedule(
        evse_id=evse_id,
        start=_from_s(start_s),
        duration_s=duration_s,
        rate_unit=rate_unit,
        periods=tuple(periods),
    )
