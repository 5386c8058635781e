"""The OCPP message feed of the local API: a log that outlives agent restarts, and SSE.

Responsible for: following whichever agent the runner runs now (a new one after each
Reset or simulated power restore) with one listener on its MessageLog, keeping the last
frames across those restarts, fanning new frames out to each server-sent-events client
through a bounded queue (a client that lags loses the oldest frames and is told how
many), and writing the event stream itself (`event: message`, `event: dropped`, a
keepalive comment).

Must not: block or raise inside a MessageLog listener (it runs on the agent's frame
path), or keep a listener on an agent that is no longer the current one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from agent.app import Agent
    from agent.ocpp.rpc import Frame

log = logging.getLogger(__name__)

#: How many frames the feed remembers (as many as an agent's own MessageLog).
HISTORY_SIZE = 1000
#: How often a quiet stream checks that its client is still there.
LIVENESS_S = 1.0


class Subscriber:
    """One stream client's bounded queue: when it lags, the oldest frames are dropped."""

    def __init__(self, size: int) -> None:
        """An empty queue holding at most `size` frames; raises ValueError if size < 1."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._frames: deque[Frame] = deque()
        self._size = size
        self._dropped = 0
        self._ready = asyncio.Event()
        self.closed = False

    def push(self, frame: Frame) -> None:
        """Queue a frame, dropping the oldest one when full (never blocks)."""
        if len(self._frames) >= self._size:
            self._frames.popleft()
            self._dropped += 1
        self._frames.append(frame)
        self._ready.set()

    def close(self) -> None:
        """Tell the client's writer to end the stream."""
        self.closed = True
        self._ready.set()

    async def wait(self) -> None:
        """Return once there is something to take (frames, a drop count) or it is closed."""
        await self._ready.wait()

    def take(self) -> tuple[int, list[Frame]]:
        """How many frames were dropped since the last take, and the frames queued since."""
        frames, dropped = list(self._frames), self._dropped
        self._frames.clear()
        self._dropped = 0
        if not self.closed:
            self._ready.clear()
        return dropped, frames


class MessageFeed:
    """The OCPP frames of the runner's current agent, and of the agents before it."""

    def __init__(self, current: Callable[[], Agent | None]) -> None:
        """Follow the agent `current()` returns (call sync() when it may have changed)."""
        self._current = current
        self._agent: Agent | None = None
        self.history: deque[Frame] = deque(maxlen=HISTORY_SIZE)
        self._subscribers: set[Subscriber] = set()
        self._subscribers_changed = asyncio.Event()
        self._closed = False

    def sync(self) -> None:
        """Move the listener to the current agent if it changed, taking in what it logged."""
        agent = self._current()
        if agent is self._agent or self._closed:
            return
        self._detach()
        self._agent = agent
        if agent is None:
            return
        # The frames it logged before we looked, then the listener: both in this one step,
        # so a frame is neither missed nor taken twice.
        for frame in list(agent.messages.frames):
            self._on_frame(frame)
        agent.messages.listeners.append(self._on_frame)

    async def follow(self, interval_s: float = 0.1) -> None:
        """sync() every `interval_s` until cancelled (the runner has no agent-changed hook)."""
        while True:
            self.sync()
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        """Remove the listener and end every subscriber's stream, for good."""
        self._closed = True
        self._detach()
        self._agent = None
        for subscriber in list(self._subscribers):
            subscriber.close()
        self._subscribers.clear()

    def subscribe(self, size: int) -> Subscriber:
        """A new subscriber that receives every frame from now on (closed at once after
        close())."""
        subscriber = Subscriber(size)
        if self._closed:
            subscriber.close()
            return subscriber
        self._subscribers.add(subscriber)
        self._subscribers_changed.set()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding `subscriber` (no effect if it is not subscribed)."""
        self._subscribers.discard(subscriber)
        self._subscribers_changed.set()

    @property
    def subscriber_count(self) -> int:
        """How many stream clients are listening."""
        return len(self._subscribers)

    async def wait_subscribers(self, count: int, timeout_s: float = 10.0) -> None:
        """Return once exactly `count` clients listen; raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while len(self._subscribers) != count:
                self._subscribers_changed.clear()
                await self._subscribers_changed.wait()

    def _detach(self) -> None:
        agent = self._agent
        if agent is not None and self._on_frame in agent.messages.listeners:
            agent.messages.listeners.remove(self._on_frame)

    def _on_frame(self, frame: Frame) -> None:
        self.history.append(frame)
        for subscriber in self._subscribers:
            subscriber.push(frame)


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def sse_event(event: str, data: Any) -> bytes:
    """One server-sent event: `event: <event>`, `data: <json>`, a blank line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def serve_stream(
    request: web.Request,
    feed: MessageFeed,
    view: Callable[[Frame], dict[str, Any]],
    *,
    keepalive_s: float,
    queue_size: int,
) -> web.StreamResponse:
    """Stream new frames to one client until it goes away or the feed closes."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    feed.sync()
    subscriber = feed.subscribe(queue_size)
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        # A first comment tells the client the subscription is in place.
        await response.write(b": subscribed\n\n")
        keepalive_at = loop.time() + keepalive_s
        while not subscriber.closed and _connected(request):
            now = loop.time()
            if now >= keepalive_at:
                await response.write(b": keepalive\n\n")
                keepalive_at = now + keepalive_s
                continue
            try:
                # Woken at least every LIVENESS_S: aiohttp tells a handler nothing when
                # its client goes away, so the transport is looked at instead.
                async with asyncio.timeout(min(keepalive_at - now, LIVENESS_S)):
                    await subscriber.wait()
            except TimeoutError:
                continue
            dropped, frames = subscriber.take()
            if dropped:
                await response.write(sse_event("dropped", {"dropped": dropped}))
            for frame in frames:
                await response.write(sse_event("message", view(frame)))
    except ConnectionError:  # aiohttp's ClientConnectionResetError is one
        log.debug("message stream client went away")
    finally:
        feed.unsubscribe(subscriber)
    return response
