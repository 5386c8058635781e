"""What the agent, its adapters and the sibling stores use of a store, whichever backend
keeps it.

Two backends satisfy these Protocols: `Store` (sqlite.py: SQLite; a file in production,
`:memory:` in tests) and `MemoryStore` (memory.py: plain Python objects, for fleet mode,
where thousands of stations share a process and keep nothing across it). `AgentStore` is
the whole: the core's TransactionJournal and SettingsStore, the outbox the adapters
drain, the reads they make, and the store's health. `TableHost` is the part the sibling
stores (local list, cache, charging profiles: agent/store/auth*.py, profiles.py) use to
keep tables of their own.

This module must not: implement anything (Protocols only) or know an OCPP version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, TypeVar

from agent.core.ports import (
    Clock,
    EntryOutline,
    OutboxEntry,
    SettingsStore,
    TransactionJournal,
    TxRecord,
)
from agent.store.retention import EndReads
from agent.store.writer import StoreHealth

_T = TypeVar("_T")


class TableHost(Protocol):
    """A SQLite database the sibling stores keep their tables in, and how to write there.

    Writes run as one transaction each, off the event loop where the backend has a writer
    thread (database.py); reads use `connection` on the event loop's thread.
    """

    @property
    def memory_only(self) -> bool:
        """True when nothing written here outlives the process or is ever read back (a
        MemoryStore): a sibling store that holds its state in memory need not write it."""
        ...

    @property
    def opened(self) -> bool:
        """Whether the database exists yet. A MemoryStore opens one at the first use of
        `connection` or of a write; until then no sibling store has stored anything."""
        ...

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection to read with (on the event loop's thread)."""
        ...

    def writing(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the caller's thread, committed on exit (rare writes,
        e.g. creating tables)."""
        ...

    async def run_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> _T:
        """Run `action` as one write transaction off the loop; return its result."""
        ...

    def start_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> Future[_T]:
        """Queue `action` as `run_write` does; return its future."""
        ...

    def write_soon(
        self,
        action: Callable[[sqlite3.Connection], None],
        *,
        what: str,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """Queue `action` without an fsync; a refusal is logged and told to `on_refused`."""
        ...


class AgentStore(TransactionJournal, SettingsStore, TableHost, Protocol):
    """Everything the agent uses of its store (see the backends for the contracts)."""

    # -- journal reads and the CSMS's ids -------------------------------------------------

    def get_transaction(self, local_id: int) -> TxRecord:
        """The transaction with `local_id`; KeyError if unknown."""
        ...

    def set_csms_tx_id(self, local_id: int, csms_tx_id: str) -> None:
        """Record the CSMS's id for the transaction; KeyError if unknown."""
        ...

    def last_tx_for_evse(self, evse_id: int) -> TxRecord | None:
        """The most recently begun transaction on `evse_id`, or None."""
        ...

    def settings(self) -> dict[str, str]:
        """Every stored setting."""
        ...

    # -- outbox ---------------------------------------------------------------------------

    def next_pending(self, after_seq: int = 0) -> OutboxEntry | None:
        """The lowest-seq durable pending entry with seq > `after_seq`, or None."""
        ...

    def pending_count(self, tx_local_id: int | None = None) -> int:
        """How many entries wait for delivery (of one transaction, if given)."""
        ...

    def entry_position(self, tx_local_id: int, seq: int) -> int:
        """How many entries of the transaction were written before entry `seq`."""
        ...

    def mark_delivered(self, seq: int) -> None:
        """Mark entry `seq` delivered (idempotent); KeyError if unknown."""
        ...

    def note_attempt(self, seq: int) -> int:
        """Count a failed delivery attempt of entry `seq`; return the count."""
        ...

    def mark_dropped(self, seq: int, reason: str) -> None:
        """Give up pending entry `seq`, keeping it for audit."""
        ...

    def tx_entries(self, local_id: int) -> list[OutboxEntry]:
        """Every remaining entry of the transaction, in seq order."""
        ...

    def tx_outline(self, local_id: int) -> list[EntryOutline]:
        """Every remaining entry of the transaction, in seq order, outlined: what choosing
        among them needs, without parsing a payload (for the end message's few)."""
        ...

    def outbox_entries(self, seqs: list[int]) -> list[OutboxEntry]:
        """The entries `seqs` that remain (an unknown or pruned seq is left out), in seq
        order."""
        ...

    def last_entry_at(self, tx_local_id: int) -> datetime | None:
        """The time of the transaction's latest entry, or None."""
        ...

    def prune_delivered(self, keep_last: int = 1000) -> int:
        """Delete the entries of settled transactions but the newest `keep_last`."""
        ...

    def retain_for_end(self, end_reads: EndReads | None) -> None:
        """Say which delivered entries a running transaction's end message reads."""
        ...

    def subscribe_durable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when entries may have become durable; returns the unsubscribe."""
        ...

    # -- health and lifecycle -------------------------------------------------------------

    @property
    def health(self) -> StoreHealth:
        """Whether writes succeed, how many wait, whether new transactions may start."""
        ...

    def subscribe_health(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when the health changes; returns the unsubscribe."""
        ...

    async def retry_forever(self, clock: Clock, interval_s: float = ...) -> None:
        """Run as a task: retry failing writes by `clock` until cancelled."""
        ...

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until everything accepted is durable; False if it is not."""
        ...

    def close(self) -> None:
        """Write what is queued and close; calling it again does nothing."""
        ...
