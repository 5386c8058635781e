"""SQLite persistence: the transaction journal, its ordered outbox, and runtime settings.

Responsibilities (DESIGN idea 5 and 6):

- the transaction journal: one row per transaction under a local key, rewritten at
  each step (begin, meter, end, CSMS id);
- the outbox: every transaction-related message, in one global order (`seq`), with its
  delivery state (pending, delivered, dropped) and attempt count. A journal change and
  its outbox entry are written in one SQLite transaction, so a crash leaves both or
  neither;
- runtime settings: OCPP configuration values the CSMS changed (strings).

Durability: file databases run in WAL mode with `synchronous=FULL`. Journal, outbox and
settings writes are queued to a writer thread (database.py, writer.py) and committed in
order, a few per fsync, so the event loop never waits for the disk. A method returns once
the write is *accepted*: its ids are allocated and every reader of this store sees it at
once (overlay.py). It is *durable* once committed; `flush()`/`wait_durable()` wait for
that, `subscribe_durable()` tells. The outbox only hands out durable entries
(`next_pending` reads the database, a batch at a time: readahead.py), so the CSMS never
sees a message that a power cut could take back. A delivery mark is a lazy write: it
may wait up to writer.LAZY_WINDOW_S to share an fsync, so a crash just after a delivery
may send that entry again (at least once; never lost).
`Store(path, background=False)` and `:memory:` databases commit on the caller's thread
before returning, as every method did before.

A full disk or a read-only database (SQLITE_FULL, SQLITE_READONLY, I/O errors) never
raises from a journal method: the writes stay queued in memory, in order, `health`
turns unwritable (listeners are told), and `retry_forever`/`retry_now` write them when
the disk accepts writes again; nothing acknowledged is lost while the process lives.
The queue is bounded (`max_backlog`): once full, `begin_transaction` raises
StoreBacklogFull (no new transaction without a place to keep it), and a periodic meter
sample keeps only the register (the transaction's row) instead of a queued message.
Ends, token changes, CSMS ids and delivery marks are always accepted: they are few per
transaction, and losing them would lose a transaction that runs.

This module must not: know any OCPP version or build wire messages (the adapters do),
read a clock (every timestamp comes from the caller), or do full-table scans on the hot
path (indexes cover every frequent query). Its methods are called from one thread (the
event loop's); only the writer thread runs besides it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from agent.core.ports import OutboxEntry, StopReason, TxEventKind, TxRecord
from agent.store.database import Database, statement
from agent.store.overlay import ENTRY, TX, PendingEntry
from agent.store.readahead import READ_AHEAD_ENTRIES, ReadAhead, RecordCache
from agent.store.schema import (
    DELIVERED,
    DROPPED,
    ENTRY_COLUMNS,
    PENDING,
    TX_COLUMNS,
    StoreSchemaError,
    dump,
    from_text,
    load,
    next_id,
    row_to_entry,
    row_to_tx,
    to_text,
    tx_to_row,
)
from agent.store.writer import DEFAULT_MAX_BACKLOG, StoreBacklogFull, StoreHealth
from drivers.types import TokenType

__all__ = ["Store", "StoreBacklogFull", "StoreHealth", "StoreSchemaError"]

_log = logging.getLogger(__name__)

_UPSERT_TX: Final = (
    f"INSERT INTO transactions ({TX_COLUMNS}) VALUES ({', '.join('?' * 15)})"
    " ON CONFLICT (local_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in TX_COLUMNS.split(",")[1:])
)
_INSERT_ENTRY: Final = (
    "INSERT INTO outbox (seq, tx_local_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (seq) DO NOTHING"
)


# The next pending entries, each with its position among its transaction's entries.
_READ_AHEAD: Final = (
    f"SELECT {ENTRY_COLUMNS}, (SELECT COUNT(*) FROM outbox AS o"
    "  WHERE o.tx_local_id = outbox.tx_local_id AND o.seq < outbox.seq)"
    " FROM outbox WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def _upsert_tx(tx: TxRecord) -> Callable[[sqlite3.Connection], None]:
    """A write that makes the transaction's row hold exactly `tx`."""
    return statement(_UPSERT_TX, tx_to_row(tx))


class Store(Database):
    """The agent's SQLite database; satisfies `agent.core.ports.TransactionJournal`.

    Entry timestamps (`OutboxEntry.created_at`) are the caller's times: `started_at`
    for STARTED, `at` for UPDATED, `stopped_at` for ENDED. Methods on a closed store
    raise `sqlite3.ProgrammingError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        background: bool = True,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        """Open (or create) the database at `path`; see `Database.__init__`."""
        super().__init__(path, background=background, max_backlog=max_backlog)
        # Ids are given out here, in order, before their rows are written.
        self._next_local_id = next_id(self._conn, "transactions", "local_id")
        self._next_seq = next_id(self._conn, "outbox", "seq")
        self._sampling_degraded = False  # the backlog is full: samples keep the register
        self._ahead = ReadAhead()  # pending entries read ahead for the outbox sender
        self._recent = RecordCache()  # the newest records of recently used transactions

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
        text) and the caller's `details`. Raises ValueError if `started_at` is naive,
        StoreBacklogFull while the disk refuses writes and the backlog is full.
        """
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
        self._live()
        if not self._writer.accepting_new:
            raise StoreBacklogFull(
                f"the store cannot write ({self.health.error}) and holds"
                f" {self.health.backlog} writes: no new transaction"
            )
        started = from_text(started_text)
        tx = TxRecord(
            local_id=self._next_local_id,
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
        self._next_local_id += 1
        self._write_tx_and_entry(tx, TxEventKind.STARTED, payload, started_text)
        return tx

    def record_meter(
        self,
        local_id: int,
        *,
        at: datetime,
        energy_wh: float,
        payload: Mapping[str, Any],
        enqueue: bool,
    ) -> None:
        """Persist the latest meter register; enqueue an UPDATED entry when `enqueue`
        (while the backlog is full, only the register is kept).

        Raises KeyError for an unknown transaction, ValueError for an ended one or a
        naive `at`.
        """
        at_text = to_text(at)
        payload_text = dump(payload) if enqueue else None
        tx = replace(
            self._open_tx(local_id), last_meter_wh=energy_wh, last_meter_at=from_text(at_text)
        )
        if payload_text is not None and not self._writer.accepting_new:
            if not self._sampling_degraded:
                _log.warning("store backlog full: meter samples keep only the register")
            self._sampling_degraded = True
            payload_text = None
        elif self._sampling_degraded and self._writer.accepting_new:
            self._sampling_degraded = False
        if payload_text is None:
            self._submit(_upsert_tx(tx), ((TX, local_id),), fold=True, tx=tx)
        else:
            self._write_tx_and_entry(tx, TxEventKind.UPDATED, payload_text, at_text)

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
        at_text = to_text(at)
        payload_text = dump(payload)
        tx = self._open_tx(local_id)
        if id_token is not None:
            tx = replace(tx, id_token=id_token, token_type=token_type or TokenType.ISO14443)
        self._write_tx_and_entry(tx, TxEventKind.UPDATED, payload_text, at_text)

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
        stopped_text = to_text(stopped_at)
        payload_text = dump(payload)
        stopped = from_text(stopped_text)
        tx = replace(
            self._open_tx(local_id),
            stopped_at=stopped,
            meter_stop_wh=meter_stop_wh,
            stop_reason=reason,
            stop_id_token=stop_id_token,
            last_meter_wh=meter_stop_wh,
            last_meter_at=stopped,
        )
        self._write_tx_and_entry(tx, TxEventKind.ENDED, payload_text, stopped_text)
        return tx

    def _write_tx_and_entry(
        self, tx: TxRecord, kind: TxEventKind, payload_text: str, created_text: str
    ) -> None:
        """Queue one write that sets the transaction's row and appends an outbox entry."""
        seq = self._next_seq
        self._next_seq += 1
        row = tx_to_row(tx)
        entry_row = (seq, tx.local_id, str(kind), payload_text, created_text)

        def apply(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_TX, row)
            conn.execute(_INSERT_ENTRY, entry_row)

        entry = OutboxEntry(
            seq=seq,
            tx_local_id=tx.local_id,
            kind=kind,
            payload=load(payload_text),
            created_at=from_text(created_text),
            attempts=0,
        )
        self._submit(
            apply,
            ((TX, tx.local_id), (ENTRY, seq)),
            tx=tx,
            entry=PendingEntry(entry, PENDING, 0),
        )

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
        """Queue a write (Database._submit) and keep the caches it touches up to date."""
        super()._submit(apply, keys, fold=fold, lazy=lazy, tx=tx, entry=entry, setting=setting)
        if tx is not None:
            self._recent.put(tx)
        if entry is not None:
            self._ahead.update(entry)

    def _find_tx(self, local_id: int) -> TxRecord | None:
        """The transaction as acknowledged (cache, overlay, then database), or None."""
        conn = self._live()
        cached = self._recent.get(local_id)
        if cached is not None:
            return cached
        with self._writer.lock:
            pending = self._overlay.txs.get(local_id)
        if pending is not None:
            return pending[0]
        row = conn.execute(
            f"SELECT {TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
        ).fetchone()
        if row is None:
            return None
        tx = row_to_tx(row)
        self._recent.put(tx)
        return tx

    def _open_tx(self, local_id: int) -> TxRecord:
        """The open transaction `local_id`; KeyError if unknown, ValueError if ended."""
        tx = self._find_tx(local_id)
        if tx is None:
            raise KeyError(local_id)
        if tx.stopped_at is not None:
            raise ValueError(f"transaction {local_id} has already ended")
        return tx

    def last_entry_at(self, tx_local_id: int) -> datetime | None:
        """The time of the transaction's latest journal entry (any kind), or None."""
        times = [p.entry.created_at for p in self._pending_entries(tx_local_id).values()]
        row = (
            self._live()
            .execute(
                "SELECT created_at FROM outbox WHERE tx_local_id = ? ORDER BY seq DESC LIMIT 1",
                (tx_local_id,),
            )
            .fetchone()
        )
        if row is not None:
            times.append(from_text(row[0]))
        return max(times, default=None)

    def open_transactions(self) -> list[TxRecord]:
        """Transactions that have begun and not yet ended, oldest first."""
        conn = self._live()
        with self._writer.lock:
            pending = {local_id: tx for local_id, (tx, _) in self._overlay.txs.items()}
        rows = conn.execute(
            f"SELECT {TX_COLUMNS} FROM transactions WHERE stopped_at IS NULL ORDER BY local_id"
        ).fetchall()
        found = {tx.local_id: tx for tx in map(row_to_tx, rows)}
        found.update(pending)
        return [found[i] for i in sorted(found) if found[i].stopped_at is None]

    def get_transaction(self, local_id: int) -> TxRecord:
        """Return the transaction with `local_id`; raise KeyError if unknown."""
        tx = self._find_tx(local_id)
        if tx is None:
            raise KeyError(local_id)
        return tx

    def set_csms_tx_id(self, local_id: int, csms_tx_id: str) -> None:
        """Record the CSMS's id for the transaction (open or ended); raise KeyError if unknown."""
        tx = replace(self.get_transaction(local_id), csms_tx_id=csms_tx_id)
        self._submit(_upsert_tx(tx), ((TX, local_id),), tx=tx)

    def last_tx_for_evse(self, evse_id: int) -> TxRecord | None:
        """Return the most recently begun transaction on `evse_id`, open or ended, or None."""
        conn = self._live()
        with self._writer.lock:
            pending = [tx for tx, _ in self._overlay.txs.values() if tx.evse_id == evse_id]
        row = conn.execute(
            f"SELECT {TX_COLUMNS} FROM transactions WHERE evse_id = ?"
            " ORDER BY local_id DESC LIMIT 1",
            (evse_id,),
        ).fetchone()
        # On equal ids the overlay's (newer) version wins: it sorts after the row's.
        candidates = [(tx.local_id, 1, tx) for tx in pending]
        if row is not None:
            candidates.append((row[0], 0, row_to_tx(row)))
        return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None

    # -- outbox ------------------------------------------------------------------------

    def _pending_entries(self, tx_local_id: int | None = None) -> dict[int, PendingEntry]:
        """Overlay entries (of one transaction, if given), by seq."""
        with self._writer.lock:
            return {
                seq: pending
                for seq, pending in self._overlay.entries.items()
                if tx_local_id is None or pending.entry.tx_local_id == tx_local_id
            }

    def next_pending(self, after_seq: int = 0) -> OutboxEntry | None:
        """Return the lowest-seq pending entry with seq > `after_seq`, or None.

        Only durable entries are returned: an entry still waiting for its commit is not
        sent (nor any after it, as they commit in order). Entries are read ahead in
        batches and parsed once (readahead.py); a caller that passes the seq it last
        settled as `after_seq` gets each from memory.
        """
        conn = self._live()
        held = self._ahead.next_after(after_seq)
        if held is not None:
            return held.entry
        start = after_seq
        while True:
            # The overlay first, the database second (overlay.py): a commit in between
            # drops a value from the overlay only once the database holds it.
            with self._writer.lock:
                overlay = dict(self._overlay.entries)
            rows = conn.execute(_READ_AHEAD, (PENDING, start, READ_AHEAD_ENTRIES)).fetchall()
            shadows = [overlay.get(row[0]) for row in rows]  # acknowledged states win
            batch = [
                (
                    PendingEntry(row_to_entry(row[:-1]), PENDING, 0) if shadow is None else shadow,
                    row[-1],
                )
                for row, shadow in zip(rows, shadows, strict=True)
                if shadow is None or shadow.state == PENDING
            ]
            if batch or len(rows) < READ_AHEAD_ENTRIES:
                self._ahead.fill(after_seq, batch)
                return batch[0][0].entry if batch else None
            start = rows[-1][0]  # a whole batch settled but not yet committed: read on

    def pending_count(self, tx_local_id: int | None = None) -> int:
        """Return how many entries wait for delivery (of one transaction, if given),
        durable or not yet."""
        conn = self._live()
        overlay = self._pending_entries(tx_local_id)
        shadowed = json.dumps(list(overlay))
        if tx_local_id is None:
            row = conn.execute(
                "SELECT count(*) FROM outbox WHERE state = ?"
                " AND seq NOT IN (SELECT value FROM json_each(?))",
                (PENDING, shadowed),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT count(*) FROM outbox WHERE tx_local_id = ? AND state = ?"
                " AND seq NOT IN (SELECT value FROM json_each(?))",
                (tx_local_id, PENDING, shadowed),
            ).fetchone()
        return int(row[0]) + sum(p.state == PENDING for p in overlay.values())

    def entry_position(self, tx_local_id: int, seq: int) -> int:
        """How many entries of the transaction precede entry `seq` (0 for the first)."""
        conn = self._live()
        known = self._ahead.position(tx_local_id, seq)
        if known is not None:
            return known
        overlay = {s: p for s, p in self._pending_entries(tx_local_id).items() if s < seq}
        row = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE tx_local_id = ? AND seq < ?"
            " AND seq NOT IN (SELECT value FROM json_each(?))",
            (tx_local_id, seq, json.dumps(list(overlay))),
        ).fetchone()
        return int(row[0]) + len(overlay)

    def _entry(self, seq: int) -> PendingEntry:
        """Entry `seq` and its state as acknowledged; raise KeyError if unknown."""
        conn = self._live()
        held = self._ahead.get(seq)  # write-through: never older than the overlay
        if held is not None:
            return held
        with self._writer.lock:
            pending = self._overlay.entries.get(seq)
        if pending is not None:
            return pending
        row = conn.execute(
            f"SELECT {ENTRY_COLUMNS}, state FROM outbox WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            raise KeyError(seq)
        return PendingEntry(row_to_entry(row[:-1]), str(row[-1]), 0)

    def mark_delivered(self, seq: int) -> None:
        """Mark entry `seq` delivered (idempotent); raise KeyError if unknown.

        Readers see the mark at once; its commit may wait a few tens of ms to share an
        fsync with others (a lazy write, writer.py). A crash before that commit leaves
        the entry pending, and it is sent again: at least once, never lost.
        """
        current = self._entry(seq)
        if current.state == DELIVERED:
            return
        self._submit(
            statement("UPDATE outbox SET state = ? WHERE seq = ?", (DELIVERED, seq)),
            ((ENTRY, seq),),
            lazy=True,
            entry=replace(current, state=DELIVERED),
        )

    def note_attempt(self, seq: int) -> int:
        """Count one more delivery attempt of entry `seq` and return the new count.

        Raises KeyError if unknown.
        """
        current = self._entry(seq)
        attempts = current.entry.attempts + 1
        self._submit(
            statement("UPDATE outbox SET attempts = ? WHERE seq = ?", (attempts, seq)),
            ((ENTRY, seq),),
            entry=replace(current, entry=replace(current.entry, attempts=attempts)),
        )
        return attempts

    def mark_dropped(self, seq: int, reason: str) -> None:
        """Give up on pending entry `seq`, keeping it for audit with `reason`.

        Raises KeyError if unknown, ValueError if it is no longer pending.
        """
        current = self._entry(seq)
        if current.state != PENDING:
            raise ValueError(f"outbox entry {seq} is {current.state}, not pending")
        self._submit(
            statement(
                "UPDATE outbox SET state = ?, drop_reason = ? WHERE seq = ?",
                (DROPPED, reason, seq),
            ),
            ((ENTRY, seq),),
            entry=replace(current, state=DROPPED),
        )

    def tx_entries(self, local_id: int) -> list[OutboxEntry]:
        """Every remaining entry of transaction `local_id` in seq order, whatever its state.

        Unknown (or pruned) transactions give an empty list.
        """
        conn = self._live()
        overlay = self._pending_entries(local_id)
        rows = conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE tx_local_id = ? ORDER BY seq",
            (local_id,),
        ).fetchall()
        found = {row[0]: row_to_entry(row) for row in rows}
        found.update((seq, pending.entry) for seq, pending in overlay.items())
        return [found[seq] for seq in sorted(found)]

    def prune_delivered(self, keep_last: int = 1000) -> int:
        """Delete the entries of settled transactions except the newest `keep_last` ones.

        A transaction is settled when it has ended and none of its entries is pending.
        Transaction rows are kept. Writes queued before are flushed first (this blocks
        for a commit: maintenance, not the hot path). Returns how many entries were
        deleted; raises ValueError if `keep_last` is negative, sqlite3.Error if the
        database refuses the delete.
        """
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        self.flush()  # what is still queued only counts once committed (conservative)
        self._ahead.clear()
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
                (PENDING, keep_last, PENDING),
            )
            return cursor.rowcount


if TYPE_CHECKING:
    from agent.core.ports import TransactionJournal

    def _store_is_a_journal(store: Store) -> TransactionJournal:
        """Let mypy prove that Store satisfies the core's TransactionJournal port."""
        return store
