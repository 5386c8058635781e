"""The install configuration's data model: the frozen dataclasses a config file becomes.

Responsible for the values the rest of the agent reads (`Config` and its sections), the
`Secret` wrapper that keeps a password or token out of every message and repr, and the
error types that carry every problem found (`Problem`, `ConfigError`). agent/config.py
reads and checks the YAML into these types and re-exports every name here, so importers
keep using `agent.config`.

Must not: read files, the environment or YAML (agent/config.py does), check values (the
schema there does), or import anything from agent/core, agent/ocpp or drivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config: dotted key path, 1-based line (if known), message."""

    path: str
    line: int | None
    message: str


class ConfigError(Exception):
    """The config cannot be used; `problems` lists everything found, not just the first."""

    def __init__(self, problems: list[Problem], source: str = "<string>") -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        """Return every problem on its own line: `<file>:<line>: <key.path>: <message>`."""
        return "\n".join(format_problem(p, self.source) for p in self.problems)


def format_problem(problem: Problem, source: str) -> str:
    """Render one problem as `<file>:<line>: <key.path>: <message>` (absent parts omitted)."""
    where = source if problem.line is None else f"{source}:{problem.line}"
    path = f" {problem.path}:" if problem.path else ""
    return f"{where}:{path} {problem.message}"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string; repr and str show `<secret>`, only `reveal()` gives the value."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """Return the secret value (only where it is sent, never to a log)."""
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    def __str__(self) -> str:
        return "<secret>"


@dataclass(frozen=True, slots=True)
class StationConfig:
    """Identity of the charge point (BootNotification fields and the WebSocket identity)."""

    id: str
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None


@dataclass(frozen=True, slots=True)
class BasicAuthConfig:
    """HTTP Basic credentials for the CSMS connection (OCPP security profile 1 or 2)."""

    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS trust for wss://; `ca_file` None means the system trust store."""

    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    """Reconnect back-off policy: exponential from initial to max, +- jitter fraction."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    jitter: float = 0.5


@dataclass(frozen=True, slots=True)
class CsmsConfig:
    """Where and how to reach the CSMS; the agent appends the charge point id to `url`.

    `ocpp_versions` is the preference list the station offers ("1.6", "2.0.1"), most
    preferred first, never empty; the CSMS chooses one at each connection.
    """

    url: str
    ocpp_versions: tuple[str, ...] = ("1.6",)
    response_timeout_s: float = 30.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    basic_auth: BasicAuthConfig | None = None
    tls: TlsConfig | None = None

    @property
    def ocpp_version(self) -> str:
        """The most preferred OCPP version (the first of `ocpp_versions`)."""
        return self.ocpp_versions[0]


def setting_version(key: str) -> str:
    """The OCPP version a `settings:` key is for: device model paths ("OCPPCommCtrlr/
    HeartbeatInterval", "EVSE@1/...") are 2.0.1, bare names (HeartbeatInterval) 1.6."""
    return "2.0.1" if "/" in key else "1.6"


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """A driver chosen by name plus its options (read-only, validated by the driver)."""

    driver: str
    options: Mapping[str, Any] = field(default_factory=_empty_mapping)


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """One connector of an EVSE."""

    id: int
    type: str = "cType2"
    max_current_a: float = 32.0
    phases: int = 3


@dataclass(frozen=True, slots=True)
class EvseConfig:
    """One EVSE (ids 1..N) with its connectors (ids 1..M) and the drivers behind it."""

    id: int
    connectors: tuple[ConnectorConfig, ...]
    board: DriverConfig
    meter: DriverConfig
    lock: DriverConfig | None = None
    reader: DriverConfig | None = None
    power_module: DriverConfig | None = None  # DC power stage
    isolation_monitor: DriverConfig | None = None  # DC insulation monitoring (IEC 61557-8)
    indicator: DriverConfig | None = None  # LED or display: feedback to the driver


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the SQLite store lives."""

    path: Path = Path("cpagent.db")


@dataclass(frozen=True, slots=True)
class EvDefaults:
    """The simulated EV plugged in when a scenario does not say otherwise."""

    battery_wh: float = 40000.0
    soc_percent: float = 20.0
    max_current_a: float = 32.0
    phases: int = 3
    target_soc_percent: float = 100.0


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Simulator settings (used only by `sim` drivers); time_scale = sim s per wall s."""

    time_scale: float = 1.0
    ev: EvDefaults = field(default_factory=EvDefaults)
    auto_plug: bool = False


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and what the logs may contain."""

    level: str = "INFO"
    mask_id_tokens: bool = True
    message_log: bool = True


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The local HTTP control API: off by default, loopback only unless a token guards it.

    `port` 0 binds any free port; `token` (from token_file or token_env) is the bearer
    token every request but the OpenAPI document must carry.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    token: Secret | None = None


@dataclass(frozen=True, slots=True)
class OffPeakWindowConfig:
    """A cheap window: `start` to `end` local time ("HH:MM"), beginning on each of `days`
    (0 = Monday); an `end` at or before `start` ends the next day (equal: 24 hours)."""

    days: tuple[int, ...]
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class OffPeakConfig:
    """Charging only in cheap hours (local time in `timezone`, an IANA zone name)."""

    timezone: str
    windows: tuple[OffPeakWindowConfig, ...]
    evses: tuple[int, ...] = ()  # empty: every EVSE


@dataclass(frozen=True, slots=True)
class PvConfig:
    """Charging from the PV surplus measured by the site meter (powers W, times s);
    None thresholds are derived from the minimum current (agent/core/energy.py)."""

    evses: tuple[int, ...] = ()  # empty: every EVSE
    min_current: bool = False  # below the surplus, charge at the minimum instead of pausing
    start_surplus_w: float | None = None
    stop_surplus_w: float | None = None
    start_delay_s: float = 60.0
    stop_delay_s: float = 300.0


@dataclass(frozen=True, slots=True)
class PhaseSwitchingConfig:
    """1/3-phase switching in PV mode, on boards that can switch (W, s)."""

    three_phases_above_w: float | None = None
    one_phase_below_w: float | None = None
    delay_s: float = 300.0


@dataclass(frozen=True, slots=True)
class EnergyConfig:
    """Local energy management (agent/energy.py); all off when the section is absent.

    `site_limit_a`: the grid connection's limit per phase; `site_meter`: the meter at the
    connection point (a driver, as for an EVSE meter); `meter_fallback_a`: what the EVSEs
    may draw together per phase while that meter does not answer.
    """

    control_period_s: float = 5.0
    site_limit_a: float | None = None
    site_meter: DriverConfig | None = None
    meter_fallback_a: float = 6.0
    off_peak: OffPeakConfig | None = None
    pv: PvConfig | None = None
    phase_switching: PhaseSwitchingConfig = field(default_factory=PhaseSwitchingConfig)

    @property
    def enabled(self) -> bool:
        """Whether any energy management is configured."""
        parts = (self.site_limit_a, self.site_meter, self.off_peak, self.pv)
        return any(part is not None for part in parts)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole install configuration; `settings` are initial OCPP configuration values
    (1.6 configuration keys and 2.0.1 device model paths side by side)."""

    station: StationConfig
    csms: CsmsConfig
    evses: tuple[EvseConfig, ...]
    store: StoreConfig = field(default_factory=StoreConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    settings: Mapping[str, str] = field(default_factory=_empty_mapping)
    api: ApiConfig = field(default_factory=ApiConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    source: Path | None = None

    def settings_for(self, ocpp_version: str) -> Mapping[str, str]:
        """The install settings of one OCPP version (see `setting_version`)."""
        return MappingProxyType(
            {k: v for k, v in self.settings.items() if setting_version(k) == ocpp_version}
        )
