"""Install configuration: one explicit YAML file turned into frozen dataclasses.

Responsible for: reading the YAML file the installer names (and nothing else: no dotfiles,
no implicit environment), checking every value, and reporting *all* problems at once, each
with its dotted key path (`evses[1].connectors[0].max_current_a`) and 1-based line. The file
is parsed with PyYAML's composer so every value keeps its position; scalars are then
converted one by one, never with a whole-document `yaml.safe_load`. This module holds the
schema (which keys, which bounds); agent/config_yaml.py holds the generic node reader,
agent/config_model.py the dataclasses it fills (re-exported here),
agent/config_secrets.py the reading of secrets from files and the environment, and
agent/config_energy.py the `energy:` section (local energy management).

Secrets (the CSMS basic-auth password, the local API token) come only from a file or an
environment variable that the YAML names; they are wrapped in `Secret` and never appear
in a message or repr.
Relative paths resolve against the config file's directory.

Must not: import anything from agent/core, agent/ocpp or drivers; validate driver options
(the chosen driver does that); hold runtime settings the CSMS may change (the store does).
An empty section (`reconnect:` with nothing under it) means "all defaults".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import yaml
from yaml.nodes import Node, ScalarNode, SequenceNode

from agent.config_energy import read_energy
from agent.config_model import (
    ApiConfig,
    BasicAuthConfig,
    Config,
    ConfigError,
    ConnectorConfig,
    CsmsConfig,
    DriverConfig,
    EnergyConfig,
    EvDefaults,
    EvseConfig,
    LoggingConfig,
    OffPeakConfig,
    OffPeakWindowConfig,
    PhaseSwitchingConfig,
    Problem,
    PvConfig,
    ReconnectConfig,
    Secret,
    SimulatorConfig,
    StationConfig,
    StoreConfig,
    TlsConfig,
    format_problem,
    setting_version,
)
from agent.config_secrets import read_secret
from agent.config_yaml import TAG, NodeMap, NodeReader, describe, is_null
from agent.ocpp.settings import setting_problem
from agent.store import is_in_memory

CONNECTOR_TYPES: tuple[str, ...] = (
    "cCCS1",
    "cCCS2",
    "cG105",
    "cTesla",
    "cType1",
    "cType2",
    "s309-1P-16A",
    "s309-1P-32A",
    "s309-3P-16A",
    "s309-3P-32A",
    "sBS1361",
    "sCEE-7-7",
    "sType2",
    "sType3",
    "Other1PhMax16A",
    "Other1PhOver16A",
    "Other3Ph",
    "Pan",
    "Undetermined",
    "Unknown",
)  # OCPP 2.0.1 ConnectorEnumType
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
SUPPORTED_OCPP_VERSIONS: tuple[str, ...] = ("1.6", "2.0.1")
#: Hosts that only this machine can reach; binding the API anywhere else needs a token.
LOCAL_API_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")

__all__ = [
    "CONNECTOR_TYPES",
    "LOCAL_API_HOSTS",
    "LOG_LEVELS",
    "SUPPORTED_OCPP_VERSIONS",
    "ApiConfig",
    "BasicAuthConfig",
    "Config",
    "ConfigError",
    "ConnectorConfig",
    "CsmsConfig",
    "DriverConfig",
    "EnergyConfig",
    "EvDefaults",
    "EvseConfig",
    "LoggingConfig",
    "OffPeakConfig",
    "OffPeakWindowConfig",
    "PhaseSwitchingConfig",
    "Problem",
    "PvConfig",
    "ReconnectConfig",
    "Secret",
    "SimulatorConfig",
    "StationConfig",
    "StoreConfig",
    "TlsConfig",
    "check_config",
    "format_problem",
    "load_config",
    "parse_config",
    "setting_version",
]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the config file at `path`; raises ConfigError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8 text"
        raise ConfigError(
            [Problem("", None, f"cannot read the file: {reason}")], str(file)
        ) from None
    config = parse_config(text, source=str(file), base_dir=file.resolve().parent)
    return replace(config, source=file.resolve())


def check_config(path: str | os.PathLike[str]) -> list[Problem]:
    """Return every problem in the config file at `path`; [] when it is valid."""
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Check config YAML `text` (paths relative to `base_dir`, default cwd); raises ConfigError."""
    problems: list[Problem] = []
    config = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            reader = NodeReader(
                loader,
                lambda path, line, message: problems.append(Problem(path, line, message)),
                base_dir or Path.cwd(),
                os.environ if environ is None else environ,
            )
            if root is None:
                reader.problem(
                    "",
                    1,
                    "the file is empty (expected a mapping with 'station', 'csms' and 'evses')",
                )
            else:
                config = _read_config(reader, root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc, text))
    except RecursionError:  # e.g. a mapping that merges itself through an alias
        problems.append(Problem("", None, "the YAML is nested too deeply (a recursive alias?)"))
    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: p.line or 0), source)
    return config


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    # Built from the parts, not str(exc): that quotes the source line, which may hold a secret.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        return Problem("", None if mark is None else mark.line + 1, f"invalid YAML: {reason}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return Problem("", line, f"invalid YAML: {exc.reason} (character {exc.position})")
    return Problem("", None, f"invalid YAML: {type(exc).__name__}")


def _read_config(r: NodeReader, root: Node) -> Config | None:
    top = r.mapping(
        root,
        "",
        ("station", "csms", "evses", "store", "simulator", "logging", "settings", "api", "energy"),
    )
    if not top.line:
        return None
    station = _read_station(r, top)
    store = _read_store(r, top)
    csms = _read_csms(r, top, station.id)
    evses = _read_evses(r, top)
    return Config(
        station=station,
        csms=csms,
        evses=evses,
        store=store,
        simulator=_read_simulator(r, top),
        logging=_read_logging(r, top),
        settings=_read_settings(r, top, csms.ocpp_versions, evses),
        api=_read_api(r, top),
        energy=read_energy(r, top, evses),
    )


def _read_store(r: NodeReader, top: NodeMap) -> StoreConfig:
    """The store's path; a relative file name resolves against the config's directory,
    while `:memory:` (SQLite in memory) and `memory:` (the plain-Python store of fleet
    mode) name no file and are kept as written: nothing survives a restart with them."""
    store = r.section(top, "store", ("path",))
    text = r.text(store, "path", None, min_len=1)
    if text is not None and is_in_memory(text):
        return StoreConfig(Path(text))
    return StoreConfig(r.path(store, "path") or r.base_dir / StoreConfig().path)


def _read_station(r: NodeReader, top: NodeMap) -> StationConfig:
    # Lengths: OCPP 1.6 BootNotification.req (CiString20/25/50) and the OCPP 1.6 security
    # whitepaper's 48-character limit on the charge point identity.
    m = r.section(
        top,
        "station",
        ("id", "vendor", "model", "serial_number", "firmware_version"),
        required=True,
    )
    station_id = r.text(m, "id", "", required=True, min_len=1, max_len=48) or ""
    if any(c == "/" or c.isspace() for c in station_id):
        r.problem(
            "station.id",
            m.node("id"),
            "must not contain '/' or whitespace (it is the last segment of the CSMS URL)",
        )
    return StationConfig(
        id=station_id,
        vendor=r.text(m, "vendor", "", required=True, min_len=1, max_len=20) or "",
        model=r.text(m, "model", "", required=True, min_len=1, max_len=20) or "",
        serial_number=r.text(m, "serial_number", None, min_len=1, max_len=25),
        firmware_version=r.text(m, "firmware_version", None, min_len=1, max_len=50),
    )


def _read_csms(r: NodeReader, top: NodeMap, station_id: str) -> CsmsConfig:
    m = r.section(
        top,
        "csms",
        ("url", "ocpp_version", "response_timeout_s", "reconnect", "basic_auth", "tls"),
        required=True,
    )
    url = r.text(m, "url", "", required=True) or ""
    url_node = m.node("url")
    if url_node is not None:
        _check_url(r, url, url_node)
    versions = _read_ocpp_versions(r, m)
    rc = r.section(m, "reconnect", ("initial_backoff_s", "max_backoff_s", "jitter"))
    reconnect = ReconnectConfig(
        initial_backoff_s=r.number(rc, "initial_backoff_s", 1.0, gt=0),
        max_backoff_s=r.number(rc, "max_backoff_s", 60.0, gt=0),
        jitter=r.number(rc, "jitter", 0.5, ge=0, le=1),
    )
    if reconnect.max_backoff_s < reconnect.initial_backoff_s:
        r.problem(
            "csms.reconnect.max_backoff_s",
            rc.node("max_backoff_s") or rc.line,
            f"must be at least initial_backoff_s ({reconnect.initial_backoff_s:g})",
        )
    tls = None
    if "tls" in m.entries:
        tls = TlsConfig(r.path(r.section(m, "tls", ("ca_file",)), "ca_file"))
        if url.startswith("ws://"):
            r.problem("csms.tls", m.entries["tls"][0], "tls is only used with wss:// URLs")
    return CsmsConfig(
        url=url,
        ocpp_versions=versions,
        response_timeout_s=r.number(m, "response_timeout_s", 30.0, gt=0),
        reconnect=reconnect,
        basic_auth=_read_basic_auth(r, m, station_id),
        tls=tls,
    )


def _read_ocpp_versions(r: NodeReader, csms: NodeMap) -> tuple[str, ...]:
    """Read `ocpp_version`: one version, or a preference list (most preferred first)."""
    path = csms.at("ocpp_version")
    node = csms.node("ocpp_version")
    supported = ", ".join(SUPPORTED_OCPP_VERSIONS)
    if node is None:
        return ("1.6",)
    items: list[tuple[str, Node]] = []
    if isinstance(node, SequenceNode):
        if not node.value:
            r.problem(path, node, f"expected a version or a list of versions ({supported})")
            return ("1.6",)
        for i, item in enumerate(node.value):
            items.append((f"{path}[{i}]", item))
    else:
        items.append((path, node))
    versions: list[str] = []
    for where, item in items:
        if not isinstance(item, ScalarNode) or item.tag in (TAG + "bool", TAG + "null"):
            r.problem(where, item, f"expected an OCPP version ({supported}), got {describe(item)}")
            continue
        version = str(item.value)  # 1.6 written as a number is taken as written
        if version not in SUPPORTED_OCPP_VERSIONS:
            r.problem(where, item, f"OCPP '{version}' is not supported; supported: {supported}")
        elif version in versions:
            r.problem(where, item, f"OCPP '{version}' is listed twice")
        else:
            versions.append(version)
    return tuple(versions) or ("1.6",)


def _check_url(r: NodeReader, url: str, node: Node) -> None:
    if not url.startswith(("ws://", "wss://")):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else url[:8] + "..."
        r.problem("csms.url", node, f"must start with ws:// or wss://, got '{scheme}'")
        return
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        r.problem("csms.url", node, "is not a valid URL (check the host and port)")
        return
    if "@" in parts.netloc:  # never echo it: the part before '@' may be a password
        r.problem("csms.url", node, "must not contain credentials; use csms.basic_auth")
    elif not parts.hostname:
        r.problem("csms.url", node, "has no host")
    elif parts.query or parts.fragment:
        r.problem(
            "csms.url",
            node,
            "must not have a query or fragment (the agent appends the charge point id to the path)",
        )


def _read_basic_auth(r: NodeReader, csms: NodeMap, station_id: str) -> BasicAuthConfig | None:
    m = r.section(csms, "basic_auth", ("username", "password_file", "password_env", "password"))
    if not m.line:
        return None
    username = r.text(m, "username", station_id, min_len=1) or station_id
    if ":" in username:  # RFC 7617 section 2: the user-id cannot contain a colon
        r.problem(
            m.at("username"),
            m.node("username") or m.line,
            "must not contain ':' (set basic_auth.username if the station id has one)",
        )
    if "password" in m.entries:  # reported without ever reading the value
        r.problem(
            m.at("password"),
            m.entries["password"][0],
            "an inline password is not allowed: put the password in a file or an "
            "environment variable (password_file or password_env)",
        )
    given = [k for k in ("password_file", "password_env") if k in m.entries]
    if len(given) != 1:
        if "password" not in m.entries or given:
            r.problem(m.path, m.line, "give exactly one of password_file and password_env")
        return None
    password = read_secret(r, m, given[0])
    return None if password is None else BasicAuthConfig(username, Secret(password))


def _read_evses(r: NodeReader, top: NodeMap) -> tuple[EvseConfig, ...]:
    node = r.required(top, "evses")
    if node is None:
        return ()
    if not isinstance(node, SequenceNode) or not node.value:
        got = "an empty list" if isinstance(node, SequenceNode) else describe(node)
        r.problem("evses", node, f"expected a list of at least one EVSE, got {got}")
        return ()
    return tuple(_read_evse(r, item, f"evses[{i}]", i + 1) for i, item in enumerate(node.value))


def _check_position_id(r: NodeReader, m: NodeMap, expected: int, what: str) -> None:
    # OCPP numbers EVSEs 1..N and connectors 1..M within an EVSE, with no gaps.
    node = m.node("id")
    if node is not None and not (
        isinstance(node, ScalarNode)
        and node.tag == TAG + "int"
        and r.scalar(node, m.at("id")) == expected
    ):
        r.problem(
            m.at("id"),
            node,
            f"{what} ids must be 1, 2, ... in list order: expected "
            f"{expected}, got {describe(node)}",
        )


def _read_evse(r: NodeReader, node: Node, path: str, evse_id: int) -> EvseConfig:
    m = r.mapping(
        node,
        path,
        (
            "id",
            "connectors",
            "board",
            "meter",
            "lock",
            "reader",
            "power_module",
            "isolation_monitor",
            "indicator",
        ),
    )
    _check_position_id(r, m, evse_id, "EVSE")
    connectors: tuple[ConnectorConfig, ...] = (ConnectorConfig(1),)
    items = m.node("connectors")
    if isinstance(items, SequenceNode) and items.value:
        connectors = tuple(
            _read_connector(r, item, f"{m.at('connectors')}[{i}]", i + 1)
            for i, item in enumerate(items.value)
        )
    elif items is not None:
        got = "an empty list" if isinstance(items, SequenceNode) else describe(items)
        r.problem(
            m.at("connectors"), items, f"expected a list of at least one connector, got {got}"
        )
    return EvseConfig(
        id=evse_id,
        connectors=connectors,
        board=_read_driver(r, m, "board") or DriverConfig("sim"),
        meter=_read_driver(r, m, "meter") or DriverConfig("sim"),
        lock=_read_driver(r, m, "lock"),
        reader=_read_driver(r, m, "reader"),
        power_module=_read_driver(r, m, "power_module"),
        isolation_monitor=_read_driver(r, m, "isolation_monitor"),
        indicator=_read_driver(r, m, "indicator"),
    )


def _read_connector(r: NodeReader, node: Node, path: str, connector_id: int) -> ConnectorConfig:
    m = r.mapping(node, path, ("id", "type", "max_current_a", "phases"))
    _check_position_id(r, m, connector_id, "connector")
    return ConnectorConfig(
        id=connector_id,
        type=r.choice(m, "type", "cType2", CONNECTOR_TYPES),
        max_current_a=r.number(m, "max_current_a", 32.0, gt=0, le=80),
        phases=r.integer(m, "phases", 3, choices=(1, 3)),
    )


def _read_driver(r: NodeReader, evse: NodeMap, key: str) -> DriverConfig | None:
    """Read `{driver: name, ...options}`; None when the key is absent or empty."""
    m = r.section(evse, key, None)
    if not m.line:
        return None
    name = r.text(m, "driver", "", required=True, min_len=1) or ""
    options = {k: r.plain(v, m.at(k)) for k, (_, v) in m.entries.items() if k != "driver"}
    return DriverConfig(name, MappingProxyType(options))


def _read_simulator(r: NodeReader, top: NodeMap) -> SimulatorConfig:
    m = r.section(top, "simulator", ("time_scale", "ev", "auto_plug"))
    ev = r.section(
        m, "ev", ("battery_wh", "soc_percent", "max_current_a", "phases", "target_soc_percent")
    )
    return SimulatorConfig(
        time_scale=r.number(m, "time_scale", 1.0, gt=0),
        ev=EvDefaults(
            battery_wh=r.number(ev, "battery_wh", 40000.0, gt=0),
            soc_percent=r.number(ev, "soc_percent", 20.0, ge=0, le=100),
            max_current_a=r.number(ev, "max_current_a", 32.0, gt=0, le=80),
            phases=r.integer(ev, "phases", 3, choices=(1, 3)),
            target_soc_percent=r.number(ev, "target_soc_percent", 100.0, ge=0, le=100),
        ),
        auto_plug=r.boolean(m, "auto_plug", False),
    )


def _read_logging(r: NodeReader, top: NodeMap) -> LoggingConfig:
    m = r.section(top, "logging", ("level", "mask_id_tokens", "message_log"))
    return LoggingConfig(
        level=r.choice(m, "level", "INFO", LOG_LEVELS),
        mask_id_tokens=r.boolean(m, "mask_id_tokens", True),
        message_log=r.boolean(m, "message_log", True),
    )


def _read_settings(
    r: NodeReader, top: NodeMap, versions: tuple[str, ...], evses: tuple[EvseConfig, ...]
) -> Mapping[str, str]:
    # 1.6 keys and values as ChangeConfiguration.req carries them (CiString50/500); 2.0.1
    # device model paths are bounded by the device model's own check.
    m = r.section(top, "settings", None)
    settings: dict[str, str] = {}
    for key, (key_node, node) in m.entries.items():
        path = m.at(key)
        version = setting_version(key)
        v16 = version == "1.6"
        if v16 and len(key) > 50:
            r.problem(path, key_node, f"setting names are at most 50 characters, got {len(key)}")
        if not isinstance(node, ScalarNode) or is_null(node):
            r.problem(path, node, f"expected a string, number or boolean, got {describe(node)}")
            continue
        value = r.scalar(node, path)
        if isinstance(value, bool):
            text = "true" if value else "false"  # OCPP writes booleans in lower case
        elif isinstance(value, int | float):
            text = str(value)
        else:
            text = str(node.value)
        if version not in versions:
            kind = "an OCPP 1.6 key" if v16 else "an OCPP 2.0.1 device model path"
            r.problem(
                path,
                key_node,
                f"{kind}, but csms.ocpp_version offers only {', '.join(versions)}",
            )
        elif v16 and len(text) > 500:
            r.problem(path, node, f"setting values are at most 500 characters, got {len(text)}")
        elif (problem := setting_problem(version, key, text, evses=evses)) is not None:
            r.problem(path, node, problem)
        settings[key] = text
    return MappingProxyType(settings)


def _read_api(r: NodeReader, top: NodeMap) -> ApiConfig:
    m = r.section(top, "api", ("enabled", "host", "port", "token_file", "token_env", "token"))
    host = r.text(m, "host", "127.0.0.1", min_len=1) or "127.0.0.1"
    port = 8080
    port_node = r.typed(m, "port", ("int",), "an integer")
    if port_node is not None:
        value = r.scalar(port_node, m.at("port"))
        if isinstance(value, int) and 0 <= value <= 65535:
            port = value
        elif value is not None:
            r.problem(
                m.at("port"), port_node, f"must be within 0..65535 (0: any free port), got {value}"
            )
    if "token" in m.entries:  # reported without ever reading the value
        r.problem(
            m.at("token"),
            m.entries["token"][0],
            "an inline token is not allowed: put the token in a file or an environment "
            "variable (token_file or token_env)",
        )
    given = [k for k in ("token_file", "token_env") if k in m.entries]
    token = None
    if len(given) > 1:
        r.problem(m.path, m.line, "give at most one of token_file and token_env")
    elif given:
        value = read_secret(r, m, given[0])
        token = None if value is None else Secret(value)
    elif host not in LOCAL_API_HOSTS and "token" not in m.entries:
        r.problem(
            m.at("host"),
            m.node("host") or m.line,
            f"an API reachable from the network needs a token (token_file or token_env); "
            f"without one bind it to {', '.join(LOCAL_API_HOSTS)}",
        )
    return ApiConfig(enabled=r.boolean(m, "enabled", False), host=host, port=port, token=token)
