"""OCPP 2.0.1 meter values (block J): journal sample payloads to MeterValueType, checked
against the official 2.0.1 JSON schemas with both validators the project meets on the
wire (the agent's fastjsonschema dialect and the `ocpp` library's own, which the test
CSMS runs), and the SampledDataCtrlr / AlignedDataCtrlr measurand lists that select them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import MessageType, get_validator

from agent.core.events import sample_payload
from agent.core.ports import SampleContext
from agent.ocpp.dialects import OCPP201
from agent.ocpp.v201.device_model import DeviceModel, SetStatus, parse_path
from agent.ocpp.v201.metering import (
    READING_CONTEXT,
    READING_CONTEXTS,
    SUPPORTED_MEASURANDS,
    meter_value,
    meter_values_request,
    register_reading,
    sampled_values,
    wire_time,
)
from agent.ocpp.v201.variables import DataType, station_variables
from agent.store import Store
from drivers.types import MeterSample

AT = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
FULL_SAMPLE = MeterSample(
    energy_import_wh=12345.6789,
    power_w=7360.0,
    current_a=(32.0, 31.5, 0.0),
    voltage_v=(230.1, 229.9, 231.0),
    energy_export_wh=1.5,
    frequency_hz=50.02,
    soc_percent=42.0,
    temperature_c=35.5,
)
BARE_SAMPLE = MeterSample(
    energy_import_wh=10.0, power_w=0.0, current_a=(0.0, 0.0, 0.0), voltage_v=(0.0, 0.0, 0.0)
)


def schema_enum(definition: str) -> set[str]:
    """An enumeration of the official MeterValuesRequest schema."""
    text = files("ocpp").joinpath("v201", "schemas", "MeterValuesRequest.json").read_text("utf-8")
    return set(json.loads(text)["definitions"][definition]["enum"])


def stored(sample: MeterSample, context: SampleContext, offered_current_a: float) -> Any:
    """A sample payload as the journal gives it back (through JSON)."""
    return json.loads(json.dumps(sample_payload(sample, context, AT, offered_current_a)))


def check_on_the_wire(action: str, payload: dict[str, Any]) -> None:
    """Validate a request as the agent's dialect and the ocpp library's CSMS do."""
    OCPP201.validator(action, response=False)(payload)
    get_validator(MessageType.Call, action, "2.0.1").validate(json.loads(json.dumps(payload)))


def by_measurand(values: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for value in values:
        grouped.setdefault(value["measurand"], []).append(value)
    return grouped


# --- tables against the schemas -------------------------------------------------------------


def test_reading_contexts_are_the_schema_enumeration_and_cover_every_sample_context() -> None:
    assert schema_enum("ReadingContextEnumType") == READING_CONTEXTS
    assert set(READING_CONTEXT) == set(SampleContext)
    assert set(READING_CONTEXT.values()) <= READING_CONTEXTS


def test_supported_measurands_are_2_0_1_values_without_temperature() -> None:
    assert set(SUPPORTED_MEASURANDS) <= schema_enum("MeasurandEnumType")
    assert "Temperature" not in SUPPORTED_MEASURANDS
    assert len(set(SUPPORTED_MEASURANDS)) == len(SUPPORTED_MEASURANDS)


# --- one table row per measurand -----------------------------------------------------------

# measurand -> [(value, phase, unit, location)] for FULL_SAMPLE, 16 A offered, 3 phases
EXPECTED: dict[str, list[tuple[float, str | None, str, str]]] = {
    "Energy.Active.Import.Register": [(12345.679, None, "Wh", "Outlet")],
    "Energy.Active.Export.Register": [(1.5, None, "Wh", "Outlet")],
    "Power.Active.Import": [(7360.0, None, "W", "Outlet")],
    "Power.Offered": [(16 * 230 * 3, None, "W", "Outlet")],
    "Current.Import": [(32.0, "L1", "A", "Outlet"), (31.5, "L2", "A", "Outlet"),
                       (0.0, "L3", "A", "Outlet")],
    "Current.Offered": [(16.0, None, "A", "Outlet")],
    "Voltage": [(230.1, "L1-N", "V", "Outlet"), (229.9, "L2-N", "V", "Outlet"),
                (231.0, "L3-N", "V", "Outlet")],
    "Frequency": [(50.02, None, "Hz", "Outlet")],
    "SoC": [(42.0, None, "Percent", "EV")],
}  # fmt: skip


def test_the_table_covers_every_supported_measurand() -> None:
    assert set(EXPECTED) == set(SUPPORTED_MEASURANDS)


@pytest.mark.parametrize(("measurand", "rows"), sorted(EXPECTED.items()))
def test_each_measurand_gives_numbers_with_unit_phase_and_location(
    measurand: str, rows: list[tuple[float, str | None, str, str]]
) -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    values = sampled_values(payload, [measurand], "Sample.Periodic")

    got = [(v["value"], v.get("phase"), v["unitOfMeasure"]["unit"], v["location"]) for v in values]
    assert got == rows
    assert all(type(v["value"]) is float for v in values)  # a number, not 1.6's string
    assert all((v["measurand"], v["context"]) == (measurand, "Sample.Periodic") for v in values)
    assert all("multiplier" not in v["unitOfMeasure"] for v in values)  # default 0


@pytest.mark.parametrize(
    ("phases", "currents", "voltages", "offered_w"),
    [
        (1, ["L1"], ["L1-N"], 16 * 230.0),
        (2, ["L1", "L2"], ["L1-N", "L2-N"], 2 * 16 * 230.0),
        (3, ["L1", "L2", "L3"], ["L1-N", "L2-N", "L3-N"], 3 * 16 * 230.0),
    ],
)
def test_per_phase_measurands_follow_the_supply_phases(
    phases: int, currents: list[str], voltages: list[str], offered_w: float
) -> None:
    payload = stored(FULL_SAMPLE, SampleContext.CLOCK, 16.0)
    values = by_measurand(
        sampled_values(payload, SUPPORTED_MEASURANDS, "Sample.Clock", phases=phases)
    )

    assert [v["phase"] for v in values["Current.Import"]] == currents
    assert [v["phase"] for v in values["Voltage"]] == voltages
    assert [v["value"] for v in values["Power.Offered"]] == [offered_w]
    single = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Offered", "SoC")
    assert all(len(values[m]) == 1 and "phase" not in values[m][0] for m in single)


@pytest.mark.parametrize("phases", [0, 4, -1])
def test_phases_outside_one_to_three_are_refused(phases: int) -> None:
    payload = stored(FULL_SAMPLE, SampleContext.CLOCK, 16.0)
    with pytest.raises(ValueError, match="phases"):
        sampled_values(payload, ["Current.Import"], "Sample.Clock", phases=phases)


def test_temperature_and_unknown_measurands_are_never_sent() -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    values = sampled_values(
        payload, ["Temperature", "Bogus", "Power.Active.Export", "Power.Active.Import"], "Trigger"
    )
    assert [v["measurand"] for v in values] == ["Power.Active.Import"]


def test_measurands_the_meter_or_ev_does_not_report_are_left_out() -> None:
    payload = stored(BARE_SAMPLE, SampleContext.PERIODIC, 0.0)
    assert sampled_values(payload, ["Frequency", "SoC"], "Sample.Periodic") == []


def test_entries_follow_the_requested_order_and_a_repeated_measurand_counts_once() -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    values = sampled_values(
        payload,
        ["SoC", "Energy.Active.Import.Register", "SoC", "Current.Offered"],
        "Sample.Periodic",
    )
    assert [v["measurand"] for v in values] == [
        "SoC",
        "Energy.Active.Import.Register",
        "Current.Offered",
    ]


def test_readings_are_rounded_to_milli_units_and_never_negative_zero() -> None:
    sample = MeterSample(
        energy_import_wh=0.0004, power_w=-0.0001, current_a=(1 / 3, 0.0, 0.0),
        voltage_v=(0.0, 0.0, 0.0),
    )  # fmt: skip
    payload = stored(sample, SampleContext.PERIODIC, 0.0)
    values = by_measurand(
        sampled_values(payload, SUPPORTED_MEASURANDS, "Sample.Periodic", phases=1)
    )
    assert values["Energy.Active.Import.Register"][0]["value"] == 0.0
    assert json.dumps(values["Power.Active.Import"][0]["value"]) == "0.0"
    assert values["Current.Import"][0]["value"] == 0.333


def test_a_non_finite_reading_is_left_out_so_the_frame_stays_json() -> None:
    sample = MeterSample(
        energy_import_wh=5.0, power_w=float("nan"), current_a=(float("inf"), 1.0, 2.0),
        voltage_v=(230.0, 230.0, 230.0),
    )  # fmt: skip
    payload = sample_payload(sample, SampleContext.TRIGGER, AT, 16.0)  # not through JSON
    values = sampled_values(payload, SUPPORTED_MEASURANDS, "Trigger")

    assert "Power.Active.Import" not in by_measurand(values)
    assert [v["phase"] for v in by_measurand(values)["Current.Import"]] == ["L2", "L3"]
    json.dumps(values, allow_nan=False)


def test_a_context_outside_the_enumeration_is_refused() -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    with pytest.raises(ValueError, match="ReadingContext"):
        sampled_values(payload, SUPPORTED_MEASURANDS, "periodic")


# --- meter_value and MeterValuesRequest -----------------------------------------------------


@pytest.mark.parametrize("context", list(SampleContext))
def test_meter_value_takes_time_and_context_from_the_journal_payload(
    context: SampleContext,
) -> None:
    element = meter_value(stored(FULL_SAMPLE, context, 16.0), ["Energy.Active.Import.Register"])

    assert element == {
        "timestamp": "2025-03-01T12:30:05.123Z",
        "sampledValue": [
            {
                "value": 12345.679,
                "context": READING_CONTEXT[context],
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ],
    }


def test_meter_value_context_can_be_overridden_for_the_message_at_hand() -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    element = meter_value(payload, ["Energy.Active.Import.Register", "SoC"], "Transaction.End")

    assert element is not None
    assert [v["context"] for v in element["sampledValue"]] == ["Transaction.End"] * 2


def test_meter_value_is_none_for_a_non_meter_entry_or_when_nothing_applies() -> None:
    assert meter_value({"at": AT.isoformat(), "reason": "local"}, SUPPORTED_MEASURANDS) is None
    payload = stored(BARE_SAMPLE, SampleContext.END, 0.0)
    assert meter_value(payload, []) is None
    assert meter_value(payload, ["SoC", "Temperature"]) is None


def test_the_end_register_alone_is_the_last_reading_when_no_end_sample_was_journalled() -> None:
    energy = "Energy.Active.Import.Register"
    element = register_reading(1234.5678, AT, [energy, "SoC"])

    assert element == {
        "timestamp": "2025-03-01T12:30:05.123Z",
        "sampledValue": [
            {
                "value": 1234.568,
                "context": "Transaction.End",
                "measurand": energy,
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ],
    }
    assert register_reading(1.0, AT, ["SoC"]) is None  # the register was not asked for
    assert register_reading(float("nan"), AT, [energy]) is None  # no non-JSON number


def test_j01_clock_aligned_request_carries_one_meter_value_per_sample() -> None:
    first = stored(FULL_SAMPLE, SampleContext.CLOCK, 16.0)
    later = json.loads(
        json.dumps(sample_payload(BARE_SAMPLE, SampleContext.CLOCK, AT + timedelta(minutes=15), 0))
    )
    not_a_sample = {"at": AT.isoformat(), "kind": "status"}
    request = meter_values_request(
        2, [first, not_a_sample, later], ["Energy.Active.Import.Register", "Frequency"]
    )

    assert request is not None
    assert request["evseId"] == 2
    assert [item["timestamp"] for item in request["meterValue"]] == [
        "2025-03-01T12:30:05.123Z",
        "2025-03-01T12:45:05.123Z",
    ]
    assert [len(item["sampledValue"]) for item in request["meterValue"]] == [2, 1]
    assert {v["context"] for item in request["meterValue"] for v in item["sampledValue"]} == {
        "Sample.Clock"
    }
    check_on_the_wire("MeterValues", request)


def test_j02_triggered_request_for_the_main_meter_uses_evse_0() -> None:
    payload = stored(FULL_SAMPLE, SampleContext.TRIGGER, 0.0)
    request = meter_values_request(0, [payload], SUPPORTED_MEASURANDS)

    assert request is not None
    assert request["evseId"] == 0
    assert {v["context"] for v in request["meterValue"][0]["sampledValue"]} == {"Trigger"}
    check_on_the_wire("MeterValues", request)


def test_meter_values_request_is_none_when_no_sample_yields_a_value() -> None:
    assert meter_values_request(1, [], SUPPORTED_MEASURANDS) is None
    assert meter_values_request(1, [{"at": AT.isoformat()}], SUPPORTED_MEASURANDS) is None
    payload = stored(BARE_SAMPLE, SampleContext.TRIGGER, 0.0)
    assert meter_values_request(1, [payload], ["SoC"]) is None


def test_meter_values_request_refuses_a_negative_evse_id() -> None:
    with pytest.raises(ValueError, match="evse_id"):
        meter_values_request(-1, [stored(FULL_SAMPLE, SampleContext.TRIGGER, 0.0)], ["SoC"])


def test_wire_time_is_utc_with_milliseconds_and_refuses_a_naive_time() -> None:
    local = datetime(2025, 3, 1, 14, 30, 5, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert wire_time(local) == "2025-03-01T12:30:05.999Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        wire_time(datetime(2025, 3, 1, 12, 0))


# --- every produced frame validates ---------------------------------------------------------

readings = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
samples = st.builds(
    MeterSample,
    energy_import_wh=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    power_w=readings,
    current_a=st.tuples(readings, readings, readings),
    voltage_v=st.tuples(readings, readings, readings),
    energy_export_wh=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    frequency_hz=st.none() | st.floats(min_value=40, max_value=70),
    soc_percent=st.none() | st.floats(min_value=0, max_value=100),
    temperature_c=st.none() | st.floats(min_value=-40, max_value=120),
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
measurand_lists = st.lists(
    st.sampled_from((*SUPPORTED_MEASURANDS, "Temperature", "Bogus")), max_size=12
)
wire_contexts = st.none() | st.sampled_from(sorted(READING_CONTEXTS))


@given(
    st.lists(
        st.tuples(samples, st.sampled_from(list(SampleContext)), times,
                  st.floats(min_value=0, max_value=80)),
        min_size=1, max_size=4,
    ),
    measurand_lists,
    wire_contexts,
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=1, max_value=3),
)  # fmt: skip
def test_every_meter_values_request_validates_against_the_2_0_1_schema(
    rows: list[tuple[MeterSample, SampleContext, datetime, float]],
    measurands: list[str],
    context: str | None,
    evse_id: int,
    phases: int,
) -> None:
    payloads: list[Mapping[str, Any]] = [
        json.loads(json.dumps(sample_payload(sample, ctx, at, offered)))
        for sample, ctx, at, offered in rows
    ]
    request = meter_values_request(evse_id, payloads, measurands, context, phases=phases)

    wanted = set(measurands) & set(SUPPORTED_MEASURANDS) - {"Frequency", "SoC"}
    if request is None:
        assert not wanted  # always-present measurands always yield a value
        return
    check_on_the_wire("MeterValues", request)
    sent = {v["measurand"] for item in request["meterValue"] for v in item["sampledValue"]}
    assert wanted <= sent <= set(SUPPORTED_MEASURANDS)


@given(samples, st.sampled_from(list(SampleContext)), times, measurand_lists)
def test_every_meter_value_fits_a_transaction_event(
    sample: MeterSample, context: SampleContext, at: datetime, measurands: list[str]
) -> None:
    payload = json.loads(json.dumps(sample_payload(sample, context, at, 32.0)))
    element = meter_value(payload, measurands)
    if element is None:
        return
    check_on_the_wire(
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": element["timestamp"],
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 1,
            "transactionInfo": {"transactionId": "tx-1"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [element],
        },
    )


# --- the device model lists that select measurands ------------------------------------------

MEASURAND_LISTS = {
    "SampledDataCtrlr/TxStartedMeasurands": ["Energy.Active.Import.Register"],
    "SampledDataCtrlr/TxUpdatedMeasurands": [
        "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
        "Current.Offered", "SoC",
    ],
    "SampledDataCtrlr/TxEndedMeasurands": ["Energy.Active.Import.Register"],
    "AlignedDataCtrlr/Measurands": ["Energy.Active.Import.Register"],
    "AlignedDataCtrlr/TxEndedMeasurands": ["Energy.Active.Import.Register"],
}  # fmt: skip


@pytest.fixture
def model() -> Any:
    with Store(":memory:") as store:
        yield DeviceModel(store, station_variables([(1, [(1, "cType2")])]))


@pytest.mark.parametrize(("path", "default"), sorted(MEASURAND_LISTS.items()))
def test_measurand_lists_offer_what_the_agent_can_sample_with_sensible_defaults(
    model: DeviceModel, path: str, default: list[str]
) -> None:
    component, variable, _ = parse_path(path)
    definition = model.lookup(component, variable)

    assert definition is not None
    assert definition.data_type == DataType.MEMBER_LIST
    assert definition.values_list == SUPPORTED_MEASURANDS
    assert model.list_value(path) == default


def test_power_offered_can_be_chosen_and_temperature_cannot(model: DeviceModel) -> None:
    component, variable, _ = parse_path("SampledDataCtrlr/TxUpdatedMeasurands")
    assert model.set(component, variable, "Power.Offered,Voltage").status == SetStatus.ACCEPTED
    assert model.set(component, variable, "Temperature").status == SetStatus.REJECTED
    assert model.list_value("SampledDataCtrlr/TxUpdatedMeasurands") == ["Power.Offered", "Voltage"]


@pytest.mark.parametrize("path", ["SampledDataCtrlr/TxEndedInterval",
                                  "AlignedDataCtrlr/TxEndedInterval"])  # fmt: skip
def test_tx_ended_intervals_exist_in_seconds(model: DeviceModel, path: str) -> None:
    assert model.value(path) == "0"


def test_default_updated_measurands_give_a_valid_transaction_sample(model: DeviceModel) -> None:
    payload = stored(FULL_SAMPLE, SampleContext.PERIODIC, 16.0)
    element = meter_value(payload, model.list_value("SampledDataCtrlr/TxUpdatedMeasurands"))

    assert element is not None
    assert [v["measurand"] for v in element["sampledValue"]] == [
        "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
        "Current.Import", "Current.Import", "Current.Offered", "SoC",
    ]  # fmt: skip
