"""An Agent on a fake clock runs its simulated plants on that clock too: the energy a
car takes follows the clock the agent is given, not the wall time of the test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.app import Agent
from agent.config import load_config
from agent.config_model import StoreConfig
from simulator.ev import SimEv
from simulator.plant import PilotMode
from tests.fakes import FakeClock

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim-two-evse.yaml"
DUTY_16_A = 16.0 / 0.6


def test_a_fake_clock_agents_plant_integrates_energy_on_the_fake_clock(tmp_path: Path) -> None:
    config = replace(load_config(CONFIG), store=StoreConfig(tmp_path / "agent.db"))
    clock = FakeClock()
    agent = Agent(config, clock=clock)
    try:
        plant = agent.hardware[1].plant
        assert plant is not None
        plant.plug_in(SimEv())
        plant.set_pilot(PilotMode.PWM, DUTY_16_A)
        plant.set_contactor(True)
        plant.step()
        power_w, before_wh = plant.power_w, plant.energy_import_wh
        assert power_w > 1000.0
        clock.advance(600)  # ten minutes of the agent's time, none of the test's
        plant.step()
        assert plant.energy_import_wh - before_wh == pytest.approx(power_w / 6, rel=0.02)
    finally:
        agent.store.close()
