"""The demo's two views of a running agent: a live screen and a plain event log.

Responsible for showing what the demo sees: `LiveView` redraws the station state (one
row per EVSE, the story so far, the latest OCPP messages) in place with ANSI escapes (no
curses); `PlainView` prints one time-stamped line per narration, event and frame. Also
the helpers that turn frames, station events and cards into display text, and the log
handler that routes library warnings into the view while the demo runs.

It must not: drive the story or the plants (simulator.demo does), change the agent (it
only reads public attributes), fit more lines than the screen has (the redraw moves up
by lines), or print an id token unmasked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections import deque
from typing import Any, Protocol, TextIO

from agent.app import Agent, mask_tokens
from agent.core.events import AuthorizationOutcome, PhaseChanged, StationEvent, StatusChanged
from agent.ocpp.rpc import Frame
from simulator.plant import Plant

REDRAW_S = 0.25
MESSAGES_SHOWN = 12
# Most telling columns first: a narrow terminal cuts the pilot and contactor columns.
_ROW = "{:<4} {:<11} {:<13} {:>3} {:>7} {:>7} {:>7} {:>9} {:>5} {:>5} {:>9}"
_HEADER = ("EVSE", "session", "status", "tx", "offered", "current", "power", "energy", "SoC",
           "pilot", "contactor")  # fmt: skip
_QUIET_LOGGERS = ("agent", "simulator", "drivers", "cpagent", "websockets", "ocpp", "transitions")


class Timeline(Protocol):
    """What the views read of the demo's record of events (simulator.demo.Recorder)."""

    frames: int

    def elapsed_s(self) -> float:
        """Wall-clock seconds since the demo started."""
        ...

    def transaction_id(self, connector_id: int) -> int | None:
        """The id the CSMS gave the latest transaction on this connector, if any."""
        ...


def mask_card(card: str) -> str:
    """A card number as logs show it: all but the last 4 characters hidden."""
    return "*" * max(0, len(card) - 4) + card[-4:]


def parse_frame(text: str) -> list[Any] | None:
    """The OCPP-J message list in `text`, or None when it is not one."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    ok = isinstance(message, list) and len(message) >= 3 and isinstance(message[-1], dict | str)
    return message if ok else None


def describe_frame(frame: Frame) -> str:
    """One line for a frame: `-> Action {payload}` / `<- Action result {...}`, ids masked."""
    arrow = "->" if frame.outgoing else "<-"
    message = parse_frame(frame.text)
    if message is None:
        return f"{arrow} {mask_tokens(frame.text)}"
    kind = message[0]
    action = str(message[2]) if kind == 2 else (frame.action or "?")
    payload = message[3] if kind == 2 and len(message) > 3 else message[2]
    if kind == 4:
        detail = " ".join(str(part) for part in message[2:4])
        return f"{arrow} {action} error {detail}"
    label = action if kind == 2 else f"{action} result"
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"{arrow} {label} {mask_tokens(body)}"


def describe_event(event: StationEvent) -> str | None:
    """One line for a station event worth showing (None for internal ones)."""
    if isinstance(event, StatusChanged):
        fault = f" ({event.fault})" if event.fault else ""
        return f"EVSE {event.evse_id}: status {event.status}{fault}"
    if isinstance(event, PhaseChanged):
        return f"EVSE {event.evse_id}: session {event.phase}"
    if isinstance(event, AuthorizationOutcome):
        verdict = "accepted" if event.result.accepted else f"refused ({event.result.status})"
        return f"EVSE {event.evse_id}: card {mask_card(event.token.value)} {verdict}"
    return None


def _fit(line: str, width: int) -> str:
    """Cut a line to `width` characters, marking the cut."""
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


class _View:
    """What every view does by default: nothing to run, nothing to restore."""

    live = False

    def narrate(self, text: str) -> None:
        """Tell a story step."""
        raise NotImplementedError

    def log(self, text: str) -> None:
        """Show a warning from the agent's logs as a story line."""
        self.narrate(f"! {text}")

    def on_event(self, event: StationEvent) -> None:
        """Show a station event (the live view shows them in its EVSE rows)."""

    async def run(self) -> None:
        """Keep the view up to date until cancelled."""

    def close(self) -> None:
        """Draw the last state and restore the terminal."""


class PlainView(_View):
    """One line per narration, event and frame; no escape codes."""

    def __init__(self, out: TextIO, recorder: Timeline) -> None:
        self._out = out
        self._recorder = recorder

    def _line(self, text: str) -> None:
        stamp = f"[{self._recorder.elapsed_s():6.2f}s]"
        self._out.write(f"{stamp} {text}\n")
        self._out.flush()

    def narrate(self, text: str) -> None:
        """Tell a story step."""
        self._line(f"== {text}")

    def on_event(self, event: StationEvent) -> None:
        """Show a station event."""
        text = describe_event(event)
        if text is not None:
            self._line(f"   {text}")

    def on_frame(self, frame: Frame) -> None:
        """Show an OCPP frame."""
        self._line(f"   {describe_frame(frame)}")


class LiveView(_View):
    """The state redrawn in place a few times a second with ANSI escape codes."""

    live = True

    def __init__(self, out: TextIO, recorder: Timeline, agent: Agent) -> None:
        self._out = out
        self._recorder = recorder
        self._agent = agent
        self._story: deque[str] = deque(maxlen=8)
        self._frames: deque[str] = deque(maxlen=MESSAGES_SHOWN)
        self._drawn = 0

    def narrate(self, text: str) -> None:
        """Tell a story step (kept in the story panel)."""
        self._story.append(f"[{self._recorder.elapsed_s():5.1f}s] {text}")

    def on_frame(self, frame: Frame) -> None:
        """Keep the frame for the message panel."""
        self._frames.append(describe_frame(frame))

    def render(self, width: int, height: int) -> list[str]:
        """The screen as lines, each at most `width` characters."""
        agent = self._agent
        lines = [
            f"cpagent demo  station {agent.config.station.id}  "
            f"connection: {agent.connection_state}  CSMS {agent.config.csms.url}",
            f"speed x{agent.config.simulator.time_scale:g}  elapsed "
            f"{self._recorder.elapsed_s():.1f} s  OCPP frames {self._recorder.frames}",
            "",
            _ROW.format(*_HEADER),
        ]
        lines += [self._row(evse_id) for evse_id in sorted(agent.station.evses)]
        # Everything must fit the screen: the redraw cannot move above its top line.
        room = max(2, height - 1 - len(lines) - 4)
        story = list(self._story)[-max(1, min(len(self._story), room // 2)) :]
        lines += ["", "Story", *(story or ["(starting)"]), "", "OCPP messages"]
        lines += list(self._frames)[len(self._frames) - max(0, room - len(story)) :]
        return [_fit(line, width) for line in lines]

    def _row(self, evse_id: int) -> str:
        evse = self._agent.station.evses[evse_id]
        plant: Plant = self._agent.hardware[evse_id].plant
        ev = plant.ev
        tx = self._recorder.transaction_id(evse_id) if evse.tx is not None else None
        return _ROW.format(
            evse_id, evse.state, evse.status(), tx if tx is not None else "-",
            f"{plant.offered_current_a:.0f} A" if plant.duty_percent is not None else "-",
            f"{max(plant.current_a):.1f} A", f"{plant.power_w / 1000:.1f} kW",
            f"{plant.energy_import_wh / 1000:.2f} kWh",
            f"{ev.soc_percent:.0f} %" if ev is not None else "-",
            plant.pilot_state, "closed" if plant.contactor_closed else "open",
        )  # fmt: skip

    def draw(self) -> None:
        """Redraw the screen in place of the previous drawing."""
        size = shutil.get_terminal_size((100, 30))
        lines = self.render(size.columns - 1, size.lines)
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        body = "".join(f"\x1b[2K{line}\n" for line in lines)
        self._out.write(f"{up}{body}\x1b[J")
        self._out.flush()
        self._drawn = len(lines)

    async def run(self) -> None:
        """Redraw every REDRAW_S until cancelled."""
        self._out.write("\x1b[?25l")  # hide the cursor while redrawing
        while True:
            self.draw()
            await asyncio.sleep(REDRAW_S)

    def close(self) -> None:
        """Draw the final state and give the cursor back."""
        self.draw()
        self._out.write("\x1b[?25h")
        self._out.flush()


View = PlainView | LiveView  # fmt: skip


class LogsToView(logging.Handler):
    """While installed: library logs at WARNING, and those shown in the view, not on stderr."""

    def __init__(self, view: View) -> None:
        super().__init__(logging.WARNING)
        self._view = view
        self._levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._view.log(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)

    def install(self) -> None:
        """Quiet the libraries and route their warnings to the view."""
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger().addHandler(self)

    def remove(self) -> None:
        """Undo install()."""
        logging.getLogger().removeHandler(self)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
