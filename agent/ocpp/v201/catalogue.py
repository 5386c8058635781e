"""OCPP 2.0.1 device model paths, value checks and the shared catalogue index.

Responsible for: the path notation of the device model (`format_path`, `parse_path`; the
syntax is in agent/ocpp/v201/device_model.py's docstring), checking a value against its
definition's data type and characteristics (`check_value`), and `Catalogue`: what a
device model needs of its definitions alone (the case-insensitive index, the component
set, the checked defaults), built once per distinct definition tuple by `catalogue()`
and shared by every DeviceModel over it, so a fleet of stations holds one.

Must not: hold values, read or write the store, or know the wire.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Final, NamedTuple

from agent.ocpp.v201.variables import (
    LIST_TYPES,
    Attribute,
    ComponentKey,
    DataType,
    VariableDef,
    VariableKey,
)

STRING_MAX_LENGTH = 1000  # SetVariableData.attributeValue maxLength (2.0.1 schema)
INT32 = (-(2**31), 2**31 - 1)  # an integer variable without limits still fits the wire's int

_PATH = re.compile(
    r"^(?P<c>[^()@/#]+)(?:\((?P<ci>[^()]+)\))?(?:@(?P<e>\d+)(?::(?P<k>\d+))?)?"
    r"/(?P<v>[^()@/#]+)(?:\((?P<vi>[^()]+)\))?(?:#(?P<a>\w+))?$"
)
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class VariablePath(NamedTuple):
    """A parsed path: component, variable and attribute."""

    component: ComponentKey
    variable: VariableKey
    attribute: Attribute


_Key = tuple[str, str | None, int | None, int | None, str, str | None]
_ComponentFold = tuple[str, str | None, int | None, int | None]


def _fold(text: str | None) -> str | None:
    """Case-fold an optional name (names are case-insensitive in 2.0.1)."""
    return None if text is None else text.casefold()


def _component_fold(component: ComponentKey) -> _ComponentFold:
    """The lookup key of a component."""
    name = component.name.casefold()
    return (name, _fold(component.instance), component.evse_id, component.connector_id)


def _key(component: ComponentKey, variable: VariableKey) -> _Key:
    """The lookup key of a component's variable."""
    return (*_component_fold(component), variable.name.casefold(), _fold(variable.instance))


def format_path(
    component: ComponentKey, variable: VariableKey, attribute: Attribute = Attribute.ACTUAL
) -> str:
    """The path of one attribute, e.g. "EVSE@1/Power" or "X/Y(Default)#Target"."""
    text = component.name
    if component.instance is not None:
        text += f"({component.instance})"
    if component.evse_id is not None:
        text += f"@{component.evse_id}"
        if component.connector_id is not None:
            text += f":{component.connector_id}"
    text += "/" + variable.name
    if variable.instance is not None:
        text += f"({variable.instance})"
    return text if attribute == Attribute.ACTUAL else f"{text}#{attribute.value}"


@lru_cache(maxsize=1024)
def parse_path(path: str) -> VariablePath:
    """Parse a path (module docstring); raises ValueError if it is malformed."""
    match = _PATH.match(path.strip())
    if match is None:
        raise ValueError(f"{path!r} is not Component[(inst)][@evse[:conn]]/Variable[(inst)]")
    evse = match["e"]
    connector = match["k"]
    attribute = match["a"] or Attribute.ACTUAL.value
    if attribute not in {a.value for a in Attribute}:
        raise ValueError(f"{path!r}: {attribute!r} is not an attribute type")
    return VariablePath(
        ComponentKey(
            match["c"],
            match["ci"],
            int(evse) if evse is not None else None,
            int(connector) if connector is not None else None,
        ),
        VariableKey(match["v"], match["vi"]),
        Attribute(attribute),
    )


def check_value(definition: VariableDef, value: str) -> tuple[str | None, str]:
    """(canonical value, "") if `value` fits the definition, else (None, reason code)."""
    kind = definition.data_type
    low, high = definition.min_limit, definition.max_limit
    text = value if kind == DataType.STRING else value.strip()  # strings are taken verbatim
    if len(text) > STRING_MAX_LENGTH:  # no value of any type is longer on the wire
        return None, "TooLargeElement"
    if kind == DataType.BOOLEAN:
        lowered = text.lower()  # the spec writes "true"/"false"; accept any case
        return (lowered, "") if lowered in ("true", "false") else (None, "InvalidValue")
    if kind in (DataType.INTEGER, DataType.DECIMAL):
        pattern = _INTEGER if kind == DataType.INTEGER else _DECIMAL
        if not pattern.match(text):
            return None, "InvalidValue"
        number = Decimal(text)
        if kind == DataType.INTEGER:
            low = INT32[0] if low is None else low
            high = INT32[1] if high is None else high
        if low is not None and number < Decimal(str(low)):
            return None, "ValueTooLow"
        if high is not None and number > Decimal(str(high)):
            return None, "ValueTooHigh"
        return (str(int(number)) if kind == DataType.INTEGER else text), ""
    if kind == DataType.DATE_TIME:
        if not _DATE_TIME.match(text):
            return None, "InvalidValue"
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None, "InvalidValue"
        return text, ""
    if kind in LIST_TYPES:
        allowed = definition.values_list or ()
        items = [item.strip() for item in text.split(",")] if text else []
        if kind == DataType.OPTION_LIST:
            ok = len(items) == 1 and items[0] in allowed
        else:  # MemberList: a subset; SequenceList: an ordered subset (no repeats either way)
            ok = all(item in allowed for item in items) and len(set(items)) == len(items)
        text = ",".join(items)
        if not ok:
            return None, "InvalidValue"
    # string and the list types: length bounds (maxLimit is the CSV length for lists)
    if len(text) > (high if high is not None else STRING_MAX_LENGTH):
        return None, "TooLargeElement"
    if low is not None and len(text) < low:
        return None, "InvalidValue"
    return text, ""


#: How many paths a Catalogue keeps resolved (`Catalogue.resolve`).
_RESOLVED_PATHS: Final = 512


class Catalogue:
    """The immutable part of a device model: definitions in order, the case-insensitive
    index and the components (`catalogue()` shares one per distinct definitions)."""

    __slots__ = ("_components", "_index", "_owned", "_paths", "definitions")

    def __init__(self, definitions: tuple[VariableDef, ...]) -> None:
        """Index `definitions`; raises ValueError for a duplicate or an invalid default."""
        self.definitions = definitions
        self._index: dict[_Key, VariableDef] = {}
        self._components: frozenset[_ComponentFold] = frozenset(
            _component_fold(d.component) for d in definitions
        )
        for definition in definitions:
            key = _key(definition.component, definition.variable)
            if key in self._index:
                raise ValueError(f"{_path(definition)} is defined twice")
            self._index[key] = definition
            for attribute in definition.mutability:
                default = definition.default_for(attribute)
                if default and check_value(definition, default)[0] is None:
                    raise ValueError(f"{_path(definition, attribute)}: invalid default")
        self._owned = frozenset(definitions)  # by identity: VariableDef has eq=False
        self._paths: dict[str, tuple[VariableDef, Attribute]] = {}  # resolve()'s memo

    def lookup(self, component: ComponentKey, variable: VariableKey) -> VariableDef | None:
        """The definition of a component's variable, or None (names case-insensitive)."""
        return self._index.get(_key(component, variable))

    def resolve(self, path: str) -> tuple[VariableDef, Attribute]:
        """The definition and attribute `path` names: KeyError if this catalogue has no
        such attribute, ValueError if the path is malformed. The message paths read some
        values for every message, so a path is resolved once, for every station that
        shares this catalogue (the code reads a few dozen constant paths: a bound)."""
        found = self._paths.get(path)
        if found is None:
            component, variable, attribute = parse_path(path)
            definition = self.lookup(component, variable)
            if definition is None or attribute not in definition.mutability:
                raise KeyError(path)
            found = (definition, attribute)
            if len(self._paths) < _RESOLVED_PATHS:
                self._paths[path] = found
        return found

    def has_component(self, component: ComponentKey) -> bool:
        """Whether any variable belongs to this component."""
        return _component_fold(component) in self._components

    def own(self, definition: VariableDef) -> VariableDef | None:
        """This catalogue's definition for `definition` (itself, or the one of the same
        component and variable when it comes from elsewhere), or None."""
        if definition in self._owned:
            return definition
        return self.lookup(definition.component, definition.variable)


@lru_cache(maxsize=16)
def catalogue(definitions: tuple[VariableDef, ...]) -> Catalogue:
    """The shared Catalogue of these definitions (raises ValueError as Catalogue)."""
    return Catalogue(definitions)


def _path(definition: VariableDef, attribute: Attribute = Attribute.ACTUAL) -> str:
    """The canonical path of a definition's attribute."""
    return format_path(definition.component, definition.variable, attribute)
