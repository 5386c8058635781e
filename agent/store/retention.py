"""Which delivered outbox entries the store keeps, and when it lets the others go.

Nothing the agent still needs is deleted:

- A *settled* transaction (ended, none of its entries pending) needs none of its
  entries: every message has been answered or given up. The store keeps the entries of
  the newest `keep_settled` transactions (what was sent, for inspection; the transaction
  rows themselves are kept for ever) and deletes older ones each time a transaction
  settles (`prune_delivered` does it on demand).
- A *running* transaction's delivered entries are read once more, by its end message:
  1.6 StopTransaction's transactionData (StopTxnSampledData, StopTxnAlignedData) and
  2.0.1 the Ended event's meter values (SampledDataCtrlr.TxEndedMeasurands). The adapter
  says whether its end will read an entry (`retain_for_end`: only it knows its
  configuration). With `prune_running`, the entries it says no to are deleted once
  delivered, except the transaction's newest entry, whose time `last_entry_at` gives at
  a restart. An entry's position among its transaction's entries (2.0.1 seqNo) is fixed
  when it is written, so deleting earlier entries never shifts it.

Defaults: a file store keeps every entry of a running transaction and the newest 1000
settled transactions whole (about 4 KiB a charging minute, on disk); fleet mode keeps
nothing it does not need (its stores are in memory, thousands to a process).

This module must not: touch SQLite, know an OCPP version, or decide what an end message
reads (the adapter does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from agent.core.ports import OutboxEntry, TxEventKind

#: Says whether the end message of the entry's transaction will read this delivered entry.
EndReads = Callable[[OutboxEntry], bool]


@dataclass(frozen=True, slots=True)
class Retention:
    """What a store keeps of delivered entries (module docstring)."""

    keep_settled: int = 1000  # settled transactions whose entries are kept, newest first
    prune_running: bool = False  # delete a running transaction's entries its end won't read

    def __post_init__(self) -> None:
        """Raise ValueError for a negative `keep_settled`."""
        if self.keep_settled < 0:
            raise ValueError(f"keep_settled must be >= 0, got {self.keep_settled}")


#: A file store's default: an audit trail on disk.
FILE_RETENTION: Final = Retention()
#: Fleet mode: stores in memory, nothing kept that no message needs.
FLEET_RETENTION: Final = Retention(keep_settled=0, prune_running=True)


class RunningPrune:
    """Delivered entries of running transactions that may go, per transaction, until
    they are no longer their transaction's newest entry (used by both backends)."""

    __slots__ = ("_enabled", "_waiting", "end_reads")

    def __init__(self, retention: Retention) -> None:
        self._enabled = retention.prune_running
        self._waiting: dict[int, list[int]] = {}
        #: Set by the adapter (Store.retain_for_end); None keeps every entry.
        self.end_reads: EndReads | None = None

    @property
    def active(self) -> bool:
        """Whether delivered entries of running transactions may go at all."""
        return self._enabled and self.end_reads is not None

    def delivered(self, entry: OutboxEntry, newest_seq: Callable[[int], int | None]) -> list[int]:
        """Note that `entry` was delivered; return the seqs of its transaction to delete
        now (delivered, unread by the end, and not the newest entry: `newest_seq(tx)`)."""
        end_reads = self.end_reads
        if not self._enabled or end_reads is None:
            return []  # (a pending removal waits too: the next settled end takes it)
        local_id = entry.tx_local_id
        waiting = self._waiting.get(local_id)
        if entry.kind is not TxEventKind.ENDED and not end_reads(entry):
            if waiting is None:
                waiting = self._waiting[local_id] = []
            waiting.append(entry.seq)
        if not waiting:
            return []
        newest = newest_seq(local_id)
        going = [seq for seq in waiting if seq != newest]
        if going:
            waiting[:] = [seq for seq in waiting if seq == newest]
            if not waiting:
                del self._waiting[local_id]
        return going

    def settled(self, tx_local_id: int) -> None:
        """The transaction settled: its entries go with it (or stay as settled ones)."""
        self._waiting.pop(tx_local_id, None)
