"""Driver feedback wiring: station events in, indicator states out, per EVSE.

The decision of what to show is the core's pure `IndicatorLogic`; this module feeds it
the station's events, and runs one
task per EVSE that shows the logic's display on the EVSE's indicator whenever it changes
or a transient state (accepted, rejected) runs out.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from agent.core.events import StationEvent
from agent.core.feedback import Display, IndicatorLogic
from agent.core.ports import Clock
from agent.core.tasks import TaskSet
from drivers.indicator import Indicator
from drivers.interfaces import DriverError

log = logging.getLogger(__name__)


class Feedback:
    """Every EVSE's indicator, driven from the station's events."""

    def __init__(self, indicators: dict[int, Indicator], clock: Clock) -> None:
        self._indicators = indicators
        self._clock = clock
        self._logic = {evse_id: IndicatorLogic(evse_id) for evse_id in indicators}
        self._wake = {evse_id: asyncio.Event() for evse_id in indicators}
        self._tasks = TaskSet("indicators")

    def on_event(self, event: StationEvent) -> None:
        """Station listener: feed the EVSE's logic and wake its driver."""
        evse_id = event.evse_id
        logic = self._logic.get(evse_id) if evse_id is not None else None
        if evse_id is not None and logic is not None:
            logic.feed(event, self._clock.now())
            self._wake[evse_id].set()

    async def start(self) -> None:
        """Take each indicator and start showing."""
        for evse_id, indicator in self._indicators.items():
            await indicator.start()
            self._tasks.spawn(
                drive_indicator(self._logic[evse_id], indicator, self._wake[evse_id], self._clock),
                name=f"indicator-{evse_id}",
            )

    async def stop(self) -> None:
        """Stop showing and release every indicator."""
        await self._tasks.cancel_all()
        for indicator in self._indicators.values():
            try:
                await indicator.stop()
            except DriverError:
                log.exception("an indicator did not stop cleanly")


async def drive_indicator(
    logic: IndicatorLogic, indicator: Indicator, wake: asyncio.Event, clock: Clock
) -> None:
    """Show the logic's display whenever it changes or its transient state ends."""
    shown: Display | None = None
    while True:
        wake.clear()
        now = clock.now()
        display = logic.expire(now)
        if display != shown:
            try:
                await indicator.show(display.state, hold_s=display.hold_s(now))
            except DriverError:
                log.exception("EVSE %s: the indicator cannot show %s", logic.evse_id, display.state)
            shown = display
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait())]
        deadline = logic.deadline
        if deadline is not None:
            waits.append(asyncio.ensure_future(_sleep_until(clock, deadline)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


async def _sleep_until(clock: Clock, deadline: datetime) -> None:
    """Return once `clock` reaches `deadline`."""
    await clock.sleep((deadline - clock.now()).total_seconds())
