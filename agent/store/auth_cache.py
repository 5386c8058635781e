"""The authorization cache, kept in memory and written behind to the agent's SQLite store.

Responsibilities: `AuthCache` (OCPP 1.6 section 3.5.1, 2.0.1 C10/C11): one entry per
token, updated from every CSMS answer, with a size limit enforced by a policy (LRU, LFU,
FIFO: 2.0.1 AuthCacheCtrlr.Policy) and a lifetime since last use (2.0.1
AuthCacheCtrlr.LifeTime, C10.FR.08). The entries live in memory, read once from the
store at start: a lookup on the tap path never waits for SQLite. Each change is written
behind on the store's writer thread (`Store.write_soon`) without an fsync: a power cut
may lose the cache's last changes, which costs a round trip to the CSMS at worst. A
write the store refuses (a full disk, a read-only store) is logged and never fails the
caller, so a full disk never makes a tap fail; the next change then rewrites the cache
whole, so the file catches up once the disk does. Over a store that keeps nothing beyond
the process (`memory_only`: a MemoryStore, fleet mode) the cache is only in memory: it
neither reads nor writes a table, since nothing would ever read it back.

This module must not: decide whether a token may charge (the core's authorization chain
does), know an OCPP version, or read a clock other than the injected one.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.core.events import AuthResult, AuthStatus
from agent.core.ports import Clock
from agent.store.auth_values import (
    AuthEntry,
    CachePolicy,
    Write,
    as_of,
    auth_tables,
    decode_status,
    entry_row,
    from_us,
    to_us,
)
from agent.store.interface import TableHost
from agent.store.writer import describe

__all__ = ["AuthCache"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Cached:
    """One cache row, as the table holds it (times in microseconds since the epoch)."""

    status: str
    expires_us: int | None
    group_id: str | None
    inserted_seq: int
    used_seq: int
    use_count: int
    last_used_us: int

    def values(self) -> tuple[str, int | None, str | None, int, int, int, int]:
        """The row's columns after id_token, in `_CACHE_COLUMNS` order."""
        return (
            self.status,
            self.expires_us,
            self.group_id,
            self.inserted_seq,
            self.used_seq,
            self.use_count,
            self.last_used_us,
        )

    def eviction_key(self, policy: CachePolicy, now_us: int) -> tuple[int, ...]:
        """Smallest goes first: entries that would not authorize (not Accepted, or past
        their expiry: they only save a round trip for a refusal), then the policy's order."""
        valid = int(
            self.status == AuthStatus.ACCEPTED
            and (self.expires_us is None or self.expires_us > now_us)
        )
        if policy is CachePolicy.LFU:
            return (valid, self.use_count, self.used_seq)
        if policy is CachePolicy.FIFO:
            return (valid, self.inserted_seq)
        return (valid, self.used_seq)


_CACHE_COLUMNS: Final = (
    "id_token, status, expires_us, group_id, inserted_seq, used_seq, use_count, last_used_us"
)


def _cache_write(
    rows: Sequence[tuple[object, ...]], gone: Sequence[str], *, whole: bool = False
) -> Write:
    """A write that stores cache rows (absolute values) and removes tokens; `whole`:
    the rows are the entire cache."""

    def apply(conn: sqlite3.Connection) -> None:
        if whole:
            conn.execute("DELETE FROM auth_cache")
        elif gone:
            conn.executemany("DELETE FROM auth_cache WHERE id_token = ?", [(t,) for t in gone])
        conn.executemany(
            f"INSERT OR REPLACE INTO auth_cache ({_CACHE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    return apply


class AuthCache:
    """The authorization cache: CSMS answers per token, bounded in size and age.

    `put` stores an answer (call it on every answer that carries token info); `touch`
    marks a cached entry as used when it authorized someone. Reads and the policy run in
    memory; each change is written behind (module docstring) and never raises for the
    store's sake.
    """

    def __init__(
        self,
        store: TableHost,
        *,
        clock: Clock,
        max_entries: int = 1000,
        policy: CachePolicy = CachePolicy.LRU,
        lifetime_s: float | None = None,
    ) -> None:
        """Use `store`'s database (the cache is read from it once, here); raise
        ValueError for bad limits (see configure)."""
        self._store = store
        self._clock = clock
        self._max_entries = max_entries
        self._policy = policy
        self._lifetime_s = lifetime_s
        self.configure(max_entries=max_entries, policy=policy, lifetime_s=lifetime_s)
        self._memory_only = store.memory_only
        rows = [] if self._memory_only else self._read(store)
        self._entries: dict[str, _Cached] = {
            str(token): _Cached(*values) for token, *values in rows
        }
        self._seq = max((row.used_seq for row in self._entries.values()), default=0)
        #: The file missed a change (the store refused it): rewrite it whole next time.
        #: Set on the store's writer thread, read on the loop's: a plain flag.
        self._stale = False

    @staticmethod
    def _read(store: TableHost) -> list[Any]:
        """The cache's rows in `store` (none if its table could not be created)."""
        conn = auth_tables(store)
        try:
            return conn.execute(f"SELECT {_CACHE_COLUMNS} FROM auth_cache").fetchall()
        except sqlite3.OperationalError as exc:  # no table: it could not be created
            _log.error("authorization cache not read: %s", describe(exc))
            return []

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
        row = self._entries.get(id_token)
        if row is None:
            return None
        now = self._clock.now()
        if self._lifetime_s is not None and to_us(now) - row.last_used_us > self._lifetime_s * 1e6:
            return None
        status = decode_status(row.status, id_token)
        return as_of(AuthEntry(id_token, status, from_us(row.expires_us), row.group_id), now)

    def put(self, entry: AuthEntry) -> None:
        """Store the CSMS's answer for a token (a use), then enforce lifetime and size."""
        now_us = to_us(self._clock.now())
        token, status, expires_us, group_id = entry_row(entry)
        self._seq += 1
        row = self._entries.get(token)
        if row is None:
            row = _Cached(status, expires_us, group_id, self._seq, self._seq, 1, now_us)
            self._entries[token] = row
        else:
            row.status, row.expires_us, row.group_id = status, expires_us, group_id
            row.used_seq, row.use_count, row.last_used_us = self._seq, row.use_count + 1, now_us
        gone = self._evict(keep=token, now_us=now_us)
        self._persist([(token, *row.values())], gone)

    def record(self, id_token: str, result: AuthResult) -> None:
        """Remember a CSMS verdict (the authorization chain's CacheStore.record)."""
        self.put(AuthEntry(id_token, result.status, result.expires_at, result.group_id))

    def touch(self, id_token: str) -> bool:
        """Record a use of a cached token; return False if it is not cached."""
        row = self._entries.get(id_token)
        if row is None:
            return False
        self._seq += 1
        row.used_seq, row.use_count = self._seq, row.use_count + 1
        row.last_used_us = to_us(self._clock.now())
        self._persist([(id_token, *row.values())], ())
        return True

    def clear(self) -> None:
        """Empty the cache (ClearCache)."""
        self._entries.clear()
        self._persist((), (), whole=True)

    def size(self) -> int:
        """How many entries the cache holds, including any past their lifetime."""
        return len(self._entries)

    def _evict(self, *, keep: str, now_us: int) -> list[str]:
        """Drop entries past the lifetime, then the excess over max_entries by policy;
        return the tokens dropped (never `keep`)."""
        gone: list[str] = []
        if self._lifetime_s is not None:
            oldest_us = now_us - int(self._lifetime_s * 1e6)
            gone = [
                token
                for token, row in self._entries.items()
                if row.last_used_us < oldest_us and token != keep
            ]
        for token in gone:
            del self._entries[token]
        excess = len(self._entries) - self._max_entries
        if excess > 0:
            policy, entries = self._policy, self._entries
            victims = heapq.nsmallest(
                excess,
                (token for token in entries if token != keep),
                key=lambda token: entries[token].eviction_key(policy, now_us),
            )
            for token in victims:
                del entries[token]
            gone += victims
        return gone

    def _persist(
        self, rows: Sequence[tuple[object, ...]], gone: Sequence[str], *, whole: bool = False
    ) -> None:
        """Write a change behind; after a refused one, the whole cache instead."""
        if self._memory_only:
            return
        if self._stale:
            self._stale = False
            rows = [(token, *row.values()) for token, row in self._entries.items()]
            whole = True
        try:
            self._store.write_soon(
                _cache_write(rows, gone, whole=whole),
                what="authorization cache update",
                on_refused=self._refused,
            )
        except sqlite3.ProgrammingError:  # the store closed first (shutting down)
            _log.info("authorization cache update dropped: the store is closed")

    def _refused(self) -> None:
        """The store refused a change (called on its writer thread): catch up later."""
        self._stale = True
