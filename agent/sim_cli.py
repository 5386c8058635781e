"""`cpagent sim ...`: drive a running agent's simulator from a terminal, over its local API.

Responsible for: the `sim` verbs (status, plug, unplug, tap, pilot, pause, resume, boost,
energy, fault, clear, network, power, messages, run), each one call of the local control API through
simulator.api_client, printed for people (a compact table, one line per action) or as raw
JSON (`--json`); `run` plays a scenario file (simulator/scenario.py). Exit codes: 0 ok,
1 the API answered an error (or a scenario expectation failed), 2 usage or scenario file
errors, 3 the API could not be reached (the message says where it was tried).

Must not: touch an agent in-process (only HTTP, so it works against any running agent),
or guess a token: it comes from --token-file or the CPAGENT_API_TOKEN variable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from drivers.types import FaultCode

if TYPE_CHECKING:
    from simulator.api_client import ApiClient

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
TOKEN_ENV = "CPAGENT_API_TOKEN"
DEFAULT_API_URL = "http://127.0.0.1:8080"
TOKEN_TYPES = ("ISO14443", "ISO15693", "Central", "eMAID", "KeyCode", "Local", "MacAddress",
               "NoAuthorization")  # fmt: skip
_PROG = "cpagent sim"


class UsageError(Exception):
    """The command line or a file it names cannot be used (exit code 2)."""


# -- the command line ------------------------------------------------------------------------


def add_sim_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `sim` and its verbs on cpagent's subcommands."""
    sim = commands.add_parser(
        "sim",
        help="drive a running agent's simulator through its local API (see `cpagent sim -h`)",
        description="Drive a running agent's simulator through its local API.",
    )
    _configure(sim)


def build_parser() -> argparse.ArgumentParser:
    """The `cpagent sim` parser on its own (what follows `sim` on the command line)."""
    parser = argparse.ArgumentParser(prog=_PROG, description="Drive a running agent's simulator.")
    _configure(parser)
    return parser


def _global_options(parser: argparse.ArgumentParser, *, at_verb: bool) -> None:
    """--api, --token-file, --json; after the verb too (then they override, if given)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if at_verb else value  # unset at the verb: keep sim's

    parser.add_argument(
        "--api",
        metavar="URL",
        default=default(DEFAULT_API_URL),
        help=f"the agent's local API (default {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        default=default(None),
        help=f"a file holding the API's bearer token (default: ${TOKEN_ENV}, if set)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print the API's raw JSON"
    )


def _evse_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"an EVSE id is an integer from 1, got {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number greater than 0, got {text!r}")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    _global_options(parser, at_verb=False)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str, *, evse: bool = True) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, at_verb=True)
        if evse:
            sub.add_argument("evse", type=_evse_id, metavar="EVSE", help="the EVSE id (1, 2, ...)")
        return sub

    verb("status", "the station, each EVSE, the connection and the outbox", evse=False)
    plug = verb("plug", "plug a simulated EV in (omitted values: the config's simulator.ev)")
    plug.add_argument("--soc", type=float, dest="soc_percent", help="state of charge, %%")
    plug.add_argument("--battery-wh", type=_positive, help="battery capacity, Wh")
    plug.add_argument("--max-current", type=_positive, dest="max_current_a", help="EV limit, A")
    plug.add_argument("--phases", type=int, choices=(1, 3), help="phases the EV charges on")
    plug.add_argument("--target-soc", type=float, dest="target_soc_percent", help="stop at, %%")
    verb("unplug", "pull the cable")
    tap = verb("tap", "present a token at the EVSE's reader")
    tap.add_argument("token", metavar="TOKEN", help="the id token, e.g. 04A2B3C4")
    tap.add_argument("--type", dest="token_type", choices=TOKEN_TYPES, help="default ISO14443")
    pilot = verb("pilot", "force the measured pilot state, or 'none' for the EV's own")
    pilot.add_argument("state", choices=("B", "C", "D", "E", "F", "none"), metavar="STATE|none")
    verb("pause", "the EV pauses (pilot goes to B)")
    verb("resume", "the EV asks for energy again")
    verb("boost", "the driver's boost: off-peak and PV lifted until the EV leaves")
    verb("energy", "local energy management: site meter, capacity, windows, limits", evse=False)
    codes = [code.value for code in FaultCode]
    fault = verb("fault", "raise a fault on the EVSE's simulated hardware")
    fault.add_argument("code", choices=codes, metavar="CODE", help=", ".join(codes))
    fault.add_argument("--detail", help="free text that goes with the fault")
    clear = verb("clear", "clear a fault raised on the EVSE's simulated hardware")
    clear.add_argument("code", choices=codes, metavar="CODE", help=", ".join(codes))
    network = verb("network", "drop the CSMS connection, hold it offline or end a hold", evse=False)
    network.add_argument("action", choices=("drop", "offline", "online"))
    network.add_argument(
        "--seconds", type=_positive, help="offline: how long (default: until 'online')"
    )
    power = verb("power", "cut the simulated power, or restore it", evse=False)
    power.add_argument("action", choices=("cut", "restore"))
    messages = verb("messages", "the last OCPP messages; --follow streams new ones", evse=False)
    messages.add_argument("--limit", type=int, default=20, help="how many (1-1000, default 20)")
    messages.add_argument("--follow", action="store_true", help="then stream until Ctrl-C")
    run = verb("run", "play a scenario file; the exit code says if every step held", evse=False)
    run.add_argument("scenario", metavar="SCENARIO", help="a scenario YAML file")
    run.add_argument("--evse", type=_evse_id, dest="evse", help="the default EVSE for its steps")
    run.add_argument("--keep-going", action="store_true", help="run every step after a failure")


# -- running a verb --------------------------------------------------------------------------


def run_sim(args: argparse.Namespace) -> int:
    """Carry out the parsed `cpagent sim` command; return the exit code (130 on Ctrl-C)."""
    try:
        return asyncio.run(execute(args, out=sys.stdout, err=sys.stderr))
    except KeyboardInterrupt:
        return 130


async def sim_main(
    argv: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Parse and carry out `cpagent sim <argv>` in the running loop; return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exit_:  # argparse has printed the usage problem
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return await execute(args, out=out, err=err)


async def execute(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    """Carry out one parsed verb against the API; return the exit code."""
    from simulator.api_client import ApiClient, ApiError, ApiUnreachable

    try:
        client = ApiClient(args.api, token=_token(args.token_file, os.environ))
        if args.verb == "network" and args.seconds is not None and args.action != "offline":
            raise UsageError("--seconds goes only with 'network offline'")
        if args.verb == "messages" and not 1 <= args.limit <= 1000:
            raise UsageError(f"--limit must be from 1 to 1000, got {args.limit}")
    except (UsageError, ValueError) as exc:
        print(f"{_PROG}: {exc}", file=err)
        return EXIT_USAGE
    try:
        async with client:
            if args.verb == "run":
                return await _run_scenario(client, args, out=out, err=err)
            if args.verb == "messages":
                return await _messages(client, args, out=out, err=err)
            answer = await _call(client, args)
            print(json.dumps(answer, indent=2) if args.json else _human(args, answer), file=out)
            return EXIT_OK
    except ApiError as error:
        print(f"{_PROG}: the API answered {error.status}: {error.message}", file=err)
        return EXIT_API_ERROR
    except ApiUnreachable as error:
        print(f"{_PROG}: {error} (is the agent running with api.enabled: true?)", file=err)
        return EXIT_UNREACHABLE


def _token(token_file: str | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token from --token-file, else $CPAGENT_API_TOKEN; raises UsageError."""
    if token_file is None:
        return environ.get(TOKEN_ENV, "").strip() or None
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read the token file {token_file}: {reason}") from None
    if not token:
        raise UsageError(f"the token file {token_file} is empty")
    return token


async def _call(client: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    """Make the one API call a verb stands for; raises ApiError, ApiUnreachable."""
    match args.verb:
        case "status":
            return await client.status()
        case "plug":
            ev = ("battery_wh", "soc_percent", "max_current_a", "phases", "target_soc_percent")
            return await client.plug(args.evse, **{key: getattr(args, key) for key in ev})
        case "unplug":
            return await client.unplug(args.evse)
        case "tap":
            return await client.tap(args.evse, args.token, args.token_type)
        case "pilot":
            return await client.set_pilot(args.evse, None if args.state == "none" else args.state)
        case "pause":
            return await client.pause_ev(args.evse)
        case "resume":
            return await client.resume_ev(args.evse)
        case "boost":
            return await client.boost(args.evse)
        case "energy":
            return await client.energy()
        case "fault":
            return await client.raise_fault(args.evse, args.code, args.detail)
        case "clear":
            return await client.clear_fault(args.evse, args.code)
        case "network" if args.action == "drop":
            return await client.network_drop()
        case "network" if args.action == "offline":
            return await client.network_offline(args.seconds)
        case "network":
            return await client.network_online()
        case "power":
            return await (client.power_cut() if args.action == "cut" else client.power_restore())
    raise UsageError(f"unknown verb {args.verb!r}")  # argparse allows only the verbs above


async def _run_scenario(
    client: ApiClient, args: argparse.Namespace, *, out: TextIO, err: TextIO
) -> int:
    from simulator.scenario import ScenarioError, load_scenario
    from simulator.scenario_runner import ScenarioRunner

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        print(str(error), file=err)
        print(f"{args.scenario}: {len(error.problems)} problem(s)", file=err)
        return EXIT_USAGE
    runner = ScenarioRunner(scenario, client, out=out, evse=args.evse, keep_going=args.keep_going)
    result = await runner.run()
    return EXIT_OK if result.ok else EXIT_API_ERROR


async def _messages(
    client: ApiClient, args: argparse.Namespace, *, out: TextIO, err: TextIO
) -> int:
    """Print the last messages; with --follow, then every new one until cancelled."""
    if not args.follow:
        backlog = await client.messages(args.limit)
        lines = [json.dumps(backlog, indent=2)] if args.json else map(_message_line, backlog)
        for line in lines:
            print(line, file=out)
        return EXIT_OK
    async with client.message_stream() as stream:  # subscribed first: nothing falls between
        backlog = await client.messages(args.limit)
        shown = {_message_key(message) for message in backlog}
        for message in backlog:
            _print_message(message, args.json, out)
        async for message in stream:
            if _message_key(message) not in shown:
                _print_message(message, args.json, out)
    print(f"{_PROG}: the API ended the message stream", file=err)
    return EXIT_UNREACHABLE


def _message_key(message: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(message.get("at")), str(message.get("direction")), str(message.get("text")))


def _print_message(message: Mapping[str, Any], raw: bool, out: TextIO) -> None:
    print(json.dumps(message) if raw else _message_line(message), file=out, flush=True)


def _message_line(message: Mapping[str, Any]) -> str:
    arrow = ">>" if message.get("direction") == "out" else "<<"
    return f"{message.get('at')} {arrow} {message.get('text')}"


# -- human output ----------------------------------------------------------------------------


def _human(args: argparse.Namespace, answer: Mapping[str, Any]) -> str:
    if args.verb == "status":
        return status_table(answer)
    if args.verb == "network":
        return connection_line(answer)
    if args.verb == "power":
        return "power: on" if answer.get("powered") else "power: off"
    if args.verb == "energy":
        return energy_lines(answer)
    return evse_line(answer)


def energy_lines(energy: Mapping[str, Any]) -> str:
    """Energy management for people: capacity, site meter, window, then one line per EVSE."""
    if not energy.get("enabled"):
        return "energy management: not configured"
    lines = [
        f"site limit {_number(energy.get('site_limit_a'))} A, "
        f"EVSEs may draw {_number(energy.get('capacity_a'))} A per phase"
    ]
    meter = energy.get("site_meter")
    if isinstance(meter, Mapping):
        state = "answering" if meter.get("answering") else "NOT answering"
        currents = "/".join(_number(c, 1) for c in meter.get("current_a") or [])
        lines.append(f"site meter {state}: {currents or '-'} A")
    window = energy.get("off_peak")
    if isinstance(window, Mapping):
        state = "open" if window.get("inside") else "closed"
        lines.append(f"off-peak window {state} until {window.get('until') or '-'}")
    boosted = set(energy.get("boosted") or [])
    for evse_id, limit in (energy.get("limits") or {}).items():
        mark = ", boosted" if int(evse_id) in boosted else ""
        lines.append(
            f"EVSE {evse_id}: {_number(limit.get('current_a'))} A ({limit.get('reason')}){mark}"
        )
    return "\n".join(lines)


def connection_line(connection: Mapping[str, Any]) -> str:
    """The CSMS connection on one line: state, online or not, URL."""
    online = "online" if connection.get("online") else "not online"
    return f"connection: {connection.get('state')}, {online} ({connection.get('url') or '-'})"


def evse_line(evse: Mapping[str, Any]) -> str:
    """An EVSE on one line, as after an action: status, phase, pilot, contactor, EV, faults."""
    ev = evse.get("ev")
    parts = [
        f"EVSE {evse.get('id')}: {evse.get('status')} ({evse.get('phase')})",
        f"pilot {evse.get('pilot')}",
        f"contactor {'closed' if evse.get('contactor_closed') else 'open'}",
        f"{_number(evse.get('offered_current_a'))} A offered",
    ]
    if isinstance(ev, Mapping):
        paused = ", paused" if ev.get("paused") else ""
        parts.append(f"EV {_number(ev.get('soc_percent'), 0)}% SoC{paused}")
    if evse.get("faults"):
        parts.append(f"faults: {', '.join(evse['faults'])}")
    return ", ".join(parts)


_COLUMNS = ("EVSE", "phase", "status", "pilot", "contactor", "A offered/actual", "kW", "kWh",
            "SoC", "transaction")  # fmt: skip


def status_table(station: Mapping[str, Any]) -> str:
    """The station header and one row per EVSE, columns aligned."""
    power = "powered" if station.get("powered") else "NO POWER"
    kind = "simulated" if station.get("simulated") else "real hardware"
    connection = connection_line(station.get("connection") or {})
    header = (
        f"station {station.get('id')} (OCPP {station.get('ocpp_version')}, {kind}), {power}, "
        f"{connection}, outbox: {station.get('outbox_pending')}"
    )
    evses = station.get("evses") or []
    if not evses:
        return f"{header}\n(no EVSEs to show while the agent is down)"
    rows = [_COLUMNS, *(_evse_row(evse) for evse in evses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([header, *(line.rstrip() for line in lines)])


def _evse_row(evse: Mapping[str, Any]) -> tuple[str, ...]:
    actual_a = max((float(a) for a in evse.get("current_a") or [0.0]), default=0.0)
    ev = evse.get("ev")
    soc = f"{_number(ev.get('soc_percent'), 0)}%" if isinstance(ev, Mapping) else "-"
    tx = evse.get("transaction")
    transaction = "-"
    if isinstance(tx, Mapping):
        csms = f" (CSMS {tx.get('csms_id')})" if tx.get("csms_id") is not None else ""
        transaction = f"#{tx.get('local_id')} {tx.get('id_token')}{csms}"
    return (
        str(evse.get("id")),
        str(evse.get("phase")),
        str(evse.get("status")),
        str(evse.get("pilot")),
        "closed" if evse.get("contactor_closed") else "open",
        f"{_number(evse.get('offered_current_a'))}/{_number(actual_a, 1)}",
        _number(float(evse.get("power_w") or 0) / 1000, 1),
        _number(float(evse.get("energy_wh") or 0) / 1000, 2),
        soc,
        transaction,
    )


def _number(value: Any, decimals: int | None = None) -> str:
    """A number for people: as short as it goes (`32`, `6.5`), or with fixed decimals."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number:g}" if decimals is None else f"{number:.{decimals}f}"
