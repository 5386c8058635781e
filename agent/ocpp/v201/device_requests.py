"""OCPP 2.0.1 device model requests (B05-B08): GetVariables, SetVariables, GetBaseReport,
GetReport and the NotifyReports that follow.

Split out of the adapter: it answers from the device model (device_model.py) and the
report builders (reports.py), and sends a report's NotifyReports one after another once
the answer is on the wire.

This module must not: act on a variable's meaning (the adapter's listeners do), or hold
the connection (it asks the adapter for the endpoint when a report is to be sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from agent.core.ports import Clock
from agent.ocpp.rpc import AfterReply, CallTimeout, Handler, RpcEndpoint, RpcError
from agent.ocpp.v201.device_model import (
    DeviceModel,
    RequestLimitExceeded,
    get_variables,
    set_variables,
    wire_size,
)
from agent.ocpp.v201.reports import (
    ReportData,
    base_report,
    check_get_report_request,
    custom_report,
    notify_report_limits,
    report_status,
    split_notify_report,
)

log = logging.getLogger("agent.ocpp.v201.adapter")

#: The bytes a NotifyReport frame adds around its payload (BytesPerMessage counts them).
NOTIFY_REPORT_FRAME_BYTES: Final = wire_size([2, "0" * 36, "NotifyReport", {}]) - wire_size({})


def _refusal(status: str, reason: str) -> dict[str, Any]:
    """A response refusing a request, with the Appendix 5 reason code."""
    return {"status": status, "statusInfo": {"reasonCode": reason}}


class DeviceModelRequests:
    """The CSMS's device model requests, answered from `model`."""

    def __init__(
        self,
        *,
        model: DeviceModel,
        clock: Clock,
        endpoint: Callable[[], RpcEndpoint | None],
        spawn_call: Callable[[Coroutine[Any, Any, Any], str], None],
    ) -> None:
        self.model = model
        self.clock = clock
        self._endpoint_of = endpoint
        self._spawn_call = spawn_call
        self._report_lock = asyncio.Lock()  # one report's NotifyReports at a time, in order

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this module answers, by action."""
        return {
            "GetBaseReport": self._on_get_base_report,
            "GetReport": self._on_get_report,
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
        }

    async def _send(
        self, endpoint: RpcEndpoint, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Call `action`; None if the CSMS failed it (logged). Raises ConnectionLost."""
        try:
            return await endpoint.call(action, payload)
        except (RpcError, CallTimeout) as exc:
            log.warning("%s failed: %s", action, exc)
            return None

    async def _on_get_variables(self, payload: dict[str, Any]) -> dict[str, Any]:
        """B06; a request above the DeviceDataCtrlr limits is the CALLERROR it names."""
        try:
            return get_variables(self.model, payload)
        except RequestLimitExceeded as exc:
            raise RpcError(exc.code, exc.description) from exc

    async def _on_set_variables(self, payload: dict[str, Any]) -> dict[str, Any]:
        """B05: each value validated by the device model, applied only when Accepted."""
        try:
            return set_variables(self.model, payload)
        except RequestLimitExceeded as exc:
            raise RpcError(exc.code, exc.description) from exc

    async def _on_get_base_report(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """B07: answer, then send the NotifyReports."""
        try:
            items = base_report(self.model, payload["reportBase"])
        except ValueError:
            return {"status": "NotSupported"}
        return self._report(int(payload["requestId"]), items)

    async def _on_get_report(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """B08: answer (EmptyResultSet when nothing matches, B08.FR.15), then report."""
        try:
            check_get_report_request(self.model, payload)
        except RequestLimitExceeded as exc:
            raise RpcError(exc.code, exc.description) from exc
        try:
            items = custom_report(
                self.model,
                payload.get("componentCriteria", ()),
                payload.get("componentVariable", ()),
            )
        except ValueError:
            return {"status": "NotSupported"}
        if not items:
            return {"status": report_status(items)}
        return self._report(int(payload["requestId"]), items)

    def _report(self, request_id: int, items: list[ReportData]) -> dict[str, Any] | AfterReply:
        """Accepted, with the NotifyReports (requestId echoed) sent once that is on the wire."""
        max_items, max_bytes = notify_report_limits(self.model)
        try:
            payloads = split_notify_report(
                request_id,
                items,
                items_per_message=max_items,
                bytes_per_message=max_bytes,
                generated_at=self.clock.now(),
                overhead_bytes=NOTIFY_REPORT_FRAME_BYTES,
            )
        except ValueError as exc:
            log.warning("report %s cannot be sent: %s", request_id, exc)
            return _refusal("Rejected", "TooLargeElement")
        endpoint = self._endpoint_of()
        if endpoint is None:
            return {"status": "Rejected"}

        def send() -> None:
            self._spawn_call(self._send_report(endpoint, payloads), f"report-{request_id}")

        return AfterReply({"status": "Accepted"}, send)

    async def _send_report(self, endpoint: RpcEndpoint, payloads: list[dict[str, Any]]) -> None:
        """Each NotifyReport after the previous one's answer; a failure ends the report."""
        request_id = payloads[0]["requestId"]
        async with self._report_lock:
            for payload in payloads:
                if await self._send(endpoint, "NotifyReport", payload) is None:
                    log.warning("report %s stopped at seqNo %s", request_id, payload["seqNo"])
                    return
