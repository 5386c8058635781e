"""Local authorization list and authorization cache, kept in the agent's SQLite store.

Responsibilities:

- `LocalAuthList`: the list the CSMS sends (OCPP 1.6 Local Auth List Management profile,
  OCPP 2.0.1 functional block D): versioned full and differential updates, its size
  limit, persistence across restarts. Applying a list never stalls the event loop for
  long (DESIGN "Safety first in the timing"): the new list is written as a *staged
  generation* in small transactions with a yield to the loop between them, then made
  active by one tiny transaction. Readers only ever see the active generation, so they
  see the old list, complete, until the switch and the new list, complete, after it. A
  crash or a cancellation mid-apply leaves the old list active; the orphaned staged rows
  are deleted by `purge_stale()` (call it at start) or by the next apply.
- `AuthCache`: the authorization cache (1.6 section 3.5.1, 2.0.1 C10/C11): one row per
  token, updated from every CSMS answer, with a size limit enforced by a policy (LRU,
  LFU, FIFO: 2.0.1 AuthCacheCtrlr.Policy) and a lifetime since last use (2.0.1
  AuthCacheCtrlr.LifeTime, C10.FR.08).

Both use the Store's single connection from the event-loop thread and never hold a
transaction open across an `await`.

This module must not: know an OCPP version or its wire names (the adapters map
`ListTooLong`/`InvalidList` to Failed and `VersionMismatch` to VersionMismatch, and check
SendLocalListMaxLength / ItemsPerMessage themselves), decide whether a token may charge
(the core's authorization chain does), or read a clock other than the injected one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypeVar

from agent.core.events import AuthResult, AuthStatus
from agent.core.ports import Clock
from agent.store.sqlite import Store

__all__ = [
    "AuthCache",
    "AuthEntry",
    "AuthListError",
    "CachePolicy",
    "InvalidList",
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

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS auth_list_meta (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        active_gen INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        size       INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO auth_list_meta (id, active_gen, version, size) VALUES (1, 0, 0, 0)",
    # Rows of every generation: the active one, and a staged or stale one being written
    # or deleted. (gen, id_token) is the key, so a reader's lookup is one index probe.
    """CREATE TABLE IF NOT EXISTS auth_list (
        gen        INTEGER NOT NULL,
        id_token   TEXT    NOT NULL,
        status     TEXT    NOT NULL,
        expires_us INTEGER,
        group_id   TEXT,
        PRIMARY KEY (gen, id_token)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS auth_cache (
        id_token     TEXT PRIMARY KEY,
        status       TEXT    NOT NULL,
        expires_us   INTEGER,
        group_id     TEXT,
        inserted_seq INTEGER NOT NULL,
        used_seq     INTEGER NOT NULL,
        use_count    INTEGER NOT NULL,
        last_used_us INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS auth_cache_used ON auth_cache (used_seq)",
)


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """What the list or the cache knows about one id token (version-neutral)."""

    id_token: str
    status: AuthStatus
    expires_at: datetime | None = None
    group_id: str | None = None

    def __post_init__(self) -> None:
        """Raise ValueError for a naive `expires_at` (times inside are aware UTC)."""
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError(f"naive expires_at {self.expires_at!r} for {self.id_token!r}")


@dataclass(frozen=True, slots=True)
class ListRemoval:
    """In a differential update: remove `id_token` from the list (1.6: no idTagInfo)."""

    id_token: str


def as_of(entry: AuthEntry, now: datetime) -> AuthEntry:
    """`entry` as seen at `now`: an Accepted entry past its expiry becomes Expired.

    OCPP 1.6 section 3.5.1: "when an idTag's expiry date has passed it shall be considered
    Expired"; other statuses (Blocked, Invalid) stand as they are.
    """
    if (
        entry.status == AuthStatus.ACCEPTED
        and entry.expires_at is not None
        and entry.expires_at <= now
    ):
        return replace(entry, status=AuthStatus.EXPIRED)
    return entry


class AuthListError(Exception):
    """A local list update was refused; the active list is unchanged."""


class ListTooLong(AuthListError):  # noqa: N818 - reads as the refusal
    """The list would hold more entries than LocalAuthListMaxLength allows."""


class VersionMismatch(AuthListError):  # noqa: N818 - reads as the refusal
    """A differential update's version is not above the current list version."""


class InvalidList(AuthListError):  # noqa: N818 - reads as the refusal
    """The update is malformed (a token twice, a negative version, max_length < 0)."""


class CachePolicy(StrEnum):
    """Which cache entry goes when the cache is full (2.0.1 AuthCacheCtrlr.Policy)."""

    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"


# -- helpers --------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(at: datetime) -> int:
    """Microseconds since the Unix epoch for an aware datetime; ValueError if naive."""
    if at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the store takes timezone-aware UTC times")
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(micros: int | None) -> datetime | None:
    """The aware UTC datetime for microseconds since the epoch (None stays None)."""
    if micros is None:
        return None
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


def _status(text: str, id_token: str) -> AuthStatus:
    """Decode a stored status; an unknown one (newer agent) reads as Invalid, logged."""
    try:
        return AuthStatus(text)
    except ValueError:
        _log.warning("unknown stored auth status %r for %r: treated as invalid", text, id_token)
        return AuthStatus.INVALID


def _entry_row(entry: AuthEntry) -> tuple[str, str, int | None, str | None]:
    """The (id_token, status, expires_us, group_id) columns of an entry."""
    expires = None if entry.expires_at is None else _to_us(entry.expires_at)
    return (entry.id_token, str(entry.status), expires, entry.group_id)


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


def _connection(store: Store) -> sqlite3.Connection:
    """The store's connection, with this module's tables created if missing."""
    conn = store.connection
    with store.writing():
        for statement in _SCHEMA:
            conn.execute(statement)
    return conn


# -- local authorization list ---------------------------------------------------------------


class LocalAuthList:
    """The CSMS's local authorization list, versioned and persisted in the store.

    Reads (`version`, `size`, `get`) are single index lookups and always see one complete
    list. Updates are serialized; each is all-or-nothing from a reader's point of view.
    """

    def __init__(self, store: Store, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        """Use `store`'s database; raise ValueError if `chunk_rows` < 1."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self._store = store
        self._conn = _connection(store)
        self._chunk_rows = chunk_rows
        self._lock = asyncio.Lock()

    # -- reads --------------------------------------------------------------------------

    def version(self) -> int:
        """The active list's version; 0 when the list is empty (1.6 5.10, 2.0.1 D02)."""
        return int(self._meta()[1])

    def size(self) -> int:
        """How many entries the active list holds."""
        return int(self._meta()[2])

    def get(self, id_token: str) -> AuthEntry | None:
        """The active list's entry for `id_token`, or None (expiry is not applied: see as_of)."""
        row = self._conn.execute(
            "SELECT status, expires_us, group_id FROM auth_list"
            " WHERE gen = (SELECT active_gen FROM auth_list_meta WHERE id = 1)"
            " AND id_token = ?",
            (id_token,),
        ).fetchone()
        if row is None:
            return None
        status, expires_us, group_id = row
        return AuthEntry(id_token, _status(status, id_token), _from_us(expires_us), group_id)

    # -- updates ------------------------------------------------------------------------

    async def replace(self, version: int, entries: Iterable[AuthEntry], *, max_length: int) -> None:
        """Make `entries` the whole list at `version` (a full update).

        An empty `entries` empties the list and its version reads 0. Raises InvalidList
        (negative version or max_length, a token twice) or ListTooLong (more than
        `max_length` entries); the active list is then unchanged.
        """
        if version < 0 or max_length < 0:
            raise InvalidList(f"version {version} / max_length {max_length} must be >= 0")
        items = list(entries)
        _unique_tokens(entry.id_token for entry in items)
        if len(items) > max_length:
            raise ListTooLong(f"{len(items)} entries, LocalAuthListMaxLength is {max_length}")
        async with self._lock:
            await self._purge(keep_gen=self._meta()[0])
            old_gen = self._meta()[0]
            staged = old_gen + 1
            for chunk in _chunks(items, self._chunk_rows):
                with self._store.writing() as conn:
                    conn.executemany(
                        "INSERT INTO auth_list (gen, id_token, status, expires_us, group_id)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [(staged, *_entry_row(entry)) for entry in chunk],
                    )
                await asyncio.sleep(0)
            self._switch(old_gen, staged, version, len(items))
            await self._purge(keep_gen=staged)

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
        InvalidList (negative max_length, a token twice) or ListTooLong (the result would
        exceed `max_length`); the active list is then unchanged.
        """
        if max_length < 0:
            raise InvalidList(f"max_length {max_length} must be >= 0")
        items = list(changes)
        _unique_tokens(item.id_token for item in items)
        upserts = [item for item in items if isinstance(item, AuthEntry)]
        removals = [item.id_token for item in items if isinstance(item, ListRemoval)]
        async with self._lock:
            old_gen, current_version, current_size = self._meta()
            if version <= current_version:
                raise VersionMismatch(
                    f"differential update to version {version}, list is at {current_version}"
                )
            if not items:  # nothing to stage: only the version moves
                self._switch(old_gen, old_gen, version, current_size)
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
                with self._store.writing() as conn:
                    conn.executemany(
                        "INSERT OR REPLACE INTO auth_list"
                        " (gen, id_token, status, expires_us, group_id) VALUES (?, ?, ?, ?, ?)",
                        [(staged, *_entry_row(entry)) for entry in chunk],
                    )
                await asyncio.sleep(0)
            for token_chunk in _chunks(removals, self._chunk_rows):
                with self._store.writing() as conn:
                    conn.executemany(
                        "DELETE FROM auth_list WHERE gen = ? AND id_token = ?",
                        [(staged, token) for token in token_chunk],
                    )
                await asyncio.sleep(0)
            self._switch(old_gen, staged, version, new_size)
            await self._purge(keep_gen=staged)

    async def purge_stale(self) -> int:
        """Delete rows a crashed or cancelled apply left behind; return how many."""
        async with self._lock:
            return await self._purge(keep_gen=self._meta()[0])

    # -- internals ----------------------------------------------------------------------

    def _meta(self) -> tuple[int, int, int]:
        """(active generation, version, size) of the active list."""
        row = self._conn.execute(
            "SELECT active_gen, version, size FROM auth_list_meta WHERE id = 1"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _switch(self, old_gen: int, new_gen: int, version: int, size: int) -> None:
        """Make generation `new_gen` the active list in one small transaction."""
        stored_version = version if size > 0 else 0  # 0 means "empty" on the wire
        with self._store.writing() as conn:
            cursor = conn.execute(
                "UPDATE auth_list_meta SET active_gen = ?, version = ?, size = ?"
                " WHERE id = 1 AND active_gen = ?",
                (new_gen, stored_version, size, old_gen),
            )
            if cursor.rowcount != 1:  # another writer on this file: keep its list
                raise sqlite3.IntegrityError(f"active list generation moved from {old_gen}")

    async def _purge(self, *, keep_gen: int) -> int:
        """Delete every row not of generation `keep_gen`, a chunk per transaction."""
        deleted = 0
        while True:
            # MIN/MAX over the key's leading column: an index probe, not a scan.
            (gen,) = self._conn.execute(
                "SELECT MIN(gen) FROM auth_list WHERE gen < ?", (keep_gen,)
            ).fetchone()
            if gen is None:
                (gen,) = self._conn.execute(
                    "SELECT MAX(gen) FROM auth_list WHERE gen > ?", (keep_gen,)
                ).fetchone()
            if gen is None:
                return deleted
            with self._store.writing() as conn:
                cursor = conn.execute(
                    "DELETE FROM auth_list WHERE gen = ?1 AND id_token IN ("
                    " SELECT id_token FROM auth_list WHERE gen = ?1 LIMIT ?2)",
                    (gen, self._chunk_rows),
                )
                deleted += cursor.rowcount
            await asyncio.sleep(0)

    async def _copy(self, from_gen: int, to_gen: int) -> None:
        """Copy generation `from_gen` into `to_gen`, a chunk per transaction."""
        last = ""
        while True:
            with self._store.writing() as conn:
                rows = conn.execute(
                    "SELECT id_token, status, expires_us, group_id FROM auth_list"
                    " WHERE gen = ? AND id_token > ? ORDER BY id_token LIMIT ?",
                    (from_gen, last, self._chunk_rows),
                ).fetchall()
                if not rows:
                    return
                conn.executemany(
                    "INSERT INTO auth_list (gen, id_token, status, expires_us, group_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(to_gen, *row) for row in rows],
                )
            last = rows[-1][0]
            await asyncio.sleep(0)

    async def _count_present(self, gen: int, tokens: Sequence[str]) -> int:
        """How many of `tokens` generation `gen` holds (read in chunks)."""
        present = 0
        for chunk in _chunks(tokens, self._chunk_rows):
            marks = ",".join("?" * len(chunk))
            row = self._conn.execute(
                f"SELECT COUNT(*) FROM auth_list WHERE gen = ? AND id_token IN ({marks})",
                (gen, *chunk),
            ).fetchone()
            present += int(row[0])
            await asyncio.sleep(0)
        return present


# -- authorization cache --------------------------------------------------------------------

# Eviction order per policy, most evictable first. Entries that would not authorize
# (not Accepted, or past their expiry) go before valid ones whatever the policy: they
# only save a round trip for a refusal.
_EVICTION_ORDER: Final = {
    CachePolicy.LRU: "used_seq",
    CachePolicy.LFU: "use_count, used_seq",
    CachePolicy.FIFO: "inserted_seq",
}


class AuthCache:
    """The authorization cache: CSMS answers per token, bounded in size and age.

    `put` stores an answer (call it on every answer that carries token info); `touch`
    marks a cached entry as used when it authorized someone. Each method is one small
    transaction.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        max_entries: int = 1000,
        policy: CachePolicy = CachePolicy.LRU,
        lifetime_s: float | None = None,
    ) -> None:
        """Use `store`'s database; raise ValueError for bad limits (see configure)."""
        self._store = store
        self._conn = _connection(store)
        self._clock = clock
        self._max_entries = max_entries
        self._policy = policy
        self._lifetime_s = lifetime_s
        self.configure(max_entries=max_entries, policy=policy, lifetime_s=lifetime_s)

    def configure(
        self,
        *,
        max_entries: int | None = None,
        policy: CachePolicy | None = None,
        lifetime_s: float | None = None,
        clear_lifetime: bool = False,
    ) -> None:
        """Change the limits (None keeps one; `clear_lifetime` removes the lifetime).

        Raises ValueError if `max_entries` < 1 or `lifetime_s` <= 0. A smaller limit
        takes effect at the next `put`.
        """
        if max_entries is not None:
            if max_entries < 1:
                raise ValueError(f"max_entries must be >= 1, got {max_entries}")
            self._max_entries = max_entries
        if policy is not None:
            self._policy = CachePolicy(policy)
        if lifetime_s is not None:
            if lifetime_s <= 0:
                raise ValueError(f"lifetime_s must be > 0, got {lifetime_s}")
            self._lifetime_s = lifetime_s
        if clear_lifetime:
            self._lifetime_s = None

    def get(self, id_token: str) -> AuthEntry | None:
        """The cached entry as of now (Expired if past its expiry), or None.

        An entry not used within the lifetime is gone (2.0.1 C10.FR.08). Does not count
        as a use: call `touch` when the entry authorizes someone.
        """
        row = self._conn.execute(
            "SELECT status, expires_us, group_id, last_used_us FROM auth_cache WHERE id_token = ?",
            (id_token,),
        ).fetchone()
        if row is None:
            return None
        status, expires_us, group_id, last_used_us = row
        now = self._clock.now()
        if self._lifetime_s is not None and _to_us(now) - last_used_us > self._lifetime_s * 1e6:
            return None
        entry = AuthEntry(id_token, _status(status, id_token), _from_us(expires_us), group_id)
        return as_of(entry, now)

    def put(self, entry: AuthEntry) -> None:
        """Store the CSMS's answer for a token (a use), then enforce lifetime and size."""
        now_us = _to_us(self._clock.now())
        token, status, expires_us, group_id = _entry_row(entry)
        with self._store.writing() as conn:
            seq = self._next_seq(conn)
            conn.execute(
                "INSERT INTO auth_cache (id_token, status, expires_us, group_id, inserted_seq,"
                " used_seq, use_count, last_used_us) VALUES (?, ?, ?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (id_token) DO UPDATE SET status = excluded.status,"
                " expires_us = excluded.expires_us, group_id = excluded.group_id,"
                " used_seq = excluded.used_seq, use_count = use_count + 1,"
                " last_used_us = excluded.last_used_us",
                (token, status, expires_us, group_id, seq, seq, now_us),
            )
            self._evict(conn, keep=token, now_us=now_us)

    def record(self, id_token: str, result: AuthResult) -> None:
        """Remember a CSMS verdict (the authorization chain's CacheStore.record)."""
        self.put(AuthEntry(id_token, result.status, result.expires_at, result.group_id))

    def touch(self, id_token: str) -> bool:
        """Record a use of a cached token; return False if it is not cached."""
        now_us = _to_us(self._clock.now())
        with self._store.writing() as conn:
            cursor = conn.execute(
                "UPDATE auth_cache SET used_seq = ?, use_count = use_count + 1,"
                " last_used_us = ? WHERE id_token = ?",
                (self._next_seq(conn), now_us, id_token),
            )
            return cursor.rowcount == 1

    def clear(self) -> None:
        """Empty the cache (ClearCache)."""
        with self._store.writing() as conn:
            conn.execute("DELETE FROM auth_cache")

    def size(self) -> int:
        """How many entries the cache holds, including any past their lifetime."""
        return int(self._conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0])

    @staticmethod
    def _next_seq(conn: sqlite3.Connection) -> int:
        """The next use sequence number (a logical clock: ties in wall time stay ordered)."""
        row = conn.execute("SELECT MAX(used_seq) FROM auth_cache").fetchone()
        return 1 + (0 if row[0] is None else int(row[0]))

    def _evict(self, conn: sqlite3.Connection, *, keep: str, now_us: int) -> None:
        """Drop entries past the lifetime, then the excess over max_entries by policy."""
        if self._lifetime_s is not None:
            conn.execute(
                "DELETE FROM auth_cache WHERE last_used_us < ? AND id_token != ?",
                (now_us - int(self._lifetime_s * 1e6), keep),
            )
        excess = int(conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0])
        excess -= self._max_entries
        if excess <= 0:
            return
        order = _EVICTION_ORDER[self._policy]  # one of our constants, not input
        conn.execute(
            "DELETE FROM auth_cache WHERE id_token IN ("
            " SELECT id_token FROM auth_cache WHERE id_token != ?"
            " ORDER BY (status != ? OR (expires_us IS NOT NULL AND expires_us <= ?)) DESC,"
            f" {order} LIMIT ?)",
            (keep, str(AuthStatus.ACCEPTED), now_us, excess),
        )
