"""The test CSMS (simulator/csms.py) speaking OCPP 2.0.1, driven by a plain websockets client.

These pin what the 2.0.1 agent's integration tests rely on: the version negotiated per
connection, the answers to every station-initiated 2.0.1 action, what is recorded, and the
ways tests act as the CSMS (call, send_raw) on a 2.0.1 connection.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from simulator.csms import Csms, CsmsBehaviour
from tests.integration.test_csms_peer import next_frame, rpc

V201 = "ocpp2.0.1"
V16 = "ocpp1.6"
REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = "2025-01-01T00:00:00Z"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "sim", "vendorName": "cpagent"}}
SCHEDULE = {
    "id": 1,
    "chargingRateUnit": "A",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
}


def transaction_event(
    event_type: str, seq_no: int, id_token: str | None = None, tx_id: str = "tx-1"
) -> dict[str, Any]:
    """A minimal valid TransactionEventRequest, with an ISO14443 idToken when given."""
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": NOW,
        "triggerReason": "Authorized",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id},
    }
    if id_token is not None:
        payload["idToken"] = {"idToken": id_token, "type": "ISO14443"}
    return payload


#: A minimal valid request of every action a 2.0.1 charging station sends, and the
#: CALLRESULT payload this CSMS answers with (None: depends on the clock).
STATION_INITIATED: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "BootNotification": (BOOT, None),
    "Heartbeat": ({}, None),
    "StatusNotification": (
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        {},
    ),
    "Authorize": (
        {"idToken": {"idToken": "T1", "type": "ISO14443"}},
        {"idTokenInfo": {"status": "Accepted"}},
    ),
    "TransactionEvent": (transaction_event("Started", 0), {}),
    "MeterValues": (
        {"evseId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": 1.5}]}]},
        {},
    ),
    "NotifyReport": ({"requestId": 1, "generatedAt": NOW, "seqNo": 0}, {}),
    "NotifyEvent": (
        {
            "generatedAt": NOW,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": NOW,
                    "trigger": "Delta",
                    "actualValue": "Faulted",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector"},
                    "variable": {"name": "AvailabilityState"},
                }
            ],
        },
        {},
    ),
    "DataTransfer": (
        {"vendorId": "org.cpagent.test", "data": "ping"},
        {"status": "Accepted", "data": "ping"},
    ),
    "FirmwareStatusNotification": ({"status": "Idle"}, {}),
    "LogStatusNotification": ({"status": "Idle"}, {}),
    "SecurityEventNotification": ({"type": "StartupOfTheDevice", "timestamp": NOW}, {}),
    "ReservationStatusUpdate": ({"reservationId": 1, "reservationUpdateStatus": "Expired"}, {}),
    "NotifyChargingLimit": ({"chargingLimit": {"chargingLimitSource": "EMS"}}, {}),
    "ClearedChargingLimit": ({"chargingLimitSource": "EMS"}, {}),
    "ReportChargingProfiles": (
        {
            "requestId": 1,
            "chargingLimitSource": "CSO",
            "evseId": 1,
            "chargingProfile": [
                {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": [SCHEDULE],
                }
            ],
        },
        {},
    ),
    "NotifyEVChargingNeeds": (
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
        {"status": "Rejected"},
    ),
    "NotifyEVChargingSchedule": (
        {"timeBase": NOW, "evseId": 1, "chargingSchedule": SCHEDULE},
        {"status": "Accepted"},
    ),
    "NotifyMonitoringReport": ({"requestId": 1, "seqNo": 0, "generatedAt": NOW}, {}),
    "NotifyCustomerInformation": (
        {"data": "none", "seqNo": 0, "generatedAt": NOW, "requestId": 1},
        {},
    ),
    "SignCertificate": ({"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Rejected"}),
    "Get15118EVCertificate": (
        {"iso15118SchemaVersion": "urn:iso:15118:2:2013", "action": "Install", "exiRequest": "AA"},
        {"status": "Failed", "exiResponse": ""},
    ),
    "GetCertificateStatus": (
        {
            "ocspRequestData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "00",
                "issuerKeyHash": "00",
                "serialNumber": "01",
                "responderURL": "http://ocsp.example",
            }
        },
        {"status": "Failed"},
    ),
    "PublishFirmwareStatusNotification": ({"status": "Idle"}, {}),
    "NotifyDisplayMessages": ({"requestId": 1}, {}),
}


@pytest.fixture
async def csms201() -> AsyncIterator[Csms]:
    """A started CSMS that speaks OCPP 2.0.1 only."""
    async with Csms(subprotocols=(V201,)) as server:
        yield server


@pytest.fixture
async def csms_both() -> AsyncIterator[Csms]:
    """A started CSMS offering 2.0.1 first, then 1.6."""
    async with Csms(subprotocols=(V201, V16)) as server:
        yield server


@asynccontextmanager
async def station(
    csms: Csms, cp_id: str = "CS1", offer: tuple[str, ...] = (V201,)
) -> AsyncIterator[ClientConnection]:
    """Connect a raw client offering `offer` as `cp_id`; wait until the CSMS registered it."""
    subprotocols = [Subprotocol(p) for p in offer]
    async with connect(f"{csms.url}/{cp_id}", subprotocols=subprotocols) as ws:
        await csms.wait_connected(cp_id)
        yield ws


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
async def test_boot_notification_answers_behaviour_status_and_interval(
    csms201: Csms, status: str
) -> None:
    csms201.behaviour.boot_status = status
    csms201.behaviour.boot_interval_s = 42
    async with station(csms201) as ws:
        reply = await rpc(ws, "BootNotification", BOOT, unique_id="b1")
    assert reply[:2] == [3, "b1"]
    assert reply[2]["status"] == status
    assert reply[2]["interval"] == 42
    assert datetime.fromisoformat(reply[2]["currentTime"]).utcoffset() == timedelta(0)


async def test_every_station_initiated_action_gets_a_schema_valid_callresult(
    csms201: Csms,
) -> None:
    replies: dict[str, list[Any]] = {}
    async with station(csms201) as ws:
        for action, (request, _) in STATION_INITIATED.items():
            replies[action] = await rpc(ws, action, request, unique_id=action)
    # The library validates each CALLRESULT before sending it; a CALLERROR would show here.
    assert {a: r[:2] for a, r in replies.items()} == {a: [3, a] for a in STATION_INITIATED}
    expected = {a: answer for a, (_, answer) in STATION_INITIATED.items() if answer is not None}
    assert {a: replies[a][2] for a in expected} == expected
    assert set(replies["Heartbeat"][2]) == {"currentTime"}
    assert [(r.action, r.payload, r.answered) for r in csms201.received] == [
        (a, request, True) for a, (request, _) in STATION_INITIATED.items()
    ]


async def test_authorize_id_token_info_follows_accepted_tags_and_parent_id_tag(
    csms201: Csms,
) -> None:
    csms201.behaviour.accepted_tags = {"GOOD"}
    csms201.behaviour.tag_status_otherwise = "Blocked"
    csms201.behaviour.parent_id_tag = "FLEET"
    async with station(csms201) as ws:
        good = await rpc(ws, "Authorize", {"idToken": {"idToken": "GOOD", "type": "ISO14443"}})
        bad = await rpc(ws, "Authorize", {"idToken": {"idToken": "BAD", "type": "ISO14443"}})
    group = {"idToken": "FLEET", "type": "Central"}
    assert good[2] == {"idTokenInfo": {"status": "Accepted", "groupIdToken": group}}
    assert bad[2] == {"idTokenInfo": {"status": "Blocked", "groupIdToken": group}}


async def test_transaction_event_is_recorded_and_answers_id_token_info_only_with_an_id_token(
    csms201: Csms,
) -> None:
    csms201.behaviour.accepted_tags = {"GOOD"}
    started = transaction_event("Started", 0, id_token="GOOD")
    updated = transaction_event("Updated", 1, id_token="STOLEN")
    ended = transaction_event("Ended", 2)
    async with station(csms201) as ws:
        replies = [
            await rpc(ws, "TransactionEvent", event, unique_id=f"te{i}")
            for i, event in enumerate((started, updated, ended))
        ]
    assert [r[:2] for r in replies] == [[3, "te0"], [3, "te1"], [3, "te2"]]
    assert [r[2] for r in replies] == [
        {"idTokenInfo": {"status": "Accepted"}},
        {"idTokenInfo": {"status": "Invalid"}},
        {},
    ]
    assert csms201.calls("TransactionEvent", "CS1") == [started, updated, ended]
    assert (
        await csms201.wait_for("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
        == ended
    )


async def test_data_transfer_rejects_other_vendors_with_unknown_vendor_id(csms201: Csms) -> None:
    async with station(csms201) as ws:
        reply = await rpc(ws, "DataTransfer", {"vendorId": "com.example", "messageId": "x"})
    assert reply[2] == {"status": "UnknownVendorId"}


async def test_schema_violating_call_gets_callerror_and_is_recorded_as_not_answered(
    csms201: Csms,
) -> None:
    async with station(csms201) as ws:
        reply = await rpc(ws, "BootNotification", {"reason": "PowerUp"}, "bad")
    assert reply[0] == 4 and reply[1] == "bad"
    assert [(r.action, r.answered) for r in csms201.received] == [("BootNotification", False)]


async def test_call_of_a_16_only_action_on_a_201_connection_gets_not_supported(
    csms201: Csms,
) -> None:
    async with station(csms201) as ws:
        reply = await rpc(ws, "StartTransaction", {"connectorId": 1}, unique_id="s1")
    assert reply[:3] == [4, "s1", "NotSupported"]


# -- fault injection -------------------------------------------------------------------------


async def test_fail_next_and_ignore_next_apply_to_201_actions(csms201: Csms) -> None:
    csms201.behaviour.fail_next["TransactionEvent"] = 1
    csms201.behaviour.ignore_next["BootNotification"] = 1
    event = transaction_event("Started", 0, id_token="T1")
    async with station(csms201) as ws:
        failed = await rpc(ws, "TransactionEvent", event, unique_id="t1")
        retried = await rpc(ws, "TransactionEvent", event, unique_id="t2")
        await ws.send(json.dumps([2, "ignored", "BootNotification", BOOT]))
        booted = await rpc(ws, "BootNotification", BOOT, unique_id="b2")
    assert failed[:3] == [4, "t1", "InternalError"]
    assert retried[:2] == [3, "t2"] and retried[2] == {"idTokenInfo": {"status": "Accepted"}}
    assert booted[:2] == [3, "b2"]
    assert [(r.unique_id, r.answered) for r in csms201.received] == [
        ("t1", False),
        ("t2", True),
        ("ignored", False),
        ("b2", True),
    ]
    assert csms201.behaviour.fail_next == {} and csms201.behaviour.ignore_next == {}


# -- negotiation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_order", "expected"),
    [((V201, V16), "2.0.1"), ((V16, V201), "1.6")],
)
async def test_the_servers_preference_wins_when_a_client_offers_both(
    server_order: tuple[str, str], expected: str
) -> None:
    async with Csms(subprotocols=server_order) as csms:
        # The client lists them in the opposite order of the server on purpose.
        offer = tuple(reversed(server_order))
        async with station(csms, offer=offer) as ws:
            assert csms.version("CS1") == expected
            assert ws.subprotocol == "ocpp" + expected


async def test_a_16_only_client_speaks_16_beside_a_201_client_on_a_both_versions_server(
    csms_both: Csms,
) -> None:
    boot16 = {"chargePointVendor": "cpagent", "chargePointModel": "sim"}
    async with (
        station(csms_both, "OLD", offer=(V16,)) as old,
        station(csms_both, "NEW", offer=(V201,)) as new,
    ):
        assert (csms_both.version("OLD"), csms_both.version("NEW")) == ("1.6", "2.0.1")
        reply16 = await rpc(old, "BootNotification", boot16)
        reply201 = await rpc(new, "BootNotification", BOOT)
        start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": NOW}
        started16 = await rpc(old, "StartTransaction", start)
        # Each connection is validated against its own version's schemas.
        crossed = await rpc(new, "BootNotification", boot16)
    assert old.subprotocol == V16 and new.subprotocol == V201
    assert reply16[0] == 3 and reply201[0] == 3
    assert started16[2]["transactionId"] == 1
    assert crossed[0] == 4
    assert csms_both.calls("BootNotification", "OLD") == [boot16]


async def test_a_201_only_server_refuses_a_16_only_client() -> None:
    async with Csms(subprotocols=(V201,)) as csms:
        with pytest.raises(InvalidStatus) as raised:
            async with connect(f"{csms.url}/CS1", subprotocols=[Subprotocol(V16)]):
                pass
        assert raised.value.response.status_code == 400
        assert not csms.connected("CS1")


def test_an_unknown_subprotocol_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"ocpp2\.1"):
        Csms(subprotocols=("ocpp2.1",))


async def test_version_of_an_unknown_charge_point_raises_key_error(csms201: Csms) -> None:
    with pytest.raises(KeyError, match="NOPE"):
        csms201.version("NOPE")


# -- acting as the CSMS ----------------------------------------------------------------------


async def test_call_sends_a_201_request_and_returns_the_camelcase_result(csms201: Csms) -> None:
    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    answer = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "300",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            }
        ]
    }
    async with station(csms201) as ws:

        async def answer_get_variables() -> list[Any]:
            request = await next_frame(ws)
            await ws.send(json.dumps([3, request[1], answer]))
            return request

        answering = asyncio.create_task(answer_get_variables())
        result = await csms201.call("CS1", "GetVariables", {"getVariableData": wanted})
        request = await answering
    assert result == answer
    assert request[0] == 2 and request[2:] == ["GetVariables", {"getVariableData": wanted}]
    assert csms201.received == []


async def test_call_rejects_a_201_result_that_violates_the_schema(csms201: Csms) -> None:
    async with station(csms201) as ws:

        async def answer_badly() -> None:
            request = await next_frame(ws)
            await ws.send(json.dumps([3, request[1], {"status": "Maybe"}]))

        answering = asyncio.create_task(answer_badly())
        with pytest.raises(OCPPError):
            await csms201.call("CS1", "Reset", {"type": "Immediate"})
        await answering


async def test_call_of_an_action_outside_201_raises_value_error(csms201: Csms) -> None:
    async with station(csms201):
        with pytest.raises(ValueError, match=r"OCPP 2\.0\.1"):
            await csms201.call("CS1", "RemoteStartTransaction", {"idTag": "T1"})


async def test_send_raw_returns_the_201_reply(csms201: Csms) -> None:
    async with station(csms201) as ws:

        async def refuse() -> list[Any]:
            request = await next_frame(ws)
            await ws.send(json.dumps([4, request[1], "OccurrenceConstraintViolation", "", {}]))
            return request

        refusing = asyncio.create_task(refuse())
        reply = await csms201.send_raw("CS1", '[2, "raw-1", "Reset", {"type": "Sideways"}]')
        request = await refusing
    assert request == [2, "raw-1", "Reset", {"type": "Sideways"}]
    assert reply == [4, "raw-1", "OccurrenceConstraintViolation", "", {}]


async def test_stop_with_a_201_client_connected_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    server = Csms(CsmsBehaviour(boot_status="Pending"), subprotocols=(V201, V16))
    await server.start()
    async with station(server) as ws:
        await rpc(ws, "BootNotification", BOOT)
        await server.stop()
        assert not server.connected("CS1")
        with pytest.raises(ConnectionClosed):
            await next_frame(ws)
    assert asyncio.all_tasks() == before


async def test_standalone_module_serves_the_chosen_version() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.csms", "--port", "0", "--version", "2.0.1",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            banner = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
            url = banner.split()[-1].removesuffix("/<cp-id>")
            with pytest.raises(InvalidStatus):
                async with connect(f"{url}/CP8", subprotocols=[Subprotocol(V16)]):
                    pass
            async with connect(f"{url}/CP9", subprotocols=[Subprotocol(V201)]) as ws:
                reply = await rpc(ws, "BootNotification", BOOT, unique_id="b9")
            process.send_signal(signal.SIGINT)
            await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert banner.startswith("CSMS listening on ws://127.0.0.1:")
    assert reply[:2] == [3, "b9"] and reply[2]["status"] == "Accepted"
    assert process.returncode == 0
