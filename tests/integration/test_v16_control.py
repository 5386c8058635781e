"""CSMS-initiated control in OCPP 1.6J: reset, availability, configuration, unlock,
cache, data transfer, heartbeat and boot handling."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.exceptions import OCPPError

from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID, RunningStation, until


def _status_of(csms: Csms, connector: int) -> list[str]:
    return [p["status"] for p in csms.calls("StatusNotification") if p["connectorId"] == connector]


async def _charging(csms: Csms, station: RunningStation, card: str = "CARD") -> dict[str, Any]:
    station.plug()
    station.tap(card)
    start = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")
    return start


# -- Reset (section 5.14) ------------------------------------------------------------------


async def test_soft_reset_mid_transaction_stops_with_soft_reset_and_reboots(
    csms: Csms, station: RunningStation
) -> None:
    await _charging(csms, station)
    assert await csms.call(CP_ID, "Reset", {"type": "Soft"}) == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction")
    await station.wait_agent(2)
    await csms.wait_for("BootNotification", count=2)
    assert stop["reason"] == "SoftReset"
    boots = [r.action for r in csms.received].index("StopTransaction")
    assert boots < [i for i, r in enumerate(csms.received) if r.action == "BootNotification"][1]
    assert len(csms.calls("StopTransaction")) == 1


async def test_hard_reset_mid_transaction_stops_with_hard_reset_exactly_once(
    csms: Csms, station: RunningStation
) -> None:
    start = await _charging(csms, station)
    assert await csms.call(CP_ID, "Reset", {"type": "Hard"}) == {"status": "Accepted"}
    await station.wait_agent(2)
    stop = await csms.wait_for("StopTransaction")
    await csms.wait_for("BootNotification", count=2)
    assert stop["reason"] == "HardReset"
    assert stop["transactionId"] == 1
    assert stop["meterStop"] >= start["meterStart"]
    # The new agent's StatusNotification after reboot: the car is still there.
    await csms.wait_for("StatusNotification", count=2, where=lambda p: p["connectorId"] == 0)
    assert len(csms.calls("StopTransaction")) == 1
    assert len(csms.calls("StartTransaction")) == 1


# -- ChangeAvailability (section 5.2) --------------------------------------------------------


async def test_change_availability_without_transaction(csms: Csms, station: RunningStation) -> None:
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Unavailable")
    station.plug()
    station.tap("CARD")
    await until(station.agent, lambda: station.agent.station.evses[1].pilot.value == "B")
    assert csms.calls("Authorize") == []  # an unavailable connector does not take cards
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert answer == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    assert _status_of(csms, 1) == ["Available", "Unavailable", "Preparing"]


async def test_change_availability_during_transaction_is_scheduled(
    csms: Csms, station: RunningStation
) -> None:
    await _charging(csms, station)
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert answer == {"status": "Scheduled"}
    assert station.agent.hardware[1].plant.contactor_closed  # the session goes on
    station.unplug()
    await csms.wait_for("StopTransaction")
    await csms.wait_for(
        "StatusNotification", where=lambda p: p["connectorId"] == 1 and p["status"] == "Unavailable"
    )
    assert _status_of(csms, 1)[-2:] == ["Charging", "Unavailable"]


async def test_availability_survives_a_restart(csms: Csms, station: RunningStation) -> None:
    await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Unavailable")
    await station.restart()
    await csms.wait_for("BootNotification", count=2)
    await csms.wait_for(
        "StatusNotification",
        count=2,
        where=lambda p: p["connectorId"] == 1 and p["status"] == "Unavailable",
    )


async def test_change_availability_of_unknown_connector_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(CP_ID, "ChangeAvailability", {"connectorId": 5, "type": "Inoperative"})
    assert answer == {"status": "Rejected"}


# -- GetConfiguration / ChangeConfiguration (sections 5.3, 5.8) -----------------------------


async def test_get_configuration_lists_every_core_key(csms: Csms, station: RunningStation) -> None:
    answer = await csms.call(CP_ID, "GetConfiguration", {})
    keys = {entry["key"]: entry for entry in answer["configurationKey"]}
    for required in (
        "AuthorizeRemoteTxRequests",
        "ClockAlignedDataInterval",
        "ConnectionTimeOut",
        "GetConfigurationMaxKeys",
        "HeartbeatInterval",
        "LocalAuthorizeOffline",
        "LocalPreAuthorize",
        "MeterValuesAlignedData",
        "MeterValuesSampledData",
        "MeterValueSampleInterval",
        "NumberOfConnectors",
        "ResetRetries",
        "ConnectorPhaseRotation",
        "StopTransactionOnEVSideDisconnect",
        "StopTransactionOnInvalidId",
        "StopTxnAlignedData",
        "StopTxnSampledData",
        "SupportedFeatureProfiles",
        "TransactionMessageAttempts",
        "TransactionMessageRetryInterval",
        "UnlockConnectorOnEVSideDisconnect",
    ):
        assert required in keys, required
    assert keys["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "1",
    }
    assert keys["MeterValueSampleInterval"]["value"] == "1"  # from the install config


async def test_get_configuration_reports_unknown_keys(csms: Csms, station: RunningStation) -> None:
    answer = await csms.call(CP_ID, "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
    assert answer["unknownKey"] == ["NoSuchKey"]
    assert [entry["key"] for entry in answer["configurationKey"]] == ["HeartbeatInterval"]


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("HeartbeatInterval", "120", "Accepted"),
        ("HeartbeatInterval", "soon", "Rejected"),
        ("HeartbeatInterval", "-5", "Rejected"),
        ("NumberOfConnectors", "4", "Rejected"),
        ("StopTransactionOnInvalidId", "maybe", "Rejected"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Bogus.Measurand", "Rejected"),
        ("WebSocketPingInterval", "60", "RebootRequired"),
        ("NoSuchKey", "1", "NotSupported"),
    ],
)
async def test_change_configuration_results(
    csms: Csms, station: RunningStation, key: str, value: str, status: str
) -> None:
    before = await csms.call(CP_ID, "GetConfiguration", {"key": [key]})
    answer = await csms.call(CP_ID, "ChangeConfiguration", {"key": key, "value": value})
    assert answer == {"status": status}
    after = await csms.call(CP_ID, "GetConfiguration", {"key": [key]})
    if status in ("Accepted", "RebootRequired"):
        assert after["configurationKey"][0]["value"] == value
    else:
        assert after == before  # nothing applied


async def test_changed_configuration_persists_across_a_restart(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "ConnectionTimeOut", "value": "45"})
    await csms.call(
        CP_ID, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"}
    )
    await station.restart()
    await csms.wait_for("BootNotification", count=2)
    answer = await csms.call(
        CP_ID, "GetConfiguration", {"key": ["ConnectionTimeOut", "MeterValueSampleInterval"]}
    )
    assert {e["key"]: e["value"] for e in answer["configurationKey"]} == {
        "ConnectionTimeOut": "45",
        "MeterValueSampleInterval": "30",
    }
    assert station.agent.station.policy.sample_interval_s == 30.0


async def test_heartbeat_follows_a_changed_interval(csms: Csms, station: RunningStation) -> None:
    assert csms.calls("Heartbeat") == []
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1"})
    await csms.wait_for("Heartbeat", count=2)


# -- Unlock, cache, data transfer ------------------------------------------------------------


async def test_unlock_connector_stops_the_transaction_and_unlocks(
    csms: Csms, station: RunningStation
) -> None:
    await _charging(csms, station)
    assert await csms.call(CP_ID, "UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "UnlockCommand"
    assert not station.agent.hardware[1].plant.contactor_closed
    assert await csms.call(CP_ID, "UnlockConnector", {"connectorId": 9}) == {
        "status": "NotSupported"
    }


async def test_clear_cache_is_accepted_and_empties_the_cache(
    csms: Csms, station: RunningStation
) -> None:
    station.tap("CACHED")
    await csms.wait_for("Authorize")
    await until(station.agent, lambda: not station.agent.station.evses[1].authorizing)
    assert station.agent.auth_cache.get("CACHED") is not None
    assert await csms.call(CP_ID, "ClearCache", {}) == {"status": "Accepted"}
    assert station.agent.auth_cache.get("CACHED") is None
    assert station.agent.auth_cache.size() == 0


async def test_data_transfer_from_csms_to_unknown_vendor(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(CP_ID, "DataTransfer", {"vendorId": "com.example", "data": "x"})
    assert answer == {"status": "UnknownVendorId"}


async def test_data_transfer_from_agent_to_csms(csms: Csms, station: RunningStation) -> None:
    answer = await station.agent.adapter.data_transfer("org.cpagent.test", "ping", "hello")
    assert answer == {"status": "Accepted", "data": "hello"}
    assert await csms.wait_for("DataTransfer") == {
        "vendorId": "org.cpagent.test",
        "messageId": "ping",
        "data": "hello",
    }
    answer = await station.agent.adapter.data_transfer("com.other")
    assert answer == {"status": "UnknownVendorId"}


async def test_vendor_data_transfer_handler_is_pluggable(
    csms: Csms, station: RunningStation
) -> None:
    async def echo(message_id: str | None, data: str | None) -> tuple[str, str | None]:
        return "Accepted", f"{message_id}:{data}"

    station.agent.adapter.register_vendor("org.cpagent.echo", echo)
    answer = await csms.call(
        CP_ID, "DataTransfer", {"vendorId": "org.cpagent.echo", "messageId": "m", "data": "d"}
    )
    assert answer == {"status": "Accepted", "data": "m:d"}


async def test_unsupported_action_gets_not_supported(csms: Csms, station: RunningStation) -> None:
    with pytest.raises(OCPPError) as error:
        await csms.call(CP_ID, "GetDiagnostics", {"location": "ftp://example.org/"})
    assert error.value.code == "NotSupported"


# -- BootNotification (section 4.2) ----------------------------------------------------------


async def test_boot_pending_then_accepted_sends_nothing_else_before(
    csms: Csms, station_factory: Any
) -> None:
    csms.behaviour.boot_status = "Pending"
    csms.behaviour.boot_interval_s = 1
    await station_factory(csms)
    await csms.wait_for("BootNotification", count=2)
    assert {r.action for r in csms.received} == {"BootNotification"}
    csms.behaviour.boot_status = "Accepted"
    await csms.wait_for("StatusNotification")
    actions = [r.action for r in csms.received]
    first_status = actions.index("StatusNotification")
    assert set(actions[:first_status]) == {"BootNotification"}


async def test_boot_rejected_is_retried_at_the_interval(csms: Csms, station_factory: Any) -> None:
    csms.behaviour.boot_status = "Rejected"
    csms.behaviour.boot_interval_s = 1
    running: RunningStation = await station_factory(csms)
    running.tap("CARD")  # offline rules apply while rejected: no Authorize is sent
    await csms.wait_for("BootNotification", count=3)
    assert {r.action for r in csms.received} == {"BootNotification"}


async def test_basic_auth_over_wss(tmp_path: Any, station_factory: Any) -> None:
    """Security profile 2: TLS with the CSMS certificate, HTTP Basic auth."""
    import ssl

    import trustme

    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1")
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ssl)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    password_file = tmp_path / "password"
    password_file.write_text("s3cret-password-of-sixteen\n")
    async with Csms(
        CsmsBehaviour(), ssl_context=server_ssl, passwords={CP_ID: "s3cret-password-of-sixteen"}
    ) as secure:
        assert secure.url.startswith("wss://")
        running: RunningStation = await station_factory(
            secure,
            extra={
                "csms": {
                    "tls": {"ca_file": str(ca_file)},
                    "basic_auth": {"password_file": str(password_file)},
                }
            },
        )
        await secure.wait_for("StatusNotification")
        assert running.agent.connection_state.value == "connected"
        await running.stop()


async def test_idle_soft_reset_answers_before_rebooting(
    csms: Csms, station: RunningStation
) -> None:
    for boot in (2, 3):
        assert await csms.call(CP_ID, "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        await station.wait_agent(boot)
        await csms.wait_for("BootNotification", count=boot)
        await csms.wait_for("StatusNotification", count=boot, where=lambda p: p["connectorId"] == 1)


# -- TriggerMessage (section 5.17, Remote Trigger profile) ------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected_action"),
    [
        ("Heartbeat", "Heartbeat"),
        ("BootNotification", "BootNotification"),
        ("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
        ("FirmwareStatusNotification", "FirmwareStatusNotification"),
    ],
)
async def test_trigger_message_sends_the_requested_message_after_answering(
    csms: Csms, station: RunningStation, requested: str, expected_action: str
) -> None:
    before = len(csms.calls(expected_action))
    answer = await csms.call(CP_ID, "TriggerMessage", {"requestedMessage": requested})
    assert answer == {"status": "Accepted"}
    await csms.wait_for(expected_action, count=before + 1)


async def test_triggered_status_notification_for_one_connector(
    csms: Csms, station: RunningStation
) -> None:
    before = len(csms.calls("StatusNotification"))
    answer = await csms.call(
        CP_ID, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}
    )
    assert answer == {"status": "Accepted"}
    status = await csms.wait_for("StatusNotification", count=before + 1)
    assert status["connectorId"] == 1 and status["status"] == "Available"


async def test_triggered_meter_values_carry_the_transaction(
    csms: Csms, station: RunningStation
) -> None:
    await csms.call(CP_ID, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "0"})
    await _charging(csms, station)
    answer = await csms.call(
        CP_ID, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}
    )
    assert answer == {"status": "Accepted"}
    values = await csms.wait_for("MeterValues")
    assert values["transactionId"] == 1
    assert values["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


async def test_trigger_message_for_an_unknown_connector_is_rejected(
    csms: Csms, station: RunningStation
) -> None:
    answer = await csms.call(
        CP_ID, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 9}
    )
    assert answer == {"status": "Rejected"}
