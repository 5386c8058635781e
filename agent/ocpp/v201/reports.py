"""OCPP 2.0.1 device model reports: what GetBaseReport and GetReport hold, as NotifyReports.

Responsible for: choosing the variables of a report (B07 base reports, B08 custom
reports with componentCriteria and componentVariable filters), building each
ReportData (every supported attribute with its mutability, persistence and constancy,
the value omitted for WriteOnly, B07.FR.03; the variable's characteristics), and
splitting the items into NotifyReportRequest payloads - seqNo from 0, tbc true on all
but the last - each within ItemsPerMessage and BytesPerMessage.

Must not: send anything (the adapter sends the payloads in order, each after the
previous one's response), or read values other than through DeviceModel.

Nothing to report: `custom_report` may return [] - the adapter then answers GetReport
with EmptyResultSet (B08.FR.15, `report_status`) and sends no NotifyReport. A base
report is never empty with `station_variables()`; should one be, `split_notify_report`
returns a single NotifyReport without reportData (the schema allows it), never more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from agent.ocpp.v201.device_model import (
    DeviceModel,
    check_request_limits,
    wire_size,
    wire_time,
)
from agent.ocpp.v201.variables import (
    BYTES_PER_MESSAGE,
    ITEMS_PER_MESSAGE,
    Attribute,
    ComponentKey,
    Mutability,
    VariableDef,
    VariableKey,
)

ReportData = dict[str, Any]
"""One 2.0.1 ReportDataType, as the camelCase dict that goes on the wire."""

#: B07.FR.09: SummaryInventory reports availability and condition (names case-folded).
SUMMARY_VARIABLES = frozenset({"availabilitystate", "available", "problem", "tripped"})
_WRITABLE = (Mutability.READ_WRITE, Mutability.WRITE_ONLY)


class ReportBase(StrEnum):
    """OCPP 2.0.1 ReportBaseEnumType."""

    CONFIGURATION_INVENTORY = "ConfigurationInventory"
    FULL_INVENTORY = "FullInventory"
    SUMMARY_INVENTORY = "SummaryInventory"


class ComponentCriterion(StrEnum):
    """OCPP 2.0.1 ComponentCriterionEnumType."""

    ACTIVE = "Active"
    AVAILABLE = "Available"
    ENABLED = "Enabled"
    PROBLEM = "Problem"


def _number(limit: float) -> int | float:
    """A limit as JSON writes it most plainly (22080 rather than 22080.0)."""
    return int(limit) if float(limit).is_integer() else limit


def _component(component: ComponentKey) -> dict[str, Any]:
    """A ComponentKey as a 2.0.1 ComponentType dict."""
    wire: dict[str, Any] = {"name": component.name}
    if component.instance is not None:
        wire["instance"] = component.instance
    if component.evse_id is not None:
        evse: dict[str, Any] = {"id": component.evse_id}
        if component.connector_id is not None:
            evse["connectorId"] = component.connector_id
        wire["evse"] = evse
    return wire


def _variable(variable: VariableKey) -> dict[str, Any]:
    """A VariableKey as a 2.0.1 VariableType dict."""
    wire: dict[str, Any] = {"name": variable.name}
    if variable.instance is not None:
        wire["instance"] = variable.instance
    return wire


def report_data(
    model: DeviceModel, definition: VariableDef, attributes: Sequence[Attribute] | None = None
) -> ReportData:
    """One ReportData for `definition`, with `attributes` (default: all it has, B07.FR.11)."""
    size = model.reporting_value_size()
    entries = []
    for attribute in Attribute:  # enum order: Actual, Target, MinSet, MaxSet
        mutability = definition.mutability.get(attribute)
        if mutability is None or (attributes is not None and attribute not in attributes):
            continue
        entry: dict[str, Any] = {"type": attribute.value}
        if mutability != Mutability.WRITE_ONLY:  # B07.FR.03
            entry["value"] = model.current(definition, attribute)[:size]
        entry["mutability"] = mutability.value
        entry["persistent"] = definition.persistent
        entry["constant"] = definition.constant
        entries.append(entry)
    characteristics: dict[str, Any] = {}
    if definition.unit is not None:
        characteristics["unit"] = definition.unit
    characteristics["dataType"] = definition.data_type.value
    if definition.min_limit is not None:
        characteristics["minLimit"] = _number(definition.min_limit)
    if definition.max_limit is not None:
        characteristics["maxLimit"] = _number(definition.max_limit)
    if definition.values_list is not None:
        characteristics["valuesList"] = ",".join(definition.values_list)
    characteristics["supportsMonitoring"] = definition.supports_monitoring
    return {
        "component": _component(definition.component),
        "variable": _variable(definition.variable),
        "variableAttribute": entries,
        "variableCharacteristics": characteristics,
    }


def base_report(model: DeviceModel, report_base: str) -> list[ReportData]:
    """The items of a GetBaseReport (B07); raises ValueError for an unknown base.

    FullInventory: every variable (B07.FR.08). ConfigurationInventory: the variables the
    CSMS can set, with their writable attributes only (B07.FR.07). SummaryInventory:
    availability and condition - AvailabilityState, Available, Problem, Tripped of the
    station, its EVSEs, connectors and controllers (B07.FR.09).
    """
    base = ReportBase(report_base)
    items: list[ReportData] = []
    for definition in model.definitions:
        if base == ReportBase.CONFIGURATION_INVENTORY:
            writable = [a for a, m in definition.mutability.items() if m in _WRITABLE]
            if writable:
                items.append(report_data(model, definition, writable))
        elif base == ReportBase.FULL_INVENTORY or (
            definition.variable.name.casefold() in SUMMARY_VARIABLES
        ):
            items.append(report_data(model, definition))
    return items


def _meets(model: DeviceModel, component: ComponentKey, criterion: ComponentCriterion) -> bool:
    """B08.FR.07-10: a criterion variable that is "true", or (but for Problem) absent."""
    definition = model.lookup(component, VariableKey(criterion.value))
    if definition is None or Attribute.ACTUAL not in definition.mutability:
        return criterion != ComponentCriterion.PROBLEM
    return model.current(definition) == "true"


def _same(wanted: str | None, actual: str | None) -> bool:
    """An optional name filter: absent matches anything, else case-insensitive equality."""
    return wanted is None or (actual is not None and wanted.casefold() == actual.casefold())


def _selected(definition: VariableDef, component_variable: Mapping[str, Any]) -> bool:
    """Whether a ComponentVariableType selects `definition`.

    A field left out matches everything: no evse selects every EVSE, no connectorId
    every connector, no variable every variable of the component (B08.FR.20), no
    variable instance every instance.
    """
    wanted = component_variable["component"]
    component = definition.component
    if wanted["name"].casefold() != component.name.casefold():
        return False
    if not _same(wanted.get("instance"), component.instance):
        return False
    evse = wanted.get("evse")
    if evse is not None and (
        evse["id"] != component.evse_id
        or evse.get("connectorId", component.connector_id) != component.connector_id
    ):
        return False
    variable = component_variable.get("variable")
    if variable is None:
        return True
    return variable["name"].casefold() == definition.variable.name.casefold() and _same(
        variable.get("instance"), definition.variable.instance
    )


def custom_report(
    model: DeviceModel,
    criteria: Sequence[str] = (),
    component_variables: Sequence[Mapping[str, Any]] = (),
) -> list[ReportData]:
    """The items of a GetReport (B08): components meeting any criterion, among those
    the componentVariable entries select; an empty filter selects everything.

    Raises ValueError for an unknown criterion.
    """
    wanted = [ComponentCriterion(criterion) for criterion in criteria]
    verdicts: dict[ComponentKey, bool] = {}
    items: list[ReportData] = []
    for definition in model.definitions:
        if component_variables and not any(
            _selected(definition, entry) for entry in component_variables
        ):
            continue
        component = definition.component
        if component not in verdicts:
            verdicts[component] = not wanted or any(_meets(model, component, c) for c in wanted)
        if verdicts[component]:
            items.append(report_data(model, definition))
    return items


def report_status(items: Sequence[ReportData]) -> str:
    """GetReportResponse.status for these items: Accepted, or EmptyResultSet (B08.FR.15)."""
    return "Accepted" if items else "EmptyResultSet"


def check_get_report_request(model: DeviceModel, payload: Mapping[str, Any]) -> None:
    """Raise RequestLimitExceeded if a GetReportRequest breaks the GetReport limits.

    More componentVariable entries than ItemsPerMessage(GetReport): B08.FR.17; more
    bytes than BytesPerMessage(GetReport): B08.FR.18.
    """
    check_request_limits(model, payload, "componentVariable", "GetReport")


def notify_report_limits(model: DeviceModel) -> tuple[int, int]:
    """(items, bytes) per NotifyReport: the model's GetReport limits (or the defaults).

    The spec gives the CSMS no way to state a NotifyReport limit, so the station's own
    GetReport limits cap what it sends.
    """
    items = model.limit("ItemsPerMessage", "GetReport") or ITEMS_PER_MESSAGE
    size = model.limit("BytesPerMessage", "GetReport") or BYTES_PER_MESSAGE
    return items, size


def split_notify_report(
    request_id: int,
    items: Sequence[ReportData],
    *,
    items_per_message: int,
    bytes_per_message: int,
    generated_at: datetime,
    overhead_bytes: int = 0,
) -> list[dict[str, Any]]:
    """NotifyReportRequest payloads carrying `items` in order, seqNo 0.., tbc on all but last.

    Each payload holds at most `items_per_message` items and measures at most
    `bytes_per_message` bytes as sent (compact JSON, UTF-8) plus `overhead_bytes` (room
    the caller keeps for the CALL frame around it). No items: one payload without
    reportData. Raises ValueError if items_per_message < 1, generated_at is naive, or
    one item alone cannot fit.
    """
    if items_per_message < 1:
        raise ValueError("items_per_message must be at least 1")
    at = wire_time(generated_at)

    def envelope(seq_no: int, tbc: bool = False) -> dict[str, Any]:
        return {"requestId": request_id, "generatedAt": at, "tbc": tbc, "seqNo": seq_no}

    if not items:
        return [envelope(0)]

    def fixed_bytes(seq_no: int, tbc: bool) -> int:
        return wire_size({**envelope(seq_no, tbc), "reportData": []}) + overhead_bytes

    sizes = [wire_size(item) for item in items]
    chunks: list[list[int]] = []  # item indexes, filled greedily as if more followed
    chunk: list[int] = []
    chunk_bytes = 0  # the items and the commas between them
    for index, size in enumerate(sizes):
        if chunk and (
            len(chunk) >= items_per_message
            or fixed_bytes(len(chunks), True) + chunk_bytes + 1 + size > bytes_per_message
        ):
            chunks.append(chunk)
            chunk, chunk_bytes = [], 0
        # "tbc":false is the longer spelling, and the item may yet move one seqNo on (below):
        # an item passing this fits a message of its own wherever it lands.
        if fixed_bytes(len(chunks) + 1, False) + size > bytes_per_message:
            raise ValueError(f"a report item of {size} bytes cannot fit in {bytes_per_message}")
        chunk_bytes += size + (1 if chunk else 0)
        chunk.append(index)
    if len(chunk) > 1 and fixed_bytes(len(chunks), False) + chunk_bytes > bytes_per_message:
        # The last message says "tbc":false, one byte more: its last item moves on alone.
        chunks.append(chunk[:-1])
        chunk = chunk[-1:]
    chunks.append(chunk)
    last = len(chunks) - 1
    return [
        {**envelope(seq_no, seq_no < last), "reportData": [items[i] for i in part]}
        for seq_no, part in enumerate(chunks)
    ]
