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
    Authorizer,
    AuthResult,
    IdToken,
    PhaseChanged,
    StationEvent,
    StatusChanged,
    TxMessageQueued,
    UnlockResult,
    sample_payload,
)
from agent.core.evse_metering import (
    IDLE_METER_POLL_S,
    LOCK_RETRY_S,
    REGISTER_PERSIST_S,
    EvseMetering,
)
from agent.core.evse_tokens import EvseTokens
from agent.core.faults import FaultSet
from agent.core.iec61851 import EvEvent, PilotDecoder
from agent.core.metering import MeterReader
from agent.core.outputs import SAFE, Outputs, derive_outputs
from agent.core.policy import Policy
from agent.core.ports import (
    Clock,
    SampleContext,
    StopReason,
    TransactionJournal,
    TxPoint,
    TxRecord,
    TxTrigger,
)
from agent.core.reservations import OpenGate, ReservationGate
from agent.core.status import (
    ConnectorStatus,
    SessionPhase,
    StatusInputs,
    connector_statuses,
)
from agent.core.tasks import Mailbox, Signal, TaskSet
from agent.core.txpoints import (
    holding,
    offers_before_transaction,
    start_trigger,
    starts,
    stop_reason,
)
from drivers.interfaces import (
    BoardSupport,
    ConnectorLock,
    DriverError,
    PhaseSwitchingBoard,
    PowerMeter,
)
from drivers.types import (
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
    TokenType,
)

log = logging.getLogger(__name__)

#: Re-exported: tests and the bench tune these (they live with the code that uses them).
__all__ = ["IDLE_METER_POLL_S", "LOCK_RETRY_S", "REGISTER_PERSIST_S", "ConnectorSpec", "Evse"]


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector as built."""

    id: int
    type: str
    max_current_a: float
    phases: int


class Evse(EvseTokens, EvseMetering):
    """The model of one EVSE in the shared session machine, plus its drivers.

    Token handling lives in agent/core/evse_tokens.py and metering and the lock in
    agent/core/evse_metering.py (mixins over this class's state).
    """

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
        online: Callable[[], bool] = lambda: True,
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
        self._online = online
        self.pilot = PilotState.A
        self._faults = FaultSet(f"EVSE {evse_id}")
        self.contactor_feedback: bool | None = None
        self.operative = True
        self.pending_operative: bool | None = None  # a Scheduled availability change
        self.reserved = False
        #: Whether the connector lock confirmed it holds the plug (always, without a lock):
        #: a transaction's energy waits for it.
        self.lock_held = lock is None
        self.hardware_max_a = min(
            board.capabilities.max_current_a, max(c.max_current_a for c in connectors)
        )
        self.max_phases = min(board.capabilities.phases, max(c.phases for c in connectors))
        self.limit_a = self.hardware_max_a  # what the smart-charging loop allows now
        self.active_phases = self.max_phases  # the phases the supply is switched to
        self._phases_wanted = self.max_phases
        #: Called after every lifecycle step and when a transaction begins, before the
        #: status is published: the station recomputes the charging limits there.
        self.on_step: Callable[[], None] | None = None
        self.tx: TxRecord | None = None
        self.token: IdToken | None = None
        self.token_group: str | None = None  # the group (parent id) of the token
        self._token_result: AuthResult | None = None
        self._remote_start_id: int | None = None  # of the remote start being served
        self._held: frozenset[TxPoint] = frozenset()  # conditions held during the tx
        self._conditions: frozenset[TxPoint] = frozenset()  # as of the last settle
        self._journaled_state: tuple[str, bool] | None = None  # charging state last told
        self._energy_seen = False  # energy_flowing() as the status last saw it
        self._energy_cap_wh: float | None = None  # register beyond which no energy flows
        self._journaled_limit_a: float | None = None  # the offered limit last journalled
        self.metering = MeterReader(
            meter,
            contactor_closed=lambda: self.commanded.contactor_closed,
            report_lost=self._meter_lost,
        )
        self.commanded: Outputs = SAFE
        self._decoder = PilotDecoder()
        self._statuses: dict[int, tuple[ConnectorStatus, FaultCode | None]] = {}
        self._outputs_dirty = Signal()
        self._inbox: Mailbox[Callable[[], Awaitable[Any]]] = Mailbox()
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
                self._stepped()
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
        """What PWM and contactor should be now.

        Power is offered in the charging session once its transaction is journalled
        (or before, when the transaction is to start with the energy transfer) and the
        connector lock, if there is one, holds the plug.
        """
        phase = self.state
        if phase == SessionPhase.TRANSACTION and (
            (self.tx is None and not offers_before_transaction(self.policy.tx_start_points))
            or (self.tx is not None and not self.lock_held)  # the plug is not held yet
            or self._energy_capped()
        ):
            phase = SessionPhase.PLUGGED
        return derive_outputs(
            phase=phase, pilot=self.pilot, faults=self.blocking_faults, limit_a=self.limit_a
        )

    def apply_limit(self, current_a: float, phases: int | None = None) -> None:
        """Offer at most `current_a` per phase from now on (below 6 A the EV is paused:
        SuspendedEVSE), on `phases` phases where the board can switch (None: all)."""
        limit = max(0.0, min(current_a, self.hardware_max_a))
        wanted = self.max_phases if phases is None else max(1, min(phases, self.max_phases))
        if not self.board.capabilities.can_switch_phases:
            wanted = self.active_phases
        if limit == self.limit_a and wanted == self._phases_wanted:
            return
        self.limit_a, self._phases_wanted = limit, wanted
        self._outputs_dirty.set()
        self.publish_status()
        told = self._journaled_limit_a
        if (
            self.tx is not None
            and told is not None
            and _significant(told, limit, self.policy.limit_change_significance_percent)
        ):
            self._journaled_limit_a = limit
            self._journal_event(TxTrigger.CHARGING_RATE_CHANGED)

    def _stepped(self) -> None:
        if self.on_step is not None:
            try:
                self.on_step()
            except Exception:
                log.exception("EVSE %s: the step hook failed", self.id)

    def _energy_capped(self) -> bool:
        """Whether a refused token's energy allowance is used up (SuspendedEVSE)."""
        cap, sample = self._energy_cap_wh, self.metering.last_sample
        return cap is not None and (sample is None or sample.energy_import_wh >= cap)

    def suspend_refused(self, local_id: int, max_energy_wh: float) -> bool:
        """The CSMS refused the token of the running transaction `local_id`, which goes on
        (1.6 StopTransactionOnInvalidId, 2.0.1 StopTxOnInvalidId false): energy stops once
        `max_energy_wh` have been delivered since its start (0: at once). False if that
        transaction is not running here."""
        tx = self.tx
        if tx is None or tx.local_id != local_id:
            return False
        self._energy_cap_wh = tx.meter_start_wh + max(0.0, max_energy_wh)
        self._outputs_dirty.set()
        self.publish_status()
        return True

    def energy_flowing(self) -> bool:
        """Whether the power path is closed with the EV drawing (pilot C or D)."""
        return self.commanded.contactor_closed and self.pilot in (PilotState.C, PilotState.D)

    def ev_declining(self) -> bool:
        """Whether the EV of a transaction is offered current and does not ask for it
        (SuspendedEV: pilot B under PWM, a full battery or the car's own timer)."""
        return self.tx is not None and self.status() is ConnectorStatus.SUSPENDED_EV

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
            if self._phases_wanted != self.active_phases:
                current = await self._switch_phases(current)
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
            self.publish_status()
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

    async def _switch_phases(self, current: Outputs) -> Outputs:
        """Pause the EV (contactor open, pilot at +12 V), switch the supply's phases and
        return the outputs as they are now (the caller resumes from there)."""
        switch = self.board
        if not isinstance(switch, PhaseSwitchingBoard):
            self._phases_wanted = self.active_phases
            return current
        if current.contactor_closed:
            await self.board.set_contactor(False)
        if current.duty_percent is not None:
            await self.board.pwm_off()
        self.commanded = SAFE
        await switch.set_phases(self._phases_wanted)
        log.info("EVSE %s: switched to %s phase(s)", self.id, self._phases_wanted)
        self.active_phases = self._phases_wanted
        return SAFE

    # -- status ------------------------------------------------------------------

    def publish_status(self) -> None:
        """Recompute every connector's status and emit those that changed.

        While the lifecycle worker has work queued, the status waits for it: the session
        phase is about to change, and publishing now would report a transient state
        (say SuspendedEV between an unplug and the end of its transaction).
        """
        if self._settling:
            return
        session_status, statuses = self._derive_statuses()
        for connector_id, value in statuses.items():
            if self._statuses.get(connector_id) != value:
                self._statuses[connector_id] = value
                self._emit(
                    StatusChanged(self.id, connector_id, value[0], value[1], self.clock.now())
                )
        flowing = self.energy_flowing()
        charging_state = (str(session_status), self.ev_present())
        if self._energy_seen != flowing or (
            self.tx is not None and charging_state != self._journaled_state
        ):
            # The charging state or the energy transfer changed: the transaction may
            # start, end or note it (on the lifecycle worker, off this path).
            self._energy_seen = flowing
            self._inbox.put_nowait(lambda: self._settle(TxTrigger.CHARGING_STATE_CHANGED))

    def _derive_statuses(
        self,
    ) -> tuple[ConnectorStatus, dict[int, tuple[ConnectorStatus, FaultCode | None]]]:
        """The derived status of the session connector, and of every connector, now."""
        inputs = StatusInputs(
            phase=self.state,
            pilot=self.pilot,
            offering=self.desired_outputs().offering,
            faults=self.blocking_faults,
            operative=self.operative,
            reserved=self.reserved,
        )
        ids = tuple(connector.id for connector in self.connectors)
        statuses = connector_statuses(inputs, ids, self._faults.advisory)
        return statuses[ids[0]][0], statuses

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
                await self._settle(TxTrigger.CABLE_PLUGGED_IN)
            elif event == EvEvent.UNPLUGGED:
                if await self.unplug():  # type: ignore[attr-defined]
                    await self._settle(TxTrigger.CABLE_PLUGGED_IN, StopReason.EV_DISCONNECTED)
                    self.token = self.token_group = None
                else:
                    await self._settle(TxTrigger.CHARGING_STATE_CHANGED)
                if self.state == SessionPhase.IDLE and self.lock is not None:
                    await self._drive_lock(False)
            elif event == EvEvent.PILOT_ERROR:
                self._set_fault(
                    FaultCode.PILOT_FAULT, True, f"pilot in state {self.pilot}", source="pilot"
                )
            elif event == EvEvent.PILOT_ERROR_CLEARED:
                self._set_fault(FaultCode.PILOT_FAULT, False, source="pilot")

    async def stop_transaction(self, reason: StopReason, stop_token: str | None = None) -> bool:
        """Stop the running transaction (from any task); False if there is none."""
        result: bool = await self.run_in_lifecycle(lambda: self._stop(reason, stop_token))
        return result

    async def _stop(self, reason: StopReason, stop_token: str | None) -> bool:
        """End the authorization and the transaction, whatever the stop points say."""
        if self.tx is None and self.state != SessionPhase.TRANSACTION:
            return False
        had_tx = self.tx is not None
        await self.end()  # type: ignore[attr-defined]
        await self._end_transaction(reason, stop_token)
        self.token = self.token_group = None
        return had_tx

    async def unlock_connector(self) -> UnlockResult:
        """Stop any transaction here, then release the connector lock."""
        if self.tx is not None:
            await self.stop_transaction(StopReason.UNLOCK)
        if self.lock is None:
            return UnlockResult.NOT_SUPPORTED
        return UnlockResult.UNLOCKED if await self._drive_lock(False) else UnlockResult.FAILED

    def set_operative(self, operative: bool) -> bool:
        """Change availability; returns False when Scheduled (a transaction runs)."""
        if self.tx is not None and not operative:
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
        """Machine condition: unplugging ends the authorization."""
        return self.policy.stop_tx_on_ev_disconnect

    def arm_connection_timeout(self, *_: Any) -> None:
        """Machine callback: give up on an authorization if no car arrives in time."""
        token = self.token

        async def expire() -> None:
            await self.clock.sleep(self.policy.connection_timeout_s)
            if self.state == SessionPhase.AUTHORIZED and self.token == token:
                log.info("EVSE %s: no vehicle within ConnectionTimeOut", self.id)
                self._inbox.put_nowait(self._connection_timed_out)

        self._tasks.spawn(expire(), name=f"evse-{self.id}-connection-timeout")

    async def _connection_timed_out(self) -> None:
        if await self.cancel_authorization():  # type: ignore[attr-defined]
            await self._settle(TxTrigger.AUTHORIZED, StopReason.TIMEOUT)
            self.token = self.token_group = None

    def phase_changed(self, *_: Any) -> None:
        """Machine callback after every state change."""
        self._outputs_dirty.set()
        self._emit(PhaseChanged(self.id, self.state))
        self.publish_status()

    # -- transactions: start and stop points ---------------------------------------

    def _holding(self) -> frozenset[TxPoint]:
        return holding(
            self.state, ev_connected=self.ev_present(), energy_flowing=self.energy_flowing()
        )

    def _charging_state(self) -> tuple[str, bool]:
        """The session connector's status now and whether a car is connected."""
        return (str(self._derive_statuses()[0]), self.ev_present())

    def event_details(self, trigger: TxTrigger | None) -> dict[str, Any]:
        """What every transaction message of this EVSE records beside its own facts: the
        trigger, whether the CSMS was unreachable, and the charging state."""
        status, connected = self._charging_state()
        details: dict[str, Any] = {
            "offline": not self._online(),
            "status": status,
            "ev_connected": connected,
        }
        if trigger is not None:
            details["trigger"] = trigger.value
        return details

    async def _settle(self, trigger: TxTrigger, reason: StopReason | None = None) -> None:
        """Apply the start and stop points after a step of the session (lifecycle only).

        `trigger` says what the step was; `reason` why an ending authorization ended.
        """
        now = self._holding()
        before, self._conditions = self._conditions, now
        if self.tx is None:
            if (
                starts(self.policy.tx_start_points, self.state, now)
                and not await self._begin_transaction(
                    start_trigger(self.policy.tx_start_points, now, trigger)
                )
                and self.state == SessionPhase.TRANSACTION
            ):
                await self.end()  # type: ignore[attr-defined]
            return
        self._held |= now
        ending = stop_reason(self.policy.tx_stop_points, self.state, self._held, now)
        if ending is not None:
            if self.state == SessionPhase.IDLE and reason is not None:
                ending = reason
            await self._end_transaction(ending, None)
            return
        gained = now - before
        if TxPoint.AUTHORIZED in gained and self.token is not None:
            self._journal_event(trigger, token=self.token)
        elif TxPoint.EV_CONNECTED in gained:
            self._journal_event(TxTrigger.CABLE_PLUGGED_IN)
        elif self._charging_state() != self._journaled_state:
            self._journal_event(TxTrigger.CHARGING_STATE_CHANGED)

    def _journal_event(self, trigger: TxTrigger, *, token: IdToken | None = None) -> None:
        tx = self.tx
        if tx is None:
            return
        now = self.clock.now()
        payload = {"at": now.isoformat(), **self.event_details(trigger)}
        if self._remote_start_id is not None and token is not None:
            payload["remote_start_id"] = self._remote_start_id  # the first event after it
        self._journaled_state = self._charging_state()
        if token is not None:
            payload["id_token"], payload["token_type"] = token.value, token.type.value
            # A token arriving in a running transaction uses the reservation it matches
            # (OCPP 2.0.1 H03 scenario 2: cable first, TxStartPoint EVConnected).
            reservation_id = self._reservations.use(self.id, token, self._token_result)
            if reservation_id is not None:
                payload["reservation_id"] = reservation_id
        if token is None:
            self.journal.record_event(tx.local_id, at=now, payload=payload)
        else:
            self.journal.record_event(
                tx.local_id, at=now, payload=payload, id_token=token.value, token_type=token.type
            )
        self._emit(TxMessageQueued(self.id, tx.local_id))

    async def _begin_transaction(self, trigger: TxTrigger) -> bool:
        """Journal a new transaction; False (nothing started) without a meter reading."""
        sample = await self.metering.register()  # no wait when the contactor stayed open
        if sample is None:
            # Never bill from a made-up register.
            log.error("EVSE %s: the meter has given no reading; no transaction", self.id)
            return False
        authorized = self.state in (SessionPhase.AUTHORIZED, SessionPhase.TRANSACTION)
        token = self.token if authorized else None
        now = self.clock.now()
        reservation_id = (
            self._reservations.use(self.id, token, self._token_result) if token else None
        )
        details = self.event_details(trigger)
        begin = sample_payload(sample, SampleContext.BEGIN, now, self.offered_a())
        details["sample"] = dict(begin)
        if self._remote_start_id is not None and token is not None:
            details["remote_start_id"] = self._remote_start_id
        tx = self.journal.begin_transaction(
            evse_id=self.id,
            connector_id=self.connectors[0].id,
            id_token=token.value if token else "",
            token_type=token.type if token else TokenType.NO_AUTHORIZATION,
            started_at=now,
            meter_start_wh=sample.energy_import_wh,
            reservation_id=reservation_id,
            details=details,
        )
        # Power only once the start is durable (at once while the store is failing: the
        # start then waits in the store's backlog, and charging goes on).
        await self.journal.wait_durable()
        self.tx = tx
        self._held = self._conditions
        self._journaled_state = self._charging_state()
        self._stepped()  # the limit of this transaction, before its first PWM
        self._journaled_limit_a = self.limit_a
        self._outputs_dirty.set()
        self._emit(TxMessageQueued(self.id, self.tx.local_id))
        if self.lock is not None and not await self._drive_lock(True):
            self._set_fault(FaultCode.LOCK_FAILURE, True, "connector did not lock", source="lock")
            self._tasks.spawn(self._retry_lock(self.tx.local_id), name=f"evse-{self.id}-lock")
        self._sampler = self._tasks.spawn(self._sample_transaction(self.tx.local_id))
        return True

    async def _end_transaction(self, reason: StopReason, stop_token: str | None) -> None:
        """Journal the end of the running transaction (if one runs)."""
        tx = self.tx
        if tx is None:
            return
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        sample = await self.read_meter()
        now = self.clock.now()
        meter_stop = sample.energy_import_wh if sample else tx.last_meter_wh
        payload = dict(sample_payload(sample, SampleContext.END, now, 0.0)) if sample else {}
        payload.update(self.event_details(None))
        self.journal.end_transaction(
            tx.local_id,
            stopped_at=now,
            meter_stop_wh=max(meter_stop, tx.meter_start_wh),
            reason=reason,
            stop_id_token=stop_token,
            payload=payload,
        )
        self.tx = None
        self._journaled_limit_a = None
        self._stepped()  # its share goes to the others at once
        self._energy_cap_wh = None
        self._held = frozenset()
        self._journaled_state = None
        self._remote_start_id = None
        self._emit(TxMessageQueued(self.id, tx.local_id))
        if self.lock is not None:
            await self._drive_lock(False)
        if self.pending_operative is not None:
            self.operative, self.pending_operative = self.pending_operative, None
            self._outputs_dirty.set()

    def offered_a(self) -> float:
        """The current offered to the EV now, per phase (0 while not offering)."""
        return self.limit_a if self.desired_outputs().offering else 0.0


def _significant(told: float, now: float, percent: float) -> bool:
    """Whether the limit moved from `told` to `now` by more than `percent` percent."""
    if told == 0:
        return now != 0
    return abs(now - told) / told * 100 > percent
