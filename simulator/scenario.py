"""Scenario files: the format of repeatable runs against a running agent.

Responsible for: reading a scenario YAML file into a checked `Scenario` of `Step`s,
reporting every problem at once with its step path (`steps[3].wait.status`) and 1-based
line, through agent/config_yaml.py's node reader exactly as the install config is read.
The format is documented in simulator/scenarios/README.md; simulator/scenario_runner.py
runs a scenario against the local control API.

Must not: do I/O other than reading the file, or know how a step is carried out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.config import ConfigError, Problem
from agent.config_yaml import NodeMap, NodeReader, describe, is_null, line_of
from drivers.types import FaultCode

STEP_KINDS = (
    "plug", "unplug", "tap", "pilot", "pause", "resume", "fault", "clear",
    "network", "power", "wait", "expect",
)  # fmt: skip
CONNECTOR_STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing",
    "Reserved", "Unavailable", "Faulted",
)  # fmt: skip
TOKEN_TYPES = (
    "ISO14443", "ISO15693", "Central", "eMAID", "KeyCode", "Local", "MacAddress",
    "NoAuthorization",
)  # fmt: skip
PILOT_STATES = ("B", "C", "D", "E", "F", "none")
FAULT_CODES = tuple(code.value for code in FaultCode)
_EV_KEYS = ("battery_wh", "soc_percent", "max_current_a", "phases", "target_soc_percent")


class ScenarioError(ConfigError):
    """The scenario file cannot be used; `problems` lists everything found."""


@dataclass(frozen=True, slots=True)
class Step:
    """One checked step. `value` is the step's main argument (token, pilot state, fault
    code, network or power verb, status, message action); `options` the others."""

    kind: str
    line: int
    text: str  # the step as written in the file, on one line, for the run's output
    evse: int | None = None  # None: the scenario's default EVSE
    value: Any = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float | None = None  # None: the scenario's default


@dataclass(frozen=True, slots=True)
class Scenario:
    """A checked scenario file."""

    name: str
    evse: int
    timeout_s: float
    steps: tuple[Step, ...]
    source: str = "<string>"


def load_scenario(path: str | Path) -> Scenario:
    """Read and check the scenario file at `path`; raises ScenarioError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8 text"
        raise ScenarioError(
            [Problem("", None, f"cannot read the file: {reason}")], str(path)
        ) from None
    return parse_scenario(text, source=str(path), default_name=Path(path).stem)


def parse_scenario(text: str, *, source: str = "<string>", default_name: str = "") -> Scenario:
    """Check scenario YAML `text`; raises ScenarioError naming each bad step, key and line."""
    problems: list[Problem] = []
    scenario = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            reader = NodeReader(
                loader, lambda *p: problems.append(Problem(*p)), Path.cwd(), environ={}
            )
            if root is None:
                reader.problem("", 1, "the file is empty (expected a mapping with 'steps')")
            else:
                scenario = _read_scenario(reader, root, problems, default_name)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        problems.append(
            Problem("", None if mark is None else mark.line + 1, f"invalid YAML: {reason}")
        )
    except (yaml.YAMLError, RecursionError) as exc:
        problems.append(Problem("", None, f"invalid YAML: {type(exc).__name__}"))
    if problems or scenario is None:
        raise ScenarioError(sorted(problems, key=lambda p: p.line or 0), source)
    return replace(scenario, source=source)


def _read_scenario(
    r: NodeReader, root: Node, problems: list[Problem], default_name: str
) -> Scenario | None:
    top = r.mapping(root, "", ("name", "description", "evse", "timeout_s", "steps"))
    if not top.line:
        return None
    name = r.text(top, "name", None, max_len=200) or default_name or "scenario"
    r.text(top, "description", None)
    evse = _evse_id(r, top) or 1
    timeout_s = r.number(top, "timeout_s", 30.0, gt=0)
    steps_node = r.required(top, "steps")
    steps: list[Step] = []
    if steps_node is not None and not isinstance(steps_node, SequenceNode):
        r.problem("steps", steps_node, f"expected a list of steps, got {describe(steps_node)}")
    elif steps_node is not None and not steps_node.value:
        r.problem("steps", steps_node, "the scenario has no steps")
    elif steps_node is not None:
        for index, node in enumerate(steps_node.value):
            step = _read_step(r, node, f"steps[{index}]", problems)
            if step is not None:
                steps.append(step)
    return Scenario(name, evse, timeout_s, tuple(steps))


def _positive_int(r: NodeReader, m: NodeMap, key: str, expected: str) -> int | None:
    """Read an optional integer from 1 (an EVSE id, a count); None when absent or wrong."""
    node = r.typed(m, key, ("int",), expected)
    value = None if node is None else r.scalar(node, m.at(key))
    if isinstance(value, int) and value < 1:
        r.problem(m.at(key), node, f"must be at least 1, got {value}")
        return None
    return value if isinstance(value, int) else None


def _evse_id(r: NodeReader, m: NodeMap) -> int | None:
    """Read an optional `evse` key: an EVSE id (an integer from 1)."""
    return _positive_int(r, m, "evse", "an EVSE id (1, 2, ...)")


def _flow(node: Node) -> str:
    """Render a node on one line in YAML flow style, for the run's output."""
    if isinstance(node, MappingNode):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in node.value) + "}"
    if isinstance(node, SequenceNode):
        return "[" + ", ".join(_flow(item) for item in node.value) + "]"
    if not isinstance(node, ScalarNode) or is_null(node):
        return ""
    quote = node.style if node.style in ("'", '"') else ""
    return f"{quote}{node.value}{quote}"


def _step_text(kind: str, value: Node) -> str:
    """The step as the run shows it: `plug: {soc_percent: 20}`, at most 96 characters."""
    text = f"{kind}: {_flow(value)}".rstrip(": ")
    return text if len(text) <= 96 else text[:93] + "..."


def _arguments(
    r: NodeReader, node: Node, path: str, main: str | None, allowed: Sequence[str]
) -> NodeMap:
    """The step's arguments as a NodeMap; a scalar (or null) stands for the `main` key."""
    if main is not None and isinstance(node, ScalarNode):
        return NodeMap(path, line_of(node), {main: (node, node)})
    if is_null(node):
        return NodeMap(path, line_of(node), {})
    return r.mapping(node, path, allowed)


def _read_step(r: NodeReader, node: Node, path: str, problems: list[Problem]) -> Step | None:
    """Read one step; None when it has a problem (reported)."""
    if not isinstance(node, MappingNode):
        r.problem(path, node, f"expected a step such as 'plug: {{}}', got {describe(node)}")
        return None
    found = len(problems)
    entries = r.mapping(node, path, STEP_KINDS).entries
    if len(entries) != 1:
        if len(entries) > 1:
            kinds = ", ".join(f"'{kind}'" for kind in entries)
            r.problem(path, node, f"one step per list item, got {kinds} (start each with '-')")
        elif not node.value:
            r.problem(path, node, f"an empty step (expected one of: {', '.join(STEP_KINDS)})")
        return None  # an unknown kind was reported by mapping()
    kind, (_, value) = next(iter(entries.items()))
    blank = Step(kind, line_of(node), _step_text(kind, value))
    step = _STEP_READERS[kind](r, value, f"{path}.{kind}", blank)
    return step if len(problems) == found else None


def _read_plug(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    m = _arguments(r, node, path, None, (*_EV_KEYS, "evse"))
    ev: dict[str, Any] = {}
    for key, bounds in (
        ("battery_wh", {"gt": 0.0}),
        ("soc_percent", {"ge": 0.0, "le": 100.0}),
        ("max_current_a", {"gt": 0.0, "le": 80.0}),
        ("target_soc_percent", {"ge": 0.0, "le": 100.0}),
    ):
        if m.node(key) is not None:
            ev[key] = r.number(m, key, 0.0, **bounds)
    if m.node("phases") is not None:
        ev["phases"] = r.integer(m, "phases", 3, choices=(1, 3))
    return _with(step, evse=_evse_id(r, m), options=ev)


def _read_bare(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    """unplug, pause, resume: nothing but an optional EVSE."""
    return _with(step, evse=_evse_id(r, _arguments(r, node, path, None, ("evse",))))


def _read_tap(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    m = _arguments(r, node, path, "id_token", ("id_token", "type", "evse"))
    token = r.text(m, "id_token", None, required=True, min_len=1, max_len=36)
    options = {"type": r.choice(m, "type", "ISO14443", TOKEN_TYPES)} if m.node("type") else {}
    return _with(step, evse=_evse_id(r, m), value=token, options=options)


def _read_pilot(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    m = _arguments(r, node, path, "state", ("state", "evse"))
    r.required(m, "state")
    state = r.choice(m, "state", "none", PILOT_STATES) if m.node("state") else "none"
    return _with(step, evse=_evse_id(r, m), value=None if state == "none" else state)


def _read_fault(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    allowed = ("code", "detail", "evse") if step.kind == "fault" else ("code", "evse")
    m = _arguments(r, node, path, "code", allowed)
    r.required(m, "code")
    code = r.choice(m, "code", FAULT_CODES[0], FAULT_CODES) if m.node("code") else None
    detail = r.text(m, "detail", None, max_len=200)
    options = {"detail": detail} if detail is not None else {}
    return _with(step, evse=_evse_id(r, m), value=code, options=options)


def _read_network(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    m = _arguments(r, node, path, "action", ("offline_s",))
    if "action" in m.entries:
        r.required(m, "action")
        return _with(step, value=r.choice(m, "action", "drop", ("drop", "offline", "online")))
    seconds = r.number(m, "offline_s", 1.0, gt=0) if r.required(m, "offline_s") else None
    return _with(step, value="offline", options={"seconds": seconds})


def _read_power(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    m = _arguments(r, node, path, "action", ())
    r.required(m, "action")
    return _with(step, value=r.choice(m, "action", "cut", ("cut", "restore")))


def _read_wait(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    if not isinstance(node, MappingNode):
        r.problem(path, node, f"expected {{status: ...}}, {{seconds: ...}} or {{online: ...}}, "
                  f"got {describe(node)}")  # fmt: skip
        return step
    conditions = ("status", "seconds", "online")
    m = r.mapping(node, path, (*conditions, "timeout_s", "evse"))
    given = [key for key in conditions if key in m.entries]
    if len(given) != 1:
        what = ", ".join(given) or "none"
        r.problem(path, node, f"wait for exactly one of status, seconds or online (got {what})")
        return step
    timeout_s = r.number(m, "timeout_s", 1.0, gt=0) if m.node("timeout_s") else None
    step = _with(step, evse=_evse_id(r, m), timeout_s=timeout_s)
    if given == ["status"]:
        r.required(m, "status")
        return _with(step, value=r.choice(m, "status", "Available", CONNECTOR_STATUSES))
    if given == ["online"]:
        r.required(m, "online")
        return _with(step, value=r.boolean(m, "online", True), options={"condition": "online"})
    r.required(m, "seconds")
    seconds = r.number(m, "seconds", 0.0, ge=0)
    return _with(step, value=seconds, options={"condition": "seconds"})


def _read_expect(r: NodeReader, node: Node, path: str, step: Step) -> Step:
    if not isinstance(node, MappingNode):
        r.problem(path, node, f"expected a mapping such as {{message: StartTransaction}}, "
                  f"got {describe(node)}")  # fmt: skip
        return step
    m = r.mapping(node, path, ("message", "payload", "direction", "count", "timeout_s"))
    action = r.text(m, "message", None, required=True, min_len=1)
    count = _positive_int(r, m, "count", "a count (1, 2, ...)") or 1
    direction = r.choice(m, "direction", "out", ("out", "in"))
    payload_node = m.node("payload")
    payload: Any = None
    if payload_node is not None and not isinstance(payload_node, MappingNode):
        where = m.at("payload")
        r.problem(where, payload_node, f"expected a mapping, got {describe(payload_node)}")
    elif payload_node is not None:
        payload = _thaw(r.plain(payload_node, m.at("payload")))
    timeout_s = r.number(m, "timeout_s", 1.0, gt=0) if m.node("timeout_s") else None
    options = {"direction": direction, "payload": payload, "count": count}
    return _with(step, value=action, options=options, timeout_s=timeout_s)


def _with(step: Step, **changes: Any) -> Step:
    """Return `step` with `changes`; `options` are frozen."""
    if "options" in changes:
        changes["options"] = MappingProxyType(dict(changes["options"]))
    return replace(step, **changes)


def _thaw(value: Any) -> Any:
    """Plain JSON-like data (dict, list) from the node reader's read-only values."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    return [_thaw(item) for item in value] if isinstance(value, tuple) else value


_STEP_READERS: dict[str, Callable[[NodeReader, Node, str, Step], Step]] = {
    "plug": _read_plug,
    "unplug": _read_bare,
    "pause": _read_bare,
    "resume": _read_bare,
    "tap": _read_tap,
    "pilot": _read_pilot,
    "fault": _read_fault,
    "clear": _read_fault,
    "network": _read_network,
    "power": _read_power,
    "wait": _read_wait,
    "expect": _read_expect,
}
