"""What the store has read (or written) recently and may hand out again without SQL.

Why: an outbox replay after a long offline spell sends thousands of entries one after
the other. Reading each with its own query (and parsing its payload each time it is
looked at: to send it, then again to mark it delivered) cost as much as the network
round trip (bench/README.md, throughput). Here:

- `ReadAhead` keeps a run of durable pending outbox entries read in one query, in seq
  order. It answers "the lowest pending entry after seq N" for as long as it can prove
  the answer: at the time of the read it held every durable pending entry in
  (`start`, last read], pending entries only ever settle (delivered, dropped) and never
  come back, and an entry that becomes durable later has a higher seq than every
  durable one (entries commit in seq order). A question about seqs below `start` is a
  miss: the store reads again. Entries stay held until the next read, handed out or
  not, so the mark of an entry the sender already looked past (it prepares the next
  CALL while the CSMS answers one) finds it here. With each entry it keeps its
  position among its transaction's entries (2.0.1 seqNo), read with it: the position
  is a column written with the entry (schema migration 2), fixed for good, so pruning
  earlier entries never shifts it. A run holds the rows as read and parses each
  (`load`) only when it is first asked for: the sender asks for one entry while the
  CSMS answers the one before, where parsing it costs nothing, whereas parsing the
  whole run at once stalled the one answer that arrived meanwhile.
- `RecordCache` keeps the newest TxRecords by local id, bounded.

Both are write-through: the store updates them with every value it acknowledges for an
entry or a transaction they hold, so they are never older than the overlay or the
database. They are used from the store's owner thread only (no lock).

This module must not: touch SQLite, or decide what is durable (the writer does).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from agent.core.ports import TxRecord
from agent.store.overlay import PendingEntry
from agent.store.schema import PENDING

#: Entries read from the database per query while the outbox drains.
READ_AHEAD_ENTRIES: Final = 128
#: Transactions whose newest record is kept in memory.
CACHED_TRANSACTIONS: Final = 64


#: A held entry as read (parsed by `load` when first asked for), or parsed.
Held = PendingEntry | tuple[Any, ...]


class ReadAhead:
    """A run of durable pending outbox entries read ahead, in seq order (module docstring)."""

    __slots__ = ("_entries", "_load", "_positions", "_seqs", "_start")

    def __init__(self, load: Callable[[tuple[Any, ...]], PendingEntry]) -> None:
        """`load` parses a row held as read into its PendingEntry."""
        self._load = load
        self._entries: dict[int, Held] = {}
        self._positions: dict[int, int] = {}
        self._seqs: list[int] = []  # the keys of `_entries`, ascending
        self._start = 0  # every durable pending entry above this seq, as read, is held

    def fill(self, start: int, entries: list[tuple[int, int, Held]]) -> None:
        """Hold `entries`, each (seq, position in its transaction, the entry parsed or
        its pending row as read): every durable pending entry with seq > `start` read
        just now (the first ones, in seq order; more may follow them in the database)."""
        self._entries = {seq: held for seq, _, held in entries}
        self._positions = {seq: position for seq, position, _ in entries}
        self._seqs = sorted(self._entries)
        self._start = start

    def _parsed(self, seq: int) -> PendingEntry | None:
        """Held entry `seq`, parsed now if it was not yet."""
        held = self._entries.get(seq)
        if isinstance(held, tuple):
            parsed = self._entries[seq] = self._load(held)
            return parsed
        return held

    def next_after(self, after_seq: int) -> PendingEntry | None:
        """The lowest held pending entry with seq > `after_seq`; None when this run cannot
        answer (empty, or `after_seq` is below what it covers): read again.

        Entries stay held after they were handed out, settled or not, until the next
        fill: the outbox sender asks for the entry after one it has not settled yet (it
        prepares the next CALL while the CSMS answers), then marks that one delivered,
        and the mark finds its entry here instead of in the database.
        """
        if after_seq < self._start:
            self.clear()
            return None
        seqs, entries = self._seqs, self._entries
        for index in range(bisect_right(seqs, after_seq), len(seqs)):
            seq = seqs[index]
            held = entries[seq]
            if isinstance(held, tuple):  # a row as read: pending
                return self._parsed(seq)
            if held.state == PENDING:  # settled ones are never the answer again
                return held
        return None

    def get(self, seq: int) -> PendingEntry | None:
        """The held entry `seq` (its newest acknowledged value), or None."""
        return self._parsed(seq)

    def position(self, tx_local_id: int, seq: int) -> int | None:
        """How many entries of `tx_local_id` precede entry `seq`, if it was read ahead."""
        pending = self._parsed(seq)
        if pending is None or pending.entry.tx_local_id != tx_local_id:
            return None
        return self._positions.get(seq)

    def update(self, pending: PendingEntry) -> None:
        """Write-through: a newer value of an entry (kept only if the entry is held)."""
        seq = pending.entry.seq
        if seq in self._entries:
            self._entries[seq] = pending

    def clear(self) -> None:
        """Forget everything (entries were deleted underneath)."""
        self._entries = {}
        self._positions = {}
        self._seqs = []
        self._start = 0

    def __len__(self) -> int:
        """How many entries are held."""
        return len(self._entries)


class RecordCache:
    """The newest acknowledged TxRecord of recently used transactions, bounded (LRU)."""

    __slots__ = ("_limit", "_records")

    def __init__(self, limit: int = CACHED_TRANSACTIONS) -> None:
        self._records: OrderedDict[int, TxRecord] = OrderedDict()
        self._limit = limit

    def get(self, local_id: int) -> TxRecord | None:
        """The cached record, or None."""
        tx = self._records.get(local_id)
        if tx is not None:
            self._records.move_to_end(local_id)
        return tx

    def put(self, tx: TxRecord) -> None:
        """Keep `tx` as the newest value of its transaction."""
        self._records[tx.local_id] = tx
        self._records.move_to_end(tx.local_id)
        if len(self._records) > self._limit:
            self._records.popitem(last=False)
