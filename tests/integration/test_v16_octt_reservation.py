"""OCTT test cases for the OCPP 1.6 Reservation profile, Charge Point side.

Each test follows one case of the OCPP 1.6 Compliancy Testing Tool test case document
(Trial 2025-06 draft, as published at ocpplab.com): the tool's steps done by the real
CSMS (simulator/csms.py), the driver's manual actions on the simulated hardware, and the
tool's Charge Point side validations asserted on what the CSMS received. The station has
one connector, so "SetConnectorUnavailable for all unused connectors" is empty.

Read and covered from the "_CS" text: TC_046_1, TC_046_2, TC_047, TC_048_2, TC_050_3,
TC_051, TC_052, TC_053. The "_CS" text of TC_048_1, TC_048_3 and TC_049 was not found;
their "_CSMS" counterparts (same scenario, with Charge Point side validations) were, and
the tests named after them follow those. Not found at all (not covered): TC_048_4,
TC_050_1, TC_050_2, TC_050_4. TC_044 and TC_045 are Firmware Management and Diagnostics
cases, not this profile.
"""

# ruff: noqa: N802 - test names carry the OCTT case ids (TC_0xx)

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.core.events import AuthorizationOutcome, StationEvent
from drivers.types import FaultCode
from simulator.csms import Csms, Received
from tests.integration.conftest import CP_ID, RunningStation, until

VALID = "OCTT-VALID-1"
VALID_2 = "OCTT-VALID-2"
PARENT = "OCTT-PARENT"


def expiry(seconds: float) -> str:
    """An expiryDate `seconds` from now, as on the wire."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reserve_now(
    reservation_id: int, *, connector: int = 1, id_tag: str = VALID, seconds: float = 600
) -> dict[str, Any]:
    """A ReserveNow.req for `id_tag`."""
    return {
        "connectorId": connector,
        "expiryDate": expiry(seconds),
        "idTag": id_tag,
        "reservationId": reservation_id,
    }


def connector_flow(calls: list[Received], connector: int = 1) -> list[str]:
    """The actions and statuses ("StatusNotification:<status>") that concern `connector`,
    in order; heartbeats and meter values left out, a SuspendedEV whose next status is
    Charging dropped (the simulated car's reaction time)."""
    seen: list[str] = []
    for call in calls:
        if call.action in ("Heartbeat", "MeterValues"):
            continue
        if call.action == "StatusNotification":
            if call.payload["connectorId"] == connector:
                seen.append(f"StatusNotification:{call.payload['status']}")
        else:
            seen.append(call.action)
    statuses = [(i, step) for i, step in enumerate(seen) if step.startswith("Status")]
    transient = {
        i
        for (i, step), (_, following) in itertools.pairwise(statuses)
        if step == "StatusNotification:SuspendedEV" and following == "StatusNotification:Charging"
    }
    return [step for i, step in enumerate(seen) if i not in transient]


def next_status(csms: Csms, status: str, connector: int = 1) -> Awaitable[dict[str, Any]]:
    """Wait for the next StatusNotification of `status` on `connector` (call it before
    the action that causes it)."""

    def matches(payload: dict[str, Any]) -> bool:
        return bool(payload["connectorId"] == connector and payload["status"] == status)

    seen = len([p for p in csms.calls("StatusNotification") if matches(p)])
    return csms.wait_for("StatusNotification", where=matches, count=seen + 1)


async def reserved(csms: Csms, reservation: dict[str, Any]) -> None:
    """Reusable State Reserved: ReserveNow Accepted, then the connector reports Reserved."""
    status = next_status(csms, "Reserved")
    assert await csms.call(CP_ID, "ReserveNow", reservation) == {"status": "Accepted"}
    await status


async def refused(station: RunningStation, events: list[StationEvent], token: str) -> None:
    """Wait until the EVSE refused `token` (after any Authorize it sent for it)."""

    def verdict() -> bool | None:
        for event in events:
            if isinstance(event, AuthorizationOutcome) and event.token.value == token:
                return event.result.accepted
        return None

    await until(station.agent, lambda: verdict() is not None)
    assert verdict() is False
    assert station.agent.station.evses[1].tx is None


async def start_charging(csms: Csms, station: RunningStation, token: str) -> dict[str, Any]:
    """Reusable State Charging (plug, then the card); the StartTransaction.req sent."""
    charging = next_status(csms, "Charging")
    station.plug()
    station.tap(token)
    start = await csms.wait_for("StartTransaction")
    await charging
    return start


# -- Reservation of a connector ------------------------------------------------------------


async def test_TC_046_1_reserved_connector_local_start(csms: Csms, station: RunningStation) -> None:
    """TC_046_1_CS Reservation of a Connector - Local start transaction.

    The published validations are cut short after step 2; the rest follows the scenario
    and the expected behaviour of TC_046_2 (the StartTransaction carries the reservation).
    Step 5 (no Authorize.req for another card) is the next test.
    """
    events: list[StationEvent] = []
    station.agent.station.subscribe(events.append)
    mark = len(csms.received)
    await reserved(csms, reserve_now(46))  # steps 1-4

    station.tap(VALID_2)  # [a card that is not the idTag from step 1]
    await refused(station, events, VALID_2)
    preparing = next_status(csms, "Preparing")
    station.tap(VALID)  # [the card with the idTag from step 1]
    await preparing  # step 8
    station.plug()  # [EV driver plugs in at the reserved connector]
    start = await csms.wait_for("StartTransaction")  # step 10
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    steps = [s for s in connector_flow(csms.received[mark:]) if s != "Authorize"]
    assert steps[:2] == ["StatusNotification:Reserved", "StatusNotification:Preparing"]
    assert sorted(steps[2:]) == ["StartTransaction", "StatusNotification:Charging"]  # 10, 12
    assert start["idTag"] == VALID and start["reservationId"] == 46


async def test_TC_046_1_step_5_no_authorize_for_a_card_the_reservation_refuses(
    csms: Csms, station: RunningStation
) -> None:
    """TC_046_1_CS step 5: on a connector reserved without parentIdTag, another card is
    refused without an Authorize.req."""
    events: list[StationEvent] = []
    station.agent.station.subscribe(events.append)
    await reserved(csms, reserve_now(46))
    station.tap(VALID_2)
    await refused(station, events, VALID_2)
    assert [p["idTag"] for p in csms.calls("Authorize")] == []


async def test_TC_046_2_reserved_connector_remote_start(
    csms: Csms, station: RunningStation
) -> None:
    """TC_046_2_CS Reservation of a Connector - Remote start transaction."""
    await reserved(csms, reserve_now(47))  # steps 1-4
    answer = await csms.call(
        CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": VALID}
    )  # step 5: Charging, started remotely
    assert answer == {"status": "Accepted"}
    station.plug()
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    assert (start["idTag"], start["reservationId"]) == (VALID, 47)
    assert station.agent.hardware[1].plant.contactor_closed


async def test_TC_047_an_unused_reservation_expires(csms: Csms, station: RunningStation) -> None:
    """TC_047_CS Reservation of a Connector - Expire."""
    mark = len(csms.received)
    reservation = reserve_now(48, seconds=1)
    await reserved(csms, reservation)  # steps 1-4
    available = next_status(csms, "Available")
    await available  # step 5: [the driver does not arrive before the expiry date]
    # [The tool starts a transaction with another valid idTag: the reservation is gone.]
    start = await start_charging(csms, station, VALID_2)

    assert connector_flow(csms.received[mark:])[:2] == [
        "StatusNotification:Reserved",
        "StatusNotification:Available",
    ]
    assert start["idTag"] == VALID_2 and "reservationId" not in start
    assert station.agent.station.reservations.get(48) is None


async def test_TC_048_1_a_faulted_connector_is_not_reserved(
    csms: Csms, station: RunningStation
) -> None:
    """TC_048_1 Reservation of a Connector - Faulted (the _CSMS case's Charge Point side
    validation: ReserveNow.conf status Faulted)."""
    faulted = next_status(csms, "Faulted")
    station.agent.hardware[1].plant.raise_fault(FaultCode.OVER_TEMPERATURE)
    await faulted
    answer = await csms.call(CP_ID, "ReserveNow", reserve_now(481))
    assert answer == {"status": "Faulted"}
    assert station.agent.station.reservations.get(481) is None


async def test_TC_048_2_an_occupied_connector_is_not_reserved(
    csms: Csms, station: RunningStation
) -> None:
    """TC_048_2_CS Reservation of a Connector - Occupied, then normal operation."""
    preparing = next_status(csms, "Preparing")
    station.plug()  # Reusable State SetConnectorOccupied
    await preparing
    answer = await csms.call(CP_ID, "ReserveNow", reserve_now(482))
    assert answer == {"status": "Occupied"}  # step 2
    # Expected behaviour: the Charge Point continues normal operation.
    station.tap(VALID_2)
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == VALID_2 and "reservationId" not in start


async def test_TC_048_3_an_inoperative_connector_is_not_reserved(
    csms: Csms, station: RunningStation
) -> None:
    """TC_048_3 Reservation of a Connector - Unavailable (the _CSMS case's Charge Point
    side validations: StatusNotification Unavailable on the connector of step 1, then
    ReserveNow.conf status Unavailable)."""
    unavailable = next_status(csms, "Unavailable")
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await unavailable  # step 3
    assert await csms.call(CP_ID, "ReserveNow", reserve_now(483)) == {"status": "Unavailable"}


# -- Reservation of the Charge Point (connector 0) ---------------------------------------------


async def test_TC_049_reservation_of_the_charge_point(csms: Csms, station: RunningStation) -> None:
    """TC_049 Reservation of a Charge Point - Transaction (the _CSMS case: ReserveNow with
    connectorId 0, StatusNotification Reserved; expected, only the reserved idTag charges,
    on any available connector)."""
    events: list[StationEvent] = []
    station.agent.station.subscribe(events.append)
    answer = await csms.call(CP_ID, "ReserveNow", reserve_now(49, connector=0))
    assert answer == {"status": "Accepted"}  # step 2
    await csms.wait_for(  # step 3: the one connector that must stay free is Reserved
        "StatusNotification", where=lambda p: p["connectorId"] == 1 and p["status"] == "Reserved"
    )
    station.plug()
    station.tap(VALID_2)
    await refused(station, events, VALID_2)
    station.tap(VALID)
    start = await csms.wait_for("StartTransaction")
    assert (start["idTag"], start["reservationId"]) == (VALID, 49)


async def test_TC_050_3_an_unavailable_charge_point_is_not_reserved(
    csms: Csms, station: RunningStation
) -> None:
    """TC_050_3_CS Reservation of a Charge Point - Unavailable."""
    keys = await csms.call(CP_ID, "GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
    assert keys["configurationKey"][0]["value"] == "true"  # prerequisite
    unavailable = next_status(csms, "Unavailable")
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}  # Reusable State SetChargePointUnavailable
    await unavailable
    answer = await csms.call(CP_ID, "ReserveNow", reserve_now(503, connector=0))
    assert answer == {"status": "Unavailable"}  # step 2
    assert station.agent.station.reservations.get(503) is None


# -- Cancelling and using reservations ----------------------------------------------------------


async def test_TC_051_cancel_reservation(csms: Csms, station: RunningStation) -> None:
    """TC_051_CS Cancel Reservation."""
    await reserved(csms, reserve_now(51))  # Reusable State Reserved with the valid idTag
    available = next_status(csms, "Available")
    assert await csms.call(CP_ID, "CancelReservation", {"reservationId": 51}) == {
        "status": "Accepted"
    }  # step 2
    await available  # step 3, on the reserved connector
    start = await start_charging(csms, station, VALID_2)  # step 5: Charging with idTag 2
    assert start["idTag"] == VALID_2 and "reservationId" not in start


async def test_TC_052_cancelling_an_unknown_reservation_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    """TC_052_CS Cancel Reservation - Rejected: nothing is cancelled."""
    await reserved(csms, reserve_now(52))  # Reusable State Reserved
    mark = len(csms.received)
    assert await csms.call(CP_ID, "CancelReservation", {"reservationId": 520}) == {
        "status": "Rejected"
    }  # step 2
    # Expected behaviour: the reservation still holds: its idTag starts with it, and the
    # connector never went back to Available.
    start = await start_charging(csms, station, VALID)
    assert start["reservationId"] == 52
    assert "StatusNotification:Available" not in connector_flow(csms.received[mark:])


async def test_TC_053_a_reserved_connector_is_used_with_the_parent_id_tag(
    csms: Csms, station: RunningStation
) -> None:
    """TC_053_CS Use a reserved Connector with parentIdTag."""
    reservation = {**reserve_now(53), "parentIdTag": PARENT}
    await reserved(csms, reservation)  # steps 1-4
    csms.behaviour.parent_id_tag = PARENT  # the CSMS knows idTag 2 under the same parent
    mark = len(csms.received)
    preparing = next_status(csms, "Preparing")
    station.tap(VALID_2)  # step 5: Reusable State Authorized with idTag 2
    await preparing
    station.plug()  # step 6
    start = await csms.wait_for("StartTransaction")  # step 7
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    steps = connector_flow(csms.received[mark:])
    assert steps[:2] == ["Authorize", "StatusNotification:Preparing"]
    assert sorted(steps[2:]) == ["StartTransaction", "StatusNotification:Charging"]
    assert (start["idTag"], start["reservationId"]) == (VALID_2, 53)
