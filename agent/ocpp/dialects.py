"""OCPP-J dialects: what differs between OCPP 1.6 and 2.0.1 at the RPC layer.

A `Dialect` names the version, its WebSocket subprotocol, the actions it defines, its
CALLERROR codes, and validates payloads against the official JSON schemas shipped with
the `ocpp` package (validators compiled lazily and cached). It also maps a schema
violation to the CALLERROR code the version prescribes (OCPP 1.6 §4.2.3, OCPP 2.0.1
part 4 §4.3).

It must not: mutate payloads (validators are compiled with `use_default=False`), convert
key case, do I/O beyond reading the packaged schemas, or know about transports. It does
not import the `ocpp` package's Python modules either: a version's actions are the names
of its schema files, which keeps the library's jsonschema-based machinery (several MB of
resident memory) out of the agent's process.

Validation: every payload goes through a lean validator (schema_code.py: fastjsonschema's
checks in faster code shapes, its exceptions a message only); a payload it refuses goes
again through fastjsonschema's own detailed validator, which names the rule for the
CALLERROR. tests/unit/test_schema_code.py checks on generated payloads, for every
schema, that what is accepted is exactly what fastjsonschema accepts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import fastjsonschema

from agent.ocpp.schema_code import compile_schema

Validator = Callable[[Any], Any]
"""A compiled validator: returns on success, raises JsonSchemaValueException otherwise."""


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """Why a payload does not conform to its schema, as a CALLERROR would say it."""

    code: str
    description: str
    field: str  # dotted path of the offending field ("" for the payload itself)

    @property
    def details(self) -> dict[str, Any]:
        """The CALLERROR details object naming the offending field."""
        return {"field": self.field}


@dataclass(frozen=True)
class Dialect:
    """One OCPP-J version as the RPC layer sees it."""

    version: str
    subprotocol: str
    actions: frozenset[str]
    error_codes: frozenset[str]
    formation_code: str  # payload not an object / additional properties / malformed frame
    occurrence_code: str  # a required field is missing
    message_type_not_supported_code: str | None  # 2.0.1 only
    schema_dir: str  # folder under the ocpp package: "v16" or "v201"
    request_suffix: str  # "" for 1.6 (Authorize.json), "Request" for 2.0.1
    # The lean validators by (action, response): check() runs for every frame.
    _lean: dict[tuple[str, bool], Validator] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def validator(self, action: str, *, response: bool, detailed: bool = False) -> Validator:
        """Return the cached compiled validator for action; raises KeyError if undefined.

        The default one is lean: its exceptions say only a message. The `detailed` one
        (compiled on first use, about five times the code) names the rule, the value and
        the schema part that failed, as the CALLERROR mapping needs.
        """
        if action not in self.actions:
            raise KeyError(f"OCPP {self.version} does not define action {action!r}")
        suffix = "Response" if response else self.request_suffix
        return _compile(self.schema_dir, f"{action}{suffix}.json", detailed)

    def check(self, action: str, payload: Any, *, response: bool) -> SchemaViolation | None:
        """Return the first schema violation of payload, or None; raises KeyError if undefined."""
        validate = self._lean.get((action, response))
        if validate is None:
            validate = self._lean[(action, response)] = self.validator(action, response=response)
        if not isinstance(payload, dict):
            return SchemaViolation(self.formation_code, "payload must be a JSON object", "")
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as lean:
            # Rare: run the detailed validator for the rule, value and schema part.
            return self._violation(self._detailed(action, payload, response) or lean)
        except (ValueError, ArithmeticError) as exc:  # e.g. multipleOf on NaN or infinity
            return SchemaViolation("PropertyConstraintViolation", f"invalid number: {exc}", "")
        return None

    def _detailed(
        self, action: str, payload: Any, response: bool
    ) -> fastjsonschema.JsonSchemaValueException | None:
        """The detailed validator's exception for a payload the lean one refused."""
        try:
            self.validator(action, response=response, detailed=True)(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc
        return None  # cannot happen: both are compiled from the same schema

    def _violation(self, exc: fastjsonschema.JsonSchemaValueException) -> SchemaViolation:
        """Map a fastjsonschema failure to this version's CALLERROR code and field path."""
        path = _field_path(exc.name or "data")
        message = _strip_root(exc.message)
        rule = exc.rule
        definition = exc.definition if isinstance(exc.definition, Mapping) else {}
        value = exc.value
        if rule == "required":
            required = definition.get("required", [])
            missing = [key for key in required if not _has_key(value, key)]
            field = _join(path, missing[0]) if missing else path
            return SchemaViolation(self.occurrence_code, f"missing required field {field}", field)
        if rule == "additionalProperties":
            allowed = definition.get("properties", {})
            extra = sorted(k for k in _keys(value) if k not in allowed)
            field = _join(path, extra[0]) if extra else path
            return SchemaViolation(self.formation_code, f"unexpected field {field}", field)
        if rule == "type":  # the payload itself not being an object is caught in check()
            return SchemaViolation("TypeConstraintViolation", message, path)
        # enum, maxLength, minLength, minimum, maximum, pattern, format, multipleOf, ...
        return SchemaViolation("PropertyConstraintViolation", message, path)


@functools.cache
def _compile(schema_dir: str, filename: str, detailed: bool) -> Validator:
    """Load and compile one packaged schema; never injects defaults into payloads.

    The lean validator (schema_code.py) leaves the value and schema part out of its
    exceptions: about a fifth of the code (the 2.0.1 TransactionEventRequest validator
    holds 2.4 MB instead of 9 MB resident), the same checks, two to three times faster
    than fastjsonschema's. The detailed one is fastjsonschema's own.
    """
    text = files("ocpp").joinpath(schema_dir, "schemas", filename).read_text(encoding="utf-8")
    schema = json.loads(text)
    if not detailed:
        lean: Validator = compile_schema(schema)
        return lean
    compiled: Validator = fastjsonschema.compile(
        schema, use_default=False, detailed_exceptions=True
    )
    return compiled


def _schema_actions(schema_dir: str) -> frozenset[str]:
    """Return the actions a version defines: those with a response schema in its folder."""
    folder = files("ocpp").joinpath(schema_dir, "schemas")
    suffix = "Response.json"
    return frozenset(
        entry.name[: -len(suffix)] for entry in folder.iterdir() if entry.name.endswith(suffix)
    )


def _field_path(name: str) -> str:
    """Turn fastjsonschema's "data.a.b[0].c" into "a.b[0].c" ("" for the root)."""
    if name == "data":
        return ""
    if name.startswith("data."):
        return name[len("data.") :]
    if name.startswith("data["):
        return name[len("data") :]
    return name


def _strip_root(message: str) -> str:
    """Drop fastjsonschema's "data." prefix from a message so it names the field."""
    if message.startswith("data."):
        return message[len("data.") :]
    if message.startswith("data "):
        return "payload " + message[len("data ") :]
    return message


def _join(path: str, key: str) -> str:
    """Append a key to a dotted field path."""
    return f"{path}.{key}" if path else key


def _keys(value: Any) -> list[str]:
    """Return the keys of value if it is an object, else nothing."""
    return [str(k) for k in value] if isinstance(value, dict) else []


def _has_key(value: Any, key: str) -> bool:
    """Tell whether value is an object holding key."""
    return isinstance(value, dict) and key in value


_CODES_16 = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",  # sic: the OCPP 1.6 spelling (§4.2.3)
        "TypeConstraintViolation",
        "GenericError",
    }
)

_CODES_201 = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)

OCPP16 = Dialect(
    version="1.6",
    subprotocol="ocpp1.6",
    actions=_schema_actions("v16"),
    error_codes=_CODES_16,
    formation_code="FormationViolation",
    occurrence_code="OccurenceConstraintViolation",
    message_type_not_supported_code=None,
    schema_dir="v16",
    request_suffix="",
)

OCPP201 = Dialect(
    version="2.0.1",
    subprotocol="ocpp2.0.1",
    actions=_schema_actions("v201"),
    error_codes=_CODES_201,
    formation_code="FormatViolation",
    occurrence_code="OccurrenceConstraintViolation",
    message_type_not_supported_code="MessageTypeNotSupported",
    schema_dir="v201",
    request_suffix="Request",
)
