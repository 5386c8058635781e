"""OCPP 2.0.1 block H (reservations) end to end: the real agent against the test CSMS
speaking ocpp2.0.1 over real websockets on 127.0.0.1.

Each test asserts what the CSMS received (ReserveNow/CancelReservation answers,
StatusNotifications, ReservationStatusUpdates, the TransactionEvent using a
reservation) and what the station did. Names carry the use case or requirement id
(H01-H04) and, where the OCTT charging station test maps, its TC_H number.
"""

# Test names carry the OCPP 2.0.1 requirement ids as the spec writes them (H01_FR_07).
# ruff: noqa: N802

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.events import AuthorizationOutcome
from drivers.types import FaultCode
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID, until
from tests.integration.v201_station import (
    RunningStation201,
    is_status,
    make_config_201,
    set_values,
    variable,
)

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]
DRIVER = {"idToken": "DRIVER", "type": "ISO14443"}


@pytest.fixture
async def start(csms201: Csms, tmp_path: Path) -> AsyncIterator[Start]:
    """Start 2.0.1 stations; `types` gives each EVSE's connector type (default one
    cType2 EVSE), `settings` device model install values. Returns once every connector
    was reported Available."""
    started: list[RunningStation201] = []

    async def factory(
        types: tuple[str, ...] = ("cType2",), settings: dict[str, str] | None = None
    ) -> RunningStation201:
        config = make_config_201(csms201.url, tmp_path, evses=len(types), settings=settings)
        evses = tuple(
            dataclasses.replace(
                evse, connectors=(dataclasses.replace(evse.connectors[0], type=kind),)
            )
            for evse, kind in zip(config.evses, types, strict=True)
        )
        running = RunningStation201(dataclasses.replace(config, evses=evses))
        await running.start()
        started.append(running)
        for evse_id in range(1, len(types) + 1):
            await csms201.wait_for("StatusNotification", where=is_status("Available", evse_id))
        return running

    yield factory
    for running in started:
        await running.stop()


def _in(seconds: float) -> str:
    """An expiryDateTime `seconds` from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reserve_now(
    reservation_id: int, evse_id: int | None = None, *, expires_in_s: float = 600, **extra: Any
) -> dict[str, Any]:
    """A ReserveNowRequest for DRIVER (extra: connectorType, groupIdToken, idToken)."""
    payload: dict[str, Any] = {
        "id": reservation_id,
        "expiryDateTime": _in(expires_in_s),
        "idToken": DRIVER,
        **extra,
    }
    if evse_id is not None:
        payload["evseId"] = evse_id
    return payload


async def reserve(csms: Csms, reservation_id: int, evse_id: int | None = None, **kw: Any) -> str:
    """Send ReserveNow; the status answered."""
    answer = await csms.call(CP, "ReserveNow", reserve_now(reservation_id, evse_id, **kw))
    status: str = answer["status"]
    return status


def updates(csms: Csms) -> list[tuple[int, str]]:
    """(reservationId, status) of every ReservationStatusUpdate received, in order."""
    return [
        (p["reservationId"], p["reservationUpdateStatus"])
        for p in csms.calls("ReservationStatusUpdate")
    ]


def statuses(csms: Csms, evse_id: int = 1) -> list[str]:
    """Every connectorStatus reported for an EVSE's connector 1, in order."""
    return [
        p["connectorStatus"]
        for p in csms.calls("StatusNotification")
        if (p["evseId"], p["connectorId"]) == (evse_id, 1)
    ]


def actions(csms: Csms) -> list[str]:
    """The actions received, in order."""
    return [r.action for r in csms.received]


async def refused_tap(running: RunningStation201, token: str, evse_id: int = 1) -> None:
    """Tap a card and wait until the station has refused it."""
    verdicts: list[AuthorizationOutcome] = []

    def hear(event: object) -> None:
        if isinstance(event, AuthorizationOutcome) and event.token.value == token:
            verdicts.append(event)

    unsubscribe = running.agent.station.subscribe(hear)
    try:
        running.tap(token, evse_id)
        await until(running.agent, lambda: bool(verdicts))
    finally:
        unsubscribe()
    assert not verdicts[0].result.accepted


# -- H01: reserve --------------------------------------------------------------------------


async def test_TC_H_01_specific_evse_is_reserved_and_used_by_its_id_token(
    csms201: Csms, start: Start
) -> None:
    """H01 with evseId, H03: the EVSE reports Reserved; another token is refused; the
    reserved idToken starts a transaction whose TransactionEvent carries the reservation;
    a used reservation gets no ReservationStatusUpdate."""
    running = await start()
    assert await reserve(csms201, 11, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    running.plug()
    await refused_tap(running, "STRANGER")
    assert running.agent.station.evses[1].tx is None
    running.tap("DRIVER")
    started = await csms201.wait_for("TransactionEvent", where=lambda e: "idToken" in e)
    assert started["eventType"] == "Started"
    assert (started["idToken"]["idToken"], started["reservationId"]) == ("DRIVER", 11)
    await csms201.wait_for("StatusNotification", where=is_status("Occupied"))
    assert "ReservationStatusUpdate" not in actions(csms201)
    assert running.agent.station.reservations.get(11) is None


async def test_G01_FR_09_a_car_plugged_into_a_reserved_evse_leaves_it_reserved(
    csms201: Csms, start: Start
) -> None:
    """H03 scenario 2 (TxStartPoint EVConnected): the plug starts a transaction but the
    EVSE stays Reserved; the reserved token's TransactionEvent carries the reservation and
    only then the EVSE is Occupied."""
    running = await start(settings={"TxCtrlr/TxStartPoint": "EVConnected"})
    assert await reserve(csms201, 12, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    running.plug()
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    assert "reservationId" not in started
    running.tap("DRIVER")
    authorized = await csms201.wait_for("TransactionEvent", where=lambda e: "idToken" in e)
    assert (authorized["eventType"], authorized["reservationId"]) == ("Updated", 12)
    await csms201.wait_for("StatusNotification", where=is_status("Occupied"))
    assert statuses(csms201) == ["Available", "Reserved", "Occupied"]


async def test_TC_H_08_unspecified_evse_keeps_one_evse_for_the_reservation(
    csms201: Csms, start: Start
) -> None:
    """H01.FR.06: without evseId one EVSE stays free for the token: someone else may take
    the first, not the last; the reserved token may still use the last one."""
    running = await start(types=("cType2", "cType2"))
    assert await reserve(csms201, 21) == "Accepted"
    running.plug(1)
    running.tap("FIRST", 1)
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Started")
    # H01.FR.07: the last free EVSE is the reservation's now.
    await csms201.wait_for("StatusNotification", where=is_status("Reserved", 2))
    running.plug(2)
    await refused_tap(running, "SECOND", 2)
    assert running.agent.station.evses[2].tx is None
    running.tap("DRIVER", 2)
    used = await csms201.wait_for("TransactionEvent", where=lambda e: "reservationId" in e)
    assert (used["evse"]["id"], used["reservationId"]) == (2, 21)


async def test_TC_H_14_H01_FR_07_as_many_reservations_as_evses_make_all_reserved(
    csms201: Csms, start: Start
) -> None:
    """Two unspecified reservations on two EVSEs: both report Reserved; cancelling one
    makes both Available again (H02.FR.06)."""
    await start(types=("cType2", "cType2"))
    assert await reserve(csms201, 31) == "Accepted"
    assert await reserve(csms201, 32, idToken={"idToken": "OTHER", "type": "Central"}) == (
        "Accepted"
    )
    for evse_id in (1, 2):
        await csms201.wait_for("StatusNotification", where=is_status("Reserved", evse_id))
    assert await reserve(csms201, 33) == "Occupied"
    assert await csms201.call(CP, "CancelReservation", {"reservationId": 31}) == {
        "status": "Accepted"
    }
    for evse_id in (1, 2):
        await csms201.wait_for("StatusNotification", where=is_status("Available", evse_id), count=2)


async def test_TC_H_15_connector_type_reserves_an_evse_with_that_type(
    csms201: Csms, start: Start
) -> None:
    """H01.FR.09: connectorType cType1 can only be held by EVSE 2 (the Type 1 one): it
    is Reserved, EVSE 1 is not; a type no EVSE has is Rejected."""
    running = await start(types=("cType2", "cType1"))
    assert await reserve(csms201, 41, connectorType="cCCS2") == "Rejected"
    assert await reserve(csms201, 41, 1, connectorType="cType1") == "Rejected"
    assert await reserve(csms201, 41, connectorType="cType1") == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved", 2))
    assert statuses(csms201, 1) == ["Available"]
    running.plug(2)
    await refused_tap(running, "STRANGER", 2)
    assert running.agent.station.evses[2].tx is None
    running.tap("DRIVER", 2)
    used = await csms201.wait_for("TransactionEvent", where=lambda e: "idToken" in e)
    assert used["reservationId"] == 41


async def test_H01_FR_02_a_known_id_replaces_the_reservation(csms201: Csms, start: Start) -> None:
    await start(types=("cType2", "cType2"))
    assert await reserve(csms201, 51, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved", 1))
    assert await reserve(csms201, 51, 2) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved", 2))
    await csms201.wait_for("StatusNotification", where=is_status("Available", 1), count=2)


async def test_H01_occupied_faulted_unavailable_and_unknown_evse_are_answered(
    csms201: Csms, start: Start
) -> None:
    running = await start()
    assert await reserve(csms201, 61, 7) == "Rejected"  # no EVSE 7
    assert await reserve(csms201, 61, 1, expires_in_s=-5) == "Rejected"  # already expired
    running.plug()
    await csms201.wait_for("StatusNotification", where=is_status("Occupied"))
    assert await reserve(csms201, 61, 1) == "Occupied"
    running.unplug()
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    plant = running.agent.hardware[1].plant
    plant.raise_fault(FaultCode.OVER_TEMPERATURE)
    await csms201.wait_for("StatusNotification", where=is_status("Faulted"))
    assert await reserve(csms201, 61, 1) == "Faulted"
    plant.clear_fault(FaultCode.OVER_TEMPERATURE)
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=3)
    unavailable = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    assert await csms201.call(CP, "ChangeAvailability", unavailable) == {"status": "Accepted"}
    assert await reserve(csms201, 61, 1) == "Unavailable"
    assert await reserve(csms201, 61) == "Unavailable"
    assert len(running.agent.station.reservations) == 0


async def test_TC_H_22_H01_FR_01_reservations_disabled_are_rejected(
    csms201: Csms, start: Start
) -> None:
    running = await start()
    off = variable("ReservationCtrlr", "Enabled", value="false")
    assert await set_values(csms201, off) == ["Accepted"]
    answer = await csms201.call(CP, "ReserveNow", reserve_now(71, 1))
    assert answer["status"] == "Rejected"
    assert not running.agent.station.evses[1].reserved


async def test_H01_FR_19_no_evse_id_is_rejected_when_not_non_evse_specific(
    csms201: Csms, start: Start
) -> None:
    await start(settings={"ReservationCtrlr/NonEvseSpecific": "false"})
    assert await reserve(csms201, 81) == "Rejected"
    assert await reserve(csms201, 81, connectorType="cType2") == "Rejected"
    assert await reserve(csms201, 81, 1) == "Accepted"


# -- H02: cancel ---------------------------------------------------------------------------------


async def test_TC_H_17_H02_cancel_frees_the_evse_and_an_unknown_id_is_rejected(
    csms201: Csms, start: Start
) -> None:
    """H02.FR.02-04: Accepted, the EVSE Available again; H02.FR.01: an unknown id
    is Rejected. A cancellation gets no ReservationStatusUpdate."""
    running = await start()
    assert await reserve(csms201, 91, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    cancel = {"reservationId": 91}
    assert await csms201.call(CP, "CancelReservation", cancel) == {"status": "Accepted"}
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    assert await csms201.call(CP, "CancelReservation", cancel) == {"status": "Rejected"}
    running.plug()
    running.tap("ANYONE")
    await csms201.wait_for("TransactionEvent", where=lambda e: "idToken" in e)
    assert "ReservationStatusUpdate" not in actions(csms201)


# -- H03: use by a group -----------------------------------------------------------------------


async def test_TC_H_19_a_token_of_the_reservations_group_uses_it(
    csms201: Csms, start: Start
) -> None:
    """H03 scenario S2: a token whose groupIdToken (from the CSMS's Authorize) equals
    the reservation's uses it; a token of another group is refused."""
    running = await start()
    group = {"idToken": "FLEET", "type": "Central"}
    assert await reserve(csms201, 101, 1, groupIdToken=group) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    running.plug()
    csms201.behaviour.parent_id_tag = "ELSEWHERE"
    await refused_tap(running, "OUTSIDER")
    assert running.agent.station.evses[1].tx is None
    csms201.behaviour.parent_id_tag = "FLEET"
    running.tap("COLLEAGUE")
    used = await csms201.wait_for("TransactionEvent", where=lambda e: "idToken" in e)
    assert (used["idToken"]["idToken"], used["reservationId"]) == ("COLLEAGUE", 101)
    authorized = [p["idToken"]["idToken"] for p in csms201.calls("Authorize")]
    assert authorized == ["OUTSIDER", "COLLEAGUE"]


# -- H04 and removal: ReservationStatusUpdate ---------------------------------------------------


async def test_TC_H_07_H04_expiry_makes_the_evse_available_and_reports_expired(
    csms201: Csms, start: Start
) -> None:
    await start()
    assert await reserve(csms201, 111, 1, expires_in_s=1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    update = await csms201.wait_for("ReservationStatusUpdate")
    assert update == {"reservationId": 111, "reservationUpdateStatus": "Expired"}
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    assert statuses(csms201) == ["Available", "Reserved", "Available"]


async def test_TC_H_20_faulted_evse_removes_its_reservation(csms201: Csms, start: Start) -> None:
    """StatusNotification Faulted, then ReservationStatusUpdate Removed."""
    running = await start()
    assert await reserve(csms201, 121, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    running.agent.hardware[1].plant.raise_fault(FaultCode.OVER_TEMPERATURE)
    await csms201.wait_for("ReservationStatusUpdate")
    assert updates(csms201) == [(121, "Removed")]
    assert statuses(csms201) == ["Available", "Reserved", "Faulted"]
    sequence = [
        a for a in actions(csms201) if a in ("StatusNotification", "ReservationStatusUpdate")
    ]
    assert sequence[-2:] == ["StatusNotification", "ReservationStatusUpdate"]


async def test_H01_unavailable_evse_removes_its_reservation(csms201: Csms, start: Start) -> None:
    running = await start()
    assert await reserve(csms201, 131, 1) == "Accepted"
    await csms201.wait_for("StatusNotification", where=is_status("Reserved"))
    unavailable = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    assert await csms201.call(CP, "ChangeAvailability", unavailable) == {"status": "Accepted"}
    await csms201.wait_for("ReservationStatusUpdate")
    assert updates(csms201) == [(131, "Removed")]
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable"))
    operative = {"operationalStatus": "Operative", "evse": {"id": 1}}
    await csms201.call(CP, "ChangeAvailability", operative)
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    assert running.agent.station.reservations.get(131) is None


async def test_H04_an_expiry_while_offline_is_reported_after_the_reconnect(
    csms201: Csms, start: Start
) -> None:
    running = await start()
    agent = running.agent
    assert await reserve(csms201, 141, 1, expires_in_s=2) == "Accepted"
    port = csms201.port
    await csms201.stop()
    await until(agent, lambda: agent.station.reservations.get(141) is None)
    async with Csms(CsmsBehaviour(), port=port, subprotocols=("ocpp2.0.1",)) as back:
        update = await back.wait_for("ReservationStatusUpdate")
        assert update == {"reservationId": 141, "reservationUpdateStatus": "Expired"}
        await until(agent, lambda: not running.adapter.reservations.pending())
    assert "ReservationStatusUpdate" not in actions(csms201)
