"""Our CALLs in two steps (prepare, then start and await the answer), the response timeout
watchdog, and the message ids: what the far end sees on the wire, and when.

OCPP-J (1.6 §4.1.1, 2.0.1 part 4 §4.1.1): one CALL outstanding at a time, a message id
unique for the sender and at most 36 characters.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from agent.ocpp.dialects import OCPP16
from agent.ocpp.rpc import CallTimeout, ConnectionLost, RpcEndpoint, RpcError
from tests.unit.test_rpc import NOW, WAIT_S, Connect, connect

__all__ = ["connect"]  # the fixture, shared with test_rpc.py

METER_VALUES = {
    "connectorId": 1,
    "transactionId": 7,
    "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "12.5", "measurand": "Voltage"}]}],
}


async def test_prepare_validates_and_serializes_without_sending(connect: Connect) -> None:
    peer = connect()
    prepared = peer.endpoint.prepare("MeterValues", METER_VALUES)
    assert json.loads(prepared.text) == [2, prepared.unique_id, "MeterValues", METER_VALUES]
    assert peer.transport.outbox.empty()
    assert peer.frames == []  # nothing logged either: nothing went out


async def test_prepare_refuses_an_invalid_request_with_value_error(connect: Connect) -> None:
    peer = connect()
    broken = {**METER_VALUES, "meterValue": []}
    with pytest.raises(ValueError, match="MeterValues"):
        peer.endpoint.prepare("MeterValues", broken)
    with pytest.raises(ValueError, match="NotAnAction"):
        peer.endpoint.prepare("NotAnAction", {})


async def test_start_returns_once_the_call_is_on_the_wire_and_answer_awaits_the_result(
    connect: Connect,
) -> None:
    peer = connect()
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    sent = await peer.sent()
    assert sent == [2, in_flight.unique_id, "Heartbeat", {}]
    answer = asyncio.create_task(in_flight.answer())
    peer.push([3, in_flight.unique_id, {"currentTime": NOW}])
    assert await answer == {"currentTime": NOW}


async def test_a_prepared_call_waits_for_the_outstanding_one_to_be_answered(
    connect: Connect,
) -> None:
    peer = connect()
    first = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    second_prepared = peer.endpoint.prepare("Authorize", {"idTag": "B"})
    second = asyncio.create_task(peer.endpoint.start(second_prepared))
    await peer.sent()  # the first
    await asyncio.sleep(0)  # let the second try (a loop turn, not a wait for the world)
    assert peer.transport.outbox.empty()  # not sent before the first is answered
    assert not second.done()
    peer.push([3, first.unique_id, {"currentTime": NOW}])
    assert (await peer.sent())[1] == second_prepared.unique_id
    assert await first.answer() == {"currentTime": NOW}
    peer.push([3, second_prepared.unique_id, {"idTagInfo": {"status": "Accepted"}}])
    assert await (await second).answer() == {"idTagInfo": {"status": "Accepted"}}


async def test_the_answer_is_validated_when_awaited(connect: Connect) -> None:
    peer = connect()
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    peer.push([3, in_flight.unique_id, {"time": NOW}])
    with pytest.raises(RpcError) as caught:
        await in_flight.answer()
    assert caught.value.code == "FormationViolation"


async def test_an_unanswered_call_times_out_and_the_next_one_goes_out(connect: Connect) -> None:
    peer = connect(response_timeout_s=0.05)
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    with pytest.raises(CallTimeout):
        await in_flight.answer()
    follow_up = asyncio.create_task(peer.endpoint.call("Authorize", {"idTag": "A"}))
    await peer.sent()  # the Heartbeat
    frame = await peer.sent()
    assert frame[2] == "Authorize"
    peer.push([3, frame[1], {"idTagInfo": {"status": "Accepted"}}])
    await follow_up


async def test_the_watchdog_times_out_each_call_after_its_own_deadline(
    connect: Connect,
) -> None:
    """A call that starts after an earlier one was answered gets its full timeout: the
    one timer, armed for the earlier call, fires early and is re-armed."""
    peer = connect(response_timeout_s=0.2)
    loop = asyncio.get_running_loop()
    first = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    peer.push([3, (await peer.sent())[1], {"currentTime": NOW}])
    await first
    await asyncio.sleep(0.1)  # arranging the schedule: the second call starts 0.1 s later
    started = loop.time()
    with pytest.raises(CallTimeout):
        await peer.endpoint.call("Heartbeat", {})
    assert loop.time() - started >= 0.2 - 0.01


async def test_a_caller_giving_up_on_the_answer_lets_the_next_call_go(connect: Connect) -> None:
    peer = connect()
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    waiting = asyncio.create_task(in_flight.answer())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    call = asyncio.create_task(peer.endpoint.call("Authorize", {"idTag": "A"}))
    await peer.sent()  # the Heartbeat
    frame = await peer.sent()
    peer.push([3, frame[1], {"idTagInfo": {"status": "Accepted"}}])
    assert await call == {"idTagInfo": {"status": "Accepted"}}


class StuckTransport:
    """A transport whose send never completes (a peer that stopped reading)."""

    def __init__(self) -> None:
        self.attempts = 0
        self.closed = asyncio.Event()

    async def send(self, message: str) -> None:
        self.attempts += 1
        await asyncio.Event().wait()

    async def recv(self) -> str:
        await self.closed.wait()
        raise ConnectionError("closed")


async def test_a_send_that_outlasts_the_response_timeout_raises_call_timeout() -> None:
    transport = StuckTransport()
    endpoint = RpcEndpoint(transport, OCPP16, handlers={}, response_timeout_s=0.05)
    serve = asyncio.create_task(endpoint.serve())
    try:
        with pytest.raises(CallTimeout):
            await asyncio.wait_for(endpoint.call("Heartbeat", {}), WAIT_S)
        with pytest.raises(CallTimeout):  # the next call is not blocked by the first
            await asyncio.wait_for(endpoint.call("Heartbeat", {}), WAIT_S)
        assert transport.attempts == 2
    finally:
        transport.closed.set()
        await serve


async def test_closing_the_transport_fails_the_call_in_flight_with_connection_lost(
    connect: Connect,
) -> None:
    peer = connect()
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))
    await peer.close()
    with pytest.raises(ConnectionLost):
        await in_flight.answer()
    with pytest.raises(ConnectionLost):
        await peer.endpoint.start(peer.endpoint.prepare("Heartbeat", {}))


async def test_message_ids_are_unique_short_and_share_this_process_prefix(
    connect: Connect,
) -> None:
    first, second = connect(), connect()  # two connections, as after a reconnect
    ids = [first.endpoint.prepare("Heartbeat", {}).unique_id for _ in range(500)]
    ids += [second.endpoint.prepare("Heartbeat", {}).unique_id for _ in range(500)]
    assert len(set(ids)) == len(ids)
    assert all(0 < len(unique_id) <= 36 for unique_id in ids)
    assert len({unique_id.split("-")[0] for unique_id in ids}) == 1


def test_message_ids_differ_from_one_process_to_the_next() -> None:
    """A restarted agent must not reuse the ids of the process before it."""
    script = (
        "from agent.ocpp.rpc import _unique_id\nprint(' '.join(_unique_id() for _ in range(3)))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert not set(runs[0]) & set(runs[1])
