"""Malformed OCPP-J frames for fuzzing a station, and what the spec says it must answer.

Strategies (hypothesis) build the text of one frame a CSMS could send: not JSON at all,
JSON that is no frame, frames of the wrong arity or element types, unknown message types
and actions, huge or odd unique ids, and CALLs of real actions whose payload breaks the
action's official schema in exactly one way (a required field dropped, a value of the
wrong JSON type, a value outside its enumeration or length or range, a field the schema
does not allow). The payloads start from a minimal valid payload built from the schema
itself, so every action of both versions is covered without hand-written examples.

`expected_reply()` is the oracle, written from the spec rather than from the agent
(OCPP-J 1.6 section 4.2, OCPP 2.0.1 part 4 section 4.3): a frame without a message type
and a unique id that can be read gets no answer; a CALL that is no
[2, id, action, object] gets the formation CALLERROR; an action the version does not
define gets NotImplemented; a defined one gets the schema violation's code (judged by
`jsonschema`, an independent validator with format checks) or NotSupported if the
station does not implement it; a 2.0.1 frame of an unknown message type gets
MessageTypeNotSupported. A CALLRESULT or CALLERROR for no pending call is dropped.

This module never sends anything: tests/reliability/test_fuzz_frames.py does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import count
from typing import Any

import jsonschema
import ocpp
from hypothesis import assume
from hypothesis import strategies as st
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

SCHEMA_DIRS = {"1.6": ("v16", ""), "2.0.1": ("v201", "Request")}
ACTIONS = {
    "1.6": frozenset(str(a.value) for a in Action16),
    "2.0.1": frozenset(str(a.value) for a in Action201),
}
#: The actions a CSMS sends to a station (OCPP 1.6 with its security extension; 2.0.1
#: without the Local Controller's): most fuzzed CALLs use these, so they reach the
#: schema checks of what the station implements rather than NotSupported.
CSMS_ACTIONS = {
    "1.6": frozenset({
        "CancelReservation", "CertificateSigned", "ChangeAvailability", "ChangeConfiguration",
        "ClearCache", "ClearChargingProfile", "DataTransfer", "DeleteCertificate",
        "ExtendedTriggerMessage", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics",
        "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog", "InstallCertificate",
        "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset",
        "SendLocalList", "SetChargingProfile", "SignedUpdateFirmware", "TriggerMessage",
        "UnlockConnector", "UpdateFirmware",
    }),
    "2.0.1": frozenset({
        "CancelReservation", "CertificateSigned", "ChangeAvailability", "ClearCache",
        "ClearChargingProfile", "ClearDisplayMessage", "ClearVariableMonitoring",
        "CostUpdated", "CustomerInformation", "DataTransfer", "DeleteCertificate",
        "GetBaseReport", "GetChargingProfiles", "GetCompositeSchedule", "GetDisplayMessages",
        "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog", "GetMonitoringReport",
        "GetReport", "GetTransactionStatus", "GetVariables", "InstallCertificate",
        "RequestStartTransaction", "RequestStopTransaction", "ReserveNow", "Reset",
        "SendLocalList", "SetChargingProfile", "SetDisplayMessage", "SetMonitoringBase",
        "SetMonitoringLevel", "SetNetworkProfile", "SetVariableMonitoring", "SetVariables",
        "TriggerMessage", "UnlockConnector", "UpdateFirmware",
    }),
}  # fmt: skip
FORMATION = {"1.6": "FormationViolation", "2.0.1": "FormatViolation"}
OCCURRENCE = {"1.6": "OccurenceConstraintViolation", "2.0.1": "OccurrenceConstraintViolation"}
TYPE, PROPERTY = "TypeConstraintViolation", "PropertyConstraintViolation"

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Reply:
    """The answer a frame must get: a CALLERROR with one of `codes`, for `unique_id`."""

    unique_id: str
    codes: frozenset[str]


class WouldRun:
    """A CALL the station would carry out (a valid payload): never sent by the fuzzer."""


WOULD_RUN = WouldRun()


# -- the schemas ---------------------------------------------------------------------------------


@cache
def request_schema(version: str, action: str) -> dict[str, Any]:
    """The official request schema of an action of a version."""
    folder, suffix = SCHEMA_DIRS[version]
    path = os.path.join(os.path.dirname(ocpp.__file__), folder, "schemas", f"{action}{suffix}.json")
    with open(path, encoding="utf-8") as file:
        schema: dict[str, Any] = json.load(file)
    return schema


@cache
def _validator(version: str, action: str) -> jsonschema.protocols.Validator:
    schema = request_schema(version, action)
    cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = cls(
        schema, format_checker=jsonschema.FormatChecker()
    )
    return validator


def schema_code(version: str, action: str, payload: dict[str, Any]) -> str | None:
    """The CALLERROR code for a payload that breaks the schema in one place (its errors
    all at one path), None if it is valid; raises ValueError for several places."""
    errors = list(_validator(version, action).iter_errors(payload))
    if not errors:
        return None
    if len({tuple(e.absolute_path) for e in errors}) > 1:
        raise ValueError("violations in several places")
    rules = {str(e.validator) for e in errors}
    if "required" in rules:
        return OCCURRENCE[version]
    if "additionalProperties" in rules:
        return FORMATION[version]
    if "type" in rules:
        return TYPE
    return PROPERTY


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root["definitions"][name]
    return schema


def minimal(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The smallest valid value of a schema (required fields only)."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: minimal(properties[key], root) for key in schema.get("required", [])}
    if kind == "array":
        return [minimal(schema["items"], root) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2024-01-01T00:00:00Z"
        if schema.get("format") == "uri":
            return "http://example.com/x"
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x"


def places(schema: dict[str, Any], root: dict[str, Any], value: Any, path: Path = ()) -> Iterator[
    tuple[Path, dict[str, Any]]
]:  # fmt: skip
    """Every value inside `value` (itself first) with its path and (resolved) schema."""
    schema = _resolve(schema, root)
    yield path, schema
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                yield from places(properties[key], root, item, (*path, key))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from places(schema["items"], root, item, (*path, index))


def _get(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(value: Any, path: Path, new: Any) -> Any:
    """A copy of `value` with the item at `path` replaced by `new`."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _set(value[path[0]], path[1:], new)  # type: ignore[index]
    return copy


_WRONG_TYPED: list[Any] = [None, True, 12345, 1.5, "text", [], {}]
_JSON_KINDS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


# -- strategies ----------------------------------------------------------------------------------

_ids = count(1)


@st.composite
def unique_ids(draw: st.DrawFn) -> str:
    """A unique id: short, empty-ish, odd characters or huge (> 36 characters); a
    counter keeps each one distinct so replies never get mixed up."""
    tail = draw(
        st.one_of(
            st.text(max_size=8),
            st.text(min_size=37, max_size=4000),
            st.sampled_from(["", " ", "\u0000", "-1", "null", "\"'[]{}"]),
        )
    )
    return f"{next(_ids)}:{tail}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def schema_violations(draw: st.DrawFn, version: str) -> str:
    """A CALL of a real action whose payload breaks its schema in exactly one place."""
    action = draw(
        st.one_of(
            st.sampled_from(sorted(CSMS_ACTIONS[version])),
            st.sampled_from(sorted(CSMS_ACTIONS[version])),
            st.sampled_from(sorted(CSMS_ACTIONS[version])),
            st.sampled_from(sorted(ACTIONS[version])),
        )
    )
    root = request_schema(version, action)
    payload = minimal(root, root)
    spots = list(places(root, root, payload))
    kind = draw(st.sampled_from(["drop", "type", "enum", "long", "low", "extra", "not_object"]))
    if kind == "not_object":
        payload = draw(st.one_of(st.lists(json_values, max_size=3), st.text(max_size=10),
                                 st.integers(), st.none()))  # fmt: skip
    elif kind == "drop":
        objects = [(p, s) for p, s in spots if s.get("required")]
        assume(objects)
        path, schema = draw(st.sampled_from(objects))
        key = draw(st.sampled_from(schema["required"]))
        inner = {k: v for k, v in _get(payload, path).items() if k != key}
        payload = _set(payload, path, inner)
    elif kind == "type":
        fields = [(p, s) for p, s in spots if p]
        assume(fields)
        path, schema = draw(st.sampled_from(fields))
        allowed = _JSON_KINDS.get(str(schema.get("type")), lambda v: True)
        wrong = [v for v in _WRONG_TYPED if not allowed(v)]
        assume(wrong)
        payload = _set(payload, path, draw(st.sampled_from(wrong)))
    elif kind == "enum":
        enums = [(p, s) for p, s in spots if p and "enum" in s]
        assume(enums)
        path, schema = draw(st.sampled_from(enums))
        value = draw(st.text(max_size=30).filter(lambda v: v not in schema["enum"]))
        payload = _set(payload, path, value)
    elif kind == "long":
        bounded = [(p, s) for p, s in spots if p and "maxLength" in s and "enum" not in s]
        assume(bounded)
        path, schema = draw(st.sampled_from(bounded))
        payload = _set(payload, path, "y" * (schema["maxLength"] + draw(st.integers(1, 500))))
    elif kind == "low":
        bounded = [(p, s) for p, s in spots if p and "minimum" in s]
        assume(bounded)
        path, schema = draw(st.sampled_from(bounded))
        payload = _set(payload, path, schema["minimum"] - draw(st.integers(1, 10**6)))
    else:
        closed = [(p, s) for p, s in spots if s.get("additionalProperties") is False
                  and s.get("type") == "object"]  # fmt: skip
        assume(closed)
        path, schema = draw(st.sampled_from(closed))
        key = draw(st.text(min_size=1, max_size=12).filter(
            lambda k: k not in schema.get("properties", {})))  # fmt: skip
        payload = _set(payload, path, {**_get(payload, path), key: draw(json_values)})
    return json.dumps([2, draw(unique_ids()), action, payload])


@st.composite
def odd_frames(draw: st.DrawFn, version: str) -> str:
    """Frames of any arity and element types, unknown message types, unknown actions."""
    type_id = _weighted(draw, [
        (5, st.just(2)),
        (3, st.sampled_from([3, 4, 5, 6, 0, -1, 99, 2**63])),
        (2, st.one_of(st.booleans(), st.floats(-3, 9), st.text(max_size=3), st.none())),
    ])  # fmt: skip
    unique_id = _weighted(draw, [
        (7, unique_ids()),
        (3, st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2))),
    ])  # fmt: skip
    action = _weighted(draw, [
        (5, st.text(max_size=30).filter(lambda a: a not in ACTIONS[version])),
        (3, st.sampled_from(sorted(ACTIONS[version]))),
        (2, json_values),
    ])  # fmt: skip
    rest = draw(st.lists(json_values, max_size=4))
    length = _weighted(draw, [(5, st.just(4)), (5, st.integers(0, 6))])
    frame = [type_id, unique_id, action, *rest][:length]
    return json.dumps(frame)


def _weighted(draw: st.DrawFn, choices: list[tuple[int, st.SearchStrategy[Any]]]) -> Any:
    """Draw from one of several strategies, chosen with the given weights (hypothesis's
    own one_of leans heavily towards its first branches)."""
    pick = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
    for weight, strategy in choices:
        if pick < weight:
            return draw(strategy)
        pick -= weight
    raise AssertionError("unreachable")


@st.composite
def frames(draw: st.DrawFn, version: str) -> str:
    """Any malformed frame text a CSMS could send to a `version` station: mostly CALLs
    breaking a schema, then odd frames, text and JSON that are no frame."""
    text: str = _weighted(draw, [
        (45, schema_violations(version)),
        (25, odd_frames(version)),
        (15, st.text(max_size=200)),  # mostly not JSON
        (15, json_values.map(json.dumps)),  # JSON, mostly no frame
    ])  # fmt: skip
    assume(expected_reply(text, version) is not WOULD_RUN)  # e.g. [2, id, "ClearCache", {}]
    return text


# -- the oracle ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def expected_reply(text: str, version: str) -> Reply | WouldRun | None:
    """What the station must answer to `text` (None: nothing), per the spec."""
    try:
        frame = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    try:  # a lone surrogate escape is JSON syntax but no Unicode text: parsers may refuse it
        json.dumps(frame, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None
    if not isinstance(frame, list) or len(frame) < 2:
        return None
    type_id, unique_id = frame[0], frame[1]
    if not isinstance(type_id, int) or isinstance(type_id, bool) or not isinstance(unique_id, str):
        return None
    if type_id in (3, 4):
        return None  # a reply to no CALL of the station's: dropped
    if type_id != 2:
        if version == "2.0.1":
            return Reply(unique_id, frozenset({"MessageTypeNotSupported"}))
        return None
    action = frame[2] if len(frame) > 2 else None
    if len(frame) != 4 or not isinstance(action, str) or not isinstance(frame[3], dict):
        return Reply(unique_id, frozenset({FORMATION[version]}))
    if action not in ACTIONS[version]:
        return Reply(unique_id, frozenset({"NotImplemented"}))
    try:
        code = schema_code(version, action, frame[3])
    except ValueError:
        # Several violations: any schema code is right (which comes first is not said).
        codes = {FORMATION[version], OCCURRENCE[version], TYPE, PROPERTY, "NotSupported"}
        return Reply(unique_id, frozenset(codes))
    if code is None:
        return WOULD_RUN
    return Reply(unique_id, frozenset({code, "NotSupported"}))
