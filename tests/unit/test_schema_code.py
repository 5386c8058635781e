"""What the agent accepts is what fastjsonschema accepts, for every OCPP 1.6 and 2.0.1
schema, requests and responses: the lean validators (agent/ocpp/schema_code.py) and
Dialect.check agree with fastjsonschema's own validators on every payload.

Payloads are generated from each schema (hypothesis): mostly valid ones, with a wrong
type, a missing required field, an unknown field, an out-of-enum string, an over-long
text or a malformed timestamp mixed in at every level, so both sides of each check are
exercised. What is compared is the verdict (accepted or refused) on the same payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.ocpp.dialects import OCPP16, OCPP201
from agent.ocpp.schema_code import compile_schema

DIALECTS = {OCPP16.schema_dir: OCPP16, OCPP201.schema_dir: OCPP201}
SCHEMAS = [
    (dialect.schema_dir, entry.name)
    for dialect in (OCPP16, OCPP201)
    for entry in sorted(
        files("ocpp").joinpath(dialect.schema_dir, "schemas").iterdir(), key=lambda e: e.name
    )
    if entry.name.endswith(".json")
]
TIMES = ["2025-01-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-01-01T00:00:00+0100", "now"]
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.just(1.0),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@cache
def schema(folder: str, name: str) -> dict[str, Any]:
    text = files("ocpp").joinpath(folder, "schemas", name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validators(folder: str, name: str) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    document = schema(folder, name)
    reference = fastjsonschema.compile(document, use_default=False, detailed_exceptions=False)
    return reference, compile_schema(document)


def check_accepts(folder: str, name: str, payload: Any) -> bool:
    """Dialect.check's verdict for the schema file `name`."""
    dialect = DIALECTS[folder]
    stem = name.removesuffix(".json")
    response = stem.endswith("Response")
    action = stem.removesuffix("Response" if response else dialect.request_suffix)
    return dialect.check(action, payload, response=response) is None


def accepts(validate: Callable[[Any], Any], payload: Any) -> bool:
    try:
        validate(payload)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def instances(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a (sub)schema: valid ones mostly, a wrong one now and then."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        node = root["definitions"][ref.rsplit("/", 1)[1]]
    if depth > 6:
        return WRONG
    return mostly(_valid(node, root, depth), WRONG)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` nine times in ten, `rare` otherwise (so whole payloads are often valid)."""
    return st.integers(0, 9).flatmap(lambda n: rare if n == 0 else usual)


def _valid(node: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    if "enum" in node:
        return mostly(st.sampled_from(node["enum"]), st.just("NotOneOfThem"))
    if kind == "string":
        if node.get("format") == "date-time":
            return mostly(st.just(TIMES[0]), st.sampled_from(TIMES[1:]))
        limit = node.get("maxLength", 8)
        return mostly(st.text(max_size=min(limit, 40)), st.just("x" * (limit + 1)))
    if kind == "integer":
        return mostly(st.integers(-2, 10**6), st.just(3.0))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-5, 5)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = instances(node.get("items", {}), root, depth + 1)
        low = node.get("minItems", 0)
        lists = st.lists(items, min_size=low, max_size=max(low, min(node.get("maxItems", 3), 3)))
        return mostly(lists, st.lists(items, max_size=max(0, low - 1)))
    if kind == "object" or "properties" in node:
        properties = node.get("properties", {})
        required = [key for key in node.get("required", []) if key in properties]
        strategies = {key: instances(properties[key], root, depth + 1) for key in properties}
        whole = st.fixed_dictionaries(
            {key: strategies[key] for key in required},
            optional={key: s for key, s in strategies.items() if key not in required},
        )
        return mostly(whole, whole.flatmap(_mutated))
    return WRONG


def _mutated(payload: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The object with an unknown field, or without one of its fields."""
    choices: list[dict[str, Any]] = [{**payload, "unknownField": 1}]
    choices += [{k: v for k, v in payload.items() if k != key} for key in payload]
    return st.sampled_from(choices)


@pytest.mark.parametrize(("folder", "name"), SCHEMAS, ids=[f"{f}/{n}" for f, n in SCHEMAS])
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_the_agent_accepts_exactly_what_fastjsonschema_accepts(
    folder: str, name: str, data: st.DataObject
) -> None:
    document = schema(folder, name)
    payload = data.draw(instances(document, document))
    reference, lean = validators(folder, name)
    verdict = accepts(reference, payload)
    assert accepts(lean, payload) == verdict, payload
    assert check_accepts(folder, name, payload) == verdict, payload


def test_generated_payloads_reach_both_verdicts() -> None:
    """The comparison above is not vacuous: a 2.0.1 TransactionEventRequest is generated
    both valid and invalid, and both validators agree on each."""
    document = schema("v201", "TransactionEventRequest.json")
    reference, lean = validators("v201", "TransactionEventRequest.json")
    verdicts: set[bool] = set()

    @settings(
        max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(payload=instances(document, document))
    def collect(payload: Any) -> None:
        verdict = accepts(reference, payload)
        assert accepts(lean, payload) == verdict
        assert check_accepts("v201", "TransactionEventRequest.json", payload) == verdict
        verdicts.add(verdict)

    collect()
    assert verdicts == {True, False}


@pytest.mark.parametrize(
    ("payload", "accepted"),
    [
        ({"connectorId": 1, "meterValue": []}, False),  # minItems
        ({"connectorId": 1}, False),  # required
        ({"connectorId": True, "meterValue": [{"timestamp": TIMES[0], "sampledValue": []}]}, False),
        ({"connectorId": 1, "meterValue": [{"timestamp": TIMES[0], "sampledValue": [{}]}]}, False),
        (
            {
                "connectorId": 1,
                "meterValue": [
                    {"timestamp": TIMES[0], "sampledValue": [{"value": "1", "unit": "Parsec"}]}
                ],
            },
            False,
        ),
        (
            {
                "connectorId": 1,
                "meterValue": [
                    {"timestamp": TIMES[0], "sampledValue": [{"value": "1", "phase": "L1-N"}]}
                ],
            },
            True,
        ),
        (
            {
                "connectorId": 1,
                "meterValue": [{"timestamp": TIMES[0], "sampledValue": [{"value": "1"}]}],
                "x": 1,
            },
            False,
        ),
    ],
)
def test_meter_values_16_edge_cases(payload: dict[str, Any], accepted: bool) -> None:
    reference, lean = validators("v16", "MeterValues.json")
    assert accepts(reference, payload) == accepted
    assert accepts(lean, payload) == accepted
