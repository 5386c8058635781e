"""The connection supervisor: keeps one OCPP-J websocket to the CSMS open.

Policy (reconnect with exponential backoff and jitter, bounded; which target next) is
separate from the one-shot connection: each attempt opens a websocket, wraps it in an
RpcEndpoint, hands it to the adapter's session and waits until either ends. The state
goes through one setter so the status view and the API always see a consistent value.

Targets: a provider gives the CSMS endpoints to try in priority order (re-read before
every attempt, so a profile stored meanwhile is used at the next one); each gets
`attempts_per_target()` failed connection attempts in a row, then the next is tried,
wrapping around after the last (OCPP 2.0.1 B10). OCPP 1.6 has one target: the config's.

Versions: the handshake offers the subprotocol of every dialect in `offered` (most
preferred first) and the CSMS chooses one; a CSMS choosing none fails the handshake. The
choice is reported to `on_connected`; if it is not the dialect the session speaks, the
connection is closed and `run()` returns: the owner restarts with the chosen version.

It must not: know what messages mean (the adapter does), queue anything (the journal's
outbox does, durably), or choose a version itself (the composition root does).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from agent.core.tasks import Signal
from agent.ocpp.dialects import Dialect
from agent.ocpp.rpc import Frame, Handler, RpcEndpoint
from agent.ocpp.wsclient import PushConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach the CSMS: its URL (the charge point id is appended to it), HTTP
    Basic credentials, TLS context, and a response timeout (None: the supervisor's)."""

    url: str
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None
    response_timeout_s: float | None = None
    name: str = ""  # for logs: "config", "slot 2"


class TargetCursor:
    """Which target to try (B10): the current one until it failed `attempts` times in a
    row, then the next, wrapping around after the last."""

    def __init__(self) -> None:
        self.index = 0
        self._failed_here = 0

    def pick(self, targets: Sequence[Target]) -> Target:
        """The target to try now; raises ValueError if there is none."""
        if not targets:
            raise ValueError("no CSMS target to connect to")
        self.index %= len(targets)
        return targets[self.index]

    def failed(self, count: int, attempts: int) -> None:
        """One attempt at the current target failed (of `count` targets)."""
        self._failed_here += 1
        if self._failed_here >= max(1, attempts):
            self._failed_here = 0
            self.index = (self.index + 1) % max(1, count)

    def connected(self) -> None:
        """The current target answered: its failure count starts again."""
        self._failed_here = 0


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
        targets: Callable[[], Sequence[Target]],
        charge_point_id: str,
        dialect: Dialect,
        handlers: Mapping[str, Handler],
        session: Callable[[RpcEndpoint], Coroutine[Any, Any, None]],
        backoff: Backoff,
        response_timeout_s: float,
        ping_interval_s: Callable[[], float | None],
        offered: Sequence[Dialect] = (),
        attempts_per_target: Callable[[], int] = lambda: 1,
        on_frame: Callable[[Frame], None] | None = None,
        on_state: Callable[[ConnectionState], None] | None = None,
        on_connected: Callable[[Target, Dialect], None] | None = None,
    ) -> None:
        """`dialect` is what `session` speaks; `offered` the dialects to offer, most
        preferred first (default: `dialect` alone). Raises ValueError if `offered` leaves
        out `dialect`."""
        self._offered = tuple(offered) or (dialect,)
        if dialect not in self._offered:
            raise ValueError(f"the session's OCPP {dialect.version} is not offered")
        self._targets = targets
        self._charge_point_id = charge_point_id
        self._dialect = dialect
        self._handlers = handlers
        self._session = session
        self._backoff = backoff
        self._response_timeout_s = response_timeout_s
        self._ping_interval_s = ping_interval_s
        self._attempts_per_target = attempts_per_target
        self._on_frame = on_frame
        self._on_state = on_state
        self._on_connected = on_connected
        self._cursor = TargetCursor()
        self._ws: ClientConnection | None = None
        self.state = ConnectionState.DISCONNECTED
        self.connections = 0
        self.failed_attempts = 0  # connection attempts that failed, in all
        #: The dialect the CSMS chose at the last handshake (None before the first).
        self.negotiated: Dialect | None = None
        self._held = False
        self._hold_deadline: float | None = None
        self._release = Signal()

    @property
    def target(self) -> Target:
        """The target in use now, or tried next."""
        return self._cursor.pick(self._targets())

    @property
    def url(self) -> str:
        """The full URL of the current target (the charge point id appended)."""
        return self._full_url(self.target)

    def _full_url(self, target: Target) -> str:
        return target.url.rstrip("/") + "/" + self._charge_point_id

    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            log.info("connection %s", state)
            if self._on_state is not None:
                self._on_state(state)

    async def run(self) -> None:
        """Keep a connection up until cancelled, or until the CSMS chose another version
        than the session's (then return after telling `on_connected`)."""
        failures = 0
        try:
            while True:
                if self._held:
                    await self._wait_while_held()
                    failures = 0
                self._set_state(ConnectionState.CONNECTING)
                targets = self._targets()
                target = self._cursor.pick(targets)
                try:
                    ws, chosen = await self._connect(target)
                except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                    failures += 1
                    self.failed_attempts += 1
                    self._cursor.failed(len(targets), self._attempts_per_target())
                    delay = self._backoff.delay_s(failures)
                    log.warning(
                        "cannot connect to %s (%s); retry in %.1fs",
                        self._full_url(target),
                        exc,
                        delay,
                    )
                    self._set_state(ConnectionState.DISCONNECTED)
                    await asyncio.sleep(delay)
                    continue
                if self._held:  # told to go offline while the handshake was under way
                    await ws.close()
                    continue
                self._cursor.connected()
                self.negotiated = chosen
                if self._on_connected is not None:
                    self._on_connected(target, chosen)
                if chosen != self._dialect:
                    log.info("the CSMS chose OCPP %s: restarting with it", chosen.version)
                    await ws.close(reason=f"restarting with OCPP {chosen.version}")
                    return
                failures = 0
                self.connections += 1
                self._set_state(ConnectionState.CONNECTED)
                await self._run_connection(ws, target)
                self._set_state(ConnectionState.DISCONNECTED)
                if self._held:
                    continue
                failures += 1
                await asyncio.sleep(self._backoff.delay_s(failures))
        finally:
            self._set_state(ConnectionState.STOPPED)

    async def _connect(self, target: Target) -> tuple[ClientConnection, Dialect]:
        """Open a websocket to `target`; the dialect the CSMS chose. Raises
        InvalidHandshake when it chose none of those offered, OSError, TimeoutError."""
        headers = {}
        if target.basic_auth is not None:
            user, password = target.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        by_subprotocol = {d.subprotocol: d for d in self._offered}
        ws = await websockets.connect(
            self._full_url(target),
            subprotocols=list(by_subprotocol),  # type: ignore[arg-type]
            additional_headers=headers,
            ssl=target.ssl_context,
            ping_interval=self._ping_interval_s(),
            open_timeout=target.response_timeout_s or self._response_timeout_s,
            max_size=2**22,
            create_connection=PushConnection,
        )
        chosen = by_subprotocol.get(ws.subprotocol or "")
        if chosen is None:
            await ws.close(code=1002, reason="OCPP subprotocol not agreed")
            offered = ", ".join(by_subprotocol)
            raise websockets.InvalidHandshake(f"CSMS agreed to none of {offered}")
        return ws, chosen

    async def _run_connection(self, ws: ClientConnection, target: Target) -> None:
        self._ws = ws
        endpoint = RpcEndpoint(
            ws,
            self._dialect,
            handlers=self._handlers,
            response_timeout_s=target.response_timeout_s or self._response_timeout_s,
            on_frame=self._on_frame,
        )
        # The endpoint is served in this task (the connection pushes its messages, so
        # serving is waiting for the close); the session runs beside it, and its end
        # closes the connection.
        session = asyncio.create_task(self._session(endpoint), name="ocpp-session")
        closing: list[asyncio.Task[None]] = []

        def session_ended(_: asyncio.Task[None]) -> None:
            if not endpoint.closed:  # it ended first: close the connection, ending serve
                closing.append(asyncio.create_task(ws.close(), name="ocpp-close"))

        session.add_done_callback(session_ended)
        try:
            await endpoint.serve()
        except Exception:
            log.exception("serving the connection failed")
        finally:
            session.cancel()
            await ws.close()
            results = await asyncio.gather(session, *closing, return_exceptions=True)
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
                async with asyncio.timeout(timeout):  # (wait_for would start a task)
                    await self._release.wait()
            except TimeoutError:
                self._held = False
