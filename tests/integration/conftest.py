"""Fixtures that run the real agent (simulated drivers) against the test CSMS.

`station` starts an agent in-process with `run_agent`, the same loop `cpagent run`
uses, so a Reset restarts it exactly as in production; `station.agent` is always the
agent currently running. Everything is awaited by events, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.app import Agent, run_agent
from agent.config import Config, parse_config
from simulator.csms import Csms, CsmsBehaviour
from simulator.ev import EvParameters, SimEv

CP_ID = "CP-TEST-1"

#: Settings that keep tests quick: retries and samples every second.
FAST_SETTINGS = {
    "MeterValueSampleInterval": 1,
    "TransactionMessageRetryInterval": 1,
    "HeartbeatInterval": 300,
}


def make_config(
    csms_url: str,
    store_dir: Path,
    *,
    evses: int = 1,
    settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Config:
    """A config for `evses` simulated EVSEs talking to `csms_url`."""
    document: dict[str, Any] = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {
            "url": csms_url,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        },
        "evses": [
            {
                "connectors": [{"type": "cType2"}],
                "reader": {"driver": "sim"},
                "lock": {"driver": "sim"},
            }
            for _ in range(evses)
        ],
        "store": {"path": str(store_dir / "agent.db")},
        "simulator": {"time_scale": 60},
        "settings": {**FAST_SETTINGS, **(settings or {})},
    }
    for key, value in (extra or {}).items():
        document[key] = {**document.get(key, {}), **value}
    return parse_config(yaml.safe_dump(document), base_dir=store_dir)


class RunningStation:
    """An agent running under run_agent(), restartable, with the EV and card at hand."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.agents: list[Agent] = []
        self._new_agent = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def agent(self) -> Agent:
        """The agent running now (a new one after each Reset)."""
        return self.agents[-1]

    def _on_agent(self, agent: Agent) -> None:
        self.agents.append(agent)
        self._new_agent.set()

    async def start(self) -> None:
        """Start and return once the first agent exists."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            run_agent(self.config, stop=self._stop, on_agent=self._on_agent)
        )
        await self.wait_agent(1)

    async def wait_agent(self, count: int, timeout_s: float = 10.0) -> Agent:
        """Wait until `count` agents have been started (count-1 restarts)."""
        async with asyncio.timeout(timeout_s):
            while len(self.agents) < count:
                self._new_agent.clear()
                if self._task is not None and self._task.done():
                    self._task.result()
                    raise AssertionError("the agent stopped")
                await self._new_agent.wait()
        return self.agents[count - 1]

    async def stop(self) -> None:
        """Stop as on SIGTERM and wait for the agent to close its store."""
        if self._task is None:
            return
        self._stop.set()
        await self._task
        self._task = None

    async def restart(self) -> None:
        """Stop, then start a new agent over the same store (a reboot)."""
        await self.stop()
        await self.start()

    def plug(self, evse_id: int = 1, **ev: Any) -> SimEv:
        """Plug a simulated EV into an EVSE."""
        car = SimEv(EvParameters(**ev))
        self.agent.hardware[evse_id].plant.plug_in(car)
        return car

    def unplug(self, evse_id: int = 1) -> None:
        """Pull the cable."""
        self.agent.hardware[evse_id].plant.unplug()

    def tap(self, id_token: str, evse_id: int = 1) -> None:
        """Tap a card at the EVSE's reader."""
        self.agent.tap(evse_id, id_token)


@pytest.fixture
async def station_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Build and start RunningStations; all are stopped after the test."""
    started: list[RunningStation] = []

    async def factory(csms: Csms, **kwargs: Any) -> RunningStation:
        running = RunningStation(make_config(csms.url, tmp_path, **kwargs))
        await running.start()
        started.append(running)
        return running

    yield factory
    for running in started:
        await running.stop()


@pytest.fixture
async def station(csms: Csms, station_factory: Callable[..., Any]) -> AsyncIterator[RunningStation]:
    """One agent with one simulated EVSE, booted and reporting to `csms`."""
    running: RunningStation = await station_factory(csms)
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    yield running
    await running.stop()


async def until(agent: Agent, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Await a condition on the agent's state (re-checked whenever the agent changes)."""
    await agent.wait_until(predicate, timeout_s)


# -- OCPP 2.0.1 (shared by the test_v201_* files; a file may define its own) ----------------


@pytest.fixture
async def csms201() -> AsyncIterator[Csms]:
    """The test CSMS offering only OCPP 2.0.1."""
    async with Csms(CsmsBehaviour(), subprotocols=("ocpp2.0.1",)) as server:
        yield server


@pytest.fixture
async def start(csms201: Csms, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start 2.0.1 stations (kwargs as v201_station.start_station's), each waited for
    until Available and stopped after the test."""
    from tests.integration.v201_station import RunningStation201, is_status, start_station

    started: list[RunningStation201] = []

    async def factory(**kwargs: Any) -> RunningStation201:
        running = await start_station(csms201, tmp_path, **kwargs)
        started.append(running)
        await csms201.wait_for("StatusNotification", where=is_status("Available"))
        return running

    yield factory
    for running in started:
        await running.stop()
