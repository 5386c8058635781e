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

The sender asks the store for the entry after the one it settled last, so the store can
hand out entries it read ahead in one query (agent/store/readahead.py).

A CALLERROR, an invalid response or a timeout counts as a failed attempt: the entry is
retried after attempt x retry interval, and given up (kept, marked dropped) after the
configured number of attempts (OCPP 1.6 section 4.7; 2.0.1 E13). A lost connection is
not an attempt: the entry simply waits for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from agent.core.ports import Clock, OutboxEntry
from agent.ocpp.rpc import CallTimeout, ConnectionLost, RpcError

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
    """Raised by a deliver function: this entry needs no message (mark it delivered)."""


Deliver = Callable[[OutboxEntry], Awaitable[None]]


class OutboxSender:
    """Drains the outbox over one connection while it lasts."""

    def __init__(
        self,
        store: OutboxStore,
        deliver: Deliver,
        *,
        clock: Clock,
        attempts: Callable[[], int],
        retry_interval_s: Callable[[], float],
        on_settled: Callable[[OutboxEntry, bool], None] | None = None,
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._attempts = attempts
        self._retry_interval_s = retry_interval_s
        self._on_settled = on_settled
        self._wake = asyncio.Event()
        self.delivered = 0

    def wake(self) -> None:
        """Something was enqueued: look again."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver pending entries until the connection is lost (returns then)."""
        after = 0  # the seq of the entry settled last: the next one is above it
        while True:
            self._wake.clear()
            entry = self._store.next_pending(after)
            if entry is None:
                await self._wait_for_entries(after)
                continue
            try:
                await self._deliver(entry)
            except Skip:
                pass
            except ConnectionLost:
                return
            except (RpcError, CallTimeout) as exc:
                if await self._failed(entry, exc):
                    after = entry.seq
                continue
            self._store.mark_delivered(entry.seq)
            after = entry.seq
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
