"""Fakes shared by tests: a clock the test drives, an authorizer with a set answer,
a meter that can be made to fail, and a bounded wait for a condition.

Every fake implements the same Protocol as the real thing (DESIGN idea 8). None of them
sleeps on wall time: time moves only when a test calls `FakeClock.advance()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agent.core.events import AuthResult, AuthStatus, IdToken
from drivers.interfaces import DriverError, PowerMeter
from drivers.types import MeterSample

#: How many turns of the event loop `wait_until` gives the world before giving up.
MAX_YIELDS = 200


class FakeClock:
    """A Clock whose time moves only when the test says so.

    `now()` is a timezone-aware UTC datetime; `sleep(s)` suspends until `advance()` (or
    `set()`) brings the time to or past its deadline. `monotonic()` gives the same time
    as seconds, so a simulator plant can share it.
    """

    def __init__(self, start: datetime = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._start = start.astimezone(UTC)
        self._now = self._start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        """The fake current time (aware, UTC)."""
        return self._now

    def monotonic(self) -> float:
        """Seconds since the clock was created (for Plant(monotonic=...))."""
        return (self._now - self._start).total_seconds()

    def set(self, at: datetime) -> None:
        """Jump to `at` (aware); wakes every sleeper whose deadline is reached."""
        if at.tzinfo is None:
            raise ValueError("FakeClock.set needs a timezone-aware datetime")
        self._now = at.astimezone(UTC)
        self._wake()

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`; wakes every sleeper whose deadline is reached."""
        if seconds < 0:
            raise ValueError("time does not go backwards; use set()")
        self.set(self._now + timedelta(seconds=seconds))

    def deadlines(self) -> list[datetime]:
        """The deadlines of the sleeps pending now, earliest first."""
        return sorted(deadline for deadline, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been moved `seconds` past the moment of the call."""
        deadline = self._now + timedelta(seconds=max(0.0, seconds))
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (deadline, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    def _wake(self) -> None:
        for deadline, future in self._sleepers:
            if deadline <= self._now and not future.done():
                future.set_result(None)


class FakeAuthorizer:
    """An Authorizer that answers `result` to every token and remembers what it was asked."""

    def __init__(self, result: AuthResult | None = None) -> None:
        self.result = result if result is not None else AuthResult(AuthStatus.ACCEPTED)
        self.asked: list[IdToken] = []

    async def authorize(self, token: IdToken) -> AuthResult:
        """Record the token and return the configured result."""
        self.asked.append(token)
        return self.result


class SwitchableMeter:
    """A PowerMeter in front of another: fails while `failing`, stalls while `answer` is unset."""

    def __init__(self, inner: PowerMeter) -> None:
        self.inner = inner
        self.failing = False
        self.reads = 0
        #: When set to an Event, every read waits for it (a meter that answers slowly).
        self.answer: asyncio.Event | None = None

    async def read(self) -> MeterSample:
        """The inner meter's reading; raises DriverError while failing."""
        self.reads += 1
        if self.answer is not None:
            await self.answer.wait()
        if self.failing:
            raise DriverError("meter does not answer (fake)")
        return await self.inner.read()


async def wait_until(
    predicate: Callable[[], bool], what: str = "condition", *, max_yields: int = MAX_YIELDS
) -> None:
    """Yield to the event loop until `predicate()` holds; AssertionError after `max_yields`.

    This awaits the world reacting (tasks running their next step), it never sleeps on
    wall time.
    """
    for _ in range(max_yields):
        if predicate():
            return
        await asyncio.sleep(0)
    if not predicate():
        raise AssertionError(f"{what} did not happen within {max_yields} loop turns")


async def settle(turns: int = 50) -> None:
    """Let every runnable task take `turns` steps (to check that something did NOT happen)."""
    for _ in range(turns):
        await asyncio.sleep(0)
