"""Tests for agent/config.py: every problem names its key path, line and reason, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, Problem, check_config, load_config, parse_config
from tests.unit.config_samples import MINIMAL, problems_of

# --- problems: path, line and message -----------------------------------------------------

BAD = [
    # (id, yaml, path, line, message)
    ("empty file", "", "", 1, "the file is empty"),
    ("only comments", "# nothing\n", "", 1, "the file is empty"),
    ("top level is a list", "- a\n- b\n", "", 1, "expected a mapping, got a list"),
    ("invalid yaml", MINIMAL + "settings: [\n", "", 5, "invalid YAML: while parsing a flow"),
    ("two documents", MINIMAL + "---\na: 1\n", "", 4, "invalid YAML: expected a single doc"),
    ("missing station", MINIMAL.split("\n", 1)[1], "station", 1, "missing required key 'station'"),
    (
        "missing station id",
        MINIMAL.replace("id: CP-1, ", ""),
        "station.id",
        1,
        "missing required key 'id'",
    ),
    ("empty station id", MINIMAL.replace("CP-1", "''"), "station.id", 1, "must not be empty"),
    (
        "station id with slash",
        MINIMAL.replace("CP-1", "a/b"),
        "station.id",
        1,
        "must not contain '/' or whitespace",
    ),
    (
        "station id too long",
        MINIMAL.replace("CP-1", "x" * 49),
        "station.id",
        1,
        "must be at most 48 characters long, got 49",
    ),
    (
        "vendor too long",
        MINIMAL.replace("ACME", "V" * 21),
        "station.vendor",
        1,
        "must be at most 20 characters long, got 21",
    ),
    (
        "model is a boolean",
        MINIMAL.replace("M1", "yes"),
        "station.model",
        1,
        "expected a string, got a boolean (yes); put it in quotes",
    ),
    (
        "unknown top-level key",
        MINIMAL + "heartbeat: 5\n",
        "heartbeat",
        4,
        "unknown key 'heartbeat'",
    ),
    (
        "unknown key with suggestion",
        MINIMAL + "setings: {}\n",
        "setings",
        4,
        "unknown key 'setings'; did you mean 'settings'?",
    ),
    (
        "duplicate key",
        MINIMAL + "csms: {url: 'ws://x'}\n",
        "csms",
        4,
        "duplicate key 'csms' (first given on line 2)",
    ),
    (
        "url scheme",
        MINIMAL.replace("ws://", "http://"),
        "csms.url",
        2,
        "must start with ws:// or wss://, got 'http://'",
    ),
    ("url without host", MINIMAL.replace("127.0.0.1:9000", ""), "csms.url", 2, "has no host"),
    (
        "url with query",
        MINIMAL.replace('ocpp"', 'ocpp?a=1"'),
        "csms.url",
        2,
        "must not have a query or fragment",
    ),
    (
        "unknown ocpp version",
        MINIMAL.replace('ocpp"}', 'ocpp", ocpp_version: 2.0}'),
        "csms.ocpp_version",
        2,
        "OCPP '2.0' is not supported; supported: 1.6, 2.0.1",
    ),
    (
        "tls with ws://",
        MINIMAL.replace('ocpp"}', 'ocpp", tls: {}}'),
        "csms.tls",
        2,
        "tls is only used with wss:// URLs",
    ),
    (
        "timeout not a number",
        MINIMAL.replace('ocpp"}', 'ocpp", response_timeout_s: abc}'),
        "csms.response_timeout_s",
        2,
        "expected a number, got 'abc'",
    ),
    (
        "bool is not a number",
        MINIMAL.replace('ocpp"}', 'ocpp", response_timeout_s: true}'),
        "csms.response_timeout_s",
        2,
        "expected a number, got a boolean (true)",
    ),
    (
        "nan is not a number",
        MINIMAL + "simulator: {time_scale: .nan}\n",
        "simulator.time_scale",
        4,
        "expected a finite number, got .nan",
    ),
    (
        "time scale zero",
        MINIMAL + "simulator: {time_scale: 0}\n",
        "simulator.time_scale",
        4,
        "must be greater than 0, got 0",
    ),
    (
        "jitter above one",
        MINIMAL.replace('ocpp"}', 'ocpp", reconnect: {jitter: 1.5}}'),
        "csms.reconnect.jitter",
        2,
        "must be at least 0 and at most 1, got 1.5",
    ),
    (
        "backoff order",
        MINIMAL.replace('ocpp"}', 'ocpp", reconnect: {initial_backoff_s: 10, max_backoff_s: 5}}'),
        "csms.reconnect.max_backoff_s",
        2,
        "must be at least initial_backoff_s (10)",
    ),
    (
        "evses empty",
        MINIMAL.replace("[{}]", "[]"),
        "evses",
        3,
        "expected a list of at least one EVSE, got an empty list",
    ),
    (
        "evses missing",
        MINIMAL.replace("evses: [{}]\n", ""),
        "evses",
        1,
        "missing required key 'evses'",
    ),
    (
        "evse id out of order",
        MINIMAL.replace("[{}]", "[{id: 2}]"),
        "evses[0].id",
        3,
        "EVSE ids must be 1, 2, ... in list order: expected 1, got 2",
    ),
    (
        "connector current too high",
        MINIMAL.replace("[{}]", "\n  - connectors:\n    - {max_current_a: 81}"),
        "evses[0].connectors[0].max_current_a",
        5,
        "must be greater than 0 and at most 80, got 81",
    ),
    (
        "connector phases",
        MINIMAL.replace("[{}]", "[{connectors: [{phases: 2}]}]"),
        "evses[0].connectors[0].phases",
        3,
        "must be 1 or 3, got 2",
    ),
    (
        "connector phases float",
        MINIMAL.replace("[{}]", "[{connectors: [{phases: 3.0}]}]"),
        "evses[0].connectors[0].phases",
        3,
        "expected an integer, got 3.0",
    ),
    (
        "connector type",
        MINIMAL.replace("[{}]", "[{connectors: [{type: ctype2}]}]"),
        "evses[0].connectors[0].type",
        3,
        "got 'ctype2'; did you mean 'cType2'?",
    ),
    (
        "connector id gap",
        MINIMAL.replace("[{}]", "[{connectors: [{id: 1}, {id: 3}]}]"),
        "evses[0].connectors[1].id",
        3,
        "connector ids must be 1, 2, ... in list order",
    ),
    (
        "no connectors",
        MINIMAL.replace("[{}]", "[{connectors: []}]"),
        "evses[0].connectors",
        3,
        "expected a list of at least one connector, got an empty list",
    ),
    (
        "driver not a mapping",
        MINIMAL.replace("[{}]", "[{board: sim}]"),
        "evses[0].board",
        3,
        "expected a mapping, got 'sim'",
    ),
    (
        "driver name missing",
        MINIMAL.replace("[{}]", "[{meter: {port: 1}}]"),
        "evses[0].meter.driver",
        3,
        "missing required key 'driver'",
    ),
    (
        "driver option duplicate",
        MINIMAL.replace("[{}]", "[{meter: {driver: m, a: 1, a: 2}}]"),
        "evses[0].meter.a",
        3,
        "duplicate key 'a'",
    ),
    (
        "log level case",
        MINIMAL + "logging: {level: info}\n",
        "logging.level",
        4,
        "must be one of DEBUG, INFO, WARNING, ERROR, got 'info'; did you mean 'INFO'?",
    ),
    (
        "quoted boolean",
        MINIMAL + "logging: {message_log: 'false'}\n",
        "logging.message_log",
        4,
        "expected true or false, got 'false'",
    ),
    (
        "soc above 100",
        MINIMAL + "simulator:\n  ev:\n    soc_percent: 101\n",
        "simulator.ev.soc_percent",
        6,
        "must be at least 0 and at most 100, got 101",
    ),
    (
        "setting is a list",
        MINIMAL + "settings:\n  A: [1]\n",
        "settings.A",
        5,
        "expected a string, number or boolean, got a list",
    ),
    (
        "setting is null",
        MINIMAL + "settings:\n  A:\n",
        "settings.A",
        5,
        "expected a string, number or boolean, got nothing (null)",
    ),
    (
        "section is a string",
        MINIMAL + "store: here\n",
        "store",
        4,
        "expected a mapping, got 'here'",
    ),
    (
        "non-string key",
        MINIMAL + "settings: {1: a}\n",
        "settings",
        4,
        "keys must be non-empty strings, got 1",
    ),
    (
        "inline password",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password: x}}'),
        "csms.basic_auth.password",
        2,
        "put the password in a file or an environment variable",
    ),
    (
        "no password source",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {username: u}}'),
        "csms.basic_auth",
        2,
        "give exactly one of password_file and password_env",
    ),
    (
        "two password sources",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password_env: A, password_file: /x}}'),
        "csms.basic_auth",
        2,
        "give exactly one of password_file and password_env",
    ),
    (
        "env var not set",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password_env: NOPE}}'),
        "csms.basic_auth.password_env",
        2,
        "environment variable 'NOPE' is not set",
    ),
    (
        "bad env var name",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password_env: 1A}}'),
        "csms.basic_auth.password_env",
        2,
        "'1A' is not an environment variable name",
    ),
    (
        "username with colon",
        MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {username: "a:b", password_env: PW}}'),
        "csms.basic_auth.username",
        2,
        "must not contain ':'",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "line", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_problem_names_key_path_line_and_reason(
    text: str, path: str, line: int, message: str
) -> None:
    problems = problems_of(text, environ={"PW": "pw"})
    assert len(problems) == 1, problems
    assert (problems[0].path, problems[0].line) == (path, line)
    assert message in problems[0].message


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = """\
station: {id: CP-1, vendor: ACME}
csms:
  url: ws://127.0.0.1/ocpp
  heartbeat: 5
evses:
  - connectors:
      - {max_current_a: 0}
  - board: {}
logging: {level: LOUD}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="station.yaml")
    assert str(caught.value).splitlines() == [
        "station.yaml:1: station.model: missing required key 'model'",
        "station.yaml:4: csms.heartbeat: unknown key 'heartbeat'",
        "station.yaml:7: evses[0].connectors[0].max_current_a: "
        "must be greater than 0 and at most 80, got 0",
        "station.yaml:8: evses[1].board.driver: missing required key 'driver'",
        "station.yaml:9: logging.level: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'",
    ]


def test_problems_in_an_aliased_node_are_reported_for_each_use() -> None:
    text = MINIMAL.replace(
        "evses: [{}]\n",
        """\
evses:
  - connectors: &c [{phases: 2}]
  - connectors: *c
""",
    )
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("evses[0].connectors[0].phases", 4),
        ("evses[1].connectors[0].phases", 4),
    ]


def test_empty_password_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(" \n", encoding="utf-8")
    text = MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password_file: pw}}')
    problems = problems_of(text, base_dir=tmp_path)
    assert problems == [
        Problem("csms.basic_auth.password_file", 2, f"'{tmp_path / 'pw'}' is empty")
    ]


def test_load_config_of_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    problems = check_config(tmp_path / "absent.yaml")
    assert problems == [Problem("", None, "cannot read the file: No such file or directory")]
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read the file"):
        load_config(tmp_path / "absent.yaml")


def test_check_config_lists_problems_of_a_file(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(MINIMAL + "store: {path: 5, extra: 1}\n", encoding="utf-8")
    assert check_config(config_file) == [Problem("store.extra", 4, "unknown key 'extra'")]
