"""The local list's and the cache's shared vocabulary: entries, errors, policies, and
their tables in the store.

Responsibilities: the version-neutral values (`AuthEntry`, `ListRemoval`, `as_of`), the
refusals of a list update, the cache policies, the tables both keep in the Store's
database, and the conversions of their columns.

This module must not: write anything but its tables' definitions, know an OCPP version,
or read a clock.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from agent.core.events import AuthStatus
from agent.store.interface import TableHost
from agent.store.writer import describe

_log = logging.getLogger("agent.store.auth")

#: One write transaction's statements (run on the store's writer).
Write = Callable[[sqlite3.Connection], None]

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


class ListNotStored(ListTooLong):
    """The store refused to write the list (a full disk, a read-only store, an I/O error).

    A ListTooLong: the list does not fit where it must be kept, and the adapters answer
    it as one (Failed; 2.0.1 reasonCode OutOfStorage).
    """


class CachePolicy(StrEnum):
    """Which cache entry goes when the cache is full (2.0.1 AuthCacheCtrlr.Policy)."""

    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"


# -- helpers --------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(at: datetime) -> int:
    """Microseconds since the Unix epoch for an aware datetime; ValueError if naive."""
    if at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the store takes timezone-aware UTC times")
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(micros: int | None) -> datetime | None:
    """The aware UTC datetime for microseconds since the epoch (None stays None)."""
    if micros is None:
        return None
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


def decode_status(text: str, id_token: str) -> AuthStatus:
    """Decode a stored status; an unknown one (newer agent) reads as Invalid, logged."""
    try:
        return AuthStatus(text)
    except ValueError:
        _log.warning("unknown stored auth status %r for %r: treated as invalid", text, id_token)
        return AuthStatus.INVALID


def entry_row(entry: AuthEntry) -> tuple[str, str, int | None, str | None]:
    """The (id_token, status, expires_us, group_id) columns of an entry."""
    expires = None if entry.expires_at is None else to_us(entry.expires_at)
    return (entry.id_token, str(entry.status), expires, entry.group_id)


def auth_tables(store: TableHost) -> sqlite3.Connection:
    """The store's connection, with this module's tables created if missing (a store that
    refuses writes is logged: the tables of an earlier start are still read)."""
    conn = store.connection
    try:
        with store.writing():
            for statement in _SCHEMA:
                conn.execute(statement)
    except sqlite3.OperationalError as exc:
        _log.error("authorization tables not created: %s", describe(exc))
    return conn
