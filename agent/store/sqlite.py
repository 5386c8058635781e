"""SQLite persistence: the transaction journal, its ordered outbox, and runtime settings.

Responsibilities (DESIGN idea 5 and 6):

- the transaction journal: one row per transaction under a local key, rewritten at
  each step (begin, meter, end, CSMS id);
- the outbox: every transaction-related message, in one global order (`seq`), with its
  delivery state (pending, delivered, dropped) and attempt count. A journal change and
  its outbox entry are written in one SQLite transaction, so a crash leaves both or
  neither;
- runtime settings: OCPP configuration values the CSMS changed (strings).

The journal half (ids, rows, entries and their positions, the journal's reads) is
`SqliteJournal` in journal.py; `Store` adds the outbox's delivery side and is the
store's whole contract (interface.AgentStore, which memory.py also satisfies).

Retention (retention.py): delivered entries nothing needs any more are deleted as they
settle: those of settled transactions beyond the newest `keep_settled`, and, when the
retention prunes running transactions, those a running transaction's end message will
not read (the adapter says which: `retain_for_end`). Deletions are queued writes like
the others; an entry's position (2.0.1 seqNo) is a column written with it, so they never
shift one.

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
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from agent.core.events import SAMPLE_KEY
from agent.core.ports import EntryOutline, OutboxEntry, TxEventKind
from agent.store.database import statement
from agent.store.journal import SqliteJournal
from agent.store.overlay import ENTRY, PendingEntry
from agent.store.readahead import READ_AHEAD_ENTRIES, Held
from agent.store.retention import FILE_RETENTION, EndReads, Retention, RunningPrune
from agent.store.schema import (
    DELIVERED,
    DROPPED,
    ENTRY_COLUMNS,
    PENDING,
    StoreSchemaError,
    from_text,
    outline_of,
    row_to_entry,
)
from agent.store.writer import DEFAULT_MAX_BACKLOG, Rows, StoreBacklogFull, StoreHealth

__all__ = ["Store", "StoreBacklogFull", "StoreHealth", "StoreSchemaError"]

_log = logging.getLogger(__name__)


# Delivery marks and the pruning of delivered entries, for a JSON array of seqs
# (Rows: one statement for a commit window's marks).
_MARK_DELIVERED: Final = (
    f"UPDATE outbox SET state = '{DELIVERED}' WHERE seq IN (SELECT value FROM json_each(?))"
)
_DELETE_DELIVERED: Final = (
    f"DELETE FROM outbox WHERE state = '{DELIVERED}' AND seq IN (SELECT value FROM json_each(?))"
)
# The next pending entries, each with its position among its transaction's entries.
_READ_AHEAD: Final = (
    f"SELECT {ENTRY_COLUMNS}, position FROM outbox WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?"
)
# A transaction's entries outlined (EntryOutline): their payloads stay unparsed.
_OUTLINE: Final = (
    f"SELECT seq, kind, created_at, json_type(payload, '$.{SAMPLE_KEY}') IS NOT NULL"
    " FROM outbox WHERE tx_local_id = ? ORDER BY seq"
)
_KINDS: Final = {kind.value: kind for kind in TxEventKind}  # (faster than the Enum's call)
# The entries of a JSON array of seqs.
_ENTRIES_BY_SEQ: Final = (
    f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE seq IN (SELECT value FROM json_each(?))"
)

# The entries of settled transactions but the newest ?2 transactions: only transactions
# that still hold entries are visited (the outbox's index), not every row ever kept.
_PRUNE_SETTLED: Final = (
    "DELETE FROM outbox WHERE state != ?1 AND tx_local_id IN ("
    " SELECT t.local_id FROM transactions AS t WHERE t.local_id IN ("
    "  SELECT DISTINCT tx_local_id FROM outbox WHERE tx_local_id <= coalesce(("
    "   SELECT local_id FROM transactions ORDER BY local_id DESC LIMIT 1 OFFSET ?2), 0))"
    " AND t.stopped_at IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.tx_local_id = t.local_id"
    "  AND o.state = ?1))"
)


class Store(SqliteJournal):
    """The agent's SQLite database; satisfies `agent.store.interface.AgentStore` (and so
    `agent.core.ports.TransactionJournal`).

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
        retention: Retention = FILE_RETENTION,
    ) -> None:
        """Open (or create) the database at `path`; see `Database.__init__`. `retention`
        says which delivered entries are kept (retention.py)."""
        super().__init__(path, background=background, max_backlog=max_backlog)
        self._retention = retention
        self._running = RunningPrune(retention)

    # -- outbox ------------------------------------------------------------------------

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
            batch: list[tuple[int, int, Held]] = [
                (row[0], row[-1], row if shadow is None else shadow)  # a row: parsed when asked
                for row, shadow in zip(rows, shadows, strict=True)
                if shadow is None or shadow.state == PENDING
            ]
            if batch or len(rows) < READ_AHEAD_ENTRIES:
                self._ahead.fill(after_seq, batch)
                held = self._ahead.next_after(after_seq)
                return None if held is None else held.entry
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
        """How many entries of the transaction were written before entry `seq` (0 for the
        first), pruned ones included: fixed when the entry is written (2.0.1 seqNo).

        Raises KeyError if the transaction holds no entry `seq` (any more).
        """
        pending = self._entry(seq)
        if pending.entry.tx_local_id != tx_local_id:
            raise KeyError(seq)
        return pending.position

    def _entry(self, seq: int) -> PendingEntry:
        """Entry `seq` and its state as acknowledged; raise KeyError if unknown."""
        conn = self._live()
        held = self._ahead.get(seq)  # write-through: never older than the overlay
        if held is not None and held.state == PENDING:  # (a settled one may be pruned)
            return held
        with self._writer.lock:
            pending = self._overlay.entries.get(seq)
        if pending is not None:
            return pending
        row = conn.execute(
            f"SELECT {ENTRY_COLUMNS}, state, position FROM outbox WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            raise KeyError(seq)
        return PendingEntry(row_to_entry(row[:-2]), str(row[-2]), 0, int(row[-1]))

    def mark_delivered(self, seq: int) -> None:
        """Mark entry `seq` delivered (idempotent); raise KeyError if unknown (or pruned).

        Readers see the mark at once; its commit may wait a few tens of ms to share an
        fsync with others (a lazy write, writer.py). A crash before that commit leaves
        the entry pending, and it is sent again: at least once, never lost. Then the
        entries nothing needs any more go (retention.py), in the same lazy way.
        """
        current = self._entry(seq)
        if current.state == DELIVERED:
            return
        self._submit(
            Rows(_MARK_DELIVERED, [seq]),  # joins the marks queued before it
            ((ENTRY, seq),),
            lazy=True,
            entry=PendingEntry(current.entry, DELIVERED, current.op, current.position),
        )
        going = self._running.delivered(current.entry, lambda local_id: self._tail(local_id)[1])
        if going:
            deleting = Rows(_DELETE_DELIVERED, going)  # never a pending one
            self._submit(deleting, tuple((ENTRY, s) for s in going), lazy=True)
        self._settled(current.entry)

    def _settled(self, entry: OutboxEntry) -> None:
        """An entry was settled: if it ended its transaction, prune settled transactions
        beyond the retention's count (a queued write: the SQL checks that none is pending)."""
        if entry.kind is not TxEventKind.ENDED:
            return
        self._running.settled(entry.tx_local_id)
        self._tails.pop(entry.tx_local_id, None)
        self._submit(
            statement(_PRUNE_SETTLED, (PENDING, self._retention.keep_settled)), (), lazy=True
        )

    def retain_for_end(self, end_reads: EndReads | None) -> None:
        """Say which delivered entries a running transaction's end message will read; the
        others are deleted once delivered if the retention prunes running transactions
        (retention.py). None (the default) keeps them all."""
        self._running.end_reads = end_reads

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
        self._settled(current.entry)

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

    def tx_outline(self, local_id: int) -> list[EntryOutline]:
        """Every remaining entry of transaction `local_id` in seq order, outlined; no
        payload is parsed (SQLite's json_type looks for the sample). Unknown (or pruned)
        transactions give an empty list."""
        conn = self._live()
        overlay = self._pending_entries(local_id)
        rows = [
            EntryOutline(seq, _KINDS[kind], from_text(at), bool(sampled))
            for seq, kind, at, sampled in conn.execute(_OUTLINE, (local_id,))
        ]
        if not overlay:  # (as a rule: the overlay holds a few tens of ms of writes)
            return rows
        found = {outline.seq: outline for outline in rows}
        found.update((seq, outline_of(pending.entry)) for seq, pending in overlay.items())
        return [found[seq] for seq in sorted(found)]

    def outbox_entries(self, seqs: list[int]) -> list[OutboxEntry]:
        """The entries `seqs` that remain, in seq order; unknown or pruned seqs are left
        out. Only these payloads are parsed."""
        conn = self._live()
        with self._writer.lock:  # the overlay first, the database second (as tx_entries)
            found = {
                seq: pending.entry
                for seq in seqs
                if (pending := self._overlay.entries.get(seq)) is not None
            }
        rest = [seq for seq in seqs if seq not in found]
        if rest:
            rows = conn.execute(_ENTRIES_BY_SEQ, (json.dumps(rest),))
            found.update((row[0], row_to_entry(row)) for row in rows)
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
        with self.writing() as conn:
            return conn.execute(_PRUNE_SETTLED, (PENDING, keep_last)).rowcount


if TYPE_CHECKING:
    from agent.core.ports import TransactionJournal
    from agent.store.interface import AgentStore

    def _store_is_a_journal(store: Store) -> TransactionJournal:
        """Let mypy prove that Store satisfies the core's TransactionJournal port."""
        return store

    def _store_is_an_agent_store(store: Store) -> AgentStore:
        """Let mypy prove that Store satisfies the agent's store interface."""
        return store
