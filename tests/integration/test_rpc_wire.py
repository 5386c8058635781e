"""RpcEndpoint over a real WebSocket against the `ocpp` library's OCPP 1.6 CSMS side.

The CSMS is `ocpp.v16.ChargePoint` on a `websockets` server on 127.0.0.1 (port 0); it
validates every message against the official schemas, so a round trip here proves our
frames are what a third-party CSMS accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AvailabilityType, RegistrationStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from agent.ocpp.dialects import OCPP16
from agent.ocpp.rpc import Handler, RpcEndpoint

WAIT_S = 5.0
NOW = "2024-05-01T12:00:00Z"


class Csms(ChargePoint):  # type: ignore[misc]
    """The ocpp library's central system side, recording every raw frame it receives."""

    def __init__(self, cp_id: str, connection: ServerConnection) -> None:
        super().__init__(cp_id, connection, response_timeout=WAIT_S)
        self.raw_in: asyncio.Queue[str] = asyncio.Queue()
        self.boots: list[tuple[str, str]] = []

    async def route_message(self, raw_msg: str) -> None:
        self.raw_in.put_nowait(raw_msg)
        await super().route_message(raw_msg)

    @on(Action.boot_notification)  # type: ignore[untyped-decorator]
    def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        self.boots.append((charge_point_vendor, charge_point_model))
        return call_result.BootNotification(
            current_time=NOW, interval=300, status=RegistrationStatus.accepted
        )

    async def raw_reply(self, unique_id: str) -> list[Any]:
        """Wait for the frame answering our raw CALL unique_id."""
        while True:
            frame = json.loads(await asyncio.wait_for(self.raw_in.get(), WAIT_S))
            if frame[1] == unique_id:
                return list(frame)


@dataclass
class Link:
    csms: Csms
    endpoint: RpcEndpoint
    seen_by_handlers: list[tuple[str, dict[str, Any]]]


async def change_availability(payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Scheduled"}


async def get_configuration(payload: dict[str, Any]) -> dict[str, Any]:
    known = {"HeartbeatInterval": "300"}
    keys = payload.get("key", list(known))
    return {
        "configurationKey": [
            {"key": k, "readonly": False, "value": known[k]} for k in keys if k in known
        ],
        "unknownKey": [k for k in keys if k not in known],
    }


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    """A CSMS on loopback and our endpoint connected to it as charge point CP1."""
    csms_ready: asyncio.Future[Csms] = asyncio.get_running_loop().create_future()

    async def on_connect(connection: ServerConnection) -> None:
        csms = Csms("CP1", connection)
        csms_ready.set_result(csms)
        with contextlib.suppress(ConnectionClosed):
            await csms.start()

    seen: list[tuple[str, dict[str, Any]]] = []

    def recording(action: str, handler: Handler) -> Handler:
        async def wrapper(payload: dict[str, Any]) -> dict[str, Any]:
            seen.append((action, payload))
            return await handler(payload)

        return wrapper

    handlers = {
        "ChangeAvailability": recording("ChangeAvailability", change_availability),
        "GetConfiguration": recording("GetConfiguration", get_configuration),
    }
    async with serve(on_connect, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp1.6")]) as server:
        port = server.sockets[0].getsockname()[1]
        ws: ClientConnection
        async with connect(
            f"ws://127.0.0.1:{port}/CP1", subprotocols=[Subprotocol(OCPP16.subprotocol)]
        ) as ws:
            assert ws.subprotocol == "ocpp1.6"
            endpoint = RpcEndpoint(ws, OCPP16, handlers=handlers, response_timeout_s=WAIT_S)
            serving = asyncio.create_task(endpoint.serve())
            csms = await asyncio.wait_for(csms_ready, WAIT_S)
            yield Link(csms, endpoint, seen)
        await asyncio.wait_for(serving, WAIT_S)
        assert endpoint.closed


async def test_boot_notification_round_trip_with_ocpp_library_csms(link: Link) -> None:
    result = await link.endpoint.call(
        "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 1"}
    )
    assert result == {"currentTime": NOW, "interval": 300, "status": "Accepted"}
    assert link.csms.boots == [("Acme", "Wallbox 1")]


async def test_csms_change_availability_gets_our_handlers_result(link: Link) -> None:
    response = await link.csms.call(
        call.ChangeAvailability(connector_id=1, type=AvailabilityType.inoperative),
        suppress=False,
    )
    assert response == call_result.ChangeAvailability(status="Scheduled")
    assert link.seen_by_handlers == [
        ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    ]


async def test_csms_get_configuration_gets_our_handlers_result(link: Link) -> None:
    response = await link.csms.call(
        call.GetConfiguration(key=["HeartbeatInterval", "Nope"]), suppress=False
    )
    assert response.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    ]
    assert response.unknown_key == ["Nope"]


async def test_csms_call_for_unhandled_action_gets_not_supported(link: Link) -> None:
    with pytest.raises(NotSupportedError):
        await link.csms.call(call.ClearCache(), suppress=False)


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"connectorId": 1, "type": "Sometimes"}, "PropertyConstraintViolation", "type"),
        ({"connectorId": 1}, "OccurenceConstraintViolation", "type"),
        ({"connectorId": "one", "type": "Operative"}, "TypeConstraintViolation", "connectorId"),
        ({"connectorId": 1, "type": "Operative", "x": 0}, "FormationViolation", "x"),
    ],
)
async def test_csms_raw_schema_violating_call_gets_the_right_callerror(
    link: Link, payload: dict[str, Any], code: str, field: str
) -> None:
    await link.csms._connection.send(json.dumps([2, "raw-1", "ChangeAvailability", payload]))
    reply = await link.csms.raw_reply("raw-1")
    assert reply[:3] == [4, "raw-1", code]
    assert reply[4] == {"field": field}
    assert link.seen_by_handlers == []
