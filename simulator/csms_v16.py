"""The test CSMS's OCPP 1.6J side: how it answers each charge-point-initiated 1.6 action.

Responsibilities:
- `CsmsChargePoint`: the `ocpp.v16.ChargePoint` of one connection negotiated as `ocpp1.6`,
  with an `@on` handler for every CALL a 1.6 charge point sends, answering from the
  server's current `CsmsBehaviour` (read at each CALL, so tests may change it while the
  server runs). Schema validation stays ON (the library's, both directions).

It must not: touch the websocket, record frames or settle `Received` entries (simulator.csms
does that in its connection wrapper), nor start tasks. It is a part of simulator/csms.py
split out by responsibility, so it may read that module's private helpers of the `Csms` it
serves; simulator.csms imports this module, never the other way round at runtime.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as _OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo

if TYPE_CHECKING:
    from simulator.csms import Csms

SUBPROTOCOL = "ocpp1.6"
VERSION = "1.6"

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_Handler], _Handler]:
    """Typed `ocpp.routing.on`: route CALLs of `action` to the decorated method."""
    decorator: Callable[[_Handler], _Handler] = on(action)
    return decorator


def _utc_now_text() -> str:
    """Return the current UTC time as an OCPP dateTime string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _acknowledge(action: str) -> Callable[..., Any]:
    """Return an `@on` handler answering `action` with its empty CALLRESULT."""

    def handler(self: CsmsChargePoint, **_: Any) -> Any:
        self._gate(action)
        return getattr(call_result, action)()

    # The library finds routes by function name, so it must equal the attribute name.
    handler.__name__ = "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
    return _on(action)(handler)


class CsmsChargePoint(_OcppChargePoint):  # type: ignore[misc]
    """The ocpp library's view of one connected 1.6 charge point, answering from behaviour."""

    def __init__(
        self, cp_id: str, connection: Any, csms: Csms, *, response_timeout_s: float
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout_s)
        self._csms = csms

    def _gate(self, action: str) -> None:
        """Raise InternalError when behaviour.fail_next asks to fail this CALL."""
        if self._csms.behaviour.consume_fail_next(action):
            raise InternalError(description=f"fail_next injected for {action}")

    def _id_tag_info(self, id_tag: str) -> IdTagInfo:
        """Return the idTagInfo the behaviour gives to id_tag."""
        b = self._csms.behaviour
        return IdTagInfo(status=b.tag_status(id_tag), parent_id_tag=b.parent_id_tag)

    on_status_notification = _acknowledge("StatusNotification")
    on_meter_values = _acknowledge("MeterValues")
    on_diagnostics_status_notification = _acknowledge("DiagnosticsStatusNotification")
    on_firmware_status_notification = _acknowledge("FirmwareStatusNotification")

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
    def on_authorize(self, id_tag: str, **_: Any) -> Any:
        """Answer with the idTagInfo the behaviour gives to id_tag."""
        self._gate("Authorize")
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @_on("StartTransaction")
    def on_start_transaction(self, id_tag: str, **_: Any) -> Any:
        """Answer with the next transactionId of this CSMS run and the tag's idTagInfo."""
        self._gate("StartTransaction")
        return call_result.StartTransaction(
            transaction_id=self._csms._next_transaction_id(),
            id_tag_info=self._id_tag_info(id_tag),
        )

    @_on("StopTransaction")
    def on_stop_transaction(self, id_tag: str | None = None, **_: Any) -> Any:
        """Answer with the tag's idTagInfo when an idTag was given."""
        self._gate("StopTransaction")
        info = None if id_tag is None else self._id_tag_info(id_tag)
        return call_result.StopTransaction(id_tag_info=info)

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, data: str | None = None, **_: Any) -> Any:
        """Echo data for the behaviour's echo vendor id; answer UnknownVendorId otherwise."""
        self._gate("DataTransfer")
        if vendor_id == self._csms.behaviour.echo_vendor_id:
            return call_result.DataTransfer(status="Accepted", data=data)
        return call_result.DataTransfer(status="UnknownVendorId")
