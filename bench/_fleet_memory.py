"""Where a fleet station's memory goes: RSS and Python objects per station (issue 8).

Usage:
    python bench/_fleet_memory.py [--version 1.6|2.0.1] [--count 500] [--settle 20]
                                  [--trace] [--frames 30] [--top 40] [--json FILE]

Runs `--count` fleet stations (simulator/fleet.py: the real agent, simulated drivers,
in-memory store) in this process against the lean CSMS of bench/scale.py
(bench/_scale_csms.py, its own process), waits until every one is charging, lets them
run `--settle` seconds (a Heartbeat and meter values every 10 s), then prints per
station:

- RSS: (RSS now - RSS before the first station) / count, after a full collection;
- asyncio tasks, by coroutine;
- with `--trace`: the Python heap (tracemalloc, which slows everything and adds its own
  RSS: the RSS figure of a traced run is not the fleet's) grouped three ways: by the
  allocating line, by the innermost frame in this repository (agent/, drivers/,
  simulator/: who asked for it), and by the repository's outermost-but-one frame below
  the fleet (which part of the agent the object belongs to).

It prints figures and exits 0; it asserts nothing. Per-station figures are the mean over
the fleet, so shared objects (one session machine for all, a shared catalogue) count a
fraction of a station each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

from bench._common import child_env  # noqa: E402

TARGET_RSS_KIB = 100.0  # issue 8's first scale target, per station
_OWN = tuple(str(REPO_DIR / part) + "/" for part in ("agent", "drivers", "simulator"))
_FLEET = str(REPO_DIR / "simulator" / "fleet.py")
_APP = str(REPO_DIR / "agent" / "app.py")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _short(filename: str) -> str:
    """A path relative to the repository, or from its site-packages / stdlib root."""
    if filename.startswith(str(REPO_DIR) + "/"):
        return filename[len(str(REPO_DIR)) + 1 :]
    for marker in ("site-packages/", "/lib/python3"):
        index = filename.find(marker)
        if index >= 0:
            return filename[index + len(marker) :].lstrip("/0123456789.")
    return filename


def _line(frame: tracemalloc.Frame) -> str:
    text = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{_short(frame.filename)}:{frame.lineno}  {text[:70]}"


def _owners(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    """(innermost repository frame, the repository frame just below the fleet/app)."""
    inner = outer = "(outside the repository)"
    frames = list(traceback)  # the oldest call first (tracemalloc's order)
    for frame in reversed(frames):
        if frame.filename.startswith(_OWN):
            inner = _line(frame)
            break
    # Walking from the outermost call in: the first repository frame that is not the
    # fleet or the app's run loop names the component.
    for frame in frames:
        if frame.filename.startswith(_OWN) and frame.filename not in (_FLEET, _APP):
            outer = f"{_short(frame.filename)}:{frame.lineno}"
            break
    return inner, outer


def _group(diff: list[tracemalloc.StatisticDiff], count: int) -> dict[str, list[Any]]:
    by_line: Counter[str] = Counter()
    by_inner: Counter[str] = Counter()
    by_outer: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    by_repo_file: Counter[str] = Counter()
    for stat in diff:
        if stat.size_diff == 0:
            continue
        top = stat.traceback[-1]
        by_line[_line(top)] += stat.size_diff
        by_file[_short(top.filename)] += stat.size_diff
        inner, outer = _owners(stat.traceback)
        by_inner[inner] += stat.size_diff
        by_repo_file[inner.split(":")[0]] += stat.size_diff
        by_outer[outer] += stat.size_diff

    def table(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(key, size / 1024.0 / count) for key, size in counter.most_common()]

    return {
        "by_file": table(by_file),
        "by_line": table(by_line),
        "by_repo_frame": table(by_inner),
        "by_repo_file": table(by_repo_file),
        "by_component": table(by_outer),
    }


def _tasks_by_coroutine(count: int) -> list[tuple[str, float]]:
    names: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    return [(name, n / count) for name, n in names.most_common()]


async def _start_csms() -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "_scale_csms.py"),
        "--interval",
        "10",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    if process.stdout is None:
        raise RuntimeError("no pipe")
    line = (await process.stdout.readline()).decode().split()
    if len(line) != 2 or line[0] != "port":
        raise RuntimeError(f"the CSMS did not start: {line}")
    return process, int(line[1])


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    from simulator.fleet import Fleet, FleetOptions

    logging.basicConfig(level=logging.ERROR)
    for noisy in ("transitions", "websockets"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    csms, port = await _start_csms()
    result: dict[str, Any] = {"version": args.version, "count": args.count}
    try:
        fleet = Fleet(FleetOptions(url=f"ws://127.0.0.1:{port}/ocpp", version=args.version))
        # Import and warm everything a station uses once, outside the figures: one station
        # of another fleet (other ids) started and stopped before the baseline.
        warm = Fleet(
            FleetOptions(url=f"ws://127.0.0.1:{port}/ocpp", version=args.version, id_prefix="WARM-")
        )
        await warm.grow_to(1)
        await warm.wait_until(lambda f: f.counts()["charging"] == 1, timeout_s=30)
        await warm.stop()
        gc.collect()
        if args.trace:
            tracemalloc.start(args.frames)
        base_rss = _rss_kib()
        before = tracemalloc.take_snapshot() if args.trace else None
        began = time.monotonic()
        await fleet.grow_to(args.count, spread_s=args.count / args.rate)
        await fleet.wait_until(
            lambda f: f.counts()["charging"] == args.count, timeout_s=60 + args.count / 5
        )
        result["ramp_s"] = time.monotonic() - began
        await asyncio.sleep(args.settle)  # let them run: heartbeats and meter values
        result["counts"] = fleet.counts()
        gc.collect()
        result["rss_per_station_kib"] = (_rss_kib() - base_rss) / args.count
        result["tasks_per_station"] = _tasks_by_coroutine(args.count)
        if before is not None:
            after = tracemalloc.take_snapshot()
            diff = after.compare_to(before, "traceback")
            result["python_per_station_kib"] = sum(s.size_diff for s in diff) / 1024.0 / args.count
            result.update(_group(diff, args.count))
            tracemalloc.stop()
        await fleet.stop()
    finally:
        if csms.stdin is not None:
            csms.stdin.write(b"quit\n")
            await csms.stdin.drain()
        await csms.wait()
    return result


def _print(result: dict[str, Any], top: int) -> None:
    print(
        f"OCPP {result['version']}, {result['count']} stations "
        f"(ramp {result['ramp_s']:.0f} s), {result['counts']}"
    )
    print(
        f"RSS per station: {result['rss_per_station_kib']:.1f} KiB "
        f"(target <= {TARGET_RSS_KIB:.0f}, issue 8)"
    )
    if "python_per_station_kib" in result:
        print(f"Python heap per station (tracemalloc): {result['python_per_station_kib']:.1f} KiB")
    tasks = result["tasks_per_station"]
    print(f"\nasyncio tasks per station: {sum(n for _, n in tasks):.2f}")
    for name, n in tasks:
        if n >= 0.01:
            print(f"  {n:6.2f}  {name}")
    for key, title in (
        ("by_component", "by component (outermost repository frame below the fleet)"),
        ("by_repo_file", "by innermost repository file"),
        ("by_repo_frame", "by innermost repository frame"),
        ("by_line", "by allocating line"),
        ("by_file", "by allocating file"),
    ):
        if key not in result:
            continue
        print(f"\nKiB per station, {title}:")
        for name, kib in result[key][:top]:
            print(f"  {kib:7.2f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds charging")
    parser.add_argument("--rate", type=float, default=50.0, help="stations started a second")
    parser.add_argument("--trace", action="store_true", help="tracemalloc the Python heap")
    parser.add_argument("--frames", type=int, default=30, help="traceback depth (--trace)")
    parser.add_argument("--top", type=int, default=40, help="rows per table")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    result = asyncio.run(_run(args))
    _print(result, args.top)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
