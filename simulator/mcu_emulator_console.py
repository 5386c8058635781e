"""The reference MCU as a standalone program: a pty for `cpagent run`, commands on stdin.

`python -m simulator.mcu_emulator` (or this module) starts one `McuEmulator` in front of
a Plant, prints the pty's slave path on stdout, and then reads one command a line from
stdin (plug, unplug, fault injections, status) until stdin closes or "quit".

It only drives the emulator's public methods; it must not import the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable

from simulator.ev import EvParameters, SimEv
from simulator.mcu_emulator import McuEmulator
from simulator.plant import Plant

HELP = """commands: plug [soc] | unplug | pause | resume | weld on|off | stuck on|off |
rcd dc|ac | temp C | jam on|off | cable A | silent on|off | reset | garble N |
selftest-fail on|off | status | quit"""


def _command(emulator: McuEmulator, line: str) -> str:
    """Apply one stdin command; return what to print (raises ValueError for bad numbers)."""
    verb, *args = line.split() or ["status"]
    arg = args[0] if args else ""
    on = arg in ("on", "1", "true")
    plant, ev = emulator.plant, emulator.plant.ev
    actions: dict[str, Callable[[], object]] = {
        "plug": lambda: plant.plug_in(SimEv(EvParameters(soc_percent=float(arg or 20)))),
        "unplug": plant.unplug,
        "pause": ev.pause if ev else plant.step,
        "resume": ev.resume if ev else plant.step,
        "weld": lambda: emulator.weld_contactor(on),
        "stuck": lambda: emulator.stick_contactor_open(on),
        "rcd": lambda: emulator.trip_rcd(dc=arg != "ac"),
        "temp": lambda: emulator.set_temperature(float(arg)),
        "jam": lambda: emulator.jam_lock(on),
        "cable": lambda: emulator.set_cable(int(arg)),
        "silent": lambda: emulator.set_silent(on),
        "reset": emulator.reset,
        "garble": lambda: emulator.garble_next(int(arg or 1)),
        "selftest-fail": lambda: emulator.fail_selftests(on),
        "status": plant.step,
    }
    if verb not in actions:
        return HELP
    actions[verb]()
    return (
        f"pilot {plant.pilot_state} ({emulator.pilot_mode}), contactor "
        f"{'closed' if emulator.contactor_closed else 'open'} (coil {emulator.coil_on}), "
        f"faults 0x{int(emulator.fault_bits):x}, lock {emulator.lock_position.name}, "
        f"session {emulator.session_active}"
    )


async def _serve(args: argparse.Namespace) -> None:
    emulator = McuEmulator(
        Plant(time_scale=args.time_scale),
        interlock=not args.no_interlock,
        cable_ampacity_a=args.cable,
    )
    path = await emulator.start()
    print(path, flush=True)
    print(HELP, file=sys.stderr, flush=True)
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            try:
                reply = _command(emulator, line)
            except ValueError as exc:
                reply = f"error: {exc}"
            if reply:
                print(reply, file=sys.stderr, flush=True)
    finally:
        await emulator.close()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until stdin closes; prints the pty slave path first."""
    parser = argparse.ArgumentParser(description="Reference serial MCU on a pty")
    parser.add_argument("--no-interlock", action="store_true", help="close without C/D")
    parser.add_argument("--cable", type=int, default=None, help="socket cable ampacity (A)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per s")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
