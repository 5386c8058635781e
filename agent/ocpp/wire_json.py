"""The OCPP-J frame codec: JSON text to Python values and back, fast and strict.

JSON goes through orjson when it is installed (a dependency; about ten times faster than
the standard library on a MeterValues frame) and falls back to the standard library
wherever the two would differ, so the wire text and what is accepted stay the same:
NaN and Infinity are refused both ways, datetimes and dataclasses are not serialized,
non-string keys and integers beyond 64 bits are written as before. Two differences are
kept for speed: a float outside 1e-4..1e16 is written in orjson's form (1e16, 0.00001
where the stdlib writes 1e+16, 1e-05: the same number), and an incoming integer beyond
64 bits is read as a float (no OCPP field holds one; its schema check then fails instead
of passing a huge int to a handler).

It must not: know about frames, actions or transports (rpc.py does).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    orjson = None  # type: ignore[assignment]


def encode(frame: list[Any]) -> str:
    """Serialize a frame compactly; raises ValueError or TypeError if it is not JSON."""
    if orjson is not None:
        try:
            data = orjson.dumps(frame, option=_ORJSON_STRICT)
        except TypeError:
            pass  # big ints, non-str keys, datetimes...: the stdlib decides, as before
        else:
            # orjson writes NaN and Infinity as null; only then can the texts differ.
            if b"null" not in data:
                return data.decode()
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which Python's json accepts but JSON does not."""
    raise ValueError(f"{name} is not valid JSON")


def decode(text: str) -> Any:
    """Parse one frame's JSON; raises ValueError (not JSON, NaN, Infinity) or RecursionError."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except ValueError:
            pass  # lone surrogates, huge numbers, deep nesting: the stdlib decides
    return json.loads(text, parse_constant=_reject_constant)


if orjson is not None:
    # Types the stdlib refuses raise TypeError in orjson too, and fall back.
    _ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
