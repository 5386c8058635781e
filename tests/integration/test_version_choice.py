"""Choosing the OCPP version end to end: a station offering a preference list against the
test CSMS offering 1.6, 2.0.1 or both over real websockets on 127.0.0.1.

The station offers every configured version's subprotocol; the CSMS chooses (websockets
picks the first of the SERVER's list the client offers). An agent whose adapter speaks
another version than the one chosen persists the choice and restarts in-process with the
right adapter, so the CSMS only ever sees messages of the version it chose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.app import Outcome
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation
from tests.integration.v201_station import make_config_201

CP = CP_ID


def station_offering(csms: Csms, tmp_path: Path, versions: Sequence[str]) -> RunningStation:
    """A station (not started) offering `versions` to `csms`, in that order."""
    return RunningStation(make_config_201(csms.url, tmp_path, ocpp_version=list(versions)))


@pytest.fixture
async def stations() -> AsyncIterator[list[RunningStation]]:
    """Stations a test started; all are stopped after it."""
    started: list[RunningStation] = []
    yield started
    for running in started:
        await running.stop()


async def start(started: list[RunningStation], running: RunningStation) -> RunningStation:
    """Start a station, to be stopped after the test."""
    started.append(running)
    await running.start()
    return running


def boot_version(payload: dict[str, Any]) -> str:
    """Which version a BootNotification payload is (2.0.1 has chargingStation)."""
    return "2.0.1" if "chargingStation" in payload else "1.6"


@pytest.mark.parametrize(
    ("csms_offers", "station_offers", "chosen", "agents"),
    [
        (("ocpp1.6",), ("1.6", "2.0.1"), "1.6", 1),
        (("ocpp1.6",), ("2.0.1", "1.6"), "1.6", 2),
        (("ocpp2.0.1",), ("1.6", "2.0.1"), "2.0.1", 2),
        (("ocpp2.0.1",), ("2.0.1", "1.6"), "2.0.1", 1),
        (("ocpp2.0.1", "ocpp1.6"), ("1.6", "2.0.1"), "2.0.1", 2),
        (("ocpp1.6", "ocpp2.0.1"), ("2.0.1", "1.6"), "1.6", 2),
    ],
)
async def test_the_station_boots_in_the_version_the_csms_chose(
    tmp_path: Path,
    stations: list[RunningStation],
    csms_offers: tuple[str, ...],
    station_offers: tuple[str, ...],
    chosen: str,
    agents: int,
) -> None:
    """The first preference's adapter starts; a CSMS choosing the other version gets a
    station restarted into it, whose BootNotification (PowerUp) is the first it sees."""
    async with Csms(subprotocols=csms_offers) as csms:
        running = await start(stations, station_offering(csms, tmp_path, station_offers))
        boot = await csms.wait_for("BootNotification")
        await running.wait_agent(agents)
        assert csms.version(CP) == chosen
        assert boot_version(boot) == chosen
        assert [r.action for r in csms.received][:1] == ["BootNotification"]
        assert [a.ending for a in running.agents[:-1]] == [Outcome.VERSION_CHANGED] * (agents - 1)
        assert running.agent.ocpp_version == chosen
        if chosen == "2.0.1":
            assert boot["reason"] == "PowerUp"
        await running.stop()
        assert len(running.agents) == agents  # no restart after the one the choice asked


async def test_the_negotiated_version_is_used_first_after_a_restart(
    tmp_path: Path, stations: list[RunningStation]
) -> None:
    """The version last negotiated is persisted: the next start begins with it, even
    though it is not the first preference, and needs no version restart."""
    async with Csms(subprotocols=("ocpp1.6",)) as csms:
        running = await start(stations, station_offering(csms, tmp_path, ("2.0.1", "1.6")))
        await csms.wait_for("BootNotification")
        await running.wait_agent(2)
        await running.restart()
        await csms.wait_for("BootNotification", count=2)
        assert len(running.agents) == 3  # two before the restart, one after it
        assert running.agent.ocpp_version == "1.6" and running.agent.previous is None


async def test_a_persisted_version_the_csms_no_longer_chooses_is_left_by_a_restart(
    tmp_path: Path, stations: list[RunningStation]
) -> None:
    """A station that last spoke 1.6 meets a CSMS that now speaks only 2.0.1: its 1.6
    agent sends nothing, and the 2.0.1 agent after the restart boots (PowerUp)."""
    async with Csms(subprotocols=("ocpp1.6",)) as old:
        running = await start(stations, station_offering(old, tmp_path, ("2.0.1", "1.6")))
        await old.wait_for("BootNotification")
        await running.stop()
    async with Csms(subprotocols=("ocpp2.0.1",)) as new:
        running = await start(stations, station_offering(new, tmp_path, ("2.0.1", "1.6")))
        boot = await new.wait_for("BootNotification")
        await running.wait_agent(2)
        first, second = running.agents
        assert (first.ocpp_version, first.ending) == ("1.6", Outcome.VERSION_CHANGED)
        assert second.ocpp_version == "2.0.1"
        assert boot["reason"] == "PowerUp" and new.version(CP) == "2.0.1"
        assert len(new.calls("BootNotification")) == 1
        assert new.received[0].action == "BootNotification"  # the 1.6 agent sent nothing


async def test_a_csms_choosing_none_of_the_offered_versions_fails_the_handshake(
    tmp_path: Path, stations: list[RunningStation]
) -> None:
    """A 1.6-only station and a 2.0.1-only CSMS never connect; the station keeps trying
    and never restarts for a version it does not offer."""
    async with Csms(subprotocols=("ocpp2.0.1",)) as csms:
        running = await start(stations, station_offering(csms, tmp_path, ("1.6",)))
        agent = running.agent
        await agent.wait_until(lambda: agent.supervisor.failed_attempts >= 2)
        assert csms.received == [] and not csms.connected(CP)
        assert len(running.agents) == 1 and agent.supervisor.negotiated is None


async def test_a_reset_after_a_version_restart_boots_with_reason_remote_reset(
    tmp_path: Path, stations: list[RunningStation]
) -> None:
    """B11: the agent started after a Reset asked by the CSMS boots with RemoteReset;
    the version restart before it boots with PowerUp."""
    async with Csms(subprotocols=("ocpp2.0.1",)) as csms:
        running = await start(stations, station_offering(csms, tmp_path, ("1.6", "2.0.1")))
        first = await csms.wait_for("BootNotification")
        await csms.wait_for("StatusNotification")
        assert await csms.call(CP, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
        second = await csms.wait_for("BootNotification", count=2)
        assert (first["reason"], second["reason"]) == ("PowerUp", "RemoteReset")
        assert [a.ending for a in running.agents[:-1]] == [
            Outcome.VERSION_CHANGED,
            Outcome.HARD_RESET,
        ]
