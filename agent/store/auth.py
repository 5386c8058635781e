"""The local authorization list, kept in the agent's SQLite store; the package's entry
point for the authorization stores (the cache and the shared values are re-exported).

Responsibilities: `LocalAuthList`, the list the CSMS sends (OCPP 1.6 Local Auth List
Management profile, OCPP 2.0.1 functional block D): versioned full and differential
updates, its size limit, persistence across restarts. Applying a list never stalls the
event loop (DESIGN "Safety first in the timing"): the new list is written as a *staged
generation* in small transactions that run on the store's writer thread, without an
fsync each, then made active by one tiny durable transaction, whose fsync makes the
staged rows durable with it (they precede it in the WAL). Readers only ever see the
active generation, so they see the old list, complete, until the switch and the new
list, complete, after it. A crash or a cancellation mid-apply leaves the old list
active; the orphaned staged rows are deleted by `purge_stale()` (call it at start) or by
the next apply. A store that refuses writes (a full disk, a read-only store) makes an
update fail with `ListNotStored`, the old list still active.

Reads go through the store's connection on the event-loop thread; writes through its
writer (`run_write`); no transaction is held open across an `await`. Over a store whose
database is not opened yet (a MemoryStore: fleet mode), the list is empty and nothing is
created until the first update: a station that never receives a list pays nothing.

This module must not: know an OCPP version or its wire names (the adapters map
`ListTooLong` (and so `ListNotStored`)/`InvalidList` to Failed and `VersionMismatch` to
VersionMismatch, and check SendLocalListMaxLength / ItemsPerMessage themselves), decide
whether a token may charge (the core's authorization chain does), or read a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Final, TypeVar

from agent.store.auth_cache import AuthCache
from agent.store.auth_values import (
    AuthEntry,
    AuthListError,
    CachePolicy,
    InvalidList,
    ListNotStored,
    ListRemoval,
    ListTooLong,
    VersionMismatch,
    Write,
    as_of,
    auth_tables,
    decode_status,
    entry_row,
    from_us,
)
from agent.store.interface import TableHost
from agent.store.writer import describe

__all__ = [
    "AuthCache",
    "AuthEntry",
    "AuthListError",
    "CachePolicy",
    "InvalidList",
    "ListNotStored",
    "ListRemoval",
    "ListTooLong",
    "LocalAuthList",
    "VersionMismatch",
    "as_of",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Rows written per transaction while staging a list: small enough that one chunk (insert
#: plus commit) stays far below the 10 ms budget of the safety path; see bench/.
DEFAULT_CHUNK_ROWS: Final = 500


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of `items` of at most `size` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique_tokens(tokens: Iterable[str]) -> set[str]:
    """The set of `tokens`; raise InvalidList if one occurs twice (2.0.1: unique idTokens)."""
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            raise InvalidList(f"id token {token!r} occurs more than once in the update")
        seen.add(token)
    return seen


_INSERT_LIST: Final = (
    "INSERT INTO auth_list (gen, id_token, status, expires_us, group_id) VALUES (?, ?, ?, ?, ?)"
)


def _insert_rows(rows: Sequence[tuple[object, ...]], *, replace: bool = False) -> Write:
    """A write that inserts list rows (or replaces the rows of the same key)."""
    sql = _INSERT_LIST.replace("INSERT", "INSERT OR REPLACE") if replace else _INSERT_LIST

    def apply(conn: sqlite3.Connection) -> None:
        conn.executemany(sql, rows)

    return apply


def _delete_rows(gen: int, tokens: Sequence[str]) -> Write:
    """A write that removes tokens from generation `gen`."""

    def apply(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "DELETE FROM auth_list WHERE gen = ? AND id_token = ?",
            [(gen, token) for token in tokens],
        )

    return apply


# -- local authorization list ---------------------------------------------------------------


class LocalAuthList:
    """The CSMS's local authorization list, versioned and persisted in the store.

    Reads (`version`, `size`, `get`) are single index lookups and always see one complete
    list. Updates are serialized; each is all-or-nothing from a reader's point of view.
    """

    def __init__(self, store: TableHost, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        """Use `store`'s database (read now if it is opened, else at the first update);
        raise ValueError if `chunk_rows` < 1."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self._store = store
        self._conn: sqlite3.Connection | None = None
        self._chunk_rows = chunk_rows
        self._lock = asyncio.Lock()
        # (generation, version, size) of the active list, as committed. Readers go by
        # this copy, changed on the loop's thread right after the switch committed: the
        # writer thread commits while the loop reads, and a reader must see the switch
        # between two of its turns, never between two reads of one turn.
        self._active = (0, 0, 0)
        if store.opened:
            self._open()

    def _open(self) -> sqlite3.Connection:
        """The store's connection, with the tables created and the active list read the
        first time."""
        if self._conn is None:
            conn = auth_tables(self._store)
            row = conn.execute(
                "SELECT active_gen, version, size FROM auth_list_meta WHERE id = 1"
            ).fetchone()
            self._active = (int(row[0]), int(row[1]), int(row[2]))
            self._conn = conn
        return self._conn

    # -- reads --------------------------------------------------------------------------

    def version(self) -> int:
        """The active list's version; 0 when the list is empty (1.6 5.10, 2.0.1 D02)."""
        return int(self._meta()[1])

    def size(self) -> int:
        """How many entries the active list holds."""
        return int(self._meta()[2])

    def get(self, id_token: str) -> AuthEntry | None:
        """The active list's entry for `id_token`, or None (expiry is not applied: see as_of)."""
        if not self._active[2]:
            return None  # an empty list holds no row (and may have no table yet)
        row = (
            self._open()
            .execute(
                "SELECT status, expires_us, group_id FROM auth_list WHERE gen = ? AND id_token = ?",
                (self._active[0], id_token),
            )
            .fetchone()
        )
        if row is None:
            return None
        status, expires_us, group_id = row
        return AuthEntry(id_token, decode_status(status, id_token), from_us(expires_us), group_id)

    # -- updates ------------------------------------------------------------------------

    async def replace(self, version: int, entries: Iterable[AuthEntry], *, max_length: int) -> None:
        """Make `entries` the whole list at `version` (a full update).

        An empty `entries` empties the list and its version reads 0. Raises InvalidList
        (negative version or max_length, a token twice), ListTooLong (more than
        `max_length` entries) or ListNotStored (the store refused the writes); the active
        list is then unchanged.
        """
        if version < 0 or max_length < 0:
            raise InvalidList(f"version {version} / max_length {max_length} must be >= 0")
        items = list(entries)
        _unique_tokens(entry.id_token for entry in items)
        if len(items) > max_length:
            raise ListTooLong(f"{len(items)} entries, LocalAuthListMaxLength is {max_length}")
        async with self._lock:
            async with self._refused_as_not_stored():
                self._open()
                await self._purge(keep_gen=self._meta()[0])
                old_gen = self._meta()[0]
                staged = old_gen + 1
                for chunk in _chunks(items, self._chunk_rows):
                    rows = [(staged, *entry_row(entry)) for entry in chunk]
                    await self._write(_insert_rows(rows))
                await self._switch(old_gen, staged, version, len(items))
            await self._tidy(keep_gen=staged)

    async def update(
        self,
        version: int,
        changes: Iterable[AuthEntry | ListRemoval],
        *,
        max_length: int,
    ) -> None:
        """Apply `changes` on top of the list and make the result the list at `version`.

        An AuthEntry adds or replaces its token; a ListRemoval removes it (unknown tokens
        are ignored). Raises VersionMismatch if `version` is not above `version()`,
        InvalidList (negative max_length, a token twice), ListTooLong (the result would
        exceed `max_length`) or ListNotStored (the store refused the writes); the active
        list is then unchanged.
        """
        if max_length < 0:
            raise InvalidList(f"max_length {max_length} must be >= 0")
        items = list(changes)
        _unique_tokens(item.id_token for item in items)
        upserts = [item for item in items if isinstance(item, AuthEntry)]
        removals = [item.id_token for item in items if isinstance(item, ListRemoval)]
        async with self._lock:
            async with self._refused_as_not_stored():
                self._open()
                old_gen, current_version, current_size = self._meta()
                if version <= current_version:
                    raise VersionMismatch(
                        f"differential update to version {version}, list is at {current_version}"
                    )
                if not items:  # nothing to stage: only the version moves
                    await self._switch(old_gen, old_gen, version, current_size)
                    return
                added = len(upserts) - await self._count_present(
                    old_gen, [entry.id_token for entry in upserts]
                )
                removed = await self._count_present(old_gen, removals)
                new_size = current_size + added - removed
                if new_size > max_length:
                    raise ListTooLong(f"{new_size} entries, LocalAuthListMaxLength is {max_length}")
                await self._purge(keep_gen=old_gen)
                staged = old_gen + 1
                # Copy-on-write: copy the active generation, then apply the delta to the copy.
                # Copying 10,000 rows costs about as much as a full update (bench/).
                await self._copy(old_gen, staged)
                for chunk in _chunks(upserts, self._chunk_rows):
                    rows = [(staged, *entry_row(entry)) for entry in chunk]
                    await self._write(_insert_rows(rows, replace=True))
                for token_chunk in _chunks(removals, self._chunk_rows):
                    await self._write(_delete_rows(staged, token_chunk))
                await self._switch(old_gen, staged, version, new_size)
            await self._tidy(keep_gen=staged)

    async def purge_stale(self) -> int:
        """Delete rows a crashed or cancelled apply left behind; return how many.

        Raises sqlite3.Error if the store refuses the delete.
        """
        async with self._lock:
            if self._conn is None:
                return 0  # no table yet: nothing was ever staged
            return await self._purge(keep_gen=self._meta()[0])

    # -- internals ----------------------------------------------------------------------

    def _meta(self) -> tuple[int, int, int]:
        """(active generation, version, size) of the active list."""
        return self._active

    @contextlib.asynccontextmanager
    async def _refused_as_not_stored(self) -> AsyncIterator[None]:
        """Turn the store's refusal to write (full, read-only, I/O) into ListNotStored."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            _log.error("local list update not stored: %s", describe(exc))
            raise ListNotStored(f"the store refused the list: {describe(exc)}") from exc

    async def _write(self, apply: Write) -> None:
        """Run one staging write on the store's writer, without an fsync (the switch
        makes it durable)."""
        await self._chunk(apply)

    async def _chunk(self, apply: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one chunk's transaction on the store's writer without an fsync, then give
        the event loop a turn even if it ran inline (a store in memory commits on the
        loop's thread): an apply never holds the loop for more than a chunk."""
        result = await self._store.run_write(apply, durable=False)
        await asyncio.sleep(0)
        return result

    async def _switch(self, old_gen: int, new_gen: int, version: int, size: int) -> None:
        """Make generation `new_gen` the active list in one small, durable transaction."""
        stored_version = version if size > 0 else 0  # 0 means "empty" on the wire

        def apply(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE auth_list_meta SET active_gen = ?, version = ?, size = ?"
                " WHERE id = 1 AND active_gen = ?",
                (new_gen, stored_version, size, old_gen),
            )
            if cursor.rowcount != 1:  # another writer on this file: keep its list
                raise sqlite3.IntegrityError(f"active list generation moved from {old_gen}")

        switched = (new_gen, stored_version, size)
        future = self._store.start_write(apply)
        if future.done():  # committed inline
            future.result()
            self._active = switched
            return
        loop = asyncio.get_running_loop()

        def committed(done: Future[None]) -> None:
            # On the writer thread. Scheduled before the awaiting task's wake-up, and
            # even if that task was cancelled meanwhile: the readers follow the file.
            if not done.cancelled() and done.exception() is None:
                with contextlib.suppress(RuntimeError):  # the loop closed (shutting down)
                    loop.call_soon_threadsafe(self._activate, switched)

        future.add_done_callback(committed)
        await asyncio.wrap_future(future)

    def _activate(self, active: tuple[int, int, int]) -> None:
        """Let readers see the generation a switch committed."""
        self._active = active

    async def _tidy(self, *, keep_gen: int) -> None:
        """After a switch: delete the old generation; a refusal is only logged (the list
        is in place; `purge_stale` or the next apply deletes the rows)."""
        try:
            await self._purge(keep_gen=keep_gen)
        except sqlite3.Error as exc:
            _log.warning("old local list rows not deleted yet: %s", describe(exc))

    async def _purge(self, *, keep_gen: int) -> int:
        """Delete every row not of generation `keep_gen`, a chunk per transaction."""
        limit = self._chunk_rows

        def apply(conn: sqlite3.Connection) -> int:
            # MIN/MAX over the key's leading column: an index probe, not a scan.
            (gen,) = conn.execute(
                "SELECT MIN(gen) FROM auth_list WHERE gen < ?", (keep_gen,)
            ).fetchone()
            if gen is None:
                (gen,) = conn.execute(
                    "SELECT MAX(gen) FROM auth_list WHERE gen > ?", (keep_gen,)
                ).fetchone()
            if gen is None:
                return 0
            cursor = conn.execute(
                "DELETE FROM auth_list WHERE gen = ?1 AND id_token IN ("
                " SELECT id_token FROM auth_list WHERE gen = ?1 LIMIT ?2)",
                (gen, limit),
            )
            return cursor.rowcount

        deleted = 0
        while True:
            count = await self._chunk(apply)
            if not count:
                return deleted
            deleted += count

    async def _copy(self, from_gen: int, to_gen: int) -> None:
        """Copy generation `from_gen` into `to_gen`, a chunk per transaction."""
        limit = self._chunk_rows

        def apply_after(last: str) -> Callable[[sqlite3.Connection], str | None]:
            def apply(conn: sqlite3.Connection) -> str | None:
                rows = conn.execute(
                    "SELECT id_token, status, expires_us, group_id FROM auth_list"
                    " WHERE gen = ? AND id_token > ? ORDER BY id_token LIMIT ?",
                    (from_gen, last, limit),
                ).fetchall()
                conn.executemany(_INSERT_LIST, [(to_gen, *row) for row in rows])
                return str(rows[-1][0]) if rows else None

            return apply

        last: str | None = ""
        while last is not None:
            last = await self._chunk(apply_after(last))

    async def _count_present(self, gen: int, tokens: Sequence[str]) -> int:
        """How many of `tokens` generation `gen` holds (read in chunks)."""
        present = 0
        for chunk in _chunks(tokens, self._chunk_rows):
            marks = ",".join("?" * len(chunk))
            row = (
                self._open()
                .execute(
                    f"SELECT COUNT(*) FROM auth_list WHERE gen = ? AND id_token IN ({marks})",
                    (gen, *chunk),
                )
                .fetchone()
            )
            present += int(row[0])
            await asyncio.sleep(0)
        return present
