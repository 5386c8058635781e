"""PushConnection (agent/ocpp/wsclient.py) against a real websockets server on 127.0.0.1.

What the CSMS side sends must reach the endpoint whole and in order (early, fragmented,
binary), a text frame that is not UTF-8 fails the connection with 1007, sends keep their
order and honour flow control (send_now declines what must wait), and keepalive pings
run on timers: answered ones keep
the connection, an unanswered one closes it with 1011.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from agent.ocpp.wsclient import PushConnection

WAIT_S = 5.0
ServerScript = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def server(script: ServerScript, **options: Any) -> AsyncIterator[str]:
    """A websockets server running `script` for each connection; yields its URL."""
    async with serve(script, "127.0.0.1", 0, **options) as running:
        port = next(iter(running.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[PushConnection]:
    options.setdefault("ping_interval", None)
    async with connect(url, create_connection=PushConnection, **options) as ws:
        assert isinstance(ws, PushConnection)
        yield ws


async def collect(ws: PushConnection, count: int) -> list[str | bytes]:
    """Deliver messages until `count` arrived; return them."""
    got: list[str | bytes] = []
    enough = asyncio.Event()

    def deliver(message: str | bytes) -> None:
        got.append(message)
        if len(got) >= count:
            enough.set()

    delivering = asyncio.create_task(ws.deliver_until_closed(deliver))
    async with asyncio.timeout(WAIT_S):
        await enough.wait()
    delivering.cancel()
    return got


async def test_messages_arrive_in_order_including_those_before_delivery_began() -> None:
    sent = asyncio.Event()

    async def script(connection: ServerConnection) -> None:
        for number in range(3):
            await connection.send(f"early {number}")
        sent.set()
        await connection.recv()  # "more"
        for number in range(3):
            await connection.send(f"late {number}")
        await connection.wait_closed()

    async with server(script) as url, client(url) as ws:
        await sent.wait()
        await (await ws.ping())  # its pong comes after the early messages
        await ws.send("more")
        got = await collect(ws, 6)
    assert got == [f"early {n}" for n in range(3)] + [f"late {n}" for n in range(3)]


async def test_fragmented_and_binary_messages_are_delivered_whole() -> None:
    async def script(connection: ServerConnection) -> None:
        await connection.send(["[2,", '"a",', '"Heartbeat",{}]'])
        await connection.send([b"\x01\x02", b"\x03"])
        await connection.send("after")
        await connection.wait_closed()

    async with server(script) as url, client(url) as ws:
        got = await collect(ws, 3)
    assert got == ['[2,"a","Heartbeat",{}]', b"\x01\x02\x03", "after"]


async def test_a_text_frame_that_is_not_utf8_fails_the_connection_with_1007() -> None:
    closed_with: list[int | None] = []

    async def script(connection: ServerConnection) -> None:
        await connection.send(b"\xff\xfe", text=True)
        await connection.send("never delivered")
        await connection.wait_closed()
        closed_with.append(connection.close_code)

    async with server(script) as url, client(url) as ws:
        got: list[str | bytes] = []
        async with asyncio.timeout(WAIT_S):
            await ws.deliver_until_closed(got.append)  # returns: the connection closed
    assert got == []
    assert closed_with == [1007]


async def test_sends_keep_their_order_and_wait_while_the_transport_is_paused() -> None:
    received: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def script(connection: ServerConnection) -> None:
        async for message in connection:
            received.put_nowait(message)

    async with server(script) as url, client(url) as ws:
        for number in range(50):
            await ws.send(f"m{number}")
        async with asyncio.timeout(WAIT_S):
            assert [await received.get() for _ in range(50)] == [f"m{n}" for n in range(50)]
        ws.pause_writing()  # as the transport does when its buffer is full
        sending = asyncio.create_task(ws.send("while paused"))
        async with asyncio.timeout(WAIT_S):
            assert await received.get() == "while paused"  # written, then drained
        assert not sending.done()  # websockets' send waits for the buffer to drain
        ws.resume_writing()
        async with asyncio.timeout(WAIT_S):
            await sending


async def test_send_now_writes_at_once_and_declines_whatever_must_wait() -> None:
    """The endpoint sends a chained CALL with send_now from inside a delivery: it must
    write at once when it can, and otherwise send nothing and say so."""
    received: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def script(connection: ServerConnection) -> None:
        async for message in connection:
            received.put_nowait(message)

    async with server(script) as url, client(url) as ws:
        assert ws.send_now("at once")
        async with asyncio.timeout(WAIT_S):
            assert await received.get() == "at once"
        ws.pause_writing()
        assert not ws.send_now("while paused")
        ws.resume_writing()
        assert ws.send_now("resumed")
        async with asyncio.timeout(WAIT_S):
            assert await received.get() == "resumed"  # "while paused" was never sent
        await ws.close()
        assert not ws.send_now("after the close")
    assert received.empty()


async def test_a_send_after_the_close_raises_connection_closed() -> None:
    async def script(connection: ServerConnection) -> None:
        await connection.close()

    async with server(script) as url, client(url) as ws:
        async with asyncio.timeout(WAIT_S):
            await ws.deliver_until_closed(lambda _: None)
        with pytest.raises(ConnectionClosed):
            await ws.send("too late")


async def test_keepalive_pings_run_on_timers_and_answered_ones_keep_the_connection() -> None:
    async def script(connection: ServerConnection) -> None:
        await connection.wait_closed()

    async with (
        server(script, ping_interval=None) as url,
        client(url, ping_interval=0.02, ping_timeout=WAIT_S) as ws,
    ):
        assert ws.keepalive_task is None  # no task of its own
        pongs = 0
        answered = asyncio.Event()
        acknowledge = ws.acknowledge_pings

        def counted(data: bytes) -> None:
            nonlocal pongs
            acknowledge(data)
            pongs += 1
            if pongs >= 3:
                answered.set()

        ws.acknowledge_pings = counted  # type: ignore[method-assign]
        async with asyncio.timeout(WAIT_S):
            await answered.wait()
        assert ws.protocol.state.name == "OPEN"


async def test_an_unanswered_keepalive_ping_closes_the_connection_with_1011() -> None:
    async def script(connection: ServerConnection) -> None:
        connection.transport.pause_reading()  # a stuck CSMS: reads nothing, answers nothing
        await connection.wait_closed()

    async with (
        server(script, ping_interval=None, close_timeout=0.05) as url,
        client(url, ping_interval=0.02, ping_timeout=0.05, close_timeout=0.05) as ws,
    ):
        async with asyncio.timeout(WAIT_S):
            await ws.deliver_until_closed(lambda _: None)
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == 1011
