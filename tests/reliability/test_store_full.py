"""A full disk under a running agent: the EV keeps charging, the CSMS is told, and once
space returns every transaction message arrives, once and in order.

Real agent in-process (simulated hardware) against the test CSMS, OCPP 1.6J and 2.0.1.
The disk fills for real: the store file is created with 512-byte pages (so every journal
entry needs fresh pages) and `PRAGMA max_page_count` on the writer's connection stops it
growing, which SQLite answers with SQLITE_FULL exactly as on a full disk. Space returns
by lifting the cap, and the test asks the store to retry now (the agent retries every
10 s of its clock on its own; tests/unit/test_store_writer.py drives that clock).

What a user checks: the contactor stays closed and energy keeps flowing while nothing can
be written; the CSMS hears of the problem (1.6: StatusNotification on connector 0 with
OtherError / StoreWriteFailed; 2.0.1: NotifyEvent ChargingStation.Problem) and of its
end; a stop made meanwhile reaches the CSMS only after it was written; the CSMS's ledger
holds one whole transaction, nothing twice, and matches the journal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import RunningStation, until
from tests.integration.v201_station import make_config_201
from tests.reliability.ledger import Ledger

SUBPROTOCOLS = {"1.6": ("ocpp1.6",), "2.0.1": ("ocpp2.0.1",)}
SAMPLES = {
    "1.6": {"MeterValueSampleInterval": 1},
    "2.0.1": {"SampledDataCtrlr/TxUpdatedInterval": 1},
}
STOP = {"1.6": "StopTransaction", "2.0.1": "TransactionEvent"}

Predicate = Callable[[dict[str, Any]], bool]


def small_pages(path: Path) -> None:
    """Create the store file with 512-byte pages: every journal entry spills to new pages."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size = 512")
        conn.execute("PRAGMA journal_mode = WAL")  # writes the header with that page size
    finally:
        conn.close()


def fill_disk(store: Store) -> None:
    """The store file may not grow any more: SQLITE_FULL on the next page it needs."""
    store.on_writer(lambda conn: conn.execute("PRAGMA max_page_count = 1"))


def free_disk(store: Store) -> None:
    """Space returns."""
    store.on_writer(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))


def problem(version: str, *, active: bool) -> tuple[str, Predicate]:
    """The CALL that reports the store's problem (or its end), and its filter."""
    if version == "1.6":
        code = "OtherError" if active else "NoError"
        return "StatusNotification", lambda p: p["connectorId"] == 0 and p["errorCode"] == code

    def is_problem(payload: dict[str, Any]) -> bool:
        (data,) = payload["eventData"]
        wanted = ("ChargingStation", "Problem", "true" if active else "false")
        return (data["component"]["name"], data["variable"]["name"], data["actualValue"]) == wanted

    return "NotifyEvent", is_problem


def is_stop(version: str) -> Predicate:
    """A filter for the message that ends a transaction."""
    if version == "1.6":
        return lambda _payload: True
    return lambda payload: payload["eventType"] == "Ended"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_full_disk_keeps_the_ev_charging_is_reported_and_loses_no_message(
    version: str, tmp_path: Path
) -> None:
    db = tmp_path / "agent.db"
    small_pages(db)
    async with Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS[version]) as csms:
        config = make_config_201(
            csms.url, tmp_path, settings=SAMPLES[version], ocpp_version=version
        )
        running = RunningStation(config)
        await running.start()
        try:
            await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
            agent = running.agent
            evse = agent.station.evses[1]
            running.plug()
            running.tap("CARD")
            await until(agent, evse.energy_flowing)
            first = len(Ledger(version, csms).messages)
            await until(agent, lambda: len(Ledger(version, csms).messages) >= first + 2)

            fill_disk(agent.store)
            action, reported = problem(version, active=True)
            report = await csms.wait_for(action, where=reported)
            if version == "1.6":
                assert report["vendorErrorCode"] == "StoreWriteFailed"
                assert report["info"].startswith("SQLITE_FULL")
            else:
                assert report["eventData"][0]["techCode"] == "StoreWriteFailed"

            # Charging goes on: samples are taken and kept in memory, the contactor closed.
            assert evse.tx is not None
            local_id = evse.tx.local_id

            def samples() -> int:
                entries = agent.store.tx_entries(local_id)
                return sum("energy_import_wh" in e.payload for e in entries)

            taken = samples()
            await until(agent, lambda: samples() >= taken + 2)
            assert not agent.store.health.writable and agent.store.health.backlog >= 2
            assert evse.tx is not None and evse.energy_flowing()
            plant = agent.hardware[1].plant
            assert plant is not None and plant.contactor_closed

            running.tap("CARD")  # the driver stops: the end is acknowledged, not yet durable
            await until(agent, lambda: evse.tx is None)
            stops = [p for p in csms.calls(STOP[version]) if is_stop(version)(p)]
            assert not stops, "a stop reached the CSMS before it was written"

            free_disk(agent.store)
            agent.store.retry_now()
            await csms.wait_for(STOP[version], where=is_stop(version))
            action, cleared = problem(version, active=False)
            await csms.wait_for(action, where=cleared, count=2 if version == "1.6" else 1)
            await until(agent, lambda: agent.store.pending_count() == 0)
        finally:
            await running.stop()

        ledger = Ledger(version, csms)
        (session,) = ledger.assert_consistent(max_rewinds=0)
        assert session.repeats == 0
        assert len(session.registers) >= taken + 2  # the samples taken while it was full
        with Store(db) as store:
            ledger.assert_matches_journal(store)
