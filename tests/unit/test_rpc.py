"""OCPP-J RPC layer: the endpoint's framing rules, frame by frame (dialects: test_dialects.py).

The endpoint talks to an in-memory transport; every test asserts the exact JSON the far
end would see, or what the caller of `call()` gets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.ocpp.dialects import OCPP16, OCPP201, Dialect
from agent.ocpp.rpc import (
    CallTimeout,
    ConnectionLost,
    Frame,
    Handler,
    RpcEndpoint,
    RpcError,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = "2024-05-01T12:00:00Z"
WAIT_S = 2.0  # upper bound on awaiting an event that must happen at once


class TransportClosedError(Exception):
    """Raised by the memory transport once closed, as websockets raises ConnectionClosed."""


class MemoryTransport:
    """Our end of an in-memory connection: `inbox` feeds recv(), send() fills `outbox`."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.closed = False

    async def send(self, message: str) -> None:
        if self.closed:
            raise TransportClosedError("send on a closed transport")
        self.outbox.put_nowait(message)

    async def recv(self) -> str | bytes:
        item = await self.inbox.get()
        if item is None:
            self.closed = True
            raise TransportClosedError("closed by peer")
        return item

    def close(self) -> None:
        self.inbox.put_nowait(None)


class FakeClock:
    """Each reading is one second after the previous one."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        return T0 + timedelta(seconds=self.readings - 1)


@dataclass
class Peer:
    """The far end of one endpoint under test."""

    transport: MemoryTransport
    endpoint: RpcEndpoint
    frames: list[Frame]
    serve_task: asyncio.Task[None]

    def push(self, frame: Any) -> None:
        """Deliver a frame to the endpoint (a str or bytes as is, anything else as JSON)."""
        raw = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        self.transport.inbox.put_nowait(raw)

    async def sent_text(self) -> str:
        return await asyncio.wait_for(self.transport.outbox.get(), WAIT_S)

    async def sent(self) -> Any:
        return json.loads(await self.sent_text())

    async def close(self) -> None:
        self.transport.close()
        await asyncio.wait_for(self.serve_task, WAIT_S)


Connect = Callable[..., Peer]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Start endpoints serving memory transports; close them and fail on leaked tasks."""
    peers: list[Peer] = []

    def make(
        dialect: Dialect = OCPP16,
        handlers: dict[str, Handler] | None = None,
        response_timeout_s: float = WAIT_S,
        transport: MemoryTransport | None = None,
    ) -> Peer:
        transport = transport or MemoryTransport()
        frames: list[Frame] = []
        endpoint = RpcEndpoint(
            transport,
            dialect,
            handlers=handlers or {},
            response_timeout_s=response_timeout_s,
            on_frame=frames.append,
            clock=FakeClock(),
        )
        peer = Peer(transport, endpoint, frames, asyncio.create_task(endpoint.serve()))
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        if not peer.serve_task.done():
            await peer.close()
        peer.serve_task.result()  # serve() must end quietly
    leaked = asyncio.all_tasks() - {asyncio.current_task()}
    assert not leaked, f"leaked tasks: {leaked}"


async def change_availability_accepted(payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted"}


ACCEPT = {"ChangeAvailability": change_availability_accepted}
CHANGE_AVAILABILITY = {
    OCPP16: {"connectorId": 1, "type": "Operative"},
    OCPP201: {"operationalStatus": "Operative"},
}
BOTH = pytest.mark.parametrize("dialect", [OCPP16, OCPP201], ids=["1.6", "2.0.1"])


# --- our CALLs ------------------------------------------------------------------------


async def test_call_sends_compact_call_frame_and_returns_result(
    connect: Connect,
) -> None:
    peer = connect()
    request = {"chargePointVendor": "Bär & Söhne", "chargePointModel": "W1"}
    call = asyncio.create_task(peer.endpoint.call("BootNotification", request))
    text = await peer.sent_text()
    unique_id = json.loads(text)[1]
    assert text == (
        f'[2,"{unique_id}","BootNotification",'
        '{"chargePointVendor":"Bär & Söhne","chargePointModel":"W1"}]'
    )
    peer.push([3, unique_id, {"status": "Accepted", "currentTime": NOW, "interval": 300}])
    assert await call == {"status": "Accepted", "currentTime": NOW, "interval": 300}


@BOTH
async def test_callerror_received_raises_rpc_error_with_its_fields(
    connect: Connect, dialect: Dialect
) -> None:
    peer = connect(dialect)
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    unique_id = (await peer.sent())[1]
    peer.push([4, unique_id, "SecurityError", "not allowed", {"why": "profile"}])
    with pytest.raises(RpcError) as caught:
        await call
    assert (caught.value.code, caught.value.description) == ("SecurityError", "not allowed")
    assert caught.value.details == {"why": "profile"}


@BOTH
async def test_result_violating_response_schema_raises_rpc_error_with_formation_code(
    connect: Connect, dialect: Dialect
) -> None:
    peer = connect(dialect)
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    peer.push([3, (await peer.sent())[1], {"time": NOW}])
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == dialect.formation_code
    assert caught.value.details == {"field": "currentTime"}


async def test_malformed_result_for_the_pending_call_raises_rpc_error(connect: Connect) -> None:
    peer = connect()
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    peer.push([3, (await peer.sent())[1], "Accepted"])
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == "FormationViolation"


async def test_invalid_outgoing_request_raises_value_error_and_sends_nothing(
    connect: Connect,
) -> None:
    peer = connect()
    with pytest.raises(ValueError, match="chargePointModel"):
        await peer.endpoint.call("BootNotification", {"chargePointVendor": "V"})
    with pytest.raises(ValueError, match="NotifyReport"):
        await peer.endpoint.call("NotifyReport", {})
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    first = await peer.sent()
    assert first[2] == "Heartbeat"  # the invalid requests never reached the wire
    peer.push([3, first[1], {"currentTime": NOW}])
    await call


async def test_a_second_call_waits_until_the_first_is_answered(connect: Connect) -> None:
    peer = connect()
    first = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    second = asyncio.create_task(peer.endpoint.call("Authorize", {"idTag": "B"}))
    heartbeat = await peer.sent()
    peer.push([3, heartbeat[1], {"currentTime": NOW}])
    authorize = await peer.sent()
    assert authorize[2:] == ["Authorize", {"idTag": "B"}]
    peer.push([3, authorize[1], {"idTagInfo": {"status": "Accepted"}}])
    assert await first == {"currentTime": NOW}
    assert await second == {"idTagInfo": {"status": "Accepted"}}
    # The message log proves the order on the wire: the second CALL left after the result.
    assert [(f.outgoing, json.loads(f.text)[0], f.action) for f in peer.frames] == [
        (True, 2, "Heartbeat"),
        (False, 3, "Heartbeat"),
        (True, 2, "Authorize"),
        (False, 3, "Authorize"),
    ]


async def test_waiting_calls_go_out_in_the_order_they_were_made(connect: Connect) -> None:
    peer = connect()
    calls = [
        asyncio.create_task(peer.endpoint.call("Authorize", {"idTag": tag}))
        for tag in ("A", "B", "C")
    ]
    for tag in ("A", "B", "C"):
        frame = await peer.sent()
        assert frame[3] == {"idTag": tag}
        peer.push([3, frame[1], {"idTagInfo": {"status": "Accepted"}}])
    await asyncio.gather(*calls)


async def test_call_without_response_raises_call_timeout_and_late_result_is_ignored(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    peer = connect(response_timeout_s=0.05)
    with pytest.raises(CallTimeout):
        await peer.endpoint.call("Heartbeat", {})
    late_id = (await peer.sent())[1]
    peer.push([3, late_id, {"currentTime": NOW}])
    call = asyncio.create_task(peer.endpoint.call("Authorize", {"idTag": "A"}))
    frame = await peer.sent()
    peer.push([3, frame[1], {"idTagInfo": {"status": "Blocked"}}])
    assert await call == {"idTagInfo": {"status": "Blocked"}}
    assert any(late_id in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_transport_closing_mid_call_raises_connection_lost_for_pending_and_waiting(
    connect: Connect,
) -> None:
    peer = connect()
    pending = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    waiting = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    await peer.sent()
    await peer.close()
    with pytest.raises(ConnectionLost):
        await pending
    with pytest.raises(ConnectionLost):
        await waiting
    assert peer.endpoint.closed
    assert peer.transport.outbox.empty()  # the waiting call was never sent


async def test_call_after_transport_closed_raises_connection_lost_and_sends_nothing(
    connect: Connect,
) -> None:
    peer = connect()
    await peer.close()
    with pytest.raises(ConnectionLost):
        await peer.endpoint.call("Heartbeat", {})
    assert peer.transport.outbox.empty()
    assert peer.frames == []


async def test_response_with_unknown_unique_id_is_ignored_and_pending_call_completes(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    peer = connect()
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    unique_id = (await peer.sent())[1]
    peer.push([3, "stranger-1", {"currentTime": "2000-01-01T00:00:00Z"}])
    peer.push([4, "stranger-2", "GenericError", "", {}])
    peer.push([3, unique_id, {"currentTime": NOW}])
    assert await call == {"currentTime": NOW}
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "stranger-1" in warned
    assert "stranger-2" in warned


async def test_slow_handler_does_not_block_the_result_of_our_call(connect: Connect) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"status": "Scheduled"}

    peer = connect(handlers={"ChangeAvailability": slow})
    peer.push([2, "csms-1", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    await asyncio.wait_for(started.wait(), WAIT_S)
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    peer.push([3, (await peer.sent())[1], {"currentTime": NOW}])
    assert await asyncio.wait_for(call, WAIT_S) == {"currentTime": NOW}
    assert not release.is_set()
    release.set()
    assert await peer.sent_text() == '[3,"csms-1",{"status":"Scheduled"}]'


# --- incoming CALLs -------------------------------------------------------------------


@BOTH
async def test_call_is_answered_with_the_handlers_result(
    connect: Connect, dialect: Dialect
) -> None:
    received: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        received.append(payload)
        return {"status": "Rejected"}

    peer = connect(dialect, handlers={"ChangeAvailability": handler})
    peer.push([2, "c1", "ChangeAvailability", CHANGE_AVAILABILITY[dialect]])
    assert await peer.sent_text() == '[3,"c1",{"status":"Rejected"}]'
    assert received == [CHANGE_AVAILABILITY[dialect]]  # camelCase, as on the wire


async def test_binary_frame_is_read_as_utf8_text(connect: Connect) -> None:
    peer = connect(handlers=ACCEPT)
    peer.push(json.dumps([2, "b1", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]]).encode())
    assert await peer.sent_text() == '[3,"b1",{"status":"Accepted"}]'


@pytest.mark.parametrize(
    "raw",
    [
        "hello",
        '[2,"x","Heartbeat",NaN]',
        '{"messageTypeId":2}',
        "[2]",
        "[]",
        '["2","x","ChangeAvailability",{}]',
        '[true,"x","ChangeAvailability",{}]',
        '[2,17,"ChangeAvailability",{}]',
        '[7,"x",{}]',
    ],
    ids=[
        "not-json", "nan", "not-array", "too-short", "empty", "type-id-string", "type-id-bool",
        "unique-id-number", "unknown-type-id-1.6",
    ],
)  # fmt: skip
async def test_unreadable_frame_is_dropped_with_a_warning_and_the_connection_stays_up(
    connect: Connect, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    peer = connect(OCPP16, handlers=ACCEPT)
    peer.push(raw)
    peer.push([2, "next", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    # Frames are handled in order, so the first reply being "next"'s means nothing was sent.
    assert await peer.sent_text() == '[3,"next",{"status":"Accepted"}]'
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert Frame(T0, False, raw, None) == peer.frames[0]


@BOTH
@pytest.mark.parametrize(
    "frame",
    [
        [2, "m1", 42, {}],
        [2, "m1", "ChangeAvailability", []],
        [2, "m1", "ChangeAvailability"],
        [2, "m1", "ChangeAvailability", {}, "extra"],
    ],
    ids=["action-not-string", "payload-not-object", "payload-missing", "too-long"],
)
async def test_malformed_call_with_readable_unique_id_gets_formation_callerror(
    connect: Connect, dialect: Dialect, frame: list[Any]
) -> None:
    peer = connect(dialect, handlers=ACCEPT)
    peer.push(frame)
    assert await peer.sent() == [
        4,
        "m1",
        dialect.formation_code,
        "CALL must be [2, uniqueId, action, payload object]",
        {},
    ]
    peer.push([2, "next", "ChangeAvailability", CHANGE_AVAILABILITY[dialect]])
    assert await peer.sent_text() == '[3,"next",{"status":"Accepted"}]'


async def test_unknown_message_type_id_gets_message_type_not_supported_in_201(
    connect: Connect,
) -> None:
    peer = connect(OCPP201)
    peer.push([7, "m7", {}])
    assert await peer.sent_text() == (
        '[4,"m7","MessageTypeNotSupported","Message type id 7 is not supported",{}]'
    )


@BOTH
async def test_call_for_action_the_version_does_not_define_gets_not_implemented(
    connect: Connect, dialect: Dialect
) -> None:
    peer = connect(dialect, handlers=ACCEPT)
    peer.push([2, "u1", "FlyToTheMoon", {}])
    assert await peer.sent_text() == (
        '[4,"u1","NotImplemented","Requested Action is not known by receiver",{}]'
    )


@BOTH
async def test_call_for_defined_action_without_handler_gets_not_supported(
    connect: Connect, dialect: Dialect
) -> None:
    peer = connect(dialect, handlers=ACCEPT)
    peer.push([2, "u2", "Reset", {"type": "Hard" if dialect is OCPP16 else "Immediate"}])
    assert await peer.sent_text() == (
        '[4,"u2","NotSupported",'
        '"Requested Action is recognized but not supported by the receiver",{}]'
    )


@pytest.mark.parametrize(
    ("dialect", "payload", "code", "field"),
    [
        (OCPP16, {"connectorId": 1}, "OccurenceConstraintViolation", "type"),
        (OCPP16, {"connectorId": "1", "type": "Operative"}, "TypeConstraintViolation",
         "connectorId"),
        (OCPP16, {"connectorId": 1, "type": "Operative", "x": 1}, "FormationViolation", "x"),
        (OCPP16, {"connectorId": 1, "type": "Maybe"}, "PropertyConstraintViolation", "type"),
        (OCPP201, {}, "OccurrenceConstraintViolation", "operationalStatus"),
        (OCPP201, {"operationalStatus": "Operative", "evse": {"id": "1"}},
         "TypeConstraintViolation", "evse.id"),
        (OCPP201, {"operationalStatus": "Operative", "x": 1}, "FormatViolation", "x"),
        (OCPP201, {"operationalStatus": "Maybe"}, "PropertyConstraintViolation",
         "operationalStatus"),
    ],
)  # fmt: skip
async def test_call_violating_request_schema_gets_the_mapped_callerror(
    connect: Connect, dialect: Dialect, payload: dict[str, Any], code: str, field: str
) -> None:
    called = False

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal called
        called = True
        return {"status": "Accepted"}

    peer = connect(dialect, handlers={"ChangeAvailability": handler})
    peer.push([2, "s1", "ChangeAvailability", payload])
    reply = await peer.sent()
    assert reply[:3] == [4, "s1", code]
    assert field in reply[3]
    assert reply[4] == {"field": field}
    assert not called


async def test_handler_raising_rpc_error_sends_that_callerror(connect: Connect) -> None:
    async def busy(payload: dict[str, Any]) -> dict[str, Any]:
        raise RpcError("GenericError", "busy", {"retryInS": 5})

    peer = connect(handlers={"ChangeAvailability": busy})
    peer.push([2, "h1", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    assert await peer.sent_text() == '[4,"h1","GenericError","busy",{"retryInS":5}]'


INTERNAL_ERROR = (
    '[4,"h2","InternalError","An internal error occurred and the receiver was not able to '
    'process the requested Action successfully",{}]'
)


async def test_handler_crash_sends_internal_error_and_logs_the_traceback(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(payload: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError("boom")

    peer = connect(handlers={"ChangeAvailability": crash})
    peer.push([2, "h2", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    assert await peer.sent_text() == INTERNAL_ERROR
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert logged
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], ZeroDivisionError)


@pytest.mark.parametrize(
    "result",
    [{"status": "Perhaps"}, {}, {"status": "Accepted", "extra": 1}],
    ids=["enum", "required", "additional"],
)
async def test_handler_result_violating_response_schema_sends_internal_error_and_logs(
    connect: Connect, caplog: pytest.LogCaptureFixture, result: dict[str, Any]
) -> None:
    async def wrong(payload: dict[str, Any]) -> dict[str, Any]:
        return result

    peer = connect(handlers={"ChangeAvailability": wrong})
    peer.push([2, "h2", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    assert await peer.sent_text() == INTERNAL_ERROR
    assert any(
        "invalid response" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    )


async def test_handler_result_with_nan_charging_limit_sends_internal_error(
    connect: Connect,
) -> None:
    async def nan_schedule(payload: dict[str, Any]) -> dict[str, Any]:
        period = {"startPeriod": 0, "limit": float("nan")}
        schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]}
        return {"status": "Accepted", "connectorId": 1, "chargingSchedule": schedule}

    peer = connect(handlers={"GetCompositeSchedule": nan_schedule})
    peer.push([2, "h2", "GetCompositeSchedule", {"connectorId": 1, "duration": 60}])
    assert await peer.sent_text() == INTERNAL_ERROR


async def test_handler_raising_code_unknown_to_the_version_sends_internal_error(
    connect: Connect,
) -> None:
    async def wrong_code(payload: dict[str, Any]) -> dict[str, Any]:
        raise RpcError("FormatViolation", "2.0.1 spelling on a 1.6 link")

    peer = connect(handlers={"ChangeAvailability": wrong_code})
    peer.push([2, "h2", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    assert await peer.sent_text() == INTERNAL_ERROR


async def test_closing_the_transport_cancels_running_handlers(connect: Connect) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"status": "Accepted"}

    peer = connect(handlers={"ChangeAvailability": forever})
    peer.push([2, "f1", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    await asyncio.wait_for(started.wait(), WAIT_S)
    await peer.close()
    assert cancelled.is_set()
    assert peer.transport.outbox.empty()


async def test_message_log_holds_every_frame_in_and_out_and_nothing_else(
    connect: Connect,
) -> None:
    peer = connect(handlers=ACCEPT)
    call = asyncio.create_task(peer.endpoint.call("Heartbeat", {}))
    call_text = await peer.sent_text()
    result_text = json.dumps([3, json.loads(call_text)[1], {"currentTime": NOW}])
    peer.push(result_text)
    await call
    peer.push('[2,"c1","ChangeAvailability",{"connectorId":1,"type":"Operative"}]')
    reply_text = await peer.sent_text()
    assert peer.frames == [
        Frame(T0, True, call_text, "Heartbeat"),
        Frame(T0 + timedelta(seconds=1), False, result_text, "Heartbeat"),
        Frame(
            T0 + timedelta(seconds=2),
            False,
            '[2,"c1","ChangeAvailability",{"connectorId":1,"type":"Operative"}]',
            "ChangeAvailability",
        ),
        Frame(T0 + timedelta(seconds=3), True, reply_text, "ChangeAvailability"),
    ]


async def test_serve_runs_once_per_endpoint(connect: Connect) -> None:
    peer = connect(handlers=ACCEPT)
    peer.push([2, "c1", "ChangeAvailability", CHANGE_AVAILABILITY[OCPP16]])
    await peer.sent()  # the first serve() is reading
    with pytest.raises(RuntimeError):
        await peer.endpoint.serve()
