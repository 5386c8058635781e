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
- PV surplus: `share_surplus` divides the surplus (export at the connection point plus
  what the PV-mode EVs draw now) between the PV-mode EVSEs: sessions that charge first,
  each admitted only if it can have its minimum, the rest equally up to what each EV
  uses. `PvRegulator`, one per EVSE, turns its share into a current and a phase count,
  with start/stop thresholds held for a time (hysteresis) so that a passing cloud
  neither starts nor stops a session, 1/3-phase switching with its own thresholds and
  delay where the board can switch, and the EV's own phase count once its meter shows
  it.

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
    "PvClaim",
    "PvDecision",
    "PvRegulator",
    "PvSettings",
    "Window",
    "drawing_phases",
    "off_peak_state",
    "other_loads_a",
    "share_surplus",
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
    power: start at the minimum power on one phase (where the supply switches, or the
    EV's phases are not known yet) or on the EV's phases, stop below half of the minimum
    on the phases drawn; switch to three phases above 110 % of the three-phase minimum,
    back to one below the three-phase minimum.
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
    """One EVSE in PV surplus mode: its share of the surplus -> current and phases, with
    hysteresis.

    The phases it counts are the EV's where known: a one-phase car on a three-phase
    supply takes the surplus on one phase, so its thresholds are one phase's. The EV's
    phases are learned from its meter once it draws on a supply with more than one
    (`saw_drawing`) and kept for the session. Until then a supply that cannot switch
    starts at the one-phase threshold (a probe): if the EV then draws on more phases and
    the surplus does not reach their threshold, it stops at once instead of after the
    stop delay, so a three-phase car imports for one reading at most, once a session.
    """

    def __init__(self, settings: PvSettings, *, max_phases: int, can_switch: bool) -> None:
        """A regulator for an EVSE with `max_phases` (1 or 3) that can switch or not."""
        self.settings = settings
        self.max_phases = max(1, min(3, max_phases))
        self.can_switch = can_switch and self.max_phases == 3
        v, i_min = settings.voltage_v, settings.min_current_a
        self.three_above_w = _given(settings.three_phases_above_w, 1.1 * i_min * v * 3)
        self.one_below_w = _given(settings.one_phase_below_w, i_min * v * 3)
        self.charging = False
        self.phases = self._fewest()
        self.ev_phases: int | None = None  # learned from the meter, for this session
        self._probing = False  # started before the EV's phases were known
        self._start = _Held()
        self._stop = _Held()
        self._up = _Held()
        self._down = _Held()

    def _fewest(self) -> int:
        return 1 if self.can_switch else self.max_phases

    @property
    def phases_drawn(self) -> int:
        """The phases the EV takes the surplus on now (the supply's, or fewer: the EV's)."""
        return min(self.phases, self.ev_phases or self.phases)

    @property
    def start_w(self) -> float:
        """The surplus that starts a session (held for the start delay)."""
        if self.can_switch or self.ev_phases is None:
            phases = 1  # a switching supply starts on one; an unknown EV is probed on one
        else:
            phases = min(self.max_phases, self.ev_phases)
        return _given(self.settings.start_surplus_w, self.min_power_w(phases))

    @property
    def stop_w(self) -> float:
        """The surplus below which a session stops (held for the stop delay)."""
        return _given(self.settings.stop_surplus_w, 0.5 * self.min_power_w(self.phases_drawn))

    def min_power_w(self, phases: int | None = None) -> float:
        """The power at the minimum current on `phases` (default: the phases drawn now)."""
        s = self.settings
        return s.min_current_a * s.voltage_v * (self.phases_drawn if phases is None else phases)

    def max_power_w(self, max_current_a: float) -> float:
        """The most this EVSE could take at `max_current_a` per phase, switching up if it
        can and the EV would follow."""
        phases = self.max_phases if self.can_switch else self.phases
        return max_current_a * self.settings.voltage_v * min(phases, self.ev_phases or phases)

    @property
    def need_w(self) -> float:
        """What it needs of the surplus: the minimum power while charging, the start
        threshold while waiting (`share_surplus` admits by it)."""
        return self.min_power_w() if self.charging else self.start_w

    def reset(self) -> None:
        """The session ended: the next one starts from a pause, on the fewest phases, with
        its EV's phases unknown."""
        self.charging = False
        self.phases = self._fewest()
        self.ev_phases = None
        self._probing = False
        for held in (self._start, self._stop, self._up, self._down):
            held.reset()

    def saw_drawing(self, phases_drawing: int, supply_phases: int) -> None:
        """The EVSE's meter shows the EV drawing on `phases_drawing` phases of a supply of
        `supply_phases`: learn the EV's phases (a one-phase supply tells nothing)."""
        if phases_drawing <= 0 or supply_phases <= 1 or self.ev_phases is not None:
            return
        self.ev_phases = min(phases_drawing, supply_phases)

    def update(self, now: datetime, surplus_w: float) -> PvDecision:
        """Take this EVSE's share of the surplus observed at `now`."""
        s = self.settings
        if not math.isfinite(surplus_w):
            surplus_w = 0.0
        if self.charging and self._probing and self.ev_phases is not None:
            self._probing = False
            if surplus_w < self.start_w:  # the probe showed more phases than it can feed
                self.charging = False
                self._start.reset()
        if self.charging:
            if self._stop.observe(surplus_w < self.stop_w, now, s.stop_delay_s):
                self.charging = False
                self._start.reset()
        elif self._start.observe(surplus_w >= self.start_w, now, s.start_delay_s):
            self.charging = True
            self._probing = self.ev_phases is None and not self.can_switch and self.max_phases > 1
            self._stop.reset()
            if self.can_switch:
                self.phases = 3 if self._three_phases_pay(surplus_w) else 1
                self._up.reset()
                self._down.reset()
        if self.can_switch and (self.charging or s.keep_min_current):
            self._switch(now, surplus_w)
        if not self.charging:
            return PvDecision(s.min_current_a if s.keep_min_current else 0.0, self.phases, False)
        current = max(s.min_current_a, surplus_w / (s.voltage_v * self.phases_drawn))
        return PvDecision(math.floor(current * 10) / 10, self.phases, True)

    def _three_phases_pay(self, surplus_w: float) -> bool:
        return surplus_w >= self.three_above_w and self.ev_phases != 1

    def _switch(self, now: datetime, surplus_w: float) -> None:
        delay = self.settings.phase_delay_s
        if self.phases == 3:
            self._up.reset()
            if self._down.observe(surplus_w < self.one_below_w, now, delay):
                self.phases = 1
                self._down.reset()
        else:
            self._down.reset()
            if self._up.observe(self._three_phases_pay(surplus_w), now, delay):
                self.phases = 3
                self._up.reset()


@dataclass(frozen=True, slots=True)
class PvClaim:
    """One PV-mode EVSE with a transaction, as `share_surplus` sees it.

    `charging`: its regulator charges; `since`: an ordering key for first come, first
    served (the session's start); `need_w`: what it must get to keep charging (its
    minimum power) or to start (its start threshold); `want_w`: the most it can use (its
    hardware on its phases, or what its EV draws when that is clearly less than it is
    offered); `headroom_w`: shown on top of its share without being counted (the margin
    a self-limited EV may grow into: if it does, the others' shares shrink at the next
    reading; no surplus is held back for it meanwhile).
    """

    evse_id: int
    charging: bool
    since: float
    need_w: float
    want_w: float
    headroom_w: float = 0.0


def share_surplus(surplus_w: float, claims: Iterable[PvClaim]) -> dict[int, float]:
    """Each EVSE's share of the PV surplus, the input of its regulator.

    Sessions that charge come first (each gets its minimum power, in order of arrival,
    as far as the surplus goes), then waiting ones in order of arrival, each admitted
    only if what is left reaches its start threshold; the rest is shared equally between
    the admitted up to what each can use. A waiting EVSE not admitted is shown what is
    left (below its threshold: it keeps waiting). What nobody can use is added to every
    admitted share, and each admitted share shows its headroom: only an EV that takes
    less than it is offered sees either, so it is not stopped for lack of a surplus it
    would not use anyway, and none of it is exported while another EV could take it.
    """
    claims = sorted(claims, key=lambda c: (not c.charging, c.since, c.evse_id))
    left = max(0.0, surplus_w) if math.isfinite(surplus_w) else 0.0
    shares: dict[int, float] = {}
    admitted: list[PvClaim] = []
    for claim in claims:
        floor = min(claim.need_w, claim.want_w)
        if claim.charging:
            shares[claim.evse_id] = grant = min(left, floor)
        elif left >= claim.need_w:
            shares[claim.evse_id] = grant = floor
        else:
            shares[claim.evse_id] = left
            continue
        left -= grant
        admitted.append(claim)
    hungry = [c for c in admitted if c.want_w - shares[c.evse_id] > 1e-9]
    while left > 1e-9 and hungry:
        portion = left / len(hungry)
        still_hungry = []
        for claim in hungry:
            grant = min(portion, claim.want_w - shares[claim.evse_id])
            shares[claim.evse_id] += grant
            left -= grant
            if claim.want_w - shares[claim.evse_id] > 1e-9:
                still_hungry.append(claim)
        if len(still_hungry) == len(hungry):
            break
        hungry = still_hungry
    for claim in admitted:
        shares[claim.evse_id] += max(0.0, left) + claim.headroom_w
    return shares


def _given(value: float | None, default: float) -> float:
    return default if value is None else value
