"""OCPP 2.0.1 device model: the catalogue, GetVariables (B06) and SetVariables (B05),
validation against characteristics, persistence in the store, WriteOnly secrecy and the
DeviceDataCtrlr request limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ocpp.dialects import OCPP201
from agent.ocpp.v201.device_model import (
    PREFIX,
    DeviceModel,
    GetStatus,
    RequestLimitExceeded,
    SetStatus,
    check_value,
    format_path,
    get_variables,
    parse_path,
    set_variables,
)
from agent.ocpp.v201.variables import (
    CONNECTOR_TYPES,
    MEASURANDS,
    TX_POINTS,
    Attribute,
    ComponentKey,
    DataType,
    Mutability,
    VariableDef,
    VariableKey,
    station_variables,
)
from agent.store import Store
from tests.fakes import FakeClock

EVSES = [(1, [(1, "cType2")]), (2, [(1, "sType2"), (2, "cCCS2")])]
PASSWORD = "correct-horse-battery-staple"

# The variables the issue names per controller: path -> (data type, Actual mutability).
REQUIRED: dict[str, tuple[str, str]] = {
    "ChargingStation/AvailabilityState": ("OptionList", "ReadOnly"),
    "ChargingStation/Available": ("boolean", "ReadOnly"),
    "ChargingStation/Model": ("string", "ReadOnly"),
    "ChargingStation/VendorName": ("string", "ReadOnly"),
    "ChargingStation/SupplyPhases": ("integer", "ReadOnly"),
    "EVSE@1/AvailabilityState": ("OptionList", "ReadOnly"),
    "EVSE@2/Power": ("decimal", "ReadOnly"),
    "Connector@2:2/ConnectorType": ("string", "ReadOnly"),
    "Connector@1:1/AvailabilityState": ("OptionList", "ReadOnly"),
    "OCPPCommCtrlr/HeartbeatInterval": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/MessageTimeout(Default)": ("integer", "ReadOnly"),
    "OCPPCommCtrlr/MessageAttempts(TransactionEvent)": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/MessageAttemptInterval(TransactionEvent)": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/NetworkConfigurationPriority": ("SequenceList", "ReadWrite"),
    "OCPPCommCtrlr/NetworkProfileConnectionAttempts": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/OfflineThreshold": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/ResetRetries": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/UnlockOnEVSideDisconnect": ("boolean", "ReadWrite"),
    "OCPPCommCtrlr/WebSocketPingInterval": ("integer", "ReadWrite"),
    "OCPPCommCtrlr/FileTransferProtocols": ("MemberList", "ReadOnly"),
    "TxCtrlr/EVConnectionTimeOut": ("integer", "ReadWrite"),
    "TxCtrlr/StopTxOnEVSideDisconnect": ("boolean", "ReadWrite"),
    "TxCtrlr/TxBeforeAcceptedEnabled": ("boolean", "ReadWrite"),
    "TxCtrlr/TxStartPoint": ("MemberList", "ReadWrite"),
    "TxCtrlr/TxStopPoint": ("MemberList", "ReadWrite"),
    "TxCtrlr/MaxEnergyOnInvalidId": ("integer", "ReadWrite"),
    "TxCtrlr/StopTxOnInvalidId": ("boolean", "ReadWrite"),
    "SampledDataCtrlr/Enabled": ("boolean", "ReadWrite"),
    "SampledDataCtrlr/TxEndedMeasurands": ("MemberList", "ReadWrite"),
    "SampledDataCtrlr/TxEndedInterval": ("integer", "ReadWrite"),
    "SampledDataCtrlr/TxStartedMeasurands": ("MemberList", "ReadWrite"),
    "SampledDataCtrlr/TxUpdatedMeasurands": ("MemberList", "ReadWrite"),
    "SampledDataCtrlr/TxUpdatedInterval": ("integer", "ReadWrite"),
    "AlignedDataCtrlr/Enabled": ("boolean", "ReadWrite"),
    "AlignedDataCtrlr/Interval": ("integer", "ReadWrite"),
    "AlignedDataCtrlr/Measurands": ("MemberList", "ReadWrite"),
    "AlignedDataCtrlr/TxEndedInterval": ("integer", "ReadWrite"),
    "AlignedDataCtrlr/TxEndedMeasurands": ("MemberList", "ReadWrite"),
    "AuthCtrlr/Enabled": ("boolean", "ReadWrite"),
    "AuthCtrlr/AuthorizeRemoteStart": ("boolean", "ReadWrite"),
    "AuthCtrlr/LocalAuthorizeOffline": ("boolean", "ReadWrite"),
    "AuthCtrlr/LocalPreAuthorize": ("boolean", "ReadWrite"),
    "AuthCtrlr/OfflineTxForUnknownIdEnabled": ("boolean", "ReadWrite"),
    "AuthCtrlr/MasterPassGroupId": ("string", "ReadWrite"),
    "AuthCtrlr/DisableRemoteAuthorization": ("boolean", "ReadWrite"),
    "AuthCacheCtrlr/Enabled": ("boolean", "ReadWrite"),
    "AuthCacheCtrlr/LifeTime": ("integer", "ReadWrite"),
    "AuthCacheCtrlr/Storage": ("integer", "ReadOnly"),
    "AuthCacheCtrlr/Policy": ("OptionList", "ReadWrite"),
    "AuthCacheCtrlr/DisablePostAuthorize": ("boolean", "ReadWrite"),
    "DeviceDataCtrlr/ItemsPerMessage(GetReport)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/ItemsPerMessage(GetVariables)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/ItemsPerMessage(SetVariables)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/BytesPerMessage(GetReport)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/BytesPerMessage(GetVariables)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/BytesPerMessage(SetVariables)": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/ConfigurationValueSize": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/ReportingValueSize": ("integer", "ReadOnly"),
    "DeviceDataCtrlr/ValueSize": ("integer", "ReadOnly"),
    "SecurityCtrlr/SecurityProfile": ("integer", "ReadOnly"),
    "SecurityCtrlr/Identity": ("string", "ReadOnly"),
    "SecurityCtrlr/OrganizationName": ("string", "ReadWrite"),
    "SecurityCtrlr/BasicAuthPassword": ("string", "WriteOnly"),
    "SecurityCtrlr/CertificateEntries": ("integer", "ReadOnly"),
    "ClockCtrlr/DateTime": ("dateTime", "ReadOnly"),
    "ClockCtrlr/TimeSource": ("SequenceList", "ReadWrite"),
    "LocalAuthListCtrlr/Enabled": ("boolean", "ReadWrite"),
    "LocalAuthListCtrlr/Available": ("boolean", "ReadOnly"),
    "ReservationCtrlr/Enabled": ("boolean", "ReadWrite"),
    "ReservationCtrlr/Available": ("boolean", "ReadOnly"),
    "SmartChargingCtrlr/Enabled": ("boolean", "ReadWrite"),
    "SmartChargingCtrlr/Available": ("boolean", "ReadOnly"),
    "SmartChargingCtrlr/Entries(ChargingProfiles)": ("integer", "ReadOnly"),
    "SmartChargingCtrlr/RateUnit": ("MemberList", "ReadOnly"),
}


def schema_enum(schema: str, definition: str) -> set[str]:
    """The enumeration `definition` of an official 2.0.1 JSON schema."""
    text = files("ocpp").joinpath("v201", "schemas", f"{schema}.json").read_text("utf-8")
    return set(json.loads(text)["definitions"][definition]["enum"])


def validate(action: str, payload: dict[str, Any], *, response: bool) -> None:
    """Validate a payload against its official 2.0.1 schema (raises on violation)."""
    OCPP201.validator(action, response=response)(payload)


def path_key(path: str) -> tuple[ComponentKey, VariableKey]:
    """The component and variable keys of a path."""
    component, variable, _ = parse_path(path)
    return component, variable


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A file-backed store, closed after the test."""
    with Store(tmp_path / "agent.db") as opened:
        yield opened


@pytest.fixture
def model(store: Store) -> DeviceModel:
    """The device model of a two-EVSE station (three connectors) on `store`."""
    return DeviceModel(store, station_variables(EVSES))


# -- the catalogue -------------------------------------------------------------------------


def test_enumerations_are_spelled_as_the_official_schemas() -> None:
    assert {s.value for s in GetStatus} == schema_enum(
        "GetVariablesResponse", "GetVariableStatusEnumType"
    )
    assert {s.value for s in SetStatus} == schema_enum(
        "SetVariablesResponse", "SetVariableStatusEnumType"
    )
    assert {d.value for d in DataType} == schema_enum("NotifyReportRequest", "DataEnumType")
    assert {a.value for a in Attribute} == schema_enum("NotifyReportRequest", "AttributeEnumType")
    assert {m.value for m in Mutability} == schema_enum("NotifyReportRequest", "MutabilityEnumType")
    assert set(CONNECTOR_TYPES) == schema_enum("ReserveNowRequest", "ConnectorEnumType")
    assert set(MEASURANDS) <= schema_enum("MeterValuesRequest", "MeasurandEnumType")
    # The points the hardware can tell (no bay sensor, no signing meter).
    assert set(TX_POINTS) == {"EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer"}


@pytest.mark.parametrize(("path", "expected"), sorted(REQUIRED.items()))
def test_station_has_each_required_variable(
    model: DeviceModel, path: str, expected: tuple[str, str]
) -> None:
    definition = model.lookup(*path_key(path))
    assert definition is not None, f"{path} missing"
    assert (definition.data_type.value, definition.mutability[Attribute.ACTUAL].value) == expected


def test_every_default_in_the_catalogue_is_a_valid_value(model: DeviceModel) -> None:
    for definition in model.definitions:
        for attribute in definition.mutability:
            default = definition.default_for(attribute)
            if default:
                assert check_value(definition, default) == (default, ""), definition.variable


def test_catalogue_follows_the_station_as_built(model: DeviceModel) -> None:
    assert model.value("Connector@2:2/ConnectorType") == "cCCS2"
    assert model.has_component(ComponentKey("Connector", evse_id=2, connector_id=2))
    assert not model.has_component(ComponentKey("Connector", evse_id=1, connector_id=2))
    power = model.lookup(*path_key("EVSE@1/Power"))
    assert power is not None and power.max_limit == 22080.0 and power.unit == "W"


def test_a_station_with_only_fixed_cables_reports_unlock_read_only_false(store: Store) -> None:
    model = DeviceModel(store, station_variables([(1, [(1, "cCCS2")])]))
    unlock = model.lookup(*path_key("OCPPCommCtrlr/UnlockOnEVSideDisconnect"))
    assert unlock is not None and unlock.mutability[Attribute.ACTUAL] == Mutability.READ_ONLY
    assert model.value("OCPPCommCtrlr/UnlockOnEVSideDisconnect") == "false"


@pytest.mark.parametrize(
    "evses",
    [[], [(1, [])], [(1, [(1, "cType2")]), (1, [(1, "cType2")])], [(1, [(1, "Schuko")])],
     [(0, [(1, "cType2")])], [(1, [(1, "cType2"), (1, "sType2")])]],
)  # fmt: skip
def test_station_variables_refuses_an_impossible_station(evses: Any) -> None:
    with pytest.raises(ValueError):
        station_variables(evses)


# -- GetVariables (B06) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "variable", "attribute", "status", "value"),
    [
        (ComponentKey("OCPPCommCtrlr"), VariableKey("HeartbeatInterval"), "Actual",
         GetStatus.ACCEPTED, "300"),
        (ComponentKey("ocppcommctrlr"), VariableKey("heartbeatinterval"), "Actual",
         GetStatus.ACCEPTED, "300"),  # names are case-insensitive
        (ComponentKey("EVSE", evse_id=2), VariableKey("AvailabilityState"), "Actual",
         GetStatus.ACCEPTED, "Available"),
        (ComponentKey("DeviceDataCtrlr"), VariableKey("ItemsPerMessage", "GetVariables"),
         "Actual", GetStatus.ACCEPTED, "64"),
        (ComponentKey("NoSuchCtrlr"), VariableKey("Enabled"), "Actual",
         GetStatus.UNKNOWN_COMPONENT, None),
        (ComponentKey("EVSE", evse_id=9), VariableKey("AvailabilityState"), "Actual",
         GetStatus.UNKNOWN_COMPONENT, None),
        (ComponentKey("OCPPCommCtrlr", evse_id=1), VariableKey("HeartbeatInterval"), "Actual",
         GetStatus.UNKNOWN_COMPONENT, None),
        (ComponentKey("OCPPCommCtrlr"), VariableKey("NoSuchVariable"), "Actual",
         GetStatus.UNKNOWN_VARIABLE, None),
        (ComponentKey("OCPPCommCtrlr"), VariableKey("MessageTimeout"), "Actual",
         GetStatus.UNKNOWN_VARIABLE, None),  # only the instance Default exists (B06.FR.15)
        (ComponentKey("OCPPCommCtrlr"), VariableKey("HeartbeatInterval"), "Target",
         GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE, None),
        (ComponentKey("SecurityCtrlr"), VariableKey("BasicAuthPassword"), "Actual",
         GetStatus.REJECTED, None),  # WriteOnly (B06.FR.09)
    ],
)  # fmt: skip
def test_get_answers_with_every_status(
    model: DeviceModel,
    component: ComponentKey,
    variable: VariableKey,
    attribute: str,
    status: GetStatus,
    value: str | None,
) -> None:
    result = model.get(component, variable, Attribute(attribute))
    assert (result.status, result.value) == (status, value)


def test_clock_date_time_is_the_clock_now_and_cannot_be_set(store: Store) -> None:
    clock = FakeClock(datetime(2025, 3, 1, 8, 30, 15, 250000, tzinfo=UTC))
    model = DeviceModel(store, station_variables(EVSES), clock=clock)
    key = path_key("ClockCtrlr/DateTime")
    assert model.get(*key).value == "2025-03-01T08:30:15.250Z"
    clock.advance(60)
    assert model.get(*key).value == "2025-03-01T08:31:15.250Z"
    assert model.set(*key, "2030-01-01T00:00:00Z").status == SetStatus.REJECTED


def test_reported_values_are_cut_to_reporting_value_size(store: Store) -> None:
    model = DeviceModel(
        store,
        station_variables(EVSES),
        install_defaults={"DeviceDataCtrlr/ReportingValueSize": "5"},
    )
    key = path_key("SecurityCtrlr/OrganizationName")
    assert model.set(*key, "Open Charge Alliance").status == SetStatus.ACCEPTED
    assert model.get(*key).value == "Open "
    assert model.value("SecurityCtrlr/OrganizationName") == "Open Charge Alliance"


# -- SetVariables (B05) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "attribute", "value", "status"),
    [
        ("OCPPCommCtrlr/HeartbeatInterval", "Actual", "60", SetStatus.ACCEPTED),
        ("OCPPCommCtrlr/WebSocketPingInterval", "Actual", "10", SetStatus.REBOOT_REQUIRED),
        ("OCPPCommCtrlr/MessageTimeout(Default)", "Actual", "10", SetStatus.REJECTED),
        ("EVSE@1/AvailabilityState", "Actual", "Unavailable", SetStatus.REJECTED),
        ("NoSuchCtrlr/Enabled", "Actual", "true", SetStatus.UNKNOWN_COMPONENT),
        ("TxCtrlr/NoSuchVariable", "Actual", "true", SetStatus.UNKNOWN_VARIABLE),
        ("OCPPCommCtrlr/HeartbeatInterval", "Target", "60", SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE),
        ("OCPPCommCtrlr/HeartbeatInterval", "MaxSet", "60", SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE),
        ("SecurityCtrlr/BasicAuthPassword", "Actual", PASSWORD, SetStatus.REBOOT_REQUIRED),
        ("TxCtrlr/TxStopPoint", "Actual", "EVConnected, Authorized", SetStatus.ACCEPTED),
        ("AuthCacheCtrlr/Policy", "Actual", "FIFO", SetStatus.ACCEPTED),
        ("ClockCtrlr/TimeSource", "Actual", "GPS,NTP", SetStatus.ACCEPTED),
        ("AuthCtrlr/LocalPreAuthorize", "Actual", "TRUE", SetStatus.ACCEPTED),
        ("SampledDataCtrlr/TxEndedMeasurands", "Actual", "", SetStatus.ACCEPTED),
    ],
)
def test_set_answers_with_every_status(
    model: DeviceModel, path: str, attribute: str, value: str, status: SetStatus
) -> None:
    assert model.set(*path_key(path), value, Attribute(attribute)).status == status


def test_accepted_value_is_applied_in_canonical_form_and_stored(
    model: DeviceModel, store: Store
) -> None:
    model.set(*path_key("TxCtrlr/TxStopPoint"), " EVConnected , Authorized ")
    model.set(*path_key("AuthCtrlr/LocalPreAuthorize"), "True")
    assert model.value("TxCtrlr/TxStopPoint") == "EVConnected,Authorized"
    assert model.bool_value("AuthCtrlr/LocalPreAuthorize") is True
    assert store.get_setting(PREFIX + "TxCtrlr/TxStopPoint") == "EVConnected,Authorized"
    assert store.get_setting(PREFIX + "AuthCtrlr/LocalPreAuthorize") == "true"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("OCPPCommCtrlr/HeartbeatInterval", "0", "ValueTooLow"),
        ("OCPPCommCtrlr/HeartbeatInterval", "-60", "ValueTooLow"),
        ("OCPPCommCtrlr/HeartbeatInterval", "sixty", "InvalidValue"),
        ("OCPPCommCtrlr/HeartbeatInterval", "1.5", "InvalidValue"),
        ("OCPPCommCtrlr/HeartbeatInterval", "1_000", "InvalidValue"),
        ("OCPPCommCtrlr/HeartbeatInterval", "", "InvalidValue"),
        ("OCPPCommCtrlr/HeartbeatInterval", str(2**31), "ValueTooHigh"),
        ("OCPPCommCtrlr/HeartbeatInterval", "9" * 1001, "TooLargeElement"),
        ("SmartChargingCtrlr/LimitChangeSignificance", "100.5", "ValueTooHigh"),
        ("SmartChargingCtrlr/LimitChangeSignificance", "NaN", "InvalidValue"),
        ("AuthCtrlr/LocalPreAuthorize", "yes", "InvalidValue"),
        ("AuthCacheCtrlr/Policy", "MRU", "InvalidValue"),
        ("AuthCacheCtrlr/Policy", "LRU,LFU", "InvalidValue"),
        ("TxCtrlr/TxStartPoint", "Authorized,Plugged", "InvalidValue"),
        ("TxCtrlr/TxStartPoint", "Authorized,Authorized", "InvalidValue"),
        ("ClockCtrlr/TimeSource", "NTP,Sundial", "InvalidValue"),
        ("AuthCtrlr/MasterPassGroupId", "x" * 37, "TooLargeElement"),
        ("SecurityCtrlr/BasicAuthPassword", "short", "InvalidValue"),
        ("SecurityCtrlr/BasicAuthPassword", "p" * 41, "TooLargeElement"),
        ("SecurityCtrlr/OrganizationName", "o" * 1001, "TooLargeElement"),
    ],
)
def test_out_of_bounds_value_is_rejected_and_never_applied(
    model: DeviceModel, store: Store, path: str, value: str, reason: str
) -> None:
    before_model = model.value(path)
    before_store = store.settings()
    result = model.set(*path_key(path), value)
    assert (result.status, result.reason) == (SetStatus.REJECTED, reason)
    assert model.value(path) == before_model
    assert store.settings() == before_store


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_heartbeat_interval_is_accepted_exactly_when_a_positive_int32(seconds: int) -> None:
    with Store(":memory:") as store:
        model = DeviceModel(store, station_variables(EVSES))
        status = model.set(*path_key("OCPPCommCtrlr/HeartbeatInterval"), str(seconds)).status
        valid = 1 <= seconds < 2**31
        assert (status == SetStatus.ACCEPTED) == valid
        expected = str(seconds) if valid else "300"
        assert model.value("OCPPCommCtrlr/HeartbeatInterval") == expected
        assert store.settings() == ({PREFIX + "OCPPCommCtrlr/HeartbeatInterval": expected}
                                    if valid else {})  # fmt: skip


@given(st.lists(st.sampled_from((*MEASURANDS, "Temperature", "Bogus")), max_size=6))
def test_member_list_accepts_exactly_the_repeat_free_subsets(members: list[str]) -> None:
    with Store(":memory:") as store:
        model = DeviceModel(store, station_variables(EVSES))
        path = "SampledDataCtrlr/TxUpdatedMeasurands"
        default = model.list_value(path)
        status = model.set(*path_key(path), ",".join(members)).status
        valid = set(members) <= set(MEASURANDS) and len(set(members)) == len(members)
        assert (status == SetStatus.ACCEPTED) == valid
        assert model.list_value(path) == (members if valid else default)


def test_a_path_read_often_follows_every_change_and_an_unknown_one_stays_unknown(
    model: DeviceModel,
) -> None:
    path = "OCPPCommCtrlr/HeartbeatInterval"
    assert model.int_value(path) == 300
    for seconds in ("60", "90"):
        assert model.set(*path_key(path), seconds).status == SetStatus.ACCEPTED
        assert model.value(path) == seconds
        assert model.value("ocppcommctrlr/heartbeatinterval") == seconds  # any spelling
    for _ in range(2):
        with pytest.raises(KeyError):
            model.value("OCPPCommCtrlr/NoSuchVariable")
        with pytest.raises(KeyError):
            model.value("OCPPCommCtrlr/HeartbeatInterval#Target")  # no such attribute


def test_target_is_set_apart_from_actual_and_unset_reads_empty(store: Store) -> None:
    limit = VariableDef(
        ComponentKey("EVSE", evse_id=1),
        VariableKey("ACCurrent"),
        DataType.DECIMAL,
        {Attribute.ACTUAL: Mutability.READ_ONLY, Attribute.TARGET: Mutability.READ_WRITE},
        {Attribute.ACTUAL: "0"},
        unit="A",
        min_limit=0,
        max_limit=32,
    )
    model = DeviceModel(store, [limit])
    key = path_key("EVSE@1/ACCurrent")
    assert model.get(*key, Attribute.TARGET).value == ""  # B06.FR.13
    assert model.set(*key, "16", Attribute.ACTUAL).status == SetStatus.REJECTED
    assert model.set(*key, "40", Attribute.TARGET).status == SetStatus.REJECTED
    assert model.set(*key, "16", Attribute.TARGET).status == SetStatus.ACCEPTED
    assert model.set(*key, "16", Attribute.MIN_SET).status == SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    assert (model.get(*key).value, model.get(*key, Attribute.TARGET).value) == ("0", "16")
    assert store.settings() == {PREFIX + "EVSE@1/ACCurrent#Target": "16"}


def test_watchers_hear_each_accepted_change_only(model: DeviceModel) -> None:
    heard: list[tuple[str, str, str]] = []

    def broken(*_: object) -> None:
        raise RuntimeError("a watcher bug must not undo the change")

    model.watch(broken)
    model.watch(lambda d, a, v: heard.append((d.variable.name, a.value, v)))
    model.set(*path_key("OCPPCommCtrlr/HeartbeatInterval"), "0")
    model.set(*path_key("OCPPCommCtrlr/HeartbeatInterval"), "120")
    model.update(*path_key("EVSE@1/AvailabilityState"), "Unavailable")
    assert heard == [("HeartbeatInterval", "Actual", "120")]
    assert model.int_value("OCPPCommCtrlr/HeartbeatInterval") == 120


# -- the station's own updates -------------------------------------------------------------


def test_update_changes_read_only_runtime_values_but_validates_them(model: DeviceModel) -> None:
    model.update(*path_key("EVSE@1/AvailabilityState"), "Faulted")
    assert model.get(*path_key("EVSE@1/AvailabilityState")).value == "Faulted"
    with pytest.raises(ValueError):
        model.update(*path_key("EVSE@1/AvailabilityState"), "Broken")
    with pytest.raises(ValueError):
        model.update(*path_key("ChargingStation/Model"), "Other")  # constant
    with pytest.raises(KeyError):
        model.update(*path_key("EVSE@3/AvailabilityState"), "Available")


# -- persistence ---------------------------------------------------------------------------


def test_values_survive_a_new_model_over_the_same_store(tmp_path: Path) -> None:
    with Store(tmp_path / "agent.db") as store:
        model = DeviceModel(store, station_variables(EVSES))
        model.set(*path_key("OCPPCommCtrlr/HeartbeatInterval"), "42")
        model.set(*path_key("OCPPCommCtrlr/WebSocketPingInterval"), "15")  # RebootRequired
        model.set(*path_key("SecurityCtrlr/BasicAuthPassword"), PASSWORD)
        model.update(*path_key("SecurityCtrlr/SecurityProfile"), "2")
        model.update(*path_key("EVSE@1/AvailabilityState"), "Unavailable")  # not persistent
    with Store(tmp_path / "agent.db") as store:
        model = DeviceModel(store, station_variables(EVSES))
        assert model.value("OCPPCommCtrlr/HeartbeatInterval") == "42"
        assert model.value("OCPPCommCtrlr/WebSocketPingInterval") == "15"
        assert model.value("SecurityCtrlr/BasicAuthPassword") == PASSWORD
        assert model.value("SecurityCtrlr/SecurityProfile") == "2"
        assert model.value("EVSE@1/AvailabilityState") == "Available"


def test_install_config_sets_defaults_and_runtime_changes_win(store: Store) -> None:
    install = {"OCPPCommCtrlr/HeartbeatInterval": "900", "SecurityCtrlr/Identity": "CP-0042"}
    model = DeviceModel(store, station_variables(EVSES), install_defaults=install)
    assert model.value("OCPPCommCtrlr/HeartbeatInterval") == "900"
    assert model.value("SecurityCtrlr/Identity") == "CP-0042"
    model.set(*path_key("OCPPCommCtrlr/HeartbeatInterval"), "30")
    again = DeviceModel(store, station_variables(EVSES), install_defaults=install)
    assert again.value("OCPPCommCtrlr/HeartbeatInterval") == "30"


@pytest.mark.parametrize(
    "install",
    [{"OCPPCommCtrlr/Heartbeat": "60"}, {"OCPPCommCtrlr/HeartbeatInterval": "0"},
     {"HeartbeatInterval": "60"}, {"OCPPCommCtrlr/HeartbeatInterval#Target": "60"}],
)  # fmt: skip
def test_install_config_that_does_not_fit_is_refused(store: Store, install: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        DeviceModel(store, station_variables(EVSES), install_defaults=install)


def test_a_stored_value_that_no_longer_fits_is_ignored(store: Store) -> None:
    store.set_setting(PREFIX + "OCPPCommCtrlr/HeartbeatInterval", "-1")
    store.set_setting(PREFIX + "ChargingStation/Model", "tampered")  # constant: not stored
    model = DeviceModel(store, station_variables(EVSES), install_defaults={})
    assert model.value("OCPPCommCtrlr/HeartbeatInterval") == "300"
    assert model.value("ChargingStation/Model") == "cpagent"


@pytest.mark.parametrize(
    "path",
    ["OCPPCommCtrlr/HeartbeatInterval", "EVSE@1/Power", "Connector@2:1/ConnectorType",
     "DeviceDataCtrlr/ItemsPerMessage(GetVariables)", "Ctrl(A)@3:4/Var(B)#MaxSet"],
)  # fmt: skip
def test_paths_round_trip(path: str) -> None:
    assert format_path(*parse_path(path)) == path


@pytest.mark.parametrize("path", ["", "NoSlash", "A/B#Sideways", "A@x/B", "A/B/C", "A(/B"])
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


# -- the wire ------------------------------------------------------------------------------


def test_get_variables_answers_each_item_in_order_within_the_schema(model: DeviceModel) -> None:
    model.set(*path_key("SecurityCtrlr/BasicAuthPassword"), PASSWORD)
    request = {
        "getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 2}},
             "variable": {"name": "ConnectorType"}, "attributeType": "Actual"},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
            {"component": {"name": "Nope"}, "variable": {"name": "Enabled"}},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "StopTxOnInvalidId"},
             "attributeType": "MinSet"},
        ]
    }  # fmt: skip
    validate("GetVariables", request, response=False)
    response = get_variables(model, request)
    validate("GetVariables", response, response=True)
    results = response["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Accepted", "Rejected", "UnknownComponent", "NotSupportedAttributeType",
    ]  # fmt: skip
    assert [r.get("attributeValue") for r in results] == ["300", "cCCS2", None, None, None]
    assert results[1]["component"] == {"name": "Connector", "evse": {"id": 2, "connectorId": 2}}
    assert results[2]["attributeStatusInfo"] == {"reasonCode": "WriteOnly"}
    assert PASSWORD not in json.dumps(response)


def test_set_variables_answers_each_item_and_applies_only_the_valid(
    model: DeviceModel, store: Store
) -> None:
    request = {
        "setVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
             "attributeValue": "120"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"},
             "attributeValue": "-3"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "WebSocketPingInterval"},
             "attributeValue": "20", "attributeType": "Actual"},
            {"component": {"name": "ChargingStation"}, "variable": {"name": "Model"},
             "attributeValue": "X"},
        ]
    }  # fmt: skip
    validate("SetVariables", request, response=False)
    response = set_variables(model, request)
    validate("SetVariables", response, response=True)
    results = response["setVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Rejected", "RebootRequired", "Rejected",
    ]  # fmt: skip
    assert results[1]["attributeStatusInfo"] == {"reasonCode": "ValueTooLow"}
    assert results[3]["attributeStatusInfo"] == {"reasonCode": "ReadOnly"}
    assert model.value("OCPPCommCtrlr/OfflineThreshold") == "60"
    assert set(store.settings()) == {
        PREFIX + "OCPPCommCtrlr/HeartbeatInterval",
        PREFIX + "OCPPCommCtrlr/WebSocketPingInterval",
    }


def _items(field: str, count: int, value: str = "77") -> dict[str, Any]:
    item: dict[str, Any] = {"component": {"name": "OCPPCommCtrlr"},
                            "variable": {"name": "HeartbeatInterval"}}  # fmt: skip
    if field == "setVariableData":
        item["attributeValue"] = value
    return {field: [item] * count}


@pytest.mark.parametrize(
    ("field", "answer", "after"),
    [("getVariableData", get_variables, "300"), ("setVariableData", set_variables, "77")],
)
def test_more_items_than_items_per_message_is_an_occurrence_violation(
    store: Store, field: str, answer: Any, after: str
) -> None:
    instance = "GetVariables" if field == "getVariableData" else "SetVariables"
    model = DeviceModel(
        store,
        station_variables(EVSES),
        install_defaults={f"DeviceDataCtrlr/ItemsPerMessage({instance})": "2"},
    )
    assert len(answer(model, _items(field, 2))[field.replace("Data", "Result")]) == 2
    with pytest.raises(RequestLimitExceeded) as raised:
        answer(model, _items(field, 3, value="88"))
    assert raised.value.code == "OccurrenceConstraintViolation"  # B06.FR.16
    assert model.value("OCPPCommCtrlr/HeartbeatInterval") == after  # the 88s were not applied


def test_nothing_is_set_when_the_request_is_over_its_limits(store: Store) -> None:
    model = DeviceModel(
        store,
        station_variables(EVSES),
        install_defaults={"DeviceDataCtrlr/BytesPerMessage(SetVariables)": "100"},
    )
    with pytest.raises(RequestLimitExceeded) as raised:
        set_variables(model, _items("setVariableData", 2))
    assert raised.value.code == "FormatViolation"  # B06.FR.17 / B05 likewise
    assert model.value("OCPPCommCtrlr/HeartbeatInterval") == "300"
    assert store.settings() == {}
