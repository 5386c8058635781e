"""Fleet mode (issue 8): many real agents in one process against one CSMS.

Every station is run_agent over simulated drivers with the real adapter on its own
websocket; the test CSMS (the `ocpp` library, schema validation on) checks every message.
Intervals are shortened: the CSMS gives a 1 s heartbeat interval at boot, and meter
values are sampled every second.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator.csms import Csms, CsmsBehaviour
from simulator.fleet import Fleet, FleetOptions, HeapFreezer, fleet_template, station_config

#: The fleet's 10 sampled values: energy, power, offered current, SoC, 3 currents, 3 voltages.
SAMPLED_VALUES = 10


@pytest.fixture
async def csms201() -> AsyncIterator[Csms]:
    """A 2.0.1 CSMS giving a 1 s heartbeat interval."""
    async with Csms(CsmsBehaviour(boot_interval_s=1), subprotocols=("ocpp2.0.1",)) as server:
        yield server


def fast(csms: Csms, version: str) -> FleetOptions:
    """Fleet options with 1 s intervals against `csms`."""
    return FleetOptions(url=csms.url, version=version, heartbeat_s=1, sample_interval_s=1)


async def test_fleet_of_20_boots_charges_reports_and_stops_cleanly(
    csms: Csms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a station would write lands here
    csms.behaviour.boot_interval_s = 1
    ids = [f"CP-{n:04d}" for n in range(1, 21)]
    fleet = Fleet(fast(csms, "1.6"))
    try:
        await fleet.grow_to(20, spread_s=0.5)
        for cp_id in ids:
            # Two heartbeats apart and two periodic meter values of the running transaction.
            await csms.wait_for("Heartbeat", cp_id=cp_id, count=2, timeout_s=15)
            start = await csms.wait_for("StartTransaction", cp_id=cp_id)
            assert start["idTag"] == f"T{cp_id}"
            meter = await csms.wait_for(
                "MeterValues", cp_id=cp_id, where=lambda p: "transactionId" in p, count=2
            )
            (value,) = meter["meterValue"]
            assert len(value["sampledValue"]) == SAMPLED_VALUES
            assert {v["context"] for v in value["sampledValue"]} == {"Sample.Periodic"}
        assert sorted({r.charge_point_id for r in csms.received}) == ids
        assert fleet.counts()["charging"] == 20
    finally:
        await fleet.stop()
    # SIGTERM semantics: every transaction stopped and reported, every connection closed.
    for cp_id in ids:
        (stop,) = csms.calls("StopTransaction", cp_id)
        assert stop["reason"] == "Reboot"
        await csms.wait_disconnected(cp_id)
    assert fleet.counts() == {
        "stations": 20,
        "online": 0,
        "charging": 0,
        "restarted": 0,
        "ended": 20,
    }
    assert os.listdir(tmp_path) == []  # in-memory stores, no register files


async def test_fleet_speaks_201_transaction_events_with_10_sampled_values(
    csms201: Csms,
) -> None:
    ids = [f"CP-{n:04d}" for n in range(1, 11)]
    fleet = Fleet(fast(csms201, "2.0.1"))
    try:
        await fleet.grow_to(10, spread_s=0.3)
        for cp_id in ids:
            await csms201.wait_for("Heartbeat", cp_id=cp_id, count=2, timeout_s=15)
            started = await csms201.wait_for(
                "TransactionEvent", cp_id=cp_id, where=lambda p: p["eventType"] == "Started"
            )
            updated = await csms201.wait_for(
                "TransactionEvent",
                cp_id=cp_id,
                where=lambda p: p["triggerReason"] == "MeterValuePeriodic",
                count=2,
            )
            assert (
                updated["transactionInfo"]["transactionId"]
                == (started["transactionInfo"]["transactionId"])
            )
            (value,) = updated["meterValue"]
            assert len(value["sampledValue"]) == SAMPLED_VALUES
    finally:
        await fleet.stop()
    for cp_id in ids:
        ended = csms201.calls("TransactionEvent", cp_id)[-1]
        assert ended["eventType"] == "Ended"
        await csms201.wait_disconnected(cp_id)


async def test_cpagent_fleet_command_runs_stations_until_sigterm(csms: Csms) -> None:
    command = [sys.executable, "-m", "agent", "fleet", "--url", csms.url, "--count", "3"]
    process = await asyncio.create_subprocess_exec(
        *command, "--spread", "0.2", "--status-every", "0.5", stdout=asyncio.subprocess.PIPE
    )
    try:
        for cp_id in ("CP-0001", "CP-0002", "CP-0003"):
            await csms.wait_for("StartTransaction", cp_id=cp_id, timeout_s=15)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 0
    assert b"charging=3" in output
    assert len(csms.calls("StopTransaction")) == 3


def test_fleet_stations_differ_only_in_id_and_keep_nothing_on_disk() -> None:
    template = fleet_template(FleetOptions(url="ws://127.0.0.1:9/ocpp", version="2.0.1"))
    config = station_config(template, "CP-0042")
    assert config.station.id == "CP-0042"
    assert str(config.store.path) == "memory:"  # agent.store.MEMORY_PATH: a MemoryStore
    assert not config.api.enabled
    assert config.csms.ocpp_versions == ("2.0.1",)
    assert config.settings["OCPPCommCtrlr/HeartbeatInterval"] == "10"
    assert config.settings["SampledDataCtrlr/TxUpdatedInterval"] == "10"
    assert config.settings["SampledDataCtrlr/TxUpdatedMeasurands"].count(",") == 5
    assert config.simulator.auto_plug


def test_fleet_template_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError, match=r"1\.6, 2\.0\.1"):
        fleet_template(FleetOptions(url="ws://127.0.0.1:9/ocpp", version="1.5"))


async def test_heap_freezer_hides_live_objects_from_the_collector_until_stopped() -> None:
    freezer = HeapFreezer(period_s=60.0)
    freezer.start()
    try:
        assert gc.get_freeze_count() > 0  # everything alive now is frozen, at once
    finally:
        await freezer.stop()
    assert gc.get_freeze_count() == 0  # handed back to the collector
