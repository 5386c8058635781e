"""The shared CAN bus of the DC drivers, and what the drivers on it have in common.

Responsible for one python-can bus per (interface, channel), shared through
`DriverContext.shared` by every driver on it (a power module and an IMD on one bus), and
for handing frames from python-can's threads to the event loop: a `can.Notifier` thread
reads the bus and its listener passes each frame on with `loop.call_soon_threadsafe`;
sends run on one worker thread per bus, so frames leave in the order they were sent and
the loop never blocks on a full transmit queue. Also the option parsing and the small
helpers both drivers use (tracked tasks, fault bookkeeping).

It must not interpret frames (drivers/can_frames.py and the drivers do) and never reads
python-can's config files or environment (`ignore_config=True`): the YAML is the only
source of configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import can

from drivers.interfaces import DriverError
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import FaultCode, FaultEvent

_log = logging.getLogger(__name__)

DEFAULT_BITRATE = 125_000  # Infypower V1.13

Monotonic = Callable[[], float]

FrameHandler = Callable[[can.Message], None]
SEND_TIMEOUT_S = 0.2
RECV_TIMEOUT_S = 0.1
ERROR_BACKOFF_S = 0.5


class _LoopListener(can.Listener):
    """Runs on the Notifier thread: hands each frame to the loop, nothing else."""

    def __init__(self, loop: asyncio.AbstractEventLoop, dispatch: FrameHandler) -> None:
        self._loop = loop
        self._dispatch = dispatch

    def on_message_received(self, msg: can.Message) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the link is going away
            self._loop.call_soon_threadsafe(self._dispatch, msg)

    def on_error(self, exc: Exception) -> None:
        # A bus that fails to read (interface down) would otherwise spin the Notifier
        # thread; back off. The drivers see silence and report it as a fault.
        _log.warning("CAN receive failed: %s", exc)
        time.sleep(ERROR_BACKOFF_S)


class CanLink:
    """One python-can bus shared by the drivers on it; opened by the first, closed by the last."""

    def __init__(self, interface: str, channel: str, bitrate: int) -> None:
        """A link to `channel` on python-can's `interface`; nothing is opened yet."""
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self._handlers: list[FrameHandler] = []
        self._lock = asyncio.Lock()
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._sender: ThreadPoolExecutor | None = None

    @classmethod
    def shared(cls, context: DriverContext, interface: str, channel: str, bitrate: int) -> Self:
        """The station's link for (interface, channel); raises DriverOptionError on a clash."""
        key = ("can", interface, channel)
        link = context.shared.get(key)
        if link is None:
            link = context.shared[key] = cls(interface, channel, bitrate)
        if not isinstance(link, cls):
            raise DriverOptionError("channel", f"{channel} is used by another kind of link")
        if link.bitrate != bitrate:
            raise DriverOptionError(
                "bitrate", f"{channel} is already configured at {link.bitrate} bit/s"
            )
        return link

    @property
    def is_open(self) -> bool:
        """Whether the bus is open."""
        return self._bus is not None

    async def attach(self, handler: FrameHandler) -> None:
        """Deliver every frame to `handler` on the loop thread; opens the bus if needed.

        Raises DriverError when the bus cannot be opened.
        """
        async with self._lock:
            if self._bus is None:
                await self._open()
            self._handlers.append(handler)

    async def detach(self, handler: FrameHandler) -> None:
        """Stop delivering to `handler`; closes the bus when nobody is left."""
        async with self._lock:
            if handler in self._handlers:
                self._handlers.remove(handler)
            if not self._handlers and self._bus is not None:
                await self._close()

    async def send(self, message: can.Message) -> None:
        """Queue `message` on the bus (in order); raises DriverError when it cannot."""
        bus, sender = self._bus, self._sender
        if bus is None or sender is None:
            raise DriverError(f"CAN {self.channel} is not open")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(sender, bus.send, message, SEND_TIMEOUT_S)
        except (can.CanError, OSError) as exc:
            raise DriverError(f"CAN {self.channel}: send failed: {exc}") from exc

    def _dispatch(self, message: can.Message) -> None:
        for handler in list(self._handlers):
            try:
                handler(message)
            except Exception:  # one driver's bug must not starve the others
                _log.exception("CAN %s: frame handler failed", self.channel)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()

        def open_bus() -> can.BusABC:
            # ignore_config: never read ~/can.conf or CAN_* variables behind the YAML's back.
            return can.Bus(
                interface=self.interface,
                channel=self.channel,
                bitrate=self.bitrate,
                ignore_config=True,
            )

        try:
            bus = await asyncio.to_thread(open_bus)
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            raise DriverError(f"cannot open CAN {self.interface}:{self.channel}: {exc}") from exc
        self._bus = bus
        self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"can-send-{self.channel}")
        self._notifier = can.Notifier(bus, [_LoopListener(loop, self._dispatch)], RECV_TIMEOUT_S)

    async def _close(self) -> None:
        bus, notifier, sender = self._bus, self._notifier, self._sender
        self._bus = self._notifier = self._sender = None

        def close() -> None:
            if notifier is not None:
                notifier.stop(RECV_TIMEOUT_S * 5)
            if sender is not None:
                sender.shutdown(wait=True)
            if bus is not None:
                bus.shutdown()

        await asyncio.to_thread(close)


# --- option parsing -------------------------------------------------------------------------

BUS_KEYS = frozenset({"interface", "channel", "bitrate"})


def check_keys(options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Raise DriverOptionError for the first key not in `allowed` (catches typos)."""
    for key in options:
        if key not in allowed:
            raise DriverOptionError(key, f"unknown option (known: {', '.join(sorted(allowed))})")


def number_option(
    options: Mapping[str, Any], key: str, default: float | None, low: float, high: float
) -> float:
    """Option `key` as a float in [low, high]; raises DriverOptionError (None: required)."""
    value = options.get(key, default)
    if value is None:
        raise DriverOptionError(key, "required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DriverOptionError(key, f"must be a number, not {value!r}")
    if not low <= value <= high:
        raise DriverOptionError(key, f"must be between {low:g} and {high:g}, not {value:g}")
    return float(value)


def integer_option(
    options: Mapping[str, Any], key: str, default: int | None, low: int, high: int
) -> int:
    """Option `key` as an int in [low, high]; raises DriverOptionError (None: required)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | None):
        raise DriverOptionError(key, f"must be an integer, not {value!r}")
    return int(number_option(options, key, default, low, high))


def link_from_options(options: Mapping[str, Any], context: DriverContext) -> CanLink:
    """The station's CanLink for the bus options; raises DriverOptionError."""
    interface = options.get("interface", "socketcan")
    channel = options.get("channel", "can0")
    for key, value in (("interface", interface), ("channel", channel)):
        if not isinstance(value, str) or not value:
            raise DriverOptionError(key, f"must be a non-empty string, not {value!r}")
    if interface not in can.interfaces.VALID_INTERFACES:
        known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        raise DriverOptionError("interface", f"unknown python-can interface (known: {known})")
    bitrate = integer_option(options, "bitrate", DEFAULT_BITRATE, 10_000, 1_000_000)
    return CanLink.shared(context, interface, channel, bitrate)


def track_task(task: asyncio.Task[None], what: str) -> None:
    """Log the failure of `task` (what it was doing named) when it ends with an exception."""

    def done(finished: asyncio.Task[None]) -> None:
        if not finished.cancelled() and finished.exception() is not None:
            _log.error("%s failed", what, exc_info=finished.exception())

    task.add_done_callback(done)


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has ended."""
    if task is not None and not task.done():
        task.cancel()
        # wait(), not await: our own cancellation must still propagate.
        await asyncio.wait([task])


def diff_faults(before: set[FaultCode], causes: Mapping[FaultCode, list[str]]) -> list[FaultEvent]:
    """The events that take the active set from `before` to the keys of `causes`."""
    order = list(FaultCode)
    raised = sorted(set(causes) - before, key=order.index)
    cleared = sorted(before - set(causes), key=order.index)
    return [FaultEvent(code, True, "; ".join(causes[code])) for code in raised] + [
        FaultEvent(code, False) for code in cleared
    ]
