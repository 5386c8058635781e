"""Which journal entries a 2.0.1 Ended event reads its meter values from (J02:
SampledDataCtrlr TxEndedMeasurands every TxEndedInterval; 0 means start and end only),
and that the store is told the same rule as entries are delivered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.events import sample_payload
from agent.core.ports import SampleContext, StopReason, TxEventKind
from agent.ocpp.v201.device_model import DeviceModel, SetStatus, parse_path
from agent.ocpp.v201.transactions import TX_ENDED_INTERVAL, TX_ENDED_MEASURANDS, EndedSamples
from agent.ocpp.v201.variables import station_variables
from agent.store import AgentStore, MemoryStore, Store
from drivers.types import MeterSample, TokenType

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "python"])
def store(request: pytest.FixtureRequest) -> Iterator[AgentStore]:
    """Both backends: each reads the chosen entries its own way (SQL or objects)."""
    opened = Store(":memory:") if request.param == "sqlite" else MemoryStore()
    try:
        yield opened
    finally:
        opened.close()


def _model(store: AgentStore, *, measurands: str, interval_s: int) -> DeviceModel:
    model = DeviceModel(store, station_variables([(1, [(1, "cType2")])]))
    for path, value in ((TX_ENDED_MEASURANDS, measurands), (TX_ENDED_INTERVAL, str(interval_s))):
        component, variable, _ = parse_path(path)
        assert model.set(component, variable, value).status == SetStatus.ACCEPTED
    return model


def _transaction(store: AgentStore, samples_every_s: int, count: int) -> int:
    """A transaction with `count` periodic samples and a status event between each two,
    then its end; returns its local id."""
    tx = store.begin_transaction(
        evse_id=1,
        connector_id=1,
        id_token="CARD",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=0.0,
    )
    for number in range(1, count + 1):
        at = T0 + timedelta(seconds=samples_every_s * number)
        sample = MeterSample(
            energy_import_wh=100.0 * number,
            power_w=7000.0,
            current_a=(10.0, 10.0, 10.0),
            voltage_v=(230.0, 230.0, 230.0),
        )
        payload = sample_payload(sample, SampleContext.PERIODIC, at, 16.0)
        store.record_meter(
            tx.local_id, at=at, energy_wh=100.0 * number, payload=payload, enqueue=True
        )
        store.record_event(tx.local_id, at=at, payload={"trigger": "charging_state_changed"})
    end = T0 + timedelta(seconds=samples_every_s * count + 1)
    store.end_transaction(
        tx.local_id,
        stopped_at=end,
        meter_stop_wh=100.0 * count,
        reason=StopReason.LOCAL,
        stop_id_token=None,
        payload={},
    )
    return tx.local_id


def _sample_times(entries: list[object]) -> list[str]:
    return [
        "start" if e.kind is TxEventKind.STARTED else "end" if e.kind is TxEventKind.ENDED
        else str(int((e.created_at - T0).total_seconds()))
        for e in entries  # type: ignore[attr-defined]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("interval_s", "expected"),
    [
        (0, ["start", "end"]),  # no intermediate values
        (10, ["start", "10", "20", "30", "40", "50", "60", "end"]),  # every sample
        (20, ["start", "20", "40", "60", "end"]),  # the first of each 20 s
        (25, ["start", "30", "50", "end"]),  # [25, 50) -> 30, [50, 75) -> 50
    ],
)
def test_the_ended_event_reads_the_start_the_first_sample_of_each_interval_and_the_end(
    store: AgentStore, interval_s: int, expected: list[str]
) -> None:
    model = _model(store, measurands="Energy.Active.Import.Register", interval_s=interval_s)
    samples = EndedSamples(store, model)
    local_id = _transaction(store, samples_every_s=10, count=6)
    entries = store.tx_entries(local_id)

    seqs = samples.select(store.get_transaction(local_id), store.tx_outline(local_id))
    chosen = store.outbox_entries(seqs)  # what the Ended event parses: these only
    told = [entry for entry in entries if samples.reads(entry)]  # in delivery order

    assert _sample_times(chosen) == expected
    assert _sample_times(told) == expected  # the store keeps exactly what is read


def test_without_ended_measurands_the_store_keeps_nothing_for_the_end(store: AgentStore) -> None:
    model = _model(store, measurands="", interval_s=10)
    samples = EndedSamples(store, model)
    local_id = _transaction(store, samples_every_s=10, count=3)

    assert not any(samples.reads(entry) for entry in store.tx_entries(local_id))
