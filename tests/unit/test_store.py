"""The store's contract: journal, outbox and settings, on both backends.

Every test taking the `store` fixture runs on SQLite (`Store(":memory:")`, the
production backend) and on fleet mode's plain-Python `MemoryStore`: what the port
promises holds for both. Tests on a file (reopening it, its pragmas and schema) are
SQLite's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.core.ports import StopReason, TxEventKind, TxRecord
from agent.store import AgentStore, MemoryStore, Store, StoreSchemaError
from drivers.types import TokenType

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "python")


def open_backend(backend: str) -> AgentStore:
    """An empty store of `backend`, with each backend's default retention."""
    return Store(":memory:") if backend == "sqlite" else MemoryStore()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[AgentStore]:
    opened = open_backend(str(request.param))
    try:
        yield opened
    finally:
        opened.close()


def begin(
    store: AgentStore,
    *,
    evse_id: int = 1,
    at: datetime = T0,
    meter_wh: float = 100.0,
    details: dict[str, Any] | None = None,
) -> TxRecord:
    return store.begin_transaction(
        evse_id=evse_id,
        connector_id=1,
        id_token="TAG-1",
        token_type=TokenType.ISO14443,
        started_at=at,
        meter_start_wh=meter_wh,
        details=details,
    )


def end(store: AgentStore, local_id: int, *, at: datetime = T0 + timedelta(hours=1)) -> TxRecord:
    return store.end_transaction(
        local_id,
        stopped_at=at,
        meter_stop_wh=5100.0,
        reason=StopReason.EV_DISCONNECTED,
        stop_id_token=None,
        payload={"energy_wh": 5100.0},
    )


# -- settings ------------------------------------------------------------------------


def test_setting_round_trip_and_overwrite(store: AgentStore) -> None:
    assert store.get_setting("HeartbeatInterval") is None
    store.set_setting("HeartbeatInterval", "300")
    store.set_setting("HeartbeatInterval", "60")
    store.set_setting("MeterValueSampleInterval", "30")
    assert store.get_setting("HeartbeatInterval") == "60"
    assert store.settings() == {"HeartbeatInterval": "60", "MeterValueSampleInterval": "30"}


def test_settings_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as s:
        s.set_setting("HeartbeatInterval", "120")
    with Store(path) as s:
        assert s.settings() == {"HeartbeatInterval": "120"}


# -- journal -------------------------------------------------------------------------


def test_begin_returns_record_with_meter_start_as_last_meter(store: AgentStore) -> None:
    tx = store.begin_transaction(
        evse_id=2,
        connector_id=1,
        id_token="ABC",
        token_type=TokenType.CENTRAL,
        started_at=T0,
        meter_start_wh=1234.5,
        reservation_id=7,
    )
    assert tx.last_meter_wh == 1234.5
    assert tx.last_meter_at == T0
    assert tx.stopped_at is None and tx.csms_tx_id is None
    assert store.get_transaction(tx.local_id) == tx


def test_begin_enqueues_one_started_entry_with_start_facts(store: AgentStore) -> None:
    tx = begin(store)
    [entry] = store.tx_entries(tx.local_id)
    assert entry.kind is TxEventKind.STARTED
    assert entry.created_at == T0
    assert entry.attempts == 0
    assert entry.payload["meter_start_wh"] == 100.0
    assert entry.payload["id_token"] == "TAG-1"
    assert entry.payload["token_type"] == "ISO14443"


def test_times_are_returned_as_aware_utc_whatever_offset_came_in(store: AgentStore) -> None:
    cest = timezone(timedelta(hours=2))
    tx = begin(store, at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=cest))
    got = store.get_transaction(tx.local_id)
    assert got.started_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert got.started_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused(store: AgentStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        begin(store, at=datetime(2024, 5, 1, 12, 0, 0))
    assert store.pending_count() == 0


def test_record_meter_updates_last_meter_and_enqueues_only_when_asked(store: AgentStore) -> None:
    tx = begin(store)
    store.record_meter(
        tx.local_id, at=T0 + timedelta(minutes=1), energy_wh=150.0, payload={}, enqueue=False
    )
    store.record_meter(
        tx.local_id,
        at=T0 + timedelta(minutes=2),
        energy_wh=200.0,
        payload={"energy_wh": 200.0, "power_w": 7000},
        enqueue=True,
    )
    got = store.get_transaction(tx.local_id)
    assert (got.last_meter_wh, got.last_meter_at) == (200.0, T0 + timedelta(minutes=2))
    kinds = [e.kind for e in store.tx_entries(tx.local_id)]
    assert kinds == [TxEventKind.STARTED, TxEventKind.UPDATED]
    assert store.tx_entries(tx.local_id)[1].payload == {"energy_wh": 200.0, "power_w": 7000}


def test_the_outline_lists_the_entries_as_tx_entries_does_and_which_hold_a_sample(
    store: AgentStore,
) -> None:
    # Nested in the start's details: not the entry's own sample.
    tx = begin(store, details={"sample": {"energy_import_wh": 100.0}})
    minute = timedelta(minutes=1)
    sampled = {"energy_import_wh": 200.0, "power_w": 7000}
    store.record_meter(tx.local_id, at=T0 + minute, energy_wh=200.0, payload=sampled, enqueue=True)
    store.record_event(tx.local_id, at=T0 + 2 * minute, payload={"trigger": "cable_plugged"})
    no_reading = {"energy_import_wh": None}  # the key is there: a sample, as `in` says
    store.record_meter(
        tx.local_id, at=T0 + 3 * minute, energy_wh=200.0, payload=no_reading, enqueue=True
    )
    end(store, tx.local_id)  # {"energy_wh": ...}: no sample

    outline = store.tx_outline(tx.local_id)

    entries = store.tx_entries(tx.local_id)
    assert [(o.seq, o.kind, o.created_at) for o in outline] == [
        (e.seq, e.kind, e.created_at) for e in entries
    ]
    assert [o.sampled for o in outline] == [False, True, False, True, False]
    assert store.tx_outline(tx.local_id + 1) == []  # unknown: nothing


def test_entries_by_seq_come_in_seq_order_without_the_unknown_ones(store: AgentStore) -> None:
    tx = begin(store)
    for n in range(3):
        store.record_meter(tx.local_id, at=T0, energy_wh=float(n), payload={"n": n}, enqueue=True)
    end(store, tx.local_id)
    entries = store.tx_entries(tx.local_id)

    asked = [entries[3].seq, entries[0].seq, entries[-1].seq + 100, entries[1].seq]
    assert store.outbox_entries(asked) == [entries[0], entries[1], entries[3]]
    assert store.outbox_entries([]) == []


def test_record_meter_on_unknown_transaction_raises_key_error(store: AgentStore) -> None:
    with pytest.raises(KeyError):
        store.record_meter(99, at=T0, energy_wh=1.0, payload={}, enqueue=True)
    assert store.pending_count() == 0


def test_record_meter_after_end_raises_and_enqueues_nothing(store: AgentStore) -> None:
    tx = begin(store)
    end(store, tx.local_id)
    with pytest.raises(ValueError, match="ended"):
        store.record_meter(tx.local_id, at=T0, energy_wh=1.0, payload={}, enqueue=True)
    assert len(store.tx_entries(tx.local_id)) == 2


def test_end_closes_record_and_enqueues_ended(store: AgentStore) -> None:
    tx = begin(store)
    stopped_at = T0 + timedelta(hours=1)
    closed = store.end_transaction(
        tx.local_id,
        stopped_at=stopped_at,
        meter_stop_wh=5100.0,
        reason=StopReason.LOCAL,
        stop_id_token="TAG-2",
        payload={"final": True},
    )
    assert closed.stopped_at == stopped_at
    assert closed.meter_stop_wh == 5100.0
    assert closed.stop_reason is StopReason.LOCAL
    assert closed.stop_id_token == "TAG-2"
    assert (closed.last_meter_wh, closed.last_meter_at) == (5100.0, stopped_at)
    assert store.get_transaction(tx.local_id) == closed
    last = store.tx_entries(tx.local_id)[-1]
    assert (last.kind, last.payload, last.created_at) == (
        TxEventKind.ENDED,
        {"final": True},
        stopped_at,
    )


def test_end_twice_raises_and_never_enqueues_a_second_ended(store: AgentStore) -> None:
    tx = begin(store)
    end(store, tx.local_id)
    with pytest.raises(ValueError):
        end(store, tx.local_id)
    kinds = [e.kind for e in store.tx_entries(tx.local_id)]
    assert kinds.count(TxEventKind.ENDED) == 1


def test_end_unknown_transaction_raises_key_error(store: AgentStore) -> None:
    with pytest.raises(KeyError):
        end(store, 42)


def test_payload_that_is_not_json_is_refused_and_nothing_is_written(store: AgentStore) -> None:
    tx = begin(store)
    with pytest.raises(TypeError):
        store.record_meter(tx.local_id, at=T0, energy_wh=1.0, payload={"at": T0}, enqueue=True)
    assert store.get_transaction(tx.local_id).last_meter_wh == 100.0
    assert store.pending_count() == 1


def test_open_transactions_lists_unended_oldest_first(store: AgentStore) -> None:
    a = begin(store, evse_id=1)
    b = begin(store, evse_id=2)
    c = begin(store, evse_id=3)
    end(store, b.local_id)
    assert [t.local_id for t in store.open_transactions()] == [a.local_id, c.local_id]


def test_open_transactions_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as s:
        tx = begin(s)
        s.record_meter(
            tx.local_id, at=T0 + timedelta(minutes=5), energy_wh=900.0, payload={}, enqueue=True
        )
        s.set_csms_tx_id(tx.local_id, "4711")
    with Store(path) as s:
        [reopened] = s.open_transactions()
        assert reopened.local_id == tx.local_id
        assert reopened.last_meter_wh == 900.0
        assert reopened.csms_tx_id == "4711"
        assert s.pending_count() == 2


def test_get_transaction_unknown_raises_key_error(store: AgentStore) -> None:
    with pytest.raises(KeyError):
        store.get_transaction(1)


def test_set_csms_tx_id_round_trip_also_after_end(store: AgentStore) -> None:
    tx = begin(store)
    end(store, tx.local_id)
    store.set_csms_tx_id(tx.local_id, "csms-9")
    assert store.get_transaction(tx.local_id).csms_tx_id == "csms-9"
    with pytest.raises(KeyError):
        store.set_csms_tx_id(123, "x")


def test_last_tx_for_evse_returns_newest_on_that_evse(store: AgentStore) -> None:
    assert store.last_tx_for_evse(1) is None
    first = begin(store, evse_id=1)
    begin(store, evse_id=2)
    end(store, first.local_id)
    second = begin(store, evse_id=1)
    begin(store, evse_id=2)
    got = store.last_tx_for_evse(1)
    assert got is not None and got.local_id == second.local_id


def test_local_ids_are_distinct_and_increasing(store: AgentStore) -> None:
    ids = [begin(store).local_id for _ in range(3)]
    assert ids == sorted(set(ids))


# -- outbox --------------------------------------------------------------------------


def test_outbox_keeps_global_order_across_transactions(store: AgentStore) -> None:
    a = begin(store, evse_id=1)
    b = begin(store, evse_id=2)
    store.record_meter(a.local_id, at=T0, energy_wh=1.0, payload={"n": 1}, enqueue=True)
    store.record_meter(b.local_id, at=T0, energy_wh=2.0, payload={"n": 2}, enqueue=True)
    end(store, a.local_id)
    expected = [
        (a.local_id, TxEventKind.STARTED),
        (b.local_id, TxEventKind.STARTED),
        (a.local_id, TxEventKind.UPDATED),
        (b.local_id, TxEventKind.UPDATED),
        (a.local_id, TxEventKind.ENDED),
    ]
    seen = []
    entry = store.next_pending()
    while entry is not None:
        seen.append((entry.tx_local_id, entry.kind))
        store.mark_delivered(entry.seq)
        entry = store.next_pending()
    assert seen == expected
    assert store.pending_count() == 0


def test_next_pending_skips_delivered_and_dropped(store: AgentStore) -> None:
    tx = begin(store)
    for n in range(3):
        store.record_meter(tx.local_id, at=T0, energy_wh=float(n), payload={"n": n}, enqueue=True)
    started, first, second, _third = store.tx_entries(tx.local_id)
    store.mark_delivered(started.seq)
    store.mark_dropped(first.seq, "rejected by CSMS")
    got = store.next_pending()
    assert got is not None and got.seq == second.seq
    assert store.pending_count() == 2


def test_next_pending_after_seq_looks_past_an_entry_in_flight(store: AgentStore) -> None:
    tx = begin(store)
    store.record_meter(tx.local_id, at=T0, energy_wh=1.0, payload={}, enqueue=True)
    started, update = store.tx_entries(tx.local_id)
    got = store.next_pending(after_seq=started.seq)
    assert got is not None and got.seq == update.seq
    assert store.next_pending(after_seq=update.seq) is None


def test_note_attempt_counts_and_persists(store: AgentStore) -> None:
    tx = begin(store)
    [entry] = store.tx_entries(tx.local_id)
    assert [store.note_attempt(entry.seq) for _ in range(3)] == [1, 2, 3]
    pending = store.next_pending()
    assert pending is not None and pending.attempts == 3
    with pytest.raises(KeyError):
        store.note_attempt(9999)


def test_mark_delivered_is_idempotent_and_rejects_unknown_seq(store: AgentStore) -> None:
    tx = begin(store)
    [entry] = store.tx_entries(tx.local_id)
    store.mark_delivered(entry.seq)
    store.mark_delivered(entry.seq)
    assert store.pending_count() == 0
    with pytest.raises(KeyError):
        store.mark_delivered(9999)


def test_dropped_entry_is_kept_for_audit_and_cannot_be_dropped_again(store: AgentStore) -> None:
    tx = begin(store)
    [entry] = store.tx_entries(tx.local_id)
    store.mark_dropped(entry.seq, "attempts exhausted")
    assert [e.seq for e in store.tx_entries(tx.local_id)] == [entry.seq]
    assert store.next_pending() is None
    with pytest.raises(ValueError, match="dropped"):
        store.mark_dropped(entry.seq, "again")
    with pytest.raises(KeyError):
        store.mark_dropped(9999, "unknown")


def test_tx_entries_returns_all_states_in_order(store: AgentStore) -> None:
    tx = begin(store)
    store.record_meter(tx.local_id, at=T0, energy_wh=1.0, payload={"n": 1}, enqueue=True)
    end(store, tx.local_id)
    entries = store.tx_entries(tx.local_id)
    store.mark_delivered(entries[0].seq)
    store.mark_dropped(entries[1].seq, "x")
    again = store.tx_entries(tx.local_id)
    assert [e.kind for e in again] == [TxEventKind.STARTED, TxEventKind.UPDATED, TxEventKind.ENDED]
    assert [e.seq for e in again] == sorted(e.seq for e in again)
    assert store.tx_entries(12345) == []


# -- pruning -------------------------------------------------------------------------


def _deliver_all(store: AgentStore, local_id: int) -> None:
    for entry in store.tx_entries(local_id):
        store.mark_delivered(entry.seq)


def test_prune_removes_only_settled_transactions_beyond_keep_last(store: AgentStore) -> None:
    old = begin(store)
    end(store, old.local_id)
    _deliver_all(store, old.local_id)
    undelivered = begin(store)
    end(store, undelivered.local_id)
    still_open = begin(store)
    _deliver_all(store, still_open.local_id)
    newest = begin(store)
    end(store, newest.local_id)
    _deliver_all(store, newest.local_id)

    assert store.prune_delivered(keep_last=1) == 2
    assert store.tx_entries(old.local_id) == []
    assert len(store.tx_entries(undelivered.local_id)) == 2
    assert len(store.tx_entries(still_open.local_id)) == 1
    assert len(store.tx_entries(newest.local_id)) == 2
    assert store.pending_count() == 2
    assert store.get_transaction(old.local_id).stopped_at is not None


def test_prune_keeps_a_transaction_with_one_pending_entry_whole(store: AgentStore) -> None:
    tx = begin(store)
    store.record_meter(tx.local_id, at=T0, energy_wh=1.0, payload={}, enqueue=True)
    end(store, tx.local_id)
    started, update, ended = store.tx_entries(tx.local_id)
    store.mark_delivered(started.seq)
    store.mark_dropped(update.seq, "x")
    assert store.prune_delivered(keep_last=0) == 0
    assert len(store.tx_entries(tx.local_id)) == 3
    store.mark_delivered(ended.seq)
    assert store.prune_delivered(keep_last=0) == 3


def test_prune_rejects_negative_keep_last(store: AgentStore) -> None:
    with pytest.raises(ValueError):
        store.prune_delivered(keep_last=-1)


def test_seq_is_never_reused_after_prune_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as s:
        tx = begin(s)
        end(s, tx.local_id)
        _deliver_all(s, tx.local_id)
        highest = max(e.seq for e in s.tx_entries(tx.local_id))
        assert s.prune_delivered(keep_last=0) == 2
    with Store(path) as s:
        fresh = begin(s)
        [entry] = s.tx_entries(fresh.local_id)
        assert entry.seq > highest
        assert fresh.local_id > tx.local_id


# -- database file -------------------------------------------------------------------


def test_file_database_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as s:
        s.set_setting("k", "v")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    with Store(path) as s:
        conn = s._conn  # the store's own connection carries the per-connection pragmas
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_schema_version_is_recorded_and_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        conn.execute("PRAGMA user_version = 999")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreSchemaError):
        Store(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_is_idempotent_and_closed_store_refuses_work(backend: str) -> None:
    s = open_backend(backend)
    s.close()
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):
        s.get_setting("k")
