"""A null CSMS in its own process: answers every CALL at once, for the throughput benches.

Usage: python bench/_null_csms.py PORT [EXPECT]

It speaks OCPP 1.6J and 2.0.1 (whichever the client offers) on 127.0.0.1:PORT and answers
each CALL with the smallest response its schema accepts (a fresh transactionId for each
1.6 StartTransaction), without parsing the payload or validating anything: it stands for
an infinitely fast CSMS, so what a bench measures against it is the charge point's side
and the loopback transport. It never sends a CALL of its own.

It prints one line per event, "<name> <time.monotonic()> <details...>", flushed:
  listening T PORT              bound and accepting
  connect T CP_ID SUBPROTOCOL   a WebSocket connection was accepted
  boot T CP_ID                  a BootNotification arrived
  tx-first T CP_ID ACTION       the first transaction message on this connection
  tx-last T CP_ID N             this connection's N-th transaction message (N = EXPECT)
  closed T CP_ID N              the connection closed after N transaction messages
Transaction messages are StartTransaction, MeterValues, StopTransaction and
TransactionEvent. time.monotonic() is CLOCK_MONOTONIC, the same in every process of the
machine, so the bench compares these times with its own.

It must not: print per message (the count is kept in memory), or be used by tests (the
real test CSMS is simulator/csms.py, which validates everything).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

_NOW = '"2025-01-01T00:00:00Z"'
_BOOT = '{"currentTime":' + _NOW + ',"interval":300,"status":"Accepted"}'
_REPLIES = {
    "BootNotification": _BOOT,
    "Heartbeat": '{"currentTime":' + _NOW + "}",
    "Authorize": '{"idTagInfo":{"status":"Accepted"}}',
    "DataTransfer": '{"status":"Accepted"}',
}
_REPLIES_201 = {**_REPLIES, "Authorize": '{"idTokenInfo":{"status":"Accepted"}}'}
_TX_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction", "TransactionEvent"})
_transaction_ids = itertools.count(1)


def _say(*parts: object) -> None:
    """Print one event line with the current monotonic time."""
    print(parts[0], f"{time.monotonic():.6f}", *parts[1:], flush=True)


def _reply(action: str, replies: dict[str, str]) -> str:
    """The response payload (JSON text) for one CALL."""
    if action == "StartTransaction":
        transaction_id = next(_transaction_ids)
        return f'{{"idTagInfo":{{"status":"Accepted"}},"transactionId":{transaction_id}}}'
    return replies.get(action, "{}")


async def _serve(connection: ServerConnection, expect: int) -> None:
    """Answer one charge point until it disconnects."""
    cp_id = (connection.request.path if connection.request else "").rsplit("/", 1)[-1]
    replies = _REPLIES_201 if connection.subprotocol == "ocpp2.0.1" else _REPLIES
    _say("connect", cp_id, connection.subprotocol)
    count = 0
    try:
        async for message in connection:
            text = message if isinstance(message, str) else message.decode()
            if not text.startswith("[2,"):
                continue  # a reply to nothing we sent, or not a CALL
            # [2,"<uid>","<action>",{...}]: no JSON parsing on the null side
            parts = text.split('"', 4)
            if len(parts) < 5:
                continue
            unique_id, action = parts[1], parts[3]
            await connection.send(f'[3,"{unique_id}",{_reply(action, replies)}]')
            if action in _TX_ACTIONS:
                count += 1
                if count == 1:
                    _say("tx-first", cp_id, action)
                if count == expect:
                    _say("tx-last", cp_id, count)
            elif action == "BootNotification":
                _say("boot", cp_id)
    except ConnectionClosed:
        pass
    _say("closed", cp_id, count)


async def main(port: int, expect: int) -> None:
    """Serve until terminated."""

    async def handler(connection: ServerConnection) -> None:
        await _serve(connection, expect)

    protocols = [Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")]
    async with serve(handler, "127.0.0.1", port, subprotocols=protocols, ping_interval=None):
        _say("listening", port)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
