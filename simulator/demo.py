"""`cpagent demo`: two scripted charging sessions on simulated hardware, watched live.

Responsible for the first thing a new user runs: start the local CSMS (simulator.csms)
on 127.0.0.1, build an in-memory config for a simulated two-EVSE station, run the *real*
agent (agent.app.Agent) against it and play a story on the plants, narrating each step
and awaiting the agent's real events and the CSMS's real answers. EVSE 1: plug in, tap,
charge until the small battery is full (SuspendedEV), unplug (StopTransaction
EVDisconnected). EVSE 2 meanwhile: tap first, plug in, charge a while, tap again
(StopTransaction Local), unplug. The story is bounded in wall-clock time: an expectation
not met in time is printed and the exit code is 1. On a TTY the state is redrawn in place
(simulator.demo_view.LiveView); `--plain` or a non-TTY stdout prints one line per event
(PlainView).

It must not: reach into the agent beyond its public attributes, wait for the world with
fixed sleeps (pauses only make the live view readable), leave the agent, the CSMS or a
task running when it returns, or print an id token unmasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.app import Agent
from agent.config import Config, ConfigError, parse_config
from agent.core.events import StationEvent, StatusChanged
from agent.core.status import ConnectorStatus, SessionPhase
from agent.ocpp.rpc import Frame
from simulator.csms import Csms, CsmsBehaviour
from simulator.demo_view import LiveView, LogsToView, PlainView, View, mask_card, parse_frame
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
LIVE_PAUSE_S = 1.2
RECHECK_S = 0.25


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


@dataclass
class Exchange:
    """One CALL from the charge point and, once it came, the CSMS's answer."""

    action: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None  # None until a CALLRESULT came


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
        message = parse_frame(frame.text)
        if message is None:
            return
        kind, unique_id = message[0], str(message[1])
        if frame.outgoing and kind == 2 and len(message) == 4:
            self.calls[str(message[2])] += 1
            exchange = Exchange(str(message[2]), dict(message[3]))
            self._pending[unique_id] = exchange
        elif not frame.outgoing and kind in (3, 4) and unique_id in self._pending:
            exchange = self._pending.pop(unique_id)
            exchange.response = dict(message[2]) if kind == 3 else None
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


class Story:
    """The scripted sessions: actions on the plants and cards, then awaited outcomes."""

    def __init__(self, agent: Agent, rec: Recorder, view: View, task: asyncio.Task[Any]) -> None:
        self.agent, self.recorder, self.view, self.agent_task = agent, rec, view, task
        self.timeout_s = timeout_s = demo_timeout_s(agent.config.simulator.time_scale)
        self.deadline_s = time.monotonic() + timeout_s
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

    async def expect_phase(self, evse_id: int, phase: SessionPhase, what: str) -> None:
        """Wait until the EVSE's session machine is in `phase`; raises ExpectationError."""
        evse = self.agent.station.evses[evse_id]
        await self.expect(f"EVSE {evse_id}: {what}", lambda: evse.state == phase)

    async def pause(self) -> None:
        """A moment to read the live view (none in plain mode)."""
        if self.view.live:
            await asyncio.sleep(LIVE_PAUSE_S)

    def say(self, evse_id: int, text: str) -> None:
        """Narrate a step of an EVSE's story."""
        self.view.narrate(f"EVSE {evse_id}: {text}")

    async def authorize(self, evse_id: int, card: str) -> None:
        """Tap `card` and await the CSMS's Accepted; raises ExpectationError."""
        self.say(evse_id, f"the driver taps card {mask_card(card)}")
        before = len(self.recorder.answered("Authorize", idTag=card))
        self.agent.tap(evse_id, card)
        await self.expect(
            f"EVSE {evse_id}: Authorize of card {mask_card(card)} answered by the CSMS",
            lambda: len(self.recorder.answered("Authorize", idTag=card)) > before,
        )
        answer = self.recorder.answered("Authorize", idTag=card)[-1].response or {}
        status = answer.get("idTagInfo", {}).get("status")
        if status != "Accepted":
            raise ExpectationError(f"card {mask_card(card)} Accepted, got {status}")

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

    async def meter_values(self, evse_id: int, tx_id: int, count: int) -> None:
        """Await `count` MeterValues of the transaction acknowledged by the CSMS."""
        await self.expect(
            f"EVSE {evse_id}: {count} MeterValues of transaction {tx_id}",
            lambda: len(self.recorder.answered("MeterValues", transactionId=tx_id)) >= count,
        )

    async def stopped(self, evse_id: int, tx_id: int, reason: str) -> None:
        """Await the StopTransaction answer for `tx_id` with `reason`."""
        await self.expect(
            f"EVSE {evse_id}: StopTransaction of transaction {tx_id} (reason {reason}) answered",
            lambda: bool(self.recorder.answered("StopTransaction", transactionId=tx_id)),
        )
        stop = self.recorder.answered("StopTransaction", transactionId=tx_id)[-1].request
        if stop.get("reason", "Local") != reason:
            raise ExpectationError(f"stop reason {reason}, got {stop.get('reason')}")

    async def unplug(
        self, evse_id: int, tx_id: int, card: str, ev: EvParameters, stops: str | None = None
    ) -> None:
        """Unplug (awaiting the stop it causes, if any), await Available, keep the summary."""
        self.say(evse_id, "the driver unplugs and drives off")
        left = self.plant(evse_id).unplug()
        if stops is not None:
            await self.stopped(evse_id, tx_id, stops)
        await self.expect(
            f"EVSE {evse_id}: StatusNotification Available after the car left",
            lambda: self.recorder.last_status_sent(evse_id) == "Available",
        )
        start = self.recorder.answered("StartTransaction", connectorId=evse_id)[-1].request
        stop = self.recorder.answered("StopTransaction", transactionId=tx_id)[-1].request
        energy_wh = int(stop["meterStop"]) - int(start["meterStart"])
        self.results[evse_id] = (
            f"EVSE {evse_id}: transaction {tx_id}, card {mask_card(card)}, "
            f"{energy_wh / 1000:.2f} kWh delivered (meter {start['meterStart']} -> "
            f"{stop['meterStop']} Wh), SoC {ev.soc_percent:.0f} % -> "
            f"{left.soc_percent if left else 0:.0f} %, stopped: {stop.get('reason', 'Local')}"
        )
        self.say(evse_id, "done, Available again")

    async def evse_1(self) -> None:
        """Plug in, tap, charge until full, unplug."""
        self.say(1, f"a car arrives ({_describe_ev(EV_1)}) and plugs in")
        self.plant(1).plug_in(SimEv(EV_1))
        await self.expect_phase(1, SessionPhase.PLUGGED, "the car detected (Preparing)")
        await self.pause()
        await self.authorize(1, CARD_EVSE_1)
        tx_id = await self.started(1)
        await self.expect(
            "EVSE 1: the battery full, the car stops drawing (SuspendedEV)",
            lambda: self.recorder.saw(1, ConnectorStatus.SUSPENDED_EV),
        )
        ev = self.plant(1).ev
        self.say(1, f"battery full ({ev.soc_percent if ev else 0:.0f} %): SuspendedEV")
        await self.meter_values(1, tx_id, 2)
        await self.pause()
        await self.unplug(1, tx_id, CARD_EVSE_1, EV_1, stops="EVDisconnected")

    async def evse_2(self) -> None:
        """Tap first, plug in, charge a while, tap again to stop, unplug."""
        await self.pause()
        await self.authorize(2, CARD_EVSE_2)
        await self.expect_phase(2, SessionPhase.AUTHORIZED, "authorized, waiting for the car")
        await self.pause()
        self.say(2, f"the car plugs in ({_describe_ev(EV_2)})")
        self.plant(2).plug_in(SimEv(EV_2))
        tx_id = await self.started(2)
        await self.meter_values(2, tx_id, EVSE_2_METER_VALUES)
        self.say(2, f"the driver comes back and taps card {mask_card(CARD_EVSE_2)} again")
        self.agent.tap(2, CARD_EVSE_2)
        await self.stopped(2, tx_id, "Local")
        await self.expect_phase(2, SessionPhase.FINISHING, "Finishing (car still plugged in)")
        await self.pause()
        await self.unplug(2, tx_id, CARD_EVSE_2, EV_2)

    async def play(self) -> None:
        """Both EVSEs' stories at once; raises ExpectationError for the first unmet one."""
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


def _describe_ev(ev: EvParameters) -> str:
    return (
        f"battery {ev.battery_wh / 1000:g} kWh at {ev.soc_percent:g} %, "
        f"{ev.max_current_a:g} A x {ev.phases}"
    )


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
            return await _run_agent(config, recorder, out, plain=plain or not out.isatty())
        finally:
            await csms.stop()


async def _run_agent(config: Config, recorder: Recorder, out: TextIO, *, plain: bool) -> int:
    """Run the agent and the story; print the outcome and the summary."""
    agent = Agent(config)
    view: View = PlainView(out, recorder) if plain else LiveView(out, recorder, agent)
    agent.station.subscribe(recorder.on_event)
    agent.station.subscribe(view.on_event)
    agent.messages.listeners.extend([recorder.on_frame, view.on_frame])
    logs = LogsToView(view)
    logs.install()
    stop = asyncio.Event()
    agent_task = asyncio.create_task(agent.run(stop), name="demo-agent")
    view_task = asyncio.create_task(view.run(), name="demo-view")
    story = Story(agent, recorder, view, agent_task)
    if plain:
        speed = config.simulator.time_scale
        out.write(f"cpagent demo: station {STATION_ID}, CSMS {config.csms.url}, speed x{speed:g}, "
                  f"at most {story.timeout_s:.0f} s\n")  # fmt: skip
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
        logs.remove()
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
