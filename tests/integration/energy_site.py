"""Run the real agent over a simulated site on a fake clock, and record its grid current.

`EnergySite` starts an `Agent` (OCPP 1.6 against the test CSMS) whose `energy:` section
the test gives, with a `FakeClock` as the station's clock: the smart-charging loop, the
energy controller's control period and the off-peak windows all run on it, so the test
decides when time passes and nothing waits on wall time for a period to end. The CSMS
exchanges and the Modbus site meter are real I/O, awaited by events.

Every change of any plant is recorded with the fake time (`trace`): the current at the
grid connection point (base load + every EVSE - PV) per phase, so the test checks the
site limit at every instant the current changed, not at samples it chose.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent.app import Agent
from agent.config import Config, parse_config
from agent.core.status import SessionPhase
from simulator.csms import Csms
from simulator.drivers import SiteLoad
from simulator.ev import EvParameters, SimEv
from simulator.plant import Plant
from tests.fakes import FakeClock, settle
from tests.integration.conftest import CP_ID, FAST_SETTINGS


@dataclass(frozen=True, slots=True)
class Sample:
    """The grid connection point at fake time `t_s`: the highest phase current."""

    t_s: float
    current_a: float


def site_config(
    csms_url: str,
    store_dir: Path,
    evses: int,
    energy: dict[str, Any],
    can_switch_phases: bool = False,
) -> Config:
    """conftest's config with `evses` simulated EVSEs and this `energy:` section."""
    document: dict[str, Any] = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {
            "url": csms_url,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        },
        "evses": [
            {
                "connectors": [{"type": "cType2"}],
                "board": {"driver": "sim", "can_switch_phases": can_switch_phases},
                "reader": {"driver": "sim"},
            }
            for _ in range(evses)
        ],
        "store": {"path": str(store_dir / "agent.db")},
        "settings": FAST_SETTINGS,
        "energy": energy,
    }
    return parse_config(yaml.safe_dump(document), base_dir=store_dir)


class EnergySite:
    """A real agent with simulated EVSEs behind one grid connection, on a fake clock."""

    def __init__(
        self,
        csms: Csms,
        store_dir: Path,
        *,
        evses: int = 1,
        energy: dict[str, Any] | None = None,
        site: SiteLoad | None = None,
        can_switch_phases: bool = False,
        start: datetime = datetime(2025, 6, 2, 10, 0, tzinfo=UTC),
        config: Config | None = None,
    ) -> None:
        """`config` (a whole config) replaces `evses`, `energy` and `can_switch_phases`."""
        self.clock = FakeClock(start)
        self.config = config or site_config(
            csms.url, store_dir, evses, energy or {}, can_switch_phases
        )
        self.csms = csms
        self.agent = Agent(self.config, clock=self.clock)
        self.site = site or getattr(self.agent.site_meter, "site", None) or SiteLoad()
        self.site.plants = [self.plant(i) for i in sorted(self.agent.hardware)]
        self.trace: list[Sample] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        for plant in self.site.plants:
            plant.watch(self._record)

    def plant(self, evse_id: int) -> Plant:
        """The plant of EVSE `evse_id`."""
        plant: Plant = self.agent.hardware[evse_id].plant
        return plant

    def _record(self) -> None:
        current = max(self.site.currents_a())
        if not self.trace or self.trace[-1].current_a != current:
            self.trace.append(Sample(self.clock.monotonic(), current))

    async def start(self) -> None:
        """Run the agent and wait for its BootNotification to be accepted."""
        self._task = asyncio.create_task(self.agent.run(self._stop))
        await self.csms.wait_for("BootNotification")
        await self.agent.wait_until(lambda: self.agent.adapter.online)
        self._record()

    async def stop(self) -> None:
        """Stop the agent as on SIGTERM."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    # -- the world -------------------------------------------------------------------------

    async def arrive(self, evse_id: int, card: str, **ev: Any) -> SimEv:
        """A driver presents `card` and plugs in; returns once the transaction runs."""
        car = SimEv(EvParameters(**ev))
        self.agent.tap(evse_id, card)
        await self.agent.wait_until(
            lambda: self.agent.station.evses[evse_id].state is SessionPhase.AUTHORIZED
        )
        self.plant(evse_id).plug_in(car)
        await self.agent.wait_until(lambda: self.agent.station.evses[evse_id].tx is not None)
        await settle()
        return car

    async def leave(self, evse_id: int) -> None:
        """The EV unplugs; returns once its transaction has ended."""
        self.plant(evse_id).unplug()
        await self.agent.wait_until(lambda: self.agent.station.evses[evse_id].tx is None)
        await settle()

    async def advance(self, seconds: float, step_s: float = 0.5) -> None:
        """Let `seconds` of fake time pass in steps, each followed by the control cycles
        that became due and by the EVSEs applying what changed."""
        energy = self.agent.energy
        period = self.config.energy.control_period_s
        remaining = seconds
        while remaining > 1e-9:
            step = min(step_s, remaining)
            self.clock.advance(step)
            remaining -= step
            if energy is not None and energy.regulating:
                due = int(self.clock.monotonic() / period + 1e-9) + 1
                while energy.cycles < due:
                    await energy.next_cycle()
            await settle(100)
            self._record()

    def offered_a(self, evse_id: int) -> float:
        """The current the EVSE's pilot offers its EV now."""
        return self.plant(evse_id).offered_current_a

    def over_limit_spans(self, limit_a: float) -> list[tuple[float, float]]:
        """The (start, duration) of each stretch of the trace above `limit_a`."""
        spans: list[tuple[float, float]] = []
        now = self.clock.monotonic()
        for index, sample in enumerate(self.trace):
            if sample.current_a <= limit_a + 1e-6:
                continue
            end = self.trace[index + 1].t_s if index + 1 < len(self.trace) else now
            if spans and abs(spans[-1][0] + spans[-1][1] - sample.t_s) < 1e-9:
                spans[-1] = (spans[-1][0], end - spans[-1][0])
            else:
                spans.append((sample.t_s, end - sample.t_s))
        return spans
