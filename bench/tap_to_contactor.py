"""Bench: token tap to contactor-close command, p50 and p99, for each way a token is accepted.

Target (issue 5): p99 software overhead below 20 ms for a local hit (local list or
authorization cache, LocalPreAuthorize=true), and below the loopback round trip plus
20 ms for an online Authorize (LocalPreAuthorize=false).

What is timed is the agent's own path: from the moment the token read is handed to the
agent (`agent.tap`, the simulated reader's sink) to the moment the agent calls
`set_contactor(True)` on the board driver. The real Agent runs on simulated hardware,
built from a config dict, connected over loopback to a CSMS in another process
(bench/_load_csms.py, idle). Before each tap the EV is plugged in and waiting in state B
with the outbox empty and no CALL in flight; the simulated EV answers PWM at once (state
C as soon as PWM is on), so the figure is the agent's share only: a real EV adds its own
reaction time (IEC 61851-1 allows it up to 3 s), which is not software overhead. After
each sample the same card stops the transaction, the EV leaves, and the bench waits for
the StopTransaction to be answered. Every sample uses a fresh token.

Scenarios:

1. local list: the token is in the local list (1,000 entries), LocalPreAuthorize=true;
2. cache: the token is in the authorization cache only, LocalPreAuthorize=true;
3. online: LocalPreAuthorize=false, the CSMS answers Authorize. The Authorize CALL's
   round trip is timed at the wire (the agent's message log sees the CALL just before
   it is sent and the CALLRESULT just after it is parsed) and "overhead = total - round
   trip" is reported per sample.

    python bench/tap_to_contactor.py [--samples 200] [--json out.json]

It prints the figures beside the targets and exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.app import Agent
from agent.config import parse_config
from agent.core.events import AuthStatus
from agent.core.status import ConnectorStatus, SessionPhase
from agent.ocpp.rpc import Frame
from agent.ocpp.v16.config_keys import ChangeResult
from agent.store.auth import AuthEntry
from simulator.ev import EvParameters, SimEv

TARGET_P99_MS = 20.0
CP_ID = "BENCH-CP"
LIST_ENTRIES = 1000
WARMUP_SAMPLES = 3  # per scenario, discarded (first-use costs: imports, caches)
PACE_S = 0.005  # bench pacing between "plugged and quiet" and the tap, not a test wait
STEP_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Probe:
    """Timestamps at the driver boundary and on the wire (time.perf_counter seconds)."""

    closed_at: float | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    authorize_rtt_s: float | None = None
    stop_results: int = 0
    in_flight: set[str] = field(default_factory=set)  # CALLs either way not yet answered
    _authorize_sent: dict[str, float] = field(default_factory=dict)

    def arm(self) -> None:
        """Forget the previous sample's timestamps."""
        self.closed_at = None
        self.closed.clear()
        self.authorize_rtt_s = None

    def contactor_commanded(self, closed: bool) -> None:
        """Record the first close command after `arm`."""
        if closed and self.closed_at is None:
            self.closed_at = time.perf_counter()
            self.closed.set()

    def on_frame(self, frame: Frame) -> None:
        """Message log listener: CALLs in flight, Authorize round trip, StopTransactions."""
        now = time.perf_counter()
        text = frame.text.lstrip("[ \t\r\n")
        parts = text.split('"', 2)
        if len(parts) < 3:
            return
        kind, unique_id = text[:1], parts[1]
        if kind == "2":
            self.in_flight.add(unique_id)
            if frame.outgoing and frame.action == "Authorize":
                self._authorize_sent[unique_id] = now
        elif kind in ("3", "4"):
            self.in_flight.discard(unique_id)
            sent = self._authorize_sent.pop(unique_id, None)
            if sent is not None:
                self.authorize_rtt_s = now - sent
            if not frame.outgoing and frame.action == "StopTransaction":
                self.stop_results += 1


@dataclass(frozen=True)
class Scenario:
    """One way of accepting a token."""

    name: str
    prefix: str  # of the fresh tokens (an idTag is at most 20 characters)
    local_pre_authorize: bool
    online: bool


SCENARIOS = (
    Scenario("local list hit", "BL", local_pre_authorize=True, online=False),
    Scenario("cache hit", "BC", local_pre_authorize=True, online=False),
    Scenario("online Authorize", "BO", local_pre_authorize=False, online=True),
)


def _token(scenario: Scenario, index: int) -> str:
    return f"{scenario.prefix}-{index:06d}"


def _set_key(agent: Agent, name: str, value: str) -> None:
    """ChangeConfiguration as the CSMS would; raises RuntimeError if it is not accepted."""
    result = agent.adapter.keys.change(name, value)
    if result != ChangeResult.ACCEPTED:
        raise RuntimeError(f"{name}={value}: {result}")


async def _quiet(agent: Agent, probe: Probe, predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` holds, nothing is in flight and the outbox is empty."""
    await agent.wait_until(
        lambda: predicate() and not probe.in_flight and agent.store.pending_count() == 0,
        STEP_TIMEOUT_S,
    )


async def _sample(agent: Agent, probe: Probe, token: str) -> tuple[float, float | None]:
    """Plug, tap, time the close, stop with the same card, unplug; (total s, Authorize rtt s)."""
    evse = agent.station.evses[1]
    plant = agent.hardware[1].plant
    plant.plug_in(SimEv(EvParameters(battery_wh=1e9, soc_percent=1)))
    await _quiet(
        agent,
        probe,
        lambda: evse.state == SessionPhase.PLUGGED and evse.status() == ConnectorStatus.PREPARING,
    )
    await asyncio.sleep(PACE_S)  # bench pacing: let the loop settle after the plug
    probe.arm()
    tapped = time.perf_counter()
    agent.tap(1, token)
    await asyncio.wait_for(probe.closed.wait(), STEP_TIMEOUT_S)
    if probe.closed_at is None:
        raise RuntimeError("contactor event without a timestamp")
    total_s = probe.closed_at - tapped
    rtt_s = probe.authorize_rtt_s
    stops = probe.stop_results
    agent.tap(1, token)  # the same card ends the transaction
    await agent.wait_until(lambda: evse.state == SessionPhase.FINISHING, STEP_TIMEOUT_S)
    plant.unplug()
    await _quiet(
        agent,
        probe,
        lambda: (
            probe.stop_results > stops
            and evse.state == SessionPhase.IDLE
            and evse.status() == ConnectorStatus.AVAILABLE
        ),
    )
    return total_s, rtt_s


async def _scenario(
    agent: Agent, probe: Probe, scenario: Scenario, samples: int
) -> dict[str, list[float]]:
    """Run one scenario; per-sample totals (and round trips and overheads online), in ms."""
    _set_key(agent, "LocalPreAuthorize", "true" if scenario.local_pre_authorize else "false")
    totals: list[float] = []
    rtts: list[float] = []
    for index in range(-WARMUP_SAMPLES, samples):
        token = _token(scenario, index + WARMUP_SAMPLES)
        if scenario.prefix == "BC":
            agent.auth_cache.put(AuthEntry(token, AuthStatus.ACCEPTED))
        total_s, rtt_s = await _sample(agent, probe, token)
        if scenario.online and rtt_s is None:
            raise RuntimeError(f"{scenario.name}: no Authorize seen for {token}")
        if not scenario.online and rtt_s is not None:
            raise RuntimeError(f"{scenario.name}: the CSMS was asked about {token}")
        if index < 0:
            continue
        totals.append(total_s * 1000)
        if rtt_s is not None:
            rtts.append(rtt_s * 1000)
    result = {"total_ms": totals}
    if scenario.online:
        result["round_trip_ms"] = rtts
        result["overhead_ms"] = [t - r for t, r in zip(totals, rtts, strict=True)]
    return result


async def _measure(samples: int) -> dict[str, dict[str, list[float]]]:
    port = _free_port()
    csms = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_load_csms.py")),
        str(port),
        CP_ID,
        "3600",
        stdout=asyncio.subprocess.PIPE,
    )
    if csms.stdout is None:
        raise RuntimeError("no stdout from the CSMS process")
    await csms.stdout.readline()  # "ready"
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            document = {
                "station": {"id": CP_ID, "vendor": "bench", "model": "bench"},
                "csms": {"url": f"ws://127.0.0.1:{port}/ocpp"},
                "evses": [{"reader": {"driver": "sim"}}],
                "store": {"path": str(Path(tmp) / "agent.db")},
                "logging": {"level": "WARNING", "message_log": False},
            }
            agent = Agent(parse_config(yaml.safe_dump(document)))
            probe = Probe()
            agent.messages.listeners.append(probe.on_frame)
            board = agent.hardware[1].board
            original = board.set_contactor

            async def timed_set_contactor(closed: bool) -> None:
                probe.contactor_commanded(closed)
                await original(closed)

            board.set_contactor = timed_set_contactor  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                await agent.wait_until(lambda: agent.adapter.online, 30)
                _set_key(agent, "LocalAuthListEnabled", "true")
                _set_key(agent, "AuthorizationCacheEnabled", "true")
                listed = [_token(SCENARIOS[0], i) for i in range(samples + WARMUP_SAMPLES)]
                filler = [f"BF-{i:06d}" for i in range(max(0, LIST_ENTRIES - len(listed)))]
                await agent.local_list.replace(
                    1,
                    [AuthEntry(token, AuthStatus.ACCEPTED) for token in listed + filler],
                    max_length=max(LIST_ENTRIES, len(listed)),
                )
                for scenario in SCENARIOS:
                    results[scenario.name] = await _scenario(agent, probe, scenario, samples)
            finally:
                stop.set()
                await task
    finally:
        csms.terminate()
        await csms.wait()
    return results


def _figures(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
        "samples": len(ordered),
    }


def _report(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Print the figures and verdicts; return them for --json."""
    figures = {
        name: {series: _figures(values) for series, values in scenario.items()}
        for name, scenario in results.items()
    }
    print(
        f"token tap -> contactor close command (target: p99 < {TARGET_P99_MS:.0f} ms local; "
        f"online p99 of total - round trip < {TARGET_P99_MS:.0f} ms)"
    )
    print(
        "The simulated EV answers PWM at once: a real EV adds its own reaction time "
        "(IEC 61851-1 allows up to 3 s), which is not software overhead."
    )
    print(f"{'scenario':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}")
    rows = [
        ("local list hit", "total_ms", "local list hit"),
        ("cache hit", "total_ms", "cache hit"),
        ("online Authorize", "total_ms", "online Authorize: total"),
        ("online Authorize", "round_trip_ms", "  Authorize round trip (wire)"),
        ("online Authorize", "overhead_ms", "  overhead = total - round trip"),
    ]
    for name, series, label in rows:
        f = figures[name][series]
        print(
            f"{label:<34} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['max_ms']:8.3f} "
            f"{f['samples']:5d}"
        )
    verdicts = {
        "local list hit": figures["local list hit"]["total_ms"]["p99_ms"] < TARGET_P99_MS,
        "cache hit": figures["cache hit"]["total_ms"]["p99_ms"] < TARGET_P99_MS,
        "online Authorize": figures["online Authorize"]["overhead_ms"]["p99_ms"] < TARGET_P99_MS,
    }
    for name, met in verdicts.items():
        print(f"{name}: p99 {'meets' if met else 'MISSES'} the target")
    return {"figures": figures, "meets_target": verdicts}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    results = await _measure(args.samples)
    report = _report(results)
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
