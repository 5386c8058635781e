"""The smart-charging loop: from profiles and local limits to each EVSE's offered current.

Inputs:

- the installed charging profiles (a `ProfileSource`: agent/store/profiles.py), kept in
  memory and reloaded when an adapter says they changed (`profiles_changed`);
- local limits set by the energy-management modules, by name so that each source
  replaces only its own value: a cap per EVSE (`set_evse_cap`: off-peak windows, PV
  surplus on one EVSE, the driver's own choice) and a capacity of the shared supply
  (`set_site_capacity`: the static site limit, the site meter's headroom);
- each EVSE's state (session, transaction, meter) read when computing.

Each EVSE may offer the least of: its hardware maximum, its own composite schedule
(TX or TX_DEFAULT, agent/core/composite.py) and its local caps. The station's maximum
(ChargePointMax/ChargingStationMax, EVSE 0) and the site capacities limit the sum over
all EVSEs; that shared capacity is divided by agent/core/allocation.py (6 A minimum,
running sessions first, what one EV does not use goes to the others).

Timing: `recompute()` is synchronous and cheap (profiles are cached), so the station
calls it in the same step that begins or ends a transaction: the first PWM of a
transaction already carries its limit. The `run()` task sleeps until the next instant a
composite schedule changes (a period boundary, a validity edge), or until an input
changes, and recomputes then: no polling.

A TX profile handed over with a remote start has no transaction yet: it is held for the
EVSE (`hold_for_next_transaction`) and installed, naming the transaction, when one
begins there. TX profiles end with their transaction, and expired profiles are removed.
In the profiles, a TX profile names its transaction by the journal's local id
(`str(TxRecord.local_id)`); the adapters map wire ids onto it.

This module must not: do I/O beyond the ProfileSource and the EVSE's `apply_limit`, know
an OCPP version, or read a meter or a site meter itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Protocol

from agent.core.allocation import MIN_CURRENT_A, SELF_LIMITED_MARGIN_A, Demand, allocate
from agent.core.composite import (
    NOMINAL_VOLTAGE_V,
    CompositeSchedule,
    RunningTransaction,
    composite_schedule,
)
from agent.core.events import AuthorizationOutcome, PhaseChanged, StationEvent
from agent.core.ports import Clock, TxRecord
from agent.core.profiles import ChargingProfile, ProfilePurpose, RateUnit
from agent.core.status import SessionPhase
from agent.core.tasks import Signal, sleep_unless
from drivers.types import MeterSample

__all__ = ["EvseLimit", "LimitedEvse", "NoProfiles", "ProfileSource", "SmartCharging"]

log = logging.getLogger(__name__)

#: How far ahead each recomputation looks for the next change of a schedule.
HORIZON_S: Final = 86_400

#: How long an EV is given to follow a new offer before its draw says anything about it
#: (IEC 61851-1: the EV follows a PWM change within 5 s).
SETTLE_S: Final = 5.0

#: Session phases in which an EVSE wants power (or will as soon as it is offered).
_ACTIVE: Final = frozenset({SessionPhase.TRANSACTION})


class ProfileSource(Protocol):
    """The installed profiles (agent.store.profiles.ProfileStore satisfies it)."""

    def profiles(self) -> list[ChargingProfile]:
        """Every installed profile."""
        ...

    def clear_transaction(self, transaction_id: str) -> list[int]:
        """Remove the TX profiles of an ended transaction; their ids."""
        ...

    def clear_expired(self, now: datetime) -> list[int]:
        """Remove the profiles whose validity ended at or before `now`; their ids."""
        ...


class NoProfiles:
    """A ProfileSource with nothing installed (a station built without a store)."""

    def profiles(self) -> list[ChargingProfile]:
        return []

    def clear_transaction(self, transaction_id: str) -> list[int]:
        return []

    def clear_expired(self, now: datetime) -> list[int]:
        return []


class LimitedEvse(Protocol):
    """What the loop reads from, and sets on, an EVSE (agent.core.evse.Evse)."""

    @property
    def id(self) -> int:
        """The EVSE id (1..n)."""
        ...

    @property
    def hardware_max_a(self) -> float:
        """The most its board and connectors allow, per phase."""
        ...

    @property
    def max_phases(self) -> int:
        """The phases its supply has."""
        ...

    @property
    def state(self) -> SessionPhase:
        """The session phase."""
        ...

    @property
    def tx(self) -> TxRecord | None:
        """The running transaction."""
        ...

    @property
    def limit_a(self) -> float:
        """The current it offers when offering, per phase."""
        ...

    @property
    def last_sample(self) -> MeterSample | None:
        """Its meter's last reading."""
        ...

    def energy_flowing(self) -> bool:
        """Whether the EV draws now."""
        ...

    def ev_declining(self) -> bool:
        """Whether the EV does not ask for the current it is offered (SuspendedEV)."""
        ...

    def apply_limit(self, current_a: float, phases: int | None = None) -> None:
        """Offer at most `current_a` per phase (below 6 A: pause) on `phases` phases."""
        ...


@dataclass(frozen=True, slots=True)
class EvseLimit:
    """What one EVSE may offer now, and what decided it."""

    current_a: float
    phases: int | None  # the phases a schedule asks for; None: as the EVSE is
    reason: str  # "hardware", "profile", "station", "site", or a local cap's name


class SmartCharging:
    """The station's smart-charging loop (one per station)."""

    def __init__(
        self,
        *,
        clock: Clock,
        profiles: ProfileSource,
        evses: Mapping[int, LimitedEvse],
        voltage_v: float = NOMINAL_VOLTAGE_V,
        min_current_a: float = MIN_CURRENT_A,
    ) -> None:
        self.clock = clock
        self.source = profiles
        self._evses = evses
        self.voltage_v = voltage_v
        self.min_current_a = min_current_a
        self._profiles: list[ChargingProfile] = []
        self._evse_caps: dict[str, dict[int, float]] = {}
        self._evse_phases: dict[str, dict[int, int]] = {}
        self._site: dict[str, float] = {}
        #: EVSE -> (profile, install, token) of a remote start waiting for its transaction.
        self._held: dict[int, tuple[ChargingProfile, Callable[[ChargingProfile], object], str]] = {}
        self._tx_seen: dict[int, int | None] = {}
        self._limits: dict[int, EvseLimit] = {}
        self._offered_at: dict[int, datetime] = {}  # when each EVSE's offer last changed
        self._samples: dict[int, tuple[MeterSample | None, datetime]] = {}  # first seen at
        self._flowing_since: dict[int, datetime] = {}  # when the EV began to draw
        self._declining_since: dict[int, datetime] = {}  # when the EV stopped asking
        self._draws: dict[int, float | None] = {}  # each EV's settled draw, last computed
        self._settle_due: datetime | None = None  # when a pending settle ends
        self._next_change: datetime | None = None
        self._wake_at: datetime | None = None  # when run() sleeps until
        self._changed = Signal()  # run() must re-arm for an earlier change
        self._listeners: list[Callable[[Mapping[int, EvseLimit]], None]] = []
        self.profiles_changed()

    # -- inputs ----------------------------------------------------------------------

    def profiles_changed(self) -> None:
        """The installed profiles changed: reload them and recompute now."""
        self._profiles = self.source.profiles()
        self.recompute()

    def set_evse_cap(
        self, source: str, evse_id: int, current_a: float | None, phases: int | None = None
    ) -> None:
        """A local cap on one EVSE from `source`, optionally on `phases` phases (PV on one
        phase); None lifts that source's cap. The least current and phases win."""
        caps = self._evse_caps.setdefault(source, {})
        if current_a is None:
            caps.pop(evse_id, None)
            self._evse_phases.get(source, {}).pop(evse_id, None)
        else:
            caps[evse_id] = max(0.0, current_a)
            if phases is None:
                self._evse_phases.get(source, {}).pop(evse_id, None)
            else:
                self._evse_phases.setdefault(source, {})[evse_id] = max(1, phases)
        self.recompute()

    def set_site_capacity(self, source: str, current_a: float | None) -> None:
        """The capacity of the shared supply per phase from `source` (None: lifted)."""
        if current_a is None:
            self._site.pop(source, None)
        else:
            self._site[source] = max(0.0, current_a)
        self.recompute()

    def hold_for_next_transaction(
        self,
        evse_id: int,
        profile: ChargingProfile,
        install: Callable[[ChargingProfile], object],
        token: str,
    ) -> None:
        """Install `profile` (a TX profile from `token`'s remote start) with `install` for
        the next transaction that begins on `evse_id`, naming it. Dropped if that remote
        start comes to nothing (`on_event`)."""
        self._held[evse_id] = (profile, install, token)
        self.recompute()

    def on_event(self, event: StationEvent) -> None:
        """Station listener: forget a held profile whose remote start came to nothing (its
        token refused, or the EVSE back to idle before a transaction began)."""
        held = self._held.get(event.evse_id) if event.evse_id is not None else None
        if held is None:
            return
        if isinstance(event, AuthorizationOutcome):
            refused = event.token.value == held[2] and not event.result.accepted
        elif isinstance(event, PhaseChanged):
            evse = self._evses.get(event.evse_id)
            refused = event.phase == SessionPhase.IDLE and evse is not None and evse.tx is None
        else:
            return
        if refused:
            log.info("EVSE %s: the remote start's charging profile is dropped", event.evse_id)
            del self._held[event.evse_id]

    # -- outputs ---------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Mapping[int, EvseLimit]], None]) -> Callable[[], None]:
        """Call `listener` with every EVSE's limit whenever one changes; returns the
        unsubscribe function (listeners must not block)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def limits(self) -> Mapping[int, EvseLimit]:
        """Each EVSE's limit as last computed."""
        return dict(self._limits)

    @property
    def site_capacity_a(self) -> float | None:
        """The shared supply's capacity per phase now (None: unlimited)."""
        return self._shared_capacity(self.clock.now())[0]

    def composite(
        self,
        evse_id: int,
        duration_s: int,
        rate_unit: RateUnit = RateUnit.AMPERE,
        start: datetime | None = None,
    ) -> CompositeSchedule:
        """The composite schedule of `evse_id` (0: the station) from the installed profiles."""
        evse = self._evses.get(evse_id)
        return composite_schedule(
            self._profiles,
            evse_id=evse_id,
            start=start or self.clock.now(),
            duration_s=duration_s,
            rate_unit=rate_unit,
            transaction=_running(evse.tx) if evse is not None else None,
            voltage_v=self.voltage_v,
        )

    def recompute(self) -> None:
        """Compute every EVSE's limit now and apply those that changed."""
        now = self.clock.now()
        self._bind_transactions()
        next_change: datetime | None = now + timedelta(seconds=HORIZON_S)
        caps: dict[int, tuple[float, int | None, str]] = {}
        for evse_id, evse in self._evses.items():
            cap, phases, reason, change = self._evse_cap(evse, now)
            caps[evse_id] = (cap, phases, reason)
            next_change = _earliest(next_change, change)
        capacity, site_reason, change = self._shared_capacity(now)
        next_change = _earliest(next_change, change)
        self._settle_due = None
        shares = allocate(
            capacity,
            [self._demand(evse, caps[evse.id][0], now) for evse in self._evses.values()],
            self.min_current_a,
        )
        next_change = _earliest(next_change, self._settle_due)
        changed = False
        for evse_id, evse in self._evses.items():
            cap, phases, reason = caps[evse_id]
            current = cap
            if capacity is not None and shares[evse_id] < cap:
                # Under a shared limit an EVSE without a session gets nothing until it
                # has one (the station recomputes in that same step): never more than
                # the capacity, even for an instant.
                current, reason = shares[evse_id], site_reason
            limit = EvseLimit(math.floor(current * 10 + 1e-6) / 10, phases, reason)
            if self._limits.get(evse_id) != limit:
                changed = True
                before = self._limits.get(evse_id, limit).current_a
                if limit.current_a > before + SELF_LIMITED_MARGIN_A:
                    # A raised offer: readings from before it say nothing about it. (A
                    # lowered one or a jitter of the capacity does not restart the wait.)
                    self._offered_at[evse_id] = now
                self._limits[evse_id] = limit
                evse.apply_limit(limit.current_a, limit.phases)
        self._next_change = next_change
        if self._wake_at is None or (next_change is not None and next_change < self._wake_at):
            self._changed.set()
        if changed:
            limits = self.limits
            for listener in list(self._listeners):
                try:
                    listener(limits)
                except Exception:
                    log.exception("smart-charging listener failed")

    async def run(self) -> None:
        """Recompute at every schedule change and drop expired profiles; never returns."""
        while True:
            self._changed.clear()
            now = self.clock.now()
            if self.source.clear_expired(now):
                self._profiles = self.source.profiles()
            self.recompute()
            self._changed.clear()
            wake = self._wake_at = self._next_change
            delay = HORIZON_S if wake is None else max(0.0, (wake - now).total_seconds())
            await sleep_unless(self.clock.sleep, delay, self._changed)

    # -- the computation -------------------------------------------------------------

    def _evse_cap(
        self, evse: LimitedEvse, now: datetime
    ) -> tuple[float, int | None, str, datetime | None]:
        """The EVSE's own limit (hardware, its profiles, local caps), its phases, what
        decided it and when its schedule next changes."""
        cap, phases, reason = evse.hardware_max_a, None, "hardware"
        schedule = composite_schedule(
            [p for p in self._profiles if p.purpose is not ProfilePurpose.STATION_MAX],
            evse_id=evse.id,
            start=now,
            duration_s=HORIZON_S,
            rate_unit=RateUnit.AMPERE,
            transaction=_running(evse.tx),
            voltage_v=self.voltage_v,
        )
        period = schedule.period_at(schedule.start)
        if period.limit is not None and period.limit < cap:
            cap, reason = period.limit, "profile"
        if period.number_phases is not None:
            phases = min(period.number_phases, evse.max_phases)
        for source, caps in self._evse_caps.items():
            local = caps.get(evse.id)
            if local is not None and local < cap:
                cap, reason = local, source
        for wanted in self._evse_phases.values():
            local_phases = wanted.get(evse.id)
            if local_phases is not None:
                phases = min(local_phases, phases or evse.max_phases)
        return cap, phases, reason, _next(schedule, now)

    def _shared_capacity(self, now: datetime) -> tuple[float | None, str, datetime | None]:
        """The shared supply's capacity per phase, what decided it and its next change."""
        capacity: float | None = None
        reason = "site"
        schedule = composite_schedule(
            [p for p in self._profiles if p.purpose is ProfilePurpose.STATION_MAX],
            evse_id=0,
            start=now,
            duration_s=HORIZON_S,
            rate_unit=RateUnit.AMPERE,
            voltage_v=self.voltage_v,
        )
        station = schedule.period_at(schedule.start).limit
        if station is not None:
            capacity, reason = station, "station"
        for source, value in self._site.items():
            if capacity is None or value < capacity:
                capacity, reason = value, source
        return capacity, reason, _next(schedule, now)

    def settled_draw_a(self, evse_id: int) -> float | None:
        """What the EV on `evse_id` draws once it had time to follow its offer (the
        highest phase; 0 for an EV that declines its offer: SuspendedEV), as of the last
        recomputation; None while unknown or unsettled."""
        return self._draws.get(evse_id)

    def _demand(self, evse: LimitedEvse, cap_a: float, now: datetime) -> Demand:
        tx = evse.tx
        draw = self._draws[evse.id] = self._settled_draw(evse, now)
        return Demand(
            evse_id=evse.id,
            active=evse.state in _ACTIVE,
            running=evse.energy_flowing(),
            cap_a=cap_a,
            offered_a=self._limits[evse.id].current_a if evse.id in self._limits else 0.0,
            drawing_a=draw,
            since=tx.started_at.timestamp() if tx is not None else float("inf"),
        )

    def _settled_draw(self, evse: LimitedEvse, now: datetime) -> float | None:
        """The EV's draw from a reading first seen once it had time to follow its offer
        (SETTLE_S after the offer changed and after energy began to flow; the highest
        phase), 0 once it declined a standing offer for SETTLE_S (SuspendedEV: a full
        car); None when neither is known yet."""
        sample = evse.last_sample
        seen = self._samples.get(evse.id)
        if seen is None or seen[0] is not sample:
            seen = (sample, now)
            self._samples[evse.id] = seen
        if sample is None or not evse.energy_flowing():
            self._flowing_since.pop(evse.id, None)
            return self._declined(evse, now)
        self._declining_since.pop(evse.id, None)
        flowing_since = self._flowing_since.setdefault(evse.id, now)
        since = max(flowing_since, self._offered_at.get(evse.id, flowing_since))
        if (seen[1] - since).total_seconds() < SETTLE_S:
            return None
        return max(sample.current_a)

    def _declined(self, evse: LimitedEvse, now: datetime) -> float | None:
        """0 once the EV has declined its offer (at least the minimum) for SETTLE_S since
        the offer was last raised; None before (and a wake is due at that moment)."""
        offered = self._limits.get(evse.id)
        if not evse.ev_declining() or offered is None or offered.current_a < self.min_current_a:
            self._declining_since.pop(evse.id, None)
            return None
        declining_since = self._declining_since.setdefault(evse.id, now)
        since = max(declining_since, self._offered_at.get(evse.id, declining_since))
        due = since + timedelta(seconds=SETTLE_S)
        if now < due:
            self._settle_due = _earliest(self._settle_due, due)
            return None
        return 0.0

    def _bind_transactions(self) -> None:
        """Install held TX profiles for transactions that began; clear ended ones."""
        reload = False
        for evse_id, evse in self._evses.items():
            tx = evse.tx
            local_id = tx.local_id if tx is not None else None
            previous = self._tx_seen.get(evse_id)
            if local_id == previous:
                continue
            self._tx_seen[evse_id] = local_id
            if previous is not None:
                reload |= bool(self.source.clear_transaction(str(previous)))
            held = self._held.pop(evse_id, None) if local_id is not None else None
            if held is not None:
                profile, install, _ = held
                try:
                    install(replace(profile, evse_id=evse_id, transaction_id=str(local_id)))
                    reload = True
                except Exception:  # a refused profile must not stop the transaction
                    log.exception("EVSE %s: the remote start's profile was refused", evse_id)
        if reload:
            self._profiles = self.source.profiles()

    def held_profile(self, evse_id: int) -> ChargingProfile | None:
        """The TX profile waiting for the next transaction on `evse_id`, if any."""
        held = self._held.get(evse_id)
        return held[0] if held is not None else None


def _running(tx: TxRecord | None) -> RunningTransaction | None:
    """The composite's view of a transaction (TX profiles name it by local id)."""
    return None if tx is None else RunningTransaction(str(tx.local_id), tx.started_at)


def _next(schedule: CompositeSchedule, now: datetime) -> datetime | None:
    """When `schedule` next changes after `now` (its end if it does not before)."""
    return schedule.next_change_after(now) or schedule.end


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
