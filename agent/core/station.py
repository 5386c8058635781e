"""The station: its EVSEs (models of the shared session machine) and station-wide commands.

This is the core's face towards adapters: they call its commands (remote start and
stop, availability, unlock, stop-all for resets) and listen to its events. It owns the
things that span EVSEs: persisted availability, clock-aligned metering, and recovery of
transactions interrupted by a power cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from agent.core.events import (
    Authorizer,
    AuthResult,
    AuthStatus,
    IdToken,
    MeterValuesSampled,
    PhaseChanged,
    ReservationEnd,
    ReservationEnded,
    StationEvent,
    StatusChanged,
    TxMessageQueued,
    UnlockResult,
    sample_payload,
)
from agent.core.evse import Evse
from agent.core.policy import Policy
from agent.core.ports import (
    Clock,
    SampleContext,
    SettingsStore,
    StopReason,
    TransactionJournal,
    TxTrigger,
)
from agent.core.reservations import (
    Reservation,
    ReservationBook,
    ReserveResult,
    can_hold,
    claim,
    needed,
    unmatched,
    without,
)
from agent.core.session import session_machine
from agent.core.smart_charging import NoProfiles, ProfileSource, SmartCharging
from agent.core.status import ConnectorStatus, SessionPhase
from agent.core.tasks import Signal, TaskSet, sleep_unless

log = logging.getLogger(__name__)

#: The statuses that end the reservations of an EVSE (reported first, ended after).
_CLOSED = frozenset({ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE})

Listener = Callable[[StationEvent], None]


class _RejectAll:
    """The authorizer until an adapter installs one: refuses every token."""

    async def authorize(self, token: IdToken) -> AuthResult:
        return AuthResult(AuthStatus.INVALID)


class Station:
    """All EVSEs of one charging station."""

    def __init__(
        self,
        *,
        evses: list[Evse] | None = None,
        clock: Clock,
        journal: TransactionJournal,
        settings: SettingsStore,
        policy: Policy | None = None,
        profiles: ProfileSource | None = None,
    ) -> None:
        self.clock = clock
        self.journal = journal
        self.settings = settings
        self.policy = policy or Policy()
        self.evses: dict[int, Evse] = {}
        self.authorizer: Authorizer = _RejectAll()
        #: Whether the CSMS is reachable now (set by the adapter; transaction messages
        #: record it, as 2.0.1's offline flag needs).
        self.csms_online = False
        self._listeners: list[Listener] = []
        self._tasks = TaskSet("station")
        self.reservations = ReservationBook(settings)
        #: The loop of clock-aligned samples and reservation expiry: it runs only while
        #: there is either (a fleet station has neither), and is woken when they change.
        self._timers: asyncio.Task[None] | None = None
        self._timers_changed = Signal()
        self._running = False
        #: Charging profiles and local limits -> each EVSE's offered current.
        self.smart = SmartCharging(clock=clock, profiles=profiles or NoProfiles(), evses=self.evses)
        self.subscribe(self.smart.on_event)
        for evse in evses or []:
            self.add_evse(evse)

    def add_evse(self, evse: Evse) -> None:
        """Register an EVSE (built with this station's policy, emit and authorizer)."""
        self.evses[evse.id] = evse
        session_machine().add_model(evse)
        evse.reserved = self.reservations.for_evse(evse.id) is not None
        evse.operative = self.settings.get_setting(f"core.availability.{evse.id}") != "Inoperative"
        evse.on_step = self.smart.recompute
        self.smart.recompute()

    def evse_kwargs(self) -> dict[str, object]:
        """The station-provided constructor arguments of an Evse."""
        return {
            "clock": self.clock,
            "journal": self.journal,
            "policy": self.policy,
            "authorizer": lambda: self.authorizer,
            "emit": self.emit,
            "reservations": self,
            "online": lambda: self.csms_online,
        }

    # -- events ----------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every station event; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: StationEvent) -> None:
        """Hand an event to every listener (listeners must not block); then let the
        reservations follow the EVSE it reports on (what that ends is emitted after it)."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("station listener failed on %s", event)
        if isinstance(event, StatusChanged | PhaseChanged) and len(self.reservations):
            closed = isinstance(event, StatusChanged) and event.status in _CLOSED
            self._follow_evse(event.evse_id, closed=closed)

    # -- running ----------------------------------------------------------------

    async def start(self) -> None:
        """Close interrupted transactions, then start every EVSE and the aligned sampler."""
        self.recover_interrupted()
        for evse in self.evses.values():
            await evse.start()
        self._show_reservations()  # the EVSEs unbound reservations need show Reserved
        self._running = True
        self._wake_timers()
        self._tasks.spawn(self.smart.run(), name="smart-charging")

    async def shutdown(self) -> None:
        """Stop everything and leave the hardware safe."""
        self._running = False
        await self._tasks.cancel_all()
        self._timers = None
        for evse in self.evses.values():
            await evse.shutdown()

    def recover_interrupted(self) -> int:
        """Close transactions a power cut left open (reason power loss); return how many.

        The stop meter value is the last register the journal persisted, the stop time
        the moment it was read or the transaction's last journalled event, whichever is
        later: the last moment the agent knew the transaction running.
        """
        count = 0
        for tx in self.journal.open_transactions():
            log.warning("closing transaction %s interrupted by power loss", tx.local_id)
            # Never before an event the CSMS may already have (a state change journalled
            # after the last meter reading).
            last_entry = self.journal.last_entry_at(tx.local_id)
            stopped_at = max(tx.last_meter_at, last_entry or tx.last_meter_at)
            self.journal.end_transaction(
                tx.local_id,
                stopped_at=stopped_at,
                meter_stop_wh=tx.last_meter_wh,
                reason=StopReason.POWER_LOSS,
                stop_id_token=None,
                payload={"offline": True},
            )
            self.emit(TxMessageQueued(tx.evse_id, tx.local_id))
            count += 1
        return count

    # -- commands ----------------------------------------------------------------

    def evse(self, evse_id: int) -> Evse:
        """The EVSE with this id; KeyError if there is none."""
        return self.evses[evse_id]

    def remote_start(
        self,
        token: IdToken,
        evse_id: int | None,
        *,
        authorize: bool,
        remote_start_id: int | None = None,
    ) -> bool:
        """Start charging for `token` on an EVSE (or the first that can); False if none can.

        `remote_start_id` is the CSMS's id for this request (2.0.1), kept with the
        transaction it starts or authorizes."""
        candidates = [self.evses[evse_id]] if evse_id in self.evses else []
        if evse_id is None:
            ranked = sorted(self.evses.values(), key=lambda e: e.state != SessionPhase.PLUGGED)
            candidates = [e for e in ranked if e.available_for_new_session()]
        return any(
            evse.remote_start(token, authorize=authorize, remote_start_id=remote_start_id)
            for evse in candidates[:1]
        )

    async def stop_transaction(self, local_id: int, reason: StopReason) -> bool:
        """Stop the running transaction with this local id; False if none runs."""
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.local_id == local_id:
                return await evse.stop_transaction(reason)
        return False

    def suspend_refused(self, local_id: int, max_energy_wh: float) -> bool:
        """The CSMS refused a running transaction's token and it is not to stop: no more
        energy beyond `max_energy_wh` since its start (0: none). False if it is not running."""
        return any(evse.suspend_refused(local_id, max_energy_wh) for evse in self.evses.values())

    async def stop_all(self, reason: StopReason) -> None:
        """Stop every running transaction (resets, shutdown)."""
        for evse in self.evses.values():
            if evse.tx is not None:
                await evse.stop_transaction(reason)

    def set_operative(self, evse_id: int | None, operative: bool) -> bool:
        """Change availability of one EVSE or (None) all; False when Scheduled.

        The requested state is persisted at once, so a Scheduled change still applies
        after a restart (OCPP 1.6 section 5.2).
        """
        targets = list(self.evses.values()) if evse_id is None else [self.evses[evse_id]]
        applied = True
        for evse in targets:
            value = "Operative" if operative else "Inoperative"
            self.settings.set_setting(f"core.availability.{evse.id}", value)
            applied = evse.set_operative(operative) and applied
        return applied

    async def unlock(self, evse_id: int) -> UnlockResult:
        """Unlock an EVSE's connector (stopping its transaction first)."""
        return await self.evses[evse_id].unlock_connector()

    def present_token(self, evse_id: int, token: IdToken) -> None:
        """A token was tapped at an EVSE's reader."""
        self.evses[evse_id].present_token(token)

    def transaction_running(self) -> bool:
        """Whether any EVSE has a transaction."""
        return any(evse.tx is not None for evse in self.evses.values())

    # -- reservations ----------------------------------------------------------------

    def reserve(self, reservation: Reservation) -> ReserveResult:
        """Hold an EVSE (or, with evse_id None, any one EVSE with a connector of the
        reservation's type) for a token until expiry; one with a known id replaces the
        old one only if accepted."""
        result = self._reservation_answer(reservation)
        if result == ReserveResult.ACCEPTED:
            self.reservations.add(reservation)
            self._apply_reservations()
        return result

    def _reservation_answer(self, reservation: Reservation) -> ReserveResult:
        """Whether `reservation` can be held now, and why not (OCPP 2.0.1 H01, 1.6 section 5.13)."""
        free = self._free(ignoring=reservation.id)
        others = [r for r in self.reservations.station_wide() if r.id != reservation.id]
        if reservation.evse_id is None:
            fitting = [e for e in self.evses.values() if reservation.fits(_types(e))]
            if not fitting:
                return ReserveResult.REJECTED
            if can_hold([*others, reservation], free):
                return ReserveResult.ACCEPTED
            return _why_not_free(fitting)
        evse = self.evses.get(reservation.evse_id)
        if evse is None or not reservation.fits(_types(evse)):
            return ReserveResult.REJECTED
        if evse.blocking_faults:
            return ReserveResult.FAULTED
        if not evse.operative:
            return ReserveResult.UNAVAILABLE
        holder = self.reservations.for_evse(evse.id)
        taken = holder is not None and holder.id != reservation.id
        busy = evse.state != SessionPhase.IDLE or evse.authorizing
        # The unbound reservations must still be held by the EVSEs left free.
        if busy or taken or not can_hold(others, without(free, evse.id)):
            return ReserveResult.OCCUPIED
        return ReserveResult.ACCEPTED

    def cancel_reservation(self, reservation_id: int) -> bool:
        """Cancel a reservation; False if there is none with that id."""
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            return False
        self._end_reservation(reservation, ReservationEnd.CANCELLED)
        return True

    def may_admit(self, evse_id: int, token: IdToken) -> bool:
        """ReservationGate: could an authorization of this token let it start here?"""
        held = self.reservations.for_evse(evse_id)
        return held is None or held.id_token == token.value or held.group_id is not None

    def admits(self, evse_id: int, token: IdToken, result: AuthResult | None) -> bool:
        """ReservationGate: may this token start on this EVSE now?"""
        held = self.reservations.for_evse(evse_id)
        if held is not None:
            return held.admits(token, result)
        allowed, _ = self._claim(evse_id, token, result)
        return allowed

    def use(self, evse_id: int, token: IdToken, result: AuthResult | None) -> int | None:
        """ReservationGate: consume the reservation this session fulfils."""
        held = self.reservations.for_evse(evse_id)
        if held is not None:
            reservation = held if held.admits(token, result) else None
        else:
            _, reservation = self._claim(evse_id, token, result)
        if reservation is None:
            return None
        self._end_reservation(reservation, ReservationEnd.USED)
        return reservation.id

    def _claim(
        self, evse_id: int, token: IdToken, result: AuthResult | None
    ) -> tuple[bool, Reservation | None]:
        """reservations.claim() over the station's unbound reservations and free EVSEs."""
        unbound = self.reservations.station_wide()
        evse = self.evses.get(evse_id)
        if not unbound or evse is None:
            return True, None
        return claim(unbound, self._free(), evse_id, _types(evse), token, result)

    def _free(self, ignoring: int | None = None) -> dict[int, frozenset[str]]:
        """EVSEs anyone could start on now (idle, operative, fault-free, held by no
        reservation but `ignoring`), with their connector types."""
        free: dict[int, frozenset[str]] = {}
        for evse in self._usable(ignoring).values():
            if evse.state == SessionPhase.IDLE:
                free[evse.id] = _types(evse)
        return free

    def _usable(self, ignoring: int | None = None) -> dict[int, Evse]:
        """EVSEs that are operative, fault-free and held by no reservation but `ignoring`."""
        usable: dict[int, Evse] = {}
        for evse in self.evses.values():
            holder = self.reservations.for_evse(evse.id)
            unheld = holder is None or holder.id == ignoring
            if evse.operative and not evse.blocking_faults and unheld:
                usable[evse.id] = evse
        return usable

    def _follow_evse(self, evse_id: int, *, closed: bool) -> None:
        """An EVSE changed: once it reported Faulted or Unavailable (`closed`), end the
        reservations that leaves without an EVSE (OCPP 2.0.1 H01, 1.6 section 5.13);
        then show which EVSEs are Reserved."""
        evse = self.evses.get(evse_id)
        if closed and evse is not None and (evse.blocking_faults or not evse.operative):
            held = self.reservations.for_evse(evse_id)
            if held is not None:
                self._end_reservation(held, ReservationEnd.REMOVED)
            usable = {e.id: _types(e) for e in self._usable().values()}
            for orphan in unmatched(self.reservations.station_wide(), usable):
                self._end_reservation(orphan, ReservationEnd.REMOVED)
        self._show_reservations()

    def _end_reservation(self, reservation: Reservation, reason: ReservationEnd) -> None:
        if self.reservations.remove(reservation.id) is None:
            return
        self._apply_reservations()
        self.emit(ReservationEnded(reservation.id, reservation.evse_id, reason))

    def _apply_reservations(self) -> None:
        """Show the book on the EVSEs (Reserved status) and re-arm the expiry timer."""
        self._show_reservations()
        self._wake_timers()

    def _show_reservations(self) -> None:
        """Mark Reserved each EVSE a reservation holds and each free one the unbound
        reservations cannot spare (2.0.1 H01.FR.07); publish those that changed."""
        spare = needed(self.reservations.station_wide(), self._free())
        for evse in self.evses.values():
            reserved = self.reservations.for_evse(evse.id) is not None or evse.id in spare
            if evse.reserved != reserved:
                evse.reserved = reserved
                evse.publish_status()

    # -- clock-aligned metering --------------------------------------------------------

    def policy_changed(self) -> None:
        """The adapter changed `policy` (the aligned interval may have moved)."""
        self._wake_timers()

    # -- timers: clock-aligned samples and reservation expiry ---------------------------

    def _timed(self) -> bool:
        """Whether anything needs the timer loop: an aligned interval or a reservation."""
        return self.policy.aligned_interval_s > 0 or len(self.reservations) > 0

    def _wake_timers(self) -> None:
        """What the timers wait for changed: wake the loop, or start it if it has work now."""
        if self._timers is not None and not self._timers.done():
            self._timers_changed.set()
        elif self._running and self._timed():  # (a loop that failed is started afresh)
            self._timers_changed.clear()
            self._timers = self._tasks.spawn(self._run_timers(), name="station-timers")

    async def _run_timers(self) -> None:
        """End reservations at their expiry; sample every EVSE at each multiple of the
        aligned interval past midnight UTC. Ends when neither is left (no task that only
        waits); `_wake_timers` starts it again."""
        while True:
            for reservation in self.reservations.expired(self.clock.now()):
                self._end_reservation(reservation, ReservationEnd.EXPIRED)
            # No await from here to the sleep: a change is either seen now or wakes it.
            self._timers_changed.clear()
            if not self._timed():
                self._timers = None
                return
            now = self.clock.now()
            interval = self.policy.aligned_interval_s
            boundary = next_aligned(now, interval) if interval > 0 else None
            dues = [r.expires_at for r in self.reservations.all()[:1]]
            if boundary is not None:
                dues.append(boundary)
            await sleep_unless(
                self.clock.sleep, (min(dues) - now).total_seconds(), self._timers_changed
            )
            if (
                boundary is None
                or self.policy.aligned_interval_s != interval
                or self.clock.now() < boundary
            ):
                continue
            for evse in self.evses.values():
                await self._sample_aligned(evse, boundary)

    async def _sample_aligned(self, evse: Evse, boundary: datetime) -> None:
        """Sample an EVSE, stamped with the aligned instant it stands for."""
        sample = await evse.read_meter()
        if sample is None:
            return
        now = boundary
        offered = evse.offered_a()
        tx = evse.tx
        if tx is not None:
            self.journal.record_meter(
                tx.local_id,
                at=now,
                energy_wh=sample.energy_import_wh,
                payload={
                    **sample_payload(sample, SampleContext.CLOCK, now, offered),
                    **evse.event_details(TxTrigger.METER_CLOCK),
                },
                enqueue=True,
            )
            self.emit(TxMessageQueued(evse.id, tx.local_id))
        else:
            connector_id = evse.connectors[0].id
            self.emit(
                MeterValuesSampled(evse.id, connector_id, sample, SampleContext.CLOCK, now, offered)
            )


def _types(evse: Evse) -> frozenset[str]:
    """The connector types of an EVSE."""
    return frozenset(connector.type for connector in evse.connectors)


def _why_not_free(fitting: list[Evse]) -> ReserveResult:
    """Why no EVSE of these can take one more reservation."""
    if any(e.operative and not e.blocking_faults for e in fitting):
        return ReserveResult.OCCUPIED
    if any(e.blocking_faults for e in fitting):
        return ReserveResult.FAULTED
    return ReserveResult.UNAVAILABLE


def next_aligned(now: datetime, interval_s: float) -> datetime:
    """The next instant after `now` that is a whole multiple of `interval_s` past midnight."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    steps = int(elapsed // interval_s) + 1
    return midnight + timedelta(seconds=steps * interval_s)
