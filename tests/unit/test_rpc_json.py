"""The RPC layer's JSON codec: orjson where it gives the standard library's answer, the
standard library wherever the two would differ (agent/ocpp/rpc.py module docstring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.ocpp.rpc import _decode, _encode


def _stdlib(frame: list[Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@pytest.mark.parametrize(
    "frame",
    [
        [2, "a1", "Heartbeat", {}],
        [3, "a1", {"currentTime": "2025-01-01T00:00:00Z", "interval": 300}],
        [2, "a2", "DataTransfer", {"vendorId": "é€😀", "data": 'quote " backslash \\ \n\t'}],
        [2, "a3", "MeterValues", {"v": [0.1, 1.5, -0.0, 100.0, 12345.678, 1e15, True, False]}],
        [2, "a4", "X", {"big": 2**70, "negative": -(2**64)}],  # beyond 64 bits: stdlib
        [2, "a5", "X", {1: "int key"}],  # a non-string key: stdlib turns it into "1"
        [4, "a6", "GenericError", "", {"none": None}],  # null: the stdlib writes it
    ],
    ids=["empty", "result", "unicode-escapes", "numbers", "big-ints", "int-key", "null"],
)
def test_frames_are_encoded_exactly_as_the_standard_library_does(frame: list[Any]) -> None:
    assert _encode(frame) == _stdlib(frame)


def test_floats_beyond_the_plain_range_are_written_as_the_same_numbers() -> None:
    frame = [2, "a1", "X", {"v": [1e16, 1.7976931348623157e308, 1e-05, 5e-324, 1.23e22]}]
    assert json.loads(_encode(frame)) == frame


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinity_are_refused_when_encoding(value: float) -> None:
    with pytest.raises(ValueError):
        _encode([3, "a1", {"limit": value}])


def test_datetimes_and_dataclasses_are_not_serialized() -> None:
    @dataclass
    class Payload:
        value: int

    with pytest.raises(TypeError):
        _encode([2, "a1", "X", {"at": datetime.now(UTC)}])
    with pytest.raises(TypeError):
        _encode([2, "a1", "X", {"payload": Payload(1)}])


@pytest.mark.parametrize("text", ['[2,"a","X",NaN]', "[Infinity]", "[-Infinity]", "[1,]", "x"])
def test_invalid_json_and_nan_literals_are_refused_when_decoding(text: str) -> None:
    with pytest.raises(ValueError):
        _decode(text)


@pytest.mark.parametrize(
    "text",
    [
        '[3,"a1",{"currentTime":"2025-01-01T00:00:00Z","interval":300,"status":"Accepted"}]',
        '["\\u00e9\\ud83d\\ude00", 1.5, -0.0, true, null, {"a": 1, "a": 2}]',
        '["\\ud800"]',  # a lone surrogate: orjson refuses it, the stdlib reads it
    ],
    ids=["result", "escapes-duplicate-keys", "lone-surrogate"],
)
def test_frames_are_decoded_as_the_standard_library_does(text: str) -> None:
    assert _decode(text) == json.loads(text)
