"""Tests for agent/config.py: example configs load, every problem names its key and line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agent.config import (
    ApiConfig,
    BasicAuthConfig,
    Config,
    ConfigError,
    ConnectorConfig,
    CsmsConfig,
    DriverConfig,
    EvDefaults,
    LoggingConfig,
    Problem,
    ReconnectConfig,
    Secret,
    SimulatorConfig,
    StationConfig,
    StoreConfig,
    TlsConfig,
    check_config,
    load_config,
    parse_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
PASSWORD = "s3cr3t-Passw0rd-value"

MINIMAL = """\
station: {id: CP-1, vendor: ACME, model: M1}
csms: {url: "ws://127.0.0.1:9000/ocpp"}
evses: [{}]
"""


def problems_of(text: str, **kwargs: object) -> list[Problem]:
    """Parse `text`, expecting a ConfigError, and return its problems."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def with_password_file(text: str, tmp_path: Path) -> str:
    """Point every absolute password_file in `text` at a file in tmp_path holding PASSWORD."""
    secret_file = tmp_path / "csms-password"
    secret_file.write_text(f"  {PASSWORD}\n", encoding="utf-8")
    return re.sub(r"password_file: /\S+", f"password_file: {secret_file}", text)


# --- the shipped example configs ----------------------------------------------------------


@pytest.mark.parametrize("example", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_loads(example: Path, tmp_path: Path) -> None:
    text = with_password_file(example.read_text(encoding="utf-8"), tmp_path)
    config = parse_config(text, source=str(example), base_dir=CONFIG_DIR, environ={})
    assert config.evses, "an example without EVSEs"


def test_example_configs_exist() -> None:
    names = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert {"sim-two-evse.yaml", "board-example.yaml"} <= names


def test_sim_example_is_a_two_evse_simulated_station() -> None:
    config = load_config(CONFIG_DIR / "sim-two-evse.yaml")
    assert config.station.id == "SIM-CP-001"
    assert config.csms.url == "ws://127.0.0.1:9000/ocpp"
    assert config.csms.basic_auth is None
    assert [evse.id for evse in config.evses] == [1, 2]
    for evse in config.evses:
        assert evse.connectors == (ConnectorConfig(1, "cType2", 32.0, 3),)
        drivers = [evse.board, evse.meter, evse.lock, evse.reader]
        assert all(d is not None and d.driver == "sim" for d in drivers)
    assert config.store.path == CONFIG_DIR / "cpagent-sim.db"
    assert config.source == CONFIG_DIR / "sim-two-evse.yaml"
    assert config.settings == {
        "HeartbeatInterval": "300",
        "MeterValueSampleInterval": "10",
        "MeterValuesSampledData": (
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
        ),
        "AllowOfflineTxForUnknownId": "true",
        "LocalAuthorizeOffline": "true",
    }


def test_board_example_names_real_drivers_and_reads_the_password_file(tmp_path: Path) -> None:
    shipped = (CONFIG_DIR / "board-example.yaml").read_text(encoding="utf-8")
    assert "password_file: /etc/cpagent/csms-password" in shipped
    config = parse_config(with_password_file(shipped, tmp_path), base_dir=CONFIG_DIR)
    assert config.csms.url.startswith("wss://")
    assert config.csms.basic_auth is not None
    assert config.csms.basic_auth.username == config.station.id
    assert config.csms.basic_auth.password.reveal() == PASSWORD  # stripped
    assert config.csms.tls == TlsConfig(Path("/etc/cpagent/csms-ca.pem"))
    (evse,) = config.evses
    assert evse.board == DriverConfig("serial_mcu", {"port": "/dev/ttyAMA0", "baudrate": 115200})
    assert evse.meter == DriverConfig(
        "modbus_meter", {"port": "/dev/ttyUSB0", "unit": 1, "map": "sdm630"}
    )
    assert evse.lock == DriverConfig("serial_mcu")
    assert evse.reader == DriverConfig("nfc", {"path": "usb"})


def test_board_example_without_its_password_file_names_key_and_line(tmp_path: Path) -> None:
    shipped = (CONFIG_DIR / "board-example.yaml").read_text(encoding="utf-8")
    missing = tmp_path / "absent"
    text = shipped.replace("/etc/cpagent/csms-password", str(missing))
    line = text.splitlines().index(f"    password_file: {missing}") + 1
    assert problems_of(text) == [
        Problem(
            "csms.basic_auth.password_file",
            line,
            f"cannot read '{missing}': No such file or directory",
        )
    ]


# --- defaults and conversions ----------------------------------------------------------


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, base_dir=tmp_path)
    assert config == Config(
        station=StationConfig("CP-1", "ACME", "M1"),
        csms=CsmsConfig("ws://127.0.0.1:9000/ocpp"),
        evses=config.evses,
        store=StoreConfig(tmp_path / "cpagent.db"),
        settings={},
    )
    assert config.csms.reconnect == ReconnectConfig(1.0, 60.0, 0.5)
    assert config.simulator == SimulatorConfig(1.0, EvDefaults(40000.0, 20.0, 32.0, 3, 100.0))
    assert config.logging == LoggingConfig("INFO", mask_id_tokens=True, message_log=True)
    (evse,) = config.evses
    assert (evse.id, evse.lock, evse.reader) == (1, None, None)
    assert evse.connectors == (ConnectorConfig(id=1, type="cType2", max_current_a=32.0, phases=3),)
    assert evse.board == evse.meter == DriverConfig("sim")


def test_empty_sections_mean_defaults() -> None:
    config = parse_config(MINIMAL + "simulator:\nlogging:\nsettings:\nstore:\n")
    assert config.simulator == SimulatorConfig()
    assert config.logging == LoggingConfig()
    assert config.settings == {}


@pytest.mark.parametrize(
    ("key", "yaml_value", "expected"),
    [
        ("HeartbeatInterval", "60", "60"),
        ("LocalPreAuthorize", "true", "true"),
        ("LocalPreAuthorize", "false", "false"),
        ("LocalPreAuthorize", "yes", "true"),
        ("ConnectorPhaseRotation", "1.5", "1.5"),
        ("HeartbeatInterval", '"0010"', "0010"),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register",
            "Energy.Active.Import.Register",
        ),
        ("HeartbeatInterval", "0x10", "16"),
        ("StopTxnSampledData", "''", ""),
    ],
)
def test_settings_values_become_ocpp_strings(key: str, yaml_value: str, expected: str) -> None:
    config = parse_config(MINIMAL + f"settings:\n  {key}: {yaml_value}\n")
    assert config.settings == {key: expected}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("NoSuchKey: 1", "not an OCPP 1.6 configuration key"),
        ("NumberOfConnectors: 4", "read-only"),
        ("HeartbeatInterval: soon", "invalid value 'soon'"),
        ("MeterValuesSampledData: Bogus.Measurand", "invalid value"),
    ],
)
def test_settings_are_checked_against_the_ocpp_keys(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(MINIMAL + f"settings:\n  {line}\n")
    (problem,) = error.value.problems
    assert problem.path == f"settings.{line.split(':')[0]}"
    assert message in problem.message


def test_numbers_accept_ints_and_strings_accept_numbers_as_written() -> None:
    text = MINIMAL.replace("model: M1", "model: 2000, serial_number: 000123") + (
        "simulator: {time_scale: 60, ev: {battery_wh: 75000}}\n"
    )
    config = parse_config(text)
    assert config.station.model == "2000"
    assert config.station.serial_number == "000123"
    assert config.simulator.time_scale == 60.0
    assert isinstance(config.simulator.ev.battery_wh, float)


def test_ocpp_version_written_as_a_number_is_accepted() -> None:
    config = parse_config(MINIMAL.replace('ocpp"}', 'ocpp", ocpp_version: 1.6}'))
    assert config.csms.ocpp_version == "1.6"


def test_merge_keys_share_driver_settings_between_evses() -> None:
    text = MINIMAL.replace(
        "evses: [{}]\n",
        """\
evses:
  - board: &board {driver: serial_mcu, port: /dev/ttyAMA0}
  - board: {<<: *board, port: /dev/ttyAMA1}
""",
    )
    config = parse_config(text)
    assert [e.board for e in config.evses] == [
        DriverConfig("serial_mcu", {"port": "/dev/ttyAMA0"}),
        DriverConfig("serial_mcu", {"port": "/dev/ttyAMA1"}),
    ]


def test_config_and_driver_options_are_read_only() -> None:
    text = MINIMAL.replace("evses: [{}]", "evses: [{board: {driver: x, pins: [1, 2]}}]")
    config = parse_config(text)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.station.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.evses[0].board.options["pins"] = ()  # type: ignore[index]
    assert config.evses[0].board.options["pins"] == (1, 2)


def test_relative_paths_resolve_against_the_config_file_directory(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text(PASSWORD, encoding="utf-8")
    config_file = tmp_path / "station.yaml"
    text = MINIMAL.replace("ws://", "wss://").replace(
        'ocpp"}', 'ocpp", basic_auth: {password_file: secrets/pw}, tls: {ca_file: ca.pem}}'
    )
    config_file.write_text(text + "store: {path: data/agent.db}\n", encoding="utf-8")
    config = load_config(config_file)
    assert config.store.path == tmp_path / "data" / "agent.db"
    assert config.csms.tls == TlsConfig(tmp_path / "ca.pem")
    assert config.csms.basic_auth == BasicAuthConfig("CP-1", Secret(PASSWORD))
    assert check_config(config_file) == []


def test_password_from_environment_variable_with_explicit_username() -> None:
    text = MINIMAL.replace(
        'ocpp"}', 'ocpp", basic_auth: {username: user-7, password_env: CSMS_PW}}'
    )
    config = parse_config(text, environ={"CSMS_PW": PASSWORD + "\n"})
    assert config.csms.basic_auth == BasicAuthConfig("user-7", Secret(PASSWORD))


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
        "ocpp 2.0.1 not yet",
        MINIMAL.replace('ocpp"}', 'ocpp", ocpp_version: 2.0.1}'),
        "csms.ocpp_version",
        2,
        "OCPP '2.0.1' is not supported yet (it comes in a later release)",
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


# --- secrets never leak --------------------------------------------------------------------


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in f"{secret!r} {secret} {[secret]}"
    assert secret.reveal() == PASSWORD


def test_password_never_appears_in_config_repr(tmp_path: Path) -> None:
    text = MINIMAL.replace('ocpp"}', 'ocpp", basic_auth: {password_env: PW}}')
    config = parse_config(text, environ={"PW": PASSWORD}, base_dir=tmp_path)
    assert config.csms.basic_auth is not None
    assert config.csms.basic_auth.password.reveal() == PASSWORD
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL.replace('ocpp"}', f'ocpp", basic_auth: {{password: {PASSWORD}}}}}'),
        MINIMAL.replace('ocpp"}', f'ocpp", basic_auth: {{password: "{PASSWORD}}}'),  # bad YAML
        MINIMAL.replace("ws://", f"ws://user:{PASSWORD}@"),
        MINIMAL.replace("ws://", f"http://user:{PASSWORD}@"),
    ],
    ids=[
        "inline password",
        "yaml error on the password line",
        "url credentials",
        "url credentials with wrong scheme",
    ],
)
def test_secret_is_never_in_the_error_message(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.problems)


# --- the local API section ------------------------------------------------------------------


def test_api_is_off_and_bound_to_loopback_by_default() -> None:
    config = parse_config(MINIMAL)
    assert config.api == ApiConfig(enabled=False, host="127.0.0.1", port=8080, token=None)
    assert parse_config(MINIMAL + "api:\n").api == ApiConfig()


def test_example_configs_enable_the_api_on_loopback_without_a_token(tmp_path: Path) -> None:
    for name in ("sim-two-evse.yaml", "board-example.yaml"):
        text = with_password_file((CONFIG_DIR / name).read_text(encoding="utf-8"), tmp_path)
        config = parse_config(text, base_dir=CONFIG_DIR, environ={})
        assert config.api == ApiConfig(enabled=True, host="127.0.0.1", port=8080), name


def test_api_token_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text(f"  {PASSWORD}\n", encoding="utf-8")
    text = MINIMAL + "api: {enabled: true, host: 0.0.0.0, port: 0, token_file: api-token}\n"
    config = parse_config(text, base_dir=tmp_path)
    assert config.api.enabled and (config.api.host, config.api.port) == ("0.0.0.0", 0)
    assert config.api.token == Secret(PASSWORD)
    assert PASSWORD not in repr(config)


def test_api_token_from_an_environment_variable() -> None:
    text = MINIMAL + "api: {host: '::', token_env: API_TOKEN}\n"
    config = parse_config(text, environ={"API_TOKEN": PASSWORD})
    assert config.api.token is not None and config.api.token.reveal() == PASSWORD


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_api_on_loopback_needs_no_token(host: str) -> None:
    assert parse_config(MINIMAL + f"api: {{host: '{host}'}}\n").api.host == host


API_BAD = [
    (
        "reachable from the network without a token",
        "api: {enabled: true, host: 0.0.0.0}",
        "api.host",
        "an API reachable from the network needs a token",
    ),
    ("port too big", "api: {port: 65536}", "api.port", "must be within 0..65535"),
    ("port negative", "api: {port: -1}", "api.port", "must be within 0..65535"),
    ("port not a number", "api: {port: http}", "api.port", "expected an integer, got 'http'"),
    ("enabled not a boolean", "api: {enabled: 1}", "api.enabled", "expected true or false"),
    ("empty host", "api: {host: ''}", "api.host", "must not be empty"),
    ("inline token", "api: {token: abc}", "api.token", "an inline token is not allowed"),
    (
        "two token sources",
        "api: {token_env: A, token_file: /x}",
        "api",
        "give at most one of token_file and token_env",
    ),
    ("token env not set", "api: {token_env: NOPE}", "api.token_env", "'NOPE' is not set"),
    ("token file missing", "api: {token_file: /nonexistent/t}", "api.token_file", "cannot read"),
    ("unknown key", "api: {bind: x}", "api.bind", "unknown key 'bind'"),
]


@pytest.mark.parametrize(
    ("line", "path", "message"), [case[1:] for case in API_BAD], ids=[case[0] for case in API_BAD]
)
def test_api_problems_name_key_path_and_line(line: str, path: str, message: str) -> None:
    problems = problems_of(MINIMAL + line + "\n")
    assert [(p.path, p.line) for p in problems] == [(path, 4)]
    assert message in problems[0].message


def test_api_inline_token_never_appears_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + f"api: {{token: {PASSWORD}}}\n")
    assert PASSWORD not in str(caught.value)
