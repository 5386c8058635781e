"""Helpers shared by the benches: ports, percentiles, /proc readings, the null CSMS, JSON.

Nothing here measures anything by itself or decides a verdict; each bench script states
its own target. Importing this module puts the repository first on sys.path, so the
benches run from a checkout without installing it. These helpers must not sleep to wait
for the world (they read a pipe or await an event) and must not leave a child process
running (`NullCsms` is an async context manager that terminates and reaps its process).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    """The environment for a child Python process that imports the repository's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    return env


async def start_load_csms(port: int, cp_id: str, load: str | None) -> asyncio.subprocess.Process:
    """Start bench/_load_csms.py (a CSMS in its own process) and wait until it listens;
    `load` is None, "--load" or "--list-load". Raises EOFError if it ended instead."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "_load_csms.py"),
        str(port),
        cp_id,
        "3600",
        *([load] if load else []),
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    if process.stdout is None or not await process.stdout.readline():  # "ready"
        raise EOFError("the load CSMS did not start")
    return process


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def figures(values_ms: list[float]) -> dict[str, float]:
    """p50, p99, max and the sample count of a list of milliseconds (empty: zeros)."""
    if not values_ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
    ordered = sorted(values_ms)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
        "samples": len(ordered),
    }


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB, from /proc/<pid>/status; raises OSError if gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_S


async def cpu_percent(pid: int, window_s: float) -> float:
    """CPU% of a process over a window (100 = one core busy); this is a measuring window."""
    start_cpu, start = cpu_s(pid), time.monotonic()
    await asyncio.sleep(window_s)  # the measuring window itself, not a wait for the world
    return 100.0 * (cpu_s(pid) - start_cpu) / (time.monotonic() - start)


def write_json(path: Path | None, data: Any) -> None:
    """Write the figures to `path` (if given) as indented JSON."""
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def verdict(met: bool) -> str:
    """The word printed beside a figure and its target."""
    return "meets" if met else "MISSES"


@dataclass
class CsmsEvent:
    """One line the null CSMS printed: what happened, when (time.monotonic), details."""

    name: str
    at: float
    args: list[str]


@dataclass
class NullCsms:
    """The null CSMS (bench/_null_csms.py) in its own process, and the events it prints.

    Use as `async with NullCsms(port) as csms:`; `await csms.event("boot")` returns the
    next unread event of that name (raises TimeoutError, or EOFError if the process ended).
    """

    port: int
    expect: int = 0  # print "tx-last" when one connection has sent this many tx messages
    process: asyncio.subprocess.Process | None = None
    events: list[CsmsEvent] = field(default_factory=list)
    _read: int = 0  # how many of `events` were handed out by event()

    async def __aenter__(self) -> NullCsms:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the process and wait until it listens."""
        self.events.clear()
        self._read = 0
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH_DIR / "_null_csms.py"),
            str(self.port),
            str(self.expect),
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO_DIR),
        )
        await self.event("listening", timeout_s=30)

    async def stop(self, *, kill: bool = False) -> None:
        """Terminate (or kill -9) the process and reap it."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        await process.wait()

    async def event(self, name: str, timeout_s: float = 60.0) -> CsmsEvent:
        """The next event called `name` not handed out before (earlier others are skipped)."""
        async with asyncio.timeout(timeout_s):
            while True:
                while self._read < len(self.events):
                    candidate = self.events[self._read]
                    self._read += 1
                    if candidate.name == name:
                        return candidate
                await self._read_line()

    async def _read_line(self) -> None:
        """Read one line from the process into `events`; raises EOFError at its end."""
        if self.process is None or self.process.stdout is None:
            raise EOFError("the null CSMS is not running")
        line = await self.process.stdout.readline()
        if not line:
            raise EOFError("the null CSMS ended")
        parts = line.decode().split()
        if len(parts) >= 2:
            self.events.append(CsmsEvent(parts[0], float(parts[1]), parts[2:]))
