"""The store's SQLite schema, its migrations, and the conversions between rows and records.

Responsibilities: the table definitions (as numbered migration steps), the per-connection
pragmas (WAL, `synchronous=FULL`, foreign keys, busy timeout), and turning rows into the
core's records and back (times as ISO 8601 UTC text, payloads as compact JSON).

This module must not: hold state, open connections of its own, or know any OCPP version.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from agent.core.events import SAMPLE_KEY
from agent.core.ports import EntryOutline, OutboxEntry, StopReason, TxEventKind, TxRecord
from drivers.types import TokenType

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    orjson = None  # type: ignore[assignment]

_log = logging.getLogger("agent.store")

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DROPPED: Final = "dropped"

# Schema migrations: entry i brings the database from user_version i to i + 1. Append
# new steps; never edit a released one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
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
    (
        # An entry's position among its transaction's entries (2.0.1 seqNo), fixed when
        # it is written, so that deleting delivered entries never shifts the later ones.
        "ALTER TABLE outbox ADD COLUMN position INTEGER NOT NULL DEFAULT 0",
        """UPDATE outbox SET position = (
            SELECT COUNT(*) FROM outbox AS o
            WHERE o.tx_local_id = outbox.tx_local_id AND o.seq < outbox.seq)""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

TX_COLUMNS: Final = (
    "local_id, evse_id, connector_id, id_token, token_type, started_at, meter_start_wh,"
    " last_meter_wh, last_meter_at, reservation_id, csms_tx_id, stopped_at, meter_stop_wh,"
    " stop_reason, stop_id_token"
)
ENTRY_COLUMNS: Final = "seq, tx_local_id, kind, payload, created_at, attempts"


class StoreSchemaError(Exception):
    """The database file has a schema this version of the agent cannot use."""


def configure(conn: sqlite3.Connection, *, in_memory: bool) -> None:
    """Set a connection's pragmas: WAL for files, FULL sync, foreign keys, busy wait."""
    if in_memory:
        # Fleet mode holds thousands of private in-memory stores: 1 KiB pages make each
        # about 40 KiB smaller than 4 KiB ones (bench/README.md, "Scale"). Set before the
        # first table is created, or it has no effect.
        conn.execute("PRAGMA page_size=1024")
    if not in_memory:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            _log.warning("SQLite refused WAL mode (got %r); durability still holds", mode)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Another process (status CLI, backup) may hold a lock briefly; wait, not fail.
    conn.execute("PRAGMA busy_timeout=5000")


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration step above the file's user_version, each atomically.

    Raises StoreSchemaError if the file was written by a newer schema.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"database schema version {version} is newer than supported {SCHEMA_VERSION}"
        )
    for target, statements in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; `target` is an int we computed.
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        _log.info("store schema migrated to version %d", target)


def next_id(conn: sqlite3.Connection, table: str, column: str) -> int:
    """The next AUTOINCREMENT id of `table`: never one used before, even if pruned."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    used = 0 if row is None else int(row[0])
    # `table`/`column` are our constants, never input.
    (highest,) = conn.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchone()
    return max(used, int(highest)) + 1


def to_text(at: datetime) -> str:
    """Encode an aware datetime as ISO 8601 UTC text; raise ValueError if naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the store takes timezone-aware UTC times")
    return at.astimezone(UTC).isoformat()


def from_text(text: str) -> datetime:
    """Decode ISO 8601 text written by `to_text` into an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def dump(payload: Mapping[str, Any]) -> str:
    """Encode a payload as JSON text; raise ValueError/TypeError if it is not plain JSON."""
    return json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)


def load(text: str) -> Any:
    """Decode JSON text written by `dump`; raise ValueError if it is not JSON."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except ValueError:
            pass  # huge integers, lone surrogates: the stdlib decides, as it wrote them
    return json.loads(text)


def started_record(
    local_id: int,
    *,
    evse_id: int,
    connector_id: int,
    id_token: str,
    token_type: TokenType,
    started_at: datetime,
    meter_start_wh: float,
    reservation_id: int | None,
    details: Mapping[str, Any] | None,
) -> tuple[TxRecord, str, str]:
    """A new transaction's record, its STARTED entry's payload (JSON) and time (text), as
    both journals (SQLite and memory) write them. Raises ValueError for a naive time."""
    started_text = to_text(started_at)
    payload = dump(
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
    started = from_text(started_text)
    tx = TxRecord(
        local_id=local_id,
        evse_id=evse_id,
        connector_id=connector_id,
        id_token=id_token,
        token_type=token_type,
        started_at=started,
        meter_start_wh=meter_start_wh,
        last_meter_wh=meter_start_wh,
        last_meter_at=started,
        reservation_id=reservation_id,
    )
    return tx, payload, started_text


def ended_record(
    tx: TxRecord,
    *,
    stopped_at: datetime,
    meter_stop_wh: float,
    reason: StopReason,
    stop_id_token: str | None,
) -> tuple[TxRecord, str]:
    """`tx` closed (the final register also its last reading) and its stop time as text.
    Raises ValueError for a naive time."""
    stopped_text = to_text(stopped_at)
    stopped = from_text(stopped_text)
    closed = replace(
        tx,
        stopped_at=stopped,
        meter_stop_wh=meter_stop_wh,
        stop_reason=reason,
        stop_id_token=stop_id_token,
        last_meter_wh=meter_stop_wh,
        last_meter_at=stopped,
    )
    return closed, stopped_text


def row_to_tx(row: tuple[Any, ...]) -> TxRecord:
    """Build a TxRecord from a row selected with `TX_COLUMNS`."""
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
        started_at=from_text(started_at),
        meter_start_wh=meter_start_wh,
        last_meter_wh=last_meter_wh,
        last_meter_at=from_text(last_meter_at),
        reservation_id=reservation_id,
        csms_tx_id=csms_tx_id,
        stopped_at=None if stopped_at is None else from_text(stopped_at),
        meter_stop_wh=meter_stop_wh,
        stop_reason=None if stop_reason is None else StopReason(stop_reason),
        stop_id_token=stop_id_token,
    )


def tx_to_row(tx: TxRecord) -> tuple[Any, ...]:
    """The row of `tx` in `TX_COLUMNS` order (the inverse of `row_to_tx`)."""
    return (
        tx.local_id,
        tx.evse_id,
        tx.connector_id,
        tx.id_token,
        str(tx.token_type),
        to_text(tx.started_at),
        tx.meter_start_wh,
        tx.last_meter_wh,
        to_text(tx.last_meter_at),
        tx.reservation_id,
        tx.csms_tx_id,
        None if tx.stopped_at is None else to_text(tx.stopped_at),
        tx.meter_stop_wh,
        None if tx.stop_reason is None else str(tx.stop_reason),
        tx.stop_id_token,
    )


def row_to_entry(row: tuple[Any, ...]) -> OutboxEntry:
    """Build an OutboxEntry from a row selected with `ENTRY_COLUMNS`."""
    seq, tx_local_id, kind, payload, created_at, attempts = row
    return OutboxEntry(
        seq=seq,
        tx_local_id=tx_local_id,
        kind=TxEventKind(kind),
        payload=load(payload),
        created_at=from_text(created_at),
        attempts=attempts,
    )


def outline_of(entry: OutboxEntry) -> EntryOutline:
    """An entry's outline (for entries already parsed: the overlay's)."""
    return EntryOutline(entry.seq, entry.kind, entry.created_at, SAMPLE_KEY in entry.payload)
