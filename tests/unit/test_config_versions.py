"""Tests for the OCPP version choice in the config: `csms.ocpp_version` (one version or a
preference list) and `settings:` keys checked against the version they belong to (1.6
configuration keys, 2.0.1 device model paths of a station with the configured EVSEs)."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from tests.unit.config_samples import MINIMAL, problems_of


def with_versions(versions: str) -> str:
    """MINIMAL with `csms.ocpp_version: <versions>` (line 2)."""
    return MINIMAL.replace('ocpp"}', f'ocpp", ocpp_version: {versions}}}')


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("1.6", ("1.6",)),
        ('"2.0.1"', ("2.0.1",)),
        ("[2.0.1, 1.6]", ("2.0.1", "1.6")),
        ("[1.6, '2.0.1']", ("1.6", "2.0.1")),
    ],
)
def test_ocpp_version_is_one_version_or_a_preference_list(
    written: str, expected: tuple[str, ...]
) -> None:
    csms = parse_config(with_versions(written)).csms
    assert csms.ocpp_versions == expected
    assert csms.ocpp_version == expected[0]  # the first preference, for old readers


def test_ocpp_version_defaults_to_1_6() -> None:
    assert parse_config(MINIMAL).csms.ocpp_versions == ("1.6",)


BAD_VERSIONS = [
    ("unknown", "2.0", "csms.ocpp_version", "OCPP '2.0' is not supported; supported: 1.6, 2.0.1"),
    ("empty list", "[]", "csms.ocpp_version", "expected a version or a list of versions"),
    ("duplicate", "[1.6, 2.0.1, 1.6]", "csms.ocpp_version[2]", "OCPP '1.6' is listed twice"),
    ("unknown in list", "[2.0.1, '1.5']", "csms.ocpp_version[1]", "OCPP '1.5' is not supported"),
    ("boolean", "true", "csms.ocpp_version", "expected an OCPP version (1.6, 2.0.1), got a bool"),
    (
        "mapping",
        "{v: 1.6}",
        "csms.ocpp_version",
        "expected an OCPP version (1.6, 2.0.1), got a map",
    ),
    ("nested list", "[[1.6]]", "csms.ocpp_version[0]", "expected an OCPP version"),
]


@pytest.mark.parametrize(
    ("written", "path", "message"),
    [case[1:] for case in BAD_VERSIONS],
    ids=[case[0] for case in BAD_VERSIONS],
)
def test_bad_ocpp_versions_name_the_key_and_line(written: str, path: str, message: str) -> None:
    (problem,) = problems_of(with_versions(written))
    assert (problem.path, problem.line) == (path, 2)
    assert message in problem.message


def test_settings_of_both_versions_are_kept_apart() -> None:
    config = parse_config(
        with_versions("[2.0.1, 1.6]")
        + "settings:\n  HeartbeatInterval: 60\n  OCPPCommCtrlr/HeartbeatInterval: 120\n"
    )
    assert config.settings_for("1.6") == {"HeartbeatInterval": "60"}
    assert config.settings_for("2.0.1") == {"OCPPCommCtrlr/HeartbeatInterval": "120"}


def test_2_0_1_settings_accept_every_path_form_of_the_device_model() -> None:
    config = parse_config(
        with_versions('"2.0.1"').replace("evses: [{}]", "evses: [{}, {}]") + "settings:\n"
        "  OCPPCommCtrlr/NetworkConfigurationPriority: '2,1'\n"
        "  OCPPCommCtrlr/MessageTimeout(Default): 45\n"  # read-only: the installer's to set
        "  DeviceDataCtrlr/ItemsPerMessage(GetVariables): 8\n"
        "  AuthCtrlr/LocalPreAuthorize: yes\n"
        "  SecurityCtrlr/SecurityProfile: 2\n"
    )
    assert config.settings_for("2.0.1") == {
        "OCPPCommCtrlr/NetworkConfigurationPriority": "2,1",
        "OCPPCommCtrlr/MessageTimeout(Default)": "45",
        "DeviceDataCtrlr/ItemsPerMessage(GetVariables)": "8",
        "AuthCtrlr/LocalPreAuthorize": "true",
        "SecurityCtrlr/SecurityProfile": "2",
    }


BAD_SETTINGS = [
    (
        "1.6 key, only 2.0.1 offered",
        '"2.0.1"',
        "HeartbeatInterval: 60",
        "an OCPP 1.6 key, but csms.ocpp_version offers only 2.0.1",
    ),
    (
        "2.0.1 path, only 1.6 offered",
        "1.6",
        "OCPPCommCtrlr/HeartbeatInterval: 60",
        "an OCPP 2.0.1 device model path, but csms.ocpp_version offers only 1.6",
    ),
    (
        "unknown variable",
        '"2.0.1"',
        "OCPPCommCtrlr/HeartbeatIntervall: 60",
        "not a variable of this station's OCPP 2.0.1 device model",
    ),
    (
        "EVSE the station does not have",
        '"2.0.1"',
        "EVSE@2/AvailabilityState: Available",
        "not a variable of this station's OCPP 2.0.1 device model",
    ),
    (
        "below the minimum",
        "[2.0.1, 1.6]",
        "OCPPCommCtrlr/HeartbeatInterval: 0",
        "invalid value '0': ValueTooLow (the variable is integer)",
    ),
    (
        "slot outside the valuesList",
        '"2.0.1"',
        "OCPPCommCtrlr/NetworkConfigurationPriority: '1,9'",
        "invalid value '1,9': InvalidValue (the variable is SequenceList)",
    ),
    (
        "attribute the variable lacks",
        '"2.0.1"',
        "OCPPCommCtrlr/HeartbeatInterval#Target: 5",
        "the variable has no Target attribute",
    ),
    (
        "malformed path",
        '"2.0.1"',
        "OCPPCommCtrlr/: 5",
        "not a device model path",
    ),
]


@pytest.mark.parametrize(
    ("versions", "line", "message"),
    [case[1:] for case in BAD_SETTINGS],
    ids=[case[0] for case in BAD_SETTINGS],
)
def test_settings_are_checked_against_their_version(versions: str, line: str, message: str) -> None:
    (problem,) = problems_of(with_versions(versions) + f"settings:\n  {line}\n")
    assert (problem.path, problem.line) == ("settings." + line.rsplit(": ", 1)[0], 5)
    assert message in problem.message


def test_2_0_1_setting_values_are_bounded_by_their_variable_not_by_1_6_limits() -> None:
    name = "x" * 600  # OrganizationName is at most 50 long; 1.6's own cap is 500
    (problem,) = problems_of(
        with_versions('"2.0.1"') + f"settings:\n  SecurityCtrlr/OrganizationName: {name}\n"
    )
    assert "TooLargeElement" in problem.message
    assert "500" not in problem.message
