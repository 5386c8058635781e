"""Nothing lost, nothing duplicated, over OCPP 2.0.1: kill -9 of a real agent process, a
Reset during a transaction, a CSMS failing TransactionEvents (E13), a connection lost
mid-transaction, and malformed CALLs from the CSMS (OCPP 2.0.1 part 4 section 4.3).

Each test judges the TransactionEvents the CSMS answered (its ledger): one Started and
one Ended per transaction id, seqNo 0, 1, 2... without a gap or a repeat, registers
never decreasing. An event the CSMS did not answer may rightly come again; one it
answered must not.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.csms import Csms, CsmsBehaviour, Received
from tests.integration.conftest import CP_ID, until
from tests.integration.v201_station import RunningStation201, is_status

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]
ENERGY = "Energy.Active.Import.Register"


# -- the ledger: what the CSMS answered --------------------------------------------------


def tx_calls(*servers: Csms) -> list[Received]:
    """Every TransactionEvent CALL the servers received (answered or not), in order."""
    return [r for csms in servers for r in csms.received if r.action == "TransactionEvent"]


def answered(*servers: Csms) -> list[dict[str, Any]]:
    """The TransactionEvents the servers answered with a CALLRESULT, in arrival order."""
    return [r.payload for r in tx_calls(*servers) if r.answered]


def tx_id(event: dict[str, Any]) -> str:
    """The transaction id of an event."""
    value: str = event["transactionInfo"]["transactionId"]
    return value


def registers(event: dict[str, Any]) -> list[float]:
    """The energy registers of an event's meter values, in order."""
    return [
        float(v["value"])
        for mv in event.get("meterValue", [])
        for v in mv["sampledValue"]
        if v.get("measurand", ENERGY) == ENERGY
    ]


def assert_whole(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One transaction, delivered whole and once: Started first and Ended last (once
    each), seqNo 0..n in arrival order with no repeat, registers never decreasing."""
    assert len({tx_id(e) for e in events}) == 1, [tx_id(e) for e in events]
    kinds = [e["eventType"] for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Ended", kinds
    assert kinds.count("Started") == 1 and kinds.count("Ended") == 1, kinds
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    running = [r for e in events[:-1] for r in registers(e)]  # Ended repeats the samples
    assert running == sorted(running), running
    ended = registers(events[-1])
    assert ended == sorted(ended), ended
    if running and ended:
        assert ended[-1] >= running[-1]
    return events


def is_event(event_type: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactionEvent filter by eventType."""
    return lambda e: e["eventType"] == event_type


# -- 1. kill -9 of a real agent process ---------------------------------------------------


def _write_config(path: Path, csms_url: str, store: Path) -> None:
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {
            "url": csms_url,
            "ocpp_version": "2.0.1",
            "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5},
        },
        "evses": [{"connectors": [{"type": "cType2"}]}],
        "store": {"path": str(store)},
        "simulator": {"time_scale": 60, "auto_plug": True},
        "settings": {
            "SampledDataCtrlr/TxUpdatedInterval": 1,
            "OCPPCommCtrlr/HeartbeatInterval": 300,
        },
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(document))


async def _spawn(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_kill_9_mid_transaction_then_restart_ends_it_with_power_loss(
    tmp_path: Path,
) -> None:
    """E01/E12 across a power cut: after SIGKILL and a restart the transaction ends with
    PowerLoss; its events are each answered once, seqNo continuous from 0 across the
    restart. The kill lands while a TransactionEvent is in flight (the CSMS holds its
    answer), so every answered event before it was surely recorded as delivered."""
    config = tmp_path / "agent.yaml"
    async with Csms(CsmsBehaviour(), subprotocols=("ocpp2.0.1",)) as csms:
        _write_config(config, csms.url, tmp_path / "agent.db")
        process = await _spawn(config)
        try:
            await csms.wait_for("StatusNotification", where=is_status("Occupied"), timeout_s=20)
            request = {
                "idToken": {"idToken": "KILL-ME", "type": "Central"},
                "remoteStartId": 9,
                "evseId": 1,
            }
            assert (await csms.call(CP, "RequestStartTransaction", request))["status"] == (
                "Accepted"
            )
            started = await csms.wait_for("TransactionEvent", where=is_event("Started"))
            periodic = lambda e: e["triggerReason"] == "MeterValuePeriodic"  # noqa: E731
            await csms.wait_for("TransactionEvent", where=periodic, count=2)
            csms.behaviour.ignore_next["TransactionEvent"] = 1
            in_flight = len(tx_calls(csms)) + 1
            await csms.wait_for("TransactionEvent", count=in_flight)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        assert not tx_calls(csms)[-1].answered  # the one in flight at the kill
        before_kill = answered(csms)

        process = await _spawn(config)
        try:
            ended = await csms.wait_for("TransactionEvent", where=is_event("Ended"), timeout_s=20)
            boot = await csms.wait_for("BootNotification", count=2)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0

    events = assert_whole(answered(csms))
    assert events[: len(before_kill)] == before_kill
    assert {tx_id(e) for e in events} == {tx_id(started)}
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert boot["reason"] == "PowerUp"
    assert started["transactionInfo"]["remoteStartId"] == 9
    assert started["idToken"] == {"idToken": "KILL-ME", "type": "Central"}
    assert max(r for e in before_kill for r in registers(e)) <= registers(ended)[-1]


# -- 2. Reset Immediate during a transaction (B12) ------------------------------------------


async def test_b12_fr_02_immediate_reset_ends_the_transaction_before_the_restart(
    csms201: Csms, start: Start
) -> None:
    """B12.FR.02: the Ended event (stoppedReason ImmediateReset, triggerReason
    ResetCommand) goes out before the station restarts; it boots with RemoteReset and
    sends nothing of the transaction again (each event answered exactly once)."""
    running = await start(settings={"SampledDataCtrlr/TxUpdatedInterval": "1"})
    running.plug()
    running.tap("RESET-CARD")
    await csms201.wait_for("TransactionEvent", where=lambda e: e["triggerReason"] == (
        "MeterValuePeriodic"
    ))  # fmt: skip
    assert await csms201.call(CP, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    agent = await running.wait_agent(2)
    boot = await csms201.wait_for("BootNotification", count=2)
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    await until(agent, lambda: agent.store.pending_count() == 0)
    assert agent.station.evses[1].tx is None

    received = csms201.received
    second_boot = [i for i, r in enumerate(received) if r.action == "BootNotification"][1]
    before = [r for r in received[:second_boot] if r.action == "TransactionEvent"]
    assert all(r.answered for r in before)
    ended = before[-1].payload
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["triggerReason"] == "ResetCommand"
    assert boot["reason"] == "RemoteReset"
    events = assert_whole(answered(csms201))
    assert len(tx_calls(csms201)) == len(events)  # nothing sent again after the restart


# -- 3. a CSMS failing TransactionEvents (E13) ------------------------------------------------

FAST_RETRY = {"OCPPCommCtrlr/MessageAttemptInterval(TransactionEvent)": "1"}


async def test_e13_callerror_is_retried_after_the_attempt_interval_and_delivered_once(
    csms201: Csms, start: Start
) -> None:
    """E13: a TransactionEvent the CSMS fails is sent again, the same message,
    after MessageAttemptIntervalTransactionEvent; once answered, it is not sent again."""
    running = await start(settings=FAST_RETRY)
    csms201.behaviour.fail_next["TransactionEvent"] = 1
    running.plug()
    running.tap("RETRY-CARD")
    await csms201.wait_for("TransactionEvent", where=is_event("Started"), count=2)
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=is_event("Ended"))
    agent = running.agent
    await until(agent, lambda: agent.store.pending_count() == 0)

    first, second = [r for r in tx_calls(csms201) if r.payload["eventType"] == "Started"]
    assert (first.answered, second.answered) == (False, True)
    assert first.payload == second.payload  # the same message, not a new one
    assert (second.at - first.at).total_seconds() >= 0.9  # the interval, 1 s
    assert_whole(answered(csms201))
    assert len(tx_calls(csms201)) == len(answered(csms201)) + 1


async def test_e13_event_given_up_after_message_attempts_and_the_next_still_goes_out(
    csms201: Csms, start: Start
) -> None:
    """E13: after MessageAttemptsTransactionEvent failed attempts the message is
    discarded; the queue moves on and the next event is delivered."""
    running = await start(
        settings={**FAST_RETRY, "OCPPCommCtrlr/MessageAttempts(TransactionEvent)": "2"}
    )
    csms201.behaviour.fail_next["TransactionEvent"] = 2
    running.plug()
    running.tap("GIVE-UP-CARD")
    await csms201.wait_for("TransactionEvent", where=is_event("Started"), count=2)
    running.unplug()
    ended = await csms201.wait_for("TransactionEvent", where=is_event("Ended"))
    agent = running.agent
    await until(agent, lambda: agent.store.pending_count() == 0)

    calls = tx_calls(csms201)
    first, second = calls[0], calls[1]
    assert first.payload["eventType"] == "Started" and first.payload == second.payload
    assert not first.answered and not second.answered
    assert (second.at - first.at).total_seconds() >= 0.9
    assert not [r for r in calls if r.payload["eventType"] == "Started" and r.answered]
    delivered = answered(csms201)
    assert delivered and delivered[-1] == ended
    assert [e["seqNo"] for e in delivered] == list(range(1, len(delivered) + 1))
    assert {tx_id(e) for e in delivered} == {tx_id(first.payload)}
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"


# -- 4. connection lost in the middle of a transaction (E12) ------------------------------------


async def test_e04_e12_events_queued_while_the_connection_is_lost_follow_in_order_offline(
    csms201: Csms, start: Start
) -> None:
    """E04/E12: the CSMS goes away mid-transaction and comes back on the same port:
    what was queued meanwhile is delivered in order, flagged offline, nothing lost, seqNo
    continuous over both connections."""
    running = await start(settings={"SampledDataCtrlr/TxUpdatedInterval": "1"})
    agent = running.agent
    running.plug()
    running.tap("ONLINE-CARD")
    await csms201.wait_for("TransactionEvent", where=lambda e: e["triggerReason"] == (
        "MeterValuePeriodic"
    ))  # fmt: skip
    port = csms201.port
    await csms201.stop()
    await until(agent, lambda: not agent.adapter.online)
    local_id = agent.station.evses[1].tx.local_id  # type: ignore[union-attr]
    offline_from = len(agent.store.tx_entries(local_id))  # journalled from here: offline
    await until(agent, lambda: len(agent.store.tx_entries(local_id)) >= offline_from + 3)
    offline_to = len(agent.store.tx_entries(local_id))  # (and maybe more before the reconnect)

    async with Csms(CsmsBehaviour(), port=port, subprotocols=("ocpp2.0.1",)) as back:
        await back.wait_for("TransactionEvent", where=lambda e: e["seqNo"] == offline_from + 2)
        running.unplug()
        await back.wait_for("TransactionEvent", where=is_event("Ended"))
        await until(agent, lambda: agent.store.pending_count() == 0)
        events = assert_whole(answered(csms201, back))
        assert len(back.calls("BootNotification")) == 0  # B04: a reconnect is no reboot

    first_connection = answered(csms201)
    assert not any(e.get("offline") for e in first_connection)
    queued = [e for e in events if offline_from <= e["seqNo"] < offline_to]
    assert len(queued) >= 3 and all(e.get("offline") is True for e in queued)
    assert queued[0]["seqNo"] == offline_from  # nothing lost at the cut
    assert events[-1].get("offline") is not True  # the unplug came once back online
    assert len(events) == len(agent.store.tx_entries(local_id))


# -- 5. malformed CALLs from the CSMS (OCPP 2.0.1 part 4 section 4.3) -------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        # a required field missing
        ('[2,"b1","UnlockConnector",{"evseId":1}]', "OccurrenceConstraintViolation"),
        # a value of the wrong JSON type
        (
            '[2,"b2","ChangeAvailability",{"operationalStatus":"Operative","evse":{"id":"one"}}]',
            "TypeConstraintViolation",
        ),
        # a value outside its enumeration
        ('[2,"b3","TriggerMessage",{"requestedMessage":"Bogus"}]', "PropertyConstraintViolation"),
        # the payload not an object: syntactically not the action's payload
        ('[2,"b4","Reset","Immediate"]', "FormatViolation"),
        # a field the schema does not have (additionalProperties false)
        ('[2,"b5","GetTransactionStatus",{"transactionId":"x","bogus":1}]', "FormatViolation"),
        # an action OCPP 2.0.1 does not define
        ('[2,"b6","FlyToTheMoon",{}]', "NotImplemented"),
        # an action of a Local Controller, never of a charging station
        (
            '[2,"b7","PublishFirmware",{"location":"http://x","checksum":"'
            + "0" * 32
            + '","requestId":1}]',
            "NotSupported",
        ),
        # message type 5 does not exist: answered, since its id can be read
        ('[5,"b8",{}]', "MessageTypeNotSupported"),
    ],
)
async def test_bad_call_gets_the_2_0_1_callerror_and_the_transaction_goes_on(
    csms201: Csms, start: Start, frame: str, code: str
) -> None:
    """OCPP 2.0.1 part 4 section 4.3: the CALLERROR code for each kind of bad CALL, and a
    transaction running at the time is delivered whole."""
    running = await start()
    running.plug()
    running.tap("BAD-INPUT-CARD")
    await csms201.wait_for("TransactionEvent", where=is_event("Started"))
    reply = await csms201.send_raw(CP, frame)
    assert reply is not None
    assert reply[:3] == [4, json.loads(frame)[1], code]
    assert isinstance(reply[3], str) and isinstance(reply[4], dict)
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=is_event("Ended"))
    assert_whole(answered(csms201))
    assert len(tx_calls(csms201)) == len(answered(csms201))


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        "{}",
        "[]",
        '["2","x","Reset",{}]',
        '[3,"no-such-call",{}]',
        '[4,"no-such-call","GenericError","",{}]',
    ],
)
async def test_garbage_frames_are_dropped_and_the_transaction_goes_on(
    csms201: Csms, start: Start, frame: str
) -> None:
    """Frames without a readable message type and id, and replies to no CALL, are
    dropped (agent/ocpp/rpc.py): no answer, the connection stays, nothing is lost."""
    running = await start()
    running.plug()
    running.tap("GARBAGE-CARD")
    started = await csms201.wait_for("TransactionEvent", where=is_event("Started"))
    assert await csms201.send_raw(CP, frame, timeout_s=0.3) is None
    assert csms201.connected(CP)
    status = await csms201.call(CP, "GetTransactionStatus", {"transactionId": tx_id(started)})
    assert status["ongoingIndicator"] is True
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=is_event("Ended"))
    assert_whole(answered(csms201))
    assert len(csms201.calls("BootNotification")) == 1
