"""The metering half of an EVSE: transaction samples, the idle meter watch, the lock.

A mixin of `agent.core.evse.Evse`, split out to keep each file readable:

- periodic samples of a running transaction (MeterValueSampleInterval; with sampling
  off, the register is still persisted now and then so a power cut loses little);
- a sample on request (a CSMS trigger);
- reading the meter now and then outside transactions, so a dead meter faults an idle
  EVSE and a recovered one clears;
- the connector lock: drive it, retry a failed lock during the transaction.

This module must not: command PWM or the contactor (the outputs worker does), or know
an OCPP version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from agent.core.events import StationEvent, TxMessageQueued, sample_payload
from agent.core.metering import MeterReader
from agent.core.outputs import Outputs
from agent.core.policy import Policy
from agent.core.ports import Clock, SampleContext, TransactionJournal, TxRecord, TxTrigger
from agent.core.tasks import Signal, next_tick
from drivers.interfaces import ConnectorLock, DriverError, PowerMeter
from drivers.types import FaultCode, MeterSample

log = logging.getLogger("agent.core.evse")

#: Register persistence period while a transaction runs and periodic sampling is off.
REGISTER_PERSIST_S: Final = 10.0
#: How often the meter is read while no transaction runs (fault detection).
IDLE_METER_POLL_S: Final = 30.0
#: How often a connector lock that failed is tried again during a transaction.
LOCK_RETRY_S: Final = 2.0


class EvseMetering:
    """Meter and lock of one EVSE (mixed into Evse, which provides the state)."""

    id: int
    clock: Clock
    journal: TransactionJournal
    policy: Policy
    lock: ConnectorLock | None
    metering: MeterReader
    limit_a: float
    lock_held: bool
    tx: TxRecord | None
    _energy_cap_wh: float | None
    _outputs_dirty: Signal
    _emit: Callable[[StationEvent], None]

    @property
    def faults(self) -> frozenset[FaultCode]:
        """The active faults (Evse provides it)."""
        raise NotImplementedError

    def desired_outputs(self) -> Outputs:
        """What PWM and contactor should be now (Evse provides it)."""
        raise NotImplementedError

    def publish_status(self) -> None:
        """Recompute and emit the statuses (Evse provides it)."""
        raise NotImplementedError

    def event_details(self, trigger: TxTrigger | None) -> dict[str, Any]:
        """The journal details of an event (Evse provides it)."""
        raise NotImplementedError

    def _set_fault(self, code: FaultCode, active: bool, detail: str = "", *, source: str) -> None:
        raise NotImplementedError

    def offered_a(self) -> float:
        """The current offered now (Evse provides it)."""
        raise NotImplementedError

    def _stepped(self) -> None:
        """Let the station recompute the limits (Evse provides it)."""
        raise NotImplementedError

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
        """Periodic samples from the start of the transaction (or register persistence),
        due at start + k x interval however long each takes (missed ones skipped); a
        changed interval applies from the next sample on."""
        due = self.clock.now()
        while True:
            interval = self.policy.sample_interval_s
            periodic = interval > 0
            due = next_tick(due, interval if periodic else REGISTER_PERSIST_S, self.clock.now())
            await self.clock.sleep((due - self.clock.now()).total_seconds())
            sample = await self.read_meter()
            tx = self.tx
            if sample is None or tx is None or tx.local_id != local_id:
                continue
            if self._energy_cap_wh is not None:
                self._outputs_dirty.set()  # the allowance may be used up now
                self.publish_status()
            self._stepped()  # a shared limit follows what the EV really draws
            now = self.clock.now()
            offered = self.offered_a()
            self.journal.record_meter(
                local_id,
                at=now,
                energy_wh=sample.energy_import_wh,
                payload={
                    **sample_payload(sample, SampleContext.PERIODIC, now, offered),
                    **self.event_details(TxTrigger.METER_PERIODIC),
                },
                enqueue=periodic,
            )
            if periodic:
                self._emit(TxMessageQueued(self.id, local_id))

    async def report_transaction(self) -> bool:
        """Journal a meter sample of the running transaction now (a CSMS asked for it);
        False when no transaction runs or the meter gives no reading."""
        tx = self.tx
        sample = await self.read_meter() if tx is not None else None
        if tx is None or sample is None or self.tx is not tx:
            return False
        now = self.clock.now()
        self.journal.record_meter(
            tx.local_id,
            at=now,
            energy_wh=sample.energy_import_wh,
            payload={
                **sample_payload(sample, SampleContext.TRIGGER, now, self.offered_a()),
                **self.event_details(TxTrigger.TRIGGER),
            },
            enqueue=True,
        )
        self._emit(TxMessageQueued(self.id, tx.local_id))
        return True

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
        if not locked:
            self.lock_held = False  # no energy from here on, whatever the lock answers
            self._outputs_dirty.set()
        try:
            confirmed = await self.lock.set_locked(locked)
        except DriverError:
            log.exception("EVSE %s: lock command failed", self.id)
            return False
        if locked and confirmed:
            self.lock_held = True  # the plug is held: energy may flow
            self._outputs_dirty.set()
        if confirmed and FaultCode.LOCK_FAILURE in self.faults:
            self._set_fault(FaultCode.LOCK_FAILURE, False, source="lock")
            self.publish_status()
        return confirmed
