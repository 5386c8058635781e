"""The local API's contract: the OpenAPI document, and request checks compiled from it.

Responsible for: loading the OpenAPI document shipped inside the package
(agent/api/openapi.yaml, a byte-identical copy of docs/openapi.yaml that a test keeps in
step), and compiling once, from that same document, the request-body schemas the server
checks every request against, so the contract and the checks cannot drift. A violation is
turned into one sentence that names the offending field.

Must not: know about the agent or HTTP, or check responses (the tests do that against
the same document).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import fastjsonschema
import yaml

DOCUMENT_FILE = "openapi.yaml"

_Validator = Callable[[Any], Any]


class BodyError(ValueError):
    """A request body that is missing, not JSON, or not what the contract allows."""


def load_document() -> dict[str, Any]:
    """The OpenAPI document shipped with the package, as plain JSON-compatible data."""
    text = resources.files("agent.api").joinpath(DOCUMENT_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def operations(document: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Every operation of the document: operationId -> (HTTP method, path template)."""
    found: dict[str, tuple[str, str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                found[operation["operationId"]] = (method.upper(), path)
    return found


class RequestBodies:
    """The request-body check of every operation that takes one, compiled once."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._checks: dict[str, tuple[_Validator, bool]] = {}
        for item in document["paths"].values():
            for method, operation in item.items():
                body = operation.get("requestBody") if method != "parameters" else None
                if body is None:
                    continue
                schema = body["content"]["application/json"]["schema"]
                # The components ride along so that "#/components/..." refs resolve.
                compiled = fastjsonschema.compile({**schema, "components": document["components"]})
                self._checks[operation["operationId"]] = (compiled, bool(body.get("required")))

    def check(self, operation_id: str, raw: bytes) -> dict[str, Any]:
        """The body of a request to `operation_id`, parsed, checked and with defaults filled.

        An empty body stands for `{}` when the body is optional. Raises BodyError saying
        what was wrong, KeyError for an operation that takes no body.
        """
        validate, required = self._checks[operation_id]
        if not raw.strip():
            if required:
                raise BodyError("a JSON body is required")
            raw = b"{}"
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BodyError(f"the body is not valid JSON: {exc}") from None
        try:
            checked: dict[str, Any] = validate(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise BodyError(_explain(exc)) from None
        return checked


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which Python's json reads but JSON does not have."""
    raise ValueError(f"{name} is not a JSON number")


def _explain(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """One sentence naming the field (as body.<field>) and what it must be."""
    name = "body" + (exc.name or "data").removeprefix("data")
    definition = exc.definition if isinstance(exc.definition, Mapping) else {}
    if exc.rule == "oneOf" and "oneOf" in definition:
        wanted = " or ".join(_describe(option) for option in definition["oneOf"])
        return f"{name} must be {wanted}, got {_show(exc.value)}"
    message = str(exc.message).removeprefix(exc.name or "data").strip()
    return f"{name} {message}"


def _describe(schema: Mapping[str, Any]) -> str:
    """A schema alternative in words: "one of 'B', 'C'", "null", "a number > 0"."""
    if "enum" in schema:
        return "one of " + ", ".join(_show(value) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    words = f"a {kind}" if isinstance(kind, str) else "a value"
    bounds = [
        f"{sign} {schema[key]}"
        for key, sign in (
            ("exclusiveMinimum", ">"),
            ("minimum", ">="),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    return " ".join([words, *bounds])


def _show(value: Any) -> str:
    """A value as JSON would spell it (short)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
