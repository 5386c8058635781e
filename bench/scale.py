"""How many simulated stations one process holds on one core (issue 8).

Usage:
    python bench/scale.py [--version 1.6|2.0.1] [--steps 500,1000,2000,3000,5000,...]
                          [--max N] [--window 30] [--settle 15] [--ramp-rate 100]
                          [--bare] [--no-gc-freeze] [--json FILE]

Three processes: a lean CSMS (bench/_scale_csms.py, pinned to CPU 1, accepts everything),
the fleet (simulator/fleet.py: every station the real agent with simulated drivers, its
in-memory store and its own websocket; pinned to CPU 0) and this orchestrator (CPU 1).
Every station boots, plugs an EV in, taps its card, and then sends a Heartbeat every
10 s (the boot interval) and meter values with 10 sampled values every 10 s
(MeterValueSampleInterval / TxUpdatedInterval: the agent's sampled data).

The fleet grows in steps; each step's new stations start evenly over a whole number of
10 s periods (at most `--ramp-rate` a second), so their timers are spread over the
period as a real fleet's would be. Once all of them are charging and `--settle` seconds
have passed, the step is measured for `--window` seconds:

- event-loop lag: how late a 100 ms ticker in the fleet process wakes, p50/p99/max;
- interval jitter seen by the CSMS: |interval - 10 s| between successive Heartbeats and
  between successive periodic meter values of a station, p50/p99/max;
- CPU% of the fleet process over the window, and the time it waited for its CPU while
  another process had it (from /proc schedstat: on a shared machine, the lag of a step
  whose wait is more than a few % says more about the machine than about the fleet);
- RSS per station: (RSS now - RSS before the first station) / stations.

It stops after the first step whose lag p99 exceeds 100 ms (the knee) or whose stations
did not all come up, and prints the table against the targets. `--bare` runs the same
steps with a fleet written with the `ocpp` library alone first (bench/_scale_bare.py),
as the floor. Both fleets run with the garbage collector policy of `cpagent fleet`
(simulator.fleet.HeapFreezer: gc.freeze() every second) unless `--no-gc-freeze`.
Figures are noisy on a shared machine; the script prints them and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

#: Targets of issue 8 (first target) and what the leading simulator reaches here.
TARGET_STATIONS = 5000
TARGET_LAG_P99_MS = 100.0
TARGET_RSS_KIB = 100.0
INTERVAL_S = 10
DEFAULT_STEPS = (500, 1000, 2000, 3000, 5000, 7500, 10000, 12500, 15000, 20000)
FLEET_CPU, CSMS_CPU = 0, 1


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _run_delay_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (/proc schedstat)."""
    with open("/proc/thread-self/schedstat", encoding="ascii") as schedstat:
        return int(schedstat.read().split()[1]) / 1e9


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the fleet process --------------------------------------------------------------------


async def _worker(kind: str, url: str, version: str, gc_freeze: bool) -> None:
    """Run a fleet and answer the orchestrator's commands, one JSON line each."""
    import logging

    from simulator.fleet import Fleet, FleetOptions, HeapFreezer

    logging.basicConfig(level=logging.ERROR)
    fleet: Any
    # The same garbage collector policy for both fleets (cpagent fleet's default).
    freezer = HeapFreezer(1.0) if gc_freeze else None
    if kind == "agent":
        fleet = Fleet(FleetOptions(url=url, version=version))
    else:
        from bench._scale_bare import BareFleet

        fleet = BareFleet(url, version)
    if freezer is not None:
        freezer.start()
    gc.collect()
    base_rss = _rss_kib()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(**data: Any) -> None:
        print(json.dumps(data), flush=True)

    try:
        while True:
            words = (await reader.readline()).decode().split()
            if not words or words[0] == "quit":
                return
            if words[0] == "grow":
                count, spread_s, timeout_s = int(words[1]), float(words[2]), float(words[3])
                began = time.monotonic()
                cpu = time.process_time()
                await fleet.grow_to(count, spread_s=spread_s)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        while fleet.counts()["charging"] < count:  # noqa: ASYNC110
                            await asyncio.sleep(0.5)  # a fleet-wide count: polled
                reply(
                    counts=fleet.counts(),
                    seconds=time.monotonic() - began,
                    cpu_s=time.process_time() - cpu,
                )
            elif words[0] == "measure":
                reply(
                    **await _measure(float(words[1]), base_rss, len(fleet)), counts=fleet.counts()
                )
    finally:
        began = time.monotonic()
        await fleet.stop()
        if freezer is not None:
            await freezer.stop()
        reply(stopped_s=time.monotonic() - began)


async def _measure(window_s: float, base_rss: int, stations: int) -> dict[str, Any]:
    """Event-loop lag of a 100 ms ticker, CPU% and RSS per station over the window."""
    loop = asyncio.get_running_loop()
    lags_ms: list[float] = []
    cpu, wall, waited = time.process_time(), time.monotonic(), _run_delay_s()
    end = loop.time() + window_s
    due = loop.time() + 0.1
    while due < end:
        await asyncio.sleep(due - loop.time())
        now = loop.time()
        lags_ms.append((now - due) * 1000.0)
        due = now + 0.1
    seconds = time.monotonic() - wall
    rss = _rss_kib()
    return {
        "lag_p50_ms": percentile(lags_ms, 0.50),
        "lag_p99_ms": percentile(lags_ms, 0.99),
        "lag_max_ms": max(lags_ms, default=0.0),
        "ticks": len(lags_ms),
        "cpu_percent": 100.0 * (time.process_time() - cpu) / seconds,
        # Time the fleet was ready to run while another process had its CPU: when this is
        # more than a few %, the machine was shared and the lag says little about us.
        "cpu_wait_percent": 100.0 * (_run_delay_s() - waited) / seconds,
        "rss_mib": rss / 1024.0,
        "rss_per_station_kib": (rss - base_rss) / max(1, stations),
    }


# -- the orchestrator ---------------------------------------------------------------------


class _Child:
    """A child process spoken to in lines over stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, line: str, timeout_s: float) -> str:
        if self.process.stdin is None or self.process.stdout is None:
            raise RuntimeError("no pipes")
        self.process.stdin.write((line + "\n").encode())
        await self.process.stdin.drain()
        async with asyncio.timeout(timeout_s):
            answer = await self.process.stdout.readline()
        if not answer:
            raise EOFError(f"the child ended (exit {await self.process.wait()})")
        return answer.decode().strip()

    async def close(self, timeout_s: float = 120.0) -> str:
        answer = ""
        with contextlib.suppress(Exception):
            answer = await self.ask("quit", timeout_s)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                async with asyncio.timeout(10):
                    await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        return answer


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    return env


async def _start_csms() -> tuple[_Child, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "_scale_csms.py"),
        "--cpu",
        str(CSMS_CPU),
        "--interval",
        str(INTERVAL_S),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=_env(),
    )
    if process.stdout is None:
        raise RuntimeError("no pipe")
    port = int((await process.stdout.readline()).split()[1])
    return _Child(process), port


async def _start_worker(
    kind: str, url: str, version: str, log: Path, *, no_gc_freeze: bool
) -> _Child:
    stderr = log.open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--worker",
        kind,
        "--url",
        url,
        "--version",
        version,
        *(["--no-gc-freeze"] if no_gc_freeze else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=_env(),
    )
    stderr.close()
    return _Child(process)


def _spread_s(added: int, ramp_rate: float) -> float:
    """A whole number of heartbeat periods, long enough to start `added` at `ramp_rate`/s."""
    return INTERVAL_S * max(1, math.ceil(added / ramp_rate / INTERVAL_S))


async def run_fleet(kind: str, args: argparse.Namespace, log: Path) -> list[dict[str, Any]]:
    """Ramp one fleet (agent or bare) through the steps; the measured rows."""
    rows: list[dict[str, Any]] = []
    csms, port = await _start_csms()
    url = f"ws://127.0.0.1:{port}/ocpp"
    worker = await _start_worker(kind, url, args.version, log, no_gc_freeze=args.no_gc_freeze)
    previous = 0
    try:
        for count in [s for s in args.steps if s <= args.max]:
            added = count - previous
            spread = _spread_s(added, args.ramp_rate)
            timeout = spread + 60.0 + count / 50.0
            grown = json.loads(await worker.ask(f"grow {count} {spread} {timeout}", timeout + 60))
            previous = count
            await asyncio.sleep(args.settle)  # the new stations' first intervals pass
            await csms.ask("mark", 10)
            measured = json.loads(await worker.ask(f"measure {args.window}", args.window + 120))
            seen = json.loads(await csms.ask("stats", 10))
            row = {
                "fleet": kind,
                "version": args.version,
                "stations": count,
                "charging": measured["counts"]["charging"],
                "ramp_cpu_ms_per_added_station": 1000.0 * grown["cpu_s"] / max(1, added),
                **{k: v for k, v in measured.items() if k != "counts"},
                "heartbeat": seen["heartbeat"],
                "meter": seen["meter"],
                "csms_cpu_percent": seen["cpu_percent"],
                "csms_calls": seen["calls"],
                "csms_unknown": seen["unknown"],
            }
            rows.append(row)
            _print_row(row)
            if row["lag_p99_ms"] > TARGET_LAG_P99_MS or row["charging"] < count:
                break
    finally:
        stopped = await worker.close()
        await csms.close(10)
        if stopped:
            print(f"  ({kind} fleet stopped in {json.loads(stopped)['stopped_s']:.1f} s)")
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_HEADER = (
    "| fleet | stations | up | lag p50 ms | lag p99 ms | lag max ms | CPU % | CPU wait % "
    "| RSS/station KiB "
    "| heartbeat jitter p50/p99/max ms | meter jitter p50/p99/max ms | CSMS CPU % |"
)


def _print_row(row: dict[str, Any]) -> None:
    def jitter(kind: str) -> str:
        j = row[kind]
        return "/".join(_fmt(j[k], 0) for k in ("jitter_p50_ms", "jitter_p99_ms", "jitter_max_ms"))

    print(
        f"| {row['fleet']} {row['version']} | {row['stations']} | {row['charging']} "
        f"| {_fmt(row['lag_p50_ms'])} | {_fmt(row['lag_p99_ms'])} | {_fmt(row['lag_max_ms'], 0)} "
        f"| {_fmt(row['cpu_percent'], 0)} | {_fmt(row.get('cpu_wait_percent'), 0)} "
        f"| {_fmt(row['rss_per_station_kib'], 0)} "
        f"| {jitter('heartbeat')} | {jitter('meter')} | {_fmt(row.get('csms_cpu_percent'), 0)} |",
        flush=True,
    )


def _verdict(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The largest step within the lag target, and its RSS per station."""
    good = [r for r in rows if r["fleet"] == kind and r["lag_p99_ms"] <= TARGET_LAG_P99_MS]
    best = max(good, key=lambda r: r["stations"], default=None)
    return {
        "fleet": kind,
        "stations_within_lag_target": best["stations"] if best else 0,
        "rss_per_station_kib": best["rss_per_station_kib"] if best else None,
        "cpu_percent": best["cpu_percent"] if best else None,
    }


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cpagent-scale-") as tmp:
        log = Path(tmp) / "worker.log"
        print(
            f"OCPP {args.version}: heartbeat and 10 sampled values every {INTERVAL_S} s per"
            f" station; fleet on CPU {FLEET_CPU}, CSMS on CPU {CSMS_CPU}; window {args.window} s"
        )
        print(_HEADER)
        print("|" + " --- |" * 12)
        rows: list[dict[str, Any]] = []
        if args.bare:
            rows += await run_fleet("bare", args, log)
        rows += await run_fleet("agent", args, log)
        errors = [line for line in log.read_text(errors="replace").splitlines() if line]
    verdicts = [_verdict(rows, "agent")] + ([_verdict(rows, "bare")] if args.bare else [])
    print()
    for verdict in verdicts:
        rss = verdict["rss_per_station_kib"]
        print(
            f"{verdict['fleet']}: {verdict['stations_within_lag_target']} stations with lag p99"
            f" <= {TARGET_LAG_P99_MS:.0f} ms (target >= {TARGET_STATIONS}),"
            f" {_fmt(rss, 0)} KiB per station there (target <= {TARGET_RSS_KIB:.0f})"
        )
    if errors:
        print(f"fleet stderr: {len(errors)} lines; last: {errors[-1][:200]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:  # noqa: ASYNC230 (at the end)
            json.dump({"rows": rows, "verdicts": verdicts, "args": vars(args)}, out, indent=2)
    return 0


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument(
        "--steps",
        type=lambda text: [int(s) for s in text.split(",")],
        default=list(DEFAULT_STEPS),
        help="station counts, comma-separated",
    )
    parser.add_argument("--max", type=int, default=20000, help="largest step to run")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per step")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--ramp-rate", type=float, default=100.0, help="stations started per s")
    parser.add_argument("--bare", action="store_true", help="also run the bare ocpp fleet")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the GC as it is")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures")
    parser.add_argument("--worker", choices=("agent", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _parse()
    if arguments.worker:
        os.sched_setaffinity(0, {FLEET_CPU})
        worker = _worker(
            arguments.worker, arguments.url, arguments.version, not arguments.no_gc_freeze
        )
        asyncio.run(worker)
        sys.exit(0)
    os.sched_setaffinity(0, {CSMS_CPU})
    sys.exit(asyncio.run(main(arguments)))
