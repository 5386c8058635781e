"""OCTT test cases for OCPP 1.6 authorization, cache and local list, Charge Point side.

Each test follows one case of the OCPP 1.6 Compliancy Testing Tool test case document
(the "_CS" cases, Trial 2025-06 draft, as published at ocpplab.com): the same
preparations, the tool's steps done by the real CSMS (simulator/csms.py), the driver's
manual actions done on the simulated hardware, and the tool's Charge Point side
validations asserted on what the CSMS received, in order. Central System side
validations are about the tool's own messages and are met by construction.

Read and covered: TC_007, TC_008, TC_023, TC_037_1, TC_042_1, TC_042_2, TC_043,
TC_043_1, TC_043_2, TC_043_3, TC_061, TC_068, TC_069. Not found (not covered):
TC_037_3. Where the published text is cut short, the docstring says which steps the
test takes from the specification instead. The reservation cases are in
test_v16_octt_reservation.py.
"""

# ruff: noqa: N802 - test names carry the OCTT case ids (TC_0xx)

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from typing import Any

from agent.core.events import AuthorizationOutcome, StationEvent, TokenHandling, TokenPresented
from simulator.csms import Csms, Received
from tests.integration.conftest import CP_ID, RunningStation, until

VALID = "OCTT-VALID-1"
VALID_2 = "OCTT-VALID-2"
INVALID = "OCTT-INVALID"


def flow(calls: list[Received]) -> list[str]:
    """What the tool sees of a connector's exchange: actions, StatusNotifications as
    "StatusNotification:<status>"; heartbeats, meter values and connector 0 left out.

    A SuspendedEV whose next status is Charging is dropped: it only shows that the
    simulated car took a moment to answer the PWM.
    """
    seen: list[str] = []
    for call in calls:
        if call.action in ("Heartbeat", "MeterValues"):
            continue
        if call.action == "StatusNotification":
            if call.payload["connectorId"] == 0:
                continue
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


def since(csms: Csms, mark: int) -> list[Received]:
    """The CALLs the CSMS received after the first `mark` ones."""
    return csms.received[mark:]


def next_status(csms: Csms, status: str, connector: int = 1) -> Awaitable[dict[str, Any]]:
    """Wait for the next StatusNotification of `status` on `connector` (call it before
    the action that causes it)."""

    def matches(payload: dict[str, Any]) -> bool:
        return bool(payload["connectorId"] == connector and payload["status"] == status)

    seen = len([p for p in csms.calls("StatusNotification") if matches(p)])
    return csms.wait_for("StatusNotification", where=matches, count=seen + 1)


async def configure(csms: Csms, key: str, value: str) -> None:
    """A Configuration State preparation: ChangeConfiguration, Accepted."""
    answer = await csms.call(CP_ID, "ChangeConfiguration", {"key": key, "value": value})
    assert answer == {"status": "Accepted"}, (key, answer)


def record_events(station: RunningStation) -> list[StationEvent]:
    """Every station event from now on (token handling, authorization outcomes)."""
    events: list[StationEvent] = []
    station.agent.station.subscribe(events.append)
    return events


async def outcome_of(
    station: RunningStation, events: list[StationEvent], token: str
) -> AuthorizationOutcome:
    """Wait for the verdict the EVSE gave `token` (after any Authorize it sent)."""

    def found() -> AuthorizationOutcome | None:
        for event in events:
            if isinstance(event, AuthorizationOutcome) and event.token.value == token:
                return event
        return None

    await until(station.agent, lambda: found() is not None)
    outcome = found()
    assert outcome is not None
    return outcome


async def cache_token(csms: Csms, station: RunningStation, token: str) -> None:
    """Memory State IdTagCached: the CSMS accepts `token` once (Authorize), the driver
    then withdraws by tapping again."""
    preparing = next_status(csms, "Preparing")
    station.tap(token)
    await csms.wait_for("Authorize", where=lambda p: p["idTag"] == token)
    await preparing
    available = next_status(csms, "Available")
    station.tap(token)
    await available
    assert station.agent.auth_cache.get(token) is not None


async def charging(csms: Csms, station: RunningStation, token: str) -> dict[str, Any]:
    """Reusable State Charging: plug in, present `token`, energy flows."""
    station.plug()
    station.tap(token)
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    return start


# -- Core: cache and local pre-authorization -------------------------------------------------


async def test_TC_007_regular_start_with_a_cached_id(csms: Csms, station: RunningStation) -> None:
    """TC_007_CS Regular Start Charging Session - Cached Id."""
    await configure(csms, "AuthorizationCacheEnabled", "true")
    await configure(csms, "LocalPreAuthorize", "true")
    await cache_token(csms, station, VALID)
    mark = len(csms.received)

    preparing = next_status(csms, "Preparing")
    station.tap(VALID)  # [EV driver presents identification]
    await preparing
    station.plug()  # [EV driver plugs in the cable]
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    steps = flow(since(csms, mark))
    # Step 1 Preparing; steps 3 (StartTransaction) and 5 (Charging) in either order;
    # no Authorize.req: the cached id is pre-authorized locally.
    assert steps[0] == "StatusNotification:Preparing"
    assert sorted(steps[1:]) == ["StartTransaction", "StatusNotification:Charging"]
    assert start["idTag"] == VALID and start["connectorId"] == 1


async def test_TC_061_clear_cache_makes_the_next_tap_ask_the_csms(
    csms: Csms, station: RunningStation
) -> None:
    """TC_061_CS Clear Authorization Data in Authorization Cache."""
    await configure(csms, "AuthorizationCacheEnabled", "true")
    await configure(csms, "LocalPreAuthorize", "true")
    mark = len(csms.received)

    station.tap(VALID)  # Reusable State Authorized
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    available = next_status(csms, "Available")
    station.tap(VALID)  # [EV driver swipes the valid card again]
    await available
    assert station.agent.auth_cache.get(VALID) is not None  # it would pre-authorize now
    assert await csms.call(CP_ID, "ClearCache", {}) == {"status": "Accepted"}  # step 6
    station.tap(VALID)  # [the same card again]
    await csms.wait_for("Authorize", count=2)  # step 7

    steps = flow(since(csms, mark))
    assert steps[:4] == [
        "Authorize",
        "StatusNotification:Preparing",  # step 1
        "StatusNotification:Available",  # step 3
        "Authorize",  # step 7: the cleared cache no longer answers for the card
    ]
    assert [p["idTag"] for p in csms.calls("Authorize")] == [VALID, VALID]


# -- Local Auth List Management -----------------------------------------------------------


async def test_TC_008_regular_start_with_an_id_in_the_local_list(
    csms: Csms, station: RunningStation
) -> None:
    """TC_008_CS Regular Start Charging Session - Id in Local Authorization List.

    The Central System side validation of step 3 is cut short in the published text; the
    list sent here is a Full one holding the configured valid idTag as Accepted.
    """
    await configure(csms, "LocalPreAuthorize", "true")
    await configure(csms, "AuthorizationCacheEnabled", "false")
    await configure(csms, "LocalAuthListEnabled", "true")
    version = await csms.call(CP_ID, "GetLocalListVersion", {})  # steps 1-2
    listed = {
        "listVersion": version["listVersion"] + 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": VALID, "idTagInfo": {"status": "Accepted"}}],
    }
    assert await csms.call(CP_ID, "SendLocalList", listed) == {"status": "Accepted"}  # step 4
    mark = len(csms.received)

    station.tap(VALID)  # [EV driver presents identification]
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    station.plug()  # [EV driver plugs in the cable]
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    steps = flow(since(csms, mark))
    assert steps[0] == "StatusNotification:Preparing"  # step 5, no Authorize.req before it
    assert sorted(steps[1:]) == ["StartTransaction", "StatusNotification:Charging"]  # 7, 9
    assert start["idTag"] == VALID


async def test_TC_042_1_get_local_list_version_when_the_list_is_disabled(
    csms: Csms, station: RunningStation
) -> None:
    """TC_042_1_CS Get Local List Version (not supported): LocalAuthListEnabled false."""
    await configure(csms, "LocalAuthListEnabled", "false")
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": -1}


async def test_TC_042_2_an_emptied_list_reports_version_0(
    csms: Csms, station: RunningStation
) -> None:
    """TC_042_2_CS Get Local List Version (empty): a Full update at listVersion 1 without
    localAuthorizationList empties the list, and an empty list is version 0 (5.10)."""
    await configure(csms, "LocalAuthListEnabled", "true")
    empty = {"listVersion": 1, "updateType": "Full"}
    assert await csms.call(CP_ID, "SendLocalList", empty) == {"status": "Accepted"}  # step 2
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 0}  # step 4


async def test_TC_043_send_full_then_differential_list(csms: Csms, station: RunningStation) -> None:
    """TC_043_CS Send Local Authorization List: a Full, then a Differential update."""
    await configure(csms, "LocalAuthListEnabled", "true")
    full = {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": VALID, "idTagInfo": {"status": "Accepted"}}],
    }
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "Accepted"}  # step 2
    differential = {
        "listVersion": 2,
        "updateType": "Differential",
        "localAuthorizationList": [{"idTag": VALID_2, "idTagInfo": {"status": "Accepted"}}],
    }
    assert await csms.call(CP_ID, "SendLocalList", differential) == {"status": "Accepted"}
    # Expected behaviour: drivers on the list are authorized by it (both updates kept).
    local_list = station.agent.local_list
    assert local_list.get(VALID) is not None and local_list.get(VALID_2) is not None
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 2}


async def test_TC_043_1_send_local_list_when_not_supported(
    csms: Csms, station: RunningStation
) -> None:
    """TC_043_1_CS Send Local Authorization List - NotSupported.

    The agent supports the profile; LocalAuthListEnabled false is how an installation
    turns it off, and then the answer is NotSupported and nothing is stored.
    """
    await configure(csms, "LocalAuthListEnabled", "false")
    full = {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": VALID, "idTagInfo": {"status": "Accepted"}}],
    }
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "NotSupported"}
    assert station.agent.local_list.get(VALID) is None


async def test_TC_043_2_a_stale_differential_update_is_a_version_mismatch(
    csms: Csms, station: RunningStation
) -> None:
    """TC_043_2_CS Send Local Authorization List - VersionMismatch.

    The published steps give the versions read back (2, then 5) and the VersionMismatch
    of step 10; the update types and versions sent at steps 5 and 9, and the check of step
    12, are cut short. They follow section 6.42: VersionMismatch answers a Differential
    update whose version is not above the list's, and leaves the list as it was.
    """
    await configure(csms, "LocalAuthListEnabled", "true")
    entry = {"idTag": VALID, "idTagInfo": {"status": "Accepted"}}
    full = {"listVersion": 2, "updateType": "Full", "localAuthorizationList": [entry]}
    assert await csms.call(CP_ID, "SendLocalList", full) == {"status": "Accepted"}  # step 2
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 2}  # step 4
    added = {"idTag": VALID_2, "idTagInfo": {"status": "Accepted"}}
    up = {"listVersion": 5, "updateType": "Differential", "localAuthorizationList": [added]}
    assert await csms.call(CP_ID, "SendLocalList", up) == {"status": "Accepted"}  # step 6
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 5}  # step 8
    stale = {
        "listVersion": 4,
        "updateType": "Differential",
        "localAuthorizationList": [{"idTag": VALID}],  # would remove VALID
    }
    assert await csms.call(CP_ID, "SendLocalList", stale) == {"status": "VersionMismatch"}
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 5}
    assert station.agent.local_list.get(VALID) is not None


async def test_TC_043_3_a_list_the_charge_point_cannot_hold_fails(
    csms: Csms, station: RunningStation
) -> None:
    """TC_043_3_CS Send Local Authorization List - Failed: a Full list at listVersion 2.

    The state in which the agent fails to set a list is a list longer than it takes
    (SendLocalListMaxLength, read-only); the list in place is left untouched.
    """
    await configure(csms, "LocalAuthListEnabled", "true")
    answer = await csms.call(CP_ID, "GetConfiguration", {"key": ["SendLocalListMaxLength"]})
    limit = int(answer["configurationKey"][0]["value"])
    entries = [{"idTag": f"T{i}", "idTagInfo": {"status": "Accepted"}} for i in range(limit + 1)]
    too_long = {"listVersion": 2, "updateType": "Full", "localAuthorizationList": entries}
    assert await csms.call(CP_ID, "SendLocalList", too_long) == {"status": "Failed"}
    assert await csms.call(CP_ID, "GetLocalListVersion", {}) == {"listVersion": 0}
    assert station.agent.local_list.get("T0") is None


# -- Authorization refused, offline start -----------------------------------------------------


async def test_TC_023_an_invalid_id_does_not_start_a_transaction(
    csms: Csms, station: RunningStation
) -> None:
    """TC_023_CS Start Charging Session - Authorize invalid.

    MinimumStatusDuration (an optional key) is not implemented, so only LocalPreAuthorize
    is prepared.
    """
    await configure(csms, "LocalPreAuthorize", "true")
    csms.behaviour.accepted_tags = {VALID}
    events = record_events(station)
    mark = len(csms.received)

    station.tap(INVALID)  # [EV driver presents invalid identification]
    assert await csms.wait_for("Authorize") == {"idTag": INVALID}  # step 1
    assert not (await outcome_of(station, events, INVALID)).result.accepted  # step 2: Invalid
    station.plug()  # [EV driver plugs in the cable]
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")

    assert flow(since(csms, mark)) == ["Authorize", "StatusNotification:Preparing"]
    evse = station.agent.station.evses[1]
    assert evse.tx is None and evse.token is None  # the Charge Point does NOT start
    assert not station.agent.hardware[1].plant.contactor_closed


async def test_TC_037_1_offline_start_with_a_valid_id_is_sent_on_reconnection(
    csms: Csms, station_factory: Any
) -> None:
    """TC_037_1_CS Offline Start Transaction - Valid IdTag."""
    running: RunningStation = await station_factory(
        csms,
        settings={
            "LocalAuthorizeOffline": "true",
            "LocalAuthListEnabled": "true",
            "AuthorizationCacheEnabled": "true",
            "AllowOfflineTxForUnknownId": "true",
        },
    )
    await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
    listed = {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": VALID, "idTagInfo": {"status": "Accepted"}}],
    }
    assert await csms.call(CP_ID, "SendLocalList", listed) == {"status": "Accepted"}
    await cache_token(csms, running, VALID)  # Memory States: in the list and in the cache

    port = csms.port
    await csms.stop()  # [Remove connectivity]
    agent = running.agent
    await until(agent, lambda: not agent.adapter.online)
    running.plug()  # [EV driver starts offline a transaction with a valid idTag]
    running.tap(VALID)
    await until(agent, lambda: agent.hardware[1].plant.contactor_closed)

    async with Csms(port=port) as back:  # [Restore connectivity]
        start = await back.wait_for("StartTransaction", timeout_s=15)  # step 1
        await back.wait_for(  # step 3
            "StatusNotification",
            where=lambda p: p["connectorId"] == 1 and p["status"] == "Charging",
        )
        assert start["idTag"] == VALID and start["connectorId"] == 1
        await running.stop()


# -- Stopping with a card -----------------------------------------------------------------------


async def test_TC_068_only_the_starting_id_stops_the_transaction(
    csms: Csms, station: RunningStation
) -> None:
    """TC_068_CS Stop transaction - IdTag in StopTransaction matches IdTag in
    StartTransaction: another card is refused at once, the starting card stops."""
    start = await charging(csms, station, VALID)  # Reusable State Charging
    events = record_events(station)
    mark = len(csms.received)

    station.tap(VALID_2)  # [swipes a different IdTag]
    refused = await outcome_of(station, events, VALID_2)
    presented = [e for e in events if isinstance(e, TokenPresented)]
    assert presented[0].handling == TokenHandling.CONCURRENT  # step 1: no Authorize, no stop
    assert not refused.result.accepted
    station.tap(VALID)  # [swipes the IdTag used to start the transaction]
    stop = await csms.wait_for("StopTransaction")  # step 3
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Finishing")

    assert sorted(flow(since(csms, mark))) == ["StatusNotification:Finishing", "StopTransaction"]
    assert stop["idTag"] == start["idTag"] == VALID
    assert stop["reason"] == "Local"
    assert not station.agent.hardware[1].plant.contactor_closed


async def test_TC_069_a_card_with_the_same_parent_id_stops_the_transaction(
    csms: Csms, station: RunningStation
) -> None:
    """TC_069_CS Stop transaction - ParentIdTag in StopTransaction matches ParentIdTag in
    StartTransaction."""
    csms.behaviour.parent_id_tag = "OCTT-PARENT"  # both cards belong to it
    await charging(csms, station, VALID)  # Reusable State Charging
    mark = len(csms.received)

    station.tap(VALID_2)  # [a different IdTag with the same ParentIdTag]
    authorize = await csms.wait_for("Authorize", where=lambda p: p["idTag"] == VALID_2)
    stop = await csms.wait_for("StopTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Finishing")

    steps = flow(since(csms, mark))
    assert steps[0] == "Authorize"  # step 1, with the new card
    assert sorted(steps[1:]) == ["StatusNotification:Finishing", "StopTransaction"]  # 3, 5
    assert authorize["idTag"] != VALID
    assert stop["idTag"] == VALID_2  # step 3: the idTag of step 1
    assert not station.agent.hardware[1].plant.contactor_closed
