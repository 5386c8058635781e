"""The two sites and days of bench/energy_day.py: loads, PV, cars and the agent's config.

Each scenario is data: the `energy:` section the agent runs with, the cars and when they
come and go, and the site's base load and PV output as functions of the local time. The
off-peak window is written here a second time (`in_window`), from the local time alone,
so the bench checks the agent's windows rather than asking the agent.

Must not: run anything or measure anything (energy_day.py does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from agent.config import Config, StoreConfig, parse_config
from simulator.ev import EvParameters

CP_ID = "BENCH-ENERGY-DAY"
BERLIN = ZoneInfo("Europe/Berlin")
CONTROL_PERIOD_S = 5
Phases = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Visit:
    """`car` plugged into `evse_id` from `arrive_h` to `leave_h` (hours after the start);
    `boost`: its driver boosts on arrival."""

    evse_id: int
    car: str
    arrive_h: float
    leave_h: float
    boost: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site, its day and its cars; loads are functions of the local time."""

    key: str
    title: str
    start: datetime
    site_limit_a: float
    energy: dict[str, Any]
    cars: dict[str, EvParameters]
    visits: tuple[Visit, ...]
    base_load_a: Callable[[datetime], Phases]
    pv_w: Callable[[datetime], float] = lambda _t: 0.0
    in_window: Callable[[datetime], bool] | None = None
    switching_evses: tuple[int, ...] = ()

    @property
    def pv_mode(self) -> bool:
        """Whether the EVSEs follow the PV surplus."""
        return "pv" in self.energy

    @property
    def min_current(self) -> bool:
        """Whether PV mode keeps the minimum current below the surplus."""
        return bool(self.energy.get("pv", {}).get("min_current", False))


def _hour(t: datetime) -> float:
    return t.hour + t.minute / 60 + t.second / 3600


def _between(h: float, start: float, end: float) -> bool:
    return start <= h < end


def _evening_load(t: datetime) -> Phases:
    h = _hour(t)
    l1 = l2 = l3 = 2.0  # fridge, standby, lights
    if _between(h, 18.5, 19.5):
        l1 += 12.0  # cooker
    if _between(h, 22.5, 24.0):
        l2 += 10.0  # dryer, on a timer for the cheap tariff
    if _between(h, 5.0, 6.5):  # heat pump, hot water
        l1, l2, l3 = l1 + 4.0, l2 + 4.0, l3 + 4.0
    return (l1, l2, l3)


def _weeknight(t: datetime) -> bool:
    """22:00-06:00 starting Monday to Friday, local time (the config's window, again)."""
    local = t.astimezone(BERLIN)
    if local.hour >= 22:
        return local.weekday() < 5
    return local.hour < 6 and (local.weekday() - 1) % 7 < 5


def _day_load(t: datetime) -> Phases:
    h = _hour(t)
    l1 = l2 = l3 = 1.5
    if _between(h, 12.0, 12.75):
        l1 += 9.0  # lunch
    if _between(h, 15.0, 16.5):
        l2 += 9.0  # washing machine
    if _between(h, 18.0, 20.0):
        l1 += 6.0
    return (l1, l2, l3)


def _pv(t: datetime) -> float:
    """A clipped sine from sunrise 04:45 to sunset 21:30 (8 kW inverter), two clouds."""
    h = _hour(t)
    sunrise, sunset = 4.75, 21.5
    if not sunrise < h < sunset:
        return 0.0
    power = min(8000.0, 9500.0 * math.sin(math.pi * (h - sunrise) / (sunset - sunrise)))
    if _between(h, 11.0, 11.75):
        power *= 0.3
    elif _between(h, 14.17, 14.34):
        power *= 0.5
    return power


def scenarios(min_current: bool) -> list[Scenario]:
    """Scenario A (off-peak) and B (PV surplus)."""
    period = CONTROL_PERIOD_S
    off_peak = Scenario(
        key="A",
        title="A: off-peak window 22:00-06:00, boost, 32 A site limit",
        start=datetime(2025, 6, 2, 17, 0, tzinfo=BERLIN),  # a Monday
        site_limit_a=32.0,
        energy={
            "control_period_s": period,
            "site_limit_a": 32.0,
            "site_meter": {"driver": "sim", "base_load_a": 0},
            "off_peak": {
                "timezone": "Europe/Berlin",
                "windows": [{"days": "weekdays", "start": "22:00", "end": "06:00"}],
            },
        },
        cars={
            "commuter": EvParameters(battery_wh=100_000, soc_percent=15, max_current_a=16),
            "family": EvParameters(battery_wh=50_000, soc_percent=20, max_current_a=32),
        },
        visits=(
            Visit(1, "commuter", arrive_h=0.5, leave_h=14.25),
            Visit(2, "family", arrive_h=1.0, leave_h=2.75, boost=True),
            Visit(2, "family", arrive_h=3.5, leave_h=14.5),
        ),
        base_load_a=_evening_load,
        in_window=_weeknight,
    )
    pv = Scenario(
        key="B",
        title="B: PV surplus (8 kW), both EVSEs in PV mode, 1/3-phase switching on EVSE 1, "
        + ("min current, " if min_current else "")
        + "25 A site limit",
        start=datetime(2025, 6, 3, 7, 0, tzinfo=BERLIN),
        site_limit_a=25.0,
        energy={
            "control_period_s": period,
            "site_limit_a": 25.0,
            "site_meter": {"driver": "sim", "base_load_a": 0},
            "pv": {"min_current": min_current, "start_delay_s": 60, "stop_delay_s": 300},
            "phase_switching": {"delay_s": 300},
        },
        cars={
            "home": EvParameters(battery_wh=77_000, soc_percent=25, max_current_a=16),
            "visitor": EvParameters(battery_wh=40_000, soc_percent=40, max_current_a=32, phases=1),
        },
        visits=(
            Visit(1, "home", arrive_h=0.5, leave_h=11.5),
            Visit(2, "visitor", arrive_h=3.0, leave_h=9.0),
        ),
        base_load_a=_day_load,
        pv_w=_pv,
        switching_evses=(1,),
    )
    return [off_peak, pv]


def site_config(scenario: Scenario, csms_url: str, store_dir: Path) -> Config:
    """The agent's config: two simulated EVSEs and the scenario's `energy:` section."""
    document: dict[str, Any] = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "bench"},
        "csms": {"url": csms_url, "response_timeout_s": 5},
        "evses": [
            {
                "connectors": [{"type": "cType2"}],
                "board": {"driver": "sim", "can_switch_phases": i in scenario.switching_evses},
                "reader": {"driver": "sim"},
            }
            for i in (1, 2)
        ],
        "settings": {"MeterValueSampleInterval": 900, "HeartbeatInterval": 3600},
        "energy": scenario.energy,
    }
    config = parse_config(yaml.safe_dump(document), base_dir=store_dir)
    # An in-memory store: no journal fsyncs, and the simulated meters keep no register
    # file (agent/hardware.py), which would be written at every control period.
    return replace(config, store=StoreConfig(Path(":memory:")))
