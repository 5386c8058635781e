"""Chained CALLs (CallInFlight.then_send): the next CALL leaves from the delivery of the
answer before it, once that answer passed its schema and was applied, with nothing in
between; and whenever that cannot be done safely, nothing is sent and the caller starts
the next CALL itself, as without a chain.

OCPP-J (1.6 §4.1.1, 2.0.1 part 4 §4.1.1): one CALL outstanding at a time. The outbox
relies on this for its replay (test_outbox_pipeline.py runs it over both kinds of
transport).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent.ocpp.rpc import CallTimeout, RpcError
from tests.unit.test_rpc import NOW, Connect, MemoryTransport, connect

__all__ = ["connect"]  # the fixture, shared with test_rpc.py

START = {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
STARTED = {"idTagInfo": {"status": "Accepted"}, "transactionId": 7}
METER_VALUES = {
    "connectorId": 1,
    "transactionId": 7,
    "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "12.5"}]}],
}


class DirectTransport(MemoryTransport):
    """A memory transport that can also send at once (as wsclient.PushConnection)."""

    def __init__(self) -> None:
        super().__init__()
        self.direct = True  # False: as a paused transport, send_now declines
        self.sent_at_once: list[str] = []  # actions, in order

    def send_now(self, message: str) -> bool:
        if self.closed or not self.direct:
            return False
        self.outbox.put_nowait(message)
        self.sent_at_once.append(json.loads(message)[2])
        return True


async def started_call(connect: Connect, **options: Any) -> tuple[Any, Any, DirectTransport]:
    """A peer on a direct transport with a StartTransaction on the wire (and read)."""
    transport = DirectTransport()
    peer = connect(transport=transport, **options)
    in_flight = await peer.endpoint.start(peer.endpoint.prepare("StartTransaction", START))
    assert (await peer.sent())[2] == "StartTransaction"
    return peer, in_flight, transport


async def test_the_next_call_leaves_from_the_answers_delivery_once_it_was_applied(
    connect: Connect,
) -> None:
    peer, first, transport = await started_call(connect)
    applied: list[int] = []

    def accept(answer: dict[str, Any]) -> None:
        applied.append(answer["transactionId"])
        assert transport.outbox.empty(), "the next CALL left before the answer was applied"

    following = peer.endpoint.prepare("MeterValues", METER_VALUES)
    assert first.then_send(following, accept)
    peer.push([3, first.unique_id, STARTED])
    assert await first.answer() == STARTED

    # When the caller has the answer, the next CALL is already on the wire: it was sent
    # by the delivery, not by the caller.
    assert applied == [7]
    assert transport.sent_at_once == ["MeterValues"]
    assert await peer.sent() == [2, following.unique_id, "MeterValues", METER_VALUES]
    successor = first.successor
    assert successor is not None and successor.unique_id == following.unique_id
    peer.push([3, following.unique_id, {}])
    assert await successor.answer() == {}
    # The message log has the answer before the CALL sent from it.
    assert [(f.outgoing, f.action) for f in peer.frames] == [
        (True, "StartTransaction"),
        (False, "StartTransaction"),
        (True, "MeterValues"),
        (False, "MeterValues"),
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"transactionId": 7}, "FormationViolation"),  # violates its schema
        ("CALLERROR", "InternalError"),
    ],
    ids=["invalid answer", "CALLERROR"],
)
async def test_a_failed_answer_sends_nothing_more_and_lets_the_next_call_go(
    connect: Connect, answer: Any, error: str
) -> None:
    peer, first, transport = await started_call(connect)
    applied: list[dict[str, Any]] = []
    following = peer.endpoint.prepare("MeterValues", METER_VALUES)
    assert first.then_send(following, applied.append)
    if answer == "CALLERROR":
        peer.push([4, first.unique_id, "InternalError", "", {}])
    else:
        peer.push([3, first.unique_id, answer])
    with pytest.raises(RpcError) as caught:
        await first.answer()

    assert caught.value.code == error
    assert applied == []
    assert transport.sent_at_once == []
    assert transport.outbox.empty()
    assert first.successor is None
    retry = await peer.endpoint.start(peer.endpoint.prepare("StartTransaction", START))
    assert (await peer.sent())[1] == retry.unique_id  # the lock was let go


async def test_an_answer_the_caller_cannot_apply_sends_nothing_more(connect: Connect) -> None:
    peer, first, transport = await started_call(connect)

    def accept(answer: dict[str, Any]) -> None:
        raise ValueError("cannot apply")

    assert first.then_send(peer.endpoint.prepare("MeterValues", METER_VALUES), accept)
    peer.push([3, first.unique_id, STARTED])
    with pytest.raises(ValueError, match="cannot apply"):
        await first.answer()
    assert transport.sent_at_once == []
    assert transport.outbox.empty()


async def test_a_call_waiting_for_its_turn_goes_before_the_chained_one(
    connect: Connect,
) -> None:
    peer, first, transport = await started_call(connect)
    following = peer.endpoint.prepare("MeterValues", METER_VALUES)
    assert first.then_send(following)
    heartbeat = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    await asyncio.sleep(0)  # it asks for its turn (a loop turn, not a wait for the world)
    peer.push([3, first.unique_id, STARTED])
    assert await first.answer() == STARTED

    assert first.successor is None
    sent = await peer.sent()
    assert sent[2] == "Heartbeat"
    assert transport.sent_at_once == []
    peer.push([3, sent[1], {"currentTime": NOW}])
    assert await heartbeat == {"currentTime": NOW}
    # The chained CALL is the caller's to start now.
    await peer.endpoint.start(following)
    assert (await peer.sent())[1] == following.unique_id


async def test_a_transport_that_cannot_send_at_once_leaves_the_next_call_to_the_caller(
    connect: Connect,
) -> None:
    peer, first, transport = await started_call(connect)
    transport.direct = False  # paused, say
    applied: list[dict[str, Any]] = []
    following = peer.endpoint.prepare("MeterValues", METER_VALUES)
    assert first.then_send(following, applied.append)
    peer.push([3, first.unique_id, STARTED])
    assert await first.answer() == STARTED

    assert applied == [STARTED]  # applied once, at the delivery
    assert first.successor is None
    assert transport.outbox.empty()
    await peer.endpoint.start(following)
    assert (await peer.sent())[1] == following.unique_id


async def test_nothing_can_be_chained_without_a_direct_send_or_after_the_answer(
    connect: Connect,
) -> None:
    plain = connect()
    in_flight = await plain.endpoint.start(plain.endpoint.prepare("Heartbeat", {}))
    assert not in_flight.then_send(plain.endpoint.prepare("Heartbeat", {}))

    peer, first, _ = await started_call(connect)
    peer.push([3, first.unique_id, STARTED])
    assert await first.answer() == STARTED
    assert not first.then_send(peer.endpoint.prepare("MeterValues", METER_VALUES))


async def test_a_chained_call_has_its_own_response_timeout(connect: Connect) -> None:
    peer, first, _ = await started_call(connect, response_timeout_s=0.05)
    assert first.then_send(peer.endpoint.prepare("MeterValues", METER_VALUES))
    peer.push([3, first.unique_id, STARTED])
    assert await first.answer() == STARTED
    successor = first.successor
    assert successor is not None
    with pytest.raises(CallTimeout):
        await successor.answer()
    heartbeat = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    await peer.sent()  # the MeterValues, unanswered
    sent = await peer.sent()
    assert sent[2] == "Heartbeat"
    peer.push([3, sent[1], {"currentTime": NOW}])
    await heartbeat


async def test_a_caller_giving_up_also_gives_up_the_call_sent_from_its_answer(
    connect: Connect,
) -> None:
    peer, first, transport = await started_call(connect)
    waiting = asyncio.create_task(first.answer())

    def accept(answer: dict[str, Any]) -> None:
        waiting.cancel()  # the caller gives up while the answer is being delivered

    assert first.then_send(peer.endpoint.prepare("MeterValues", METER_VALUES), accept)
    peer.push([3, first.unique_id, STARTED])
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert transport.sent_at_once == ["MeterValues"]
    assert (await peer.sent())[2] == "MeterValues"

    # Nobody awaits the MeterValues' answer: the next CALL goes without waiting for it.
    heartbeat = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    sent = await peer.sent()
    assert sent[2] == "Heartbeat"
    peer.push([3, sent[1], {"currentTime": NOW}])
    assert await heartbeat == {"currentTime": NOW}
