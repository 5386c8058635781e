"""Bench: a day of local energy management, off-peak and PV surplus, as figures and plots.

Issue 6: "energy delivered and limit adherence for a day of simulated off-peak and
PV-surplus charging, printed as a table and drawn as a plot (PNG) of limit against
current over time".

Two scenarios (bench/_energy_scenarios.py), each 24 h of simulated time (`--hours`
shortens them) of a home with two EVSEs behind one grid connection measured by a
simulated site meter. The real Agent runs (OCPP 1.6 to the simulator's CSMS on 127.0.0.1)
on a fake clock that this script moves one control period at a time, letting each
control cycle finish; the world (base load, PV, cars arriving, boosting and leaving)
changes between cycles, right after a reading: the worst moment for the site limit. The
plants integrate energy and state of charge on the same fake clock, so a day runs in
seconds and cars fill up as they would.

- A, off-peak: a cheap window 22:00-06:00 on weekdays (Europe/Berlin), a 32 A connection,
  an evening base load (a cooker, a dryer on a timer, a heat pump). One car arrives at
  17:30 and waits for the window; the other arrives at 18:00, its driver boosts (the car
  is needed at 19:45), and it comes back at 20:30 to charge in the window.
- B, PV surplus: 8 kW of PV (a clipped sine, sunrise 04:45, sunset 21:30, a cloud at
  11:00 and a shorter one at 14:10), a 25 A connection, a base load with lunch and a
  washing machine. Both EVSEs follow the surplus; EVSE 1 switches between 1 and 3 phases,
  EVSE 2 (three-phase, no switching) gets a visitor's one-phase car from 10:00 to 16:00.
  `--min-current`: 6 A from the grid below the surplus instead of pausing.

Targets (figures beside them; exit 0 either way):
- the grid current stays above the site limit no longer than one control period (a rise
  of the other loads is seen at the next reading; agent/energy.py);
- A: energy only in the window unless boosted (0 kWh outside it otherwise);
- B: PV-mode charging from the surplus: >= 95 % of the EVSEs' energy (the minimum
  current and the stop delay cost the rest); not a target with --min-current.

Accounting: each control period, every EVSE's energy register delta (the plant's, exact)
is classified by the state at the period's start: inside the window (from the local time,
not asked of the agent), boosted, from the PV surplus (min(what the EVSEs took, PV - base
load), shared in proportion, net over the three phases as a household meter bills it)
or from the grid. The grid current is recorded at every change of any plant and of the
world, so spans above the limit are measured, not sampled.

    python bench/energy_day.py [--hours 24] [--min-current] [--json FILE] [--png DIR]

PNGs (`bench/out/` by default, git-ignored) need matplotlib, an optional extra:
`pip install -e '.[bench]'`; without it the tables are printed and the plots skipped.

Must not: sleep on wall time to wait for the world.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, verdict, write_json
from _energy_plot import draw_scenario, matplotlib_missing
from _energy_scenarios import Scenario, Visit, scenarios, site_config

from agent.app import Agent
from agent.core.status import SessionPhase
from simulator.csms import Csms
from simulator.drivers import SiteLoad
from simulator.ev import SimEv
from simulator.plant import NOMINAL_VOLTAGE_V, Plant

V = NOMINAL_VOLTAGE_V
PV_SURPLUS_TARGET = 0.95
#: Above the limit means by more than this: the EVSEs are allocated the site limit less
#: the other loads exactly, so the sum sits on the limit up to floating-point rounding.
LIMIT_TOLERANCE_A = 0.01
EPS = 1e-6


# -- the fake clock ------------------------------------------------------------------------


class DayClock:
    """The agent's Clock and the plants' monotonic source: time moves only by advance()."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        """The simulated time (aware)."""
        return self._now

    def monotonic(self) -> float:
        """Simulated seconds since the start."""
        return (self._now - self.start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has moved `seconds` on."""
        deadline = self._now + timedelta(seconds=max(0.0, seconds))
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (deadline, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move on by `seconds`, waking every sleeper whose deadline is reached."""
        self._now += timedelta(seconds=seconds)
        for deadline, future in self._sleepers:
            if deadline <= self._now and not future.done():
                future.set_result(None)


async def settle(turns: int = 10) -> None:
    """Let every runnable task take `turns` steps: the agent reacting at this instant.
    (A limit reaches the plants within one turn of a control cycle; 10 is a margin: the
    figures are the same with 60.)"""
    for _ in range(turns):
        await asyncio.sleep(0)


# -- what happened -------------------------------------------------------------------------


@dataclass
class EvseFigures:
    """One EVSE's day: energy by where it came from, phase switches, pauses, waiting."""

    energy_wh: float = 0.0
    in_window_wh: float = 0.0
    boosted_wh: float = 0.0
    outside_wh: float = 0.0  # outside the window, not boosted
    from_pv_wh: float = 0.0
    phase_switches: int = 0
    pauses: int = 0  # charging stopped while the EV still wanted power
    waited_s: float = 0.0  # plugged in, wanting power, not drawing (pauses included)
    sessions: int = 0
    phases: int = 3
    drawing: bool = False
    waiting_since: float | None = None
    waiting_after_drawing: bool = False

    def add(self, other: EvseFigures) -> None:
        """Add `other`'s counts to these."""
        for name in ("energy_wh", "in_window_wh", "boosted_wh", "outside_wh", "from_pv_wh",
                     "phase_switches", "pauses", "waited_s", "sessions"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Series:
    """One sample per control period (at its start, after the world changed), for the plot."""

    t: list[datetime] = field(default_factory=list)
    grid_a: list[float] = field(default_factory=list)  # the most loaded phase
    net_a: list[float] = field(default_factory=list)  # net power as A per phase
    base_a: list[float] = field(default_factory=list)
    surplus_a: list[float] = field(default_factory=list)  # PV - base load, A per phase
    capacity_a: list[float | None] = field(default_factory=list)
    window: list[bool] = field(default_factory=list)
    evse_limit_a: dict[int, list[float | None]] = field(default_factory=dict)
    evse_a: dict[int, list[float]] = field(default_factory=dict)
    evse_phases: dict[int, list[int]] = field(default_factory=dict)
    boosted: dict[int, list[bool]] = field(default_factory=dict)


class Recorder:
    """The grid current at every change, the EVSEs' state changes, the period samples."""

    def __init__(self, clock: DayClock, site: SiteLoad, plants: dict[int, Plant]) -> None:
        self.clock = clock
        self.site = site
        self.plants = plants
        self.trace: list[tuple[float, float]] = []  # (t_s, highest phase current)
        self.evses = {i: EvseFigures() for i in plants}
        self.series = Series()
        for evse_id, plant in plants.items():
            plant.watch(lambda i=evse_id: self.on_change(i))  # type: ignore[misc]

    def on_change(self, evse_id: int | None = None) -> None:
        """Record the grid current and (for `evse_id`) phase switches, pauses, waiting."""
        now = self.clock.monotonic()
        current = max(self.site.currents_a())
        if not self.trace or self.trace[-1][1] != current:
            self.trace.append((now, current))
        if evse_id is None:
            return
        plant, figures = self.plants[evse_id], self.evses[evse_id]
        if plant.supply_phases != figures.phases:
            figures.phases = plant.supply_phases
            figures.phase_switches += 1
        drawing = max(plant.current_a) > 0.0
        ev = plant.ev
        waiting = not drawing and ev is not None and ev.wants_power
        if waiting and figures.waiting_since is None:
            figures.waiting_since = now
            figures.waiting_after_drawing = figures.drawing
        elif not waiting:
            self._stop_waiting(figures, now)
        figures.drawing = drawing

    @staticmethod
    def _stop_waiting(figures: EvseFigures, now: float) -> None:
        """End a wait; one of no simulated time (a phase switch, done at one instant) is
        neither a wait nor a pause."""
        since, figures.waiting_since = figures.waiting_since, None
        if since is not None and now - since > EPS:
            figures.waited_s += now - since
            figures.pauses += figures.waiting_after_drawing

    def finish(self) -> None:
        """Count the waits still under way at the end."""
        for figures in self.evses.values():
            self._stop_waiting(figures, self.clock.monotonic())

    def peak_a(self) -> float:
        """The highest grid current that lasted (one of no simulated time, a step of the
        agent's reaction at one instant, is not a current the grid carried)."""
        end_s = self.clock.monotonic()
        ends = [t_s for t_s, _ in self.trace[1:]] + [end_s]
        lasting = [c for (t_s, c), until in zip(self.trace, ends, strict=True) if until - t_s > EPS]
        return max(lasting, default=0.0)

    def spans_above(self, limit_a: float) -> list[tuple[float, float]]:
        """(start, duration) of each stretch of the trace above `limit_a`."""
        spans: list[tuple[float, float]] = []
        end_s = self.clock.monotonic()
        for index, (t_s, current) in enumerate(self.trace):
            if current <= limit_a + LIMIT_TOLERANCE_A:
                continue
            until = self.trace[index + 1][0] if index + 1 < len(self.trace) else end_s
            if spans and abs(spans[-1][0] + spans[-1][1] - t_s) < EPS:
                spans[-1] = (spans[-1][0], until - spans[-1][0])
            else:
                spans.append((t_s, until - t_s))
        return [span for span in spans if span[1] > EPS]


# -- running a scenario --------------------------------------------------------------------


class DayRun:
    """The real agent over one scenario's site, stepped one control period at a time."""

    def __init__(self, scenario: Scenario, csms: Csms, store_dir: Path) -> None:
        self.scenario = scenario
        self.clock = DayClock(scenario.start)
        self.config = site_config(scenario, csms.url, store_dir)
        self.period_s = self.config.energy.control_period_s
        self.csms = csms
        self.agent = Agent(self.config, clock=self.clock)
        site = getattr(self.agent.site_meter, "site", None)
        if not isinstance(site, SiteLoad):
            raise RuntimeError("the scenario needs the simulated site meter")
        self.site = site
        self.plants: dict[int, Plant] = {i: h.plant for i, h in self.agent.hardware.items()}
        self.recorder = Recorder(self.clock, site, self.plants)
        self.series = self.recorder.series
        self.cars = {name: SimEv(params) for name, params in scenario.cars.items()}
        self.boosted: dict[int, bool] = dict.fromkeys(self.plants, False)
        self.surplus_unused_wh = 0.0  # PV surplus exported while a PV-mode EV waited
        self.billed_wh: float | None = None  # what the CSMS was told, all sessions ended
        self._registers = {i: p.energy_import_wh for i, p in self.plants.items()}

    async def run(self, hours: float) -> None:
        """Start the agent, play `hours` of the day, stop it."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.agent.run(stop))
        try:
            await self.csms.wait_for("BootNotification")
            await self.agent.wait_until(lambda: self.agent.adapter.online)
            for _ in range(round(hours * 3600 / self.period_s)):
                await self._step()
            self.recorder.finish()
        finally:
            stop.set()
            await task
        starts = self.csms.calls("StartTransaction")
        stops = self.csms.calls("StopTransaction")
        if starts and len(stops) == len(starts):
            self.billed_wh = float(sum(p["meterStop"] for p in stops)) - sum(
                p["meterStart"] for p in starts
            )

    async def _step(self) -> None:
        """One control period: the world changes, then time moves to the next reading."""
        scenario, now = self.scenario, self.clock.now()
        self.site.base_load_a = scenario.base_load_a(now)
        self.site.pv_w = scenario.pv_w(now)
        self.recorder.on_change()
        await self._visits()
        await settle()
        self._sample()
        window = scenario.in_window(now) if scenario.in_window is not None else False
        surplus_w = max(0.0, self.site.pv_w - sum(self.site.base_load_a) * V)
        ev_waiting = any(
            p.ev is not None and p.ev.wants_power and max(p.current_a) == 0.0
            for p in self.plants.values()
        )
        self.clock.advance(self.period_s)
        energy = self.agent.energy
        if energy is not None:
            due = int(self.clock.monotonic() / self.period_s + 1e-9) + 1
            while energy.cycles < due:
                await energy.next_cycle()
        await settle()
        self._account(window, surplus_w * self.period_s / 3600, ev_waiting)

    async def _visits(self) -> None:
        """Cars leaving, then cars arriving, whose time falls in this period."""
        start_s = self.clock.monotonic()

        def due(at_h: float) -> bool:
            return start_s - EPS <= at_h * 3600 < start_s + self.period_s - EPS

        for visit in self.scenario.visits:
            if due(visit.leave_h):
                await self._leave(visit.evse_id)
        for visit in self.scenario.visits:
            if due(visit.arrive_h):
                await self._arrive(visit)

    async def _arrive(self, visit: Visit) -> None:
        """The driver taps a card and plugs in (and boosts); returns once the transaction
        runs."""
        evse = self.agent.station.evses[visit.evse_id]
        self.agent.tap(visit.evse_id, f"CARD-{visit.car.upper()}")
        await self.agent.wait_until(lambda: evse.state is SessionPhase.AUTHORIZED)
        self.plants[visit.evse_id].plug_in(self.cars[visit.car])
        await self.agent.wait_until(lambda: evse.tx is not None)
        self.recorder.evses[visit.evse_id].sessions += 1
        if visit.boost and self.agent.energy is not None:
            self.agent.energy.boost(visit.evse_id)
            self.boosted[visit.evse_id] = True

    async def _leave(self, evse_id: int) -> None:
        """The car unplugs; returns once its transaction has ended."""
        evse = self.agent.station.evses[evse_id]
        self.plants[evse_id].unplug()
        await self.agent.wait_until(lambda: evse.tx is None)
        self.boosted[evse_id] = False

    def _sample(self) -> None:
        series, site, now = self.series, self.site, self.clock.now()
        series.t.append(now)
        series.grid_a.append(max(site.currents_a()))
        series.net_a.append(site.power_w() / (3 * V))
        series.base_a.append(max(site.base_load_a))
        surplus_w = site.pv_w - sum(site.base_load_a) * V
        series.surplus_a.append(max(0.0, surplus_w) / (3 * V))
        smart = self.agent.station.smart
        series.capacity_a.append(smart.site_capacity_a)
        in_window = self.scenario.in_window
        series.window.append(in_window is not None and in_window(now))
        limits = smart.limits
        for evse_id, plant in self.plants.items():
            limit = limits.get(evse_id)
            shown = limit is not None and plant.ev is not None and plant.ev.wants_power
            series.evse_limit_a.setdefault(evse_id, []).append(
                limit.current_a if limit is not None and shown else None
            )
            series.evse_a.setdefault(evse_id, []).append(max(plant.current_a))
            series.evse_phases.setdefault(evse_id, []).append(
                sum(1 for current in plant.current_a if current > 0)
            )
            series.boosted.setdefault(evse_id, []).append(self.boosted[evse_id])

    def _account(self, window: bool, surplus_wh: float, ev_waiting: bool) -> None:
        """Classify each EVSE's energy of the period just ended."""
        deltas: dict[int, float] = {}
        for evse_id, plant in self.plants.items():
            plant.step()  # integrate up to now
            deltas[evse_id] = plant.energy_import_wh - self._registers[evse_id]
            self._registers[evse_id] = plant.energy_import_wh
        total_wh = sum(deltas.values())
        pv_share = min(1.0, surplus_wh / total_wh) if total_wh > 0 else 0.0
        if ev_waiting and self.scenario.pv_mode:
            self.surplus_unused_wh += max(0.0, surplus_wh - total_wh)
        for evse_id, delta in deltas.items():
            figures = self.recorder.evses[evse_id]
            figures.energy_wh += delta
            figures.from_pv_wh += delta * pv_share
            if window:
                figures.in_window_wh += delta
            elif self.boosted[evse_id]:
                figures.boosted_wh += delta
            else:
                figures.outside_wh += delta


async def run_scenario(scenario: Scenario, hours: float) -> DayRun:
    """Play one scenario against a CSMS of its own; the finished run."""
    with tempfile.TemporaryDirectory() as store_dir:
        async with Csms() as csms:
            run = DayRun(scenario, csms, Path(store_dir))
            await run.run(hours)
    return run


# -- figures and tables --------------------------------------------------------------------


def _kwh(wh: float) -> float:
    return round(wh / 1000, 3)


def _percent(part: float, whole: float) -> float:
    return round(100 * part / whole, 1) if whole > 0 else 0.0


def evse_figures(f: EvseFigures) -> dict[str, Any]:
    """One EVSE's (or all EVSEs') figures as plain data."""
    return {
        "sessions": f.sessions,
        "energy_kwh": _kwh(f.energy_wh),
        "in_window_kwh": _kwh(f.in_window_wh),
        "boosted_kwh": _kwh(f.boosted_wh),
        "outside_window_unboosted_kwh": _kwh(f.outside_wh),
        "from_pv_kwh": _kwh(f.from_pv_wh),
        "from_grid_kwh": _kwh(f.energy_wh - f.from_pv_wh),
        "phase_switches": f.phase_switches,
        "pauses": f.pauses,
        "waited_h": round(f.waited_s / 3600, 2),
    }


def scenario_figures(run: DayRun, hours: float) -> dict[str, Any]:
    """The scenario's figures and targets as plain data."""
    scenario, recorder, period = run.scenario, run.recorder, run.period_s
    every = EvseFigures()
    for figures in recorder.evses.values():
        every.add(figures)
    limit = scenario.site_limit_a
    spans = recorder.spans_above(limit)
    longest_s = max((duration for _, duration in spans), default=0.0)
    peak_a = recorder.peak_a()
    adherence = {
        "site_limit_a": limit,
        "control_period_s": period,
        "max_excess_a": round(max(0.0, peak_a - limit), 2),
        "longest_above_s": longest_s,
        "spans_above": len(spans),
        "time_above_s": sum(duration for _, duration in spans),
        "samples_above": sum(1 for a in run.series.grid_a if a > limit + LIMIT_TOLERANCE_A),
        "samples": len(run.series.grid_a),
    }
    targets: dict[str, dict[str, Any]] = {
        "site limit exceeded no longer than one control period": {
            "value": f"longest span {longest_s:g} s",
            "target": f"<= {period:g} s",
            "met": longest_s <= period + EPS,
        }
    }
    result: dict[str, Any] = {
        "title": scenario.title,
        "simulated_h": hours,
        "evses": {str(i): evse_figures(f) for i, f in recorder.evses.items()},
        "all": evse_figures(every),
        "billed_to_csms_kwh": None if run.billed_wh is None else _kwh(run.billed_wh),
        "adherence": adherence,
        "targets": targets,
    }
    if scenario.in_window is not None:
        result["in_window_percent"] = _percent(every.in_window_wh, every.energy_wh)
        result["grid_outside_window_kwh"] = _kwh(every.energy_wh - every.in_window_wh)
        targets["energy only in the window unless boosted"] = {
            "value": f"{every.outside_wh / 1000:.2f} kWh outside",
            "target": "0 kWh",
            "met": every.outside_wh < 1.0,  # Wh: integration rounding
        }
    if scenario.pv_mode:
        share = every.from_pv_wh / every.energy_wh if every.energy_wh > 0 else 1.0
        pv_wh = sum(scenario.pv_w(t) for t in run.series.t) * period / 3600
        result["from_pv_percent"] = _percent(every.from_pv_wh, every.energy_wh)
        result["pv_produced_kwh"] = _kwh(pv_wh)
        result["surplus_unused_while_ev_waited_kwh"] = _kwh(run.surplus_unused_wh)
        targets["PV-mode charging from the surplus"] = {
            "value": f"{100 * share:.1f} % from surplus",
            "target": f">= {100 * PV_SURPLUS_TARGET:.0f} %"
            + (" (not one with min_current: 6 A from the grid)" if scenario.min_current else ""),
            "met": share >= PV_SURPLUS_TARGET or scenario.min_current,
        }
    return result


def print_tables(figures: dict[str, Any]) -> None:
    """The scenario's table (markdown, as in bench/README.md) and its targets."""
    print(f"\n{figures['title']} ({figures['simulated_h']:g} h simulated in "
          f"{figures['wall_s']:.1f} s)\n")  # fmt: skip
    windowed = "in_window_percent" in figures
    columns = (
        [("in window kWh", "in_window_kwh"), ("boosted kWh", "boosted_kwh"),
         ("outside, not boosted kWh", "outside_window_unboosted_kwh")]
        if windowed
        else [("from PV kWh", "from_pv_kwh"), ("from grid kWh", "from_grid_kwh")]
    )  # fmt: skip
    heads = ["EVSE", "sessions", "energy kWh", *(c for c, _ in columns), "phase switches",
             "pauses", "waited h"]  # fmt: skip
    print("| " + " | ".join(heads) + " |")
    print("| --- " * len(heads) + "|")
    for name, f in [*figures["evses"].items(), ("all", figures["all"])]:
        cells = [name, f["sessions"], f"{f['energy_kwh']:.2f}",
                 *(f"{f[key]:.2f}" for _, key in columns), f["phase_switches"], f["pauses"],
                 f"{f['waited_h']:.1f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if windowed:
        print(f"\nenergy in the window {figures['in_window_percent']:.1f} %; grid import for "
              f"charging outside it {figures['grid_outside_window_kwh']:.2f} kWh")  # fmt: skip
    else:
        print(f"\nenergy from the PV surplus {figures['from_pv_percent']:.1f} %; PV produced "
              f"{figures['pv_produced_kwh']:.1f} kWh; surplus exported while an EV waited "
              f"for power {figures['surplus_unused_while_ev_waited_kwh']:.1f} kWh")  # fmt: skip
    if figures["billed_to_csms_kwh"] is not None:
        print(f"the CSMS was told (StopTransaction meterStop - meterStart) "
              f"{figures['billed_to_csms_kwh']:.2f} kWh")  # fmt: skip
    a = figures["adherence"]
    print(
        f"site limit {a['site_limit_a']:g} A, control period {a['control_period_s']:g} s: "
        f"max excess {a['max_excess_a']:.1f} A, longest span above {a['longest_above_s']:g} s, "
        f"{a['spans_above']} spans ({a['time_above_s']:g} s in all), "
        f"{a['samples_above']} of {a['samples']} period samples above"
    )
    for name, target in figures["targets"].items():
        print(f"  {name}: {target['value']}, target {target['target']}: "
              f"{verdict(target['met'])}")  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen scenarios, print their tables, draw their plots; the figures."""
    missing = matplotlib_missing()
    results: dict[str, Any] = {"matplotlib": missing is None, "scenarios": {}}
    for scenario in scenarios(args.min_current):
        if scenario.key not in args.scenarios:
            continue
        began = time.perf_counter()
        run = await run_scenario(scenario, args.hours)
        figures = scenario_figures(run, args.hours)
        figures["wall_s"] = round(time.perf_counter() - began, 2)
        png = None
        if missing is None:
            args.png.mkdir(parents=True, exist_ok=True)
            png = args.png / f"energy_day_{scenario.key}.png"
            draw_scenario(run.series, figures, png)
        figures["png"] = str(png) if png is not None else None
        results["scenarios"][scenario.key] = figures
        print_tables(figures)
        if png is not None:
            print(f"plot: {png}")
    if missing is not None:
        print(f"\nno plots: {missing}")
    return results


def main() -> None:
    """Parse the arguments, run, print, write the JSON; exit 0 whatever the verdicts."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated span (h)")
    parser.add_argument("--scenarios", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument("--min-current", action="store_true", help="B: pv.min_current")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--png", type=Path, default=BENCH_DIR / "out", help="plot directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="the agent's log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    write_json(args.json, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
