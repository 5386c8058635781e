"""OCPP 2.0.1 mapping tables: status folding, AvailabilityState of EVSEs and the station,
stop and boot reasons (checked against the official 2.0.1 JSON schemas), the variables
the core's Policy mirrors, and the catalogue of a station as built."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.evse import ConnectorSpec
from agent.core.policy import Policy
from agent.core.ports import StopReason
from agent.core.status import ConnectorStatus
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.device_model import DeviceModel, format_path, parse_path
from agent.ocpp.v201.variables import station_variables
from agent.store import Store
from drivers.types import BoardCapabilities

S = ConnectorStatus
STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")


@cache
def schema_enum(message: str, definition: str) -> set[str]:
    """The values of an enumeration in one of the packaged 2.0.1 schemas."""
    text = files("ocpp").joinpath("v201", "schemas", f"{message}.json").read_text("utf-8")
    return set(json.loads(text)["definitions"][definition]["enum"])


@pytest.fixture
def model() -> Iterator[DeviceModel]:
    """The device model of a station with EVSE 1 (one connector) and EVSE 2 (two)."""
    with Store(":memory:") as store:
        yield DeviceModel(
            store, station_variables([(1, [(1, "cType2")]), (2, [(1, "sType2"), (2, "cCCS2")])])
        )


# -- connector status ----------------------------------------------------------------------


def test_every_core_status_has_a_2_0_1_connector_status() -> None:
    assert set(mapping.CONNECTOR_STATUS) == set(ConnectorStatus)
    assert set(mapping.CONNECTOR_STATUS.values()) == schema_enum(
        "StatusNotificationRequest", "ConnectorStatusEnumType"
    )


@pytest.mark.parametrize(
    "status", [S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING]
)
def test_a_connector_in_use_is_occupied(status: ConnectorStatus) -> None:
    assert mapping.connector_status(status) == "Occupied"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.AVAILABLE, "Available"),
        (S.RESERVED, "Reserved"),
        (S.UNAVAILABLE, "Unavailable"),
        (S.FAULTED, "Faulted"),
    ],
)
def test_the_other_statuses_keep_their_name(status: ConnectorStatus, expected: str) -> None:
    assert mapping.connector_status(status) == expected


def test_authorized_before_plugging_in_is_still_available() -> None:
    """No cable in the connector: Preparing (authorized first) is not Occupied."""
    assert mapping.connector_status(S.PREPARING, ev_connected=False) == "Available"
    assert mapping.connector_status(S.PREPARING, ev_connected=True) == "Occupied"


@given(st.sampled_from([s for s in ConnectorStatus if s != S.PREPARING]), st.booleans())
def test_only_preparing_depends_on_the_cable(status: ConnectorStatus, ev: bool) -> None:
    assert mapping.connector_status(status, ev_connected=ev) == mapping.CONNECTOR_STATUS[status]


# -- EVSE and station AvailabilityState ---------------------------------------------------


@pytest.mark.parametrize(
    ("connectors", "expected"),
    [
        (["Available"], "Available"),
        (["Occupied", "Unavailable"], "Occupied"),  # the others wait while one is in use
        (["Unavailable", "Available"], "Available"),
        (["Unavailable", "Unavailable"], "Unavailable"),
        (["Reserved", "Available"], "Reserved"),
        (["Faulted", "Occupied"], "Faulted"),
        ([], "Available"),
    ],
)
def test_evse_state_from_its_connectors(connectors: list[str], expected: str) -> None:
    assert mapping.evse_status(connectors) == expected


@given(st.lists(st.sampled_from(STATES), min_size=1))
def test_evse_state_is_one_of_its_connectors_states(connectors: list[str]) -> None:
    assert mapping.evse_status(connectors) in connectors


@pytest.mark.parametrize(
    ("evses", "expected"),
    [
        (["Available", "Unavailable"], "Available"),
        (["Occupied", "Faulted"], "Available"),
        (["Unavailable", "Unavailable"], "Unavailable"),
    ],
)
def test_station_is_unavailable_only_when_no_evse_can_be_used(
    evses: list[str], expected: str
) -> None:
    assert mapping.station_status(evses) == expected


def test_availability_values_fit_the_device_model(model: DeviceModel) -> None:
    """Every value names a variable of the catalogue and passes its validation."""
    evse_states = {1: "Available", 2: "Faulted"}
    values = mapping.availability_values(2, {1: "Faulted", 2: "Unavailable"}, evse_states)
    for component, variable, value in values:
        model.update(component, variable, value)
    assert model.value("Connector@2:1/AvailabilityState") == "Faulted"
    assert model.value("Connector@2:2/AvailabilityState") == "Unavailable"
    assert model.value("EVSE@2/AvailabilityState") == "Faulted"
    assert model.value("EVSE@2/Problem") == "true"
    assert model.value("ChargingStation/AvailabilityState") == "Available"
    assert model.value("ChargingStation/Problem") == "true"
    touched = {format_path(component, variable) for component, variable, _ in values}
    assert not any(path.startswith(("EVSE@1", "Connector@1")) for path in touched)


# -- reasons ---------------------------------------------------------------------------------


def test_every_stop_reason_has_a_2_0_1_reason() -> None:
    assert set(mapping.STOP_REASONS) == set(StopReason)
    assert set(mapping.STOP_REASONS.values()) <= schema_enum(
        "TransactionEventRequest", "ReasonEnumType"
    )


def test_a_reset_stops_transactions_with_immediate_reset() -> None:
    assert mapping.STOP_REASONS[StopReason.HARD_RESET] == "ImmediateReset"


def test_boot_reasons_are_the_schema_enum() -> None:
    assert schema_enum("BootNotificationRequest", "BootReasonEnumType") == mapping.BOOT_REASONS


# -- policy ------------------------------------------------------------------------------------


def test_policy_follows_the_variables(model: DeviceModel) -> None:
    policy = Policy()
    values = {
        "TxCtrlr/EVConnectionTimeOut": "45",
        "TxCtrlr/StopTxOnEVSideDisconnect": "false",
        "OCPPCommCtrlr/UnlockOnEVSideDisconnect": "false",
        "SampledDataCtrlr/TxUpdatedInterval": "15",
        "AlignedDataCtrlr/Interval": "900",
    }
    mapping.apply_policy(policy, lambda path: values.get(path) or model.value(path))
    assert policy == Policy(
        stop_tx_on_ev_disconnect=False,
        unlock_on_ev_disconnect=False,
        connection_timeout_s=45.0,
        sample_interval_s=15.0,
        aligned_interval_s=900.0,
    )


def test_a_disabled_data_controller_samples_nothing(model: DeviceModel) -> None:
    policy = Policy()
    values = {
        "SampledDataCtrlr/Enabled": "false",
        "AlignedDataCtrlr/Enabled": "false",
        "SampledDataCtrlr/TxUpdatedInterval": "15",
        "AlignedDataCtrlr/Interval": "900",
    }
    mapping.apply_policy(policy, lambda path: values.get(path) or model.value(path))
    assert (policy.sample_interval_s, policy.aligned_interval_s) == (0.0, 0.0)


def test_policy_paths_exist_in_the_catalogue(model: DeviceModel) -> None:
    """apply_policy reads only variables the device model has (KeyError otherwise)."""
    read: list[str] = []

    def value(path: str) -> str:
        read.append(path)
        return model.value(path)

    mapping.apply_policy(Policy(), value)
    assert "TxCtrlr/EVConnectionTimeOut" in read
    for path in (
        mapping.HEARTBEAT_INTERVAL,
        mapping.WEBSOCKET_PING_INTERVAL,
        mapping.OFFLINE_THRESHOLD,
    ):
        assert model.int_value(path) > 0


# -- the catalogue of a station as built ---------------------------------------------------------


def fake_station(*evses: tuple[int, list[ConnectorSpec]]) -> Any:
    """What station_catalogue reads of a Station: its EVSEs' ids, connectors and board
    capabilities (phase switching)."""
    board = SimpleNamespace(capabilities=BoardCapabilities(max_current_a=32.0))
    return SimpleNamespace(
        evses={
            evse_id: SimpleNamespace(id=evse_id, connectors=tuple(connectors), board=board)
            for evse_id, connectors in evses
        }
    )


def test_catalogue_of_a_station_as_built(model: DeviceModel) -> None:
    station = fake_station(
        (1, [ConnectorSpec(1, "cType2", 32.0, 3)]),
        (2, [ConnectorSpec(1, "sType2", 16.0, 1), ConnectorSpec(2, "cCCS2", 16.0, 3)]),
    )
    with Store(":memory:") as store:
        built = DeviceModel(
            store, mapping.station_catalogue(station, vendor_name="ACME", model="Wallbox 2")
        )
        assert built.value("ChargingStation/VendorName") == "ACME"
        assert built.value("ChargingStation/Model") == "Wallbox 2"
        assert built.value("ChargingStation/SupplyPhases") == "3"
        assert built.value("Connector@2:2/ConnectorType") == "cCCS2"
        evse_1 = built.lookup(*_key("EVSE@1/Power"))
        evse_2 = built.lookup(*_key("EVSE@2/Power"))
        assert evse_1 is not None and evse_1.max_limit == 32 * 3 * 230
        assert evse_2 is not None and evse_2.max_limit == 16 * 3 * 230


def test_catalogue_refuses_a_connector_type_2_0_1_does_not_know() -> None:
    station = fake_station((1, [ConnectorSpec(1, "Schuko", 16.0, 1)]))
    with pytest.raises(ValueError, match="ConnectorEnumType"):
        mapping.station_catalogue(station, vendor_name="ACME", model="X")


def _key(path: str) -> Any:
    """(component, variable) of a path, for DeviceModel.lookup."""
    parsed = parse_path(path)
    return parsed.component, parsed.variable
