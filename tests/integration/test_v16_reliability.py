"""Nothing lost, nothing duplicated: offline sessions, kill -9, a misbehaving CSMS and
malformed frames, over OCPP 1.6J."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.core.ports import TxEventKind
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID, RunningStation, until

TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


def transaction_messages(
    csms: Csms, *, answered_only: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    """The transaction-related CALLs the CSMS received (and answered), in order."""
    return [
        (r.action, r.payload)
        for r in csms.received
        if r.action in TX_ACTIONS and (r.answered or not answered_only)
    ]


async def test_offline_session_is_delivered_once_in_order_on_reconnect(
    csms: Csms, station_factory: Any
) -> None:
    running: RunningStation = await station_factory(
        csms, settings={"AllowOfflineTxForUnknownId": True}
    )
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    port = csms.port
    await csms.stop()  # the CSMS is down for the whole transaction
    agent = running.agent
    await until(agent, lambda: not agent.adapter.online)

    running.plug()
    running.tap("OFFLINE-CARD")
    await until(agent, lambda: agent.station.evses[1].tx is not None)
    local_id = agent.station.evses[1].tx.local_id  # type: ignore[union-attr]

    def with_messages() -> int:
        """Journal entries that make a 1.6 message (charging-state notes make none)."""
        entries = agent.store.tx_entries(local_id)
        return sum(
            e.kind != TxEventKind.UPDATED or "energy_import_wh" in e.payload for e in entries
        )

    await until(agent, lambda: with_messages() >= 3)  # start + 2 samples
    running.unplug()
    await until(agent, lambda: agent.station.evses[1].tx is None)
    queued = with_messages()

    async with Csms(port=port) as back:
        await back.wait_for("StopTransaction", timeout_s=15)
        await until(agent, lambda: agent.store.pending_count() == 0)
        messages = transaction_messages(back)

    kinds = [action for action, _ in messages]
    assert kinds[0] == "StartTransaction" and kinds[-1] == "StopTransaction"
    assert kinds.count("StartTransaction") == 1 and kinds.count("StopTransaction") == 1
    assert len(kinds) == queued
    start, stop = messages[0][1], messages[-1][1]
    assert start["idTag"] == "OFFLINE-CARD"
    assert all(payload["transactionId"] == 1 for action, payload in messages[1:])
    assert stop["reason"] == "EVDisconnected"
    registers = [
        float(v["value"])
        for action, p in messages
        if action == "MeterValues"
        for v in p["meterValue"][0]["sampledValue"]
    ]
    assert registers == sorted(registers)
    assert start["meterStart"] <= registers[0] and registers[-1] <= stop["meterStop"] + 1
    assert start["timestamp"] < stop["timestamp"]


async def test_callerror_on_start_transaction_is_retried_and_delivered_once(
    csms: Csms, station: RunningStation
) -> None:
    csms.behaviour.fail_next["StartTransaction"] = 1
    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction", count=2)
    await csms.wait_for("MeterValues")
    starts = [r for r in csms.received if r.action == "StartTransaction"]
    assert [r.answered for r in starts] == [False, True]
    assert starts[0].payload == starts[1].payload  # the same message, not a new one


async def test_transaction_message_given_up_after_the_configured_attempts(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(
        CP_ID, "ChangeConfiguration", {"key": "TransactionMessageAttempts", "value": "2"}
    )
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "0"})
    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction")
    csms.behaviour.fail_next["StopTransaction"] = 5
    station.unplug()
    await csms.wait_for("StopTransaction", count=2)
    csms.behaviour.fail_next.clear()
    # The queue moves on: the next transaction's messages are delivered.
    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction", count=2)
    assert len(csms.calls("StopTransaction")) == 2  # two attempts, then given up


async def test_csms_that_never_answers_does_not_wedge_the_agent(
    csms: Csms, station_factory: Any
) -> None:
    running: RunningStation = await station_factory(
        csms, extra={"csms": {"response_timeout_s": 0.5}}
    )
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    csms.behaviour.ignore_next["StartTransaction"] = 1
    running.plug()
    running.tap("CARD")
    await csms.wait_for("StartTransaction", count=2)  # timed out, then retried
    await csms.wait_for("MeterValues")
    assert [r.answered for r in csms.received if r.action == "StartTransaction"] == [False, True]


async def test_csms_closing_mid_call_loses_nothing(csms: Csms, station: RunningStation) -> None:
    csms.behaviour.ignore_next["StartTransaction"] = 1
    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction")
    await csms.disconnect(CP_ID)
    await csms.wait_for("BootNotification", count=2)
    await csms.wait_for("StartTransaction", count=2)
    station.unplug()
    stop = await csms.wait_for("StopTransaction")
    assert stop["transactionId"] == 1
    answered = [r for r in csms.received if r.action == "StartTransaction" and r.answered]
    assert len(answered) == 1


# -- malformed input from the CSMS (OCPP-J section 4.2.3) ---------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('[2,"m1","Reset",{"type":"Bogus"}]', "PropertyConstraintViolation"),
        ('[2,"m2","Reset",{}]', "OccurenceConstraintViolation"),
        (
            '[2,"m3","ChangeAvailability",{"connectorId":"one","type":"Operative"}]',
            "TypeConstraintViolation",
        ),
        ('[2,"m4","Reset",{"type":"Soft","extra":1}]', "FormationViolation"),
        ('[2,"m5","Reset","not an object"]', "FormationViolation"),
        ('[2,"m6","FlyToTheMoon",{}]', "NotImplemented"),
        ('[2,"m7","GetDiagnostics",{"location":"ftp://x"}]', "NotSupported"),
    ],
)
async def test_bad_call_gets_the_spec_callerror(
    csms: Csms, station: RunningStation, frame: str, code: str
) -> None:
    reply = await csms.send_raw(CP_ID, frame)
    assert reply is not None
    assert reply[0] == 4 and reply[1] == json.loads(frame)[1] and reply[2] == code


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        "{}",
        "[]",
        '[9,"x",{}]',
        '[3,"no-such-call",{}]',
        '[4,"nope","X","y",{}]',
    ],
)
async def test_garbage_frames_are_dropped_and_the_session_continues(
    csms: Csms, station: RunningStation, frame: str
) -> None:
    assert await csms.send_raw(CP_ID, frame, timeout_s=0.3) is None
    assert csms.connected(CP_ID)
    station.plug()
    station.tap("CARD")
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "CARD"


# -- kill -9 of a real agent process ----------------------------------------------------------


def _write_config(path: Path, csms_url: str, store: Path) -> None:
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {"url": csms_url, "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5}},
        "evses": [{"connectors": [{"type": "cType2"}]}],
        "store": {"path": str(store)},
        "simulator": {"time_scale": 60, "auto_plug": True},
        "settings": {"MeterValueSampleInterval": 1},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(document))


async def _spawn(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_kill_9_mid_transaction_then_restart_closes_it_with_power_loss(
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.yaml"
    async with Csms(CsmsBehaviour()) as csms:
        _write_config(config, csms.url, tmp_path / "agent.db")
        process = await _spawn(config)
        try:
            await csms.wait_for(
                "StatusNotification", where=lambda p: p["status"] == "Preparing", timeout_s=20
            )
            await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "KILL-ME"})
            start = await csms.wait_for("StartTransaction")
            await csms.wait_for("MeterValues", count=2)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        last_sample = csms.calls("MeterValues")[-1]["meterValue"][0]["sampledValue"][0]

        process = await _spawn(config)
        try:
            stop = await csms.wait_for("StopTransaction", timeout_s=20)
            await csms.wait_for("BootNotification", count=2)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)

    assert len(csms.calls("StartTransaction")) == 1
    assert len(csms.calls("StopTransaction")) == 1
    assert stop["transactionId"] == 1
    assert stop["reason"] == "PowerLoss"
    assert stop["meterStop"] >= start["meterStart"]
    assert stop["meterStop"] >= int(float(last_sample["value"]))
    assert process.returncode == 0


async def test_sigterm_mid_transaction_stops_it_with_reboot_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.yaml"
    async with Csms(CsmsBehaviour()) as csms:
        _write_config(config, csms.url, tmp_path / "agent.db")
        process = await _spawn(config)
        try:
            await csms.wait_for(
                "StatusNotification", where=lambda p: p["status"] == "Preparing", timeout_s=20
            )
            await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "TERM"})
            await csms.wait_for("StartTransaction")
            process.send_signal(signal.SIGTERM)
            stop = await csms.wait_for("StopTransaction")
            await asyncio.wait_for(process.wait(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert stop["reason"] == "Reboot"
    assert process.returncode == 0


async def test_offline_start_for_an_id_the_csms_rejects_is_stopped_deauthorized(
    csms: Csms, station_factory: Any
) -> None:
    """StopTransactionOnInvalidId (OCPP 1.6 section 9.1): an offline-started transaction
    whose StartTransaction.conf says Invalid is stopped with reason DeAuthorized."""
    running: RunningStation = await station_factory(
        csms, settings={"AllowOfflineTxForUnknownId": True}
    )
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    port = csms.port
    await csms.stop()
    agent = running.agent
    await until(agent, lambda: not agent.adapter.online)
    running.plug()
    running.tap("STOLEN-CARD")
    await until(agent, lambda: agent.hardware[1].plant.contactor_closed)

    async with Csms(CsmsBehaviour(accepted_tags=set()), port=port) as back:
        start = await back.wait_for("StartTransaction", timeout_s=15)
        stop = await back.wait_for("StopTransaction")
        await back.wait_for("StatusNotification", where=lambda p: p["status"] == "Finishing")
    assert start["idTag"] == "STOLEN-CARD"
    assert stop["reason"] == "DeAuthorized"
    assert not agent.hardware[1].plant.contactor_closed
