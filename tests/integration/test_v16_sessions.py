"""OCPP 1.6J charging sessions end to end: the real agent on simulated hardware, a real
CSMS (the `ocpp` library's server side) over websockets on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation, until


def statuses(csms: Csms, connector: int = 1) -> list[str]:
    """The statuses the CSMS received for a connector, in order.

    A SuspendedEV between Preparing and Charging is left out: it is reported only when
    the car takes a moment to answer the PWM, which depends on timing.
    """
    seen = [
        p["status"]
        for p in csms.calls("StatusNotification", CP_ID)
        if p["connectorId"] == connector
    ]
    return [
        status
        for index, status in enumerate(seen)
        if not (
            status == "SuspendedEV"
            and 0 < index < len(seen) - 1
            and seen[index - 1] == "Preparing"
            and seen[index + 1] == "Charging"
        )
    ]


def actions(csms: Csms) -> list[str]:
    """Every action the CSMS received, in order."""
    return [r.action for r in csms.received]


async def test_plug_in_first_session(csms: Csms, station: RunningStation) -> None:
    station.plug(soc_percent=30)
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    station.tap("CARD-001")

    authorize = await csms.wait_for("Authorize")
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    assert station.agent.hardware[1].plant.contactor_closed
    meter = await csms.wait_for("MeterValues", count=2)
    station.unplug()
    stop = await csms.wait_for("StopTransaction")
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["status"] == "Available" and p["connectorId"] == 1,
    )

    assert authorize == {"idTag": "CARD-001"}
    assert start["connectorId"] == 1 and start["idTag"] == "CARD-001"
    assert meter["transactionId"] == 1
    assert stop["transactionId"] == 1
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] > start["meterStart"]
    assert not station.agent.hardware[1].plant.contactor_closed
    assert statuses(csms) == ["Available", "Preparing", "Charging", "Available"]
    assert actions(csms).count("StartTransaction") == 1
    assert actions(csms).count("StopTransaction") == 1


async def test_authorize_first_session_stopped_by_the_same_card(
    csms: Csms, station: RunningStation
) -> None:
    station.tap("CARD-002")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    station.plug()
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    station.tap("CARD-002")
    stop = await csms.wait_for("StopTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Finishing")
    assert not station.agent.hardware[1].plant.contactor_closed
    station.unplug()
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["status"] == "Available" and p["connectorId"] == 1,
    )

    assert start["idTag"] == "CARD-002"
    assert stop["reason"] == "Local"
    assert stop["idTag"] == "CARD-002"
    assert statuses(csms) == ["Available", "Preparing", "Charging", "Finishing", "Available"]


async def test_rejected_card_starts_nothing(csms: Csms, station: RunningStation) -> None:
    csms.behaviour.accepted_tags = {"GOOD"}
    station.plug()
    station.tap("BAD-CARD")
    await csms.wait_for("Authorize")
    await until(station.agent, lambda: not station.agent.station.evses[1].authorizing)
    assert station.agent.station.evses[1].tx is None
    station.tap("GOOD", evse_id=1)
    await csms.wait_for("StartTransaction")
    assert [p["idTag"] for p in csms.calls("Authorize")] == ["BAD-CARD", "GOOD"]
    assert csms.calls("StartTransaction")[0]["idTag"] == "GOOD"


async def test_remote_start_and_remote_stop(csms: Csms, station: RunningStation) -> None:
    station.plug()
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    answer = await csms.call(
        CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "APP-USER"}
    )
    assert answer == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    answer = await csms.call(CP_ID, "RemoteStopTransaction", {"transactionId": 1})
    assert answer == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction")
    assert start["idTag"] == "APP-USER"
    assert stop["reason"] == "Remote"
    assert csms.calls("Authorize") == []  # AuthorizeRemoteTxRequests is false by default


async def test_remote_start_authorizes_first_when_configured(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(
        CP_ID, "ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "true"}
    )
    csms.behaviour.accepted_tags = set()
    answer = await csms.call(CP_ID, "RemoteStartTransaction", {"idTag": "BLOCKED"})
    assert answer == {"status": "Accepted"}
    assert await csms.wait_for("Authorize") == {"idTag": "BLOCKED"}
    csms.behaviour.accepted_tags = {"OK"}
    await csms.call(CP_ID, "RemoteStartTransaction", {"idTag": "OK"})
    await csms.wait_for("Authorize", count=2)
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    station.plug()
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "OK"


async def test_remote_stop_of_unknown_transaction_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    assert await csms.call(CP_ID, "RemoteStopTransaction", {"transactionId": 99}) == {
        "status": "Rejected"
    }
    answer = await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 7, "idTag": "X"})
    assert answer == {"status": "Rejected"}


async def test_remote_start_on_a_busy_connector_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    station.plug()
    await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "A"})
    await csms.wait_for("StartTransaction")
    answer = await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "B"})
    assert answer == {"status": "Rejected"}


async def test_meter_values_carry_the_sampled_measurands(
    csms: Csms, station: RunningStation
) -> None:
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
    await csms.call(
        CP_ID, "ChangeConfiguration", {"key": "MeterValuesSampledData", "value": measurands}
    )
    station.plug(soc_percent=40)
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    meter = await csms.wait_for("MeterValues", where=lambda p: _has(p, "Current.Import", "L3"))
    values = meter["meterValue"][0]["sampledValue"]
    by_measurand: dict[str, list[dict[str, Any]]] = {}
    for value in values:
        by_measurand.setdefault(value["measurand"], []).append(value)
    assert set(by_measurand) == set(measurands.split(","))
    assert [v["phase"] for v in by_measurand["Current.Import"]] == ["L1", "L2", "L3"]
    assert all(float(v["value"]) > 0 for v in by_measurand["Current.Import"])
    assert by_measurand["SoC"][0]["unit"] == "Percent"
    assert all(v["context"] == "Sample.Periodic" for v in values)


def _has(payload: dict[str, Any], measurand: str, phase: str) -> bool:
    return any(
        v.get("measurand") == measurand and v.get("phase") == phase and float(v["value"]) > 0
        for mv in payload["meterValue"]
        for v in mv["sampledValue"]
    )


async def test_stop_transaction_carries_stop_txn_sampled_data(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(
        CP_ID,
        "ChangeConfiguration",
        {"key": "StopTxnSampledData", "value": "Energy.Active.Import.Register"},
    )
    station.plug()
    station.tap("CARD")
    await csms.wait_for("MeterValues", count=2)
    station.unplug()
    stop = await csms.wait_for("StopTransaction")
    data = stop["transactionData"]
    registers = [float(v["value"]) for mv in data for v in mv["sampledValue"]]
    assert len(registers) >= 2
    assert registers == sorted(registers)
    assert registers[-1] <= stop["meterStop"] + 1


async def test_full_ev_suspends_then_unplug_stops(csms: Csms, station: RunningStation) -> None:
    station.plug(battery_wh=300, soc_percent=99)
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    # At 60x time, a 300 Wh battery one percent short fills within a few seconds.
    suspended_so_far = [p["status"] for p in csms.calls("StatusNotification", CP_ID)].count(
        "SuspendedEV"
    )
    await csms.wait_for(
        "StatusNotification",
        count=suspended_so_far + 1,
        where=lambda p: p["status"] == "SuspendedEV",
    )
    assert not station.agent.hardware[1].plant.contactor_closed
    station.unplug()
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"


async def test_fault_mid_session_opens_contactor_and_reports_faulted(
    csms: Csms, station: RunningStation
) -> None:
    from drivers.types import FaultCode

    station.plug()
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    plant = station.agent.hardware[1].plant
    plant.raise_fault(FaultCode.RCD_TRIP, "30 mA residual current")
    faulted = await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert faulted["errorCode"] == "GroundFailure"
    assert not plant.contactor_closed
    plant.clear_fault(FaultCode.RCD_TRIP)
    await csms.wait_for("StatusNotification", count=2, where=lambda p: p["status"] == "Charging")
    assert plant.contactor_closed
    await until(station.agent, lambda: plant.contactor_closed)


async def test_clock_aligned_meter_values_outside_and_inside_a_transaction(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "0"})
    await csms.call(
        CP_ID,
        "ChangeConfiguration",
        {"key": "StopTxnAlignedData", "value": "Energy.Active.Import.Register"},
    )
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "ClockAlignedDataInterval", "value": "1"})
    idle = await csms.wait_for("MeterValues")
    assert "transactionId" not in idle
    assert idle["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
    assert idle["meterValue"][0]["timestamp"].endswith(".000Z")  # on the second boundary

    station.plug()
    station.tap("CARD")
    await csms.wait_for("StartTransaction")
    in_tx = await csms.wait_for("MeterValues", where=lambda p: "transactionId" in p)
    assert in_tx["transactionId"] == 1
    assert in_tx["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
    station.unplug()
    stop = await csms.wait_for("StopTransaction")
    contexts = {v["context"] for mv in stop["transactionData"] for v in mv["sampledValue"]}
    assert contexts == {"Sample.Clock"}
