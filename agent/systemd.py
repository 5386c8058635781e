"""systemd integration: readiness, status lines and watchdog pings over sd_notify.

`SystemdNotifier` speaks the sd_notify protocol (sd_notify(3)) without python-systemd:
one datagram of newline-separated `KEY=VALUE` assignments, sent over the AF_UNIX
SOCK_DGRAM socket that $NOTIFY_SOCKET names (a path, or an abstract socket written
with a leading '@'). Without $NOTIFY_SOCKET, when the agent is not run by systemd
with Type=notify, every method is a no-op. The watchdog period comes from
$WATCHDOG_USEC (and only applies when $WATCHDOG_PID, if set, is this process).

`SystemdReporter` watches the agents `run_agent` builds and tells systemd what an
operator needs: READY=1 once the first station has started, STATUS= with the CSMS
connection state and the open transactions, WATCHDOG=1 while the agent is healthy,
STOPPING=1 on shutdown.

It must not: change what the agent does, raise because systemd is unreachable (a
failed send is logged once at WARNING and otherwise ignored), or block the event loop
for longer than one bounded datagram send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from agent.core.tasks import TaskSet
from agent.ocpp.connection import ConnectionState

if TYPE_CHECKING:
    from agent.app import Agent

log = logging.getLogger(__name__)

#: Longest a send may block the event loop when systemd's socket queue is full.
SEND_TIMEOUT_S = 0.5


class SystemdNotifier:
    """Sends sd_notify messages to systemd; a no-op when not started by systemd."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        self._address = _socket_address(notify_socket) if notify_socket else None
        self._watchdog_timeout_s = _watchdog_timeout_s(watchdog_usec, watchdog_pid)
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """A notifier configured from $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"),
            watchdog_usec=env.get("WATCHDOG_USEC"),
            watchdog_pid=env.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """Whether there is a notification socket to send to."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram; True if sent. Never raises."""
        if self._address is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(data, self._address)
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %r: %s", self._address, error)
            return False
        return True

    def ready(self) -> None:
        """Tell systemd that start-up is finished (READY=1)."""
        self.notify("READY=1")

    def stopping(self) -> None:
        """Tell systemd that the agent is shutting down (STOPPING=1)."""
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows (STATUS=...)."""
        self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Ping the service watchdog (WATCHDOG=1)."""
        self.notify("WATCHDOG=1")

    def watchdog_timeout_s(self) -> float | None:
        """The watchdog timeout systemd enforces; None when the watchdog is off for us."""
        return self._watchdog_timeout_s if self.enabled else None

    def watchdog_interval_s(self) -> float | None:
        """The ping period: half the watchdog timeout; None when the watchdog is off."""
        timeout_s = self.watchdog_timeout_s()
        return None if timeout_s is None else timeout_s / 2.0

    async def run_watchdog(
        self,
        alive: Callable[[], bool],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Ping every `watchdog_interval_s()` while `alive()` holds; return at once if off.

        A wedged event loop never gets here, so pings stop and systemd restarts the
        service; `alive()` adds the agent's own health. An `alive()` that raises counts
        as unhealthy.
        """
        interval_s = self.watchdog_interval_s()
        if interval_s is None:
            return
        healthy = True
        while True:
            try:
                now_healthy = alive()
            except Exception:
                log.exception("watchdog health check failed")
                now_healthy = False
            if now_healthy:
                self.watchdog()
            elif healthy:
                log.error("agent unhealthy: withholding watchdog pings")
            healthy = now_healthy
            await sleep(interval_s)


def _socket_address(notify_socket: str) -> str | None:
    """The sendto() address for $NOTIFY_SOCKET; None (with a warning) if unsupported."""
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]  # Linux abstract namespace
    if notify_socket.startswith("/"):
        return notify_socket
    log.warning("NOTIFY_SOCKET=%r is not supported (only paths and @abstract)", notify_socket)
    return None


def _watchdog_timeout_s(watchdog_usec: str | None, watchdog_pid: str | None) -> float | None:
    """The timeout in seconds from $WATCHDOG_USEC, if it is meant for this process."""
    if not watchdog_usec:
        return None
    if watchdog_pid and watchdog_pid.strip() != str(os.getpid()):
        return None  # the watchdog belongs to another process (sd_watchdog_enabled(3))
    try:
        usec = int(watchdog_usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer: watchdog off", watchdog_usec)
        return None
    return usec / 1_000_000 if usec > 0 else None


def open_transactions(agent: Agent) -> int:
    """How many EVSEs of the agent's station have a running transaction."""
    return sum(1 for evse in agent.station.evses.values() if evse.tx is not None)


def status_text(agent: Agent) -> str:
    """The status line for systemd: CSMS connection state and open transactions."""
    count = open_transactions(agent)
    plural = "" if count == 1 else "s"
    return f"CSMS {agent.supervisor.state.value}; {count} open transaction{plural}"


def _status_differs(agent: Agent, shown: str) -> bool:
    return status_text(agent) != shown


def station_started(agent: Agent) -> bool:
    """Whether every EVSE has derived its first connector status (its drivers run)."""
    return all(evse.statuses() for evse in agent.station.evses.values())


class SystemdReporter:
    """Reports the agents `run_agent` builds to systemd; use as an async context manager.

    READY=1 goes out once, when the first agent's station has started (an in-process
    restart after a Reset does not repeat it). The status line is refreshed when the
    connection state or the number of open transactions changes, and re-checked every
    `refresh_s`. The watchdog is fed while the current agent's connection supervisor
    runs: if it died, no one would ever reconnect, and a restart is the cure.
    """

    def __init__(self, notifier: SystemdNotifier, *, refresh_s: float = 5.0) -> None:
        self.notifier = notifier
        self._refresh_s = refresh_s
        self._agent: Agent | None = None
        self._follower: asyncio.Task[None] | None = None
        self._tasks = TaskSet("systemd")
        self._ready_sent = False
        self._stopping = False

    async def __aenter__(self) -> SystemdReporter:
        self._tasks.spawn(self.notifier.run_watchdog(self.alive), name="systemd-watchdog")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._tasks.cancel_all()
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self.notifier.status(f"failed: {exc}")

    def on_agent(self, agent: Agent) -> None:
        """The `run_agent(on_agent=...)` hook: follow this agent from now on."""
        self._agent = agent
        if self._follower is not None:
            self._follower.cancel()
        self._follower = self._tasks.spawn(self._follow(agent), name="systemd-status")

    def stopping(self) -> None:
        """Announce a shutdown (call from the SIGTERM handler); status updates end here."""
        self._stopping = True
        if self._follower is not None:
            self._follower.cancel()
        self.notifier.stopping()
        self.notifier.status("stopping")

    def alive(self) -> bool:
        """Whether the agent is healthy enough to keep feeding the watchdog."""
        agent = self._agent
        return agent is None or agent.supervisor.state is not ConnectionState.STOPPED

    async def _follow(self, agent: Agent) -> None:
        await self._wait(agent, lambda: station_started(agent))
        if self._stopping:
            return
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready()
            log.info("systemd notified: ready")
        shown = ""
        while not self._stopping:
            text = status_text(agent)
            if text != shown:
                self.notifier.status(text)
                shown = text
            # `shown` is current here, so this waits (it never returns at once and spins).
            with contextlib.suppress(TimeoutError):  # the periodic re-check
                await agent.wait_until(partial(_status_differs, agent, shown), self._refresh_s)

    @staticmethod
    async def _wait(agent: Agent, predicate: Callable[[], bool]) -> None:
        """Wait for `predicate` however long it takes (re-checked at least every minute)."""
        while True:
            try:
                await agent.wait_until(predicate, 60.0)
                return
            except TimeoutError:
                continue
