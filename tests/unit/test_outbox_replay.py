"""The outbox replay path: entries read ahead in batches, marks that share an fsync, and
the sender that walks the queue in order.

Real SQLite stores on the three ways a store commits (writer thread, caller's thread,
memory). The sender is driven with a deliver function standing for the CSMS (what it
was handed is what the CSMS received) and a FakeClock for its retry waits. What is
checked is what the CSMS received (each entry once, in order, with its 2.0.1 seqNo
position) and what the store file holds afterwards.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.ports import OutboxEntry, StopReason, TxEventKind, TxRecord
from agent.ocpp.outbox import OutboxSender, Skip
from agent.ocpp.rpc import ConnectionLost, RpcError
from agent.store import MemoryStore, Store
from agent.store.readahead import READ_AHEAD_ENTRIES
from drivers.types import TokenType
from tests.fakes import FakeClock

T0 = datetime(2025, 2, 1, 6, 0, tzinfo=UTC)
MODES = ("background", "inline-file", "memory", "python")  # python: MemoryStore (fleet mode)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(mode: str, tmp_path: Path) -> Iterator[Store]:
    if mode == "memory":
        opened = Store(":memory:")
    elif mode == "python":
        opened = MemoryStore()  # type: ignore[assignment]  # the same contract
    else:
        opened = Store(tmp_path / "agent.db", background=mode == "background")
    with opened as s:
        yield s


def transaction(store: Store, samples: int, *, evse_id: int = 1) -> TxRecord:
    """A whole transaction in the outbox: start, `samples` meter samples, end."""
    tx = store.begin_transaction(
        evse_id=evse_id,
        connector_id=1,
        id_token="TAG",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=0.0,
    )
    for n in range(samples):
        at = T0 + timedelta(minutes=n + 1)
        store.record_meter(tx.local_id, at=at, energy_wh=n + 1.0, payload={"n": n}, enqueue=True)
    store.end_transaction(
        tx.local_id,
        stopped_at=T0 + timedelta(hours=5),
        meter_stop_wh=samples + 1.0,
        reason=StopReason.LOCAL,
        stop_id_token=None,
        payload={"n": samples},
    )
    return tx


def file_states(path: Path) -> dict[str, int]:
    """How many outbox rows of each state the file holds (what survived)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
    finally:
        conn.close()
    return {str(state): int(count) for state, count in rows}


# -- the store's side: read ahead, parse once --------------------------------------------


def test_a_long_queue_is_handed_out_once_in_order_with_each_entrys_seqno(store: Store) -> None:
    # Two transactions interleaved over more than two read-ahead batches.
    a = transaction(store, 150)
    b = transaction(store, 150, evse_id=2)
    assert store.flush(10)
    expected = store.tx_entries(a.local_id) + store.tx_entries(b.local_id)
    sent: list[tuple[int, int]] = []  # (seq, seqNo)
    after = 0
    while (entry := store.next_pending(after)) is not None:
        sent.append((entry.seq, store.entry_position(entry.tx_local_id, entry.seq)))
        store.mark_delivered(entry.seq)
        after = entry.seq

    assert len(expected) > 2 * READ_AHEAD_ENTRIES
    assert [seq for seq, _ in sent] == [e.seq for e in expected]
    positions = {e.seq: i for tx in (a, b) for i, e in enumerate(store.tx_entries(tx.local_id))}
    assert all(position == positions[seq] for seq, position in sent)
    assert store.pending_count() == 0


def test_an_entry_settled_after_it_was_read_ahead_is_not_handed_out_again(store: Store) -> None:
    tx = transaction(store, 5)
    assert store.flush(10)
    first = store.next_pending()  # reads the whole transaction ahead
    assert first is not None
    started, second, third, *_ = store.tx_entries(tx.local_id)
    store.mark_delivered(started.seq)
    store.mark_dropped(second.seq, "refused")

    assert store.next_pending() == third
    assert store.next_pending(after_seq=third.seq) is not None
    assert store.next_pending() == third  # asked from below again: still the first pending


def test_attempts_counted_after_the_read_ahead_are_seen_and_kept(store: Store) -> None:
    tx = transaction(store, 2)
    assert store.flush(10)
    entry = store.next_pending()
    assert entry is not None
    assert store.note_attempt(entry.seq) == 1
    assert store.note_attempt(entry.seq) == 2
    again = store.next_pending()
    assert again is not None and again.attempts == 2
    store.mark_delivered(entry.seq)
    assert store.flush(10)
    assert store.tx_entries(tx.local_id)[0].attempts == 2


def test_entries_durable_after_the_queue_ran_dry_are_found(store: Store) -> None:
    tx = transaction(store, 0)
    assert store.flush(10)
    after = 0
    while (entry := store.next_pending(after)) is not None:
        store.mark_delivered(entry.seq)
        after = entry.seq
    late = transaction(store, 1)
    assert store.flush(10)

    found = store.next_pending(after)
    assert found is not None and (found.tx_local_id, found.kind) == (late.local_id, "started")
    assert tx.local_id != late.local_id


# -- delivery marks share an fsync -----------------------------------------------------------


async def test_delivery_marks_commit_by_themselves_a_few_per_fsync(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        transaction(store, 98)
        assert await store.wait_durable()
        commits = 0
        committed = asyncio.Event()

        def on_commit() -> None:
            nonlocal commits
            commits += 1
            committed.set()

        store.subscribe_durable(on_commit)
        after = 0
        while (entry := store.next_pending(after)) is not None:
            store.mark_delivered(entry.seq)
            after = entry.seq
        assert store.pending_count() == 0  # readers see the marks at once

        async with asyncio.timeout(5):  # nobody flushes: the writer commits them itself
            while True:
                committed.clear()
                if file_states(path) == {"delivered": 100}:
                    break
                await committed.wait()
        assert 1 <= commits <= 10  # not one fsync per mark


async def test_wait_durable_commits_pending_marks_at_once(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        transaction(store, 3)
        assert await store.wait_durable()
        entry = store.next_pending()
        assert entry is not None
        store.mark_delivered(entry.seq)
        assert await store.wait_durable()
        assert file_states(path) == {"delivered": 1, "pending": 4}


# -- the sender ------------------------------------------------------------------------------


class Csms:
    """Stands for the CSMS behind the sender's deliver function: records what it got,
    refuses the entries it is told to, and can drop the connection."""

    def __init__(self) -> None:
        self.received: list[OutboxEntry] = []
        self.refuse: dict[int, int] = {}  # seq -> how many more times to refuse it
        self.skip: set[int] = set()
        self.lose_connection_at: int | None = None
        self.got_one = asyncio.Event()

    async def deliver(self, entry: OutboxEntry) -> None:
        if entry.seq == self.lose_connection_at:
            raise ConnectionLost("gone")
        if entry.seq in self.skip:
            raise Skip
        self.got_one.set()
        self.received.append(entry)
        if self.refuse.get(entry.seq, 0) > 0:
            self.refuse[entry.seq] -= 1
            raise RpcError("InternalError", "refused")


def sender(store: Store, csms: Csms, clock: FakeClock, attempts: int = 3) -> OutboxSender:
    return OutboxSender(
        store, csms.deliver, clock=clock, attempts=lambda: attempts, retry_interval_s=lambda: 10.0
    )


async def test_the_sender_retries_a_refused_entry_before_any_later_one_then_gives_it_up(
    store: Store,
) -> None:
    tx = transaction(store, 2)
    assert store.flush(10)
    started, first, second, ended = store.tx_entries(tx.local_id)
    clock, csms = FakeClock(T0), Csms()
    csms.refuse = {first.seq: 1, second.seq: 5}
    run = asyncio.create_task(sender(store, csms, clock).run())
    try:
        for seconds in (10.0, 10.0, 20.0):  # retry waits: interval x attempt
            async with asyncio.timeout(5):
                while clock.deadlines() == []:  # noqa: ASYNC110 - one loop turn at a time
                    await asyncio.sleep(0)
            clock.advance(seconds)
        async with asyncio.timeout(5):
            while store.pending_count():
                csms.got_one.clear()
                await csms.got_one.wait()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)

    sent = [entry.seq for entry in csms.received]
    assert sent == [
        started.seq,
        first.seq,
        first.seq,
        second.seq,
        second.seq,
        second.seq,
        ended.seq,
    ]
    states = {e.seq: e.attempts for e in store.tx_entries(tx.local_id)}
    assert states[second.seq] == 3
    assert store.pending_count() == 0


async def test_the_sender_stops_at_a_lost_connection_and_the_next_one_resumes_there(
    store: Store,
) -> None:
    tx = transaction(store, 3)
    assert store.flush(10)
    entries = store.tx_entries(tx.local_id)
    clock, csms = FakeClock(T0), Csms()
    csms.lose_connection_at = entries[2].seq
    csms.skip = {entries[1].seq}

    await asyncio.wait_for(sender(store, csms, clock).run(), 5)  # returns on the loss
    assert [e.seq for e in csms.received] == [entries[0].seq]
    assert store.pending_count(tx.local_id) == 3  # the skipped one counts as settled

    csms.lose_connection_at = None
    run = asyncio.create_task(sender(store, csms, clock).run())
    try:
        async with asyncio.timeout(5):
            while store.pending_count():
                csms.got_one.clear()
                await csms.got_one.wait()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert [e.seq for e in csms.received] == [entries[i].seq for i in (0, 2, 3, 4)]


async def test_the_sender_wakes_for_an_entry_that_becomes_durable_while_it_waits(
    store: Store,
) -> None:
    clock, csms = FakeClock(T0), Csms()
    run = asyncio.create_task(sender(store, csms, clock).run())
    try:
        await asyncio.sleep(0)  # the sender finds nothing and waits
        tx = transaction(store, 0)
        async with asyncio.timeout(5):
            while len(csms.received) < 2:
                csms.got_one.clear()
                await csms.got_one.wait()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert [(e.tx_local_id, e.kind) for e in csms.received] == [
        (tx.local_id, TxEventKind.STARTED),
        (tx.local_id, TxEventKind.ENDED),
    ]
