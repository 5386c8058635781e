"""Local energy management as pure decisions: site headroom, off-peak windows, PV surplus.

Three questions, each answered from values passed in (readings, times), so that every
rule is a unit test:

- Headroom: how much current per phase the EVSEs together may draw from a grid
  connection limited to `limit_a` per phase, given what the site meter reads at the
  connection point and what the EVSEs' own meters read. The site's other loads are the
  site meter's current less the sum of the EVSE meters, per phase; the most loaded phase
  decides (the smart-charging loop shares one current per phase between the EVSEs).
  Export (negative current, from PV) leaves more room.
- Off-peak windows: whether a time lies in one of the configured cheap windows (weekdays
  and local times in a named time zone) and when that next changes, so the caller sleeps
  to the boundary instead of polling. Windows are expanded into UTC intervals from the
  local calendar, so daylight-saving changes move the boundaries as a wall clock would.
- PV surplus: `PvRegulator`, one per EVSE, turns the surplus power available to its EV
  (export at the connection point plus what the EV draws now) into a current and a phase
  count, with start/stop thresholds held for a time (hysteresis) so that a passing cloud
  neither starts nor stops a session, and 1/3-phase switching with its own thresholds
  and delay where the board can switch.

This module must not: read a clock, a meter or the config, do I/O, or know OCPP. The
composition (agent/energy.py) reads the meters and the clock and applies the answers
through the smart-charging loop (agent/core/smart_charging.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final

from agent.core.allocation import MIN_CURRENT_A

__all__ = [
    "NOMINAL_VOLTAGE_V",
    "OffPeakState",
    "PvDecision",
    "PvRegulator",
    "PvSettings",
    "Window",
    "drawing_phases",
    "off_peak_state",
    "other_loads_a",
    "signed_currents",
    "site_headroom_a",
    "surplus_w",
]

NOMINAL_VOLTAGE_V: Final = 230.0
#: How far around `now` windows are expanded: a window starts on a weekday within a week,
#: and one that started yesterday may still run.
_LOOKBACK_DAYS: Final = 2
_LOOKAHEAD_DAYS: Final = 9
#: A phase carrying less than this is not drawn from (meter noise, standby).
DRAWING_THRESHOLD_A: Final = 1.0

Phases3 = tuple[float, float, float]


# -- headroom ------------------------------------------------------------------------------


def signed_currents(
    currents_a: Sequence[float], phase_powers_w: Sequence[float] | None = None
) -> Phases3:
    """Per-phase currents with the sign of each phase's active power (negative: export).

    Many meters report current magnitudes only; their per-phase power carries the
    direction. Without phase powers the currents are taken as given.
    """
    values = [float(c) for c in currents_a[:3]] + [0.0] * max(0, 3 - len(currents_a))
    if phase_powers_w is not None and len(phase_powers_w) >= 3:
        values = [
            -abs(i) if p < 0 else abs(i) for i, p in zip(values, phase_powers_w, strict=False)
        ]
    return (values[0], values[1], values[2])


def other_loads_a(
    site_currents_a: Sequence[float], evse_currents_a: Iterable[Sequence[float]]
) -> Phases3:
    """The site's loads other than the EVSEs, per phase: site meter less the EVSE meters."""
    other = list(signed_currents(site_currents_a))
    for currents in evse_currents_a:
        for phase in range(3):
            other[phase] -= currents[phase] if phase < len(currents) else 0.0
    return (other[0], other[1], other[2])


def site_headroom_a(
    limit_a: float, site_currents_a: Sequence[float], evse_currents_a: Iterable[Sequence[float]]
) -> float:
    """What the EVSEs together may draw per phase under a connection limit of `limit_a`:
    the limit less the other loads on the most loaded phase, never below 0."""
    other = other_loads_a(site_currents_a, evse_currents_a)
    return max(0.0, min(limit_a - load for load in other))


def surplus_w(site_power_w: float, evses_power_w: Iterable[float]) -> float:
    """The power the EVs could take without importing: export plus what they draw now."""
    return -site_power_w + sum(evses_power_w)


def drawing_phases(currents_a: Sequence[float]) -> int:
    """How many phases carry a load (0 when none does)."""
    return sum(1 for current in currents_a if current >= DRAWING_THRESHOLD_A)


# -- off-peak windows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A cheap period: from `start` to `end` local time, beginning on each of `days`
    (0 = Monday). An `end` at or before `start` ends on the next day (equal: 24 hours)."""

    days: frozenset[int]
    start: time
    end: time

    def intervals(self, zone: tzinfo, first: date, last: date) -> list[tuple[datetime, datetime]]:
        """The UTC intervals of the occurrences beginning from `first` to `last` (local dates)."""
        found: list[tuple[datetime, datetime]] = []
        day = first
        while day <= last:
            if day.weekday() in self.days:
                end_day = day if self.end > self.start else day + timedelta(days=1)
                begin = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
                end = datetime.combine(end_day, self.end, tzinfo=zone).astimezone(UTC)
                if end > begin:  # a window inside a skipped DST hour is empty
                    found.append((begin, end))
            day += timedelta(days=1)
        return found


@dataclass(frozen=True, slots=True)
class OffPeakState:
    """Whether now is in a window, and when that next changes (None: never, as with no
    window at all or windows covering the whole week)."""

    inside: bool
    until: datetime | None


def off_peak_state(windows: Iterable[Window], zone: tzinfo, now: datetime) -> OffPeakState:
    """Whether `now` (aware) lies in one of `windows` (local times in `zone`), and the
    next instant that changes; raises ValueError for a naive `now`."""
    if now.tzinfo is None:
        raise ValueError("off_peak_state needs a timezone-aware time")
    today = now.astimezone(zone).date()
    first = today - timedelta(days=_LOOKBACK_DAYS)
    last = today + timedelta(days=_LOOKAHEAD_DAYS)
    intervals = sorted(
        interval for window in windows for interval in window.intervals(zone, first, last)
    )
    merged: list[list[datetime]] = []
    for begin, end in intervals:
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    # An interval reaching the last expanded day covers more than a week: always inside.
    horizon = datetime.combine(last, time(0), tzinfo=zone).astimezone(UTC)
    for begin, end in merged:
        if begin <= now < end:
            return OffPeakState(True, None if end >= horizon else end)
        if begin > now:
            return OffPeakState(False, begin)
    return OffPeakState(False, None)


# -- PV surplus ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PvSettings:
    """How an EVSE follows the PV surplus (powers in W, times in s).

    `keep_min_current`: below the surplus the EV still gets the minimum current (from
    the grid) instead of pausing. Thresholds left None are derived from the minimum
    power: start at the minimum power on the fewest phases, stop below half of it;
    switch to three phases above 110 % of the three-phase minimum, back to one below
    the three-phase minimum.
    """

    min_current_a: float = MIN_CURRENT_A
    keep_min_current: bool = False
    start_surplus_w: float | None = None
    stop_surplus_w: float | None = None
    start_delay_s: float = 60.0
    stop_delay_s: float = 300.0
    three_phases_above_w: float | None = None
    one_phase_below_w: float | None = None
    phase_delay_s: float = 300.0
    voltage_v: float = NOMINAL_VOLTAGE_V


@dataclass(frozen=True, slots=True)
class PvDecision:
    """What an EVSE may offer from the surplus: `current_a` per phase (0: paused) on
    `phases` phases; `from_surplus` is False while it pauses or runs on the minimum."""

    current_a: float
    phases: int
    from_surplus: bool


class _Held:
    """Whether a condition has held for a time, from the moments it is observed."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since: datetime | None = None

    def observe(self, holds: bool, now: datetime, for_s: float) -> bool:
        """Record the condition at `now`; True once it has held for `for_s` seconds."""
        if not holds:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return (now - self._since).total_seconds() >= for_s

    def reset(self) -> None:
        self._since = None


class PvRegulator:
    """One EVSE in PV surplus mode: surplus -> current and phases, with hysteresis."""

    def __init__(self, settings: PvSettings, *, max_phases: int, can_switch: bool) -> None:
        """A regulator for an EVSE with `max_phases` (1 or 3) that can switch or not."""
        self.settings = settings
        self.max_phases = max(1, min(3, max_phases))
        self.can_switch = can_switch and self.max_phases == 3
        fewest = 1 if self.can_switch else self.max_phases
        v, i_min = settings.voltage_v, settings.min_current_a
        self.start_w = _given(settings.start_surplus_w, i_min * v * fewest)
        self.stop_w = _given(settings.stop_surplus_w, 0.5 * i_min * v * fewest)
        self.three_above_w = _given(settings.three_phases_above_w, 1.1 * i_min * v * 3)
        self.one_below_w = _given(settings.one_phase_below_w, i_min * v * 3)
        self.charging = False
        self.phases = fewest
        self._start = _Held()
        self._stop = _Held()
        self._up = _Held()
        self._down = _Held()

    def reset(self) -> None:
        """The session ended: the next one starts from a pause, on the fewest phases."""
        self.charging = False
        self.phases = 1 if self.can_switch else self.max_phases
        for held in (self._start, self._stop, self._up, self._down):
            held.reset()

    def update(self, now: datetime, surplus_w: float, ev_phases: int | None = None) -> PvDecision:
        """Take the surplus observed at `now`; `ev_phases` is how many phases the EV
        draws on when known (a one-phase car on a three-phase supply)."""
        s = self.settings
        if not math.isfinite(surplus_w):
            surplus_w = 0.0
        if self.charging:
            if self._stop.observe(surplus_w < self.stop_w, now, s.stop_delay_s):
                self.charging = False
                self._start.reset()
        elif self._start.observe(surplus_w >= self.start_w, now, s.start_delay_s):
            self.charging = True
            self._stop.reset()
            if self.can_switch:
                self.phases = 3 if surplus_w >= self.three_above_w else 1
                self._up.reset()
                self._down.reset()
        if self.can_switch and (self.charging or s.keep_min_current):
            self._switch(now, surplus_w)
        if not self.charging:
            return PvDecision(s.min_current_a if s.keep_min_current else 0.0, self.phases, False)
        phases = min(self.phases, ev_phases) if ev_phases else self.phases
        current = max(s.min_current_a, surplus_w / (s.voltage_v * phases))
        return PvDecision(math.floor(current * 10) / 10, self.phases, True)

    def _switch(self, now: datetime, surplus_w: float) -> None:
        delay = self.settings.phase_delay_s
        if self.phases == 3:
            self._up.reset()
            if self._down.observe(surplus_w < self.one_below_w, now, delay):
                self.phases = 1
                self._down.reset()
        else:
            self._down.reset()
            if self._up.observe(surplus_w >= self.three_above_w, now, delay):
                self.phases = 3
                self._up.reset()


def _given(value: float | None, default: float) -> float:
    return default if value is None else value
