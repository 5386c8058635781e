"""The station: its EVSEs, the shared session machine, and the station-wide commands.

This is the core's face towards adapters: they call its commands (remote start and
stop, availability, unlock, stop-all for resets) and listen to its events. It owns the
things that span EVSEs: persisted availability, clock-aligned metering, and recovery of
transactions interrupted by a power cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from agent.core.events import (
    Authorizer,
    AuthResult,
    AuthStatus,
    IdToken,
    MeterValuesSampled,
    StationEvent,
    TxMessageQueued,
    UnlockResult,
    sample_payload,
)
from agent.core.evse import Evse, Policy
from agent.core.ports import Clock, SampleContext, SettingsStore, StopReason, TransactionJournal
from agent.core.session import build_machine
from agent.core.status import SessionPhase
from agent.core.tasks import TaskSet

log = logging.getLogger(__name__)

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
    ) -> None:
        self.clock = clock
        self.journal = journal
        self.settings = settings
        self.policy = policy or Policy()
        self.evses: dict[int, Evse] = {}
        self.authorizer: Authorizer = _RejectAll()
        self._listeners: list[Listener] = []
        self._machine = build_machine()
        self._tasks = TaskSet("station")
        for evse in evses or []:
            self.add_evse(evse)

    def add_evse(self, evse: Evse) -> None:
        """Register an EVSE (built with this station's policy, emit and authorizer)."""
        self.evses[evse.id] = evse
        self._machine.add_model(evse)
        evse.operative = self.settings.get_setting(f"core.availability.{evse.id}") != "Inoperative"

    def evse_kwargs(self) -> dict[str, object]:
        """The station-provided constructor arguments of an Evse."""
        return {
            "clock": self.clock,
            "journal": self.journal,
            "policy": self.policy,
            "authorizer": lambda: self.authorizer,
            "emit": self.emit,
        }

    # -- events ----------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every station event; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: StationEvent) -> None:
        """Hand an event to every listener (listeners must not block)."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("station listener failed on %s", event)

    # -- running ----------------------------------------------------------------

    async def start(self) -> None:
        """Close interrupted transactions, then start every EVSE and the aligned sampler."""
        self.recover_interrupted()
        for evse in self.evses.values():
            await evse.start()
        self._tasks.spawn(self._aligned_sampler(), name="aligned-sampler")

    async def shutdown(self) -> None:
        """Stop everything and leave the hardware safe."""
        await self._tasks.cancel_all()
        for evse in self.evses.values():
            await evse.shutdown()

    def recover_interrupted(self) -> int:
        """Close transactions a power cut left open (reason power loss); return how many.

        The stop meter value is the last register the journal persisted, the stop time
        the moment it was read: the last moment the agent knew the transaction running.
        """
        count = 0
        for tx in self.journal.open_transactions():
            log.warning("closing transaction %s interrupted by power loss", tx.local_id)
            self.journal.end_transaction(
                tx.local_id,
                stopped_at=tx.last_meter_at,
                meter_stop_wh=tx.last_meter_wh,
                reason=StopReason.POWER_LOSS,
                stop_id_token=None,
                payload={},
            )
            self.emit(TxMessageQueued(tx.evse_id, tx.local_id))
            count += 1
        return count

    # -- commands ----------------------------------------------------------------

    def evse(self, evse_id: int) -> Evse:
        """The EVSE with this id; KeyError if there is none."""
        return self.evses[evse_id]

    def remote_start(self, token: IdToken, evse_id: int | None, *, authorize: bool) -> bool:
        """Start charging for `token` on an EVSE (or the first that can); False if none can."""
        candidates = [self.evses[evse_id]] if evse_id in self.evses else []
        if evse_id is None:
            ranked = sorted(self.evses.values(), key=lambda e: e.state != SessionPhase.PLUGGED)
            candidates = [e for e in ranked if e.available_for_new_session()]
        return any(evse.remote_start(token, authorize=authorize) for evse in candidates[:1])

    async def stop_transaction(self, local_id: int, reason: StopReason) -> bool:
        """Stop the running transaction with this local id; False if none runs."""
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.local_id == local_id:
                return await evse.stop_transaction(reason)
        return False

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

    # -- clock-aligned metering --------------------------------------------------------

    async def _aligned_sampler(self) -> None:
        """Sample every EVSE at each multiple of the aligned interval past midnight UTC."""
        while True:
            interval = self.policy.aligned_interval_s
            if interval <= 0:
                await self.clock.sleep(1.0)
                continue
            now = self.clock.now()
            boundary = next_aligned(now, interval)
            await self.clock.sleep((boundary - now).total_seconds())
            if self.policy.aligned_interval_s != interval:
                continue
            for evse in self.evses.values():
                await self._sample_aligned(evse, boundary)

    async def _sample_aligned(self, evse: Evse, boundary: datetime) -> None:
        """Sample an EVSE, stamped with the aligned instant it stands for."""
        sample = await evse.read_meter()
        if sample is None:
            return
        now = boundary
        offered = evse.limit_a if evse.desired_outputs().offering else 0.0
        tx = evse.tx
        if tx is not None:
            self.journal.record_meter(
                tx.local_id,
                at=now,
                energy_wh=sample.energy_import_wh,
                payload=sample_payload(sample, SampleContext.CLOCK, now, offered),
                enqueue=True,
            )
            self.emit(TxMessageQueued(evse.id, tx.local_id))
        else:
            connector_id = evse.connectors[0].id
            self.emit(
                MeterValuesSampled(evse.id, connector_id, sample, SampleContext.CLOCK, now, offered)
            )


def next_aligned(now: datetime, interval_s: float) -> datetime:
    """The next instant after `now` that is a whole multiple of `interval_s` past midnight."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    steps = int(elapsed // interval_s) + 1
    return midnight + timedelta(seconds=steps * interval_s)
