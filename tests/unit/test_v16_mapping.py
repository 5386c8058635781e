"""OCPP 1.6 mapping tables and meter value building, checked against the official JSON
schemas shipped with the `ocpp` package (the same ones the test CSMS validates with)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.events import AuthStatus, sample_payload
from agent.core.ports import SampleContext, StopReason
from agent.core.status import ConnectorStatus
from agent.ocpp.v16.mapping import (
    AUTH_STATUS,
    ERROR_CODES,
    PHASES,
    READING_CONTEXT,
    STOP_REASONS,
    SUPPORTED_MEASURANDS,
    energy_wh,
    meter_value,
    number,
    sampled_values,
    status_value,
    timestamp,
)
from drivers.types import FaultCode, MeterSample

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
AT = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
DECIMAL = re.compile(r"^-?\d+(\.\d{1,3})?$")


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


@cache
def validator(name: str) -> Callable[[Any], Any]:
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schema(name))
    return compiled


def sampled_value_enum(field: str) -> set[str]:
    items = schema("MeterValues")["properties"]["meterValue"]["items"]
    return set(items["properties"]["sampledValue"]["items"]["properties"][field]["enum"])


FULL_SAMPLE = MeterSample(
    energy_import_wh=12345.6789,
    power_w=22080.0,
    current_a=(32.0, 31.5, 0.0),
    voltage_v=(230.1, 229.9, 231.0),
    energy_export_wh=1.5,
    frequency_hz=50.02,
    soc_percent=63.5,
    temperature_c=41.25,
)


# --- tables: total over the core's enums, valid for the 1.6 schemas ---------------------------


@pytest.mark.parametrize("code", list(FaultCode))
def test_every_fault_has_a_status_notification_error_code(code: FaultCode) -> None:
    enum = schema("StatusNotification")["properties"]["errorCode"]["enum"]
    assert ERROR_CODES[code] in enum
    assert ERROR_CODES[code] != "NoError"  # a fault is never reported as no error


@pytest.mark.parametrize("reason", list(StopReason))
def test_every_stop_reason_has_a_stop_transaction_reason(reason: StopReason) -> None:
    assert STOP_REASONS[reason] in schema("StopTransaction")["properties"]["reason"]["enum"]


@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        (StopReason.LOCAL, "Local"),
        (StopReason.REMOTE, "Remote"),
        (StopReason.EV_DISCONNECTED, "EVDisconnected"),
        (StopReason.POWER_LOSS, "PowerLoss"),
        (StopReason.DE_AUTHORIZED, "DeAuthorized"),
        (StopReason.HARD_RESET, "HardReset"),
        (StopReason.SOFT_RESET, "SoftReset"),
        (StopReason.REBOOT, "Reboot"),
        (StopReason.EMERGENCY_STOP, "EmergencyStop"),
    ],
)
def test_stop_reasons_with_a_1_6_name_keep_it(reason: StopReason, wire: str) -> None:
    assert STOP_REASONS[reason] == wire


@pytest.mark.parametrize("status", list(ConnectorStatus))
def test_every_connector_status_is_a_charge_point_status(status: ConnectorStatus) -> None:
    assert status_value(status) in schema("StatusNotification")["properties"]["status"]["enum"]


def test_status_notifications_built_from_the_tables_pass_the_schema() -> None:
    validate = validator("StatusNotification")
    for status in ConnectorStatus:
        validate({"connectorId": 1, "errorCode": "NoError", "status": status_value(status)})
    for code in FaultCode:
        validate(
            {
                "connectorId": 1,
                "errorCode": ERROR_CODES[code],
                "status": status_value(ConnectorStatus.FAULTED),
                "timestamp": timestamp(AT),
            }
        )


def test_authorization_statuses_match_id_tag_info_both_ways() -> None:
    wire = schema("AuthorizeResponse")["properties"]["idTagInfo"]["properties"]["status"]["enum"]
    assert set(AUTH_STATUS) == set(wire)
    assert set(AUTH_STATUS.values()) == set(AuthStatus)


@pytest.mark.parametrize("context", list(SampleContext))
def test_every_sample_context_is_a_reading_context(context: SampleContext) -> None:
    assert READING_CONTEXT[context] in sampled_value_enum("context")


def test_supported_measurands_and_phases_are_1_6_values() -> None:
    assert set(SUPPORTED_MEASURANDS) <= sampled_value_enum("measurand")
    assert set(PHASES) <= sampled_value_enum("phase")


# --- meter values ------------------------------------------------------------------------------


def by_measurand(values: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for value in values:
        grouped.setdefault(value["measurand"], []).append(value)
    return grouped


def test_sampled_values_carry_units_phases_and_locations() -> None:
    values = by_measurand(
        sampled_values(FULL_SAMPLE, SUPPORTED_MEASURANDS, "Sample.Periodic", 16.0)
    )

    (energy,) = values["Energy.Active.Import.Register"]
    assert (energy["value"], energy["unit"], energy["location"]) == ("12345.679", "Wh", "Outlet")
    assert values["Energy.Active.Export.Register"][0]["value"] == "1.5"
    assert values["Power.Active.Import"][0]["unit"] == "W"
    currents = values["Current.Import"]
    assert [(c["phase"], c["value"], c["unit"]) for c in currents] == [
        ("L1", "32", "A"),
        ("L2", "31.5", "A"),
        ("L3", "0", "A"),
    ]
    (offered,) = values["Current.Offered"]
    assert (offered["value"], offered["unit"]) == ("16", "A")
    assert "phase" not in offered
    assert [(v["phase"], v["unit"]) for v in values["Voltage"]] == [
        ("L1-N", "V"),
        ("L2-N", "V"),
        ("L3-N", "V"),
    ]
    assert values["Frequency"][0]["value"] == "50.02"
    assert (values["SoC"][0]["unit"], values["SoC"][0]["location"]) == ("Percent", "EV")
    assert values["Temperature"][0]["unit"] == "Celsius"
    assert all(v["context"] == "Sample.Periodic" for group in values.values() for v in group)


def test_sampled_values_follow_the_requested_order_and_selection() -> None:
    values = sampled_values(
        FULL_SAMPLE, ["Power.Active.Import", "Energy.Active.Import.Register"], "Trigger", 0.0
    )
    assert [v["measurand"] for v in values] == [
        "Power.Active.Import",
        "Energy.Active.Import.Register",
    ]


def test_measurands_the_meter_does_not_provide_are_left_out() -> None:
    bare = MeterSample(energy_import_wh=1.0, power_w=0.0, current_a=(0, 0, 0), voltage_v=(0, 0, 0))
    values = sampled_values(bare, ["Frequency", "SoC", "Temperature"], "Sample.Clock", 0.0)
    assert values == []


def test_every_sampled_value_passes_the_meter_values_schema() -> None:
    values = sampled_values(FULL_SAMPLE, SUPPORTED_MEASURANDS, "Sample.Clock", 32.0)
    validator("MeterValues")(
        {"connectorId": 1, "meterValue": [{"timestamp": timestamp(AT), "sampledValue": values}]}
    )
    assert set(sampled_value_enum("unit")) >= {v["unit"] for v in values if "unit" in v}


@pytest.mark.parametrize("context", list(SampleContext))
def test_meter_value_from_a_journal_payload(context: SampleContext) -> None:
    payload: Mapping[str, Any] = json.loads(
        json.dumps(sample_payload(FULL_SAMPLE, context, AT, 16.0))  # as the store keeps it
    )
    element = meter_value(payload, ["Energy.Active.Import.Register", "Current.Offered"])

    assert element is not None
    assert element["timestamp"] == "2025-03-01T12:30:05.123Z"
    assert [v["context"] for v in element["sampledValue"]] == [READING_CONTEXT[context]] * 2
    assert [v["value"] for v in element["sampledValue"]] == ["12345.679", "16"]
    validator("MeterValues")({"connectorId": 1, "transactionId": 7, "meterValue": [element]})


def test_meter_value_is_none_without_a_sample_or_without_values() -> None:
    assert meter_value({}, SUPPORTED_MEASURANDS) is None
    payload = sample_payload(FULL_SAMPLE, SampleContext.END, AT, 0.0)
    assert meter_value(payload, []) is None


# --- number and time formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (100.0, "100"),
        (0.1 + 0.2, "0.3"),
        (12345.6789, "12345.679"),
        (1e-7, "0"),
        (-0.0004, "0"),
        (-1.25, "-1.25"),
        (1e16, "10000000000000000"),
        (1.5e20, "150000000000000000000"),
    ],
)
def test_numbers_are_plain_decimals(value: float, text: str) -> None:
    assert number(value) == text


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_numbers_never_use_exponent_notation_and_keep_the_value(value: float) -> None:
    text = number(value)
    assert DECIMAL.match(text), text
    assert float(text) == pytest.approx(value, abs=0.0005 + abs(value) * 1e-15)


def test_meter_start_and_stop_are_whole_watt_hours_rounded_down() -> None:
    assert energy_wh(1234.99) == 1234
    assert energy_wh(0.0) == 0
    assert isinstance(energy_wh(10.0), int)


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (AT, "2025-03-01T12:30:05.123Z"),
        (datetime(2025, 3, 1, 0, 0, tzinfo=UTC), "2025-03-01T00:00:00.000Z"),
        (
            datetime(2025, 3, 1, 14, 30, 5, 999999, tzinfo=timezone(timedelta(hours=2))),
            "2025-03-01T12:30:05.999Z",
        ),
        (
            datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
            "2025-01-01T04:59:59.000Z",
        ),
    ],
)
def test_timestamps_are_utc_with_milliseconds_and_z(at: datetime, text: str) -> None:
    assert timestamp(at) == text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == at.replace(
        microsecond=at.microsecond // 1000 * 1000
    )
