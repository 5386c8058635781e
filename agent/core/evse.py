"""One EVSE: its drivers, its session machine model, and the two paths through it.

The safety path is short and synchronous: a board event updates the inputs, and an
outputs worker drives PWM and contactor from `derive_outputs` at once. Nothing on that
path waits for the meter, the journal or the network (DESIGN idea 4).

The lifecycle path is one worker per EVSE that feeds the session machine (plug, token,
stop, unplug) and writes the transaction journal. Token checks run beside it and only
enqueue their verdict, so a slow CSMS never holds the machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.core.events import (
    AuthorizationOutcome,
    Authorizer,
    AuthResult,
    AuthStatus,
    IdToken,
    PhaseChanged,
    StationEvent,
    StatusChanged,
    TxMessageQueued,
    UnlockResult,
    sample_payload,
)
from agent.core.faults import FaultSet
from agent.core.iec61851 import EvEvent, PilotDecoder
from agent.core.metering import MeterReader
from agent.core.outputs import SAFE, Outputs, derive_outputs
from agent.core.policy import Policy
from agent.core.ports import Clock, SampleContext, StopReason, TransactionJournal, TxRecord
from agent.core.reservations import OpenGate, ReservationGate
from agent.core.status import (
    ConnectorStatus,
    SessionPhase,
    StatusInputs,
    connector_statuses,
)
from agent.core.tasks import TaskSet
from drivers.interfaces import BoardSupport, ConnectorLock, DriverError, PowerMeter
from drivers.types import (
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    MeterSample,
    PilotEvent,
    PilotState,
)

log = logging.getLogger(__name__)

#: Register persistence period while a transaction runs and periodic sampling is off.
REGISTER_PERSIST_S = 10.0
#: How often the meter is read while no transaction runs (fault detection).
IDLE_METER_POLL_S = 30.0
#: How often a connector lock that failed is tried again during a transaction.
LOCK_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector as built."""

    id: int
    type: str
    max_current_a: float
    phases: int


class Evse:
    """The model of one EVSE in the shared session machine, plus its drivers."""

    state: SessionPhase  # set by the machine

    def __init__(
        self,
        *,
        evse_id: int,
        connectors: tuple[ConnectorSpec, ...],
        board: BoardSupport,
        meter: PowerMeter,
        lock: ConnectorLock | None,
        clock: Clock,
        journal: TransactionJournal,
        policy: Policy,
        authorizer: Callable[[], Authorizer],
        emit: Callable[[StationEvent], None],
        reservations: ReservationGate | None = None,
    ) -> None:
        self.id = evse_id
        self.connectors = connectors
        self.board = board
        self.lock = lock
        self.clock = clock
        self.journal = journal
        self.policy = policy
        self._authorizer = authorizer
        self._reservations: ReservationGate = reservations or OpenGate()
        self._emit = emit
        self.pilot = PilotState.A
        self._faults = FaultSet(f"EVSE {evse_id}")
        self.contactor_feedback: bool | None = None
        self.operative = True
        self.pending_operative: bool | None = None  # a Scheduled availability change
        self.reserved = False
        self.limit_a = min(
            board.capabilities.max_current_a, max(c.max_current_a for c in connectors)
        )
        self.tx: TxRecord | None = None
        self.token: IdToken | None = None
        self.token_group: str | None = None  # the group (parent id) of the token
        self._token_result: AuthResult | None = None
        self.metering = MeterReader(
            meter,
            contactor_closed=lambda: self.commanded.contactor_closed,
            report_lost=self._meter_lost,
        )
        self.commanded: Outputs = SAFE
        self._decoder = PilotDecoder()
        self._statuses: dict[int, tuple[ConnectorStatus, FaultCode | None]] = {}
        self._outputs_dirty = asyncio.Event()
        self._inbox: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
        self._tasks = TaskSet(f"evse-{evse_id}")
        self._sampler: asyncio.Task[Any] | None = None
        self._authorizing = False
        self._board_failed = False
        self._settling = False  # the lifecycle worker has queued or running work

    # -- running -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and the drivers; the board reports the pilot at once."""
        self._tasks.spawn(self._outputs_worker(), name=f"evse-{self.id}-outputs")
        self._tasks.spawn(self._lifecycle_worker(), name=f"evse-{self.id}-lifecycle")
        self._tasks.spawn(self._idle_meter_watch(), name=f"evse-{self.id}-meter-watch")
        await self.board.start(self.on_board_event)
        self._outputs_dirty.set()
        self.publish_status()

    async def shutdown(self) -> None:
        """Stop the workers and leave the hardware safe (contactor open, pilot +12 V)."""
        await self._tasks.cancel_all()
        try:
            await self.board.stop()
        except DriverError:
            log.exception("EVSE %s: board did not stop cleanly", self.id)

    async def run_in_lifecycle(self, action: Callable[[], Awaitable[Any]]) -> Any:
        """Run `action` on this EVSE's lifecycle worker and return its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            try:
                future.set_result(await action())
            except Exception as exc:  # handed to the caller
                future.set_exception(exc)

        self._inbox.put_nowait(job)
        return await future

    async def _lifecycle_worker(self) -> None:
        while True:
            job = await self._inbox.get()
            self._settling = True
            try:
                await job()
            except Exception:
                log.exception("EVSE %s: lifecycle step failed", self.id)
            finally:
                self._settling = not self._inbox.empty()
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # transitions' AsyncMachine swallows a CancelledError raised inside a
                # trigger: honour the cancel here, or shutdown() waits for us forever.
                raise asyncio.CancelledError
            self.publish_status()

    # -- the safety path ------------------------------------------------------------

    def on_board_event(self, event: BoardEvent) -> None:
        """Driver sink: update the inputs, wake the outputs worker, queue the lifecycle."""
        if isinstance(event, PilotEvent):
            self.pilot = event.state
            ev_events = self._decoder.feed(event.state)
            if ev_events:
                self._settling = True
                self._inbox.put_nowait(lambda: self._on_ev_events(ev_events))
        elif isinstance(event, FaultEvent):
            self._set_fault(event.code, event.active, event.detail, source="board")
        elif isinstance(event, ContactorEvent):
            self.contactor_feedback = event.closed
        self._outputs_dirty.set()
        self.publish_status()

    @property
    def faults(self) -> frozenset[FaultCode]:
        """The active faults, whatever raised them."""
        return self._faults.active

    @property
    def blocking_faults(self) -> frozenset[FaultCode]:
        """The active faults that stop energy (all but the advisory ones)."""
        return self._faults.blocking

    def fault_sink(self, source: str) -> Callable[[BoardEvent], None]:
        """A sink for another driver's events (a DC module, an IMD): its faults count
        separately from the board's, so one clearing does not clear the other."""

        def sink(event: BoardEvent) -> None:
            if isinstance(event, FaultEvent):
                self._set_fault(event.code, event.active, event.detail, source=source)
                self.publish_status()

        return sink

    def _set_fault(self, code: FaultCode, active: bool, detail: str = "", *, source: str) -> None:
        self._faults.set(code, active, source=source, detail=detail)
        self._outputs_dirty.set()

    def desired_outputs(self) -> Outputs:
        """What PWM and contactor should be now."""
        return derive_outputs(
            phase=self.state, pilot=self.pilot, faults=self.blocking_faults, limit_a=self.limit_a
        )

    async def _outputs_worker(self) -> None:
        while True:
            await self._outputs_dirty.wait()
            self._outputs_dirty.clear()
            await self._apply_outputs()

    async def _apply_outputs(self) -> None:
        desired = self.desired_outputs()
        current = self.commanded
        try:
            # Open first, then change the pilot, then close last: never close the
            # contactor before the PWM that permits it is on.
            if current.contactor_closed and not desired.contactor_closed:
                await self.board.set_contactor(False)
            if desired.duty_percent != current.duty_percent:
                if desired.duty_percent is None:
                    await self.board.pwm_off()
                else:
                    await self.board.pwm_on(desired.duty_percent)
            if desired.contactor_closed and not current.contactor_closed:
                self.metering.contactor_closing()
                await self.board.set_contactor(True)
            self.commanded = desired
            if self._board_failed:
                self._board_failed = False
                self._set_fault(FaultCode.INTERNAL_ERROR, False, source="outputs")
                self.publish_status()
        except DriverError:
            log.exception("EVSE %s: board command failed", self.id)
            # The hardware state is unknown: fault (which makes the outputs SAFE) and
            # retry every command after a pause.
            self.commanded = Outputs(duty_percent=-1.0, contactor_closed=True)
            self._board_failed = True
            self._set_fault(
                FaultCode.INTERNAL_ERROR, True, "board command failed", source="outputs"
            )
            self.publish_status()
            await self.clock.sleep(1.0)

    # -- status ------------------------------------------------------------------

    def publish_status(self) -> None:
        """Recompute every connector's status and emit those that changed.

        While the lifecycle worker has work queued, the status waits for it: the session
        phase is about to change, and publishing now would report a transient state
        (say SuspendedEV between an unplug and the end of its transaction).
        """
        if self._settling:
            return
        inputs = StatusInputs(
            phase=self.state,
            pilot=self.pilot,
            offering=self.desired_outputs().offering,
            faults=self.blocking_faults,
            operative=self.operative,
            reserved=self.reserved,
        )
        ids = tuple(connector.id for connector in self.connectors)
        for connector_id, value in connector_statuses(inputs, ids, self._faults.advisory).items():
            if self._statuses.get(connector_id) != value:
                self._statuses[connector_id] = value
                self._emit(
                    StatusChanged(self.id, connector_id, value[0], value[1], self.clock.now())
                )

    def status(self, connector_id: int = 1) -> ConnectorStatus:
        """The last derived status of a connector."""
        return self._statuses.get(connector_id, (ConnectorStatus.AVAILABLE, None))[0]

    def statuses(self) -> dict[int, tuple[ConnectorStatus, FaultCode | None]]:
        """Every connector's last derived status and fault."""
        return dict(self._statuses)

    # -- lifecycle: EV events, tokens, commands -------------------------------------

    async def _on_ev_events(self, events: list[EvEvent]) -> None:
        for event in events:
            if event == EvEvent.PLUGGED:
                await self.plug()  # type: ignore[attr-defined]
            elif event == EvEvent.UNPLUGGED:
                await self.unplug()  # type: ignore[attr-defined]
                if self.state == SessionPhase.IDLE and self.lock is not None:
                    await self._drive_lock(False)
            elif event == EvEvent.PILOT_ERROR:
                self._set_fault(
                    FaultCode.PILOT_FAULT, True, f"pilot in state {self.pilot}", source="pilot"
                )
            elif event == EvEvent.PILOT_ERROR_CLEARED:
                self._set_fault(FaultCode.PILOT_FAULT, False, source="pilot")

    def available_for_new_session(self) -> bool:
        """Whether a token or remote start may begin a session here now."""
        return (
            self.operative and not self.blocking_faults and self.state != SessionPhase.TRANSACTION
        )

    def present_token(self, token: IdToken) -> None:
        """A token was presented at this EVSE's reader: start, stop or cancel."""
        if self.state == SessionPhase.TRANSACTION:
            if self.token is not None and token.value == self.token.value:
                self._inbox.put_nowait(lambda: self._stop(StopReason.LOCAL, token.value))
            elif self.token_group is not None and not self._authorizing:
                # Another card of the same group may stop it (OCPP 1.6 section 3.5.2,
                # 2.0.1 C01.FR.03): ask who it belongs to.
                self._authorizing = True
                self._tasks.spawn(self._group_stop(token), name=f"evse-{self.id}-group-stop")
            else:
                self._emit(
                    AuthorizationOutcome(self.id, token, AuthResult(AuthStatus.CONCURRENT_TX))
                )
            return
        if self.state == SessionPhase.AUTHORIZED and self.token == token:
            self._inbox.put_nowait(self._cancel_authorization)
            return
        if not self.available_for_new_session() or self._authorizing:
            return
        self._authorizing = True
        self._tasks.spawn(self._authorize_and_go(token, check=True), name=f"evse-{self.id}-auth")

    def remote_start(self, token: IdToken, *, authorize: bool) -> bool:
        """Accept a remote start if this EVSE can take it; authorize first if asked."""
        if not self.available_for_new_session() or self._authorizing:
            return False
        if self.state == SessionPhase.AUTHORIZED:
            return False
        if not authorize and not self._reservations.admits(self.id, token, None):
            return False  # reserved for someone else (OCPP 1.6 section 5.11)
        self._authorizing = True
        self._tasks.spawn(
            self._authorize_and_go(token, check=authorize), name=f"evse-{self.id}-remote"
        )
        return True

    @property
    def authorizing(self) -> bool:
        """Whether a token check is in flight (further taps are ignored meanwhile)."""
        return self._authorizing

    async def _authorize_and_go(self, token: IdToken, *, check: bool) -> None:
        try:
            if check:
                result = await self._authorizer().authorize(token)
            else:
                result = AuthResult(AuthStatus.ACCEPTED)
        finally:
            self._authorizing = False
        if result.accepted and not self._reservations.admits(self.id, token, result):
            log.info("EVSE %s: reserved for another token", self.id)
            result = AuthResult(AuthStatus.INVALID, result.group_id, result.expires_at)
        if result.accepted:
            self._inbox.put_nowait(lambda: self._authorized(token, result))
        self._emit(AuthorizationOutcome(self.id, token, result))

    async def _group_stop(self, token: IdToken) -> None:
        try:
            result = await self._authorizer().authorize(token)
        finally:
            self._authorizing = False
        same_group = result.group_id is not None and result.group_id == self.token_group
        outcome = result if same_group else AuthResult(AuthStatus.CONCURRENT_TX)
        self._emit(AuthorizationOutcome(self.id, token, outcome))
        if same_group:
            self._inbox.put_nowait(lambda: self._stop(StopReason.LOCAL, token.value))

    async def _authorized(self, token: IdToken, result: AuthResult) -> None:
        if not self.available_for_new_session():
            return
        self.token, self.token_group, self._token_result = token, result.group_id, result
        if not await self.authorize():  # type: ignore[attr-defined]
            self.token = self.token_group = None

    async def _cancel_authorization(self) -> None:
        if await self.cancel_authorization():  # type: ignore[attr-defined]
            self.token = self.token_group = None

    async def stop_transaction(self, reason: StopReason, stop_token: str | None = None) -> bool:
        """Stop the running transaction (from any task); False if there is none."""
        result: bool = await self.run_in_lifecycle(lambda: self._stop(reason, stop_token))
        return result

    async def _stop(self, reason: StopReason, stop_token: str | None) -> bool:
        if self.state != SessionPhase.TRANSACTION:
            return False
        return bool(await self.end(reason, stop_token))  # type: ignore[attr-defined]

    async def unlock_connector(self) -> UnlockResult:
        """Stop any transaction here, then release the connector lock."""
        if self.state == SessionPhase.TRANSACTION:
            await self.stop_transaction(StopReason.UNLOCK)
        if self.lock is None:
            return UnlockResult.NOT_SUPPORTED
        return UnlockResult.UNLOCKED if await self._drive_lock(False) else UnlockResult.FAILED

    def set_operative(self, operative: bool) -> bool:
        """Change availability; returns False when Scheduled (a transaction runs)."""
        if self.state == SessionPhase.TRANSACTION and not operative:
            self.pending_operative = operative
            return False
        self.pending_operative = None
        self.operative = operative
        self._outputs_dirty.set()
        self.publish_status()
        return True

    # -- machine callbacks --------------------------------------------------------

    def ev_present(self, *_: Any) -> bool:
        """Machine condition: a vehicle is connected."""
        return self._decoder.last_good != PilotState.A

    def stops_on_ev_disconnect(self, *_: Any) -> bool:
        """Machine condition: unplugging ends the transaction."""
        return self.policy.stop_tx_on_ev_disconnect

    async def begin_transaction(self, *_: Any) -> None:
        """Machine callback: journal a new transaction (before entering TRANSACTION)."""
        token = self.token
        if token is None:
            raise RuntimeError("no authorized token")
        sample = await self.metering.register()  # no wait when the contactor stayed open
        if sample is None:
            # Never bill from a made-up register: the transition does not happen.
            raise RuntimeError("the meter has given no reading yet; transaction not started")
        now = self.clock.now()
        reservation_id = self._reservations.use(self.id, token, self._token_result)
        self.tx = self.journal.begin_transaction(
            evse_id=self.id,
            connector_id=self.connectors[0].id,
            id_token=token.value,
            token_type=token.type,
            started_at=now,
            meter_start_wh=sample.energy_import_wh,
            reservation_id=reservation_id,
        )
        self._emit(TxMessageQueued(self.id, self.tx.local_id))
        if self.lock is not None and not await self._drive_lock(True):
            self._set_fault(FaultCode.LOCK_FAILURE, True, "connector did not lock", source="lock")
            self._tasks.spawn(self._retry_lock(self.tx.local_id), name=f"evse-{self.id}-lock")
        self._sampler = self._tasks.spawn(self._sample_transaction(self.tx.local_id))

    async def end_transaction_on_unplug(self, *_: Any) -> None:
        """Machine callback: the EV left; end the transaction."""
        await self.end_transaction(StopReason.EV_DISCONNECTED, None)

    async def end_transaction(self, reason: StopReason, stop_token: str | None, *_: Any) -> None:
        """Machine callback: journal the end of the running transaction."""
        tx = self.tx
        if tx is None:
            return
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        sample = await self.read_meter()
        now = self.clock.now()
        meter_stop = sample.energy_import_wh if sample else tx.last_meter_wh
        payload = sample_payload(sample, SampleContext.END, now, 0.0) if sample else {}
        self.journal.end_transaction(
            tx.local_id,
            stopped_at=now,
            meter_stop_wh=max(meter_stop, tx.meter_start_wh),
            reason=reason,
            stop_id_token=stop_token,
            payload=payload,
        )
        self.tx = None
        self.token = self.token_group = None
        self._emit(TxMessageQueued(self.id, tx.local_id))
        if self.lock is not None:
            await self._drive_lock(False)
        if self.pending_operative is not None:
            self.operative, self.pending_operative = self.pending_operative, None

    def arm_connection_timeout(self, *_: Any) -> None:
        """Machine callback: give up on an authorization if no car arrives in time."""
        token = self.token

        async def expire() -> None:
            await self.clock.sleep(self.policy.connection_timeout_s)
            if self.state == SessionPhase.AUTHORIZED and self.token == token:
                log.info("EVSE %s: no vehicle within ConnectionTimeOut", self.id)
                self._inbox.put_nowait(self._cancel_authorization)

        self._tasks.spawn(expire(), name=f"evse-{self.id}-connection-timeout")

    def phase_changed(self, *_: Any) -> None:
        """Machine callback after every state change."""
        self._outputs_dirty.set()
        self._emit(PhaseChanged(self.id, self.state))
        self.publish_status()

    # -- metering ----------------------------------------------------------------

    @property
    def meter(self) -> PowerMeter:
        """The EVSE's meter driver."""
        return self.metering.meter

    @meter.setter
    def meter(self, meter: PowerMeter) -> None:
        self.metering.meter = meter

    @property
    def last_sample(self) -> MeterSample | None:
        """The last good meter reading."""
        return self.metering.last_sample

    async def read_meter(self) -> MeterSample | None:
        """A fresh reading, or the last good one while the meter does not answer."""
        return await self.metering.read()

    def _meter_lost(self, lost: bool, detail: str) -> None:
        self._set_fault(FaultCode.METER_LOST, lost, detail, source="meter")
        self.publish_status()

    async def _idle_meter_watch(self) -> None:
        """Read the meter now and then outside transactions, so that a dead meter faults
        an idle EVSE (no new session starts on it) and a recovered one clears."""
        while True:
            if self.tx is None:
                await self.read_meter()
            await self.clock.sleep(IDLE_METER_POLL_S)

    async def _sample_transaction(self, local_id: int) -> None:
        """Periodic samples from the start of the transaction (or register persistence)."""
        while True:
            interval = self.policy.sample_interval_s
            periodic = interval > 0
            await self.clock.sleep(interval if periodic else REGISTER_PERSIST_S)
            sample = await self.read_meter()
            tx = self.tx
            if sample is None or tx is None or tx.local_id != local_id:
                continue
            now = self.clock.now()
            offered = self.limit_a if self.desired_outputs().offering else 0.0
            self.journal.record_meter(
                local_id,
                at=now,
                energy_wh=sample.energy_import_wh,
                payload=sample_payload(sample, SampleContext.PERIODIC, now, offered),
                enqueue=periodic,
            )
            if periodic:
                self._emit(TxMessageQueued(self.id, local_id))

    async def _retry_lock(self, local_id: int) -> None:
        """Try the lock again now and then while the transaction waits for it."""
        while self.tx is not None and self.tx.local_id == local_id:
            await self.clock.sleep(LOCK_RETRY_S)
            if FaultCode.LOCK_FAILURE not in self.faults or self.tx is None:
                return
            if await self._drive_lock(True):
                return

    async def _drive_lock(self, locked: bool) -> bool:
        """Drive the lock; a confirmed movement clears an earlier lock failure."""
        if self.lock is None:
            return True
        try:
            confirmed = await self.lock.set_locked(locked)
        except DriverError:
            log.exception("EVSE %s: lock command failed", self.id)
            return False
        if confirmed and FaultCode.LOCK_FAILURE in self.faults:
            self._set_fault(FaultCode.LOCK_FAILURE, False, source="lock")
            self.publish_status()
        return confirmed
