"""OCPP 1.6 authorization end to end: local list, cache, offline rules and reservations
(sections 3.5, 5.10, 5.13, 5.15), against the CSMS over real websockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation, until


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


LIST = [
    {"idTag": "LISTED", "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}},
    {"idTag": "BANNED", "idTagInfo": {"status": "Blocked"}},
]


# -- Local Auth List Management (sections 5.10, 5.15) ---------------------------------------


async def test_local_list_versions_full_and_differential_updates(
    csms: Csms, station: RunningStation
) -> None:
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 0}
    full = {"listVersion": 3, "updateType": "Full", "localAuthorizationList": LIST}
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "Accepted"}
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 3}

    stale = {"listVersion": 2, "updateType": "Differential", "localAuthorizationList": []}
    assert await csms.call(CP_ID, "SendLocalList", stale) == {"status": "VersionMismatch"}
    diff = {
        "listVersion": 4,
        "updateType": "Differential",
        "localAuthorizationList": [
            {"idTag": "BANNED"},
            {"idTag": "NEW", "idTagInfo": {"status": "Accepted"}},
        ],
    }
    assert await csms.call(CP_ID, "SendLocalList", diff) == {"status": "Accepted"}
    local_list = station.agent.local_list
    assert local_list.version() == 4
    assert local_list.get("BANNED") is None and local_list.get("NEW") is not None


async def test_local_list_disabled_answers_not_supported(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "false"})
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": -1}
    full = {"listVersion": 1, "updateType": "Full", "localAuthorizationList": LIST}
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "NotSupported"}


async def test_a_list_longer_than_send_local_list_max_length_fails(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(CP_ID, "GetConfiguration", {"key": ["SendLocalListMaxLength"]})
    limit = int(answer["configurationKey"][0]["value"])
    entries = [{"idTag": f"T{i}", "idTagInfo": {"status": "Accepted"}} for i in range(limit + 1)]
    full = {"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries}
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "Failed"}
    assert station.agent.local_list.version() == 0


async def test_pre_authorized_listed_card_starts_without_authorize(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(
        CP_ID,
        "SendLocalList",
        {"listVersion": 1, "updateType": "Full", "localAuthorizationList": LIST},
    )
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "true"})
    station.plug()
    station.tap("LISTED")
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "LISTED"
    assert csms.calls("Authorize") == []


async def test_offline_listed_card_charges_and_banned_card_does_not(
    csms: Csms, station_factory: Any
) -> None:
    running: RunningStation = await station_factory(csms)
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    await csms.call(
        CP_ID,
        "SendLocalList",
        {"listVersion": 1, "updateType": "Full", "localAuthorizationList": LIST},
    )
    port = csms.port
    await csms.stop()
    agent = running.agent
    await until(agent, lambda: not agent.adapter.online)
    running.plug()
    running.tap("BANNED")
    await until(agent, lambda: not agent.station.evses[1].authorizing)
    assert agent.station.evses[1].tx is None
    running.tap("LISTED")
    await until(agent, lambda: agent.station.evses[1].tx is not None)
    async with Csms(port=port) as back:
        start = await back.wait_for("StartTransaction", timeout_s=15)
    assert start["idTag"] == "LISTED"


async def test_a_card_of_the_same_parent_stops_the_transaction(
    csms: Csms, station: RunningStation
) -> None:
    csms.behaviour.parent_id_tag = "FLEET"
    station.plug()
    station.tap("DRIVER-1")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    station.tap("DRIVER-2")
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "Local" and stop["idTag"] == "DRIVER-2"


# -- Reservations (section 5.13) --------------------------------------------------------------


async def test_reserved_connector_is_reserved_and_only_its_card_starts(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(
        CP_ID,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": _in(600), "idTag": "RESERVER", "reservationId": 7},
    )
    assert answer == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Reserved")
    station.plug()
    station.tap("SOMEONE-ELSE")
    await until(station.agent, lambda: not station.agent.station.evses[1].authorizing)
    assert station.agent.station.evses[1].tx is None
    station.tap("RESERVER")
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "RESERVER" and start["reservationId"] == 7


async def test_a_parent_id_tag_may_use_the_reservation(csms: Csms, station: RunningStation) -> None:
    await csms.call(
        CP_ID,
        "ReserveNow",
        {
            "connectorId": 1,
            "expiryDate": _in(600),
            "idTag": "BOSS",
            "parentIdTag": "FLEET",
            "reservationId": 8,
        },
    )
    csms.behaviour.parent_id_tag = "FLEET"
    station.plug()
    station.tap("FLEET-DRIVER")
    start = await csms.wait_for("StartTransaction")
    assert start["reservationId"] == 8


async def test_reservation_expires(csms: Csms, station: RunningStation) -> None:
    await csms.call(
        CP_ID,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": _in(1), "idTag": "LATE", "reservationId": 9},
    )
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Reserved")
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["connectorId"] == 1 and p["status"] == "Available",
    )


async def test_cancel_reservation(csms: Csms, station: RunningStation) -> None:
    await csms.call(
        CP_ID,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": _in(600), "idTag": "X", "reservationId": 10},
    )
    assert await csms.call(CP_ID, "CancelReservation", {"reservationId": 10}) == {
        "status": "Accepted"
    }
    assert await csms.call(CP_ID, "CancelReservation", {"reservationId": 10}) == {
        "status": "Rejected"
    }
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["connectorId"] == 1 and p["status"] == "Available",
    )


async def test_reserve_now_answers_occupied_faulted_unavailable_rejected(
    csms: Csms, station: RunningStation
) -> None:
    from drivers.types import FaultCode

    def reserve(connector: int, reservation_id: int) -> dict[str, Any]:
        return {
            "connectorId": connector,
            "expiryDate": _in(600),
            "idTag": "T",
            "reservationId": reservation_id,
        }

    assert await csms.call(CP_ID, "ReserveNow", reserve(5, 1)) == {"status": "Rejected"}
    station.plug()
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    assert await csms.call(CP_ID, "ReserveNow", reserve(1, 2)) == {"status": "Occupied"}
    station.unplug()
    plant = station.agent.hardware[1].plant
    plant.raise_fault(FaultCode.OVER_TEMPERATURE)
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert await csms.call(CP_ID, "ReserveNow", reserve(1, 3)) == {"status": "Faulted"}
    plant.clear_fault(FaultCode.OVER_TEMPERATURE)
    await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert await csms.call(CP_ID, "ReserveNow", reserve(1, 4)) == {"status": "Unavailable"}


async def test_station_wide_reservation_keeps_one_connector_free(
    csms: Csms, station_factory: Any
) -> None:
    running: RunningStation = await station_factory(csms, evses=2)
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 2)
    answer = await csms.call(
        CP_ID,
        "ReserveNow",
        {"connectorId": 0, "expiryDate": _in(600), "idTag": "VIP", "reservationId": 11},
    )
    assert answer == {"status": "Accepted"}
    running.plug(1)
    running.tap("FIRST", evse_id=1)
    await csms.wait_for("StartTransaction")
    running.plug(2)
    running.tap("SECOND", evse_id=2)  # would take the last free connector
    agent = running.agent
    await until(agent, lambda: not agent.station.evses[2].authorizing)
    assert agent.station.evses[2].tx is None
    running.tap("VIP", evse_id=2)
    start = await csms.wait_for("StartTransaction", count=2)
    assert start["idTag"] == "VIP" and start["reservationId"] == 11


async def test_reservation_ends_when_the_connector_becomes_unavailable(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(
        CP_ID,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": _in(600), "idTag": "X", "reservationId": 12},
    )
    await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["connectorId"] == 1 and p["status"] == "Available",
    )
    assert station.agent.station.reservations.get(12) is None
