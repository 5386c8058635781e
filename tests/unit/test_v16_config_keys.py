"""OCPP 1.6 configuration keys: the Core profile table (section 9.1) and ChangeConfiguration
answers (section 5.3), persisted in the store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.ocpp.v16.config_keys import (
    BY_NAME,
    KEYS,
    LIST_MAX,
    PREFIX,
    ChangeResult,
    ConfigurationKeys,
    Kind,
)
from agent.store import Store

# Section 9.1 Core profile keys marked "required", with the accessibility the spec gives
# (R: read-only, RW: read-write; AuthorizeRemoteTxRequests may be either).
REQUIRED_CORE_KEYS: dict[str, str | None] = {
    "AuthorizeRemoteTxRequests": None,
    "ClockAlignedDataInterval": "RW",
    "ConnectionTimeOut": "RW",
    "ConnectorPhaseRotation": "RW",
    "GetConfigurationMaxKeys": "R",
    "HeartbeatInterval": "RW",
    "LocalAuthorizeOffline": "RW",
    "LocalPreAuthorize": "RW",
    "MeterValuesAlignedData": "RW",
    "MeterValuesSampledData": "RW",
    "MeterValueSampleInterval": "RW",
    "NumberOfConnectors": "R",
    "ResetRetries": "RW",
    "StopTransactionOnEVSideDisconnect": "RW",
    "StopTransactionOnInvalidId": "RW",
    "StopTxnAlignedData": "RW",
    "StopTxnSampledData": "RW",
    "SupportedFeatureProfiles": "R",
    "TransactionMessageAttempts": "RW",
    "TransactionMessageRetryInterval": "RW",
    "UnlockConnectorOnEVSideDisconnect": "RW",
}
# Optional Core keys: when present they must have the spec's accessibility.
OPTIONAL_CORE_KEYS: dict[str, str] = {
    "AllowOfflineTxForUnknownId": "RW",
    "AuthorizationCacheEnabled": "RW",
    "BlinkRepeat": "RW",
    "ConnectorPhaseRotationMaxLength": "R",
    "LightIntensity": "RW",
    "MaxEnergyOnInvalidId": "RW",
    "MeterValuesAlignedDataMaxLength": "R",
    "MeterValuesSampledDataMaxLength": "R",
    "MinimumStatusDuration": "RW",
    "StopTxnAlignedDataMaxLength": "R",
    "StopTxnSampledDataMaxLength": "R",
    "SupportedFeatureProfilesMaxLength": "R",
    "WebSocketPingInterval": "RW",
}
BOOLEAN_KEYS = {
    "AllowOfflineTxForUnknownId",
    "AuthorizationCacheEnabled",
    "AuthorizeRemoteTxRequests",
    "LocalAuthListEnabled",  # section 9.2, Local Auth List Management profile
    "ReserveConnectorZeroSupported",  # section 9.5, Reservation profile
    "LocalAuthorizeOffline",
    "LocalPreAuthorize",
    "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId",
    "UnlockConnectorOnEVSideDisconnect",
}
MEASURAND_LIST_KEYS = {
    "MeterValuesAlignedData",
    "MeterValuesSampledData",
    "StopTxnAlignedData",
    "StopTxnSampledData",
}


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as store:
        yield store


def keys_over(store: Store, **install: str) -> ConfigurationKeys:
    return ConfigurationKeys(store, install_defaults=install, fixed={})


# --- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_CORE_KEYS))
def test_every_required_core_key_of_section_9_1_exists(name: str) -> None:
    assert name in BY_NAME


@pytest.mark.parametrize(
    ("name", "access"),
    sorted({**REQUIRED_CORE_KEYS, **OPTIONAL_CORE_KEYS}.items()),
)
def test_core_keys_have_the_accessibility_of_section_9_1(name: str, access: str | None) -> None:
    key = BY_NAME.get(name)
    if key is None:
        assert name in OPTIONAL_CORE_KEYS, f"{name} is required"
        return
    if access is not None:
        assert key.readonly == (access == "R")


def test_key_types_follow_section_9_1() -> None:
    for key in KEYS:
        if key.name in BOOLEAN_KEYS:
            assert key.kind == Kind.BOOL, key.name
        elif key.name in MEASURAND_LIST_KEYS:
            assert key.kind == Kind.MEASURANDS, key.name
        elif key.name in (
            "ConnectorPhaseRotation",
            "SupportedFeatureProfiles",
            "ChargingScheduleAllowedChargingRateUnit",  # section 9.4, Smart Charging profile
        ):
            assert key.kind == Kind.CSL, key.name
        else:
            assert key.kind == Kind.INT, key.name


def test_every_default_is_a_valid_value_of_its_key(store: Store) -> None:
    keys = keys_over(store)
    for key, value in keys.items():
        assert value == key.default
        if not key.readonly:
            assert keys.change(key.name, value) in (
                ChangeResult.ACCEPTED,
                ChangeResult.REBOOT_REQUIRED,
            ), key.name


def test_supported_feature_profiles_include_core(store: Store) -> None:
    assert "Core" in keys_over(store).get_list("SupportedFeatureProfiles")


# --- ChangeConfiguration (section 5.3) -------------------------------------------------------


def test_unknown_key_is_not_supported(store: Store) -> None:
    assert keys_over(store).change("NoSuchKey", "1") == ChangeResult.NOT_SUPPORTED
    assert store.settings() == {}


@pytest.mark.parametrize("name", [key.name for key in KEYS if key.readonly])
def test_read_only_key_is_rejected_and_unchanged(store: Store, name: str) -> None:
    keys = keys_over(store)
    before = keys.get(name)
    assert keys.change(name, "7") == ChangeResult.REJECTED
    assert keys.get(name) == before
    assert store.settings() == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LocalPreAuthorize", "yes"),
        ("LocalPreAuthorize", "1"),
        ("LocalPreAuthorize", ""),
        ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", "1.5"),
        ("HeartbeatInterval", "0"),  # an interval of 0 s would flood the CSMS
        ("HeartbeatInterval", ""),
        ("ClockAlignedDataInterval", "-1"),
        ("ConnectionTimeOut", "0"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Bogus"),
        ("MeterValuesSampledData", "energy.active.import.register"),
        ("StopTxnSampledData", ",".join(["Voltage"] * (LIST_MAX + 1))),
    ],
)
def test_invalid_value_is_rejected_and_not_stored(store: Store, name: str, value: str) -> None:
    keys = keys_over(store)
    before = keys.get(name)
    assert keys.change(name, value) == ChangeResult.REJECTED
    assert keys.get(name) == before
    assert store.get_setting(PREFIX + name) is None


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("HeartbeatInterval", "60", "60"),
        ("HeartbeatInterval", " 900 ", "900"),
        ("ClockAlignedDataInterval", "0", "0"),  # 0 switches aligned data off
        ("LocalPreAuthorize", "TRUE", "true"),
        ("StopTransactionOnEVSideDisconnect", "false", "false"),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register, Power.Active.Import,Current.Import",
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import",
        ),
        ("StopTxnSampledData", "", ""),
    ],
)
def test_valid_value_is_accepted_and_survives_a_restart(
    store: Store, name: str, value: str, stored: str
) -> None:
    assert keys_over(store).change(name, value) == ChangeResult.ACCEPTED
    assert store.get_setting(PREFIX + name) == stored
    assert keys_over(store).get(name) == stored  # a new instance over the same store


def test_websocket_ping_interval_change_needs_a_reboot_and_is_kept(store: Store) -> None:
    assert keys_over(store).change("WebSocketPingInterval", "45") == ChangeResult.REBOOT_REQUIRED
    assert keys_over(store).get_int("WebSocketPingInterval") == 45


def test_watchers_hear_accepted_changes_only(store: Store) -> None:
    keys = keys_over(store)
    heard: list[tuple[str, str]] = []
    keys.watch(lambda name, value: heard.append((name, value)))
    keys.change("HeartbeatInterval", "120")
    keys.change("HeartbeatInterval", "nope")
    keys.change("NumberOfConnectors", "3")
    keys.change("NoSuchKey", "1")
    assert heard == [("HeartbeatInterval", "120")]


def test_typed_getters(store: Store) -> None:
    keys = keys_over(store)
    keys.change("MeterValueSampleInterval", "15")
    keys.change("LocalAuthorizeOffline", "false")
    keys.change("MeterValuesAlignedData", "Energy.Active.Import.Register,Voltage")
    assert keys.get_int("MeterValueSampleInterval") == 15
    assert keys.get_bool("LocalAuthorizeOffline") is False
    assert keys.get_list("MeterValuesAlignedData") == ["Energy.Active.Import.Register", "Voltage"]
    assert keys.get_list("StopTxnSampledData") == []


# --- where values come from --------------------------------------------------------------------


def test_install_defaults_apply_over_the_table_defaults(store: Store) -> None:
    keys = keys_over(store, HeartbeatInterval="120", LocalPreAuthorize="True")
    assert keys.get("HeartbeatInterval") == "120"
    assert keys.get("LocalPreAuthorize") == "true"


def test_stored_values_override_install_defaults(store: Store) -> None:
    keys_over(store).change("HeartbeatInterval", "45")
    assert keys_over(store, HeartbeatInterval="120").get("HeartbeatInterval") == "45"


def test_invalid_install_default_is_an_error_naming_the_key(store: Store) -> None:
    with pytest.raises(ValueError, match="HeartbeatInterval"):
        keys_over(store, HeartbeatInterval="often")
    with pytest.raises(ValueError, match="NoSuchKey"):
        keys_over(store, NoSuchKey="1")


def test_fixed_values_win_and_stored_read_only_values_are_ignored(store: Store) -> None:
    store.set_setting(PREFIX + "NumberOfConnectors", "9")
    keys = ConfigurationKeys(store, install_defaults={}, fixed={"NumberOfConnectors": "2"})
    assert keys.get_int("NumberOfConnectors") == 2
    assert keys_over(store).get("NumberOfConnectors") == BY_NAME["NumberOfConnectors"].default
