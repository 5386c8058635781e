"""OCPP 2.0.1 transactions end to end: the real agent against the test CSMS speaking
ocpp2.0.1 over real websockets on 127.0.0.1 (blocks E and F, meter values of block J).

Each test asserts on the TransactionEvents the CSMS received: their order, seqNo,
triggerReason, chargingState, idToken, transaction id and meter values. Names carry the
2.0.1 use case they pin (E02: cable plugged in first, F01: remote start...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent.core.events import IdToken
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID, until
from tests.integration.v201_station import RunningStation201

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]


def events(csms: Csms) -> list[dict[str, Any]]:
    """Every TransactionEvent the CSMS received, in order."""
    return csms.calls("TransactionEvent")


def of_type(csms: Csms, event_type: str) -> list[dict[str, Any]]:
    """The TransactionEvents of one eventType."""
    return [e for e in events(csms) if e["eventType"] == event_type]


def assert_one_whole_transaction(csms: Csms) -> list[dict[str, Any]]:
    """One Started, then Updated ones, one Ended; seqNo 0, 1, 2... and one transaction id."""
    received = events(csms)
    kinds = [e["eventType"] for e in received]
    assert kinds[0] == "Started" and kinds[-1] == "Ended", kinds
    assert kinds.count("Started") == 1 and kinds.count("Ended") == 1, kinds
    assert [e["seqNo"] for e in received] == list(range(len(received)))
    assert len({e["transactionInfo"]["transactionId"] for e in received}) == 1
    return received


def is_event(event_type: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactionEvent filter by eventType."""
    return lambda e: e["eventType"] == event_type


def register_wh(event: dict[str, Any]) -> float:
    """The Energy.Active.Import.Register of an event's first meter value."""
    values = event["meterValue"][0]["sampledValue"]
    (energy,) = [v for v in values if v["measurand"] == "Energy.Active.Import.Register"]
    return float(energy["value"])


# -- E01-E03, E06: start and stop points ------------------------------------------------------


@pytest.mark.parametrize(
    ("start_point", "started_by"),
    [
        ("PowerPathClosed", "Authorized"),
        ("EVConnected", "CablePluggedIn"),
        ("Authorized", "Authorized"),
        ("EnergyTransfer", "ChargingStateChanged"),
    ],
)
async def test_e01_full_session_for_each_tx_start_point(
    csms201: Csms, start: Start, start_point: str, started_by: str
) -> None:
    """E01/E02: plug in, tap, charge, unplug: one transaction from Started to Ended, with
    the trigger of its start point, the token, Charging, and EVDisconnected at the end."""
    running = await start(settings={"TxCtrlr/TxStartPoint": start_point})
    running.plug()
    running.tap("CARD-201")
    await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["transactionInfo"].get("chargingState") == "Charging"
    )
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")

    received = assert_one_whole_transaction(csms201)
    started, ended = received[0], received[-1]
    assert started["triggerReason"] == started_by
    assert started["evse"] == {"id": 1, "connectorId": 1}
    with_token = [e for e in received if "idToken" in e]
    assert with_token and with_token[0]["idToken"] == {"idToken": "CARD-201", "type": "ISO14443"}
    if start_point == "EVConnected":  # the token came after the start: an Updated says so
        assert "idToken" not in started
        assert with_token[0]["triggerReason"] == "Authorized"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert register_wh(ended) >= register_wh(started)
    assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    assert ended["meterValue"][-1]["sampledValue"][0]["context"] == "Transaction.End"


async def test_e03_authorized_start_without_a_car_ends_with_ev_connect_timeout(
    csms201: Csms, start: Start
) -> None:
    """E03: TxStartPoint Authorized starts at the tap; no car within EVConnectionTimeOut
    ends it with stoppedReason Timeout."""
    running = await start(
        settings={"TxCtrlr/TxStartPoint": "Authorized", "TxCtrlr/EVConnectionTimeOut": "1"}
    )
    running.tap("NO-CAR")
    ended = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Ended", timeout_s=15
    )
    assert_one_whole_transaction(csms201)
    assert ended["transactionInfo"]["stoppedReason"] == "Timeout"
    assert ended["triggerReason"] == "EVConnectTimeout"


async def test_e07_same_token_stops_the_transaction_locally(csms201: Csms, start: Start) -> None:
    """E07: the driver's second tap ends it: StopAuthorized, stoppedReason Local."""
    running = await start()
    running.plug()
    running.tap("CARD-201")
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Started")
    running.agent.station.present_token(1, IdToken("CARD-201"))  # a second tap (no debounce)
    ended = await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
    assert_one_whole_transaction(csms201)
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["idToken"]["idToken"] == "CARD-201"


async def test_e01_periodic_meter_values_in_updated_events(csms201: Csms, start: Start) -> None:
    """J02/E01: every TxUpdatedInterval an Updated event (MeterValuePeriodic) with the
    TxUpdatedMeasurands, registers never decreasing."""
    running = await start(settings={"SampledDataCtrlr/TxUpdatedInterval": "1"})
    running.plug()
    running.tap("CARD-201")
    periodic = lambda e: e["triggerReason"] == "MeterValuePeriodic"  # noqa: E731
    await csms201.wait_for("TransactionEvent", where=periodic, count=2)
    samples = [e for e in events(csms201) if periodic(e)]
    measurands = {v["measurand"] for v in samples[0]["meterValue"][0]["sampledValue"]}
    assert {"Energy.Active.Import.Register", "Power.Active.Import"} <= measurands
    assert all(
        v["context"] == "Sample.Periodic" for v in samples[0]["meterValue"][0]["sampledValue"]
    )
    registers = [register_wh(e) for e in samples]
    assert registers == sorted(registers)


# -- F01-F03: remote start and stop -------------------------------------------------------------


@pytest.fixture
def remote(csms201: Csms) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Send RequestStartTransaction for a token (type Central)."""

    async def request(token: str, remote_start_id: int, evse_id: int | None = 1) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "idToken": {"idToken": token, "type": "Central"},
            "remoteStartId": remote_start_id,
        }
        if evse_id is not None:
            payload["evseId"] = evse_id
        return await csms201.call(CP, "RequestStartTransaction", payload)

    return request


async def test_f02_remote_start_then_plug_in_then_remote_stop(
    csms201: Csms, start: Start, remote: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    """F02/F03: the remote start's id and trigger are on the Started event; a
    RequestStopTransaction by the station's transaction id ends it with Remote."""
    running = await start()
    assert (await remote("APP-USER", 42))["status"] == "Accepted"
    running.plug()
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    # PowerPathClosed: the plug-in completes it (the remote start only authorized it).
    assert started["triggerReason"] == "CablePluggedIn"
    assert started["transactionInfo"]["remoteStartId"] == 42
    assert started["idToken"] == {"idToken": "APP-USER", "type": "Central"}

    transaction_id = started["transactionInfo"]["transactionId"]
    stop = await csms201.call(CP, "RequestStopTransaction", {"transactionId": transaction_id})
    assert stop == {"status": "Accepted"}
    ended = await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert_one_whole_transaction(csms201)
    unknown = await csms201.call(CP, "RequestStopTransaction", {"transactionId": "nope"})
    assert unknown == {"status": "Rejected"}


async def test_f01_cable_first_remote_start_answers_the_running_transaction_id(
    csms201: Csms, start: Start, remote: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    """F01 with TxStartPoint EVConnected: the transaction runs from the plug-in; the
    remote start answers its id, and an Updated (RemoteStart) brings token and id."""
    running = await start(settings={"TxCtrlr/TxStartPoint": "EVConnected"})
    running.plug()
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    answer = await remote("APP-USER", 7)
    assert answer == {
        "status": "Accepted",
        "transactionId": started["transactionInfo"]["transactionId"],
    }
    update = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["triggerReason"] == "RemoteStart"
    )
    assert update["eventType"] == "Updated"
    assert update["idToken"]["idToken"] == "APP-USER"
    assert update["transactionInfo"]["remoteStartId"] == 7


async def test_e05_token_refused_in_the_transaction_event_answer_stops_it(
    csms201: Csms, start: Start, remote: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    """E05/C10: started without asking (AuthorizeRemoteStart false); the CSMS answers the
    Started event with Invalid: with StopTxOnInvalidId the transaction ends DeAuthorized."""
    csms201.behaviour.accepted_tags = {"SOMEONE-ELSE"}
    running = await start(settings={"AuthCtrlr/AuthorizeRemoteStart": "false"})
    running.plug()
    assert (await remote("STOLEN", 1))["status"] == "Accepted"
    ended = await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert ended["triggerReason"] == "Deauthorized"
    assert not csms201.calls("Authorize")


# -- E04/E12, E14: offline, status --------------------------------------------------------------


async def test_e04_offline_transaction_is_replayed_in_order_with_the_offline_flag(
    start: Start, csms201: Csms
) -> None:
    """E04/E12: a whole transaction while the CSMS is down is delivered once it is back,
    in order, seqNo continuous from 0, every event flagged offline."""
    running = await start(
        settings={
            "AuthCtrlr/OfflineTxForUnknownIdEnabled": "true",
            "AuthCtrlr/LocalAuthorizeOffline": "true",
            "SampledDataCtrlr/TxUpdatedInterval": "1",
        }
    )
    agent = running.agent
    port = csms201.port
    await csms201.stop()
    await until(agent, lambda: not agent.adapter.online)
    running.plug()
    running.tap("OFFLINE-CARD")
    await until(agent, lambda: agent.station.evses[1].tx is not None)
    local_id = agent.station.evses[1].tx.local_id  # type: ignore[union-attr]
    await until(agent, lambda: len(agent.store.tx_entries(local_id)) >= 4)
    running.unplug()
    await until(agent, lambda: agent.station.evses[1].tx is None)

    async with Csms(CsmsBehaviour(), port=port, subprotocols=("ocpp2.0.1",)) as back:
        await back.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
        await until(agent, lambda: agent.store.pending_count() == 0)
        received = assert_one_whole_transaction(back)
    assert all(e.get("offline") is True for e in received)
    assert received[0]["idToken"]["idToken"] == "OFFLINE-CARD"
    assert received[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"


async def test_e14_get_transaction_status(csms201: Csms, start: Start) -> None:
    """E14: ongoing while it runs, not after; no messages left in the queue once delivered."""
    running = await start()
    running.plug()
    running.tap("CARD-201")
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    transaction_id = started["transactionInfo"]["transactionId"]
    status = await csms201.call(CP, "GetTransactionStatus", {"transactionId": transaction_id})
    assert status["ongoingIndicator"] is True
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
    agent = running.agent
    await until(agent, lambda: agent.store.pending_count() == 0)
    status = await csms201.call(CP, "GetTransactionStatus", {"transactionId": transaction_id})
    assert status == {"ongoingIndicator": False, "messagesInQueue": False}
    overall = await csms201.call(CP, "GetTransactionStatus", {})
    assert overall == {"messagesInQueue": False}


# -- F05, F06: unlock and triggers --------------------------------------------------------------


async def test_f05_unlock_refused_during_an_authorized_transaction(
    csms201: Csms, start: Start
) -> None:
    """F05.FR.02: OngoingAuthorizedTransaction while charging; Unlocked once idle;
    an unknown connector is UnknownConnector."""
    running = await start()
    running.plug()
    running.tap("CARD-201")
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Started")
    busy = await csms201.call(CP, "UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert busy == {"status": "OngoingAuthorizedTransaction"}
    assert running.agent.hardware[1].lock.locked  # type: ignore[union-attr]
    running.unplug()
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Ended")
    idle = await csms201.call(CP, "UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert idle == {"status": "Unlocked"}
    unknown = await csms201.call(CP, "UnlockConnector", {"evseId": 1, "connectorId": 9})
    assert unknown == {"status": "UnknownConnector"}


async def test_f06_trigger_transaction_event_and_meter_values(csms201: Csms, start: Start) -> None:
    """F06: a triggered TransactionEvent is an Updated (Trigger) with a meter value, in
    the transaction's sequence; a triggered MeterValues reports the EVSE's meter."""
    running = await start()
    running.plug()
    running.tap("CARD-201")
    await csms201.wait_for("TransactionEvent", where=lambda e: e["eventType"] == "Started")
    answer = await csms201.call(CP, "TriggerMessage", {"requestedMessage": "TransactionEvent"})
    assert answer == {"status": "Accepted"}
    triggered = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["triggerReason"] == "Trigger"
    )
    assert triggered["eventType"] == "Updated"
    assert triggered["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    answer = await csms201.call(
        CP, "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}
    )
    assert answer == {"status": "Accepted"}
    meter = await csms201.wait_for("MeterValues")
    assert meter["evseId"] == 1
    assert meter["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


async def test_e05_refused_token_with_stop_tx_on_invalid_id_false_suspends_energy(
    csms201: Csms, start: Start, remote: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    """E05 with StopTxOnInvalidId false (MaxEnergyOnInvalidId 0): the transaction goes
    on, energy stops: an Updated event says SuspendedEVSE and the contactor is open."""
    csms201.behaviour.accepted_tags = {"SOMEONE-ELSE"}
    running = await start(
        settings={"AuthCtrlr/AuthorizeRemoteStart": "false", "TxCtrlr/StopTxOnInvalidId": "false"}
    )
    running.plug()
    assert (await remote("STOLEN", 2))["status"] == "Accepted"
    await csms201.wait_for(
        "TransactionEvent",
        where=lambda e: e["transactionInfo"].get("chargingState") == "SuspendedEVSE",
    )
    agent = running.agent
    await until(agent, lambda: not agent.hardware[1].plant.contactor_closed)  # type: ignore[union-attr]
    assert agent.station.evses[1].tx is not None
    assert not of_type(csms201, "Ended")


async def test_e02_a_significant_change_of_the_offered_limit_is_charging_rate_changed(
    csms201: Csms, start: Start
) -> None:
    """A local limit (an energy manager) cuts the offered current by half during the
    transaction: an Updated event with triggerReason ChargingRateChanged; a change below
    LimitChangeSignificance (10 %) sends nothing."""
    running = await start()
    running.plug()
    running.tap("CARD-RATE")
    await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["transactionInfo"].get("chargingState") == "Charging"
    )
    smart = running.agent.station.smart
    offered = running.agent.station.evses[1].limit_a
    smart.set_evse_cap("ems", 1, offered * 0.95)  # within the significance: not told
    smart.set_evse_cap("ems", 1, offered / 2)
    changed = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["triggerReason"] == "ChargingRateChanged"
    )
    assert changed["eventType"] == "Updated"
    assert running.agent.hardware[1].plant.offered_current_a == pytest.approx(offered / 2, abs=0.5)
    rate_events = [e for e in events(csms201) if e["triggerReason"] == "ChargingRateChanged"]
    assert len(rate_events) == 1
