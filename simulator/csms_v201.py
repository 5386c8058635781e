"""The test CSMS's OCPP 2.0.1 side: how it answers each station-initiated 2.0.1 action.

Responsibilities:
- `CsmsChargePoint`: the `ocpp.v201.ChargePoint` of one connection negotiated as
  `ocpp2.0.1`, with an `@on` handler for every CALL of the library's v201 `Action` enum that
  a charging station sends, answering with a valid minimal CALLRESULT. Schema validation
  stays ON (the library's, both directions).
- The behaviour applies as in 1.6, read at each CALL: `boot_status`/`boot_interval_s` for
  BootNotification; `accepted_tags`/`tag_status_otherwise` decide idTokenInfo.status for
  Authorize and for a TransactionEvent carrying an idToken (no idToken: no idTokenInfo),
  `parent_id_tag` becomes idTokenInfo.groupIdToken (type Central); `fail_next` answers
  CALLERROR InternalError; `echo_vendor_id` picks the DataTransfer vendor that is echoed.
- Requests this CSMS has no backend for (PKI, ISO 15118, smart charging) get the refusal
  their schema allows, so a station sees a definite "no" instead of a silence.

Transaction ids are the station's in 2.0.1 (transactionInfo.transactionId): nothing here
allocates them. DataTransfer's `data` is echoed as the library hands it over, so keys of an
object `data` go through its camelCase/snake_case conversion (camelCase keys survive).

It must not: touch the websocket, record frames or settle `Received` entries (simulator.csms
does that), nor start tasks. It is a part of simulator/csms.py split out by responsibility;
simulator.csms imports this module, never the other way round at runtime.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v201 import ChargePoint as _OcppChargePoint
from ocpp.v201 import call_result
from ocpp.v201.datatypes import IdTokenInfoType, IdTokenType

if TYPE_CHECKING:
    from simulator.csms import Csms

SUBPROTOCOL = "ocpp2.0.1"
VERSION = "2.0.1"

_Handler = TypeVar("_Handler", bound=Callable[..., Any])

#: Station-initiated actions whose answer does not depend on the behaviour (beyond
#: fail_next): notifications get their empty CALLRESULT; requests needing a backend this
#: CSMS lacks get the refusal their schema allows.
FIXED_ANSWERS: dict[str, Callable[[], Any]] = {
    "StatusNotification": call_result.StatusNotification,
    "MeterValues": call_result.MeterValues,
    "NotifyReport": call_result.NotifyReport,
    "NotifyEvent": call_result.NotifyEvent,
    "FirmwareStatusNotification": call_result.FirmwareStatusNotification,
    "LogStatusNotification": call_result.LogStatusNotification,
    "SecurityEventNotification": call_result.SecurityEventNotification,
    "ReservationStatusUpdate": call_result.ReservationStatusUpdate,
    "NotifyChargingLimit": call_result.NotifyChargingLimit,
    "ClearedChargingLimit": call_result.ClearedChargingLimit,
    "ReportChargingProfiles": call_result.ReportChargingProfiles,
    "NotifyMonitoringReport": call_result.NotifyMonitoringReport,
    "NotifyCustomerInformation": call_result.NotifyCustomerInformation,
    "PublishFirmwareStatusNotification": call_result.PublishFirmwareStatusNotification,
    "NotifyDisplayMessages": call_result.NotifyDisplayMessages,
    # No smart charging backend: no schedule will follow (K15), the EV's one is noted (K17).
    "NotifyEVChargingNeeds": functools.partial(
        call_result.NotifyEVChargingNeeds, status="Rejected"
    ),
    "NotifyEVChargingSchedule": functools.partial(
        call_result.NotifyEVChargingSchedule, status="Accepted"
    ),
    # No PKI: no certificate is signed (A02/A03), fetched (M02) or checked (M06).
    "SignCertificate": functools.partial(call_result.SignCertificate, status="Rejected"),
    "Get15118EVCertificate": functools.partial(
        call_result.Get15118EVCertificate, status="Failed", exi_response=""
    ),
    "GetCertificateStatus": functools.partial(call_result.GetCertificateStatus, status="Failed"),
}


def _on(action: str) -> Callable[[_Handler], _Handler]:
    """Typed `ocpp.routing.on`: route CALLs of `action` to the decorated method."""
    decorator: Callable[[_Handler], _Handler] = on(action)
    return decorator


def _utc_now_text() -> str:
    """Return the current UTC time as an OCPP dateTime string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CsmsChargePoint(_OcppChargePoint):  # type: ignore[misc]
    """The ocpp library's view of one connected 2.0.1 station, answering from behaviour."""

    def __init__(
        self, cp_id: str, connection: Any, csms: Csms, *, response_timeout_s: float
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout_s)
        self._csms = csms

    def _gate(self, action: str) -> None:
        """Raise InternalError when behaviour.fail_next asks to fail this CALL."""
        if self._csms.behaviour.consume_fail_next(action):
            raise InternalError(description=f"fail_next injected for {action}")

    def _id_token_info(self, id_token: dict[str, Any]) -> IdTokenInfoType:
        """Return the idTokenInfo the behaviour gives to an IdTokenType (snake_case keys)."""
        b = self._csms.behaviour
        group = None
        if b.parent_id_tag is not None:
            group = IdTokenType(id_token=b.parent_id_tag, type="Central")
        return IdTokenInfoType(status=b.tag_status(id_token["id_token"]), group_id_token=group)

    @_on("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        """Answer with the behaviour's boot status and interval."""
        self._gate("BootNotification")
        b = self._csms.behaviour
        return call_result.BootNotification(
            current_time=_utc_now_text(), interval=b.boot_interval_s, status=b.boot_status
        )

    @_on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        """Answer with the current UTC time."""
        self._gate("Heartbeat")
        return call_result.Heartbeat(current_time=_utc_now_text())

    @_on("Authorize")
    def on_authorize(
        self,
        id_token: dict[str, Any],
        certificate: str | None = None,
        iso15118_certificate_hash_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        """Answer with the idTokenInfo the behaviour gives to id_token, and the behaviour's
        certificateStatus when Plug & Charge contract data came with it."""
        self._gate("Authorize")
        contract = certificate is not None or iso15118_certificate_hash_data is not None
        return call_result.Authorize(
            id_token_info=self._id_token_info(id_token),
            certificate_status=self._csms.behaviour.contract_status if contract else None,
        )

    @_on("TransactionEvent")
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **_: Any) -> Any:
        """Answer with the idToken's idTokenInfo when the event carries one, else empty."""
        self._gate("TransactionEvent")
        info = None if id_token is None else self._id_token_info(id_token)
        return call_result.TransactionEvent(id_token_info=info)

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, data: Any = None, **_: Any) -> Any:
        """Echo data for the behaviour's echo vendor id; answer UnknownVendorId otherwise."""
        self._gate("DataTransfer")
        if vendor_id == self._csms.behaviour.echo_vendor_id:
            return call_result.DataTransfer(status="Accepted", data=data)
        return call_result.DataTransfer(status="UnknownVendorId")


def _fixed_answer_handler(action: str, answer: Callable[[], Any]) -> Callable[..., Any]:
    """Return an `@on` handler answering `action` with `answer()` (after fail_next)."""

    def handler(self: CsmsChargePoint, **_: Any) -> Any:
        self._gate(action)
        return answer()

    # The library finds routes by function name: it must equal the attribute name below.
    handler.__name__ = "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
    handler.__doc__ = f"Answer {action} with its fixed minimal CALLRESULT."
    return _on(action)(handler)


def _install_fixed_answers() -> None:
    """Add one routed method per FIXED_ANSWERS entry to CsmsChargePoint."""
    for action, answer in FIXED_ANSWERS.items():
        handler = _fixed_answer_handler(action, answer)
        setattr(CsmsChargePoint, handler.__name__, handler)


_install_fixed_answers()
