"""A CSMS in its own process that keeps a charge point busy (used by the benches).

Usage: python bench/_load_csms.py PORT CP_ID SECONDS [--load | --list-load]

It prints "ready" once listening. With --load, as soon as the charge point has booted it
sends CALLs back to back for SECONDS: GetConfiguration of every key, and DataTransfer
with a 64 KiB payload (schema validation and JSON work on the agent's event loop).
With --list-load it sends full SendLocalList updates of 10,000 entries back to back (a
large message to parse and validate, and a large list to store).
"""

from __future__ import annotations

import asyncio
import sys
import time

from simulator.csms import Csms

LIST_SIZE = 10_000


async def main(port: int, cp_id: str, seconds: float, load: bool, list_load: bool) -> None:
    async with Csms(port=port) as csms:
        print("ready", flush=True)
        await csms.wait_for("BootNotification", timeout_s=60)
        end = time.monotonic() + seconds
        blob = "x" * 65536
        calls = 0
        version = 0
        while time.monotonic() < end:
            if not (load or list_load):
                await asyncio.sleep(0.2)
                continue
            try:
                if list_load:
                    version += 1
                    entries = [
                        {"idTag": f"L{version % 7}-{i:06d}", "idTagInfo": {"status": "Accepted"}}
                        for i in range(LIST_SIZE)
                    ]
                    update = {
                        "listVersion": version,
                        "updateType": "Full",
                        "localAuthorizationList": entries,
                    }
                    await csms.call(cp_id, "SendLocalList", update, timeout_s=60)
                    calls += 1
                else:
                    await csms.call(cp_id, "GetConfiguration", {})
                    await csms.call(cp_id, "DataTransfer", {"vendorId": "bench", "data": blob})
                    calls += 2
            except (ConnectionError, KeyError):
                break  # the agent under test has stopped
        print(f"calls {calls}", flush=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]),
            sys.argv[2],
            float(sys.argv[3]),
            "--load" in sys.argv,
            "--list-load" in sys.argv,
        )
    )
