"""Bench: resident memory and CPU of the agent process, idle and charging, 1.6 and 2.0.1.

Targets (issue 8): the agent's RSS at most 1.5 times the floor measured in the same run
(a minimal charge point written with the `ocpp` library alone, connected and idle: the
cost of Python, asyncio, websockets and the library), and idle CPU below 1 % of a core.
For scale: a C++ OCPP client's simulator build idles at about 5.4 MB on this machine.

What runs: the real `cpagent run` (`python -m agent run --config FILE`, a subprocess)
with config/sim-two-evse.yaml adapted (the bench's CSMS, the OCPP version, a temporary
store, the local API off as shipped by default; logging as in the example, its output
discarded), against the test CSMS (simulator/csms.py, schema validation on) in this
process. Figures are read from /proc: VmRSS and VmHWM (peak) from /proc/<pid>/status,
CPU% from utime + stime in /proc/<pid>/stat over a window.

Rows per version:
- floor: the minimal `ocpp` charge point (inline below), booted, 2 connectors reported;
- idle: the agent, 2 EVSEs Available, booted, nothing happening;
- charging: the agent with an EV on each EVSE, both charging after a RemoteStart
  (MeterValues every 10 s as in the example config);
- idle, local API on: the same as idle with `api.enabled: true` (for information).

    python bench/footprint.py [--window-s 10] [--versions 1.6,2.0.1] [--json out.json]

It prints the figures beside the targets and exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _common import REPO_DIR, child_env, cpu_percent, rss_kb, verdict, write_json

from simulator.csms import Csms

RSS_TARGET_RATIO = 1.5
IDLE_CPU_TARGET_PERCENT = 1.0
START_TIMEOUT_S = 60.0
CP_ID = "BENCH-FOOTPRINT"
SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

FLOOR_SCRIPT = """
import asyncio, datetime, sys
import websockets

async def main(url, version):
    now = datetime.datetime.now(datetime.UTC).isoformat()
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call
        boot = call.BootNotification(charge_point_vendor="bench", charge_point_model="floor")
        statuses = [call.StatusNotification(connector_id=i, error_code="NoError",
                                            status="Available") for i in (0, 1, 2)]
        protocol = "ocpp1.6"
    else:
        from ocpp.v201 import ChargePoint, call
        boot = call.BootNotification(
            charging_station={"vendor_name": "bench", "model": "floor"}, reason="PowerUp")
        statuses = [call.StatusNotification(timestamp=now, connector_status="Available",
                                            evse_id=i, connector_id=1) for i in (1, 2)]
        protocol = "ocpp2.0.1"
    async with websockets.connect(url, subprotocols=[protocol]) as ws:
        cp = ChargePoint(url.rsplit("/", 1)[-1], ws)
        reader = asyncio.create_task(cp.start())
        await cp.call(boot, suppress=False)
        for status in statuses:
            await cp.call(status, suppress=False)
        print("ready", flush=True)
        await reader

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _agent_config(version: str, csms_url: str, store: Path, *, api: bool, plug: bool) -> str:
    """config/sim-two-evse.yaml pointed at the bench's CSMS and store, as YAML text."""
    document: dict[str, Any] = yaml.safe_load((REPO_DIR / "config/sim-two-evse.yaml").read_text())
    document["station"]["id"] = CP_ID
    document["csms"]["url"] = csms_url
    document["csms"]["ocpp_version"] = version
    document["store"]["path"] = str(store)
    document["api"] = {"enabled": api, "host": "127.0.0.1", "port": 0}
    document["simulator"]["auto_plug"] = plug
    if version == "2.0.1":  # the example's settings are 1.6 keys
        document["settings"] = {
            "OCPPCommCtrlr/HeartbeatInterval": 300,
            "SampledDataCtrlr/TxUpdatedInterval": 10,
        }
    return yaml.safe_dump(document)


@asynccontextmanager
async def _process(*argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child Python process (output discarded but a "ready" line), ended and reaped after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(REPO_DIR),
        env=child_env(),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


@dataclass(frozen=True)
class Timing:
    """How long to let a process settle after start-up, then how long to measure."""

    settle_s: float
    window_s: float


async def _measure(pid: int, timing: Timing) -> dict[str, float]:
    """After the settling pause: CPU% over the window, then RSS and peak RSS in MB."""
    await asyncio.sleep(timing.settle_s)  # bench pacing: start-up work is not idle work
    cpu = await cpu_percent(pid, timing.window_s)
    rss, peak = rss_kb(pid)
    return {"rss_mb": rss / 1024, "peak_rss_mb": peak / 1024, "cpu_percent": cpu}


async def _floor(csms: Csms, version: str, timing: Timing) -> dict[str, float]:
    """The minimal `ocpp` charge point, connected and idle."""
    cp_id = f"FLOOR-{version}"
    async with _process("-c", FLOOR_SCRIPT, f"{csms.url}/{cp_id}", version) as process:
        if process.stdout is None or not await process.stdout.readline():
            raise RuntimeError("the floor charge point did not start")
        return await _measure(process.pid, timing)


async def _booted(csms: Csms, version: str) -> None:
    """Wait until a new agent booted and reported every connector's status."""
    boots = len(csms.calls("BootNotification", CP_ID)) + 1
    statuses = len(csms.calls("StatusNotification", CP_ID)) + (3 if version == "1.6" else 2)
    await csms.wait_for("BootNotification", cp_id=CP_ID, count=boots, timeout_s=START_TIMEOUT_S)
    await csms.wait_for(
        "StatusNotification", cp_id=CP_ID, count=statuses, timeout_s=START_TIMEOUT_S
    )


async def _start_charging(csms: Csms, version: str) -> None:
    """RemoteStart on both EVSEs (cars already plugged in); wait until both started."""
    for evse_id in (1, 2):
        if version == "1.6":
            payload: dict[str, Any] = {"idTag": f"BENCH{evse_id}", "connectorId": evse_id}
            await csms.call(CP_ID, "RemoteStartTransaction", payload)
        else:
            payload = {
                "idToken": {"idToken": f"BENCH{evse_id}", "type": "Central"},
                "remoteStartId": evse_id,
                "evseId": evse_id,
            }
            await csms.call(CP_ID, "RequestStartTransaction", payload)
    if version == "1.6":
        await csms.wait_for("StartTransaction", cp_id=CP_ID, count=2, timeout_s=START_TIMEOUT_S)
    else:
        await csms.wait_for(
            "TransactionEvent",
            cp_id=CP_ID,
            where=lambda p: p["eventType"] == "Started",
            count=2,
            timeout_s=START_TIMEOUT_S,
        )


async def _agent(
    csms: Csms, version: str, timing: Timing, *, api: bool = False, charging: bool = False
) -> dict[str, float]:
    """The real `cpagent run`, idle or charging; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.yaml"
        text = _agent_config(version, csms.url, Path(tmp) / "agent.db", api=api, plug=charging)
        config.write_text(text)
        async with _process("-m", "agent", "run", "--config", str(config)) as process:
            await _booted(csms, version)
            if charging:
                await _start_charging(csms, version)
            figures = await _measure(process.pid, timing)
        await csms.wait_disconnected(CP_ID, START_TIMEOUT_S)
    return figures


async def _version(version: str, timing: Timing) -> dict[str, Any]:
    """Floor, idle, charging and API-on rows for one OCPP version."""
    async with Csms(subprotocols=(SUBPROTOCOL[version],)) as csms:
        rows = {
            "floor (ocpp library alone)": await _floor(csms, version, timing),
            "idle": await _agent(csms, version, timing),
            "charging (2 EVSEs)": await _agent(csms, version, timing, charging=True),
            "idle, local API on": await _agent(csms, version, timing, api=True),
        }
    floor_mb = rows["floor (ocpp library alone)"]["rss_mb"]
    for name, row in rows.items():
        row["rss_ratio"] = row["rss_mb"] / floor_mb
        if name in ("idle", "charging (2 EVSEs)"):
            row["meets_rss_target"] = row["rss_ratio"] <= RSS_TARGET_RATIO
    rows["idle"]["meets_cpu_target"] = rows["idle"]["cpu_percent"] < IDLE_CPU_TARGET_PERCENT
    return rows


def _print(results: dict[str, dict[str, Any]], window_s: float) -> None:
    print(
        f"agent footprint (targets: RSS <= {RSS_TARGET_RATIO} x the floor, idle CPU < "
        f"{IDLE_CPU_TARGET_PERCENT:.0f} %; CPU over {window_s:g} s windows)"
    )
    print(
        f"{'version':<7} {'process':<28} {'RSS MB':>7} {'peak MB':>8} {'x floor':>8} {'CPU %':>6}"
    )
    for version, rows in results.items():
        for name, row in rows.items():
            verdicts = []
            if "meets_rss_target" in row:
                verdicts.append(f"RSS {verdict(row['meets_rss_target'])}")
            if "meets_cpu_target" in row:
                verdicts.append(f"CPU {verdict(row['meets_cpu_target'])}")
            print(
                f"{version:<7} {name:<28} {row['rss_mb']:7.1f} {row['peak_rss_mb']:8.1f} "
                f"{row['rss_ratio']:8.2f} {row['cpu_percent']:6.2f}  {', '.join(verdicts)}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument(
        "--settle-s", type=float, default=2.0, help="pause after start-up, before the window"
    )
    parser.add_argument("--versions", default="1.6,2.0.1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    timing = Timing(args.settle_s, args.window_s)
    results = {v: await _version(v, timing) for v in args.versions.split(",")}
    _print(results, args.window_s)
    print(f"({time.perf_counter() - started:.0f} s)")
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
