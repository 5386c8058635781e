"""`cpagent demo`: two scripted charging sessions on simulated hardware, watched live.

Responsible for the first thing a new user runs: it starts the local CSMS
(simulator.csms) on 127.0.0.1, builds an in-memory config for a simulated two-EVSE
station, runs the *real* agent (agent.app.Agent) against it and plays a story on the
simulated plants, narrating each step and awaiting the agent's real events and the
CSMS's real answers:

- EVSE 1: plug in, tap a card (Authorize, StartTransaction, Charging, MeterValues), the
  small battery fills up (SuspendedEV), the driver unplugs (StopTransaction,
  EVDisconnected), Available again.
- EVSE 2, at the same time: tap first, then plug in, charge for a while, tap the same
  card to stop (StopTransaction, Local), unplug.

The whole story is bounded in wall-clock time; an expectation not met in time is printed
and the demo returns exit code 1. On a TTY the state is redrawn in place with ANSI
escapes (no curses); `--plain` or a non-TTY stdout prints one line per event instead.

It must not: reach into the agent's internals beyond its public attributes, wait for
the world with fixed sleeps (pauses exist only to make the live view readable), leave
the agent, the CSMS or a task running when it returns, or print an id token unmasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.app import Agent, mask_tokens
from agent.config import Config, ConfigError, parse_config
from agent.core.events import (
    AuthorizationOutcome,
    PhaseChanged,
    StationEvent,
    StatusChanged,
)
from agent.core.status import ConnectorStatus, SessionPhase
from agent.ocpp.rpc import Frame
from simulator.csms import Csms, CsmsBehaviour
from simulator.ev import EvParameters, SimEv
from simulator.plant import Plant

STATION_ID = "DEMO-CP-1"
CARD_EVSE_1 = "04A2B3C4"
CARD_EVSE_2 = "04E5F6A7"
#: The agent's MeterValueSampleInterval: wall-clock seconds of the agent's clock, so a
#: few MeterValues appear whatever the simulation speed.
SAMPLE_INTERVAL_S = 2
#: MeterValues EVSE 2 sends before its driver comes back and stops ("a while").
EVSE_2_METER_VALUES = 2
EV_1 = EvParameters(battery_wh=6000, soc_percent=70, max_current_a=16, phases=3)
EV_2 = EvParameters(battery_wh=40000, soc_percent=30, max_current_a=32, phases=3)
#: Simulated seconds EV_1 needs to fill up (16 A to 80 %, then the taper): ~1,200 s.
EV_1_FULL_SIM_S = 1500.0
DEMO_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
REDRAW_S = 0.25
LIVE_PAUSE_S = 1.2
RECHECK_S = 0.25
MESSAGES_SHOWN = 12
_ROW = "{:<4} {:<12} {:<12} {:<5} {:<9} {:>13} {:>7} {:>8} {:>10} {:>5} {:>3}"
_QUIET_LOGGERS = ("agent", "simulator", "drivers", "cpagent", "websockets", "ocpp", "transitions")


class ExpectationError(Exception):
    """Something the story expected did not happen in time."""


def demo_config(*, csms_url: str, store_dir: Path, speed: float) -> Config:
    """The demo station's config (two sim EVSEs); raises ConfigError for a bad speed."""
    evse = (
        "  - connectors: [{{id: 1, type: cType2, max_current_a: 32, phases: 3}}]\n"
        "    board: {{driver: sim}}\n    meter: {{driver: sim}}\n"
        "    lock: {{driver: sim}}\n    reader: {{driver: sim}}\n"
    )
    text = (
        f"station: {{id: {STATION_ID}, vendor: cpagent, model: Demo-2x22kW}}\n"
        f"csms: {{url: {json.dumps(csms_url)}, reconnect: {{initial_backoff_s: 0.5}}}}\n"
        f"evses:\n{evse.format()}{evse.format()}"
        f"store: {{path: {json.dumps(str(store_dir / 'demo.db'))}}}\n"
        f"simulator: {{time_scale: {speed!r}}}\n"
        "logging: {level: WARNING}\n"
        "settings:\n"
        f"  MeterValueSampleInterval: {SAMPLE_INTERVAL_S}\n"
        '  MeterValuesSampledData: "Energy.Active.Import.Register,Power.Active.Import,'
        'Current.Import,SoC"\n'
        "  HeartbeatInterval: 60\n"
    )
    return parse_config(text, source="<demo>", base_dir=store_dir)


def mask_card(card: str) -> str:
    """A card number as logs show it: all but the last 4 characters hidden."""
    return "*" * max(0, len(card) - 4) + card[-4:]


@dataclass
class Exchange:
    """One CALL from the charge point and, once it came, the CSMS's answer."""

    action: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Recorder:
    """What happened so far, from the agent's station events and OCPP frames."""

    started_s: float = field(default_factory=time.monotonic)
    frames: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    exchanges: list[Exchange] = field(default_factory=list)
    seen: dict[int, list[ConnectorStatus]] = field(default_factory=dict)
    _pending: dict[str, Exchange] = field(default_factory=dict)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)

    def elapsed_s(self) -> float:
        """Wall-clock seconds since the demo started."""
        return time.monotonic() - self.started_s

    def on_event(self, event: StationEvent) -> None:
        """Record a station event and wake the waiters."""
        if isinstance(event, StatusChanged):
            self.seen.setdefault(event.evse_id, []).append(event.status)
        self.poke()

    def on_frame(self, frame: Frame) -> None:
        """Record an OCPP frame (pairing our CALLs with their answers) and wake the waiters."""
        self.frames += 1
        message = _parse(frame.text)
        if message is None:
            return
        kind, unique_id = message[0], str(message[1])
        if frame.outgoing and kind == 2 and len(message) == 4:
            self.calls[str(message[2])] += 1
            exchange = Exchange(str(message[2]), dict(message[3]))
            self._pending[unique_id] = exchange
        elif not frame.outgoing and kind in (3, 4) and unique_id in self._pending:
            exchange = self._pending.pop(unique_id)
            if kind == 3:
                exchange.response = dict(message[2])
            else:
                exchange.error = str(message[2])
            self.exchanges.append(exchange)
        self.poke()

    def poke(self) -> None:
        """Wake everything waiting for a change."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def changed(self, timeout_s: float) -> None:
        """Return at the next recorded change, or after `timeout_s`."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=max(0.0, timeout_s))
        finally:
            self._waiters.discard(waiter)
            waiter.cancel()

    def answered(self, action: str, **fields: Any) -> list[Exchange]:
        """Answered CALLs of `action` whose request has these field values."""
        return [
            e
            for e in self.exchanges
            if e.action == action
            and e.response is not None
            and all(e.request.get(k) == v for k, v in fields.items())
        ]

    def transaction_id(self, connector_id: int) -> int | None:
        """The id the CSMS gave the latest transaction on this connector, if any."""
        starts = self.answered("StartTransaction", connectorId=connector_id)
        return int(starts[-1].response["transactionId"]) if starts and starts[-1].response else None

    def last_status_sent(self, connector_id: int) -> str | None:
        """The last status the CSMS acknowledged for this connector."""
        sent = self.answered("StatusNotification", connectorId=connector_id)
        return str(sent[-1].request["status"]) if sent else None

    def saw(self, evse_id: int, status: ConnectorStatus) -> bool:
        """Whether the EVSE's derived status has been `status` at some point."""
        return status in self.seen.get(evse_id, [])


def _parse(text: str) -> list[Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    ok = isinstance(message, list) and len(message) >= 3 and isinstance(message[-1], dict | str)
    return message if ok else None


def describe_frame(frame: Frame) -> str:
    """One line for a frame: `-> Action {payload}` / `<- Action result {...}`, ids masked."""
    arrow = "->" if frame.outgoing else "<-"
    message = _parse(frame.text)
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


class PlainView:
    """One line per narration, event and frame; no escape codes."""

    live = False

    def __init__(self, out: TextIO, recorder: Recorder) -> None:
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

    def log(self, text: str) -> None:
        """Show a warning from the agent's logs."""
        self._line(f"!! {text}")

    async def run(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Nothing to restore."""


class LiveView:
    """The state redrawn in place a few times a second with ANSI escape codes."""

    live = True

    def __init__(self, out: TextIO, recorder: Recorder, agent: Agent, speed: float) -> None:
        self._out = out
        self._recorder = recorder
        self._agent = agent
        self._speed = speed
        self._story: deque[str] = deque(maxlen=8)
        self._frames: deque[str] = deque(maxlen=MESSAGES_SHOWN)
        self._drawn = 0

    def narrate(self, text: str) -> None:
        """Tell a story step (kept in the story panel)."""
        self._story.append(f"[{self._recorder.elapsed_s():5.1f}s] {text}")

    def on_event(self, event: StationEvent) -> None:
        """Events show in the EVSE rows; nothing else to keep."""

    def on_frame(self, frame: Frame) -> None:
        """Keep the frame for the message panel."""
        self._frames.append(describe_frame(frame))

    def log(self, text: str) -> None:
        """Show a warning from the agent's logs in the story panel."""
        self._story.append(f"[{self._recorder.elapsed_s():5.1f}s] ! {text}")

    def render(self, width: int, height: int) -> list[str]:
        """The screen as lines, each at most `width` characters."""
        agent = self._agent
        lines = [
            f"cpagent demo  station {agent.config.station.id}  CSMS {agent.config.csms.url}  "
            f"connection: {agent.connection_state}",
            f"speed x{self._speed:g}  elapsed {self._recorder.elapsed_s():.1f} s  "
            f"OCPP frames {self._recorder.frames}",
            "",
            _ROW.format(
                "EVSE",
                "session",
                "status",
                "pilot",
                "contactor",
                "offered (PWM)",
                "current",
                "power",
                "energy",
                "SoC",
                "tx",
            ),
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
        duty = plant.duty_percent
        offered = f"{plant.offered_current_a:.0f} A @{duty:.0f} %" if duty is not None else "-"
        ev = plant.ev
        tx = self._recorder.transaction_id(evse_id) if evse.tx is not None else None
        return _ROW.format(
            evse_id, evse.state, evse.status(), plant.pilot_state,
            "closed" if plant.contactor_closed else "open", offered,
            f"{max(plant.current_a):.1f} A", f"{plant.power_w / 1000:.1f} kW",
            f"{plant.energy_import_wh / 1000:.3f} kWh",
            f"{ev.soc_percent:.0f} %" if ev is not None else "-",
            tx if tx is not None else "-",
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


View = PlainView | LiveView


class _ViewLogHandler(logging.Handler):
    """Hands WARNING and worse from the agent's logs to the view, not to a bare stderr."""

    def __init__(self, view: View) -> None:
        super().__init__(logging.WARNING)
        self._view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._view.log(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


class Story:
    """The scripted sessions: actions on the plants and cards, then awaited outcomes."""

    def __init__(
        self,
        agent: Agent,
        recorder: Recorder,
        view: View,
        timeout_s: float,
        agent_task: asyncio.Task[Any],
    ) -> None:
        self.agent = agent
        self.recorder = recorder
        self.view = view
        self.deadline_s = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.agent_task = agent_task
        self.results: dict[int, str] = {}

    def plant(self, evse_id: int) -> Plant:
        """The simulated plant of an EVSE."""
        plant: Plant = self.agent.hardware[evse_id].plant
        return plant

    async def expect(self, what: str, holds: Callable[[], bool]) -> None:
        """Wait until `holds()`; raises ExpectationError naming `what` at the deadline."""
        while not holds():
            if self.agent_task.done():
                raise ExpectationError(f"{what}: the agent stopped unexpectedly")
            left_s = self.deadline_s - time.monotonic()
            if left_s <= 0:
                raise ExpectationError(f"{what} (not within the demo's {self.timeout_s:.0f} s)")
            await self.recorder.changed(min(left_s, RECHECK_S))

    async def pause(self) -> None:
        """A moment to read the live view (none in plain mode)."""
        if self.view.live:
            await asyncio.sleep(LIVE_PAUSE_S)

    def say(self, evse_id: int, text: str) -> None:
        """Narrate a step of an EVSE's story."""
        self.view.narrate(f"EVSE {evse_id}: {text}")

    async def authorize(self, evse_id: int, card: str) -> None:
        """Tap `card` and await the CSMS's Accepted."""
        before = len(self.recorder.answered("Authorize", idTag=card))
        self.agent.tap(evse_id, card)
        await self.expect(
            f"EVSE {evse_id}: Authorize of card {mask_card(card)} answered by the CSMS",
            lambda: len(self.recorder.answered("Authorize", idTag=card)) > before,
        )
        answer = self.recorder.answered("Authorize", idTag=card)[-1].response or {}
        status = answer.get("idTagInfo", {}).get("status")
        if status != "Accepted":
            raise ExpectationError(f"EVSE {evse_id}: card {mask_card(card)} Accepted, got {status}")

    async def started(self, evse_id: int) -> int:
        """Await the StartTransaction answer and Charging; return the transaction id."""
        await self.expect(
            f"EVSE {evse_id}: StartTransaction answered by the CSMS",
            lambda: self.recorder.transaction_id(evse_id) is not None,
        )
        tx_id = self.recorder.transaction_id(evse_id) or 0
        await self.expect(
            f"EVSE {evse_id}: status Charging",
            lambda: self.recorder.saw(evse_id, ConnectorStatus.CHARGING),
        )
        self.say(evse_id, f"transaction {tx_id} started: contactor closed, charging")
        return tx_id

    def meter_values(self, tx_id: int) -> int:
        """How many MeterValues of this transaction the CSMS acknowledged."""
        return len(self.recorder.answered("MeterValues", transactionId=tx_id))

    async def stopped(self, evse_id: int, tx_id: int, reason: str) -> None:
        """Await the StopTransaction answer for `tx_id` with `reason`."""
        await self.expect(
            f"EVSE {evse_id}: StopTransaction of transaction {tx_id} (reason {reason}) answered",
            lambda: bool(self.recorder.answered("StopTransaction", transactionId=tx_id)),
        )
        stop = self.recorder.answered("StopTransaction", transactionId=tx_id)[-1].request
        if stop.get("reason", "Local") != reason:
            raise ExpectationError(
                f"EVSE {evse_id}: stop reason {reason}, got {stop.get('reason')}"
            )

    async def available(self, evse_id: int) -> None:
        """Await the connector being reported Available to the CSMS."""
        await self.expect(
            f"EVSE {evse_id}: StatusNotification Available after the car left",
            lambda: self.recorder.last_status_sent(evse_id) == "Available",
        )

    def summarize(self, evse_id: int, tx_id: int, card: str, soc: tuple[float, float]) -> None:
        """Keep the summary line of a finished session."""
        start = self.recorder.answered("StartTransaction", connectorId=evse_id)[-1].request
        stop = self.recorder.answered("StopTransaction", transactionId=tx_id)[-1].request
        energy_wh = int(stop["meterStop"]) - int(start["meterStart"])
        self.results[evse_id] = (
            f"EVSE {evse_id}: transaction {tx_id}, card {mask_card(card)}, "
            f"{energy_wh / 1000:.2f} kWh delivered (meter {start['meterStart']} -> "
            f"{stop['meterStop']} Wh), SoC {soc[0]:.0f} % -> {soc[1]:.0f} %, "
            f"stopped: {stop.get('reason', 'Local')}"
        )

    async def evse_1(self) -> None:
        """Plug in, tap, charge until full, unplug."""
        self.say(
            1,
            f"a car arrives (battery {EV_1.battery_wh / 1000:g} kWh at "
            f"{EV_1.soc_percent:g} %, {EV_1.max_current_a:g} A x {EV_1.phases}) "
            "and plugs in",
        )
        self.plant(1).plug_in(SimEv(EV_1))
        await self.expect(
            "EVSE 1: the car detected (Preparing)",
            lambda: self.agent.station.evses[1].state == SessionPhase.PLUGGED,
        )
        await self.pause()
        self.say(1, f"the driver taps card {mask_card(CARD_EVSE_1)}")
        await self.authorize(1, CARD_EVSE_1)
        tx_id = await self.started(1)
        await self.expect(
            "EVSE 1: the battery full, the car stops drawing (SuspendedEV)",
            lambda: self.recorder.saw(1, ConnectorStatus.SUSPENDED_EV),
        )
        ev = self.plant(1).ev
        self.say(1, f"battery full ({ev.soc_percent if ev else 0:.0f} %): SuspendedEV")
        await self.expect(
            f"EVSE 1: 2 MeterValues of transaction {tx_id}", lambda: self.meter_values(tx_id) >= 2
        )
        await self.pause()
        self.say(1, "the driver unplugs and drives off")
        left = self.plant(1).unplug()
        await self.stopped(1, tx_id, "EVDisconnected")
        await self.available(1)
        soc = (EV_1.soc_percent, left.soc_percent if left else 0.0)
        self.summarize(1, tx_id, CARD_EVSE_1, soc)
        self.say(1, "done, Available again")

    async def evse_2(self) -> None:
        """Tap first, plug in, charge a while, tap again to stop, unplug."""
        await self.expect(
            "EVSE 2: the connection to the CSMS (BootNotification accepted)",
            lambda: bool(self.recorder.answered("BootNotification")),
        )
        await self.pause()
        self.say(2, f"another driver taps card {mask_card(CARD_EVSE_2)} before plugging in")
        await self.authorize(2, CARD_EVSE_2)
        await self.expect(
            "EVSE 2: authorized, waiting for the car",
            lambda: self.agent.station.evses[2].state == SessionPhase.AUTHORIZED,
        )
        await self.pause()
        self.say(
            2,
            f"the car plugs in (battery {EV_2.battery_wh / 1000:g} kWh at "
            f"{EV_2.soc_percent:g} %, {EV_2.max_current_a:g} A x {EV_2.phases})",
        )
        self.plant(2).plug_in(SimEv(EV_2))
        tx_id = await self.started(2)
        await self.expect(
            f"EVSE 2: {EVSE_2_METER_VALUES} MeterValues of transaction {tx_id}",
            lambda: self.meter_values(tx_id) >= EVSE_2_METER_VALUES,
        )
        self.say(2, f"the driver comes back and taps card {mask_card(CARD_EVSE_2)} again")
        self.agent.tap(2, CARD_EVSE_2)
        await self.stopped(2, tx_id, "Local")
        await self.expect(
            "EVSE 2: Finishing (transaction over, car still plugged in)",
            lambda: self.agent.station.evses[2].state == SessionPhase.FINISHING,
        )
        await self.pause()
        self.say(2, "the driver unplugs")
        left = self.plant(2).unplug()
        await self.available(2)
        soc = (EV_2.soc_percent, left.soc_percent if left else 0.0)
        self.summarize(2, tx_id, CARD_EVSE_2, soc)
        self.say(2, "done, Available again")

    async def play(self) -> None:
        """Both EVSEs' stories at once; raises ExpectationError for the first unmet expectation."""
        await self.expect(
            "the agent connected and booted (BootNotification accepted)",
            lambda: bool(self.recorder.answered("BootNotification")),
        )
        self.view.narrate(f"connected to the CSMS as {STATION_ID}")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.evse_1(), name="demo-evse-1")
                group.create_task(self.evse_2(), name="demo-evse-2")
        except* ExpectationError as failures:
            raise failures.exceptions[0] from None


def demo_timeout_s(speed: float) -> float:
    """The demo's wall-clock bound: 90 s, longer when the speed is too low to fill EV 1."""
    return max(DEMO_TIMEOUT_S, 30.0 + 2.0 * EV_1_FULL_SIM_S / speed)


async def run_demo(
    *, speed: float = 120.0, port: int = 0, plain: bool = False, out: TextIO | None = None
) -> int:
    """Play the demo against a local CSMS; return 0 when every step happened, else 1."""
    out = out if out is not None else sys.stdout
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="cpagent-demo-") as store_dir:
        csms = Csms(CsmsBehaviour(boot_interval_s=60), port=port)
        try:
            await csms.start()
        except OSError as exc:
            out.write(f"demo: cannot start the local CSMS on 127.0.0.1:{port}: {exc}\n")
            return 1
        try:
            try:
                config = demo_config(csms_url=csms.url, store_dir=Path(store_dir), speed=speed)
            except ConfigError as exc:
                out.write(f"demo: {exc}\n")
                return 1
            return await _run_agent(
                config, recorder, out, plain=plain or not out.isatty(), speed=speed
            )
        finally:
            await csms.stop()


async def _run_agent(
    config: Config, recorder: Recorder, out: TextIO, *, plain: bool, speed: float
) -> int:
    """Run the agent and the story; print the outcome and the summary."""
    agent = Agent(config)
    view: View = PlainView(out, recorder) if plain else LiveView(out, recorder, agent, speed)
    agent.station.subscribe(recorder.on_event)
    agent.station.subscribe(view.on_event)
    agent.messages.listeners.extend([recorder.on_frame, view.on_frame])
    restore_logging = _quiet_logging(_ViewLogHandler(view))
    stop = asyncio.Event()
    agent_task = asyncio.create_task(agent.run(stop), name="demo-agent")
    view_task = asyncio.create_task(view.run(), name="demo-view")
    timeout_s = demo_timeout_s(speed)
    story = Story(agent, recorder, view, timeout_s, agent_task)
    if plain:
        out.write(
            f"cpagent demo: station {STATION_ID}, CSMS {config.csms.url}, speed x{speed:g}, "
            f"at most {timeout_s:.0f} s\n"
        )
    failure: str | None = None
    try:
        await story.play()
    except ExpectationError as exc:
        failure = str(exc)
    finally:
        view_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await view_task
        stop.set()
        failure = await _stop_agent(agent_task) or failure
        view.close()
        restore_logging()
    if failure is not None:
        out.write(f"\nDemo FAILED: expected {failure}.\n")
        for evse_id, evse in sorted(agent.station.evses.items()):
            out.write(f"  EVSE {evse_id} is {evse.state} / {evse.status()}\n")
        out.flush()
        return 1
    _summary(out, story, recorder)
    return 0


async def _stop_agent(task: asyncio.Task[Any]) -> str | None:
    """Await the agent's clean stop; return a failure text if it did not stop cleanly."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await task
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return f"the agent to stop within {STOP_TIMEOUT_S:.0f} s"
    except Exception as exc:
        return f"the agent to run without error, got {exc!r}"
    return None


def _summary(out: TextIO, story: Story, recorder: Recorder) -> None:
    calls = ", ".join(f"{action} {n}" for action, n in recorder.calls.most_common())
    lines = ["", "Summary"]
    lines += [f"  {story.results[evse_id]}" for evse_id in sorted(story.results)]
    lines += [
        f"  OCPP: {recorder.frames} messages exchanged in {recorder.elapsed_s():.1f} s; "
        f"calls from the charge point: {calls}",
        "Demo completed: both sessions ran as expected.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _quiet_logging(handler: logging.Handler) -> Callable[[], None]:
    """Keep library logs at WARNING and route them to the view; returns the undo."""
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)

    def restore() -> None:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    return restore
