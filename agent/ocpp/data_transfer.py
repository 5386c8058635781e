"""DataTransfer, the same in OCPP 1.6 (section 4.3, 5.6) and 2.0.1 (P01/P02).

Responsible for: answering a CSMS's DataTransfer from the vendor handler registered for
its vendorId (UnknownVendorId otherwise), and building and sending one to the CSMS. The
adapters keep the handlers and say when they are online.

Must not: know a vendor's payloads (the handlers do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.ocpp.rpc import ConnectionLost, RpcEndpoint

#: A vendor's handler: (messageId, data) -> (status, data or None).
VendorHandler = Callable[[str | None, Any], Awaitable[tuple[str, Any]]]


async def answer(handlers: Mapping[str, VendorHandler], payload: dict[str, Any]) -> dict[str, Any]:
    """The answer to a CSMS's DataTransfer: its vendor's handler's, or UnknownVendorId."""
    handler = handlers.get(payload["vendorId"])
    if handler is None:
        return {"status": "UnknownVendorId"}
    status, data = await handler(payload.get("messageId"), payload.get("data"))
    return {"status": status} if data is None else {"status": status, "data": data}


async def send(
    endpoint: RpcEndpoint | None, vendor_id: str, message_id: str | None, data: Any
) -> dict[str, Any]:
    """Send a DataTransfer (messageId and data omitted when None) and return the answer;
    raises ConnectionLost without an endpoint, RpcError or CallTimeout as the call does."""
    if endpoint is None:
        raise ConnectionLost("not connected and accepted")
    payload: dict[str, Any] = {"vendorId": vendor_id}
    if message_id is not None:
        payload["messageId"] = message_id
    if data is not None:
        payload["data"] = data
    return await endpoint.call("DataTransfer", payload)
