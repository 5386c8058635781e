"""The test CSMS (simulator/csms.py) driven by a plain websockets client sending raw frames.

These pin the peer every integration test of the agent relies on: what it answers, what it
records (exactly, once, in order) and how tests steer it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError, OCPPError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from simulator.csms import Csms, CsmsBehaviour

BOOT = {"chargePointVendor": "cpagent", "chargePointModel": "sim"}
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2025-01-01T00:00:00Z"}
REPLY_TIMEOUT_S = 5.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def charge_point(csms: Csms, cp_id: str = "CP1") -> AsyncIterator[ClientConnection]:
    """Connect a raw OCPP 1.6 client as `cp_id` and wait until the CSMS registered it."""
    async with connect(f"{csms.url}/{cp_id}", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        await csms.wait_connected(cp_id)
        yield ws


async def next_frame(ws: ClientConnection) -> list[Any]:
    """Return the next frame the client receives, parsed."""
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        frame: list[Any] = json.loads(await ws.recv())
    return frame


async def rpc(
    ws: ClientConnection, action: str, payload: dict[str, Any], unique_id: str | None = None
) -> list[Any]:
    """Send a CALL and return the reply frame."""
    await ws.send(json.dumps([2, unique_id or str(uuid.uuid4()), action, payload]))
    return await next_frame(ws)


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
async def test_boot_notification_answers_behaviour_status_and_interval(
    csms: Csms, status: str
) -> None:
    csms.behaviour.boot_status = status
    csms.behaviour.boot_interval_s = 42
    async with charge_point(csms) as ws:
        reply = await rpc(ws, "BootNotification", BOOT, unique_id="b1")
    assert reply[:2] == [3, "b1"]
    assert reply[2]["status"] == status
    assert reply[2]["interval"] == 42
    assert datetime.fromisoformat(reply[2]["currentTime"]).utcoffset() == timedelta(0)


async def test_start_transaction_ids_count_up_from_one_across_charge_points(csms: Csms) -> None:
    async with charge_point(csms, "A") as a, charge_point(csms, "B") as b:
        first = await rpc(a, "StartTransaction", START)
        second = await rpc(b, "StartTransaction", START)
        third = await rpc(a, "StartTransaction", START)
    assert [r[2]["transactionId"] for r in (first, second, third)] == [1, 2, 3]
    assert first[2]["idTagInfo"] == {"status": "Accepted"}


async def test_id_tag_info_follows_accepted_tags_and_parent_id_tag(csms: Csms) -> None:
    csms.behaviour.accepted_tags = {"GOOD"}
    csms.behaviour.tag_status_otherwise = "Blocked"
    csms.behaviour.parent_id_tag = "FLEET"
    async with charge_point(csms) as ws:
        good = await rpc(ws, "Authorize", {"idTag": "GOOD"})
        bad = await rpc(ws, "Authorize", {"idTag": "BAD"})
        stop_with_tag = await rpc(
            ws,
            "StopTransaction",
            {"transactionId": 1, "idTag": "BAD", "meterStop": 10, "timestamp": START["timestamp"]},
        )
        stop_without_tag = await rpc(
            ws,
            "StopTransaction",
            {"transactionId": 1, "meterStop": 10, "timestamp": START["timestamp"]},
        )
    assert good[2] == {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}}
    assert bad[2] == {"idTagInfo": {"status": "Blocked", "parentIdTag": "FLEET"}}
    assert stop_with_tag[2] == {"idTagInfo": {"status": "Blocked", "parentIdTag": "FLEET"}}
    assert stop_without_tag[2] == {}


async def test_data_transfer_echoes_data_for_test_vendor_and_rejects_other_vendors(
    csms: Csms,
) -> None:
    async with charge_point(csms) as ws:
        ours = await rpc(ws, "DataTransfer", {"vendorId": "org.cpagent.test", "data": "ping"})
        theirs = await rpc(ws, "DataTransfer", {"vendorId": "com.example", "data": "ping"})
    assert ours[2] == {"status": "Accepted", "data": "ping"}
    assert theirs[2] == {"status": "UnknownVendorId"}


async def test_notifications_are_acknowledged_with_empty_results(csms: Csms) -> None:
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    async with charge_point(csms) as ws:
        replies = [
            await rpc(ws, "StatusNotification", status),
            await rpc(ws, "Heartbeat", {}),
            await rpc(ws, "DiagnosticsStatusNotification", {"status": "Idle"}),
            await rpc(ws, "FirmwareStatusNotification", {"status": "Idle"}),
        ]
    assert [r[0] for r in replies] == [3, 3, 3, 3]
    assert [replies[0][2], replies[2][2], replies[3][2]] == [{}, {}, {}]
    assert set(replies[1][2]) == {"currentTime"}


# -- recording -------------------------------------------------------------------------------


async def test_received_holds_each_call_once_with_the_exact_wire_payload(csms: Csms) -> None:
    meter_values = {
        "connectorId": 1,
        "transactionId": 7,
        "meterValue": [
            {
                "timestamp": "2025-01-01T00:00:10Z",
                "sampledValue": [{"value": "1234.5", "measurand": "Energy.Active.Import.Register"}],
            }
        ],
    }
    async with charge_point(csms) as ws:
        await rpc(ws, "BootNotification", BOOT, unique_id="m1")
        await rpc(ws, "MeterValues", meter_values, unique_id="m2")
    received = csms.received
    assert [(r.action, r.unique_id, r.payload, r.answered) for r in received] == [
        ("BootNotification", "m1", BOOT, True),
        ("MeterValues", "m2", meter_values, True),
    ]
    assert all(r.charge_point_id == "CP1" and r.at.utcoffset() is not None for r in received)
    assert received[0].at <= received[1].at
    assert csms.calls("MeterValues") == [meter_values]


async def test_frames_record_both_directions_in_order(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        await ws.send("not json")
        reply = await rpc(ws, "Heartbeat", {}, unique_id="h1")
    assert csms.frames("CP1") == [
        ("in", "not json"),
        ("in", '[2, "h1", "Heartbeat", {}]'),
        ("out", json.dumps(reply, separators=(",", ":"))),
    ]
    assert csms.received[0].action == "Heartbeat"  # garbage is a frame, never a Received


async def test_schema_violating_call_gets_callerror_and_is_recorded_as_not_answered(
    csms: Csms,
) -> None:
    async with charge_point(csms) as ws:
        reply = await rpc(ws, "BootNotification", {"chargePointVendor": "cpagent"}, "bad")
    # The ocpp library reports a missing required property as ProtocolError.
    assert reply[:3] == [4, "bad", "ProtocolError"]
    assert [(r.action, r.payload, r.answered) for r in csms.received] == [
        ("BootNotification", {"chargePointVendor": "cpagent"}, False)
    ]


async def test_call_of_an_action_outside_ocpp16_gets_not_supported(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        reply = await rpc(ws, "TransactionEvent", {}, unique_id="t1")
    assert reply[:3] == [4, "t1", "NotSupported"]
    assert [(r.action, r.answered) for r in csms.received] == [("TransactionEvent", False)]


# -- wait_for --------------------------------------------------------------------------------


async def test_wait_for_returns_a_call_received_before_the_wait(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        await rpc(ws, "BootNotification", BOOT)
        assert await csms.wait_for("BootNotification", cp_id="CP1") == BOOT


async def test_wait_for_returns_a_call_that_arrives_during_the_wait(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        waiter = asyncio.create_task(csms.wait_for("Authorize"))
        await rpc(ws, "Heartbeat", {})
        assert not waiter.done()
        await rpc(ws, "Authorize", {"idTag": "LATE"})
        assert await waiter == {"idTag": "LATE"}


async def test_wait_for_counts_calls_matching_cp_id_and_where(csms: Csms) -> None:
    async with charge_point(csms, "A") as a, charge_point(csms, "B") as b:
        for cp, tag in ((a, "x"), (b, "y"), (a, "y"), (a, "z"), (b, "y")):
            await rpc(cp, "Authorize", {"idTag": tag})
        second_y_from_a = await csms.wait_for(
            "Authorize", cp_id="B", where=lambda p: p["idTag"] == "y", count=2
        )
        third_from_a = await csms.wait_for("Authorize", cp_id="A", count=3)
    assert second_y_from_a == {"idTag": "y"}
    assert third_from_a == {"idTag": "z"}
    assert csms.calls("Authorize", "B") == [{"idTag": "y"}, {"idTag": "y"}]


async def test_wait_for_timeout_message_lists_what_was_received(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        await rpc(ws, "BootNotification", BOOT)
        await rpc(ws, "Heartbeat", {})
        with pytest.raises(TimeoutError) as raised:
            await csms.wait_for("StartTransaction", cp_id="CP1", timeout_s=0.05)
    message = str(raised.value)
    assert "StartTransaction" in message
    assert "BootNotification" in message and '"chargePointModel": "sim"' in message
    assert "Heartbeat" in message


# -- fault injection -------------------------------------------------------------------------


async def test_fail_next_answers_internal_error_then_answers_normally(csms: Csms) -> None:
    csms.behaviour.fail_next["StartTransaction"] = 1
    async with charge_point(csms) as ws:
        failed = await rpc(ws, "StartTransaction", START, unique_id="s1")
        retried = await rpc(ws, "StartTransaction", START, unique_id="s2")
    assert failed[:3] == [4, "s1", "InternalError"]
    assert retried[:2] == [3, "s2"]
    assert retried[2]["transactionId"] == 1  # the failed attempt consumed no id
    assert [(r.unique_id, r.answered) for r in csms.received] == [("s1", False), ("s2", True)]
    assert csms.behaviour.fail_next == {}


async def test_ignore_next_leaves_the_call_unanswered_but_recorded(csms: Csms) -> None:
    csms.behaviour.ignore_next["StartTransaction"] = 1
    async with charge_point(csms) as ws:
        await ws.send(json.dumps([2, "ignored", "StartTransaction", START]))
        # The next reply the client sees belongs to the next CALL: the first got none.
        heartbeat = await rpc(ws, "Heartbeat", {}, unique_id="h1")
        retried = await rpc(ws, "StartTransaction", START, unique_id="s2")
    assert heartbeat[:2] == [3, "h1"]
    assert retried[:2] == [3, "s2"] and retried[2]["transactionId"] == 1
    assert [(r.unique_id, r.answered) for r in csms.received] == [
        ("ignored", False),
        ("h1", True),
        ("s2", True),
    ]
    assert not any(d == "out" and '"ignored"' in t for d, t in csms.frames("CP1"))


# -- acting as the CSMS ----------------------------------------------------------------------


async def test_call_sends_the_request_and_returns_the_camelcase_result(csms: Csms) -> None:
    async with charge_point(csms) as ws:

        async def answer_remote_start() -> list[Any]:
            request = await next_frame(ws)
            await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
            return request

        answering = asyncio.create_task(answer_remote_start())
        result = await csms.call("CP1", "RemoteStartTransaction", {"idTag": "T1", "connectorId": 1})
        request = await answering
    assert result == {"status": "Accepted"}
    assert request[0] == 2 and request[2] == "RemoteStartTransaction"
    assert request[3] == {"idTag": "T1", "connectorId": 1}
    assert csms.received == []  # CSMS-initiated calls are not Received


async def test_call_raises_the_ocpp_error_of_a_callerror(csms: Csms) -> None:
    async with charge_point(csms) as ws:

        async def refuse() -> None:
            request = await next_frame(ws)
            await ws.send(json.dumps([4, request[1], "NotSupported", "no", {}]))

        refusing = asyncio.create_task(refuse())
        with pytest.raises(NotSupportedError):
            await csms.call("CP1", "Reset", {"type": "Soft"})
        await refusing


async def test_call_raises_connection_error_when_the_charge_point_hangs_up(csms: Csms) -> None:
    async with charge_point(csms) as ws:

        async def hang_up() -> None:
            await next_frame(ws)
            await ws.close()

        hanging_up = asyncio.create_task(hang_up())
        with pytest.raises(ConnectionError, match="CP1"):
            await csms.call("CP1", "Reset", {"type": "Hard"}, timeout_s=30)
        await hanging_up


async def test_call_returns_the_result_of_a_charge_point_that_answers_then_hangs_up(
    csms: Csms,
) -> None:
    # As a station does on Reset: the CALLRESULT goes out, then the socket closes at once.
    async with charge_point(csms) as ws:

        async def answer_and_hang_up() -> None:
            request = await next_frame(ws)
            await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
            await ws.close()

        hanging_up = asyncio.create_task(answer_and_hang_up())
        result = await csms.call("CP1", "Reset", {"type": "Soft"})
        await hanging_up
    assert result == {"status": "Accepted"}


async def test_call_rejects_a_result_that_violates_the_schema(csms: Csms) -> None:
    async with charge_point(csms) as ws:

        async def answer_badly() -> None:
            request = await next_frame(ws)
            await ws.send(json.dumps([3, request[1], {"status": "Maybe"}]))

        answering = asyncio.create_task(answer_badly())
        with pytest.raises(OCPPError):
            await csms.call("CP1", "Reset", {"type": "Soft"})
        await answering


async def test_call_to_an_unknown_charge_point_raises_key_error(csms: Csms) -> None:
    with pytest.raises(KeyError, match="NOPE"):
        await csms.call("NOPE", "Reset", {"type": "Soft"})


async def test_send_raw_returns_the_reply_and_keeps_it_from_the_library(
    csms: Csms, caplog: pytest.LogCaptureFixture
) -> None:
    async with charge_point(csms) as ws:

        async def answer_two() -> None:
            bad = await next_frame(ws)
            await ws.send(json.dumps([4, bad[1], "FormationViolation", "bad payload", {}]))
            good = await next_frame(ws)
            await ws.send(json.dumps([3, good[1], {"status": "Accepted"}]))

        answering = asyncio.create_task(answer_two())
        reply = await csms.send_raw("CP1", '[2, "raw-1", "Reset", {"type": "Sideways"}]')
        with caplog.at_level(logging.ERROR, logger="ocpp"):
            result = await csms.call("CP1", "Reset", {"type": "Soft"})
        await answering
    assert reply == [4, "raw-1", "FormationViolation", "bad payload", {}]
    assert result == {"status": "Accepted"}
    assert "unknown unique id" not in caplog.text


async def test_send_raw_returns_none_when_nothing_answers(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        reply = await csms.send_raw("CP1", '[2, "raw-2", "Reset", {"type": "Soft"}]', 0.05)
        received_by_client = await next_frame(ws)
    assert reply is None
    assert received_by_client == [2, "raw-2", "Reset", {"type": "Soft"}]


# -- connections -----------------------------------------------------------------------------


async def test_connection_without_charge_point_id_is_rejected(csms: Csms) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with connect(f"{csms.url}/", subprotocols=[Subprotocol("ocpp1.6")]):
            pass
    assert raised.value.response.status_code == 400


@pytest.mark.parametrize("offered", [[], ["ocpp2.0.1"]])
async def test_connection_without_ocpp16_subprotocol_is_rejected(
    csms: Csms, offered: list[str]
) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with connect(f"{csms.url}/CP1", subprotocols=[Subprotocol(p) for p in offered]):
            pass
    assert raised.value.response.status_code == 400
    assert not csms.connected("CP1")


async def test_charge_point_id_is_the_last_path_segment(csms: Csms) -> None:
    async with connect(f"{csms.url}/site%2F7/CP-42", subprotocols=[Subprotocol("ocpp1.6")]):
        await csms.wait_connected("CP-42")
        assert csms.connected("CP-42")


async def test_disconnect_closes_the_charge_point_socket(csms: Csms) -> None:
    async with charge_point(csms) as ws:
        await csms.disconnect("CP1")
        assert not csms.connected("CP1")
        with pytest.raises(ConnectionClosed):
            await next_frame(ws)


async def test_new_connection_for_the_same_id_replaces_the_old_one(csms: Csms) -> None:
    async with charge_point(csms) as old:
        async with charge_point(csms) as new:
            with pytest.raises(ConnectionClosed):
                await next_frame(old)
            reply = await rpc(new, "Heartbeat", {})
            assert reply[0] == 3
            assert csms.connected("CP1")
        await csms.wait_disconnected("CP1")
    assert [r.answered for r in csms.received] == [True]


async def test_stop_with_a_connected_client_closes_it_and_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    server = Csms(CsmsBehaviour(boot_status="Pending"))
    await server.start()
    async with charge_point(server) as ws:
        await rpc(ws, "BootNotification", BOOT)
        await server.stop()
        assert not server.connected("CP1")
        with pytest.raises(ConnectionClosed):
            await next_frame(ws)
    assert asyncio.all_tasks() == before


async def test_standalone_module_serves_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.csms", "--port", "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            banner = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
            url = banner.split()[-1].removesuffix("/<cp-id>")
            async with connect(f"{url}/CP9", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
                reply = await rpc(ws, "Heartbeat", {}, unique_id="h9")
            process.send_signal(signal.SIGINT)
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert banner.startswith("CSMS listening on ws://127.0.0.1:")
    assert reply[:2] == [3, "h9"]
    assert process.returncode == 0
    assert '-> [2, "h9", "Heartbeat", {}]' in stderr.decode()
