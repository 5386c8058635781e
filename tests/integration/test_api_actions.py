"""Actions through the local control API, checked where a real charger's messages arrive:
at the CSMS. EV and token actions, faults, the network, power cut and restore, and the
409s a state conflict gets. Helpers and fixtures come from test_api.py."""

from __future__ import annotations

import asyncio
from typing import Any

from simulator.csms import Csms
from tests.integration.conftest import CP_ID
from tests.integration.test_api import (
    ApiStation,
    StationFactory,
    api_station_fixture,
    operations_claimed_are_exercised_fixture,
)

# The fixtures of test_api.py, registered here too (pytest finds them by their names).
FIXTURES = (api_station_fixture, operations_claimed_are_exercised_fixture)


def count_status(csms: Csms, status: str, connector: int = 1) -> int:
    """How many StatusNotifications with `status` the CSMS has for a connector."""
    return sum(
        1
        for p in csms.calls("StatusNotification", CP_ID)
        if p["status"] == status and p["connectorId"] == connector
    )


async def next_status(csms: Csms, status: str, seen: int, connector: int = 1) -> dict[str, Any]:
    """The first StatusNotification with `status` after the `seen` ones already there."""
    return await csms.wait_for(
        "StatusNotification",
        where=lambda p: p["status"] == status and p["connectorId"] == connector,
        count=seen + 1,
    )


async def test_a_session_driven_through_the_api_reaches_the_csms(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    api = station.api
    plugged = await api.post("/api/v1/evses/1/plug", body={"soc_percent": 30, "phases": 1})
    assert plugged["ev"]["soc_percent"] == 30 and plugged["ev"]["phases"] == 1
    assert plugged["phase"] == "plugged" and plugged["status"] == "Preparing"
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")

    await api.post("/api/v1/evses/1/tap", body={"id_token": "CARD-API-1", "type": "ISO15693"})
    assert await csms.wait_for("Authorize") == {"idTag": "CARD-API-1"}
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "CARD-API-1" and start["connectorId"] == 1
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    await csms.wait_for("MeterValues")  # sent with the CSMS's transaction id
    charging = await api.get("/api/v1/evses/1")
    assert charging["status"] == "Charging" and charging["contactor_closed"] is True
    assert charging["offered_current_a"] > 0 and charging["duty_percent"] > 0
    assert charging["transaction"]["id_token"] == "******PI-1"  # masked as in the logs
    assert charging["transaction"]["csms_id"] == "1"
    assert station.agent.store.get_transaction(1).token_type == "ISO15693"

    suspended = count_status(csms, "SuspendedEV")
    assert (await api.post("/api/v1/evses/1/pilot", body={"state": "B"}))["pilot"] == "B"
    await next_status(csms, "SuspendedEV", suspended)
    await api.post("/api/v1/evses/1/pilot", body={"state": "C"})
    await next_status(csms, "Charging", 1)
    assert (await api.post("/api/v1/evses/1/pilot", body={"state": None}))["pilot"] == "C"

    paused = await api.post("/api/v1/evses/1/ev/pause")
    assert paused["ev"]["paused"] is True
    await next_status(csms, "SuspendedEV", suspended + 1)
    assert not station.agent.hardware[1].plant.contactor_closed
    resumed = await api.post("/api/v1/evses/1/ev/resume")
    assert resumed["ev"]["paused"] is False
    await next_status(csms, "Charging", 2)

    await api.post("/api/v1/evses/1/pilot", body={"state": "B"})  # ended by the unplug
    unplugged = await api.post("/api/v1/evses/1/unplug")
    assert unplugged["ev"] is None and unplugged["pilot"] == "A"
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"
    assert stop["transactionId"] == 1  # the CSMS numbers its transactions from 1
    await next_status(csms, "Available", 1)
    assert (await api.get("/api/v1/status"))["evses"][0]["transaction"] is None


async def test_raising_and_clearing_a_fault_reports_faulted_then_available(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    raised = await station.api.post(
        "/api/v1/evses/1/faults", body={"code": "over_temperature", "detail": "92 C at the relay"}
    )
    assert raised["faults"] == ["over_temperature"] and raised["status"] == "Faulted"
    assert raised["connectors"][0]["fault"] == "over_temperature"
    faulted = await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert faulted["errorCode"] == "HighTemperature"

    cleared = await station.api.delete("/api/v1/evses/1/faults/over_temperature")
    assert cleared["faults"] == [] and cleared["status"] == "Available"
    back = await next_status(csms, "Available", 1)
    assert back["errorCode"] == "NoError"


async def test_network_drop_reconnects_and_boots_again(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    answer = await station.api.post("/api/v1/network/drop")
    assert answer["held_offline"] is False
    assert answer["state"] != "connected" or station.agent.supervisor.connections == 2
    await csms.wait_for("BootNotification", count=2)
    await station.agent.wait_until(lambda: station.agent.adapter.online)
    assert (await station.api.get("/api/v1/status"))["connection"]["online"] is True


async def test_offline_for_a_second_reconnects_after_it(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    loop = asyncio.get_running_loop()
    asked_at = loop.time()
    held = await station.api.post("/api/v1/network/offline", body={"seconds": 1})
    assert held == {**held, "state": "held_offline", "held_offline": True, "online": False}
    await csms.wait_disconnected(CP_ID)
    await csms.wait_for("BootNotification", count=2)
    # The hold ends on the event loop's clock (which may round up to its resolution).
    assert loop.time() - asked_at >= 1.0 - 0.01
    status = await station.api.get("/api/v1/status")
    assert status["connection"]["held_offline"] is False


async def test_offline_until_told_then_online_reconnects(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    held = await station.api.post("/api/v1/network/offline")  # no body: until told
    assert held["held_offline"] is True
    await csms.wait_disconnected(CP_ID)
    status = await station.api.get("/api/v1/status")
    assert status["connection"]["state"] == "held_offline"
    assert len(csms.calls("BootNotification")) == 1

    online = await station.api.post("/api/v1/network/online")
    assert online["held_offline"] is False and online["state"] != "held_offline"
    await csms.wait_for("BootNotification", count=2)
    refused = await station.api.post("/api/v1/network/online", 409)
    assert "not held offline" in refused["error"]


async def test_power_cut_and_restore_close_the_open_transaction_with_power_loss(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    api = station.api
    first_agent = station.agent
    await api.post("/api/v1/evses/1/plug")
    await api.post("/api/v1/evses/1/tap", body={"id_token": "CARD-PWR"})
    assert (await csms.wait_for("StartTransaction"))["idTag"] == "CARD-PWR"

    async with station.stream() as events:
        assert await api.post("/api/v1/power/cut") == {"powered": False}
        status = await api.get("/api/v1/status")
        assert status["powered"] is False and status["evses"] == []
        assert status["outbox_pending"] is None and status["connection"]["state"] == "stopped"
        assert "power" in (await api.get("/api/v1/evses/1", 503))["error"]
        await api.post("/api/v1/evses/1/plug", 503)
        await api.post("/api/v1/network/drop", 503)
        await api.post("/api/v1/power/cut", 409)
        await csms.wait_disconnected(CP_ID)

        assert await api.post("/api/v1/power/restore") == {"powered": True}
        assert station.agent is not first_agent
        stop = await csms.wait_for("StopTransaction")
        assert stop["reason"] == "PowerLoss"
        assert stop["transactionId"] == 1  # the CSMS numbers its transactions from 1
        await csms.wait_for("BootNotification", count=2)
        # The stream follows the new agent: its BootNotification comes through.
        boot = await events.message(lambda m: m["action"] == "BootNotification")
        assert boot["direction"] == "out"

    status = await api.get("/api/v1/status")
    assert status["powered"] is True and status["evses"][0]["transaction"] is None
    await api.post("/api/v1/power/restore", 409)
    messages = await api.get("/api/v1/messages?limit=1000")
    boots = [m for m in messages if m["action"] == "BootNotification" and m["direction"] == "out"]
    assert len(boots) == 2, "the message log keeps what the agent before the cut sent"


async def test_actions_that_do_not_fit_the_state_get_409_with_the_reason(
    api_station: StationFactory,
) -> None:
    station: ApiStation = await api_station()
    api = station.api
    assert "no EV" in (await api.post("/api/v1/evses/1/unplug", 409))["error"]
    assert "no EV" in (await api.post("/api/v1/evses/1/ev/pause", 409))["error"]
    await api.post("/api/v1/evses/1/plug")
    assert "already plugged" in (await api.post("/api/v1/evses/1/plug", 409))["error"]
    refused = await api.delete("/api/v1/evses/1/faults/rcd_trip", 409)
    assert "not raised" in refused["error"]
    assert "power is on" in (await api.post("/api/v1/power/restore", 409))["error"]
    status = await api.get("/api/v1/status")
    assert status["evses"][0]["ev"] is not None and status["evses"][0]["faults"] == []
