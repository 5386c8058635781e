"""A handler's follow-up runs only once its CALLRESULT is on the wire (OCPP 1.6 Reset:
the charge point answers, then reboots)."""

from __future__ import annotations

import json
from typing import Any

from agent.ocpp.rpc import AfterReply
from tests.unit.test_rpc import Connect, connect  # noqa: F401 - the fixture


async def test_after_reply_runs_after_the_callresult_is_sent(connect: Connect) -> None:  # noqa: F811
    seen_when_then_ran: list[list[str]] = []

    async def reset(payload: dict[str, Any]) -> AfterReply:
        return AfterReply({"status": "Accepted"}, lambda: seen_when_then_ran.append(sent()))

    peer = connect(handlers={"Reset": reset})

    def sent() -> list[str]:
        return [frame.text for frame in peer.frames if frame.outgoing]

    peer.push([2, "r1", "Reset", {"type": "Soft"}])
    reply = await peer.sent()
    assert reply == [3, "r1", {"status": "Accepted"}]
    assert seen_when_then_ran == [[json.dumps(reply, separators=(",", ":"))]]


async def test_after_reply_does_not_run_when_the_result_is_invalid(connect: Connect) -> None:  # noqa: F811
    ran: list[bool] = []

    async def reset(payload: dict[str, Any]) -> AfterReply:
        return AfterReply({"status": "Maybe"}, lambda: ran.append(True))

    peer = connect(handlers={"Reset": reset})
    peer.push([2, "r2", "Reset", {"type": "Hard"}])
    reply = await peer.sent()
    assert reply[0] == 4 and reply[2] == "InternalError"
    assert ran == []
