"""The connection supervisor: keeps one OCPP-J websocket to the CSMS open.

Policy (reconnect with exponential backoff and jitter, bounded) is separate from the
one-shot connection: each attempt opens a websocket, wraps it in an RpcEndpoint, hands
it to the adapter's session and waits until either ends. The state goes through one
setter so the status view and the API always see a consistent value.

It must not: know what messages mean (the adapter does), or queue anything (the
journal's outbox does, durably).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from agent.ocpp.dialects import Dialect
from agent.ocpp.rpc import Frame, Handler, RpcEndpoint

log = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    """Where the supervisor is."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    HELD_OFFLINE = "held_offline"  # told to stay offline (simulated network loss)
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: initial * 2^n, capped, scaled by (1 - jitter*rand)."""

    initial_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.5

    def delay_s(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before attempt number `failures` + 1."""
        base = min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))
        return base * (1.0 - self.jitter * rand())


class ConnectionSupervisor:
    """Connects, runs a session per connection, reconnects; until `stop()`."""

    def __init__(
        self,
        *,
        url: str,
        charge_point_id: str,
        dialect: Dialect,
        handlers: Mapping[str, Handler],
        session: Callable[[RpcEndpoint], Coroutine[Any, Any, None]],
        backoff: Backoff,
        response_timeout_s: float,
        ping_interval_s: Callable[[], float | None],
        basic_auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_state: Callable[[ConnectionState], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/" + charge_point_id
        self._dialect = dialect
        self._handlers = handlers
        self._session = session
        self._backoff = backoff
        self._response_timeout_s = response_timeout_s
        self._ping_interval_s = ping_interval_s
        self._basic_auth = basic_auth
        self._ssl = ssl_context
        self._on_frame = on_frame
        self._on_state = on_state
        self._ws: ClientConnection | None = None
        self.state = ConnectionState.DISCONNECTED
        self.connections = 0
        self._held = False
        self._hold_deadline: float | None = None
        self._release = asyncio.Event()

    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            log.info("connection %s", state)
            if self._on_state is not None:
                self._on_state(state)

    async def run(self) -> None:
        """Keep a connection up until cancelled."""
        failures = 0
        try:
            while True:
                if self._held:
                    await self._wait_while_held()
                    failures = 0
                self._set_state(ConnectionState.CONNECTING)
                try:
                    ws = await self._connect()
                except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                    failures += 1
                    delay = self._backoff.delay_s(failures)
                    log.warning("cannot connect to %s (%s); retry in %.1fs", self.url, exc, delay)
                    self._set_state(ConnectionState.DISCONNECTED)
                    await asyncio.sleep(delay)
                    continue
                if self._held:  # told to go offline while the handshake was under way
                    await ws.close()
                    continue
                failures = 0
                self.connections += 1
                self._set_state(ConnectionState.CONNECTED)
                await self._run_connection(ws)
                self._set_state(ConnectionState.DISCONNECTED)
                if self._held:
                    continue
                failures += 1
                await asyncio.sleep(self._backoff.delay_s(failures))
        finally:
            self._set_state(ConnectionState.STOPPED)

    async def _connect(self) -> ClientConnection:
        headers = {}
        if self._basic_auth is not None:
            user, password = self._basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        ws = await websockets.connect(
            self.url,
            subprotocols=[self._dialect.subprotocol],  # type: ignore[list-item]
            additional_headers=headers,
            ssl=self._ssl,
            ping_interval=self._ping_interval_s(),
            open_timeout=self._response_timeout_s,
            max_size=2**22,
        )
        if ws.subprotocol != self._dialect.subprotocol:
            await ws.close(code=1002, reason="OCPP subprotocol not agreed")
            raise websockets.InvalidHandshake(f"CSMS did not agree to {self._dialect.subprotocol}")
        return ws

    async def _run_connection(self, ws: ClientConnection) -> None:
        self._ws = ws
        endpoint = RpcEndpoint(
            ws,
            self._dialect,
            handlers=self._handlers,
            response_timeout_s=self._response_timeout_s,
            on_frame=self._on_frame,
        )
        serve = asyncio.create_task(endpoint.serve(), name="rpc-serve")
        session = asyncio.create_task(self._session(endpoint), name="ocpp-session")
        try:
            await asyncio.wait({serve, session}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.cancel()
            await ws.close()
            serve.cancel()
            results = await asyncio.gather(serve, session, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("connection task failed", exc_info=result)
            self._ws = None

    async def drop(self) -> None:
        """Close the current connection now (the supervisor reconnects after backoff)."""
        if self._ws is not None:
            await self._ws.close()

    async def hold_offline(self, seconds: float | None) -> None:
        """Drop the connection and refuse to reconnect for `seconds` (None: until release)."""
        loop = asyncio.get_running_loop()
        self._held = True
        self._hold_deadline = None if seconds is None else loop.time() + seconds
        self._release.clear()
        self._set_state(ConnectionState.HELD_OFFLINE)
        await self.drop()

    def release(self) -> None:
        """End a hold: reconnect now."""
        self._held = False
        self._release.set()

    @property
    def held_offline(self) -> bool:
        """Whether the supervisor is told to stay offline."""
        return self._held

    async def _wait_while_held(self) -> None:
        loop = asyncio.get_running_loop()
        self._set_state(ConnectionState.HELD_OFFLINE)
        while self._held:
            deadline = self._hold_deadline
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self._release.wait(), timeout)
            except TimeoutError:
                self._held = False
