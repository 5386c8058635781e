"""The simulated indicator: an `Indicator` that records what a real one would show.

Responsible for keeping the history of `show()` calls with their timestamps and for
answering "what is shown now?", hold times and fallbacks included, so the local API and
the demo view can show the EVSE's light and tests can assert the feedback a driver saw.
It needs no task: a hold that has run out is resolved when the state is asked for.

Like every simulated driver it is dumb and truthful (drivers/indicator.py has the
contract). It must not import the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from drivers.indicator import IndicatorState
from drivers.interfaces import DriverError


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IndicatorChange:
    """One `show()` as the indicator received it."""

    at: datetime
    state: IndicatorState
    hold_s: float | None = None


class SimIndicator:
    """An Indicator that records its history and exposes the state it shows."""

    def __init__(self, *, now: Callable[[], datetime] = _utc_now) -> None:
        """A stopped, dark indicator; `now` gives aware UTC time (a test's fake clock)."""
        self._now = now
        self._started = False
        self._history: list[IndicatorChange] = []
        self._steady: IndicatorState | None = None
        self._held: IndicatorChange | None = None
        #: Called with every change recorded (for views that push updates).
        self.listeners: list[Callable[[IndicatorChange], None]] = []

    @property
    def started(self) -> bool:
        """Whether the indicator has been started (and not stopped)."""
        return self._started

    @property
    def history(self) -> list[IndicatorChange]:
        """Every `show()` received since construction, oldest first."""
        return list(self._history)

    @property
    def states(self) -> list[IndicatorState]:
        """The states of `history`, in order."""
        return [change.state for change in self._history]

    @property
    def state(self) -> IndicatorState | None:
        """What is shown now (a hold that has run out has fallen back); None when dark."""
        return self.state_at(self._now())

    def state_at(self, at: datetime) -> IndicatorState | None:
        """What is (or was) shown at `at`, given the last `show()`; None when dark."""
        if not self._started:
            return None
        held = self._held
        if (
            held is not None
            and held.hold_s is not None
            and at < held.at + timedelta(seconds=held.hold_s)
        ):
            return held.state
        return self._steady

    async def start(self) -> None:
        """Switch on, dark (idempotent)."""
        self._started = True

    async def stop(self) -> None:
        """Go dark and forget the states shown; the history stays (idempotent)."""
        self._started = False
        self._steady = None
        self._held = None

    async def show(self, state: IndicatorState, *, hold_s: float | None = None) -> None:
        """Record `state` (held for at most `hold_s`); raises DriverError when stopped."""
        if not self._started:
            raise DriverError("indicator not started")
        if hold_s is not None and hold_s < 0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s}")
        now = self._now()
        if hold_s is None:
            if self._steady == state and self._held is None:
                return  # idempotent: the same steady state again changes nothing
            self._steady = state
            self._held = None
        change = IndicatorChange(now, state, hold_s)
        if hold_s is not None:
            self._held = change
        self._history.append(change)
        for listener in list(self.listeners):
            listener(change)
