"""OCPP 1.6 configuration keys (section 9.1 Core, 9.4 Smart Charging, ...): the table
and its rules.

Each key has a type, an access mode and a default. Values live in the store (prefix
`ocpp16.`) once the CSMS or the install config sets them, so they survive restarts.
`ConfigurationKeys.change()` answers ChangeConfiguration exactly as section 5.3 asks:
Accepted, Rejected (read-only or invalid value), RebootRequired or NotSupported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from agent.core.ports import SettingsStore
from agent.ocpp.v16.mapping import SUPPORTED_MEASURANDS

PREFIX = "ocpp16."
LIST_MAX = 10  # *MaxLength of every comma-separated list we accept


class Kind(StrEnum):
    """The value type of a key."""

    BOOL = "bool"
    INT = "int"
    MEASURANDS = "measurands"  # a comma-separated list of supported measurands
    CSL = "csl"  # any comma-separated list (read-only ones here)


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key."""

    name: str
    kind: Kind
    default: str
    readonly: bool = False
    reboot_required: bool = False
    minimum: int = 0
    choices: tuple[str, ...] = ()  # a list key: the values its items may take (non-empty)


KEYS: tuple[Key, ...] = (
    Key("AllowOfflineTxForUnknownId", Kind.BOOL, "false"),
    Key("AuthorizationCacheEnabled", Kind.BOOL, "true"),
    Key("AuthorizeRemoteTxRequests", Kind.BOOL, "false"),
    # Smart Charging (section 9.4): what SetChargingProfile accepts (read-only, like
    # every read-only key here neither the CSMS nor the install config changes them).
    Key("ChargeProfileMaxStackLevel", Kind.INT, "8", readonly=True),
    Key(
        "ChargingScheduleAllowedChargingRateUnit",
        Kind.CSL,
        "Current,Power",
        readonly=True,
        choices=("Current", "Power"),
    ),
    Key("ChargingScheduleMaxPeriods", Kind.INT, "24", readonly=True, minimum=1),
    Key("ClockAlignedDataInterval", Kind.INT, "0"),
    Key("ConnectionTimeOut", Kind.INT, "60", minimum=1),
    Key("ConnectorPhaseRotation", Kind.CSL, "0.RST"),
    Key("ConnectorPhaseRotationMaxLength", Kind.INT, str(LIST_MAX), readonly=True),
    Key("GetConfigurationMaxKeys", Kind.INT, "64", readonly=True),
    Key("HeartbeatInterval", Kind.INT, "300", minimum=1),
    Key("LocalAuthListEnabled", Kind.BOOL, "true"),
    Key("LocalAuthListMaxLength", Kind.INT, "10000", readonly=True),
    Key("LocalAuthorizeOffline", Kind.BOOL, "true"),
    Key("LocalPreAuthorize", Kind.BOOL, "false"),
    Key("MaxChargingProfilesInstalled", Kind.INT, "16", readonly=True, minimum=1),
    Key("MaxEnergyOnInvalidId", Kind.INT, "0"),
    Key("MeterValuesAlignedData", Kind.MEASURANDS, "Energy.Active.Import.Register"),
    Key("MeterValuesAlignedDataMaxLength", Kind.INT, str(LIST_MAX), readonly=True),
    Key("MeterValuesSampledData", Kind.MEASURANDS, "Energy.Active.Import.Register"),
    Key("MeterValuesSampledDataMaxLength", Kind.INT, str(LIST_MAX), readonly=True),
    Key("MeterValueSampleInterval", Kind.INT, "60"),
    Key("NumberOfConnectors", Kind.INT, "1", readonly=True),
    Key("ReserveConnectorZeroSupported", Kind.BOOL, "true", readonly=True),  # section 9.5
    Key("ResetRetries", Kind.INT, "1"),
    Key("StopTransactionOnEVSideDisconnect", Kind.BOOL, "true"),
    Key("StopTransactionOnInvalidId", Kind.BOOL, "true"),
    Key("StopTxnAlignedData", Kind.MEASURANDS, ""),
    Key("StopTxnAlignedDataMaxLength", Kind.INT, str(LIST_MAX), readonly=True),
    Key("StopTxnSampledData", Kind.MEASURANDS, ""),
    Key("StopTxnSampledDataMaxLength", Kind.INT, str(LIST_MAX), readonly=True),
    Key("SendLocalListMaxLength", Kind.INT, "10000", readonly=True),
    Key(
        "SupportedFeatureProfiles",
        Kind.CSL,
        "Core,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging",
        readonly=True,
    ),
    Key("SupportedFeatureProfilesMaxLength", Kind.INT, "6", readonly=True),
    Key("TransactionMessageAttempts", Kind.INT, "3", minimum=1),
    Key("TransactionMessageRetryInterval", Kind.INT, "30"),
    Key("UnlockConnectorOnEVSideDisconnect", Kind.BOOL, "true"),
    # The websocket ping interval is fixed when a connection opens: a change applies
    # from the next connection, so we answer RebootRequired as section 5.3 allows.
    Key("WebSocketPingInterval", Kind.INT, "30", reboot_required=True),
)
BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


class ChangeResult(StrEnum):
    """ChangeConfiguration.conf status values."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


def normalise(key: Key, value: str) -> str | None:
    """The canonical form of `value` for `key`, or None if it is invalid."""
    value = value.strip()
    if key.kind == Kind.BOOL:
        lowered = value.lower()
        return lowered if lowered in ("true", "false") else None
    if key.kind == Kind.INT:
        try:
            number = int(value)
        except ValueError:
            return None
        return str(number) if number >= key.minimum else None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if len(items) > LIST_MAX:
        return None
    if key.kind == Kind.MEASURANDS and any(item not in SUPPORTED_MEASURANDS for item in items):
        return None
    if key.choices and (not items or any(item not in key.choices for item in items)):
        return None
    return ",".join(items)


class ConfigurationKeys:
    """The live values of every key: defaults, then install config, then CSMS changes."""

    def __init__(
        self,
        store: SettingsStore,
        *,
        install_defaults: Mapping[str, str],
        fixed: Mapping[str, str],
    ) -> None:
        self._store = store
        self._values: dict[str, str] = {key.name: key.default for key in KEYS}
        for name, value in install_defaults.items():
            key = BY_NAME.get(name)
            canonical = normalise(key, value) if key else None
            if key is None or canonical is None:
                raise ValueError(f"settings.{name}: not a valid OCPP 1.6 configuration value")
            self._values[name] = canonical
        for key in KEYS:
            stored = store.get_setting(PREFIX + key.name)
            if stored is not None and not key.readonly:
                self._values[key.name] = stored
        self._values.update(fixed)
        self._watchers: list[Callable[[str, str], None]] = []

    def get(self, name: str) -> str:
        """The current value of a key (KeyError for an unknown key)."""
        return self._values[name]

    def get_int(self, name: str) -> int:
        """A key's value as an int."""
        return int(self._values[name])

    def get_bool(self, name: str) -> bool:
        """A key's value as a bool."""
        return self._values[name] == "true"

    def get_list(self, name: str) -> list[str]:
        """A comma-separated key as a list."""
        return [item for item in self._values[name].split(",") if item]

    def watch(self, callback: Callable[[str, str], None]) -> None:
        """Call `callback(name, value)` after every accepted change."""
        self._watchers.append(callback)

    def items(self) -> list[tuple[Key, str]]:
        """Every key with its value, in table order."""
        return [(key, self._values[key.name]) for key in KEYS]

    def change(self, name: str, value: str) -> ChangeResult:
        """Apply a ChangeConfiguration request and persist it."""
        key = BY_NAME.get(name)
        if key is None:
            return ChangeResult.NOT_SUPPORTED
        if key.readonly:
            return ChangeResult.REJECTED
        canonical = normalise(key, value)
        if canonical is None:
            return ChangeResult.REJECTED
        self._store.set_setting(PREFIX + name, canonical)
        self._values[name] = canonical
        for watcher in self._watchers:
            watcher(name, canonical)
        return ChangeResult.REBOOT_REQUIRED if key.reboot_required else ChangeResult.ACCEPTED
