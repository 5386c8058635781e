"""Scenario files (simulator/scenario.py): the examples and the README load, every step form
reads as documented, and every problem names its step, key and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.scenario import Scenario, ScenarioError, Step, load_scenario, parse_scenario
from simulator.scenario_runner import payload_difference

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenarios"
EXAMPLES = sorted(SCENARIOS.glob("*.yaml"))


def scenario(steps: str, head: str = "name: T\n") -> Scenario:
    """Parse a scenario whose steps are given as YAML list items (one per line)."""
    return parse_scenario(head + "steps:\n" + steps, source="t.yaml")


def only_step(text: str) -> Step:
    (step,) = scenario(f"  - {text}\n").steps
    return step


def problems(text: str) -> list[str]:
    """Every problem of a scenario text, rendered as `t.yaml:<line>: <path>: <message>`."""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="t.yaml")
    return str(caught.value).splitlines()


def test_the_four_required_examples_ship() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "normal-session.yaml",
        "ev-suspends.yaml",
        "fault-mid-session.yaml",
        "offline-session.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_and_expects_something(path: Path) -> None:
    loaded = load_scenario(path)
    assert loaded.source == str(path)
    assert loaded.name
    assert any(step.kind == "expect" for step in loaded.steps)


def test_the_readme_format_example_loads() -> None:
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README shows the format in a yaml block"
    for block in blocks:
        loaded = parse_scenario(block, source="README.md")
        kinds = {step.kind for step in loaded.steps}
        assert {"plug", "tap", "wait", "expect", "fault", "network", "power"} <= kinds


def test_top_level_defaults_and_values() -> None:
    loaded = parse_scenario("steps: [{unplug: {}}]\n", source="x.yaml", default_name="x")
    assert (loaded.name, loaded.evse, loaded.timeout_s) == ("x", 1, 30.0)
    loaded = parse_scenario("name: N\nevse: 2\ntimeout_s: 5\nsteps: [{unplug: {}}]\n")
    assert (loaded.name, loaded.evse, loaded.timeout_s) == ("N", 2, 5.0)


def test_scalar_and_mapping_forms_mean_the_same_step() -> None:
    pairs = [
        ("tap: 04A2B3C4", "tap: {id_token: 04A2B3C4}"),
        ("fault: rcd_trip", "fault: {code: rcd_trip}"),
        ("clear: rcd_trip", "clear: {code: rcd_trip}"),
        ("pilot: B", "pilot: {state: B}"),
        ("unplug: {}", "unplug:"),
    ]
    for short, long in pairs:
        a, b = only_step(short), only_step(long)
        assert (a.kind, a.value, dict(a.options), a.evse) == (
            b.kind,
            b.value,
            dict(b.options),
            b.evse,
        ), short


def test_step_arguments_are_read_as_documented() -> None:
    plug = only_step("plug: {soc_percent: 20, phases: 1, battery_wh: 500, evse: 2}")
    assert dict(plug.options) == {"soc_percent": 20.0, "phases": 1, "battery_wh": 500.0}
    assert plug.evse == 2
    tap = only_step("tap: {id_token: AB12, type: Local}")
    assert (tap.value, dict(tap.options)) == ("AB12", {"type": "Local"})
    assert only_step("pilot: none").value is None
    fault = only_step("fault: {code: rcd_trip, detail: 30 mA}")
    assert (fault.value, fault.options["detail"]) == ("rcd_trip", "30 mA")
    assert only_step("network: drop").value == "drop"
    offline = only_step("network: {offline_s: 5}")
    assert (offline.value, offline.options["seconds"]) == ("offline", 5.0)
    assert only_step("power: restore").value == "restore"
    wait = only_step("wait: {status: Charging, timeout_s: 10}")
    assert (wait.value, wait.timeout_s) == ("Charging", 10.0)
    assert only_step("wait: {seconds: 3}").value == 3.0
    assert only_step("wait: {online: false}").value is False
    expect = only_step(
        "expect: {message: StatusNotification, payload: {status: Faulted}, count: 2}"
    )
    assert expect.value == "StatusNotification"
    assert expect.options["payload"] == {"status": "Faulted"}
    assert (expect.options["direction"], expect.options["count"]) == ("out", 2)
    assert only_step("expect: {message: Reset, direction: in}").options["direction"] == "in"


def test_each_step_keeps_its_line_and_a_one_line_text() -> None:
    loaded = scenario(
        "  - plug: {soc_percent: 20}   # a comment\n"
        "  - expect:\n"
        "      message: StopTransaction\n"
        "      payload:\n"
        "        reason: EVDisconnected\n"
    )
    assert [step.line for step in loaded.steps] == [3, 4]
    assert loaded.steps[0].text == "plug: {soc_percent: 20}"
    assert loaded.steps[1].text == (
        "expect: {message: StopTransaction, payload: {reason: EVDisconnected}}"
    )


def test_an_unknown_step_kind_is_named_with_its_line_and_a_suggestion() -> None:
    assert problems("steps:\n  - plug: {}\n  - plg: {}\n") == [
        "t.yaml:3: steps[1].plg: unknown key 'plg'; did you mean 'plug'?"
    ]


def test_an_unknown_key_inside_a_step_is_named_with_its_path_and_line() -> None:
    assert problems("steps:\n  - wait:\n      status: Charging\n      timout_s: 3\n") == [
        "t.yaml:4: steps[0].wait.timout_s: unknown key 'timout_s'; did you mean 'timeout_s'?"
    ]


def test_two_kinds_in_one_list_item_are_refused() -> None:
    (line,) = problems("steps:\n  - plug: {}\n    tap: CARD\n")
    assert line.startswith("t.yaml:2: steps[0]: one step per list item, got 'plug', 'tap'")


def test_a_wait_needs_exactly_one_condition() -> None:
    assert problems("steps:\n  - wait: {}\n") == [
        "t.yaml:2: steps[0].wait: wait for exactly one of status, seconds or online (got none)"
    ]
    (line,) = problems("steps:\n  - wait: {status: Charging, seconds: 2}\n")
    assert "(got status, seconds)" in line


@pytest.mark.parametrize(
    ("step", "path", "words"),
    [
        ("wait: {status: Charing}", "steps[0].wait.status", "did you mean 'Charging'?"),
        ("fault: melted", "steps[0].fault.code", "got 'melted'"),
        ("pilot: A", "steps[0].pilot.state", "must be one of B, C, D, E, F, none"),
        ("network: sideways", "steps[0].network.action", "got 'sideways'"),
        ("network: {offline_s: 0}", "steps[0].network.offline_s", "greater than 0"),
        ("power:", "steps[0].power.action", "a value is required"),
        ("tap: {type: Local}", "steps[0].tap.id_token", "missing required key 'id_token'"),
        ("tap: {id_token: CARD, type: ISO}", "steps[0].tap.type", "got 'ISO'"),
        ("plug: {soc_percent: 120}", "steps[0].plug.soc_percent", "at most 100"),
        ("plug: {phases: 2}", "steps[0].plug.phases", "must be 1 or 3"),
        ("unplug: {evse: 0}", "steps[0].unplug.evse", "at least 1"),
        ("expect: {payload: {status: Faulted}}", "steps[0].expect.message", "missing required"),
        ("expect: {message: X, payload: 3}", "steps[0].expect.payload", "expected a mapping"),
        ("expect: {message: X, direction: up}", "steps[0].expect.direction", "got 'up'"),
        ("expect: StartTransaction", "steps[0].expect", "expected a mapping such as"),
        ("wait: 3", "steps[0].wait", "expected {status: ...}"),
    ],
)
def test_a_bad_value_names_the_step_key_and_line(step: str, path: str, words: str) -> None:
    (line,) = problems(f"name: T\nsteps:\n  - {step}\n")
    assert line.startswith(f"t.yaml:3: {path}: "), line
    assert words in line


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    lines = problems(
        "name: T\nevse: 0\ncolour: red\nsteps:\n  - plg: {}\n  - wait: {status: Charing}\n  - 7\n"
    )
    assert [line.split(":")[1] for line in lines] == ["2", "3", "5", "6", "7"]
    assert lines[-1] == "t.yaml:7: steps[2]: expected a step such as 'plug: {}', got 7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "t.yaml:1: the file is empty (expected a mapping with 'steps')"),
        ("name: T\n", "t.yaml:1: steps: missing required key 'steps'"),
        ("steps: []\n", "t.yaml:1: steps: the scenario has no steps"),
        ("steps: {plug: {}}\n", "t.yaml:1: steps: expected a list of steps, got a mapping"),
        ("steps:\n  - plug: {\n", "t.yaml:3: invalid YAML:"),
    ],
)
def test_file_level_problems(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected)


def test_an_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")


# -- what `expect` payloads match (the format's subset rule) ----------------------------------


def test_payload_matches_a_recursive_subset() -> None:
    actual = {
        "connectorId": 1,
        "status": "Faulted",
        "errorCode": "GroundFailure",
        "meterValue": [{"sampledValue": [{"value": "10", "measurand": "SoC"}]}],
    }
    assert payload_difference({"status": "Faulted"}, actual) is None
    assert (
        payload_difference({"meterValue": [{"sampledValue": [{"measurand": "SoC"}]}]}, actual)
        is None
    )


def test_payload_difference_says_where_it_differs() -> None:
    actual = {"connectorId": 1, "status": "Charging", "list": [1, 2]}
    assert payload_difference({"status": "Faulted"}, actual) == (
        'payload.status: expected "Faulted", got "Charging"'
    )
    assert payload_difference({"errorCode": "X"}, actual) == "payload.errorCode: missing"
    assert payload_difference({"list": [3]}, actual) == "payload.list: no item matches 3"
    assert payload_difference({"connectorId": True}, actual) is not None  # a bool is no number
