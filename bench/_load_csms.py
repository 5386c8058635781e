"""A CSMS in its own process that keeps a charge point busy (used by the benches).

Usage: python bench/_load_csms.py PORT CP_ID SECONDS [--load]

It prints "ready" once listening. With --load, as soon as the charge point has booted it
sends CALLs back to back for SECONDS: GetConfiguration of every key, and DataTransfer
with a 64 KiB payload (schema validation and JSON work on the agent's event loop).
"""

from __future__ import annotations

import asyncio
import sys
import time

from simulator.csms import Csms


async def main(port: int, cp_id: str, seconds: float, load: bool) -> None:
    async with Csms(port=port) as csms:
        print("ready", flush=True)
        await csms.wait_for("BootNotification", timeout_s=60)
        end = time.monotonic() + seconds
        blob = "x" * 65536
        calls = 0
        while time.monotonic() < end:
            if not load:
                await asyncio.sleep(0.2)
                continue
            try:
                await csms.call(cp_id, "GetConfiguration", {})
                await csms.call(cp_id, "DataTransfer", {"vendorId": "bench", "data": blob})
            except (ConnectionError, KeyError):
                break  # the agent under test has stopped
            calls += 2
        print(f"calls {calls}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), "--load" in sys.argv))
