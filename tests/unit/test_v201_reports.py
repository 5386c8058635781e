"""OCPP 2.0.1 device model reports: GetBaseReport (B07) and GetReport (B08) contents, and
their NotifyReport messages split by seqNo/tbc within ItemsPerMessage and BytesPerMessage."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ocpp.dialects import OCPP201
from agent.ocpp.v201.device_model import (
    DeviceModel,
    RequestLimitExceeded,
    format_path,
    parse_path,
    wire_size,
)
from agent.ocpp.v201.reports import (
    ReportData,
    base_report,
    check_get_report_request,
    custom_report,
    notify_report_limits,
    report_status,
    split_notify_report,
)
from agent.ocpp.v201.variables import ComponentKey, Mutability, VariableKey, station_variables
from agent.store import Store

EVSES = [(1, [(1, "cType2")]), (2, [(1, "sType2"), (2, "cCCS2")])]
AT = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
PASSWORD = "correct-horse-battery-staple"
validate_notify_report = OCPP201.validator("NotifyReport", response=False)


def path_of(item: ReportData) -> str:
    """The device model path a ReportData names."""
    component, variable = item["component"], item["variable"]
    evse = component.get("evse", {})
    return format_path(
        ComponentKey(
            component["name"], component.get("instance"), evse.get("id"), evse.get("connectorId")
        ),
        VariableKey(variable["name"], variable.get("instance")),
    )


def paths(items: list[ReportData]) -> list[str]:
    """The paths of report items, in order."""
    return [path_of(item) for item in items]


def key(path: str) -> tuple[ComponentKey, VariableKey]:
    """Component and variable keys of a path."""
    component, variable, _ = parse_path(path)
    return component, variable


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A file-backed store, closed after the test."""
    with Store(tmp_path / "agent.db") as opened:
        yield opened


@pytest.fixture
def model(store: Store) -> DeviceModel:
    """A two-EVSE station whose CSMS has set a basic auth password."""
    model = DeviceModel(store, station_variables(EVSES))
    model.set(*key("SecurityCtrlr/BasicAuthPassword"), PASSWORD)
    return model


def all_paths(model: DeviceModel) -> list[str]:
    """Every variable of the model, in catalogue order."""
    return [format_path(d.component, d.variable) for d in model.definitions]


# -- GetBaseReport (B07) -------------------------------------------------------------------


def test_full_inventory_reports_every_variable_exactly_once(model: DeviceModel) -> None:
    reported = paths(base_report(model, "FullInventory"))
    assert Counter(reported) == Counter(all_paths(model))
    assert len(set(reported)) == len(reported)


def test_configuration_inventory_reports_only_what_the_csms_can_set(model: DeviceModel) -> None:
    items = base_report(model, "ConfigurationInventory")
    writable = {
        format_path(d.component, d.variable)
        for d in model.definitions
        if Mutability.READ_ONLY not in d.mutability.values()
    }
    assert set(paths(items)) == writable
    assert "OCPPCommCtrlr/HeartbeatInterval" in writable
    assert "SecurityCtrlr/BasicAuthPassword" in writable
    mutabilities = {a["mutability"] for item in items for a in item["variableAttribute"]}
    assert mutabilities <= {"ReadWrite", "WriteOnly"}


def test_summary_inventory_reports_the_availability_of_station_evses_and_connectors(
    model: DeviceModel,
) -> None:
    reported = set(paths(base_report(model, "SummaryInventory")))
    expected_states = {
        "ChargingStation/AvailabilityState",
        "EVSE@1/AvailabilityState",
        "EVSE@2/AvailabilityState",
        "Connector@1:1/AvailabilityState",
        "Connector@2:1/AvailabilityState",
        "Connector@2:2/AvailabilityState",
    }
    assert expected_states <= reported
    assert {"ChargingStation/Problem", "EVSE@2/Problem"} <= reported
    assert {parse_path(p).variable.name for p in reported} <= {
        "AvailabilityState", "Available", "Problem", "Tripped",
    }  # fmt: skip


def test_report_shows_runtime_values_and_characteristics(model: DeviceModel) -> None:
    model.update(*key("EVSE@2/AvailabilityState"), "Occupied")
    items = {path_of(i): i for i in base_report(model, "FullInventory")}
    state = items["EVSE@2/AvailabilityState"]
    assert state["component"] == {"name": "EVSE", "evse": {"id": 2}}
    assert state["variableAttribute"] == [
        {"type": "Actual", "value": "Occupied", "mutability": "ReadOnly",
         "persistent": False, "constant": False},
    ]  # fmt: skip
    assert state["variableCharacteristics"]["valuesList"] == (
        "Available,Occupied,Reserved,Unavailable,Faulted"
    )
    power = items["EVSE@1/Power"]["variableCharacteristics"]
    assert power == {"unit": "W", "dataType": "decimal", "minLimit": 0, "maxLimit": 22080,
                     "supportsMonitoring": False}  # fmt: skip
    heartbeat = items["OCPPCommCtrlr/HeartbeatInterval"]["variableAttribute"][0]
    assert (heartbeat["value"], heartbeat["persistent"]) == ("300", True)


@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory", "SummaryInventory"])
def test_write_only_values_are_never_reported(model: DeviceModel, base: str) -> None:
    items = base_report(model, base)
    assert PASSWORD not in json.dumps(items)
    password = [i for i in items if path_of(i) == "SecurityCtrlr/BasicAuthPassword"]
    for item in password:  # absent from SummaryInventory, valueless elsewhere
        assert item["variableAttribute"] == [
            {"type": "Actual", "mutability": "WriteOnly", "persistent": True, "constant": False}
        ]


def test_unknown_report_base_is_refused(model: DeviceModel) -> None:
    with pytest.raises(ValueError):
        base_report(model, "EverythingInventory")


@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory", "SummaryInventory"])
@pytest.mark.parametrize("limits", [(64, 65536), (5, 2000), (1, 700)])
def test_every_notify_report_validates_against_the_schema(
    model: DeviceModel, base: str, limits: tuple[int, int]
) -> None:
    items = base_report(model, base)
    messages = split_notify_report(
        7, items, items_per_message=limits[0], bytes_per_message=limits[1], generated_at=AT
    )
    for message in messages:
        validate_notify_report(message)
    assert [item for m in messages for item in m["reportData"]] == items
    assert messages[0]["generatedAt"] == "2025-06-01T12:00:00.123Z"


# -- GetReport (B08) -----------------------------------------------------------------------


def test_enabled_criterion_skips_disabled_components(model: DeviceModel) -> None:
    model.set(*key("SampledDataCtrlr/Enabled"), "false")
    reported = paths(custom_report(model, ["Enabled"]))
    components = {parse_path(p).component.name for p in reported}
    assert "SampledDataCtrlr" not in components
    # B08.FR.09: an Enabled variable set to true, or none at all
    assert {"AuthCacheCtrlr", "AlignedDataCtrlr", "OCPPCommCtrlr", "EVSE"} <= components


def test_problem_criterion_reports_only_components_with_a_problem(model: DeviceModel) -> None:
    assert custom_report(model, ["Problem"]) == []
    assert report_status(custom_report(model, ["Problem"])) == "EmptyResultSet"
    model.update(*key("EVSE@2/Problem"), "true")
    reported = paths(custom_report(model, ["Problem"]))
    assert reported == [p for p in all_paths(model) if p.startswith("EVSE@2/")]
    assert report_status(custom_report(model, ["Problem"])) == "Accepted"


def test_criteria_are_ored(model: DeviceModel) -> None:
    model.set(*key("SampledDataCtrlr/Enabled"), "false")
    model.update(*key("ChargingStation/Problem"), "true")
    either = set(paths(custom_report(model, ["Problem", "Enabled"])))
    assert either == set(paths(custom_report(model, ["Problem"]))) | set(
        paths(custom_report(model, ["Enabled"]))
    )


def select(
    component: str, variable: str | None = None, *, evse: int | None = None, instance: str = ""
) -> dict[str, Any]:
    """A ComponentVariableType dict."""
    entry: dict[str, Any] = {"component": {"name": component}}
    if evse is not None:
        entry["component"]["evse"] = {"id": evse}
    if variable is not None:
        entry["variable"] = {"name": variable, **({"instance": instance} if instance else {})}
    return entry


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (select("EVSE", "AvailabilityState", evse=1), ["EVSE@1/AvailabilityState"]),
        (select("evse", "power"), ["EVSE@1/Power", "EVSE@2/Power"]),
        (select("Connector", "ConnectorType", evse=2),
         ["Connector@2:1/ConnectorType", "Connector@2:2/ConnectorType"]),
        (select("DeviceDataCtrlr", "ItemsPerMessage"),
         ["DeviceDataCtrlr/ItemsPerMessage(GetReport)",
          "DeviceDataCtrlr/ItemsPerMessage(GetVariables)",
          "DeviceDataCtrlr/ItemsPerMessage(SetVariables)"]),
        (select("DeviceDataCtrlr", "BytesPerMessage", instance="GetReport"),
         ["DeviceDataCtrlr/BytesPerMessage(GetReport)"]),
        (select("ClockCtrlr"), ["ClockCtrlr/DateTime", "ClockCtrlr/TimeSource"]),
        (select("NoSuchCtrlr"), []),
    ],
)  # fmt: skip
def test_component_variable_selects_what_it_names(
    model: DeviceModel, selector: dict[str, Any], expected: list[str]
) -> None:
    assert paths(custom_report(model, [], [selector])) == expected


def test_criteria_and_component_variables_intersect(model: DeviceModel) -> None:
    # TC_B_18: Available + EVSE 1 AvailabilityState reports it; Problem + the same is empty
    selector = {
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "AvailabilityState"},
    }
    assert paths(custom_report(model, ["Available"], [selector])) == ["EVSE@1/AvailabilityState"]
    assert custom_report(model, ["Problem"], [selector]) == []


def test_no_filter_reports_everything(model: DeviceModel) -> None:
    assert custom_report(model) == base_report(model, "FullInventory")


def test_unknown_criterion_is_refused(model: DeviceModel) -> None:
    with pytest.raises(ValueError):
        custom_report(model, ["Broken"])


def test_get_report_with_too_many_component_variables_is_refused(store: Store) -> None:
    model = DeviceModel(
        store,
        station_variables(EVSES),
        install_defaults={"DeviceDataCtrlr/ItemsPerMessage(GetReport)": "2"},
    )
    entry = {"component": {"name": "TxCtrlr"}}
    check_get_report_request(model, {"requestId": 1, "componentVariable": [entry] * 2})
    with pytest.raises(RequestLimitExceeded) as raised:
        check_get_report_request(model, {"requestId": 1, "componentVariable": [entry] * 3})
    assert raised.value.code == "OccurrenceConstraintViolation"  # B08.FR.17
    assert notify_report_limits(model) == (2, 65536)


# -- splitting into NotifyReport messages ---------------------------------------------------


def _full_inventory() -> list[ReportData]:
    with Store(":memory:") as store:
        model = DeviceModel(store, station_variables(EVSES))
        model.set(*key("SecurityCtrlr/OrganizationName"), "Ünïcödé Charging €")
        return base_report(model, "FullInventory")


FULL = _full_inventory()
ENVELOPE_BYTES = wire_size(
    {"requestId": 2**31 - 1, "generatedAt": "2025-06-01T12:00:00.123Z", "tbc": False,
     "seqNo": 999, "reportData": []}
)  # fmt: skip
LARGEST_ITEM = max(wire_size(item) for item in FULL)


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(0, len(FULL) - 1),
    count=st.integers(1, len(FULL)),
    items_per_message=st.integers(1, 30),
    spare_bytes=st.integers(0, 6000),
    request_id=st.integers(0, 2**31 - 1),
)
def test_split_respects_both_limits_and_reassembles(
    start: int, count: int, items_per_message: int, spare_bytes: int, request_id: int
) -> None:
    items = FULL[start : start + count]
    bytes_per_message = ENVELOPE_BYTES + LARGEST_ITEM + spare_bytes
    messages = split_notify_report(
        request_id,
        items,
        items_per_message=items_per_message,
        bytes_per_message=bytes_per_message,
        generated_at=AT,
    )
    assert [m["seqNo"] for m in messages] == list(range(len(messages)))
    assert [m["tbc"] for m in messages] == [True] * (len(messages) - 1) + [False]
    for message in messages:
        validate_notify_report(message)
        assert message["requestId"] == request_id
        assert 1 <= len(message["reportData"]) <= items_per_message
        assert wire_size(message) <= bytes_per_message
    assert [item for m in messages for item in m["reportData"]] == items
    # greedy: no message could have taken the next message's first item as well
    for current, following in itertools.pairwise(messages):
        rest = following["reportData"][1:]
        grown = {
            **current,
            "tbc": bool(rest) or following["tbc"],  # taking all of `following` ends it
            "reportData": [*current["reportData"], following["reportData"][0]],
        }
        assert len(grown["reportData"]) > items_per_message or wire_size(grown) > bytes_per_message


def test_split_keeps_room_for_the_call_frame(model: DeviceModel) -> None:
    items = base_report(model, "FullInventory")
    frame = len('[2,"00000000-0000-0000-0000-000000000000","NotifyReport",]')
    messages = split_notify_report(
        1, items, items_per_message=100, bytes_per_message=4000, generated_at=AT,
        overhead_bytes=frame,
    )  # fmt: skip
    for message in messages:
        sent = [2, "00000000-0000-0000-0000-000000000000", "NotifyReport", message]
        assert wire_size(sent) <= 4000


def test_nothing_to_report_makes_one_notify_report_without_data() -> None:
    messages = split_notify_report(
        3, [], items_per_message=10, bytes_per_message=1000, generated_at=AT
    )
    assert messages == [
        {"requestId": 3, "generatedAt": "2025-06-01T12:00:00.123Z", "tbc": False, "seqNo": 0}
    ]
    validate_notify_report(messages[0])


@pytest.mark.parametrize(
    ("items_per_message", "bytes_per_message", "generated_at"),
    [(0, 65536, AT), (10, 200, AT), (10, 65536, datetime(2025, 1, 1))],
)
def test_split_refuses_limits_it_cannot_meet(
    items_per_message: int, bytes_per_message: int, generated_at: datetime
) -> None:
    with pytest.raises(ValueError):
        split_notify_report(
            1,
            FULL,
            items_per_message=items_per_message,
            bytes_per_message=bytes_per_message,
            generated_at=generated_at,
        )
