"""The store's background writer and what it does when the disk refuses writes.

Real SQLite throughout: a full disk is SQLITE_FULL for real (`PRAGMA max_page_count`
caps the file at its current size, so any write that needs a new page fails), a
read-only store is SQLITE_READONLY for real (`PRAGMA query_only` on the writer's
connection; chmod would not stop root). Each case runs on the three ways a store
commits: on its writer thread (file, the default), on the caller's thread (file,
`background=False`), and in memory.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.ports import StopReason, TxEventKind, TxRecord
from agent.store import Store, StoreBacklogFull
from drivers.types import TokenType
from tests.fakes import FakeClock

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
#: A STARTED payload larger than a page: it needs new pages, which a full disk refuses.
BIG = {"note": "x" * 6000}

MODES = ("background", "inline-file", "memory")


def open_store(mode: str, tmp_path: Path, **kwargs: int) -> Store:
    """A store committing the way `mode` says."""
    if mode == "memory":
        return Store(":memory:", **kwargs)
    return Store(tmp_path / "agent.db", background=mode == "background", **kwargs)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(mode: str, tmp_path: Path) -> Iterator[Store]:
    with open_store(mode, tmp_path) as s:
        yield s


def fill_disk(store: Store) -> None:
    """The database file may not grow any more (SQLITE_FULL on a new page)."""
    store.on_writer(lambda conn: conn.execute("PRAGMA max_page_count = 1"))


def free_disk(store: Store) -> None:
    """Space returns."""
    store.on_writer(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))


def make_read_only(store: Store, read_only: bool = True) -> None:
    """The writer's connection refuses every write (SQLITE_READONLY) until undone."""
    store.on_writer(lambda conn: conn.execute(f"PRAGMA query_only = {int(read_only)}"))


def begin(store: Store, *, evse_id: int = 1, details: dict[str, str] | None = None) -> TxRecord:
    return store.begin_transaction(
        evse_id=evse_id,
        connector_id=1,
        id_token="TAG-1",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=100.0,
        details=details,
    )


def sample(store: Store, local_id: int, energy_wh: float, *, enqueue: bool = True) -> None:
    store.record_meter(
        local_id,
        at=T0 + timedelta(seconds=energy_wh),
        energy_wh=energy_wh,
        payload={"energy_wh": energy_wh},
        enqueue=enqueue,
    )


def end(store: Store, local_id: int) -> TxRecord:
    return store.end_transaction(
        local_id,
        stopped_at=T0 + timedelta(hours=1),
        meter_stop_wh=900.0,
        reason=StopReason.LOCAL,
        stop_id_token=None,
        payload={"energy_wh": 900.0},
    )


def kinds(store: Store, local_id: int) -> list[TxEventKind]:
    return [entry.kind for entry in store.tx_entries(local_id)]


def durable_kinds(path: Path, local_id: int) -> list[str]:
    """The outbox entries of a transaction as a fresh connection reads them from the file."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT kind FROM outbox WHERE tx_local_id = ? ORDER BY seq", (local_id,)
        ).fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


# -- a full disk ------------------------------------------------------------------------


def test_writes_a_full_disk_refuses_are_kept_in_order_and_written_when_space_returns(
    store: Store,
) -> None:
    running = begin(store)
    assert store.flush()
    fill_disk(store)

    waiting = begin(store, evse_id=2, details=BIG)  # needs new pages: SQLITE_FULL
    sample(store, running.local_id, 250.0)
    end(store, running.local_id)
    store.set_setting("HeartbeatInterval", "60")

    assert not store.flush()
    health = store.health
    assert not health.writable and health.error is not None
    assert health.error.startswith("SQLITE_FULL")
    assert health.backlog == 4 and health.accepting_new
    # Everything acknowledged reads back at once, from memory.
    assert [tx.local_id for tx in store.open_transactions()] == [waiting.local_id]
    assert store.get_transaction(running.local_id).meter_stop_wh == 900.0
    assert kinds(store, running.local_id) == [
        TxEventKind.STARTED,
        TxEventKind.UPDATED,
        TxEventKind.ENDED,
    ]
    entries = store.tx_entries(running.local_id)  # the outline and reads by seq: alike
    assert [o.seq for o in store.tx_outline(running.local_id)] == [e.seq for e in entries]
    assert store.outbox_entries([e.seq for e in entries]) == entries
    assert store.get_setting("HeartbeatInterval") == "60"
    assert store.pending_count() == 4

    free_disk(store)
    store.retry_now()
    assert store.flush()
    assert store.health.writable and store.health.backlog == 0
    assert [e.kind for e in store.tx_entries(waiting.local_id)] == [TxEventKind.STARTED]
    seqs = [e.seq for i in (running.local_id, waiting.local_id) for e in store.tx_entries(i)]
    assert sorted(seqs) == [seqs[0], seqs[3], seqs[1], seqs[2]]  # in the order written


def test_what_was_written_after_a_full_disk_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        running = begin(store)
        fill_disk(store)
        sample(store, running.local_id, 200.0, enqueue=False)
        late = begin(store, evse_id=2, details=BIG)
        end(store, running.local_id)
        assert not store.flush()
        assert durable_kinds(path, late.local_id) == []
        free_disk(store)
        store.retry_now()
        assert store.flush()
    assert durable_kinds(path, running.local_id) == ["started", "ended"]
    assert durable_kinds(path, late.local_id) == ["started"]
    with Store(path) as store:
        assert store.get_transaction(running.local_id).stopped_at is not None
        assert [tx.local_id for tx in store.open_transactions()] == [late.local_id]


def test_close_makes_a_last_attempt_at_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    store = Store(path)
    fill_disk(store)
    tx = begin(store, details=BIG)
    assert not store.flush() and not store.health.writable
    free_disk(store)  # no retry before the agent stops
    store.close()
    assert durable_kinds(path, tx.local_id) == ["started"]


# -- a read-only store ------------------------------------------------------------------


def test_a_read_only_store_is_reported_and_recovers_without_losing_a_write(
    store: Store,
) -> None:
    tx = begin(store)
    assert store.flush()
    make_read_only(store)
    sample(store, tx.local_id, 300.0)
    store.record_event(
        tx.local_id,
        at=T0 + timedelta(minutes=1),
        payload={"trigger": "authorized"},
        id_token="LATE",
        token_type=TokenType.ISO14443,
    )
    end(store, tx.local_id)
    assert not store.flush()
    assert store.health.error is not None and "SQLITE_READONLY" in store.health.error
    assert store.get_transaction(tx.local_id).id_token == "LATE"

    make_read_only(store, False)
    store.retry_now()
    assert store.flush()
    assert kinds(store, tx.local_id) == [
        TxEventKind.STARTED,
        TxEventKind.UPDATED,
        TxEventKind.UPDATED,
        TxEventKind.ENDED,
    ]


# -- the outbox only hands out what is durable -------------------------------------------


def test_outbox_hands_out_only_durable_entries_and_never_one_twice(store: Store) -> None:
    tx = begin(store)
    assert store.flush()
    make_read_only(store)
    sample(store, tx.local_id, 400.0)  # accepted, not durable
    started = store.next_pending()
    assert started is not None and started.kind is TxEventKind.STARTED
    store.mark_delivered(started.seq)  # the CSMS answered; the mark itself waits too
    assert store.next_pending() is None  # not the STARTED again, not the sample yet
    assert store.note_attempt(started.seq) == 1
    assert store.note_attempt(started.seq) == 2
    assert store.pending_count() == 1

    make_read_only(store, False)
    store.retry_now()
    assert store.flush()
    updated = store.next_pending()
    assert updated is not None and updated.kind is TxEventKind.UPDATED
    assert [e.attempts for e in store.tx_entries(tx.local_id)] == [2, 0]
    assert store.entry_position(tx.local_id, updated.seq) == 1


# -- the backlog's bound -------------------------------------------------------------------


def test_a_full_backlog_refuses_new_transactions_but_keeps_the_running_one(
    mode: str, tmp_path: Path
) -> None:
    with open_store(mode, tmp_path, max_backlog=3) as store:
        running = begin(store)
        assert store.flush()
        make_read_only(store)
        sample(store, running.local_id, 200.0)
        second = begin(store, evse_id=2)
        sample(store, running.local_id, 300.0)
        assert not store.accepting_new_transactions and not store.health.accepting_new

        with pytest.raises(StoreBacklogFull):
            begin(store, evse_id=3)
        sample(store, running.local_id, 400.0)  # kept as the register, no message
        assert store.get_transaction(running.local_id).last_meter_wh == 400.0
        assert kinds(store, running.local_id).count(TxEventKind.UPDATED) == 2
        end(store, running.local_id)  # an end is always accepted
        end(store, second.local_id)

        make_read_only(store, False)
        store.retry_now()
        assert store.flush()
        assert store.accepting_new_transactions
        assert begin(store, evse_id=3).local_id == second.local_id + 1
        assert kinds(store, running.local_id)[-1] is TxEventKind.ENDED


def test_register_updates_fold_while_the_disk_refuses_writes(store: Store) -> None:
    tx = begin(store)
    assert store.flush()
    make_read_only(store)
    for energy_wh in (110.0, 120.0, 130.0, 140.0):
        sample(store, tx.local_id, energy_wh, enqueue=False)
    assert store.health.backlog == 1
    assert store.get_transaction(tx.local_id).last_meter_wh == 140.0
    make_read_only(store, False)
    store.retry_now()
    assert store.flush()
    assert store.get_transaction(tx.local_id).last_meter_wh == 140.0


def test_delivery_marks_join_one_queued_write_and_all_reach_the_disk(
    store: Store, mode: str, tmp_path: Path
) -> None:
    """Marks queued one after another join the queued mark write (one write in the
    backlog, whatever their number); readers see every mark at once; a write of another
    kind between them keeps its place; all of it reaches the disk once it accepts writes."""
    tx = begin(store)
    for energy_wh in (110.0, 120.0, 130.0, 140.0):
        sample(store, tx.local_id, energy_wh)
    assert store.flush()
    seqs = [entry.seq for entry in store.tx_entries(tx.local_id)]
    make_read_only(store)
    for seq in seqs[:3]:
        store.mark_delivered(seq)
    assert store.health.backlog == 1  # three marks, one write
    end(store, tx.local_id)  # another kind of write comes between
    for seq in seqs[3:]:
        store.mark_delivered(seq)
    assert store.health.backlog == 3  # marks, the end, marks
    assert store.pending_count(tx.local_id) == 1  # the end's entry, not yet durable
    make_read_only(store, False)
    store.retry_now()
    assert store.flush()
    assert store.health.backlog == 0
    if mode != "memory":
        conn = sqlite3.connect(tmp_path / "agent.db")
        try:
            rows = conn.execute(
                "SELECT kind, state FROM outbox WHERE tx_local_id = ? ORDER BY seq",
                (tx.local_id,),
            ).fetchall()
        finally:
            conn.close()
        assert rows == [("started", "delivered")] + [("updated", "delivered")] * 4 + [
            ("ended", "pending")
        ]


# -- the writer thread --------------------------------------------------------------------


def test_a_write_returns_while_the_disk_is_busy_and_becomes_durable_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        tx = begin(store)
        assert store.flush()
        holding, release = threading.Event(), threading.Event()

        def busy(_conn: sqlite3.Connection) -> None:
            holding.set()
            release.wait(10)

        blocker = threading.Thread(target=store.on_writer, args=(busy,))
        blocker.start()
        try:
            assert holding.wait(10)
            end(store, tx.local_id)  # returns although nothing can be written now
            assert store.get_transaction(tx.local_id).stopped_at is not None
            assert durable_kinds(path, tx.local_id) == ["started"]
            assert store.pending_count(tx.local_id) == 2
        finally:
            release.set()
            blocker.join()
        assert store.flush()
        assert durable_kinds(path, tx.local_id) == ["started", "ended"]


async def test_listeners_hear_commits_and_health_changes_on_the_event_loop(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "agent.db") as store:
        loop_thread = threading.get_ident()
        heard: list[tuple[str, bool, int]] = []
        changed = asyncio.Event()

        def on(kind: str) -> Callable[[], None]:
            def callback() -> None:
                heard.append((kind, store.health.writable, threading.get_ident()))
                changed.set()

            return callback

        store.subscribe_durable(on("durable"))
        store.subscribe_health(on("health"))
        tx = begin(store)
        assert await store.wait_durable()
        await asyncio.wait_for(changed.wait(), 5)
        assert heard[0] == ("durable", True, loop_thread)

        make_read_only(store)
        heard.clear()
        changed.clear()
        sample(store, tx.local_id, 500.0)
        assert not await store.wait_durable()
        await asyncio.wait_for(changed.wait(), 5)
        assert heard == [("health", False, loop_thread)]

        make_read_only(store, False)
        heard.clear()
        store.retry_now()
        while len(heard) < 2:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 5)
        assert sorted(heard) == [("durable", True, loop_thread), ("health", True, loop_thread)]
        assert await store.wait_durable()


def told_of_health(store: Store) -> asyncio.Event:
    """An event set when the store's health changes. Subscribed after the retry loop's
    listener, it is set after that one (listeners are called in order): once it is set,
    the retry loop has been told too."""
    changed = asyncio.Event()
    store.subscribe_health(changed.set)
    return changed


async def asleep_on(clock: FakeClock) -> None:
    """Let the event loop run until a task sleeps on `clock` (a few turns at most)."""
    for _ in range(100):
        if clock.deadlines():
            return
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time
    raise AssertionError("nothing sleeps on the clock")


async def test_retries_are_driven_by_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store(tmp_path / "agent.db") as store:
        retrying = asyncio.create_task(store.retry_forever(clock, interval_s=10.0))
        try:
            await asyncio.sleep(0)  # a turn: the retry loop subscribes first
            failed = told_of_health(store)
            make_read_only(store)
            tx = begin(store)
            assert not await store.wait_durable()
            await asyncio.wait_for(failed.wait(), 5)
            await asleep_on(clock)  # the failure woke the retry loop
            assert clock.deadlines() == [clock.now() + timedelta(seconds=10)]
            make_read_only(store, False)
            clock.advance(9.0)
            await asyncio.sleep(0)
            assert store.health.backlog == 1  # nothing retries before the clock says so
            clock.advance(1.0)
            done = asyncio.Event()
            store.subscribe_durable(done.set)
            await asyncio.wait_for(done.wait(), 5)
            assert store.health.writable and store.health.backlog == 0
            assert store.get_transaction(tx.local_id).stopped_at is None
        finally:
            retrying.cancel()
            await asyncio.gather(retrying, return_exceptions=True)


async def test_the_retry_loop_sleeps_only_while_writes_fail(store: Store) -> None:
    """A healthy store's retry loop waits for a failure instead of waking every 10 s; a
    failure starts the clock, a successful retry stops it again."""
    clock = FakeClock()
    retrying = asyncio.create_task(store.retry_forever(clock, interval_s=10.0))
    try:
        tx = begin(store)
        sample(store, tx.local_id, 200.0)
        assert await store.wait_durable()
        for _ in range(10):
            await asyncio.sleep(0)  # turns of the loop: the task has waited all along
        assert clock.deadlines() == []

        failed = told_of_health(store)
        fill_disk(store)
        begin(store, evse_id=2, details=BIG)
        await asyncio.wait_for(failed.wait(), 5)  # the retry loop is told with us
        await asleep_on(clock)
        clock.advance(10.0)  # a retry that fails too: the loop sleeps again
        await asleep_on(clock)
        assert not store.flush(5)  # (that retry has been tried and has failed)
        assert not store.health.writable

        free_disk(store)
        clock.advance(10.0)
        done = asyncio.Event()
        store.subscribe_health(done.set)
        await asyncio.wait_for(done.wait(), 5)
        assert store.health.writable and store.health.backlog == 0
        for _ in range(10):
            await asyncio.sleep(0)
        assert clock.deadlines() == []  # healthy again: no timer left
    finally:
        retrying.cancel()
        await asyncio.gather(retrying, return_exceptions=True)
