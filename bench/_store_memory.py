"""What one fleet station's store costs in memory (issue 8): RSS and Python heap per station.

Usage:
    python bench/_store_memory.py [--path memory:|:memory:] [--count 500] [--samples 30]
                                  [--end-reads none|all] [--version 1.6|2.0.1] [--trace]
                                  [--agents]

Builds `--count` stores the way agent/app.py builds a station's (the store for the
config's `store.path`, its ProfileStore, LocalAuthList and AuthCache), then runs one
transaction on each as a charging fleet station does: a start, `--samples` meter
values (10 sampled values each, the fleet's), each delivered (marked delivered as the
outbox does after its CALLRESULT), and the authorization cache's entry for the card.
`--end-reads` is what the adapter tells the store its end message reads of delivered
entries: nothing (1.6 with StopTxnSampledData empty, the default) or all of them (2.0.1
with TxEndedMeasurands set, its default); a fleet store lets the others go.
`--agents` builds whole agents instead (agent.app.Agent over the fleet's template: the
store, the station, the adapter; nothing runs), to see the store's share in a station.

Prints per station: RSS delta (after a full collection) and, with `--trace`, the Python
heap (tracemalloc, which cannot see SQLite's own allocations: those show in RSS only).
`:memory:` is SQLite's private in-memory database (the production backend, as tests use
it); `memory:` is the fleet's plain-Python backend (agent/store/memory.py).
Exits 0; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO_DIR = SCRIPT.parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sample(n: int) -> dict[str, Any]:
    """A periodic meter payload as the core journals it (10 sampled values on 3 phases)."""
    at = T0 + timedelta(seconds=10 * n)
    return {
        "at": at.isoformat(),
        "context": "periodic",
        "offered_current_a": 32.0,
        "energy_import_wh": 1000.0 + 30.0 * n,
        "energy_export_wh": 0.0,
        "power_w": 11000.0 + n % 7,
        "current_a": [16.0, 16.1, 15.9],
        "voltage_v": [230.1, 229.8, 230.4],
        "frequency_hz": None,
        "soc_percent": 40.0 + n / 10,
        "temperature_c": None,
        "offline": False,
        "status": "Charging",
        "ev_connected": True,
        "trigger": "meter_periodic",
    }


def _station_store(path: str, samples: int, end_reads: bool) -> tuple[Any, ...]:
    from agent.store.auth import AuthCache, AuthEntry, LocalAuthList
    from agent.store.profiles import ProfileStore
    from tests.fakes import FakeClock

    try:
        from agent.store import open_store

        store: Any = open_store(path)
    except ImportError:  # before the memory backend existed
        from agent.store import Store

        store = Store(path)
    if hasattr(store, "retain_for_end"):  # as the adapter registers it
        store.retain_for_end(lambda _entry: end_reads)
    profiles = ProfileStore(store)
    local_list = LocalAuthList(store)
    clock = FakeClock(T0)
    cache = AuthCache(store, clock=clock)
    from agent.core.events import AuthStatus
    from drivers.types import TokenType

    cache.put(AuthEntry("T-0001", AuthStatus.ACCEPTED))
    tx = store.begin_transaction(
        evse_id=1,
        connector_id=1,
        id_token="T-0001",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=1000.0,
    )
    after = 0
    for n in range(samples + 1):
        if n:
            store.record_meter(
                tx.local_id,
                at=T0 + timedelta(seconds=10 * n),
                energy_wh=1000.0 + 30.0 * n,
                payload=_sample(n),
                enqueue=True,
            )
        entry = store.next_pending(after)
        while entry is not None:
            store.mark_delivered(entry.seq)
            after = entry.seq
            entry = store.next_pending(after)
    return store, profiles, local_list, cache


def _agent(path: str, version: str, number: int) -> Any:
    from dataclasses import replace

    from agent.app import Agent
    from agent.config import StoreConfig
    from simulator.fleet import FleetOptions, fleet_template, station_config

    template = fleet_template(FleetOptions(url="ws://127.0.0.1:1/ocpp", version=version))
    config = station_config(template, f"CP-{number:04d}")
    return Agent(replace(config, store=StoreConfig(Path(path))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default="memory:", help="store.path: memory: or :memory:")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--samples", type=int, default=30, help="meter values per station")
    parser.add_argument("--version", default="1.6", choices=("1.6", "2.0.1"))
    parser.add_argument("--trace", action="store_true", help="tracemalloc the Python heap")
    parser.add_argument("--agents", action="store_true", help="build whole agents instead")
    parser.add_argument(
        "--end-reads",
        choices=("none", "all"),
        default="none",
        help="what the end message reads: none (1.6 defaults), all (2.0.1: TxEndedMeasurands)",
    )
    args = parser.parse_args()

    import asyncio

    async def build() -> list[Any]:
        # Warm imports and caches with one station outside the figures.
        if args.agents:
            _agent(args.path, args.version, 9999)
        else:
            _station_store(args.path, args.samples, args.end_reads == "all")
        gc.collect()
        if args.trace:
            tracemalloc.start(1)
        base = _rss_kib()
        snap = tracemalloc.take_snapshot() if args.trace else None
        kept = [
            _agent(args.path, args.version, n)
            if args.agents
            else _station_store(args.path, args.samples, args.end_reads == "all")
            for n in range(args.count)
        ]
        gc.collect()
        rss = (_rss_kib() - base) / args.count
        what = (
            "agent"
            if args.agents
            else f"store + siblings, {args.samples} samples delivered, end reads {args.end_reads}"
        )
        print(f"{args.path:9} {what}: RSS {rss:6.1f} KiB/station (N={args.count})")
        if snap is not None:
            diff = tracemalloc.take_snapshot().compare_to(snap, "lineno")
            total = sum(s.size_diff for s in diff) / 1024 / args.count
            print(f"          Python heap {total:6.1f} KiB/station; largest lines:")
            for stat in diff[:12]:
                frame = stat.traceback[0]
                name = frame.filename.replace(str(REPO_DIR) + "/", "")
                print(
                    f"            {stat.size_diff / 1024 / args.count:6.2f}  {name}:{frame.lineno}"
                )
        return kept

    asyncio.run(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
