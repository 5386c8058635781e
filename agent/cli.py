"""The `cpagent` command: run, demo, check-config, sim, fleet.

Exit codes: 0 success, 2 configuration problems (nothing was started), 1 other errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from agent.config import ConfigError, check_config, format_problem, load_config
from agent.sim_cli import add_sim_parser, run_sim

log = logging.getLogger("cpagent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpagent", description="EV charge point agent (OCPP)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, help="the YAML configuration file")
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file")
    demo = commands.add_parser(
        "demo", help="a full charging session on simulated hardware against a local CSMS"
    )
    demo.add_argument(
        "--speed", type=float, default=120.0, help="simulated seconds per real second (default 120)"
    )
    demo.add_argument("--port", type=int, default=0, help="local CSMS port (default: any free)")
    demo.add_argument("--plain", action="store_true", help="print lines instead of a live view")
    add_sim_parser(commands)
    from simulator.fleet import add_fleet_arguments  # light: the agent loads when it runs

    fleet = commands.add_parser(
        "fleet", help="run many simulated stations in one process against one CSMS"
    )
    add_fleet_arguments(fleet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cpagent` console script."""
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "sim":
        return run_sim(args)
    if args.command == "fleet":
        from simulator.fleet import run_fleet

        return run_fleet(args)
    try:
        if args.command == "demo":
            from simulator.demo import run_demo

            return asyncio.run(run_demo(speed=args.speed, port=args.port, plain=args.plain))
        return _run(args.config)
    except KeyboardInterrupt:
        return 130


def _check_config(path: str) -> int:
    problems = check_config(path)
    for problem in problems:
        print(format_problem(problem, path), file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    print(f"{path}: OK")
    return 0


def _run(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if config.logging.level != "DEBUG":
        # Libraries that log every failed request with a frame dump: the drivers report
        # the same failures once, as faults.
        for noisy in ("pymodbus", "can", "transitions", "websockets"):
            logging.getLogger(noisy).setLevel(
                logging.CRITICAL if noisy == "pymodbus" else logging.WARNING
            )
    from agent.app import DriverUnavailable, run_agent
    from agent.systemd import SystemdNotifier, SystemdReporter

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # READY=1, STATUS= and watchdog pings when systemd runs us (Type=notify); no-op otherwise.
        async with SystemdReporter(SystemdNotifier.from_environment()) as systemd:

            def on_signal() -> None:
                systemd.stopping()
                stop.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, on_signal)
            await run_agent(config, stop=stop, on_agent=systemd.on_agent)

    try:
        asyncio.run(run())
    except DriverUnavailable as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2
    return 0
