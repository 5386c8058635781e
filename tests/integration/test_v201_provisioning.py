"""OCPP 2.0.1 provisioning and availability end to end: the real agent with the 2.0.1
adapter against the test CSMS speaking ocpp2.0.1 over real websockets on 127.0.0.1.

Names follow the OCTT 2.0.1 charging station test cases where one matches (test_tc_b_01_cs
is TC_B_01_CS, Cold Boot - Accepted), else the behaviour; requirement ids in docstrings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import OCPPError

from agent.core.ports import StopReason
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.device_model import wire_size
from agent.ocpp.v201.device_requests import NOTIFY_REPORT_FRAME_BYTES
from agent.ocpp.v201.reports import base_report
from simulator.csms import Csms
from tests.integration.conftest import CP_ID
from tests.integration.v201_station import (
    RunningStation201,
    actions_before,
    get_values,
    is_status,
    set_values,
    start_station,
    start_transaction,
    value_of,
    variable,
)

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]
CUSTOM_DATA = {"vendorId": "org.cpagent.test", "note": "ignored"}


@pytest.fixture
async def start(csms201: Csms, tmp_path: Path) -> AsyncIterator[Start]:
    """Start 2.0.1 stations (make_config kwargs, install_settings, vendor_handlers)."""
    started: list[RunningStation201] = []

    async def factory(**kwargs: Any) -> RunningStation201:
        running = await start_station(csms201, tmp_path, **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        await running.stop()


@pytest.fixture
async def booted(csms201: Csms, start: Start) -> RunningStation201:
    """One accepted station with one EVSE whose status snapshot has arrived."""
    running = await start()
    await csms201.wait_for("StatusNotification")
    return running


# -- B01-B04: registration -----------------------------------------------------------------


async def test_tc_b_01_cs_cold_boot_accepted(csms201: Csms, start: Start) -> None:
    """B01: BootNotification (PowerUp, the station's identity), the interval becomes the
    HeartbeatInterval, then every connector's status."""
    csms201.behaviour.boot_interval_s = 120
    await start(evses=2)
    boot = await csms201.wait_for("BootNotification")
    assert boot == {
        "reason": "PowerUp",
        "chargingStation": {"model": "test", "vendorName": "cpagent"},
    }
    await csms201.wait_for("StatusNotification", where=is_status("Available", 1))
    await csms201.wait_for("StatusNotification", where=is_status("Available", 2))
    assert actions_before(csms201, "BootNotification", 1) == []
    assert await value_of(csms201, "OCPPCommCtrlr", "HeartbeatInterval") == "120"


async def test_tc_b_02_cs_pending_answers_provisioning_and_sends_only_boot(
    csms201: Csms, start: Start
) -> None:
    """B02: while Pending the CSMS may read and set variables; anything else is refused;
    the station sends nothing but BootNotification until a triggered one is Accepted."""
    csms201.behaviour.boot_status = "Pending"
    running = await start()
    await csms201.wait_for("BootNotification")
    await running.agent.wait_until(lambda: running.adapter.registration == "Pending")

    assert await value_of(csms201, "ChargingStation", "Model") == "test"
    assert await set_values(csms201, variable("TxCtrlr", "EVConnectionTimeOut", value="75")) == [
        "Accepted"
    ]
    with pytest.raises(OCPPError) as refused:
        await csms201.call(CP, "ChangeAvailability", {"operationalStatus": "Inoperative"})
    assert refused.value.code == "SecurityError"

    csms201.behaviour.boot_status = "Accepted"
    answer = await csms201.call(CP, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert answer == {"status": "Accepted"}
    second = await csms201.wait_for("BootNotification", count=2)
    assert second["reason"] == "Triggered"
    await csms201.wait_for("StatusNotification", where=is_status("Available"))
    assert set(actions_before(csms201, "BootNotification", 2)) == {"BootNotification"}
    assert running.agent.station.policy.connection_timeout_s == 75


async def test_tc_b_03_cs_rejected_refuses_requests_and_retries_at_interval(
    csms201: Csms, start: Start
) -> None:
    """B03: while Rejected every request is a SecurityError and nothing is sent until the
    interval has passed; the retry is Accepted and the station reports."""
    csms201.behaviour.boot_status = "Rejected"
    csms201.behaviour.boot_interval_s = 1
    running = await start()
    await csms201.wait_for("BootNotification")
    await running.agent.wait_until(lambda: running.adapter.registration == "Rejected")
    with pytest.raises(OCPPError) as refused:
        await get_values(csms201, variable("OCPPCommCtrlr", "HeartbeatInterval"))
    assert refused.value.code == "SecurityError"

    csms201.behaviour.boot_status = "Accepted"
    second = await csms201.wait_for("BootNotification", count=2)
    assert second["reason"] == "PowerUp"
    await csms201.wait_for("StatusNotification", where=is_status("Available"))
    assert set(actions_before(csms201, "BootNotification", 2)) == {"BootNotification"}


async def test_reconnect_reports_changes_only_without_new_boot(csms201: Csms, start: Start) -> None:
    """B04: a lost connection is not a reboot; statuses that changed while offline (less
    than OfflineThreshold) are sent, unchanged ones are not sent again."""
    running = await start(evses=2)
    await csms201.wait_for("StatusNotification", where=is_status("Available", 2))
    await csms201.disconnect(CP)
    running.plug(2)  # EVSE 2 comes last in any snapshot: nothing can follow its status
    await csms201.wait_connected(CP)
    await csms201.wait_for("StatusNotification", where=is_status("Occupied", 2))
    assert len(csms201.calls("BootNotification")) == 1
    statuses = [(p["evseId"], p["connectorStatus"]) for p in csms201.calls("StatusNotification")]
    assert sorted(statuses) == [(1, "Available"), (2, "Available"), (2, "Occupied")]


# -- B05/B06: variables -----------------------------------------------------------------


async def test_tc_b_06_07_32_33_34_cs_get_variables_every_status(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B06: one result per item, in order, each with its own status; WriteOnly values are
    never disclosed (B06.FR.09); customData is accepted."""
    answer = await csms201.call(
        CP,
        "GetVariables",
        {
            "customData": CUSTOM_DATA,
            "getVariableData": [
                variable("OCPPCommCtrlr", "HeartbeatInterval"),
                variable("EVSE", "AvailabilityState", evse=1),
                variable("NoSuchCtrlr", "HeartbeatInterval"),
                variable("OCPPCommCtrlr", "NoSuchVariable"),
                variable("OCPPCommCtrlr", "HeartbeatInterval", attribute="Target"),
                variable("SecurityCtrlr", "BasicAuthPassword"),
            ],
        },
    )
    results = answer["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted",
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
        "Rejected",
    ]
    assert results[0]["attributeValue"] == "300"
    assert results[1]["attributeValue"] == "Available"
    assert "attributeValue" not in results[5]


async def test_tc_b_09_10_11_35_36_37_39_cs_set_variables_every_status(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B05: each item answered on its own; an out-of-bounds value is Rejected and never
    applied (B05.FR.08); a value needing a reboot says so."""
    statuses = await set_values(
        csms201,
        variable("TxCtrlr", "EVConnectionTimeOut", value="90"),
        variable("TxCtrlr", "EVConnectionTimeOut", value="0"),
        variable("SampledDataCtrlr", "TxUpdatedInterval", value="ten"),
        variable("NoSuchCtrlr", "Enabled", value="true"),
        variable("TxCtrlr", "NoSuchVariable", value="1"),
        variable("TxCtrlr", "EVConnectionTimeOut", value="5", attribute="MaxSet"),
        variable("ChargingStation", "Model", value="other"),
        variable("OCPPCommCtrlr", "WebSocketPingInterval", value="45"),
    )
    assert statuses == [
        "Accepted",
        "Rejected",
        "Rejected",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
        "Rejected",
        "RebootRequired",
    ]
    assert await value_of(csms201, "TxCtrlr", "EVConnectionTimeOut") == "90"
    assert await value_of(csms201, "SampledDataCtrlr", "TxUpdatedInterval") == "60"
    assert await value_of(csms201, "ChargingStation", "Model") == "test"
    policy = booted.agent.station.policy
    assert (policy.connection_timeout_s, policy.sample_interval_s) == (90, 60)
    assert booted.adapter.ping_interval_s() == 45  # for the next connection


async def test_set_variables_drive_the_core_policy(
    csms201: Csms, booted: RunningStation201
) -> None:
    """EVConnectionTimeOut, TxUpdatedInterval, AlignedDataCtrlr.Interval and
    StopTxOnEVSideDisconnect are what the core acts on."""
    statuses = await set_values(
        csms201,
        variable("TxCtrlr", "EVConnectionTimeOut", value="45"),
        variable("SampledDataCtrlr", "TxUpdatedInterval", value="15"),
        variable("AlignedDataCtrlr", "Interval", value="900"),
        variable("TxCtrlr", "StopTxOnEVSideDisconnect", value="false"),
    )
    assert statuses == ["Accepted"] * 4
    policy = booted.agent.station.policy
    assert policy.connection_timeout_s == 45
    assert policy.sample_interval_s == 15
    assert policy.aligned_interval_s == 900
    assert policy.stop_tx_on_ev_disconnect is False


async def test_heartbeat_interval_change_takes_effect(
    csms201: Csms, booted: RunningStation201
) -> None:
    """A new HeartbeatInterval restarts the heartbeat with that interval."""
    assert await set_values(csms201, variable("OCPPCommCtrlr", "HeartbeatInterval", value="1")) == [
        "Accepted"
    ]
    await csms201.wait_for("Heartbeat", timeout_s=5)


async def test_set_variables_persist_across_restart(
    csms201: Csms, booted: RunningStation201
) -> None:
    """Values set at runtime survive a restart over the same store (and act again)."""
    statuses = await set_values(
        csms201,
        variable("TxCtrlr", "EVConnectionTimeOut", value="90"),
        variable("TxCtrlr", "StopTxOnEVSideDisconnect", value="false"),
    )
    assert statuses == ["Accepted", "Accepted"]
    await booted.restart()
    await csms201.wait_for("BootNotification", count=2)
    await booted.agent.wait_until(lambda: booted.adapter.online)
    assert await value_of(csms201, "TxCtrlr", "EVConnectionTimeOut") == "90"
    assert await value_of(csms201, "TxCtrlr", "StopTxOnEVSideDisconnect") == "false"
    policy = booted.agent.station.policy
    assert (policy.connection_timeout_s, policy.stop_tx_on_ev_disconnect) == (90, False)


async def test_requests_above_device_data_limits_are_the_callerrors_they_name(
    csms201: Csms, start: Start
) -> None:
    """B06.FR.16 / B05: more items than ItemsPerMessage is OccurrenceConstraintViolation,
    more bytes than BytesPerMessage FormatViolation, and nothing of it is applied."""
    await start(
        install_settings={
            "DeviceDataCtrlr/ItemsPerMessage(GetVariables)": "2",
            "DeviceDataCtrlr/BytesPerMessage(SetVariables)": "150",
        }
    )
    await csms201.wait_for("StatusNotification")
    heartbeat = variable("OCPPCommCtrlr", "HeartbeatInterval")
    with pytest.raises(OCPPError) as too_many:
        await get_values(csms201, heartbeat, heartbeat, heartbeat)
    assert too_many.value.code == "OccurrenceConstraintViolation"
    with pytest.raises(OCPPError) as too_big:
        await set_values(
            csms201,
            variable("TxCtrlr", "EVConnectionTimeOut", value="99"),
            variable("OCPPCommCtrlr", "HeartbeatInterval", value="99"),
        )
    assert too_big.value.code == "FormatViolation"
    assert await value_of(csms201, "TxCtrlr", "EVConnectionTimeOut") == "60"


async def test_schema_violation_is_answered_with_the_2_0_1_code(
    csms201: Csms, booted: RunningStation201
) -> None:
    """A request missing a required field is an OccurrenceConstraintViolation (2.0.1)."""
    reply = await csms201.send_raw(CP, json.dumps([2, "bad-1", "SetVariables", {}]))
    assert reply is not None
    assert reply[:3] == [4, "bad-1", "OccurrenceConstraintViolation"]


# -- B07/B08: reports ----------------------------------------------------------------------


async def test_tc_b_13_cs_full_inventory_in_ordered_notify_reports(
    csms201: Csms, start: Start
) -> None:
    """B07: GetBaseReport is answered first, then NotifyReports with the requestId
    echoed, seqNo 0.., tbc on all but the last, each within the GetReport limits."""
    limits = {
        "DeviceDataCtrlr/ItemsPerMessage(GetReport)": "7",
        "DeviceDataCtrlr/BytesPerMessage(GetReport)": "3000",
    }
    running = await start(install_settings=limits)
    await csms201.wait_for("StatusNotification")
    answer = await csms201.call(
        CP, "GetBaseReport", {"requestId": 42, "reportBase": "FullInventory"}
    )
    assert answer == {"status": "Accepted"}
    last = await csms201.wait_for(
        "NotifyReport", where=lambda p: p["requestId"] == 42 and not p.get("tbc", False)
    )
    reports = [p for p in csms201.calls("NotifyReport") if p["requestId"] == 42]
    assert reports[-1] == last
    assert [p["seqNo"] for p in reports] == list(range(len(reports)))
    assert [p.get("tbc", False) for p in reports] == [True] * (len(reports) - 1) + [False]
    for payload in reports:
        assert len(payload["reportData"]) <= 7
        assert wire_size(payload) + NOTIFY_REPORT_FRAME_BYTES <= 3000
    items = [item for p in reports for item in p["reportData"]]
    assert len(items) == len(base_report(running.adapter.model, "FullInventory"))
    assert len(reports) > 1

    frames = [json.loads(text) for _direction, text in csms201.frames(CP)]
    request_id = next(f[1] for f in frames if f[0] == 2 and f[2] == "GetBaseReport")
    answered_at = next(i for i, f in enumerate(frames) if f[0] == 3 and f[1] == request_id)
    first_report_at = next(i for i, f in enumerate(frames) if f[0] == 2 and f[2] == "NotifyReport")
    assert answered_at < first_report_at


async def test_tc_b_18_cs_get_report_with_criteria_and_component_variable(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B08: the selected variables of components meeting a criterion are reported;
    nothing matching is EmptyResultSet and no NotifyReport (B08.FR.15)."""
    selection = [
        {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"},
        }
    ]
    answer = await csms201.call(
        CP,
        "GetReport",
        {"requestId": 5, "componentCriteria": ["Available"], "componentVariable": selection},
    )
    assert answer == {"status": "Accepted"}
    report = await csms201.wait_for("NotifyReport", where=lambda p: p["requestId"] == 5)
    (item,) = report["reportData"]
    assert item["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert item["variableAttribute"][0]["value"] == "Available"

    empty = await csms201.call(
        CP,
        "GetReport",
        {"requestId": 6, "componentCriteria": ["Problem"], "componentVariable": selection},
    )
    assert empty == {"status": "EmptyResultSet"}
    answer = await csms201.call(CP, "GetReport", {"requestId": 7, "componentVariable": selection})
    assert answer == {"status": "Accepted"}
    await csms201.wait_for("NotifyReport", where=lambda p: p["requestId"] == 7)
    assert [p["requestId"] for p in csms201.calls("NotifyReport")] == [5, 7]


# -- G01-G04: status and availability --------------------------------------------------


async def test_tc_g_01_02_cs_occupied_on_plug_available_on_unplug(
    csms201: Csms, booted: RunningStation201
) -> None:
    """G01: Occupied when an EV is plugged in (once, whatever the core's finer states),
    Available when it leaves; the device model shows the same."""
    booted.plug()
    await csms201.wait_for("StatusNotification", where=is_status("Occupied"))
    assert await value_of(csms201, "Connector", "AvailabilityState", evse=1, connector=1) == (
        "Occupied"
    )
    booted.unplug()
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)
    statuses = [p["connectorStatus"] for p in csms201.calls("StatusNotification")]
    assert statuses == ["Available", "Occupied", "Available"]


async def test_tc_g_03_04_07_cs_change_availability_evse_and_connector(
    csms201: Csms, booted: RunningStation201
) -> None:
    """G03: an EVSE (or its only connector) goes Unavailable and back; unknown ones are
    Rejected."""
    inoperative = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    answer = await csms201.call(
        CP, "ChangeAvailability", {**inoperative, "customData": CUSTOM_DATA}
    )
    assert answer == {"status": "Accepted"}
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable"))
    operative = {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 1}}
    assert await csms201.call(CP, "ChangeAvailability", operative) == {"status": "Accepted"}
    await csms201.wait_for("StatusNotification", where=is_status("Available"), count=2)

    unknown_evse = await csms201.call(
        CP, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 9}}
    )
    assert unknown_evse["status"] == "Rejected"
    unknown_connector = await csms201.call(
        CP,
        "ChangeAvailability",
        {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 4}},
    )
    assert unknown_connector["status"] == "Rejected"
    assert booted.agent.station.evses[1].operative


async def test_tc_g_14_cs_change_availability_station_scheduled_while_transaction_runs(
    csms201: Csms, start: Start
) -> None:
    """G04: the station goes Inoperative: the idle EVSE at once, the one charging once
    its transaction has ended (Scheduled)."""
    running = await start(evses=2)
    await csms201.wait_for("StatusNotification", where=is_status("Available", 2))
    local_id = await start_transaction(running, csms201, 1)
    answer = await csms201.call(CP, "ChangeAvailability", {"operationalStatus": "Inoperative"})
    assert answer == {"status": "Scheduled"}
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable", 2))
    assert not any(is_status("Unavailable", 1)(p) for p in csms201.calls("StatusNotification"))
    await running.agent.station.stop_transaction(local_id, StopReason.REMOTE)
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable", 1))


async def test_tc_g_18_cs_change_availability_evse_persists_across_reboot(
    csms201: Csms, booted: RunningStation201
) -> None:
    """G03: an Inoperative EVSE is still Unavailable after a restart."""
    inoperative = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    assert await csms201.call(CP, "ChangeAvailability", inoperative) == {"status": "Accepted"}
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable"))
    await booted.restart()
    await csms201.wait_for("BootNotification", count=2)
    await csms201.wait_for("StatusNotification", where=is_status("Unavailable"), count=2)
    assert not booted.agent.station.evses[1].operative


# -- B11/B12: reset ---------------------------------------------------------------------


async def test_tc_b_20_cs_reset_on_idle_without_transaction(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B11: Accepted, then the station restarts and boots with reason RemoteReset."""
    answer = await csms201.call(CP, "Reset", {"type": "OnIdle", "customData": CUSTOM_DATA})
    assert answer == {"status": "Accepted"}
    await booted.wait_agent(2)
    boot = await csms201.wait_for("BootNotification", count=2)
    assert boot["reason"] == "RemoteReset"
    assert booted.resets == [False]


async def test_tc_b_21_cs_reset_on_idle_waits_for_the_transaction(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B12.FR.01: Scheduled while a transaction runs; the restart follows its end."""
    local_id = await start_transaction(booted, csms201)
    assert await csms201.call(CP, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    # A full round trip later the station still runs its transaction.
    assert await value_of(csms201, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert len(booted.agents) == 1 and booted.agent.station.transaction_running()
    await booted.agent.station.stop_transaction(local_id, StopReason.LOCAL)
    await booted.wait_agent(2)
    boot = await csms201.wait_for("BootNotification", count=2)
    assert boot["reason"] == "RemoteReset"


async def test_tc_b_22_cs_reset_immediate_stops_the_transaction_then_restarts(
    csms201: Csms, booted: RunningStation201
) -> None:
    """B12.FR.02: the transaction ends with reason ImmediateReset, then the restart."""
    local_id = await start_transaction(booted, csms201)
    assert await csms201.call(CP, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    agent = await booted.wait_agent(2)
    assert booted.resets == [True]
    tx = agent.store.get_transaction(local_id)
    assert tx.stop_reason == StopReason.HARD_RESET
    assert mapping.STOP_REASONS[tx.stop_reason] == "ImmediateReset"
    boot = await csms201.wait_for("BootNotification", count=2)
    assert boot["reason"] == "RemoteReset"


async def test_tc_b_25_26_27_cs_reset_evse(csms201: Csms, booted: RunningStation201) -> None:
    """Per EVSE: idle -> Accepted; OnIdle with a transaction -> Scheduled; Immediate stops
    its transaction and is Accepted; the station itself does not restart."""
    assert await csms201.call(CP, "Reset", {"type": "Immediate", "evseId": 1}) == {
        "status": "Accepted"
    }
    unknown = await csms201.call(CP, "Reset", {"type": "Immediate", "evseId": 7})
    assert unknown["status"] == "Rejected"
    local_id = await start_transaction(booted, csms201)
    assert await csms201.call(CP, "Reset", {"type": "OnIdle", "evseId": 1}) == {
        "status": "Scheduled"
    }
    assert booted.agent.station.transaction_running()
    assert await csms201.call(CP, "Reset", {"type": "Immediate", "evseId": 1}) == {
        "status": "Accepted"
    }
    agent = booted.agent
    await agent.wait_until(lambda: not agent.station.transaction_running())
    assert agent.store.get_transaction(local_id).stop_reason == StopReason.HARD_RESET
    assert await value_of(csms201, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert len(booted.agents) == 1 and booted.resets == []


# -- F06: TriggerMessage --------------------------------------------------------------


async def test_tc_f_20_cs_trigger_heartbeat(csms201: Csms, booted: RunningStation201) -> None:
    """F06: Accepted, then a Heartbeat."""
    answer = await csms201.call(CP, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert answer == {"status": "Accepted"}
    await csms201.wait_for("Heartbeat")


async def test_tc_f_23_cs_trigger_status_notification_specific_evse(
    csms201: Csms, start: Start
) -> None:
    """F06: the StatusNotification of the connector asked for, and only that one."""
    await start(evses=2)
    await csms201.wait_for("StatusNotification", where=is_status("Available", 2))
    answer = await csms201.call(
        CP,
        "TriggerMessage",
        {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}},
    )
    assert answer == {"status": "Accepted"}
    await csms201.wait_for("StatusNotification", where=is_status("Available", 2), count=2)
    assert len(csms201.calls("StatusNotification")) == 3


async def test_tc_f_26_27_cs_trigger_refusals(csms201: Csms, booted: RunningStation201) -> None:
    """F06.FR.17: BootNotification once accepted is Rejected; unknown EVSE Rejected;
    a TransactionEvent with no transaction is Rejected; certificate messages (no PKI here)
    say NotImplemented."""
    boot = await csms201.call(CP, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert boot["status"] == "Rejected"
    unknown = await csms201.call(
        CP, "TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 5}}
    )
    assert unknown["status"] == "Rejected"
    no_tx = await csms201.call(CP, "TriggerMessage", {"requestedMessage": "TransactionEvent"})
    assert no_tx["status"] == "Rejected"
    for message in ("SignChargingStationCertificate", "PublishFirmwareStatusNotification"):
        answer = await csms201.call(CP, "TriggerMessage", {"requestedMessage": message})
        assert answer["status"] == "NotImplemented"
    assert len(csms201.calls("BootNotification")) == 1


# -- P01/P02: DataTransfer --------------------------------------------------------------


async def test_data_transfer_to_the_station(csms201: Csms, start: Start) -> None:
    """P01: the vendor's handler answers (any JSON data); an unknown vendor is
    UnknownVendorId."""
    asked: list[tuple[str | None, Any]] = []

    async def vendor(message_id: str | None, data: Any) -> tuple[str, Any]:
        asked.append((message_id, data))
        return "Accepted", {"echo": data}

    await start(vendor_handlers={"com.example": vendor})
    await csms201.wait_for("StatusNotification")
    answer = await csms201.call(
        CP,
        "DataTransfer",
        {"vendorId": "com.example", "messageId": "ping", "data": [1, 2], "customData": CUSTOM_DATA},
    )
    assert answer == {"status": "Accepted", "data": {"echo": [1, 2]}}
    assert asked == [("ping", [1, 2])]
    unknown = await csms201.call(CP, "DataTransfer", {"vendorId": "org.nobody"})
    assert unknown == {"status": "UnknownVendorId"}


async def test_data_transfer_to_the_csms(csms201: Csms, booted: RunningStation201) -> None:
    """P02: the CSMS's answer comes back to the caller."""
    answer = await booted.adapter.data_transfer("org.cpagent.test", message_id="m", data="ping")
    assert answer == {"status": "Accepted", "data": "ping"}
    assert csms201.calls("DataTransfer") == [
        {"vendorId": "org.cpagent.test", "messageId": "m", "data": "ping"}
    ]
