"""SQLite persistence: the transaction journal, its ordered outbox, and runtime settings.

Responsibilities (DESIGN idea 5 and 6):

- the transaction journal: one row per transaction under a local key, rewritten at
  each step (begin, meter, end, CSMS id);
- the outbox: every transaction-related message, in one global order (`seq`), with its
  delivery state (pending, delivered, dropped) and attempt count. A journal change and
  its outbox entry are written in one SQLite transaction, so a crash leaves both or
  neither;
- runtime settings: OCPP configuration values the CSMS changed (strings).

Durability: file databases run in WAL mode with `synchronous=FULL`, and every write is
committed before the method returns, so what a method acknowledged survives a crash or
a power cut. `:memory:` databases (tests) have no WAL.

This module must not: know any OCPP version or build wire messages (the adapters do),
read a clock (every timestamp comes from the caller), start threads or tasks, or do
full-table scans on the hot path (indexes cover every frequent query). It is used from
the event-loop thread only; each method runs a few small statements.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, Self

from agent.core.ports import OutboxEntry, StopReason, TxEventKind, TxRecord
from drivers.types import TokenType

__all__ = ["Store", "StoreSchemaError"]

_log = logging.getLogger(__name__)

_PENDING: Final = "pending"
_DELIVERED: Final = "delivered"
_DROPPED: Final = "dropped"

# Schema migrations: entry i brings the database from user_version i to i + 1. Append
# new steps; never edit a released one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE transactions (
            local_id       INTEGER PRIMARY KEY AUTOINCREMENT,
            evse_id        INTEGER NOT NULL,
            connector_id   INTEGER NOT NULL,
            id_token       TEXT    NOT NULL,
            token_type     TEXT    NOT NULL,
            started_at     TEXT    NOT NULL,
            meter_start_wh REAL    NOT NULL,
            last_meter_wh  REAL    NOT NULL,
            last_meter_at  TEXT    NOT NULL,
            reservation_id INTEGER,
            csms_tx_id     TEXT,
            stopped_at     TEXT,
            meter_stop_wh  REAL,
            stop_reason    TEXT,
            stop_id_token  TEXT
        )""",
        "CREATE INDEX transactions_open ON transactions (local_id) WHERE stopped_at IS NULL",
        "CREATE INDEX transactions_evse ON transactions (evse_id, local_id)",
        """CREATE TABLE outbox (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            tx_local_id INTEGER NOT NULL REFERENCES transactions (local_id),
            kind        TEXT    NOT NULL CHECK (kind IN ('started', 'updated', 'ended')),
            payload     TEXT    NOT NULL,
            created_at  TEXT    NOT NULL,
            attempts    INTEGER NOT NULL DEFAULT 0,
            state       TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'dropped')),
            drop_reason TEXT
        )""",
        "CREATE INDEX outbox_state_seq ON outbox (state, seq)",
        "CREATE INDEX outbox_tx ON outbox (tx_local_id, seq)",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_TX_COLUMNS: Final = (
    "local_id, evse_id, connector_id, id_token, token_type, started_at, meter_start_wh,"
    " last_meter_wh, last_meter_at, reservation_id, csms_tx_id, stopped_at, meter_stop_wh,"
    " stop_reason, stop_id_token"
)
_ENTRY_COLUMNS: Final = "seq, tx_local_id, kind, payload, created_at, attempts"


class StoreSchemaError(Exception):
    """The database file has a schema this version of the agent cannot use."""


def _to_text(at: datetime) -> str:
    """Encode an aware datetime as ISO 8601 UTC text; raise ValueError if naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the store takes timezone-aware UTC times")
    return at.astimezone(UTC).isoformat()


def _from_text(text: str) -> datetime:
    """Decode ISO 8601 text written by `_to_text` into an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _dump(payload: Mapping[str, Any]) -> str:
    """Encode a payload as JSON text; raise ValueError/TypeError if it is not plain JSON."""
    return json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)


def _row_to_tx(row: tuple[Any, ...]) -> TxRecord:
    """Build a TxRecord from a row selected with `_TX_COLUMNS`."""
    (
        local_id,
        evse_id,
        connector_id,
        id_token,
        token_type,
        started_at,
        meter_start_wh,
        last_meter_wh,
        last_meter_at,
        reservation_id,
        csms_tx_id,
        stopped_at,
        meter_stop_wh,
        stop_reason,
        stop_id_token,
    ) = row
    return TxRecord(
        local_id=local_id,
        evse_id=evse_id,
        connector_id=connector_id,
        id_token=id_token,
        token_type=TokenType(token_type),
        started_at=_from_text(started_at),
        meter_start_wh=meter_start_wh,
        last_meter_wh=last_meter_wh,
        last_meter_at=_from_text(last_meter_at),
        reservation_id=reservation_id,
        csms_tx_id=csms_tx_id,
        stopped_at=None if stopped_at is None else _from_text(stopped_at),
        meter_stop_wh=meter_stop_wh,
        stop_reason=None if stop_reason is None else StopReason(stop_reason),
        stop_id_token=stop_id_token,
    )


def _row_to_entry(row: tuple[Any, ...]) -> OutboxEntry:
    """Build an OutboxEntry from a row selected with `_ENTRY_COLUMNS`."""
    seq, tx_local_id, kind, payload, created_at, attempts = row
    return OutboxEntry(
        seq=seq,
        tx_local_id=tx_local_id,
        kind=TxEventKind(kind),
        payload=json.loads(payload),
        created_at=_from_text(created_at),
        attempts=attempts,
    )


class Store:
    """The agent's SQLite database; satisfies `agent.core.ports.TransactionJournal`.

    Entry timestamps (`OutboxEntry.created_at`) are the caller's times: `started_at`
    for STARTED, `at` for UPDATED, `stopped_at` for ENDED. Methods on a closed store
    raise `sqlite3.ProgrammingError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (or create) the database at `path` and bring its schema up to date.

        Raises StoreSchemaError if the file was written by a newer schema, and
        sqlite3.Error if it cannot be opened.
        """
        # isolation_level=None: no implicit transactions; `writing` issues BEGIN/COMMIT.
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._closed = False
        try:
            self._configure(in_memory=os.fspath(path) == ":memory:")
            self._migrate()
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for sibling stores in agent/store (event-loop thread only)."""
        return self._conn

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        if not self._closed:
            self._closed = True
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

    def _configure(self, *, in_memory: bool) -> None:
        """Set the connection pragmas: WAL for files, FULL sync, foreign keys."""
        conn = self._conn
        if not in_memory:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                _log.warning("SQLite refused WAL mode (got %r); durability still holds", mode)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Another process (status CLI, backup) may hold a lock briefly; wait, not fail.
        conn.execute("PRAGMA busy_timeout=5000")

    def _migrate(self) -> None:
        """Apply every migration step above the file's user_version, each atomically."""
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"database schema version {version} is newer than supported {SCHEMA_VERSION}"
            )
        for target, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.writing() as conn:
                for statement in statements:
                    conn.execute(statement)
                # PRAGMA takes no parameters; `target` is an int we computed.
                conn.execute(f"PRAGMA user_version = {int(target)}")
            _log.info("store schema migrated to version %d", target)

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one SQLite write transaction, committed before returning
        (sibling stores in agent/store write through this too)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- settings ----------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """Return the stored value of setting `key`, or None if it was never set."""
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        """Store `value` for setting `key`, replacing any previous value."""
        with self.writing() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def settings(self) -> dict[str, str]:
        """Return every stored setting."""
        rows = self._conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        return {str(key): str(value) for key, value in rows}

    # -- transaction journal -------------------------------------------------------------

    def begin_transaction(
        self,
        *,
        evse_id: int,
        connector_id: int,
        id_token: str,
        token_type: TokenType,
        started_at: datetime,
        meter_start_wh: float,
        reservation_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TxRecord:
        """Record a new transaction and enqueue its STARTED entry; return the record.

        The STARTED payload holds the transaction's start facts (times as ISO 8601 UTC
        text) and the caller's `details`. Raises ValueError if `started_at` is naive.
        """
        started_text = _to_text(started_at)
        payload = _dump(
            {
                **(details or {}),
                "evse_id": evse_id,
                "connector_id": connector_id,
                "id_token": id_token,
                "token_type": str(token_type),
                "started_at": started_text,
                "meter_start_wh": meter_start_wh,
                "reservation_id": reservation_id,
            }
        )
        with self.writing() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (evse_id, connector_id, id_token, token_type,"
                " started_at, meter_start_wh, last_meter_wh, last_meter_at, reservation_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evse_id,
                    connector_id,
                    id_token,
                    str(token_type),
                    started_text,
                    meter_start_wh,
                    meter_start_wh,
                    started_text,
                    reservation_id,
                ),
            )
            local_id = cursor.lastrowid
            if local_id is None:  # cannot happen after a successful INSERT into a rowid table
                raise sqlite3.DatabaseError("INSERT into transactions returned no rowid")
            self._enqueue(conn, local_id, TxEventKind.STARTED, payload, started_text)
        return TxRecord(
            local_id=local_id,
            evse_id=evse_id,
            connector_id=connector_id,
            id_token=id_token,
            token_type=token_type,
            started_at=_from_text(started_text),
            meter_start_wh=meter_start_wh,
            last_meter_wh=meter_start_wh,
            last_meter_at=_from_text(started_text),
            reservation_id=reservation_id,
        )

    def record_meter(
        self,
        local_id: int,
        *,
        at: datetime,
        energy_wh: float,
        payload: Mapping[str, Any],
        enqueue: bool,
    ) -> None:
        """Persist the latest meter register; enqueue an UPDATED entry when `enqueue`.

        Raises KeyError for an unknown transaction, ValueError for an ended one or a
        naive `at`.
        """
        at_text = _to_text(at)
        payload_text = _dump(payload) if enqueue else None
        with self.writing() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET last_meter_wh = ?, last_meter_at = ?"
                " WHERE local_id = ? AND stopped_at IS NULL",
                (energy_wh, at_text, local_id),
            )
            if cursor.rowcount == 0:
                self._raise_not_open(conn, local_id)
            if payload_text is not None:
                self._enqueue(conn, local_id, TxEventKind.UPDATED, payload_text, at_text)

    def record_event(
        self,
        local_id: int,
        *,
        at: datetime,
        payload: Mapping[str, Any],
        id_token: str | None = None,
        token_type: TokenType | None = None,
    ) -> None:
        """Enqueue an UPDATED entry that is no meter sample; with `id_token`, the
        transaction's token becomes that one (learned after the start).

        Raises KeyError for an unknown transaction, ValueError for an ended one.
        """
        at_text = _to_text(at)
        payload_text = _dump(payload)
        with self.writing() as conn:
            open_row = conn.execute(
                "SELECT 1 FROM transactions WHERE local_id = ? AND stopped_at IS NULL",
                (local_id,),
            ).fetchone()
            if open_row is None:
                self._raise_not_open(conn, local_id)
            if id_token is not None:
                conn.execute(
                    "UPDATE transactions SET id_token = ?, token_type = ? WHERE local_id = ?",
                    (id_token, str(token_type or TokenType.ISO14443), local_id),
                )
            self._enqueue(conn, local_id, TxEventKind.UPDATED, payload_text, at_text)

    def entry_position(self, tx_local_id: int, seq: int) -> int:
        """How many entries of the transaction precede entry `seq` (0 for the first)."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE tx_local_id = ? AND seq < ?", (tx_local_id, seq)
        ).fetchone()
        return int(row[0])

    def end_transaction(
        self,
        local_id: int,
        *,
        stopped_at: datetime,
        meter_stop_wh: float,
        reason: StopReason,
        stop_id_token: str | None,
        payload: Mapping[str, Any],
    ) -> TxRecord:
        """Close the transaction and enqueue its ENDED entry; return the closed record.

        The final register also becomes `last_meter_wh`/`last_meter_at`. Raises KeyError
        for an unknown transaction, ValueError if it already ended or `stopped_at` is naive.
        """
        stopped_text = _to_text(stopped_at)
        payload_text = _dump(payload)
        with self.writing() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET stopped_at = ?, meter_stop_wh = ?, stop_reason = ?,"
                " stop_id_token = ?, last_meter_wh = ?, last_meter_at = ?"
                " WHERE local_id = ? AND stopped_at IS NULL",
                (
                    stopped_text,
                    meter_stop_wh,
                    str(reason),
                    stop_id_token,
                    meter_stop_wh,
                    stopped_text,
                    local_id,
                ),
            )
            if cursor.rowcount == 0:
                self._raise_not_open(conn, local_id)
            self._enqueue(conn, local_id, TxEventKind.ENDED, payload_text, stopped_text)
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
            ).fetchone()
        return _row_to_tx(row)

    def open_transactions(self) -> list[TxRecord]:
        """Transactions that have begun and not yet ended, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE stopped_at IS NULL ORDER BY local_id"
        ).fetchall()
        return [_row_to_tx(row) for row in rows]

    def get_transaction(self, local_id: int) -> TxRecord:
        """Return the transaction with `local_id`; raise KeyError if unknown."""
        row = self._conn.execute(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
        ).fetchone()
        if row is None:
            raise KeyError(local_id)
        return _row_to_tx(row)

    def set_csms_tx_id(self, local_id: int, csms_tx_id: str) -> None:
        """Record the CSMS's id for the transaction (open or ended); raise KeyError if unknown."""
        with self.writing() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET csms_tx_id = ? WHERE local_id = ?",
                (csms_tx_id, local_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(local_id)

    def last_tx_for_evse(self, evse_id: int) -> TxRecord | None:
        """Return the most recently begun transaction on `evse_id`, open or ended, or None."""
        row = self._conn.execute(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE evse_id = ?"
            " ORDER BY local_id DESC LIMIT 1",
            (evse_id,),
        ).fetchone()
        return None if row is None else _row_to_tx(row)

    # -- outbox ------------------------------------------------------------------------

    def next_pending(self, after_seq: int = 0) -> OutboxEntry | None:
        """Return the lowest-seq pending entry with seq > `after_seq`, or None."""
        row = self._conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE state = ? AND seq > ? ORDER BY seq LIMIT 1",
            (_PENDING, after_seq),
        ).fetchone()
        return None if row is None else _row_to_entry(row)

    def pending_count(self, tx_local_id: int | None = None) -> int:
        """Return how many entries wait for delivery (of one transaction, if given)."""
        if tx_local_id is None:
            row = self._conn.execute(
                "SELECT count(*) FROM outbox WHERE state = ?", (_PENDING,)
            ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT count(*) FROM outbox WHERE tx_local_id = ? AND state = ?",
                (tx_local_id, _PENDING),
            ).fetchone()
        return int(row[0])

    def mark_delivered(self, seq: int) -> None:
        """Mark entry `seq` delivered (idempotent); raise KeyError if unknown."""
        with self.writing() as conn:
            cursor = conn.execute("UPDATE outbox SET state = ? WHERE seq = ?", (_DELIVERED, seq))
            if cursor.rowcount == 0:
                raise KeyError(seq)

    def note_attempt(self, seq: int) -> int:
        """Count one more delivery attempt of entry `seq` and return the new count.

        Raises KeyError if unknown.
        """
        with self.writing() as conn:
            cursor = conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            if cursor.rowcount == 0:
                raise KeyError(seq)
            row = conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return int(row[0])

    def mark_dropped(self, seq: int, reason: str) -> None:
        """Give up on pending entry `seq`, keeping it for audit with `reason`.

        Raises KeyError if unknown, ValueError if it is no longer pending.
        """
        with self.writing() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET state = ?, drop_reason = ? WHERE seq = ? AND state = ?",
                (_DROPPED, reason, seq, _PENDING),
            )
            if cursor.rowcount == 0:
                row = conn.execute("SELECT state FROM outbox WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    raise KeyError(seq)
                raise ValueError(f"outbox entry {seq} is {row[0]}, not pending")

    def tx_entries(self, local_id: int) -> list[OutboxEntry]:
        """Every remaining entry of transaction `local_id` in seq order, whatever its state.

        Unknown (or pruned) transactions give an empty list.
        """
        rows = self._conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE tx_local_id = ? ORDER BY seq",
            (local_id,),
        ).fetchall()
        return [_row_to_entry(row) for row in rows]

    def prune_delivered(self, keep_last: int = 1000) -> int:
        """Delete the entries of settled transactions except the newest `keep_last` ones.

        A transaction is settled when it has ended and none of its entries is pending.
        Transaction rows are kept. Returns how many entries were deleted; raises
        ValueError if `keep_last` is negative.
        """
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        with self.writing() as conn:
            cursor = conn.execute(
                "DELETE FROM outbox WHERE state != ? AND tx_local_id IN ("
                "  SELECT t.local_id FROM transactions AS t"
                "  WHERE t.stopped_at IS NOT NULL"
                "  AND t.local_id NOT IN ("
                "    SELECT local_id FROM transactions ORDER BY local_id DESC LIMIT ?)"
                "  AND NOT EXISTS ("
                "    SELECT 1 FROM outbox AS o WHERE o.tx_local_id = t.local_id AND o.state = ?)"
                ")",
                (_PENDING, keep_last, _PENDING),
            )
            return cursor.rowcount

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _enqueue(
        conn: sqlite3.Connection,
        local_id: int,
        kind: TxEventKind,
        payload_text: str,
        created_text: str,
    ) -> None:
        """Append a pending entry to the outbox (inside the caller's write transaction)."""
        conn.execute(
            "INSERT INTO outbox (tx_local_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            (local_id, str(kind), payload_text, created_text),
        )

    @staticmethod
    def _raise_not_open(conn: sqlite3.Connection, local_id: int) -> NoReturn:
        """Raise KeyError if transaction `local_id` is unknown, else ValueError (ended)."""
        row = conn.execute("SELECT 1 FROM transactions WHERE local_id = ?", (local_id,)).fetchone()
        if row is None:
            raise KeyError(local_id)
        raise ValueError(f"transaction {local_id} has already ended")


if TYPE_CHECKING:
    from agent.core.ports import TransactionJournal

    def _store_is_a_journal(store: Store) -> TransactionJournal:
        """Let mypy prove that Store satisfies the core's TransactionJournal port."""
        return store
