"""OCPP-J dialects: each version's actions, CallError codes and schema validation.

A dialect maps a JSON-schema violation to the CallError code its OCPP version defines
(OCPP-J 1.6 section 4.2.3, OCPP 2.0.1 part 4 section 4.3) and names the offending field;
these tests check the mapping payload by payload, without a connection.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.ocpp.dialects import OCPP16, OCPP201, Dialect


def test_dialects_name_version_subprotocol_actions_and_spec_error_codes() -> None:
    assert (OCPP16.version, OCPP16.subprotocol) == ("1.6", "ocpp1.6")
    assert (OCPP201.version, OCPP201.subprotocol) == ("2.0.1", "ocpp2.0.1")
    assert {"BootNotification", "StartTransaction"} <= OCPP16.actions
    assert "NotifyReport" not in OCPP16.actions
    assert {"BootNotification", "TransactionEvent", "NotifyReport"} <= OCPP201.actions
    assert "StartTransaction" not in OCPP201.actions
    assert OCPP16.error_codes == {
        "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
        "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
        "TypeConstraintViolation", "GenericError",
    }  # fmt: skip
    assert OCPP201.error_codes == {
        "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported",
        "NotImplemented", "NotSupported", "OccurrenceConstraintViolation",
        "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError", "SecurityError",
        "TypeConstraintViolation",
    }  # fmt: skip


def test_validator_is_compiled_once_and_reused() -> None:
    first = OCPP201.validator("BootNotification", response=False)
    assert OCPP201.validator("BootNotification", response=False) is first
    assert OCPP201.validator("BootNotification", response=True) is not first


def test_validator_for_an_action_the_version_does_not_define_raises_key_error() -> None:
    with pytest.raises(KeyError):
        OCPP16.validator("NotifyReport", response=False)
    with pytest.raises(KeyError):
        OCPP201.validator("StartTransaction", response=True)


def _profile(limit: float, min_rate: float = 6.0) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "minChargingRate": min_rate,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


@pytest.mark.parametrize("limit", [21.4, 0.3, 0.7, 100.1, 32, 16.0])
def test_set_charging_profile_limit_with_one_decimal_validates(limit: float) -> None:
    # 21.4 / 0.1 == 213.99999999999997 in binary floating point; it must still pass.
    assert OCPP16.check("SetChargingProfile", _profile(limit), response=False) is None


def test_set_charging_profile_limit_with_two_decimals_is_a_property_violation() -> None:
    violation = OCPP16.check("SetChargingProfile", _profile(21.45), response=False)
    assert violation is not None
    assert violation.code == "PropertyConstraintViolation"
    assert violation.field == "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit"
    violation = OCPP16.check("SetChargingProfile", _profile(16, min_rate=6.05), response=False)
    assert violation is not None
    assert violation.field == "csChargingProfiles.chargingSchedule.minChargingRate"


@pytest.mark.parametrize(
    ("dialect", "action", "response", "payload", "code", "field"),
    [
        (OCPP16, "BootNotification", False, {"chargePointModel": "M"},
         "OccurenceConstraintViolation", "chargePointVendor"),
        (OCPP201, "BootNotification", False, {"reason": "PowerUp", "chargingStation": {}},
         "OccurrenceConstraintViolation", "chargingStation.model"),
        (OCPP16, "ChangeAvailability", False, {"connectorId": "1", "type": "Operative"},
         "TypeConstraintViolation", "connectorId"),
        (OCPP201, "ChangeAvailability", False,
         {"operationalStatus": "Operative", "evse": {"id": "1"}},
         "TypeConstraintViolation", "evse.id"),
        (OCPP16, "ChangeAvailability", False, {"connectorId": 1, "type": "Operative", "x": 1},
         "FormationViolation", "x"),
        (OCPP201, "BootNotification", False,
         {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V", "x": 1}},
         "FormatViolation", "chargingStation.x"),
        (OCPP16, "Heartbeat", True, [], "FormationViolation", ""),
        (OCPP201, "Heartbeat", True, "now", "FormatViolation", ""),
        (OCPP16, "ChangeAvailability", False, {"connectorId": 1, "type": "Sometimes"},
         "PropertyConstraintViolation", "type"),
        (OCPP201, "BootNotification", False,
         {"reason": "PowerUp", "chargingStation": {"model": "M" * 21, "vendorName": "V"}},
         "PropertyConstraintViolation", "chargingStation.model"),
        (OCPP16, "Heartbeat", True, {"currentTime": "yesterday"},
         "PropertyConstraintViolation", "currentTime"),
        (OCPP16, "ChangeAvailability", False, {"connectorId": 1, "type": 3},
         "TypeConstraintViolation", "type"),
    ],
    ids=[
        "required-1.6", "required-2.0.1", "type-1.6", "type-2.0.1", "additional-1.6",
        "additional-2.0.1", "not-object-1.6", "not-object-2.0.1", "enum", "maxLength",
        "format", "type-before-enum",
    ],
)  # fmt: skip
def test_schema_violation_maps_to_the_versions_callerror_code_and_names_the_field(
    dialect: Dialect, action: str, response: bool, payload: Any, code: str, field: str
) -> None:
    violation = dialect.check(action, payload, response=response)
    assert violation is not None
    assert (violation.code, violation.field) == (code, field)
    assert violation.details == {"field": field}


def test_validation_never_fills_in_schema_defaults() -> None:
    # SetNetworkProfileRequest.apn.useOnlyPreferredNetwork has "default": false.
    payload = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": "wss://csms.example/ocpp",
            "messageTimeout": 30,
            "securityProfile": 1,
            "ocppInterface": "Wired0",
            "apn": {"apn": "internet", "apnAuthentication": "NONE"},
        },
    }
    before = copy.deepcopy(payload)
    assert OCPP201.check("SetNetworkProfile", payload, response=False) is None
    assert payload == before
