"""The SQLite journal: transaction rows and the outbox entries each change appends.

Responsibilities: give out local ids and outbox seqs in order, write a transaction's row
and its new entry in one queued write (database.py), fix each entry's position among its
transaction's entries when it is written, and answer the journal's reads (the core's
TransactionJournal port), merging what is queued (overlay.py) with what is committed.
The outbox's delivery side and the store's whole contract are in sqlite.py (`Store`).

This module must not: know any OCPP version, read a clock, or deliver anything.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from agent.core.ports import OutboxEntry, StopReason, TxEventKind, TxRecord
from agent.store.database import Database, statement
from agent.store.overlay import ENTRY, TX, PendingEntry
from agent.store.readahead import ReadAhead, RecordCache
from agent.store.schema import (
    PENDING,
    TX_COLUMNS,
    dump,
    ended_record,
    from_text,
    load,
    next_id,
    row_to_entry,
    row_to_tx,
    started_record,
    to_text,
    tx_to_row,
)
from agent.store.writer import DEFAULT_MAX_BACKLOG, StoreBacklogFull
from drivers.types import TokenType

_log = logging.getLogger("agent.store.sqlite")


def load_pending(row: tuple[Any, ...]) -> PendingEntry:
    """A pending outbox entry read ahead (`ENTRY_COLUMNS`, then its position), parsed."""
    return PendingEntry(row_to_entry(row[:-1]), PENDING, 0, row[-1])


_UPSERT_TX: Final = (
    f"INSERT INTO transactions ({TX_COLUMNS}) VALUES ({', '.join('?' * 15)})"
    " ON CONFLICT (local_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in TX_COLUMNS.split(",")[1:])
)
_INSERT_ENTRY: Final = (
    "INSERT INTO outbox (seq, tx_local_id, kind, payload, created_at, position)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING"
)


def _upsert_tx(tx: TxRecord) -> Callable[[sqlite3.Connection], None]:
    """A write that makes the transaction's row hold exactly `tx`."""
    return statement(_UPSERT_TX, tx_to_row(tx))


class SqliteJournal(Database):
    """The journal half of the agent's SQLite store (`Store` adds the outbox's side).

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
        self._ahead = ReadAhead(load_pending)  # entries read ahead for the outbox sender
        self._recent = RecordCache()  # the newest records of recently used transactions
        #: Per transaction written in this process and not yet settled: the position of
        #: its next entry and the seq of its newest one.
        self._tails: dict[int, tuple[int, int]] = {}

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
        tx, payload, started_text = started_record(
            self._next_local_id,
            evse_id=evse_id,
            connector_id=connector_id,
            id_token=id_token,
            token_type=token_type,
            started_at=started_at,
            meter_start_wh=meter_start_wh,
            reservation_id=reservation_id,
            details=details,
        )
        self._live()
        if not self._writer.accepting_new:
            raise StoreBacklogFull(
                f"the store cannot write ({self.health.error}) and holds"
                f" {self.health.backlog} writes: no new transaction"
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
        tx, stopped_text = ended_record(
            self._open_tx(local_id),
            stopped_at=stopped_at,
            meter_stop_wh=meter_stop_wh,
            reason=reason,
            stop_id_token=stop_id_token,
        )
        self._write_tx_and_entry(tx, TxEventKind.ENDED, dump(payload), stopped_text)
        return tx

    def _write_tx_and_entry(
        self, tx: TxRecord, kind: TxEventKind, payload_text: str, created_text: str
    ) -> None:
        """Queue one write that sets the transaction's row and appends an outbox entry."""
        seq = self._next_seq
        self._next_seq += 1
        position = 0 if kind is TxEventKind.STARTED else self._tail(tx.local_id)[0]
        self._tails[tx.local_id] = (position + 1, seq)
        row = tx_to_row(tx)
        entry_row = (seq, tx.local_id, str(kind), payload_text, created_text, position)

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
            entry=PendingEntry(entry, PENDING, 0, position),
        )

    def _tail(self, local_id: int) -> tuple[int, int]:
        """(position of the next entry, seq of the newest entry) of a transaction; read
        from the database the first time (every entry of one not written in this process
        is committed, and its newest entry is never pruned: retention.py)."""
        tail = self._tails.get(local_id)
        if tail is None:
            row = (
                self._live()
                .execute(
                    "SELECT max(position), max(seq) FROM outbox WHERE tx_local_id = ?",
                    (local_id,),
                )
                .fetchone()
            )
            tail = (0, 0) if row[0] is None else (int(row[0]) + 1, int(row[1]))
            self._tails[local_id] = tail
        return tail

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

    def _pending_entries(self, tx_local_id: int | None = None) -> dict[int, PendingEntry]:
        """Overlay entries (of one transaction, if given), by seq."""
        with self._writer.lock:
            return {
                seq: pending
                for seq, pending in self._overlay.entries.items()
                if tx_local_id is None or pending.entry.tx_local_id == tx_local_id
            }

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
