"""The store's writer: commits queued writes in order, off the event loop, and keeps what
it cannot write yet.

Why: a SQLite commit with `synchronous=FULL` waits for an fsync (about 3 ms on an SSD,
tens of ms on an SD card). Done on the event loop it delays whatever else waits there,
the contactor commands included (bench/README.md). Here the caller queues a write (a
closure over plain values) and returns at once; a writer thread runs the queue in order,
several writes per SQLite transaction (group commit), and reports each commit.

Durability contract: a write is *durable* once its batch has committed. Nothing reads
from the queue: the store keeps what is queued in an overlay for its readers, and the
outbox only sends entries that are durable (they are read from the database). So what
the CSMS has seen has always been committed with an fsync first.

Failures: when a batch fails (disk full, a read-only database, an I/O error), it is
rolled back and kept, in order, with everything queued after it: nothing is lost while
the process lives. The writer then waits for `retry_now()` (clock-driven, by
`retry_forever`) instead of hammering the disk. `health` says whether the last attempt
succeeded and whether the queue has reached its bound (`accepting_new`: the store then
refuses new transactions, see sqlite.py).

Lazy writes: a write that nobody waits for (a delivery mark: the outbox sender goes on
to the next entry at once) may be marked `lazy`. The writer thread does not start a
commit for lazy writes alone before `LAZY_WINDOW_S` has passed, so that during an outbox
replay one fsync carries a hundred marks instead of one each; any other write, `flush`,
`wait_durable` and `close` take them along at once. This is the writer thread's group
commit window, not the agent's time: nothing is scheduled by it.

Joined writes: a write whose `apply` is `Rows` (one statement over many values) joins
the queued tail write when that one is `Rows` of the same statement, not yet started and
as lazy: its values are appended and the statement runs once for all of them. During a
replay a hundred delivery marks cost the writer thread one statement instead of a
hundred, and the event loop that many fewer turns of the interpreter lock. Order is
kept: only the tail is joined, so nothing queued after it runs before the joined values.

Calls: the sibling stores (local list, cache) hand the writer whole transactions of
their own (`call`), which run between batches on the writer's connection and report
their result or failure to the caller through a future: a full disk refuses a local
list to the CSMS instead of queueing it. They are neither kept nor retried.

Modes: `threaded=True` runs the queue on a writer thread (file databases);
`threaded=False` runs it on the caller's thread at once (`:memory:` databases, which a
second thread cannot share, and callers that want synchronous commits). Both share the
queue, the failure handling and the notifications.

This module must not: know the journal's tables (writes are opaque closures), read a
clock (retries are driven by the caller's Clock), or call listeners on the writer
thread (they are handed to the event loop they subscribed from).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from agent.core.ports import Clock
from agent.core.tasks import sleep_unless

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Writes the queue may hold before new transactions are refused.
DEFAULT_MAX_BACKLOG: Final = 2000
#: How often a failing store is tried again.
RETRY_INTERVAL_S: Final = 10.0
#: Most writes committed in one SQLite transaction.
BATCH_OPS: Final = 256
#: How long lazy writes alone may wait for company before the writer commits them.
LAZY_WINDOW_S: Final = 0.05


@dataclass(slots=True)
class Rows:
    """A write that runs one statement once for all its values (plain JSON values), given
    as its one parameter, a JSON array (read with `json_each(?)`); queued writes of the
    same statement join it (module docstring, "Joined writes"). SQLite does the values in
    one step without the interpreter lock, where `executemany` takes the lock back for
    every row, and the event loop's thread, waking meanwhile, waits for it."""

    sql: str
    rows: list[Any]

    def __call__(self, conn: sqlite3.Connection) -> None:
        conn.execute(self.sql, (json.dumps(self.rows),))


@dataclass(slots=True)
class WriteOp:
    """One queued write: `apply` runs its statements inside the writer's transaction.

    `apply` must be idempotent (absolute values, inserts that ignore their own earlier
    copy): a commit that reported an error may still have reached the disk, and the batch
    is then run again. `keys` name what the write touches (for the store's overlay). A
    `fold` write has one key and absolute values: it replaces the queued, not yet
    started `fold` write of the same key when no other write on that key came between.
    A `lazy` write may wait up to LAZY_WINDOW_S for others to share its commit. A `Rows`
    write may join the queued tail (module docstring); its keys then join that write's.
    """

    apply: Callable[[sqlite3.Connection], None]
    keys: Sequence[Hashable] = ()
    fold: bool = False
    lazy: bool = False
    index: int = field(default=0, init=False)


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store persists what it is given, as of its last write attempt."""

    writable: bool  # the last attempt committed (or none has failed yet)
    backlog: int  # writes accepted but not yet durable
    accepting_new: bool  # the backlog is below its bound: new transactions may start
    error: str | None = None  # why the last attempt failed, e.g. "SQLITE_FULL: ..."


class StoreBacklogFull(Exception):  # noqa: N818 - the condition's name reads best
    """The store cannot persist and its in-memory backlog is full: nothing new may start."""


def describe(exc: BaseException) -> str:
    """A short text for a failed write: SQLite's error name and message."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


class Listener:
    """A callback and the event loop it must run on (None: call it where we are)."""

    __slots__ = ("callback", "loop")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def fire(self) -> None:
        """Call the callback on its loop (thread-safely); log its failure."""
        loop = self.loop
        if loop is None:
            self._call()
            return
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            if running is loop:
                loop.call_soon(self._call)
            else:
                loop.call_soon_threadsafe(self._call)

    def _call(self) -> None:
        try:
            self.callback()
        except Exception:
            log.exception("store listener %r failed", self.callback)


class JournalWriter:
    """An ordered queue of writes to one SQLite connection, committed in batches."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        threaded: bool,
        db_lock: threading.RLock,
        on_committed: Callable[[Sequence[WriteOp]], None],
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        name: str = "store-writer",
    ) -> None:
        """`db_lock` is held around every batch (other writers on the same database file
        take it too, so no SQLite busy wait happens); `on_committed` runs under `lock`
        right after a batch committed."""
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be >= 1, got {max_backlog}")
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._conn = conn
        self._db_lock = db_lock
        self._on_committed = on_committed
        self._max_backlog = max_backlog
        self._ops: deque[WriteOp] = deque()
        self._foldable: dict[Hashable, WriteOp] = {}  # by key: the queued `fold` write
        self._indexes = itertools.count(1)
        self._last_index = 0  # of the newest accepted write
        self._committed = 0  # index of the newest durable write
        self._inflight_upto = 0  # the batch being written ends here (0: none)
        self._attempts_started = 0
        self._attempts_done = 0
        self._writable = True
        self._error: str | None = None
        self._retry = False
        self._eager = 0  # queued writes that are not lazy
        self._hurry = False  # someone waits for durability: commit lazy writes now
        self._calls: deque[tuple[Callable[[sqlite3.Connection], Any], bool, Future[Any]]] = deque()
        self._stopping = False
        self._closed = False
        self._reported: tuple[bool, bool] = (True, True)
        self._durable_listeners: list[Listener] = []
        self._health_listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    # -- state -----------------------------------------------------------------------

    @property
    def threaded(self) -> bool:
        """Whether a writer thread commits (else the caller's thread does)."""
        return self._thread is not None

    @property
    def health(self) -> StoreHealth:
        """The store's health now."""
        with self.lock:
            return self._health()

    def _health(self) -> StoreHealth:
        backlog = len(self._ops)
        return StoreHealth(self._writable, backlog, backlog < self._max_backlog, self._error)

    @property
    def accepting_new(self) -> bool:
        """Whether the backlog is below its bound."""
        with self.lock:
            return len(self._ops) < self._max_backlog

    @property
    def idle(self) -> bool:
        """Whether every accepted write is durable."""
        with self.lock:
            return self._committed >= self._last_index

    # -- queueing --------------------------------------------------------------------

    def submit(self, op: WriteOp, record: Callable[[int], None]) -> None:
        """Queue `op` (or fold it into the queued write it replaces) and call
        `record(index)` under the lock, so the caller's overlay and the queue agree.

        Raises sqlite3.ProgrammingError once the writer is closed, ValueError for a
        `fold` write without exactly one key.
        """
        if op.fold and len(op.keys) != 1:
            raise ValueError("a fold write has exactly one key")
        with self._cond:
            if self._closed or self._stopping:
                raise sqlite3.ProgrammingError("Cannot operate on a closed store.")
            queued = self._foldable.get(op.keys[0]) if op.fold else None
            if queued is not None and queued.index > self._inflight_upto:
                queued.apply = op.apply  # the newer absolute values replace the older
                record(queued.index)
                return
            if self._join(op):
                record(self._ops[-1].index)
                return
            op.index = next(self._indexes)
            self._last_index = op.index
            self._ops.append(op)
            if not op.lazy:
                self._eager += 1
            for key in op.keys:  # a write in between ends the chance to fold
                self._foldable.pop(key, None)
            if op.fold:
                self._foldable[op.keys[0]] = op
            record(op.index)
            # A lazy write wakes the thread only to open its window (the first in line).
            wake = not op.lazy or len(self._ops) == 1
            if self._thread is not None and self._writable and wake:
                self._cond.notify_all()
            changed = (self._writable, len(self._ops) < self._max_backlog) != self._reported
        if self._thread is None and self._writable:
            self._drain()
        elif changed:  # (the usual case, nothing changed, costs no second lock)
            self._report_health()

    def _join(self, op: WriteOp) -> bool:
        """Append `op`'s rows to the queued tail if both are `Rows` of one statement, the
        tail has not started and is as lazy (under the lock); True if joined."""
        if not self._ops or not isinstance(op.apply, Rows) or op.fold:
            return False
        tail = self._ops[-1]
        rows = tail.apply
        if (
            not isinstance(rows, Rows)
            or rows.sql != op.apply.sql
            or tail.lazy != op.lazy
            or tail.fold
            or tail.index <= self._inflight_upto
        ):
            return False
        rows.rows.extend(op.apply.rows)
        if op.keys:
            if not isinstance(tail.keys, list):
                tail.keys = list(tail.keys)
            tail.keys.extend(op.keys)
            for key in op.keys:
                self._foldable.pop(key, None)
        return True

    # -- writing ---------------------------------------------------------------------

    def _attempt(self) -> bool | None:
        """Write the next batch: True if it committed, False if it failed, None if there
        was nothing to write."""
        with self._cond:
            if not self._ops:
                return None
            batch = list(itertools.islice(self._ops, BATCH_OPS))
            self._inflight_upto = batch[-1].index
            self._attempts_started += 1
        try:
            with self._db_lock:
                self._write(batch)
        except Exception as exc:
            with self._cond:
                self._inflight_upto = 0
                self._attempts_done += 1
                first = self._writable
                self._writable, self._error = False, describe(exc)
                backlog = len(self._ops)
                self._cond.notify_all()
            if first:
                log.error("store: writes fail (%s); %d kept in memory", describe(exc), backlog)
            else:
                log.warning("store: retry failed (%s); %d kept in memory", describe(exc), backlog)
            self._report_health()
            return False
        with self._cond:
            for _ in batch:
                done = self._ops.popleft()
                if not done.lazy:
                    self._eager -= 1
                if done.fold and self._foldable.get(done.keys[0]) is done:
                    del self._foldable[done.keys[0]]
            self._inflight_upto = 0
            self._committed = batch[-1].index
            self._attempts_done += 1
            recovered = not self._writable
            self._writable, self._error = True, None
            try:
                self._on_committed(batch)
            except Exception:
                log.exception("store: bookkeeping after a commit failed")
            backlog = len(self._ops)
            self._cond.notify_all()
        if recovered:
            log.info("store: writes succeed again; %d still queued", backlog)
        for listener in list(self._durable_listeners):
            listener.fire()
        self._report_health()
        return True

    def _write(self, batch: Sequence[WriteOp]) -> None:
        """Run `batch` in one write transaction; roll back and raise if any part fails."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                op.apply(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("store: rollback after a failed write failed")
            raise

    def _drain(self) -> bool:
        """Attempt batches until the queue is empty (True) or one fails (False)."""
        while True:
            result = self._attempt()
            if result is None:
                return True
            if not result:
                return False

    def _due(self) -> bool:
        """Whether queued writes may be attempted now (under the lock)."""
        return bool(self._ops) and (self._writable or self._retry)

    def _woken(self) -> bool:
        """Whether the writer thread has something to do now (under the lock)."""
        return self._stopping or bool(self._calls) or self._due()

    def _hurried(self) -> bool:
        """Whether lazy writes must not wait out their window (under the lock)."""
        return self._stopping or bool(self._calls) or self._retry or self._hurry or self._eager > 0

    def _run(self) -> None:
        """The writer thread: run calls, and write a batch when there is work and no
        failure holds it back; one batch per turn, so calls wait for one fsync at most."""
        while True:
            with self._cond:
                self._cond.wait_for(self._woken)
                if not self._hurried():  # lazy writes alone: let others join them
                    self._cond.wait_for(self._hurried, LAZY_WINDOW_S)
                calls = list(self._calls)
                self._calls.clear()
                write = self._due()
                final = self._stopping
                self._retry = False
                self._hurry = False
            for action, durable, future in calls:
                self._run_call(action, durable, future)
            if final:
                self._drain()
                return
            if write:
                self._attempt()

    def _hasten(self) -> None:
        """Commit lazy writes without waiting out their window (someone waits for them)."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()

    # -- calls: one transaction each, for the sibling stores --------------------------------

    def call(self, action: Callable[[sqlite3.Connection], _T], *, durable: bool) -> Future[_T]:
        """Run `action` in a write transaction of its own on the writer's connection and
        return the future of its result (or of what it or the commit raised).

        Calls run in order, between batches (never inside one), on the writer thread, or
        at once on the caller's if inline. They are not queued behind failing batches nor
        retried: the caller hears the failure and decides. `durable=False` commits without
        waiting for an fsync (`synchronous=NORMAL`: in WAL mode a power cut may lose the
        transaction, never half of it; the next durable commit makes it durable too).
        Raises sqlite3.ProgrammingError once the writer is closed.
        """
        future: Future[_T] = Future()
        with self._cond:
            if self._closed or self._stopping:
                raise sqlite3.ProgrammingError("Cannot operate on a closed store.")
            if self._thread is not None:
                self._calls.append((action, durable, future))
                self._cond.notify_all()
                return future
        self._run_call(action, durable, future)
        return future

    def _run_call(
        self, action: Callable[[sqlite3.Connection], _T], durable: bool, future: Future[_T]
    ) -> None:
        """Run one call (unless its caller gave up on it) and settle its future."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            with self._db_lock:
                result = self._transaction(action, durable)
        except Exception as exc:  # handed to the caller, who decides
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _transaction(self, action: Callable[[sqlite3.Connection], _T], durable: bool) -> _T:
        """Run `action` in one write transaction; roll back and raise if it fails."""
        conn = self._conn
        if not durable:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = action(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.exception("store: rollback after a failed call failed")
                raise
            return result
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous=FULL")

    # -- control -----------------------------------------------------------------------

    def retry_now(self) -> None:
        """Try the queued writes again now (on the writer thread, or here if inline)."""
        if self._thread is None:
            self._drain()
            return
        with self._cond:
            self._retry = True
            self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until every write accepted so far is durable (True), or an attempt made
        after this call failed, or `timeout_s` passed (False)."""
        if self._thread is None:
            return self._drain()
        with self._cond:
            target = self._last_index
            started = self._attempts_started
            self._retry = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    self._committed >= target
                    or (self._attempts_done > started and not self._writable)
                ),
                timeout_s,
            )
            return self._committed >= target

    async def wait_durable(self) -> bool:
        """Return once every write accepted so far is durable (True), or as soon as the
        store is failing (False: the writes wait in the backlog)."""
        with self.lock:
            target = self._last_index
        self._hasten()
        woken = asyncio.Event()
        remove_d = self.subscribe_durable(woken.set)
        remove_h = self.subscribe_health(woken.set)
        try:
            while True:
                with self.lock:
                    if self._committed >= target:
                        return True
                    if not self._writable:
                        return False
                woken.clear()
                await woken.wait()
        finally:
            remove_d()
            remove_h()

    async def retry_forever(self, clock: Clock, interval_s: float = RETRY_INTERVAL_S) -> None:
        """Run as a task: wait (without waking) until writes fail, then try again every
        `interval_s` of `clock` until they succeed; then wait again."""
        changed = asyncio.Event()  # set by the health listener: a failure, a recovery
        unsubscribe = self.subscribe_health(changed.set)
        try:
            while True:
                changed.clear()
                if not self._failing():
                    await changed.wait()
                    continue
                await sleep_unless(clock.sleep, interval_s, changed)
                if not changed.is_set() and self._failing():
                    self.retry_now()
        finally:
            unsubscribe()

    def _failing(self) -> bool:
        """Whether writes wait in the backlog because the last attempt failed."""
        health = self.health
        return bool(health.backlog) and not health.writable

    def close(self) -> bool:
        """Make a last attempt, stop the thread; True if nothing was left unwritten."""
        if self._closed:
            return True
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join()
        else:
            self._stopping = True
            self._drain()
        with self._cond:
            self._closed = True
            left = len(self._ops)
        if left:
            log.error("store: closed with %d writes that could not be persisted", left)
        return left == 0

    # -- notifications -------------------------------------------------------------------

    def subscribe_durable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each commit (on the loop running now, if any); returns
        the unsubscribe function."""
        return self._subscribe(self._durable_listeners, callback)

    def subscribe_health(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when `health.writable` or `health.accepting_new` changes (on
        the loop running now, if any); returns the unsubscribe function."""
        return self._subscribe(self._health_listeners, callback)

    @staticmethod
    def _subscribe(listeners: list[Listener], callback: Callable[[], None]) -> Callable[[], None]:
        listener = Listener(callback)
        listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe

    def _report_health(self) -> None:
        """Tell the health listeners if writability or acceptance changed."""
        with self.lock:
            health = self._health()
            now = (health.writable, health.accepting_new)
            changed = now != self._reported
            self._reported = now
        if changed:
            for listener in list(self._health_listeners):
                listener.fire()
