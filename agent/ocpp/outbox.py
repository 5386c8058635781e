"""The outbox sender: delivers journalled transaction messages in order, exactly once.

Entries come from the store in sequence order; the version adapter turns each into a
CALL and records what the answer means (the CSMS transaction id, for one). An entry is
marked delivered only after its CALLRESULT arrived, so a disconnect, a restart or a
kill -9 leaves it pending and it is sent again on the next connection. The store commits
in the background and hands out only durable entries, so the sender, when it has nothing
to send, also wakes on its commits: nothing reaches the CSMS that a power cut could take
back.

The delivery mark itself is committed in the background too (with the next writes that
share its fsync): the next entry goes out without waiting for it. A kill -9 or a power
cut between a CALLRESULT and the commit of its mark leaves that entry pending, and it is
sent again after the restart: at-least-once, as OCPP's retry rules already imply (1.6
section 4.7 resends an unanswered transaction message, so a CSMS must tolerate a
repeat; 2.0.1 E13, whose seqNo lets the CSMS spot it). A mark is never written for an
entry whose CALLRESULT did not arrive.

Pipelining (an adapter that hands a `Pipeline`, both do): one CALL is outstanding at a
time (OCPP-J), but the sender's own work need not wait for the answer. Once entry n's
CALL is on the wire, while the CSMS answers it, the sender marks entry n-1 delivered and
reads, builds, validates and serializes entry n+1; when n's answer has been checked and
applied, n+1 goes out at once. An entry is prepared ahead only when its message cannot
depend on the answer still awaited (the adapter says so: `NotYet`, e.g. a 1.6
MeterValues needs the transactionId its StartTransaction's answer brings); a prepared
entry is dropped when the one before it fails, and rebuilt when its turn comes. Nothing
about the order changes: n+1 is never sent before n's answer was received and applied.

A prepared entry is chained to the CALL in flight (`CallInFlight.then_send`): when n's
answer is delivered, the endpoint validates it, applies it (the adapter's `on_answer`)
and sends n+1 from that same delivery, so the next CALL leaves without waiting for this
task to be woken; the task catches up (marks n, prepares n+2) while the CSMS answers
n+1. An entry not prepared ahead, or not sent from the delivery (a CALL of another
sender waiting for its turn goes first), is started by the task as before.

The sender asks the store for the entry after the one it settled last, so the store can
hand out entries it read ahead in one query (agent/store/readahead.py).

A CALLERROR, an invalid response or a timeout counts as a failed attempt: the entry is
retried after attempt x retry interval, and given up (kept, marked dropped) after the
configured number of attempts (OCPP 1.6 section 4.7; 2.0.1 E13). A lost connection is
not an attempt: the entry simply waits for the next one.

It must not: send a CALL before the previous one is answered (RpcEndpoint enforces it
too), send an entry the store has not made durable, or mark an entry whose answer did
not arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.ports import Clock, OutboxEntry
from agent.core.tasks import Signal
from agent.ocpp.rpc import (
    CallInFlight,
    CallTimeout,
    ConnectionLost,
    PreparedCall,
    RpcEndpoint,
    RpcError,
)

log = logging.getLogger(__name__)


class OutboxStore(Protocol):
    """The store methods the sender uses."""

    def next_pending(self, after_seq: int = 0) -> OutboxEntry | None:
        """Lowest pending entry after `after_seq`."""
        ...

    def mark_delivered(self, seq: int) -> None:
        """Record the delivery of an entry."""
        ...

    def note_attempt(self, seq: int) -> int:
        """Count a failed attempt and return the total."""
        ...

    def mark_dropped(self, seq: int, reason: str) -> None:
        """Give up an entry, keeping it for audit."""
        ...

    def subscribe_durable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when entries may have become durable (the store commits in
        the background, and only durable entries are pending); returns the unsubscribe."""
        ...


class Skip(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a deliver or build function: this entry needs no message (mark it delivered)."""


class NotYet(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a build function asked ahead: this entry's message depends on the answer
    to an entry before it; build it again when its turn comes."""


@dataclass(frozen=True, slots=True)
class OutboxCall:
    """The CALL an outbox entry becomes, and what its answer means (run once the answer
    arrived and passed its schema, before the next entry is sent)."""

    action: str
    payload: dict[str, Any]
    on_answer: Callable[[dict[str, Any]], None] | None = None


Deliver = Callable[[OutboxEntry], Awaitable[None]]
#: (entry, ahead) -> its CALL; raises Skip, or NotYet (only when `ahead` is True).
Build = Callable[[OutboxEntry, bool], OutboxCall]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """How entries become CALLs on one connection: the sender sends them through
    `endpoint` itself and prepares the next while the CSMS answers (module docstring)."""

    endpoint: RpcEndpoint
    build: Build


@dataclass(frozen=True, slots=True)
class _Ready:
    """An entry whose CALL is validated and serialized, waiting for its turn (or, with
    `in_flight`, already sent from the delivery of the answer before it)."""

    entry: OutboxEntry
    call: PreparedCall
    on_answer: Callable[[dict[str, Any]], None] | None
    in_flight: CallInFlight | None = None


class OutboxSender:
    """Drains the outbox over one connection while it lasts."""

    def __init__(
        self,
        store: OutboxStore,
        deliver: Deliver | Pipeline,
        *,
        clock: Clock,
        attempts: Callable[[], int],
        retry_interval_s: Callable[[], float],
        on_settled: Callable[[OutboxEntry, bool], None] | None = None,
    ) -> None:
        """`deliver` sends one entry and applies its answer (raising as
        RpcEndpoint.call does, or Skip), or is a Pipeline the sender drives itself."""
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._attempts = attempts
        self._retry_interval_s = retry_interval_s
        self._on_settled = on_settled
        self._wake = Signal()
        self._unmarked: OutboxEntry | None = None  # answered, its mark not yet written
        self.delivered = 0

    def wake(self) -> None:
        """Something was enqueued: look again."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver pending entries until the connection is lost (returns then)."""
        after = 0  # the seq of the entry settled last: the next one is above it
        ready: _Ready | None = None  # the next entry, prepared while the last was answered
        try:
            while True:
                if ready is not None:
                    entry = ready.entry
                else:
                    self._mark_unmarked()
                    self._wake.clear()
                    pending = self._store.next_pending(after)
                    if pending is None:
                        await self._wait_for_entries(after)
                        continue
                    entry = pending
                try:
                    if isinstance(self._deliver, Pipeline):
                        ready = await self._exchange(self._deliver, entry, ready)
                    else:
                        await self._deliver(entry)
                except Skip:
                    ready = None
                except ConnectionLost:
                    return
                except (RpcError, CallTimeout) as exc:
                    ready = None
                    self._mark_unmarked()
                    if await self._failed(entry, exc):
                        after = entry.seq
                    continue
                self._mark_unmarked()  # (the pipeline marked it already, in the wait)
                self._unmarked = entry
                after = entry.seq
        finally:
            if ready is not None and ready.in_flight is not None:
                ready.in_flight.abandon()  # sent, but its answer will not be awaited
            unmarked = self._unmarked
            try:
                self._mark_unmarked()
            except Exception:  # the store is closing: the entry is simply sent again
                seq = unmarked.seq if unmarked is not None else None
                log.exception("outbox: the delivery of entry %s not marked", seq)

    async def _exchange(
        self, pipeline: Pipeline, entry: OutboxEntry, ready: _Ready | None
    ) -> _Ready | None:
        """Send `entry`'s CALL (prepared ahead, or now; or find it sent already) and
        apply its answer; while the CSMS answers, mark the entry answered before it and
        prepare the next one, chained to this one's answer, and return it (None: none
        yet, or it must wait for this answer). Raises Skip, ValueError (an invalid
        message: our bug), and as RpcEndpoint.call does."""
        if ready is None:
            ready = self._prepare(pipeline, entry, ahead=False)
        in_flight = ready.in_flight
        if in_flight is None:
            in_flight = await pipeline.endpoint.start(ready.call)
        # The CALL is on the wire: what follows overlaps the CSMS's answer.
        self._mark_unmarked()
        following = self._look_ahead(pipeline, entry)
        chained = following is not None and in_flight.then_send(following.call, ready.on_answer)
        result = await in_flight.answer()
        if not chained:
            if ready.on_answer is not None:
                ready.on_answer(result)
            return following
        assert following is not None
        successor = in_flight.successor
        if successor is None:
            return following
        # (not dataclasses.replace: it inspects the fields each time, once per message)
        return _Ready(following.entry, following.call, following.on_answer, successor)

    def _prepare(self, pipeline: Pipeline, entry: OutboxEntry, *, ahead: bool) -> _Ready:
        """Build, validate and serialize `entry`'s CALL; raises Skip, NotYet (ahead only),
        ValueError."""
        call = pipeline.build(entry, ahead)
        prepared = pipeline.endpoint.prepare(call.action, call.payload)
        return _Ready(entry, prepared, call.on_answer)

    def _look_ahead(self, pipeline: Pipeline, entry: OutboxEntry) -> _Ready | None:
        """The durable pending entry after `entry`, prepared; None if there is none yet or
        it cannot be prepared before `entry`'s answer."""
        following = self._store.next_pending(entry.seq)
        if following is None:
            return None
        try:
            return self._prepare(pipeline, following, ahead=True)
        except (Skip, NotYet):
            return None
        except Exception:  # built again in its turn, where the error is raised and handled
            log.debug("outbox: entry %s not prepared ahead", following.seq, exc_info=True)
            return None

    def _mark_unmarked(self) -> None:
        """Mark the entry answered last delivered, if that is not done yet."""
        entry, self._unmarked = self._unmarked, None
        if entry is None:
            return
        self._store.mark_delivered(entry.seq)
        self.delivered += 1
        if self._on_settled is not None:
            self._on_settled(entry, True)

    async def _wait_for_entries(self, after: int) -> None:
        """Return once an entry may be pending after `after` (a commit, or `wake`).

        The store's commit notifications are subscribed only while waiting: during a
        replay each delivery mark commits, and a wake-up per commit would cost the event
        loop a cycle per message for nothing.
        """
        unsubscribe = self._store.subscribe_durable(self.wake)
        try:
            if self._store.next_pending(after) is None:  # nothing committed meanwhile
                await self._wake.wait()
        finally:
            unsubscribe()

    async def _failed(self, entry: OutboxEntry, exc: Exception) -> bool:
        """Count a failed attempt; give the entry up (True) or wait to retry it (False)."""
        attempts = self._store.note_attempt(entry.seq)
        if attempts >= self._attempts():
            log.error(
                "outbox: giving up entry %s (%s) after %d attempts: %s",
                entry.seq,
                entry.kind,
                attempts,
                exc,
            )
            self._store.mark_dropped(entry.seq, str(exc))
            if self._on_settled is not None:
                self._on_settled(entry, False)
            return True
        delay = self._retry_interval_s() * attempts
        log.warning(
            "outbox: entry %s (%s) failed (%s); attempt %d, retry in %.0fs",
            entry.seq,
            entry.kind,
            exc,
            attempts,
            delay,
        )
        await self._clock.sleep(delay)
        return False
