"""Fleet mode's store: the journal, the outbox and the settings as plain Python objects.

Why: a fleet runs thousands of stations in one process, each the real agent with a store
of its own. A private SQLite database costs a station about 85 KiB before it holds
anything (the connection, the parsed schema, its pages and prepared statements) and
about 0.6 KiB per outbox entry, and a fleet station keeps nothing across the process
anyway (a load generator, not a charger with billing to protect). `MemoryStore` keeps
`Store`'s contract (interface.AgentStore; one contract suite runs over both backends,
tests/unit/test_store*.py) with a few dicts:

- the journal: TxRecords by local id, and each transaction's remaining entries in seq
  order;
- the outbox: each entry with its delivery state, attempts and position (fixed when
  written: 2.0.1 seqNo); a payload is kept as the compact JSON text `Store` writes,
  checked the same way and parsed at each read, so no caller shares a dict with it;
- the settings: a dict.

Every write is durable when the method returns: `wait_durable` and `flush` return True,
`health` is always writable and `retry_forever` returns at once (nothing ever waits for
a retry). Durable listeners are still told after each write, as `Store`'s are after each
commit (the outbox sender waits for them).

The sibling stores' tables go to a private SQLite database opened the first time one of
them needs it (`opened`, `connection`: the local list, when the CSMS sends one); the
authorization cache and the charging profiles hold their state in memory and write
nothing here (`memory_only`). A fleet station that never receives a list pays nothing
for SQLite. What it keeps of delivered entries follows its `Retention` (retention.py);
`agent.store.open_store("memory:")` builds one that keeps only what a message needs.

This module must not: know an OCPP version, read a clock, or serve where data must
outlive the process (a production store is a `Store` on a file).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from agent.core.events import SAMPLE_KEY
from agent.core.ports import (
    Clock,
    EntryOutline,
    OutboxEntry,
    StopReason,
    TxEventKind,
    TxRecord,
)
from agent.store.database import Database
from agent.store.retention import FILE_RETENTION, EndReads, Retention, RunningPrune
from agent.store.schema import (
    DELIVERED,
    DROPPED,
    PENDING,
    dump,
    ended_record,
    from_text,
    load,
    started_record,
    to_text,
)
from agent.store.writer import RETRY_INTERVAL_S, Listener, StoreHealth
from drivers.types import TokenType

_T = TypeVar("_T")

_HEALTHY: Final = StoreHealth(writable=True, backlog=0, accepting_new=True)


@dataclass(slots=True)
class _Entry:
    """One outbox entry as the store keeps it."""

    seq: int
    tx_local_id: int
    kind: TxEventKind
    payload: str  # compact JSON text (schema.dump)
    created_at: datetime
    position: int
    sampled: bool  # the payload holds a meter sample (EntryOutline)
    attempts: int = 0
    state: str = PENDING

    def outbox_entry(self) -> OutboxEntry:
        """The entry as the core's port gives it (a fresh payload)."""
        return OutboxEntry(
            self.seq,
            self.tx_local_id,
            self.kind,
            load(self.payload),
            self.created_at,
            self.attempts,
        )


class MemoryStore:
    """The agent's store in plain Python objects; satisfies interface.AgentStore.

    Methods on a closed store raise `sqlite3.ProgrammingError`, as `Store`'s do.
    """

    def __init__(self, *, retention: Retention = FILE_RETENTION) -> None:
        """An empty store keeping delivered entries as `retention` says."""
        self._closed = False
        self._settings: dict[str, str] = {}
        self._txs: dict[int, TxRecord] = {}  # every transaction, by local id (ascending)
        self._entries: dict[int, _Entry] = {}  # every remaining entry, by seq
        self._by_tx: dict[int, dict[int, _Entry]] = {}  # remaining entries, seq order
        #: Pending entries in seq order from `_head` on (settled ones are passed lazily;
        #: a list, not a deque: an empty deque alone is 0.6 KiB, times a fleet).
        self._queue: list[_Entry] = []
        self._head = 0
        self._pending = 0
        self._next_local_id = 1
        self._next_seq = 1
        self._retention = retention
        self._running = RunningPrune(retention)
        self._durable_listeners: list[Listener] = []
        self._health_listeners: list[Listener] = []
        self._aux: Database | None = None  # the sibling stores' tables, once needed

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close (the sibling stores' database too); calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._aux is not None:
            self._aux.close()

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

    def _live(self) -> None:
        """Raise sqlite3.ProgrammingError once closed (as Store does)."""
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed store.")

    def _written(self) -> None:
        """A write is done (and durable): tell the durable listeners."""
        for listener in list(self._durable_listeners):
            listener.fire()

    # -- settings ----------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """The stored value of setting `key`, or None if it was never set."""
        self._live()
        return self._settings.get(key)

    def set_setting(self, key: str, value: str) -> None:
        """Store `value` for setting `key`, replacing any previous value."""
        self._live()
        self._settings[key] = value
        self._written()

    def settings(self) -> dict[str, str]:
        """Every stored setting, by key."""
        self._live()
        return dict(sorted(self._settings.items()))

    # -- transaction journal -------------------------------------------------------------------

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

        Raises ValueError if `started_at` is naive (see Store.begin_transaction).
        """
        tx, payload, _ = started_record(
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
        self._next_local_id += 1
        sampled = SAMPLE_KEY in (details or {})  # (its payload's top level is theirs)
        self._write(tx, TxEventKind.STARTED, payload, tx.started_at, sampled)
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
        """Persist the latest meter register; enqueue an UPDATED entry when `enqueue`.

        Raises KeyError for an unknown transaction, ValueError for an ended one or a
        naive `at`.
        """
        at_time = from_text(to_text(at))
        payload_text = dump(payload) if enqueue else None
        tx = replace(self._open_tx(local_id), last_meter_wh=energy_wh, last_meter_at=at_time)
        if payload_text is None:
            self._txs[local_id] = tx
            self._written()
        else:
            self._write(tx, TxEventKind.UPDATED, payload_text, at_time, SAMPLE_KEY in payload)

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
        transaction's token becomes that one. Raises KeyError / ValueError as Store."""
        at_time = from_text(to_text(at))
        payload_text = dump(payload)
        tx = self._open_tx(local_id)
        if id_token is not None:
            tx = replace(tx, id_token=id_token, token_type=token_type or TokenType.ISO14443)
        self._write(tx, TxEventKind.UPDATED, payload_text, at_time, SAMPLE_KEY in payload)

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

        Raises KeyError for an unknown transaction, ValueError if it already ended or
        `stopped_at` is naive.
        """
        tx, _ = ended_record(
            self._open_tx(local_id),
            stopped_at=stopped_at,
            meter_stop_wh=meter_stop_wh,
            reason=reason,
            stop_id_token=stop_id_token,
        )
        self._write(tx, TxEventKind.ENDED, dump(payload), tx.last_meter_at, SAMPLE_KEY in payload)
        return tx

    def _write(
        self, tx: TxRecord, kind: TxEventKind, payload: str, created_at: datetime, sampled: bool
    ) -> None:
        """Set the transaction's record and append an entry (`payload` as JSON text,
        `sampled` if it holds a meter sample): one step, as Store's one SQLite
        transaction."""
        entries = self._by_tx.get(tx.local_id)
        if entries is None:
            entries = self._by_tx[tx.local_id] = {}
        # The newest entry of a transaction is never pruned (retention.py): the next
        # position follows it.
        position = next(reversed(entries.values())).position + 1 if entries else 0
        entry = _Entry(self._next_seq, tx.local_id, kind, payload, created_at, position, sampled)
        self._next_seq += 1
        self._txs[tx.local_id] = tx
        entries[entry.seq] = self._entries[entry.seq] = entry
        self._queue.append(entry)
        self._pending += 1
        self._written()

    def _open_tx(self, local_id: int) -> TxRecord:
        """The open transaction `local_id`; KeyError if unknown, ValueError if ended."""
        tx = self.get_transaction(local_id)
        if tx.stopped_at is not None:
            raise ValueError(f"transaction {local_id} has already ended")
        return tx

    def get_transaction(self, local_id: int) -> TxRecord:
        """Return the transaction with `local_id`; raise KeyError if unknown."""
        self._live()
        return self._txs[local_id]

    def set_csms_tx_id(self, local_id: int, csms_tx_id: str) -> None:
        """Record the CSMS's id for the transaction (open or ended); KeyError if unknown."""
        self._txs[local_id] = replace(self.get_transaction(local_id), csms_tx_id=csms_tx_id)
        self._written()

    def open_transactions(self) -> list[TxRecord]:
        """Transactions that have begun and not yet ended, oldest first."""
        self._live()
        return [tx for tx in self._txs.values() if tx.stopped_at is None]

    def last_tx_for_evse(self, evse_id: int) -> TxRecord | None:
        """The most recently begun transaction on `evse_id`, open or ended, or None."""
        self._live()
        return next((tx for tx in reversed(self._txs.values()) if tx.evse_id == evse_id), None)

    def last_entry_at(self, tx_local_id: int) -> datetime | None:
        """The time of the transaction's latest remaining entry (any kind), or None."""
        self._live()
        entries = self._by_tx.get(tx_local_id, {})
        return max((entry.created_at for entry in entries.values()), default=None)

    @property
    def accepting_new_transactions(self) -> bool:
        """Always True: memory never refuses a write."""
        return True

    async def wait_durable(self) -> bool:
        """Return True at once: every accepted write is durable (in this process)."""
        self._live()
        return True

    # -- outbox ---------------------------------------------------------------------------------

    def next_pending(self, after_seq: int = 0) -> OutboxEntry | None:
        """The lowest-seq pending entry with seq > `after_seq`, or None."""
        self._live()
        queue, head = self._queue, self._head
        while head < len(queue) and queue[head].state != PENDING:
            head += 1
        if head * 2 > len(queue):  # mostly passed: drop them (amortized O(1) per entry)
            del queue[:head]
            head = 0
        self._head = head
        for index in range(head, len(queue)):
            entry = queue[index]
            if entry.seq > after_seq and entry.state == PENDING:
                return entry.outbox_entry()
        return None

    def pending_count(self, tx_local_id: int | None = None) -> int:
        """How many entries wait for delivery (of one transaction, if given)."""
        self._live()
        if tx_local_id is None:
            return self._pending
        entries = self._by_tx.get(tx_local_id, {})
        return sum(entry.state == PENDING for entry in entries.values())

    def entry_position(self, tx_local_id: int, seq: int) -> int:
        """How many entries of the transaction were written before entry `seq` (pruned
        ones included); raise KeyError if the transaction holds no entry `seq`."""
        entry = self._entry(seq)
        if entry.tx_local_id != tx_local_id:
            raise KeyError(seq)
        return entry.position

    def _entry(self, seq: int) -> _Entry:
        """Entry `seq`; raise KeyError if unknown (or pruned)."""
        self._live()
        return self._entries[seq]

    def mark_delivered(self, seq: int) -> None:
        """Mark entry `seq` delivered (idempotent), then let go of what nothing needs any
        more (retention.py); raise KeyError if unknown (or pruned)."""
        entry = self._entry(seq)
        if entry.state == DELIVERED:
            return
        if entry.state == PENDING:
            self._pending -= 1
        entry.state = DELIVERED
        if self._running.active:  # (not parsing the payload for nothing)
            for gone in self._running.delivered(entry.outbox_entry(), self._newest_seq):
                pruned = self._entries.pop(gone)
                del self._by_tx[pruned.tx_local_id][gone]
        self._settled(entry)
        self._written()

    def _newest_seq(self, tx_local_id: int) -> int | None:
        """The seq of the transaction's newest entry, or None."""
        entries = self._by_tx.get(tx_local_id)
        return next(reversed(entries)) if entries else None

    def _settled(self, entry: _Entry) -> None:
        """An entry was settled: if it ended its transaction, prune settled transactions
        beyond the retention's count."""
        if entry.kind is TxEventKind.ENDED:
            self._running.settled(entry.tx_local_id)
            self._prune_settled(self._retention.keep_settled)

    def note_attempt(self, seq: int) -> int:
        """Count one more delivery attempt of entry `seq`; return the count. KeyError if
        unknown."""
        entry = self._entry(seq)
        entry.attempts += 1
        self._written()
        return entry.attempts

    def mark_dropped(self, seq: int, reason: str) -> None:
        """Give up on pending entry `seq`, keeping it (`reason` is not kept: nothing reads
        it back). Raises KeyError if unknown, ValueError if it is no longer pending."""
        entry = self._entry(seq)
        if entry.state != PENDING:
            raise ValueError(f"outbox entry {seq} is {entry.state}, not pending")
        entry.state = DROPPED
        self._pending -= 1
        self._settled(entry)
        self._written()

    def tx_entries(self, local_id: int) -> list[OutboxEntry]:
        """Every remaining entry of transaction `local_id` in seq order, whatever its
        state; unknown (or pruned) transactions give an empty list."""
        self._live()
        return [entry.outbox_entry() for entry in self._by_tx.get(local_id, {}).values()]

    def tx_outline(self, local_id: int) -> list[EntryOutline]:
        """Every remaining entry of transaction `local_id` in seq order, outlined (no
        payload parsed); unknown (or pruned) transactions give an empty list."""
        self._live()
        return [
            EntryOutline(entry.seq, entry.kind, entry.created_at, entry.sampled)
            for entry in self._by_tx.get(local_id, {}).values()
        ]

    def outbox_entries(self, seqs: list[int]) -> list[OutboxEntry]:
        """The entries `seqs` that remain, in seq order; unknown or pruned seqs are left
        out. Only these payloads are parsed."""
        self._live()
        held = (self._entries.get(seq) for seq in sorted(set(seqs)))
        return [entry.outbox_entry() for entry in held if entry is not None]

    def prune_delivered(self, keep_last: int = 1000) -> int:
        """Delete the entries of settled transactions except the newest `keep_last`
        transactions'; return how many. Raises ValueError if `keep_last` is negative."""
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        self._live()
        return self._prune_settled(keep_last)

    def _prune_settled(self, keep_last: int) -> int:
        """Delete the entries of settled transactions older than the newest `keep_last`."""
        if len(self._txs) <= keep_last:
            return 0
        newest_kept = list(self._txs)[-keep_last - 1]  # local ids ascend
        deleted = 0
        for local_id in [i for i in self._by_tx if i <= newest_kept]:
            entries = self._by_tx[local_id]
            if self._txs[local_id].stopped_at is None or any(
                entry.state == PENDING for entry in entries.values()
            ):
                continue
            for seq in entries:
                del self._entries[seq]
            deleted += len(entries)
            del self._by_tx[local_id]
        return deleted

    def retain_for_end(self, end_reads: EndReads | None) -> None:
        """Say which delivered entries a running transaction's end message will read
        (retention.py); None keeps them all."""
        self._running.end_reads = end_reads

    def subscribe_durable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each write (on the event loop running now); returns the
        unsubscribe function."""
        return _subscribe(self._durable_listeners, callback)

    # -- health -----------------------------------------------------------------------------

    @property
    def health(self) -> StoreHealth:
        """Always writable, nothing waiting."""
        return _HEALTHY

    @property
    def background(self) -> bool:
        """Always False: every method is done when it returns."""
        return False

    def subscribe_health(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Keep `callback` (health never changes, so it is never called); returns the
        unsubscribe function."""
        return _subscribe(self._health_listeners, callback)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Return True: nothing is ever queued."""
        self._live()
        return True

    def retry_now(self) -> None:
        """Nothing to retry."""
        self._live()

    async def retry_forever(self, clock: Clock, interval_s: float = RETRY_INTERVAL_S) -> None:
        """Return at once: memory never refuses a write, so there is nothing to retry."""

    # -- the sibling stores' tables (interface.TableHost) ---------------------------------------

    @property
    def memory_only(self) -> bool:
        """True: nothing written here outlives the process or is read back."""
        return True

    @property
    def opened(self) -> bool:
        """Whether the sibling stores' SQLite database has been opened yet."""
        return self._aux is not None

    def _tables(self) -> Database:
        """The sibling stores' database, opened (in memory, without the journal's tables)
        the first time it is needed."""
        self._live()
        if self._aux is None:
            self._aux = Database(":memory:", journal=False)
        return self._aux

    @property
    def connection(self) -> sqlite3.Connection:
        """The sibling stores' connection (opens their database)."""
        return self._tables().connection

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the sibling stores' database (see Database.writing)."""
        with self._tables().writing() as conn:
            yield conn

    async def run_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> _T:
        """Run `action` as one write transaction on the sibling stores' database."""
        return await self._tables().run_write(action, durable=durable)

    def start_write(
        self, action: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> Future[_T]:
        """Run `action` as `run_write` does; return its (done) future."""
        return self._tables().start_write(action, durable=durable)

    def write_soon(
        self,
        action: Callable[[sqlite3.Connection], None],
        *,
        what: str,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """Run `action` on the sibling stores' database (see Database.write_soon)."""
        self._tables().write_soon(action, what=what, on_refused=on_refused)


def _subscribe(listeners: list[Listener], callback: Callable[[], None]) -> Callable[[], None]:
    """Add a listener for `callback`; return the function that removes it."""
    listener = Listener(callback)
    listeners.append(listener)

    def unsubscribe() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return unsubscribe


if TYPE_CHECKING:
    from agent.store.interface import AgentStore

    def _memory_store_is_an_agent_store(store: MemoryStore) -> AgentStore:
        """Let mypy prove that MemoryStore satisfies the agent's store interface."""
        return store
