"""What the store has accepted but not yet committed, as its readers must see it.

The writer commits in the background (writer.py), so for a moment (or, while the disk is
full, for as long as that lasts) the database is behind what the store has acknowledged
to its caller. The overlay holds the newest absolute value of every transaction row,
outbox entry and setting that a queued write touches, tagged with the index of the
newest such write; once that write has committed, the value is dropped and the database
answers again.

Readers take the overlay first and the database second, and let the overlay win: only
the store's owner thread adds to the overlay, so between the two reads the database can
only catch up with it, never pass it. Every merge is by key (a transaction's local id,
an entry's seq, a setting's key), so a value present in both is counted once.

This module must not: touch SQLite, or decide what is durable (the writer does).
All access is under the writer's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.core.ports import OutboxEntry, TxRecord
from agent.store.writer import WriteOp

#: Key kinds of a WriteOp's keys: ("tx", local_id), ("entry", seq), ("setting", key).
TX = "tx"
ENTRY = "entry"
SETTING = "setting"


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An outbox entry as the store has acknowledged it, its delivery state, the index
    of the newest queued write that touched it (`op`) and its position among its
    transaction's entries (fixed when written: 2.0.1 seqNo)."""

    entry: OutboxEntry
    state: str
    op: int
    position: int = 0


@dataclass(slots=True)
class Overlay:
    """Uncommitted values by key; see the module docstring."""

    txs: dict[int, tuple[TxRecord, int]] = field(default_factory=dict)
    entries: dict[int, PendingEntry] = field(default_factory=dict)
    settings: dict[str, tuple[str, int]] = field(default_factory=dict)

    def committed(self, ops: Sequence[WriteOp]) -> None:
        """Drop every value whose newest write is among the committed `ops`."""
        upto = max(op.index for op in ops)
        for op in ops:
            for key in op.keys:
                kind, ident = key if isinstance(key, tuple) else (None, None)
                if kind == TX:
                    tx = self.txs.get(ident)
                    if tx is not None and tx[1] <= upto:
                        del self.txs[ident]
                elif kind == ENTRY:
                    entry = self.entries.get(ident)
                    if entry is not None and entry.op <= upto:
                        del self.entries[ident]
                elif kind == SETTING:
                    setting = self.settings.get(ident)
                    if setting is not None and setting[1] <= upto:
                        del self.settings[ident]

    def __len__(self) -> int:
        """How many values wait for their commit."""
        return len(self.txs) + len(self.entries) + len(self.settings)
