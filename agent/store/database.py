"""The store's database: two connections, the background writer, and what it has not
committed yet.

Responsibilities: open the SQLite file (WAL, `synchronous=FULL`), bring its schema up to
date, and run every journal, outbox and settings write through one `JournalWriter`
(writer.py): on a writer thread for files, so the event loop never waits for an fsync,
or on the caller's thread (`background=False`, `:memory:`). What is queued shows to
readers through the overlay (overlay.py) until it has committed. The owner's connection
serves reads. The sibling stores (agent/store/auth*.py, profiles.py) write their own
tables through the writer's connection off the loop, one transaction per call, and hear
whether it committed (`run_write`, `start_write`; `write_soon` for writes nobody waits
for), or, for rare writes whose caller cannot wait, on the owner's connection
(`writing()`); both take the writer's lock, so no write waits on SQLite's busy handler.
Settings live here too.

A write the disk refuses (full, read-only, I/O error) stays queued, in order, and
`health` says so; `retry_now`/`retry_forever` write it once the disk accepts writes.

This module must not: know the journal's rules (sqlite.py), read a clock, or call its
methods from more than one thread (the writer thread is internal).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

from agent.core.ports import Clock, TxRecord
from agent.store.overlay import SETTING, Overlay, PendingEntry
from agent.store.schema import configure, migrate
from agent.store.writer import (
    DEFAULT_MAX_BACKLOG,
    RETRY_INTERVAL_S,
    JournalWriter,
    StoreHealth,
    WriteOp,
    describe,
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _refused(done: Future[None], what: str, on_refused: Callable[[], None] | None) -> None:
    """Log why a `write_soon` write was refused and tell its owner (on the thread that
    ran it)."""
    exc = None if done.cancelled() else done.exception()
    if exc is None:
        return
    _log.warning("store: %s not written (%s)", what, describe(exc))
    if on_refused is not None:
        on_refused()


def statement(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], None]:
    """A write that runs one statement with its parameters."""

    def apply(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return apply


class Database:
    """The store's SQLite file, writer and overlay, plus runtime settings.

    Methods on a closed database raise `sqlite3.ProgrammingError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        background: bool = True,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        journal: bool = True,
    ) -> None:
        """Open (or create) the database at `path` and bring its schema up to date.

        `background`: commit on a writer thread (file databases only). `max_backlog`:
        how many writes may wait in memory while the disk refuses them before new
        transactions are refused. `journal=False` leaves out the journal's tables (a
        database only sibling stores use: memory.py). Raises StoreSchemaError if the file
        was written by a newer schema, and sqlite3.Error if it cannot be opened.
        """
        in_memory = os.fspath(path) == ":memory:"
        threaded = background and not in_memory
        # isolation_level=None: no implicit transactions; BEGIN/COMMIT are explicit.
        # In memory (tests, fleet mode): a smaller statement cache. Each cached statement
        # holds about 4.5 KiB, the hot path uses fewer than 24, and a fleet holds thousands
        # of stores (bench/README.md, "Scale").
        cached = 24 if in_memory else 128
        self._conn = sqlite3.connect(path, isolation_level=None, cached_statements=cached)
        self._wconn = self._conn
        self._closed = False
        self._db_lock = threading.RLock()  # held by whoever writes to the file
        self._overlay = Overlay()
        try:
            configure(self._conn, in_memory=in_memory)
            if journal:
                migrate(self._conn)
            if threaded:
                self._wconn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                configure(self._wconn, in_memory=False)
            self._writer = JournalWriter(
                self._wconn,
                threaded=threaded,
                db_lock=self._db_lock,
                on_committed=self._overlay.committed,
                max_backlog=max_backlog,
            )
        except BaseException:
            self._closed = True
            if self._wconn is not self._conn:
                self._wconn.close()
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The owner thread's connection, for sibling stores in agent/store (they write
        through `writing()`)."""
        return self._conn

    @property
    def opened(self) -> bool:
        """Always True: the database exists once constructed (interface.TableHost)."""
        return True

    @property
    def memory_only(self) -> bool:
        """Always False: what is written here is read back (interface.TableHost; even a
        `:memory:` database, which tests use as the production backend)."""
        return False

    def close(self) -> None:
        """Write what is queued (one last attempt), then close; calling it again does
        nothing. Writes the disk still refuses are lost (and logged)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            if self._wconn is not self._conn:
                self._wconn.close()
            self._conn.close()

    def __enter__(self) -> Self:
        """Use the store as a context manager that closes it on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one SQLite write transaction on the owner's connection,
        committed (with an fsync) before returning, on the caller's thread. It waits for a
        batch the writer thread is committing; failures raise sqlite3.Error. For rare
        writes whose caller cannot wait (charging profiles); the others use `run_write`."""
        conn = self._live()
        with self._db_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    async def run_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> _T:
        """Run `action` as one write transaction off the event loop (on the writer thread;
        at once when inline) and return its result.

        The owner's connection reads the result as soon as this returns. `durable=False`
        skips the fsync (writer.py, `call`). Raises what `action` raises, sqlite3.Error
        when the database refuses the write (full, read-only, I/O), ProgrammingError
        once closed. Cancelling the caller cancels the call if it has not started.
        """
        future = self.start_write(action, durable=durable)
        if future.done():
            return future.result()
        return await asyncio.wrap_future(future)

    def start_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> Future[_T]:
        """Queue `action` as `run_write` does and return its future (done already when
        inline); raises ProgrammingError once closed."""
        self._live()
        return self._writer.call(action, durable=durable)

    def write_soon(
        self,
        action: Callable[[sqlite3.Connection], None],
        *,
        what: str,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """Queue `action` as one write transaction without an fsync (writer.py, `call`)
        and return at once. If the database refuses it, it is logged (`what` names it)
        and `on_refused` is called, on the thread that ran it (keep it to a flag).

        For writes whose loss costs little and must never fail their caller (the
        authorization cache on the tap path). Raises ProgrammingError once closed.
        """
        self._live()
        future = self._writer.call(action, durable=False)
        future.add_done_callback(lambda done: _refused(done, what, on_refused))

    def _live(self) -> sqlite3.Connection:
        """The owner's connection; raise sqlite3.ProgrammingError once closed."""
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed store.")
        return self._conn

    # -- durability and health -------------------------------------------------------------

    @property
    def background(self) -> bool:
        """Whether a writer thread commits (else each method commits before returning)."""
        return self._writer.threaded

    @property
    def health(self) -> StoreHealth:
        """Whether writes succeed, how many wait, and whether new transactions may start."""
        return self._writer.health

    @property
    def accepting_new_transactions(self) -> bool:
        """Whether `begin_transaction` would accept a transaction now."""
        return self._writer.accepting_new

    def subscribe_health(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when writes start or stop failing, or the backlog fills or
        drains (on the event loop running now); returns the unsubscribe function."""
        return self._writer.subscribe_health(callback)

    def subscribe_durable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each commit (on the event loop running now): outbox
        entries may have become durable. Returns the unsubscribe function."""
        return self._writer.subscribe_durable(callback)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until everything accepted so far is durable; False if the disk refused
        it (it stays queued) or `timeout_s` passed. Not for the event loop's hot path."""
        self._live()
        return self._writer.flush(timeout_s)

    async def wait_durable(self) -> bool:
        """Await until everything accepted so far is durable (True), or return False as
        soon as writes are failing (they wait in the backlog)."""
        self._live()
        return await self._writer.wait_durable()

    def retry_now(self) -> None:
        """Try the queued writes again now (after the disk was freed, say)."""
        self._live()
        self._writer.retry_now()

    async def retry_forever(self, clock: Clock, interval_s: float = RETRY_INTERVAL_S) -> None:
        """Run as a task: wait for writes to fail (no timer while they succeed), then retry
        them every `interval_s` of `clock` until they succeed."""
        await self._writer.retry_forever(clock, interval_s)

    def on_writer(self, action: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `action` with the writer's connection between two batches and return its
        result (maintenance; tests set per-connection pragmas such as max_page_count)."""
        self._live()
        with self._db_lock:
            return action(self._wconn)

    def _submit(
        self,
        apply: Callable[[sqlite3.Connection], None],
        keys: tuple[Hashable, ...],
        *,
        fold: bool = False,
        lazy: bool = False,
        tx: TxRecord | None = None,
        entry: PendingEntry | None = None,
        setting: tuple[str, str] | None = None,
    ) -> None:
        """Queue a write and show its values to readers until it has committed."""
        overlay = self._overlay

        def record(index: int) -> None:
            if tx is not None:
                overlay.txs[tx.local_id] = (tx, index)
            if entry is not None:
                overlay.entries[entry.entry.seq] = PendingEntry(
                    entry.entry, entry.state, index, entry.position
                )
            if setting is not None:
                overlay.settings[setting[0]] = (setting[1], index)

        self._live()
        self._writer.submit(WriteOp(apply, keys, fold, lazy), record)

    # -- settings ----------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """Return the stored value of setting `key`, or None if it was never set."""
        conn = self._live()
        with self._writer.lock:
            pending = self._overlay.settings.get(key)
        if pending is not None:
            return pending[0]
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        """Store `value` for setting `key`, replacing any previous value."""
        apply = statement(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        self._submit(apply, ((SETTING, key),), setting=(key, value))

    def settings(self) -> dict[str, str]:
        """Return every stored setting."""
        conn = self._live()
        with self._writer.lock:
            pending = {key: value for key, (value, _) in self._overlay.settings.items()}
        rows = conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        stored = {str(key): str(value) for key, value in rows}
        return dict(sorted({**stored, **pending}.items()))
