"""OCPP 2.0.1 device model: the live values of the catalogue, GetVariables and SetVariables.

Responsible for: the value of every (component, variable, attribute) in the catalogue -
the definition's default, then the install config, then what was set at runtime
(persisted in the SettingsStore under "ocpp201.<path>"); answering get and set with
the exact 2.0.1 statuses (B06 GetVariables, B05 SetVariables); checking a value
(agent/ocpp/v201/catalogue.py `check_value`) before anything is stored (an invalid or
out-of-bounds value is Rejected and never applied); and the wire-level
`get_variables` / `set_variables` that turn 2.0.1 camelCase payloads into answers.

Must not: import the RPC layer, websockets or the core (beyond agent.core.ports), act
on a value (the adapter watches changes and tells the core), or disclose a WriteOnly
value over OCPP (B06.FR.09).

Path syntax, used for install config keys, store keys and `value()`: the spec's own
"Variable(instance)" notation, with "@evse[:connector]" for EVSE-bound components and
"#Attribute" for an attribute other than Actual, e.g. "OCPPCommCtrlr/HeartbeatInterval",
"OCPPCommCtrlr/MessageTimeout(Default)", "EVSE@1/Power", "Connector@1:2/ConnectorType",
"DeviceDataCtrlr/ItemsPerMessage(GetVariables)", "SmartChargingCtrlr/Enabled#Target".
Names match case-insensitively, as the 2.0.1 ComponentType/VariableType say.

A change that needs a reboot (RebootRequired) is persisted and applied to the model at
once, as OCPP 1.6 ChangeConfiguration does here; the adapter decides when it takes effect.

Memory: what depends on the definitions only (the case-insensitive index, the component
set, the checked defaults) is a `Catalogue` (catalogue.py) shared by every model over
the same definitions; a model holds only the values that differ from the defaults
(install config, stored and runtime values) and its live getters: about 1 KiB a fleet
station instead of ~60 (bench/_fleet_memory.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.core.ports import Clock, SettingsStore
from agent.ocpp.v201.catalogue import INT32 as INT32
from agent.ocpp.v201.catalogue import STRING_MAX_LENGTH as STRING_MAX_LENGTH
from agent.ocpp.v201.catalogue import VariablePath as VariablePath
from agent.ocpp.v201.catalogue import catalogue
from agent.ocpp.v201.catalogue import check_value as check_value
from agent.ocpp.v201.catalogue import format_path as format_path
from agent.ocpp.v201.catalogue import parse_path as parse_path
from agent.ocpp.v201.metering import wire_time as wire_time
from agent.ocpp.v201.variables import (
    CONFIGURATION_VALUE_SIZE,
    REPORTING_VALUE_SIZE,
    Attribute,
    ComponentKey,
    Mutability,
    VariableDef,
    VariableKey,
)

_log = logging.getLogger(__name__)

PREFIX = "ocpp201."


class GetStatus(StrEnum):
    """OCPP 2.0.1 GetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(StrEnum):
    """OCPP 2.0.1 SetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


@dataclass(frozen=True, slots=True)
class GetResult:
    """The answer to one get: status, the value when Accepted, a reason code otherwise."""

    status: GetStatus
    value: str | None = None
    reason: str | None = None  # a 2.0.1 Appendix 5 reason code (StatusInfo.reasonCode)


@dataclass(frozen=True, slots=True)
class SetResult:
    """The answer to one set: status and, unless Accepted, a reason code."""

    status: SetStatus
    reason: str | None = None


class RequestLimitExceeded(Exception):  # noqa: N818 (a request, not an error of ours)
    """A request above a DeviceDataCtrlr limit: the adapter answers CALLERROR `code`.

    `code` is "OccurrenceConstraintViolation" (more items than ItemsPerMessage allows,
    B06.FR.16, B08.FR.17, and B05 likewise) or "FormatViolation" (more bytes than
    BytesPerMessage allows, B06.FR.17, B08.FR.18).
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


Watcher = Callable[[VariableDef, Attribute, str], None]
#: A model's per-attribute slots: (definition, attribute), the definition by identity.
_Slot = tuple[VariableDef, Attribute]


class DeviceModel:
    """The station's device model: definitions, their current values, and persistence."""

    def __init__(
        self,
        store: SettingsStore,
        definitions: Iterable[VariableDef],
        *,
        install_defaults: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Load defaults, then install config, then stored values.

        Raises ValueError for a duplicate definition, an invalid default, or an install
        key that is malformed, unknown or has an invalid value.
        """
        self._store = store
        self._catalogue = catalogue(tuple(definitions))
        #: The values that differ from the definitions' defaults, and the live getters.
        self._values: dict[_Slot, str] = {}
        self._live: dict[_Slot, Callable[[], str]] = {}
        self._watchers: list[Watcher] = []
        for path, value in (install_defaults or {}).items():
            self._install(path, value)
        self._load_stored()
        if clock is not None:
            date_time = (ComponentKey("ClockCtrlr"), VariableKey("DateTime"))
            if self.lookup(*date_time) is not None:
                self.bind(*date_time, lambda: wire_time(clock.now()))

    # -- lookup --------------------------------------------------------------------------

    @property
    def definitions(self) -> tuple[VariableDef, ...]:
        """Every definition, in catalogue order."""
        return self._catalogue.definitions

    def lookup(self, component: ComponentKey, variable: VariableKey) -> VariableDef | None:
        """The definition of a component's variable, or None (names case-insensitive)."""
        return self._catalogue.lookup(component, variable)

    def has_component(self, component: ComponentKey) -> bool:
        """Whether any variable belongs to this component."""
        return self._catalogue.has_component(component)

    def current(self, definition: VariableDef, attribute: Attribute = Attribute.ACTUAL) -> str:
        """The current value of an attribute, whatever its mutability ("" when unset)."""
        own = self._catalogue.own(definition)
        if own is None or attribute not in own.mutability:
            return ""
        slot = (own, attribute)
        live = self._live.get(slot)
        if live is not None:
            return live()
        value = self._values.get(slot)
        return own.default_for(attribute) if value is None else value

    def value(self, path: str) -> str:
        """The current value at `path`, WriteOnly included; KeyError if unknown.

        The message paths read some values for every message: the catalogue resolves a
        path once (for every station sharing it), the value is read each time.
        """
        return self.current(*self._catalogue.resolve(path))

    def int_value(self, path: str) -> int:
        """The integer at `path`; KeyError if unknown, ValueError if not an integer."""
        return int(self.value(path))

    def bool_value(self, path: str) -> bool:
        """The boolean at `path`; KeyError if unknown."""
        return self.value(path) == "true"

    def list_value(self, path: str) -> list[str]:
        """The comma-separated list at `path`; KeyError if unknown."""
        return [item for item in self.value(path).split(",") if item]

    def limit(self, variable: str, instance: str | None = None) -> int | None:
        """A DeviceDataCtrlr size limit, or None if this model does not define it."""
        definition = self.lookup(ComponentKey("DeviceDataCtrlr"), VariableKey(variable, instance))
        text = self.current(definition) if definition is not None else ""
        return int(text) if text else None

    def reporting_value_size(self) -> int:
        """How many characters of a value GetVariables and reports disclose."""
        sizes = (self.limit("ReportingValueSize"), self.limit("ValueSize"))
        return min([REPORTING_VALUE_SIZE, *(size for size in sizes if size is not None)])

    def configuration_value_size(self) -> int:
        """The longest value SetVariables accepts."""
        sizes = (self.limit("ConfigurationValueSize"), self.limit("ValueSize"))
        return min([CONFIGURATION_VALUE_SIZE, *(size for size in sizes if size is not None)])

    # -- OCPP operations -----------------------------------------------------------------

    def get(
        self,
        component: ComponentKey,
        variable: VariableKey,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> GetResult:
        """Answer one GetVariableData (B06); a WriteOnly attribute is Rejected (B06.FR.09)."""
        definition = self.lookup(component, variable)
        if definition is None:
            if not self.has_component(component):
                return GetResult(GetStatus.UNKNOWN_COMPONENT, reason="NotFound")
            return GetResult(GetStatus.UNKNOWN_VARIABLE, reason="NotFound")
        mutability = definition.mutability.get(attribute)
        if mutability is None:
            return GetResult(GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE, reason="UnsupportedParam")
        if mutability == Mutability.WRITE_ONLY:
            return GetResult(GetStatus.REJECTED, reason="WriteOnly")
        value = self.current(definition, attribute)[: self.reporting_value_size()]
        return GetResult(GetStatus.ACCEPTED, value)

    def set(
        self,
        component: ComponentKey,
        variable: VariableKey,
        value: str,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> SetResult:
        """Answer one SetVariableData (B05): validate, persist, apply, tell the watchers.

        A ReadOnly attribute, an invalid or out-of-bounds value is Rejected and nothing is
        stored or applied. Store errors propagate (the value is then not applied either).
        """
        definition = self.lookup(component, variable)
        if definition is None:
            if not self.has_component(component):
                return SetResult(SetStatus.UNKNOWN_COMPONENT, "NotFound")
            return SetResult(SetStatus.UNKNOWN_VARIABLE, "NotFound")
        mutability = definition.mutability.get(attribute)
        if mutability is None:
            return SetResult(SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE, "UnsupportedParam")
        if mutability == Mutability.READ_ONLY:
            return SetResult(SetStatus.REJECTED, "ReadOnly")
        if len(value) > self.configuration_value_size():
            return SetResult(SetStatus.REJECTED, "TooLargeElement")
        canonical, reason = check_value(definition, value)
        if canonical is None:
            return SetResult(SetStatus.REJECTED, reason)
        self._apply(definition, attribute, canonical)
        for watcher in self._watchers:
            try:
                watcher(definition, attribute, canonical)
            except Exception:
                _log.exception("device model watcher failed on %s", self._path(definition))
        if definition.reboot_required:
            return SetResult(SetStatus.REBOOT_REQUIRED)
        return SetResult(SetStatus.ACCEPTED)

    # -- the agent's side ----------------------------------------------------------------

    def update(
        self,
        component: ComponentKey,
        variable: VariableKey,
        value: str,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> None:
        """Record a value the station itself changed (AvailabilityState, Storage, ...).

        Bypasses mutability (read-only values are the station's to change) but not
        validation; watchers are not called. Raises KeyError for an unknown variable or
        attribute, ValueError for an invalid value or a constant variable.
        """
        definition = self.lookup(component, variable)
        if definition is None or attribute not in definition.mutability:
            raise KeyError(format_path(component, variable, attribute))
        if definition.constant:
            raise ValueError(f"{self._path(definition)} is constant")
        canonical, reason = check_value(definition, value)
        if canonical is None:
            raise ValueError(f"{self._path(definition, attribute)}: {reason} ({value!r})")
        self._apply(definition, attribute, canonical)

    def bind(
        self,
        component: ComponentKey,
        variable: VariableKey,
        getter: Callable[[], str],
        attribute: Attribute = Attribute.ACTUAL,
    ) -> None:
        """Read this attribute from `getter` at each request (a live value, never stored)."""
        definition = self.lookup(component, variable)
        if definition is None or attribute not in definition.mutability:
            raise KeyError(format_path(component, variable, attribute))
        self._live[definition, attribute] = getter

    def watch(self, callback: Watcher) -> None:
        """Call `callback(definition, attribute, value)` after every accepted set()."""
        self._watchers.append(callback)

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _path(definition: VariableDef, attribute: Attribute = Attribute.ACTUAL) -> str:
        """The canonical path of a definition's attribute."""
        return format_path(definition.component, definition.variable, attribute)

    def _apply(self, definition: VariableDef, attribute: Attribute, value: str) -> None:
        """Persist (when the variable is persistent), then hold the new value."""
        if definition.persistent:
            self._store.set_setting(PREFIX + self._path(definition, attribute), value)
        self._hold(definition, attribute, value)

    def _hold(self, definition: VariableDef, attribute: Attribute, value: str) -> None:
        """Hold `value` as the attribute's current value (only what differs from the
        default takes room)."""
        if value == definition.default_for(attribute):
            self._values.pop((definition, attribute), None)
        else:
            self._values[definition, attribute] = value

    def _install(self, path: str, value: str) -> None:
        """Apply one install-config value; raises ValueError if it does not fit."""
        component, variable, attribute = parse_path(path)
        definition = self.lookup(component, variable)
        if definition is None or attribute not in definition.mutability:
            raise ValueError(f"{path}: not a variable of this station's device model")
        canonical, reason = check_value(definition, value)
        if canonical is None:
            raise ValueError(f"{path}: {reason} value {value!r}")
        self._hold(definition, attribute, canonical)

    def _load_stored(self) -> None:
        """Take every persisted runtime value that still fits its definition."""
        for definition in self.definitions:
            if not definition.persistent or definition.constant:
                continue
            for attribute in definition.mutability:
                stored = self._store.get_setting(PREFIX + self._path(definition, attribute))
                if stored is None:
                    continue
                canonical, reason = check_value(definition, stored)
                if canonical is None:
                    _log.warning(
                        "ignoring stored %s=%r (%s)",
                        self._path(definition, attribute),
                        stored,
                        reason,
                    )
                    continue
                self._hold(definition, attribute, canonical)


# -- the wire ----------------------------------------------------------------------------


def component_key(component: Mapping[str, Any]) -> ComponentKey:
    """A 2.0.1 ComponentType dict as a ComponentKey."""
    evse = component.get("evse") or {}
    return ComponentKey(
        component["name"], component.get("instance"), evse.get("id"), evse.get("connectorId")
    )


def variable_key(variable: Mapping[str, Any]) -> VariableKey:
    """A 2.0.1 VariableType dict as a VariableKey."""
    return VariableKey(variable["name"], variable.get("instance"))


def wire_size(payload: Any) -> int:
    """Bytes of `payload` as the RPC layer sends it (compact JSON, UTF-8)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8"))


def check_request_limits(
    model: DeviceModel, payload: Mapping[str, Any], items_field: str, instance: str
) -> None:
    """Raise RequestLimitExceeded if `payload` breaks ItemsPerMessage/BytesPerMessage.

    The size is the payload re-serialised compactly: whitespace the CSMS sent is not
    counted against it.
    """
    items = payload.get(items_field) or []
    max_items = model.limit("ItemsPerMessage", instance)
    if max_items is not None and len(items) > max_items:
        raise RequestLimitExceeded(
            "OccurrenceConstraintViolation",
            f"{len(items)} {items_field} entries, ItemsPerMessage({instance}) is {max_items}",
        )
    max_bytes = model.limit("BytesPerMessage", instance)
    if max_bytes is not None and wire_size(payload) > max_bytes:
        raise RequestLimitExceeded(
            "FormatViolation", f"request larger than BytesPerMessage({instance}) = {max_bytes}"
        )


def _result(item: Mapping[str, Any], attribute: Attribute) -> dict[str, Any]:
    """The component/variable/attributeType part of a result, echoed (B06.FR.02)."""
    return {
        "attributeType": attribute.value,
        "component": dict(item["component"]),
        "variable": dict(item["variable"]),
    }


def get_variables(model: DeviceModel, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a (schema-valid) GetVariablesRequest with a GetVariablesResponse payload.

    One result per requested item, in order (B06.FR.01). Raises RequestLimitExceeded
    when the request breaks ItemsPerMessage/BytesPerMessage(GetVariables).
    """
    check_request_limits(model, payload, "getVariableData", "GetVariables")
    results = []
    for item in payload["getVariableData"]:
        attribute = Attribute(item.get("attributeType", Attribute.ACTUAL.value))
        answer = model.get(
            component_key(item["component"]), variable_key(item["variable"]), attribute
        )
        result = {"attributeStatus": answer.status.value, **_result(item, attribute)}
        if answer.status == GetStatus.ACCEPTED:
            result["attributeValue"] = answer.value or ""
        elif answer.reason:
            result["attributeStatusInfo"] = {"reasonCode": answer.reason}
        results.append(result)
    return {"getVariableResult": results}


def set_variables(model: DeviceModel, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a (schema-valid) SetVariablesRequest; return the SetVariablesResponse payload.

    Each item is answered on its own, in order. Raises RequestLimitExceeded (nothing is
    applied) when the request breaks ItemsPerMessage/BytesPerMessage(SetVariables).
    """
    check_request_limits(model, payload, "setVariableData", "SetVariables")
    results = []
    for item in payload["setVariableData"]:
        attribute = Attribute(item.get("attributeType", Attribute.ACTUAL.value))
        answer = model.set(
            component_key(item["component"]),
            variable_key(item["variable"]),
            item["attributeValue"],
            attribute,
        )
        result = {"attributeStatus": answer.status.value, **_result(item, attribute)}
        if answer.reason:
            result["attributeStatusInfo"] = {"reasonCode": answer.reason}
        results.append(result)
    return {"setVariableResult": results}
