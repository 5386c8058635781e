"""A lean CSMS in its own process for bench/scale.py: accepts everything, measures intervals.

Usage: python bench/_scale_csms.py [--port 0] [--cpu N] [--interval 10] [--compression]

It speaks just enough OCPP-J 1.6 and 2.0.1 to keep stations running (every CALL gets a
schema-valid CALLRESULT: boot Accepted with `--interval` as the heartbeat interval, every
token Accepted), with no schema validation and no per-message objects beyond a dict, so
that it is not the bottleneck of a fleet of thousands. It records, per station, the time
between successive Heartbeats and between successive periodic meter values (1.6
MeterValues; 2.0.1 TransactionEvent Updated/MeterValuePeriodic): the interval jitter the
CSMS sees is |interval - expected|.

Control is a line protocol on stdin/stdout: it prints "port N" once listening; "mark"
starts a measurement window (answers "ok"); "stats" answers one JSON line with what
arrived since the mark; "quit" ends it.

It must not: validate, retry, or call the stations (it only answers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of `values` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class LeanCsms:
    """Answers every CALL, records heartbeat and meter value intervals per station."""

    def __init__(self, interval_s: int) -> None:
        self.interval_s = interval_s
        self.connections = 0
        self.peak_connections = 0
        self.calls: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self._last: dict[tuple[str, str], float] = {}
        self.intervals: dict[str, list[float]] = {"heartbeat": [], "meter": []}
        self._tx_ids = 0
        self._now_text = ""
        self._now_second = -1
        self._cpu_mark = 0.0
        self._wall_mark = time.monotonic()

    def now_text(self) -> str:
        """The current time as an OCPP timestamp, formatted once per second."""
        now = time.time()
        if int(now) != self._now_second:
            self._now_second = int(now)
            self._now_text = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._now_text

    def mark(self) -> None:
        """Start a measurement window."""
        self.calls.clear()
        for values in self.intervals.values():
            values.clear()
        self._cpu_mark = time.process_time()
        self._wall_mark = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """What arrived since the mark: counts, interval jitter in ms, our CPU%."""
        wall = max(1e-9, time.monotonic() - self._wall_mark)
        out: dict[str, Any] = {
            "connections": self.connections,
            "peak_connections": self.peak_connections,
            "calls": dict(self.calls),
            "unknown": dict(self.unknown),
            "cpu_percent": 100.0 * (time.process_time() - self._cpu_mark) / wall,
            "seconds": wall,
        }
        for kind, values in self.intervals.items():
            jitter = [abs(v - self.interval_s) * 1000.0 for v in values]
            out[kind] = {
                "n": len(values),
                "mean_interval_s": sum(values) / len(values) if values else None,
                "jitter_p50_ms": percentile(jitter, 0.50),
                "jitter_p99_ms": percentile(jitter, 0.99),
                "jitter_max_ms": max(jitter) if jitter else None,
            }
        return out

    def _arrived(self, cp_id: str, kind: str) -> None:
        now = time.monotonic()
        key = (cp_id, kind)
        last = self._last.get(key)
        self._last[key] = now
        if last is not None:
            self.intervals[kind].append(now - last)

    def answer(self, cp_id: str, v201: bool, action: str, payload: dict[str, Any]) -> Any:
        """The CALLRESULT payload for one CALL (and the intervals it closes)."""
        self.calls[action] += 1
        accepted = {"status": "Accepted"}
        if action == "Heartbeat":
            self._arrived(cp_id, "heartbeat")
            return {"currentTime": self.now_text()}
        if action == "MeterValues":
            if not v201:
                self._arrived(cp_id, "meter")
            return {}
        if action == "TransactionEvent":
            if payload.get("triggerReason") == "MeterValuePeriodic":
                self._arrived(cp_id, "meter")
            return {"idTokenInfo": accepted} if "idToken" in payload else {}
        if action == "StatusNotification":
            return {}
        if action == "BootNotification":
            return {
                "status": "Accepted",
                "currentTime": self.now_text(),
                "interval": self.interval_s,
            }
        if action == "Authorize":
            return {"idTokenInfo": accepted} if v201 else {"idTagInfo": accepted}
        if action == "StartTransaction":
            self._tx_ids += 1
            return {"transactionId": self._tx_ids, "idTagInfo": accepted}
        if action == "StopTransaction":
            return {"idTagInfo": accepted} if "idTag" in payload else {}
        if action == "DataTransfer":
            return accepted
        if action not in ("NotifyReport", "NotifyEvent", "SecurityEventNotification"):
            self.unknown[action] += 1
        return {}

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one station until it disconnects."""
        path = ws.request.path if ws.request is not None else "/"
        cp_id = path.rstrip("/").rsplit("/", 1)[-1]
        v201 = ws.subprotocol == "ocpp2.0.1"
        self.connections += 1
        self.peak_connections = max(self.peak_connections, self.connections)
        try:
            async for raw in ws:
                try:
                    frame = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == 2):
                    continue  # a reply to a CALL we never send, or garbage
                result = self.answer(cp_id, v201, frame[2], frame[3])
                await ws.send(orjson.dumps([3, frame[1], result]).decode())
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1


async def _control(csms: LeanCsms) -> None:
    """Read commands from stdin until "quit" or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line in ("", "quit"):
            return
        if line == "mark":
            csms.mark()
            print("ok", flush=True)
        elif line == "stats":
            print(orjson.dumps(csms.stats()).decode(), flush=True)


async def main(port: int, interval_s: int, compression: bool) -> None:
    csms = LeanCsms(interval_s)
    async with serve(
        csms.handle,
        "127.0.0.1",
        port,
        subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")],
        ping_interval=None,  # the stations ping (their WebSocketPingInterval)
        compression="deflate" if compression else None,
        backlog=4096,
        max_size=2**22,
    ) as server:
        sockets = list(server.sockets)
        print(f"port {sockets[0].getsockname()[1]}", flush=True)
        await _control(csms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--interval", type=int, default=10, help="heartbeat interval to give")
    parser.add_argument("--compression", action="store_true", help="accept permessage-deflate")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(main(args.port, args.interval, args.compression))
