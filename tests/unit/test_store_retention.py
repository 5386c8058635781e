"""What the store keeps of delivered outbox entries, on both backends, and what the CSMS
still receives when it keeps little (agent/store/retention.py).

The contract part runs on SQLite (`Store(":memory:")`) and on the plain-Python
`MemoryStore`, with fleet mode's retention (nothing kept that no message needs) unless
a test says otherwise. Each delivery is what the outbox sender does after a CALLRESULT
(`next_pending`, then `mark_delivered`), and each check is what a user would: the
entries the store still holds, each entry's position (the 2.0.1 seqNo it is sent with),
the time a restart would close a transaction at. The wire part runs the real agent with
fleet mode's store against the test CSMS: the seqNos and the Stop's meter data it
receives are those of a store that keeps everything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import StoreConfig
from agent.core.ports import OutboxEntry, StopReason, TxEventKind, TxRecord
from agent.store import MEMORY_PATH, AgentStore, MemoryStore, Retention, Store
from agent.store.retention import FLEET_RETENTION
from agent.store.schema import MIGRATIONS
from drivers.types import TokenType
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import RunningStation, make_config
from tests.integration.v201_station import is_status, make_config_201

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "python")


def open_backend(backend: str, retention: Retention = FLEET_RETENTION) -> AgentStore:
    """An empty store of `backend` keeping what `retention` says."""
    if backend == "sqlite":
        return Store(":memory:", retention=retention)
    return MemoryStore(retention=retention)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str) -> Iterator[AgentStore]:
    opened = open_backend(backend)
    try:
        yield opened
    finally:
        opened.close()


def begin(store: AgentStore, evse_id: int = 1) -> TxRecord:
    return store.begin_transaction(
        evse_id=evse_id,
        connector_id=1,
        id_token="TAG",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=0.0,
    )


def sample(store: AgentStore, tx: TxRecord, minute: int) -> None:
    store.record_meter(
        tx.local_id,
        at=T0 + timedelta(minutes=minute),
        energy_wh=100.0 * minute,
        payload={"energy_import_wh": 100.0 * minute},
        enqueue=True,
    )


def end(store: AgentStore, tx: TxRecord, minute: int = 60) -> None:
    store.end_transaction(
        tx.local_id,
        stopped_at=T0 + timedelta(minutes=minute),
        meter_stop_wh=6000.0,
        reason=StopReason.EV_DISCONNECTED,
        stop_id_token=None,
        payload={"energy_import_wh": 6000.0},
    )


def deliver(store: AgentStore) -> list[tuple[OutboxEntry, int]]:
    """Deliver every pending entry as the outbox sender does; return each entry with the
    position it was sent with (2.0.1 seqNo)."""
    sent: list[tuple[OutboxEntry, int]] = []
    after = 0
    entry = store.next_pending(after)
    while entry is not None:
        sent.append((entry, store.entry_position(entry.tx_local_id, entry.seq)))
        store.mark_delivered(entry.seq)
        after = entry.seq
        entry = store.next_pending(after)
    return sent


def never(_entry: OutboxEntry) -> bool:
    """An end message that reads no delivered entry (1.6 with StopTxnSampledData empty)."""
    return False


def always(_entry: OutboxEntry) -> bool:
    """An end message that reads every entry (2.0.1 with TxEndedMeasurands set)."""
    return True


# -- a running transaction ---------------------------------------------------------------------


def test_delivered_entries_the_end_will_not_read_go_and_seqno_goes_on(
    store: AgentStore,
) -> None:
    store.retain_for_end(never)
    tx = begin(store)
    for minute in range(1, 6):
        sample(store, tx, minute)
        deliver(store)
    assert [e.kind for e in store.tx_entries(tx.local_id)] == [TxEventKind.UPDATED]  # the newest
    assert store.last_entry_at(tx.local_id) == T0 + timedelta(minutes=5)

    sample(store, tx, 6)
    end(store, tx)
    sent = deliver(store)
    assert [position for _, position in sent] == [6, 7]  # start, 5 samples, then these
    assert store.pending_count() == 0


def test_delivered_entries_the_end_reads_stay_until_it_is_sent(store: AgentStore) -> None:
    store.retain_for_end(always)
    tx = begin(store)
    for minute in range(1, 4):
        sample(store, tx, minute)
    deliver(store)
    end(store, tx)
    # What the end message is built from when it is sent: every entry, in order.
    kinds = [e.kind for e in store.tx_entries(tx.local_id)]
    assert kinds == [TxEventKind.STARTED, *[TxEventKind.UPDATED] * 3, TxEventKind.ENDED]
    assert [p for _, p in deliver(store)] == [4]


def test_without_the_adapters_word_a_running_transaction_keeps_everything(
    store: AgentStore,
) -> None:
    tx = begin(store)  # nobody called retain_for_end
    for minute in range(1, 4):
        sample(store, tx, minute)
    deliver(store)
    assert len(store.tx_entries(tx.local_id)) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_stores_default_keeps_every_entry_of_a_running_transaction(backend: str) -> None:
    store = open_backend(backend, Retention())  # a file store's default
    try:
        store.retain_for_end(never)
        tx = begin(store)
        for minute in range(1, 4):
            sample(store, tx, minute)
        deliver(store)
        assert len(store.tx_entries(tx.local_id)) == 4
    finally:
        store.close()


def test_a_pruned_entry_is_unknown_and_an_entry_still_pending_keeps_its_place(
    store: AgentStore,
) -> None:
    store.retain_for_end(never)
    tx = begin(store)
    sample(store, tx, 1)
    started = store.next_pending()
    assert started is not None
    store.mark_delivered(started.seq)
    sample(store, tx, 2)  # the started entry is no longer the newest: it goes next time
    first = store.next_pending(started.seq)
    assert first is not None
    store.mark_delivered(first.seq)
    with pytest.raises(KeyError):
        store.mark_delivered(started.seq)
    with pytest.raises(KeyError):
        store.entry_position(tx.local_id, started.seq)
    second = store.next_pending(first.seq)
    assert second is not None and store.entry_position(tx.local_id, second.seq) == 2


def test_a_dropped_entry_is_kept_while_its_transaction_runs(store: AgentStore) -> None:
    store.retain_for_end(never)
    tx = begin(store)
    sample(store, tx, 1)
    sample(store, tx, 2)
    started, first, second = store.tx_entries(tx.local_id)
    store.mark_delivered(started.seq)
    store.mark_dropped(first.seq, "CALLERROR after 3 attempts")
    store.mark_delivered(second.seq)
    assert [e.seq for e in store.tx_entries(tx.local_id)] == [first.seq, second.seq]
    # The end message's reads see the same: the outline, and the entries by seq.
    assert [o.seq for o in store.tx_outline(tx.local_id)] == [first.seq, second.seq]
    assert store.outbox_entries([started.seq, first.seq, second.seq]) == [first, second]


# -- settled transactions ------------------------------------------------------------------------


def test_an_ended_delivered_transaction_is_gone_and_the_next_one_counts_from_zero(
    store: AgentStore,
) -> None:
    tx = begin(store)
    sample(store, tx, 1)
    end(store, tx)
    sent_seqs = [e.seq for e, _ in deliver(store)]
    last_seq = max(sent_seqs)
    assert store.tx_entries(tx.local_id) == []
    assert store.tx_outline(tx.local_id) == [] and store.outbox_entries(sent_seqs) == []
    assert store.get_transaction(tx.local_id).stopped_at is not None  # the row stays

    following = begin(store)
    sample(store, following, 1)
    sent = deliver(store)
    assert [p for _, p in sent] == [0, 1]
    assert min(e.seq for e, _ in sent) > last_seq


def test_a_transaction_settled_by_a_dropped_end_is_gone_too(store: AgentStore) -> None:
    tx = begin(store)
    end(store, tx)
    started, ended = store.tx_entries(tx.local_id)
    store.mark_delivered(started.seq)
    store.mark_dropped(ended.seq, "given up")
    assert store.tx_entries(tx.local_id) == []


def test_a_transaction_with_an_entry_pending_is_kept_whole(store: AgentStore) -> None:
    running = begin(store, evse_id=1)
    ended = begin(store, evse_id=2)
    end(store, ended)
    waiting = store.next_pending()
    assert waiting is not None and waiting.tx_local_id == running.local_id
    for entry in store.tx_entries(ended.local_id):  # its end delivered, the other's not
        store.mark_delivered(entry.seq)
    assert store.tx_entries(ended.local_id) == []
    assert [e.seq for e in store.tx_entries(running.local_id)] == [waiting.seq]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_newest_settled_transactions_are_kept_as_many_as_asked(backend: str) -> None:
    store = open_backend(backend, Retention(keep_settled=2))
    try:
        txs = []
        for _ in range(3):
            tx = begin(store)
            end(store, tx)
            deliver(store)
            txs.append(tx)
        assert [len(store.tx_entries(tx.local_id)) for tx in txs] == [0, 2, 2]
        assert store.prune_delivered(keep_last=0) == 4
    finally:
        store.close()


# -- SQLite: positions on file -----------------------------------------------------------------


def test_positions_go_on_after_a_restart_of_a_pruned_transaction(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path, retention=FLEET_RETENTION) as store:
        store.retain_for_end(never)
        tx = begin(store)
        for minute in range(1, 4):
            sample(store, tx, minute)
            assert store.flush()  # the outbox hands out durable entries only
            deliver(store)
        assert store.flush()  # deletions are lazy writes, as delivery marks
        assert len(store.tx_entries(tx.local_id)) == 1
    with Store(path, retention=FLEET_RETENTION) as store:
        sample(store, tx, 4)
        assert store.flush()  # the outbox hands out durable entries only
        assert [p for _, p in deliver(store)] == [4]


def test_a_schema_one_file_gets_each_entrys_position(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO transactions (local_id, evse_id, connector_id, id_token, token_type,"
            " started_at, meter_start_wh, last_meter_wh, last_meter_at)"
            " VALUES (1, 1, 1, 'TAG', 'ISO14443', ?, 0, 0, ?)",
            (T0.isoformat(), T0.isoformat()),
        )
        for seq, kind in ((1, "started"), (2, "updated"), (3, "updated")):
            conn.execute(
                "INSERT INTO outbox (seq, tx_local_id, kind, payload, created_at, state)"
                " VALUES (?, 1, ?, '{}', ?, ?)",
                (seq, kind, T0.isoformat(), "delivered" if seq == 1 else "pending"),
            )
    finally:
        conn.close()
    with Store(path) as store:
        sent = deliver(store)
        assert [(e.seq, p) for e, p in sent] == [(2, 1), (3, 2)]
        sample(store, store.get_transaction(1), 5)
        assert store.flush()
        assert [p for _, p in deliver(store)] == [3]


# -- on the wire: fleet mode's store, the real agent, the test CSMS --------------------------


def fleet_store(config: Any) -> Any:
    """The config with fleet mode's store (a MemoryStore keeping only what is needed)."""
    return replace(config, store=StoreConfig(Path(MEMORY_PATH)))


async def run_until(running: RunningStation, done: Callable[[], bool]) -> None:
    await running.agent.wait_until(done, 20)


def energy_values(meter_values: list[dict[str, Any]]) -> list[str]:
    """The energy register readings of OCPP meterValue items, in order."""
    return [
        value["value"]
        for item in meter_values
        for value in item["sampledValue"]
        if value.get("measurand", "Energy.Active.Import.Register")
        == "Energy.Active.Import.Register"
    ]


@pytest.mark.parametrize("stop_data", ["", "Energy.Active.Import.Register"])
async def test_v16_a_fleet_stations_stop_carries_what_stop_txn_sampled_data_asks(
    tmp_path: Path, stop_data: str
) -> None:
    """1.6 section 9.1: transactionData holds the StopTxnSampledData values of every
    sample, though fleet mode lets go of what the Stop will not read."""
    async with Csms(CsmsBehaviour(), subprotocols=("ocpp1.6",)) as csms:
        config = make_config(csms.url, tmp_path, settings={"StopTxnSampledData": stop_data})
        running = RunningStation(fleet_store(config))
        await running.start()
        try:
            assert isinstance(running.agent.store, MemoryStore)
            await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
            running.plug()
            running.tap("FLEET-CARD")
            await csms.wait_for("MeterValues", count=3, timeout_s=20)
            store = running.agent.store
            local_id = store.last_tx_for_evse(1).local_id  # type: ignore[union-attr]
            if not stop_data:  # delivered and read by nobody: gone, but for the newest
                await run_until(running, lambda: len(store.tx_entries(local_id)) <= 2)
            running.unplug()
            stop = await csms.wait_for("StopTransaction", timeout_s=20)
        finally:
            await running.stop()
        sampled = [call["meterValue"] for call in csms.calls("MeterValues")]
    if not stop_data:
        assert "transactionData" not in stop
    else:
        expected = [reading for values in sampled for reading in energy_values(values)]
        received = energy_values(stop["transactionData"])
        assert received[:-1] == expected  # every sample, then the end's reading
        assert stop["transactionData"][-1]["sampledValue"][0]["context"] == "Transaction.End"


@pytest.mark.parametrize(
    ("ended_measurands", "ended_interval"),
    [("", "0"), ("Energy.Active.Import.Register", "0"), ("Energy.Active.Import.Register", "1")],
)
async def test_v201_a_fleet_stations_seqnos_and_ended_meter_values_are_whole(
    tmp_path: Path, ended_measurands: str, ended_interval: str
) -> None:
    """E04/E01/J02: seqNo counts every TransactionEvent of the transaction from 0 without
    a gap, and the Ended event carries the TxEndedMeasurands at TxEndedInterval (0: the
    start's and the end's only), though fleet mode lets go of the delivered entries the
    Ended event will not read: with nothing to read between start and end, a running
    transaction holds its Started entry and its newest one, however long it runs."""
    async with Csms(CsmsBehaviour(), subprotocols=("ocpp2.0.1",)) as csms:
        settings = {
            "SampledDataCtrlr/TxUpdatedInterval": "1",
            "SampledDataCtrlr/TxEndedMeasurands": ended_measurands,
            "SampledDataCtrlr/TxEndedInterval": ended_interval,
        }
        running = RunningStation(
            fleet_store(make_config_201(csms.url, tmp_path, settings=settings))
        )
        await running.start()
        try:
            assert isinstance(running.agent.store, MemoryStore)
            await csms.wait_for("StatusNotification", where=is_status("Available"))
            running.plug()
            running.tap("FLEET-CARD")

            def with_meter(event: dict[str, Any]) -> bool:
                return event["eventType"] == "Updated" and "meterValue" in event

            await csms.wait_for("TransactionEvent", where=with_meter, count=3, timeout_s=20)
            store = running.agent.store
            local_id = store.last_tx_for_evse(1).local_id  # type: ignore[union-attr]
            if ended_interval == "0":
                await run_until(running, lambda: len(store.tx_entries(local_id)) <= 2)
            running.unplug()
            ended = await csms.wait_for(
                "TransactionEvent", where=lambda e: e["eventType"] == "Ended", timeout_s=20
            )
        finally:
            await running.stop()
        events = csms.calls("TransactionEvent")
    assert [event["seqNo"] for event in events] == list(range(len(events)))
    if not ended_measurands:
        assert "meterValue" not in ended
        return
    readings = energy_values(ended["meterValue"])
    started = energy_values(events[0]["meterValue"]) if "meterValue" in events[0] else []
    updated = [r for e in events if with_meter(e) for r in energy_values(e["meterValue"])]
    contexts = [v["context"] for mv in ended["meterValue"] for v in mv["sampledValue"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert readings[0] == (started[0] if started else 0.0)
    if ended_interval == "0":
        assert contexts == ["Transaction.Begin", "Transaction.End"]  # no intermediate values
        assert readings[-1] >= updated[-1]
    else:
        assert readings[1:-1] == updated  # the start's, every second's sample, the end's
