"""Every tap gets a visible answer: the real agent drives a simulated indicator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent.config import DriverConfig
from drivers.indicator import IndicatorState as Shown
from simulator.csms import Csms
from simulator.indicator import SimIndicator
from tests.integration.conftest import RunningStation, make_config


async def shown(indicator: SimIndicator, predicate: Callable[[], bool]) -> None:
    """Await what the indicator shows (re-checked at each change it makes)."""
    changed = asyncio.Event()
    indicator.listeners.append(lambda _change: changed.set())
    async with asyncio.timeout(10):
        while not predicate():
            changed.clear()
            await changed.wait()


async def test_taps_are_answered_on_the_indicator(csms: Csms, tmp_path: Path) -> None:
    config = make_config(csms.url, tmp_path)
    config = replace(config, evses=(replace(config.evses[0], indicator=DriverConfig("sim")),))
    running = RunningStation(config)
    await running.start()
    try:
        indicator = running.agent.hardware[1].indicator
        assert isinstance(indicator, SimIndicator)
        await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
        await shown(indicator, lambda: indicator.state == Shown.IDLE)

        csms.behaviour.accepted_tags = {"GOOD"}
        running.tap("STRANGER")
        await shown(indicator, lambda: Shown.REJECTED in indicator.states)

        running.plug()
        running.tap("GOOD")
        await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
        await shown(indicator, lambda: Shown.ACCEPTED in indicator.states)
        states = indicator.states
        assert states.index(Shown.REJECTED) < states.index(Shown.ACCEPTED)
        assert Shown.AUTHORIZING in states
    finally:
        await running.stop()
