"""The agent's websocket to the CSMS: websockets' client connection, with each message
pushed to the RPC endpoint as it arrives and a direct path for sending one.

websockets' asyncio connection queues every incoming message until a reader task asks
for it, and runs every send through a generic context that handles fragments, flow
control and closing. An OCPP-J endpoint needs neither: it reads every frame as it comes
and sends whole text frames, one at a time. `PushConnection` (handed to
`websockets.connect` as `create_connection`) therefore:

- delivers each complete message straight from `data_received` to the callback given
  to `deliver_until_closed` (the messages that arrived before it was called first, in
  order), so the endpoint needs no reader task and a CALLRESULT reaches the caller one
  event-loop turn sooner;
- sends a text message directly when the connection is open, no fragmented send is in
  progress and the transport is not paused; in any other case websockets' own `send`
  runs, so closing, flow control and errors behave exactly as websockets defines them.
  The direct path is also offered without a coroutine (`send_now`), so the endpoint can
  send the next CALL from inside the delivery of the answer before it;
- sends its keepalive pings from the event loop's timers instead of a task of its own
  (a fleet of thousands of stations saves a task, about a KiB, on each): a ping every
  `ping_interval`, and a pong missing after `ping_timeout` fails the connection with
  1011 and closes it, as websockets' keepalive does.

The handshake, permessage-deflate, pings and pongs, the closing handshake and every
protocol check stay websockets' (the Sans-I/O protocol object does them). A text frame
that is not UTF-8 fails the connection with 1007, as websockets' own `recv` does.

It must not: reorder, drop or merge messages, or be read with `recv()` (messages are
pushed: `recv()` raises).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Event

log = logging.getLogger(__name__)

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT

Message = str | bytes
Deliver = Callable[[Message], None]


class PushConnection(ClientConnection):
    """A websockets client connection that pushes messages to one callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deliver: Deliver | None = None
        self._early: list[Message] = []  # complete messages received before delivery began
        self._fragments: list[bytes] = []  # of a fragmented message, until its last frame
        self._fragmented_text = False
        self._failed = False  # the peer sent a message we refused: deliver nothing more
        self._keepalive: asyncio.TimerHandle | None = None  # the next ping, or its deadline

    async def deliver_until_closed(self, deliver: Deliver) -> None:
        """Hand every message to `deliver` (those already received first) until the
        connection is closed, then return. `deliver` runs inside the event loop's data
        callback: it must not block, and what it raises is logged, not propagated."""
        if self._deliver is not None:
            raise RuntimeError("messages are already delivered to another callback")
        early, self._early = self._early, []
        self._deliver = deliver
        try:
            for message in early:
                self._hand(deliver, message)
            await asyncio.shield(self.connection_lost_waiter)
        finally:
            self._deliver = None

    async def recv(self, decode: bool | None = None) -> Any:
        """Not available: messages are pushed (`deliver_until_closed`)."""
        raise RuntimeError("PushConnection delivers messages: use deliver_until_closed()")

    async def send(self, message: Any, text: bool | None = None) -> None:
        """Send a message; a str goes out directly while nothing stands in the way
        (`send_now`), anything else through websockets' `send`."""
        if type(message) is str and text is None:
            try:
                if self.send_now(message):
                    return
            except Exception as exc:  # as websockets' send: the connection failed, raise
                await asyncio.shield(self.connection_lost_waiter)
                raise self.protocol.close_exc from exc
        await super().send(message, text=text)

    def send_now(self, message: str) -> bool:
        """Write a text message at once if nothing stands in the way (an open connection,
        no fragmented send under way, the transport neither paused nor closing) and
        return True; return False, with nothing sent, if it must go through `send`.
        A failed write aborts the connection and is raised."""
        if (
            self.protocol.state is not OPEN
            or self.send_in_progress is not None
            or self.paused
            or self.transport.is_closing()
        ):
            return False
        self.protocol.send_text(message.encode())
        try:
            self.send_data()
        except Exception as exc:  # as websockets' send: fail the connection
            log.warning("sending failed: %r", exc)
            self.transport.abort()
            raise
        return True

    # --- keepalive ------------------------------------------------------------------

    def start_keepalive(self) -> None:
        """Schedule the first keepalive ping (none when ping_interval is None)."""
        if self.ping_interval is not None:
            self._keepalive = self.loop.call_later(self.ping_interval, self._ping)

    def _ping(self) -> None:
        """Send a keepalive ping and wait ping_timeout for its pong."""
        self._keepalive = None
        if self.protocol.state is not OPEN:
            return
        data = struct.pack("!I", random.getrandbits(32))
        while data in self.pending_pings:
            data = struct.pack("!I", random.getrandbits(32))
        pong = self.loop.create_future()
        self.pending_pings[data] = (pong, self.loop.time())
        self.protocol.send_ping(data)
        try:
            self.send_data()
        except Exception as exc:  # as a failed send: the connection is over
            log.warning("keepalive ping not sent: %r", exc)
            self.transport.abort()
            return
        pong.add_done_callback(self._pong)
        if self.ping_timeout is not None:
            self._keepalive = self.loop.call_later(self.ping_timeout, self._no_pong, pong)

    def _pong(self, pong: asyncio.Future[float]) -> None:
        """The pong came: the next ping one interval after the last one."""
        if pong.cancelled() or pong.exception() is not None:  # closed meanwhile
            return
        if self._keepalive is not None:
            self._keepalive.cancel()
        interval = self.ping_interval if self.ping_interval is not None else 0.0
        self._keepalive = self.loop.call_later(max(0.0, interval - pong.result()), self._ping)

    def _no_pong(self, pong: asyncio.Future[float]) -> None:
        """No pong within ping_timeout: fail the connection (1011) and close it, at the
        latest after close_timeout."""
        self._keepalive = None
        if pong.done() or self.protocol.state is not OPEN:
            return
        log.warning("no pong within %s s: closing the connection", self.ping_timeout)
        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self.send_data()
        self._keepalive = self.loop.call_later(self.close_timeout or 0.0, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        """websockets' bookkeeping, and no more keepalive."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        super().connection_lost(exc)

    # --- incoming (inside data_received) --------------------------------------------

    def process_event(self, event: Event) -> None:
        """Deliver data frames ourselves; the handshake, pongs and the rest go to
        websockets."""
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is not _TEXT and opcode is not _BINARY and opcode is not _CONT:
            super().process_event(event)
            return
        if self._failed:
            return
        if opcode is not _CONT:
            self._fragmented_text = opcode is _TEXT
        if not event.fin:
            self._fragments.append(bytes(event.data))
            return
        data = b"".join([*self._fragments, event.data]) if self._fragments else bytes(event.data)
        self._fragments = []
        if not self._fragmented_text:
            self._take(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self._failed = True
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        self._take(text)

    def _take(self, message: Message) -> None:
        deliver = self._deliver
        if deliver is None:
            self._early.append(message)
        else:
            self._hand(deliver, message)

    @staticmethod
    def _hand(deliver: Deliver, message: Message) -> None:
        try:
            deliver(message)
        except Exception:  # the endpoint's bug: the connection and its data stay intact
            log.exception("a received message could not be delivered")
