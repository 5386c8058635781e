"""The driver's boost and the energy state through the local API and `cpagent sim`, on the
real agent (wall clock) with the test CSMS: what the CSMS sees when the boost lifts an
off-peak pause. Helpers and fixtures come from test_api.py and test_sim_cli.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simulator.csms import Csms
from tests.integration.test_api import (
    StationFactory,
    api_station_fixture,
    operations_claimed_are_exercised_fixture,
)
from tests.integration.test_sim_cli import sim

# The fixtures of test_api.py, registered here too (pytest finds them by their names).
FIXTURES = (api_station_fixture, operations_claimed_are_exercised_fixture)


def closed_window_now() -> dict[str, Any]:
    """An off-peak section for EVSE 1 whose only window is hours away (UTC)."""
    hour = datetime.now(UTC).hour
    start, end = (hour + 6) % 24, (hour + 7) % 24
    return {
        "off_peak": {
            "timezone": "UTC",
            "evses": [1],
            "windows": [{"days": "daily", "start": f"{start:02}:00", "end": f"{end:02}:00"}],
        }
    }


async def test_boost_lifts_the_off_peak_pause_for_the_session_only(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station(evses=2, energy=closed_window_now())
    api = station.api
    energy = await api.get("/api/v1/energy")
    assert energy["enabled"] and energy["off_peak"]["inside"] is False
    assert energy["limits"]["1"] == {"current_a": 0.0, "phases": None, "reason": "off_peak"}
    assert energy["limits"]["2"]["reason"] != "off_peak"  # EVSE 2 is not off-peak only

    refused = await api.post("/api/v1/evses/1/boost", expect=409)
    assert "no session" in refused["error"]
    refused = await api.post("/api/v1/evses/2/boost", expect=409)
    assert "neither" in refused["error"]

    await api.post("/api/v1/evses/1/plug", body={})
    await api.post("/api/v1/evses/1/tap", body={"id_token": "CARD-BOOST"})
    await csms.wait_for("StartTransaction")
    await csms.wait_for(
        "StatusNotification",
        where=lambda p: p["status"] == "SuspendedEVSE" and p["connectorId"] == 1,
    )
    assert station.agent.hardware[1].plant.current_a == (0.0, 0.0, 0.0)

    run = await sim(["--api", station.server.url, "boost", "1"])
    assert run.code == 0, run.err
    assert run.out.startswith("EVSE 1:")
    await csms.wait_for(
        "StatusNotification", where=lambda p: p["status"] == "Charging" and p["connectorId"] == 1
    )
    assert station.agent.hardware[1].plant.current_a[0] > 6.0
    shown = await sim(["--api", station.server.url, "energy"])
    assert shown.code == 0 and "EVSE 1: 32 A (hardware), boosted" in shown.out
    assert (await api.get("/api/v1/energy"))["boosted"] == [1]

    await api.post("/api/v1/evses/1/unplug")
    await csms.wait_for("StopTransaction")
    after = await api.get("/api/v1/energy")
    assert after["boosted"] == []  # the next session waits for the window again
    assert after["limits"]["1"]["reason"] == "off_peak"


async def test_a_station_without_energy_management_says_so(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    assert await station.api.get("/api/v1/energy") == {"enabled": False}
    refused = await station.api.post("/api/v1/evses/1/boost", expect=409)
    assert "no energy management" in refused["error"]
