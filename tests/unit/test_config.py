"""Tests for agent/config.py: example configs load, defaults, secrets and the API section.

Problems naming their key path and line are in test_config_errors.py.
"""

from __future__ import annotations

import dataclasses
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
from agent.store import MemoryStore, Store, open_store
from tests.unit.config_samples import CONFIG_DIR, MINIMAL, PASSWORD, problems_of, with_password_file

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
        "modbus", {"port": "/dev/ttyUSB0", "unit": 1, "map": "sdm630"}
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


@pytest.mark.parametrize("path", [":memory:", "memory:"])
def test_an_in_memory_store_path_is_kept_as_written_and_opens_that_store(
    tmp_path: Path, path: str
) -> None:
    """`:memory:` and `memory:` name no file: they are not resolved against the config's
    directory, and the agent opens SQLite in memory or the plain-Python store."""
    config_file = tmp_path / "station.yaml"
    config_file.write_text(MINIMAL + f'store: {{path: "{path}"}}\n', encoding="utf-8")
    config = load_config(config_file)
    assert str(config.store.path) == path
    store = open_store(config.store.path)
    try:
        assert isinstance(store, MemoryStore if path == "memory:" else Store)
        assert not list(tmp_path.glob("*memory*"))  # no file was created
    finally:
        store.close()


def test_password_from_environment_variable_with_explicit_username() -> None:
    text = MINIMAL.replace(
        'ocpp"}', 'ocpp", basic_auth: {username: user-7, password_env: CSMS_PW}}'
    )
    config = parse_config(text, environ={"CSMS_PW": PASSWORD + "\n"})
    assert config.csms.basic_auth == BasicAuthConfig("user-7", Secret(PASSWORD))


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
