"""Fleet mode: many simulated charging stations in one process, each the real agent.

Responsible for running N stations (ids CP-0001, CP-0002, ...) in one event loop against
one CSMS URL, each of them `agent.app.run_agent` over simulated drivers with the real
OCPP adapter (1.6 or 2.0.1) on its own websocket, started staggered; and for the
fleet-mode choices that let one process hold thousands of them:

- the store is the plain-Python MemoryStore (`store.path: "memory:"`,
  agent/store/memory.py): no file, no fsync and no SQLite database per station (one
  costs about 85 KiB), nothing survives the process (a fleet is a load generator, not a
  set of chargers with billing to protect), and it keeps no outbox entry that no
  message needs any more;
- no local HTTP API, no simulated meter register file, the message log keeps a few
  frames and writes none to the log, logging at WARNING;
- optionally (`charging`, the default) each station plugs an EV in and taps its card
  once the CSMS has accepted it, so it runs a transaction and reports periodic meter
  values (MeterValueSampleInterval / SampledDataCtrlr.TxUpdatedInterval, the agent's
  sampled data, not clock-aligned data), with the measurands of `FLEET_MEASURANDS`
  (10 sampled values on a three-phase EVSE).

The heartbeat interval is the one the CSMS gives in its BootNotification answer (OCPP
1.6 section 4.2, 2.0.1 B01.FR.04); `heartbeat_s` is only the value before that.

Must not: imitate the agent (every OCPP message comes from the real adapter), start
threads or per-station executors, or leave a task behind (every station runs in a
tracked task and `stop()` waits for all of them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agent.config import Config, ConfigError, StoreConfig, parse_config
from agent.store import MEMORY_PATH

if TYPE_CHECKING:
    from agent.app import Agent

#: Sampled measurands of a fleet station: 10 sampled values on a three-phase EVSE
#: (energy, power, current x3, offered current, voltage x3, SoC); same names in 1.6 and 2.0.1.
FLEET_MEASURANDS: tuple[str, ...] = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "SoC",
)
log = logging.getLogger(__name__)

#: The store path of the plain-Python store (agent/store/memory.py; not a file).
IN_MEMORY = MEMORY_PATH
VERSIONS = ("1.6", "2.0.1")


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What every station of a fleet is: where it connects and what it reports how often.

    `ping_interval_s` None keeps the agent's WebSocketPingInterval default; 0 turns the
    websocket ping off. `message_log_frames` is how many frames each station keeps for
    inspection (0: none). `freeze_every_s` runs a `HeapFreezer` with that period while
    the fleet runs (None: the garbage collector is left alone; it is process-wide, so
    only a process that is a fleet should turn it on).
    """

    url: str
    version: str = "1.6"
    id_prefix: str = "CP-"
    heartbeat_s: int = 10
    sample_interval_s: int = 10
    measurands: tuple[str, ...] = FLEET_MEASURANDS
    charging: bool = True
    ping_interval_s: int | None = None
    message_log_frames: int = 8
    freeze_every_s: float | None = None
    response_timeout_s: float = 30.0
    time_scale: float = 1.0

    def station_id(self, number: int) -> str:
        """The id of station `number` (1-based): CP-0001, ..., CP-10000."""
        return f"{self.id_prefix}{number:04d}"


def fleet_settings(options: FleetOptions) -> dict[str, str]:
    """The OCPP install settings of a fleet station, for the options' version."""
    measurands = ",".join(options.measurands)
    if options.version == "1.6":
        settings = {
            "HeartbeatInterval": str(options.heartbeat_s),
            "MeterValueSampleInterval": str(options.sample_interval_s),
            "MeterValuesSampledData": measurands,
        }
        if options.ping_interval_s is not None:
            settings["WebSocketPingInterval"] = str(options.ping_interval_s)
        return settings
    settings = {
        "OCPPCommCtrlr/HeartbeatInterval": str(options.heartbeat_s),
        "SampledDataCtrlr/TxUpdatedInterval": str(options.sample_interval_s),
        "SampledDataCtrlr/TxUpdatedMeasurands": measurands,
    }
    if options.ping_interval_s is not None:
        settings["OCPPCommCtrlr/WebSocketPingInterval"] = str(options.ping_interval_s)
    return settings


def fleet_template(options: FleetOptions, base: Mapping[str, Any] | None = None) -> Config:
    """The config every station starts from (its id is set per station).

    `base` is an optional config document (a parsed YAML mapping) whose sections the
    fleet's choices override: station id, CSMS URL and version, store in memory, API off,
    a simulated EV plugged in when charging. Raises ValueError for an unknown version and
    ConfigError for a document that does not check.
    """
    if options.version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {options.version!r}")
    document: dict[str, Any] = {key: value for key, value in (base or {}).items()}
    station = dict(document.get("station") or {})
    station.update(id=options.station_id(1))
    station.setdefault("vendor", "cpagent")
    station.setdefault("model", "fleet")
    csms = dict(document.get("csms") or {})
    csms.update(
        url=options.url,
        ocpp_version=options.version,
        response_timeout_s=options.response_timeout_s,
    )
    simulator = dict(document.get("simulator") or {})
    simulator.update(time_scale=options.time_scale, auto_plug=options.charging)
    simulator.setdefault("ev", {"battery_wh": 100000, "soc_percent": 10})
    document.update(
        station=station,
        csms=csms,
        simulator=simulator,
        logging={"level": "WARNING", "message_log": False},
        api={"enabled": False},
        settings={**(document.get("settings") or {}), **fleet_settings(options)},
    )
    document.pop("store", None)
    document.setdefault(
        "evses",
        [
            {
                "connectors": [{"type": "cType2", "max_current_a": 32, "phases": 3}],
                "board": {"driver": "sim"},
                "meter": {"driver": "sim"},
                "reader": {"driver": "sim"},
            }
        ],
    )
    config = parse_config(yaml.safe_dump(document), source="<fleet>")
    # The MemoryStore: not a path, so it bypasses the file resolution.
    return replace(config, store=StoreConfig(Path(IN_MEMORY)))


def station_config(template: Config, station_id: str) -> Config:
    """The template with its station id set to `station_id`."""
    return replace(template, station=replace(template.station, id=station_id))


class _Tasks:
    """Tasks kept until they end, a failure logged (never lost), cancelled together.

    The simulator's own: agent.core.tasks is the core's machinery, which the simulator
    does not use (tests/unit/test_architecture.py).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in a task kept here until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s failed", self._name, task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task and wait until all have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class HeapFreezer:
    """Keeps the cyclic garbage collector off a fleet's event loop by `gc.freeze()`-ing
    every object alive, every `period_s` seconds.

    Why: a fleet is millions of objects, and each station keeps about 170 more in
    flight (timers, futures, coroutines) that live one heartbeat or sample interval.
    They outlive the young collections, so the older generations fill with them, and
    collecting those walks everything: 35 ms for a gen-1 pass and 150 ms to seconds
    for a full one at 1,000 stations (bench/README.md, "Scale"). Frozen objects are
    still freed when their last reference goes (reference counting); the collector
    only stops walking them. What is lost: reference cycles that become garbage after
    being frozen are never collected, about 0.01 objects a station a second in a
    charging fleet (measured), a few KiB a station a day. Objects younger than
    `period_s` are collected as usual.
    """

    def __init__(self, period_s: float = 1.0) -> None:
        """Freeze every `period_s` seconds once started; raises ValueError if <= 0."""
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._tasks = _Tasks("heap-freezer")

    def start(self) -> None:
        """Collect what is garbage now (one full pass), then freeze periodically; a
        second call does nothing."""
        if not len(self._tasks):
            gc.collect()
            gc.freeze()
            self._tasks.spawn(self._run(), name="heap-freezer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            gc.freeze()

    async def stop(self) -> None:
        """Stop freezing and hand the frozen objects back to the collector."""
        await self._tasks.cancel_all()
        gc.unfreeze()


class FleetStation:
    """One station of the fleet: its config, its current agent, and its running task."""

    __slots__ = ("_frames", "_token", "agent", "charging", "config", "id", "restarts", "task")

    def __init__(self, config: Config, *, charging: bool, frames: int) -> None:
        self.id = config.station.id
        self.config = config
        self.charging = charging
        self._frames = frames
        self._token = f"T{self.id}"[-20:]  # 1.6 idTag is CiString20
        self.agent: Agent | None = None
        self.restarts = -1  # agents started after the first one (after a Reset)
        self.task: asyncio.Task[Any] | None = None

    def on_agent(self, agent: Agent) -> None:
        """run_agent hook: trim the new agent's message log and arm the card tap."""
        self.agent = agent
        self.restarts += 1
        agent.messages.frames = deque(maxlen=self._frames)
        if self.charging:

            def tap_when_online() -> None:
                # Once, the first time the CSMS has accepted this agent; not from inside
                # the adapter's callback but on the loop's next turn.
                if agent is self.agent and agent.adapter.online:
                    agent.adapter.on_change.remove(tap_when_online)
                    asyncio.get_running_loop().call_soon(agent.tap, 1, self._token)

            agent.adapter.on_change.append(tap_when_online)

    @property
    def online(self) -> bool:
        """Whether the station is connected and accepted by the CSMS."""
        return self.agent is not None and self.agent.adapter.online

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction runs on any of the station's EVSEs."""
        agent = self.agent
        return agent is not None and any(e.tx is not None for e in agent.station.evses.values())


class Fleet:
    """N stations in this event loop; grow it with `grow_to`, end it with `stop`."""

    def __init__(self, options: FleetOptions, *, base: Mapping[str, Any] | None = None) -> None:
        """Build the stations' template; raises ValueError / ConfigError as fleet_template."""
        from agent.app import StopFlag  # here: `cpagent -h` need not import the agent

        self.options = options
        self.template = fleet_template(options, base)
        self.stations: list[FleetStation] = []
        self._stop = StopFlag()
        self._tasks = _Tasks("fleet")
        every = options.freeze_every_s
        self._freezer = HeapFreezer(every) if every is not None else None

    def __len__(self) -> int:
        return len(self.stations)

    async def grow_to(self, count: int, *, spread_s: float = 0.0) -> None:
        """Start stations until there are `count`, evenly over `spread_s` seconds; returns
        once the last one is started (not booted). Raises RuntimeError after stop()."""
        if self._stop.is_set():
            raise RuntimeError("the fleet is stopping")
        first = len(self.stations)
        added = count - first
        if added <= 0:
            return
        if self._freezer is not None:
            self._freezer.start()  # before the stations: its one full collection is quick
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for offset in range(added):
            delay = begin + spread_s * offset / added - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._start(first + offset + 1)

    def _start(self, number: int) -> FleetStation:
        from agent.app import run_agent  # here: `cpagent -h` need not import the agent

        config = station_config(self.template, self.options.station_id(number))
        station = FleetStation(
            config, charging=self.options.charging, frames=self.options.message_log_frames
        )
        station.task = self._tasks.spawn(
            run_agent(config, stop=self._stop, on_agent=station.on_agent), name=station.id
        )
        self.stations.append(station)
        return station

    def counts(self) -> dict[str, int]:
        """How many stations are started, online, in a transaction, restarted, ended."""
        return {
            "stations": len(self.stations),
            "online": sum(s.online for s in self.stations),
            "charging": sum(s.in_transaction for s in self.stations),
            "restarted": sum(s.restarts > 0 for s in self.stations),
            "ended": sum(s.task is not None and s.task.done() for s in self.stations),
        }

    async def wait_until(
        self, predicate: Callable[[Fleet], bool], timeout_s: float, poll_s: float = 0.2
    ) -> None:
        """Poll `predicate(fleet)` every `poll_s` until it holds; raises TimeoutError.

        Polled, not awaited: a fleet-wide count has no single event, and re-counting N
        stations at every change of any of them would cost O(N) per change.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self):  # noqa: ASYNC110 (see above)
                await asyncio.sleep(poll_s)

    async def stop(self) -> None:
        """Stop every station as on SIGTERM (transactions stopped and reported) and wait
        until all have closed."""
        self._stop.set()
        tasks = [s.task for s in self.stations if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._tasks.cancel_all()
        if self._freezer is not None:
            await self._freezer.stop()

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# -- the command line ------------------------------------------------------------------------


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cpagent fleet` / `python -m simulator.fleet`."""
    parser.add_argument("--url", required=True, help="the CSMS URL (the station id is appended)")
    parser.add_argument("--count", type=int, required=True, help="how many stations to run")
    parser.add_argument("--version", choices=VERSIONS, default="1.6", help="OCPP version")
    parser.add_argument(
        "--spread",
        type=float,
        default=None,
        metavar="S",
        help="start the stations evenly over S seconds (default: 20 stations a second)",
    )
    parser.add_argument("--id-prefix", default="CP-", help="station ids: PREFIX0001, ...")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        metavar="S",
        help="heartbeat interval until the CSMS's boot answer sets one (default 10)",
    )
    parser.add_argument(
        "--sample-interval",
        type=int,
        default=10,
        metavar="S",
        help="meter values of a transaction every S seconds (default 10)",
    )
    parser.add_argument(
        "--ping",
        type=int,
        default=None,
        metavar="S",
        help="websocket ping interval (default: the agent's, 30; 0: off)",
    )
    parser.add_argument(
        "--idle", action="store_true", help="no EV and no transaction: heartbeats only"
    )
    parser.add_argument(
        "--config", default=None, help="a config file whose sections the fleet's choices override"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the garbage collector alone (default: gc.freeze() every second)",
    )
    parser.add_argument(
        "--status-every", type=float, default=10.0, metavar="S", help="print counts every S s"
    )


def options_from(args: argparse.Namespace) -> FleetOptions:
    """FleetOptions from parsed arguments."""
    return FleetOptions(
        url=args.url,
        version=args.version,
        id_prefix=args.id_prefix,
        heartbeat_s=args.heartbeat,
        sample_interval_s=args.sample_interval,
        charging=not args.idle,
        ping_interval_s=args.ping,
        freeze_every_s=None if args.no_gc_freeze else 1.0,
    )


def run_fleet(args: argparse.Namespace) -> int:
    """Run a fleet until SIGINT/SIGTERM; exit code 2 for a bad config, else 0."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("transitions", "websockets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    base = None
    if args.config:
        try:
            base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
    try:
        fleet = Fleet(options_from(args), base=base)
    except (ConfigError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    spread_s = args.spread if args.spread is not None else args.count / 20.0
    try:
        asyncio.run(_serve(fleet, args.count, spread_s, args.status_every))
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve(fleet: Fleet, count: int, spread_s: float, status_every_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    began = time.monotonic()

    tasks = _Tasks("fleet-cli")
    tasks.spawn(fleet.grow_to(count, spread_s=spread_s), name="grow")

    def status() -> None:
        line = " ".join(f"{key}={value}" for key, value in fleet.counts().items())
        print(f"{time.monotonic() - began:7.1f}s {line}", flush=True)

    try:
        while not stop.is_set():
            status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=status_every_s)
        status()
    finally:
        await tasks.cancel_all()
        print("stopping...", flush=True)
        await fleet.stop()
        status()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulator.fleet`."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.fleet", description="Run many simulated stations in one process."
    )
    add_fleet_arguments(parser)
    return run_fleet(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
