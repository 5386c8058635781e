"""Off-peak windows, the driver's boost and PV surplus on the real agent (OCPP 1.6 to the
test CSMS) over a simulated site, on a fake clock: the energy the plant delivered is what
each test checks, at the instants it changed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.config import StoreConfig, load_config
from simulator.csms import Csms
from tests.integration.energy_site import EnergySite

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_2158 = datetime(2025, 6, 2, 21, 58, tzinfo=BERLIN)
NIGHTS = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": "weekdays", "start": "22:00", "end": "06:00"}],
}

SiteFactory = Callable[..., Any]


@pytest.fixture
async def make_site(csms: Csms, tmp_path: Path) -> AsyncIterator[SiteFactory]:
    """Start EnergySites with the given `energy:` section; stop them after the test."""
    started: list[EnergySite] = []

    async def make(energy: dict[str, Any] | None, **kwargs: Any) -> EnergySite:
        site = EnergySite(csms, tmp_path, energy=energy, **kwargs)
        await site.start()
        started.append(site)
        return site

    yield make
    for site in started:
        await site.stop()


def first_draw_s(site: EnergySite) -> float:
    """The fake time at which the grid current first rose above the base load."""
    return next(s.t_s for s in site.trace if s.current_a > 0.0)


# -- the shipped example ---------------------------------------------------------------------


async def test_the_site_limit_example_config_runs_as_documented(
    make_site: SiteFactory, csms: Csms, tmp_path: Path
) -> None:
    example = load_config(Path(__file__).parents[2] / "config" / "sim-site-limit.yaml")
    config = replace(
        example,
        csms=replace(example.csms, url=csms.url),
        store=StoreConfig(tmp_path / "example.db"),
        api=replace(example.api, enabled=False),
    )
    site: EnergySite = await make_site(None, config=config)  # Monday 12:00 in Berlin
    await site.advance(5)
    energy = site.agent.energy
    assert energy is not None and energy.meter_ok
    # 63 A less the other loads on the most loaded phase: 20 A of base load less the
    # 5 kW the PV feeds in (7.2 A per phase). EVSE 4 charges off-peak only, EVSE 1 from
    # the PV surplus only.
    other_a = 20.0 - 5000.0 / (3 * 230.0)
    assert site.agent.station.smart.site_capacity_a == pytest.approx(63.0 - other_a, abs=0.1)
    limits = site.agent.station.smart.limits
    assert (limits[4].current_a, limits[4].reason) == (0.0, "off_peak")
    assert limits[1].reason == "pv"
    assert site.agent.hardware[1].board.capabilities.can_switch_phases

    await site.arrive(2, "CARD-EXAMPLE")
    await site.advance(5)
    assert site.plant(2).current_a == pytest.approx((32.0, 32.0, 32.0), abs=0.1)


# -- off-peak ------------------------------------------------------------------------------


async def test_off_peak_no_energy_before_the_window_and_charging_from_its_start(
    make_site: SiteFactory,
) -> None:
    site: EnergySite = await make_site({"off_peak": NIGHTS}, evses=1, start=MONDAY_2158)
    plant = site.plant(1)
    # A battery that takes the whole night at 22 kW (the plants run on the fake clock).
    await site.arrive(1, "CARD-NIGHT", battery_wh=200_000.0, soc_percent=5.0)
    register = plant.energy_import_wh
    await site.csms.wait_for("StatusNotification", where=lambda p: p["status"] == "SuspendedEVSE")

    await site.advance(119, step_s=1)  # 21:59:59
    assert plant.current_a == (0.0, 0.0, 0.0)
    assert plant.energy_import_wh == register

    await site.advance(1, step_s=1)  # 22:00:00: the window opens
    assert plant.current_a == pytest.approx((32.0, 32.0, 32.0), abs=0.1)
    assert first_draw_s(site) == 120.0
    await site.csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    await site.advance(8 * 3600, step_s=3600)  # 06:00 Tuesday: the window closes
    assert plant.current_a == (0.0, 0.0, 0.0)
    assert site.trace[-1].t_s == 120.0 + 8 * 3600
    assert site.agent.energy is not None
    off_peak = site.agent.energy.off_peak
    assert off_peak is not None and not off_peak.inside
    assert off_peak.until == datetime(2025, 6, 3, 22, 0, tzinfo=BERLIN)


async def test_boost_charges_outside_the_window_for_this_session_only(
    make_site: SiteFactory,
) -> None:
    site: EnergySite = await make_site({"off_peak": NIGHTS}, evses=1)  # Monday 12:00 Berlin
    energy = site.agent.energy
    assert energy is not None
    plant = site.plant(1)
    await site.arrive(1, "CARD-DAY")
    await site.advance(10, step_s=1)
    assert plant.current_a == (0.0, 0.0, 0.0)

    energy.boost(1)
    await site.advance(1, step_s=1)
    assert plant.current_a == pytest.approx((32.0, 32.0, 32.0), abs=0.1)
    await site.leave(1)

    await site.arrive(1, "CARD-DAY")  # the next session waits for the window again
    await site.advance(10, step_s=1)
    assert plant.current_a == (0.0, 0.0, 0.0)


# -- PV surplus ------------------------------------------------------------------------------

PV = {
    "control_period_s": 1,
    "site_meter": {"driver": "sim", "base_load_a": 0, "pv_w": 0},
    "pv": {"start_delay_s": 10, "stop_delay_s": 30},
}


async def test_pv_follows_the_export_and_stops_below_the_minimum_after_the_stop_delay(
    make_site: SiteFactory,
) -> None:
    site: EnergySite = await make_site(PV, evses=1)
    plant = site.plant(1)
    await site.arrive(1, "CARD-SUN")
    await site.advance(5)
    assert plant.current_a == (0.0, 0.0, 0.0)  # no surplus, no energy

    site.site.pv_w = 6900.0  # 10 A on each phase
    await site.advance(9)
    assert plant.current_a == (0.0, 0.0, 0.0)  # not yet: the start delay runs
    await site.advance(2)
    assert plant.current_a == pytest.approx((10.0, 10.0, 10.0), abs=0.1)
    assert max(site.site.currents_a()) == pytest.approx(0.0, abs=0.1)  # no import, no export

    site.site.pv_w = 9660.0  # 14 A
    await site.advance(2)
    assert plant.current_a == pytest.approx((14.0, 14.0, 14.0), abs=0.1)

    site.site.pv_w = 2000.0  # below the 3 x 6 A minimum and the stop threshold
    await site.advance(2)
    assert plant.current_a == pytest.approx((6.0, 6.0, 6.0), abs=0.1)  # the minimum
    await site.advance(27)
    assert plant.current_a[0] == pytest.approx(6.0, abs=0.1)
    await site.advance(3)
    assert plant.current_a == (0.0, 0.0, 0.0)  # paused after 30 s below
    await site.csms.wait_for(
        "StatusNotification", count=2, where=lambda p: p["status"] == "SuspendedEVSE"
    )


async def test_pv_min_current_keeps_charging_at_the_minimum_without_surplus(
    make_site: SiteFactory,
) -> None:
    energy = {**PV, "pv": {**PV["pv"], "min_current": True}}
    site: EnergySite = await make_site(energy, evses=1)
    await site.arrive(1, "CARD-MIN")
    await site.advance(3)
    assert site.plant(1).current_a == pytest.approx((6.0, 6.0, 6.0), abs=0.1)


async def test_pv_a_one_phase_car_takes_the_whole_surplus_on_its_phase(
    make_site: SiteFactory,
) -> None:
    energy = {**PV, "pv": {**PV["pv"], "start_surplus_w": 1380, "start_delay_s": 0}}
    site: EnergySite = await make_site(energy, evses=1)
    await site.arrive(1, "CARD-1PH", phases=1)
    site.site.pv_w = 2300.0
    await site.advance(3)
    assert site.plant(1).current_a == pytest.approx((10.0, 0.0, 0.0), abs=0.1)
    assert site.site.power_w() == pytest.approx(0.0, abs=30.0)  # no import, no export


async def test_pv_switches_between_one_and_three_phases_with_hysteresis(
    make_site: SiteFactory,
) -> None:
    energy = {**PV, "phase_switching": {"delay_s": 20}}
    site: EnergySite = await make_site(energy, evses=1, can_switch_phases=True)
    plant = site.plant(1)
    await site.arrive(1, "CARD-PHASES")
    site.site.pv_w = 2300.0  # 10 A on one phase; too little for three
    await site.advance(12)
    assert plant.supply_phases == 1
    assert plant.current_a == pytest.approx((10.0, 0.0, 0.0), abs=0.1)

    site.site.pv_w = 6900.0  # enough for 10 A on three phases, after the delay
    await site.advance(10)
    assert plant.supply_phases == 1
    await site.advance(12)
    assert plant.supply_phases == 3
    assert plant.current_a == pytest.approx((10.0, 10.0, 10.0), abs=0.1)

    site.site.pv_w = 3000.0  # three phases would need the grid: back to one
    await site.advance(22)
    assert plant.supply_phases == 1
    assert plant.current_a == pytest.approx((13.0, 0.0, 0.0), abs=0.1)


async def test_pv_a_one_phase_car_on_a_three_phase_evse_starts_on_a_one_phase_surplus(
    make_site: SiteFactory,
) -> None:
    """Default thresholds, a supply that cannot switch (the bench's visitor, issue 6): the
    EVSE starts on the one-phase threshold and learns the car's phase from its meter."""
    site: EnergySite = await make_site(PV, evses=1)
    plant = site.plant(1)
    await site.arrive(1, "CARD-VISITOR", phases=1)
    site.site.pv_w = 2000.0  # 1.4-4.1 kW: one phase's minimum, not three phases'
    await site.advance(14)
    assert plant.current_a == pytest.approx((8.6, 0.0, 0.0), abs=0.1)  # 2000 W / 230 V
    assert site.site.power_w() == pytest.approx(0.0, abs=30.0)  # no import, no export
    await site.advance(60)
    assert plant.current_a[0] == pytest.approx(8.6, abs=0.1)  # and it stays


async def test_pv_a_three_phase_car_probed_on_a_one_phase_surplus_stops_at_once(
    make_site: SiteFactory,
) -> None:
    site: EnergySite = await make_site(PV, evses=1)
    plant = site.plant(1)
    await site.arrive(1, "CARD-PROBE")
    site.site.pv_w = 2000.0
    await site.advance(11)
    assert plant.current_a == pytest.approx((6.0, 6.0, 6.0), abs=0.1)  # the probe
    await site.advance(2)
    assert plant.current_a == (0.0, 0.0, 0.0)  # at its first reading, not after 30 s
    await site.advance(60)
    assert plant.current_a == (0.0, 0.0, 0.0)  # 2 kW no longer starts it
    site.site.pv_w = 4600.0  # three phases' minimum
    await site.advance(12)
    assert plant.current_a == pytest.approx((6.6, 6.6, 6.6), abs=0.05)  # 4600 W / 690 V


async def test_pv_a_car_that_takes_nothing_leaves_the_whole_surplus_to_the_other(
    make_site: SiteFactory,
) -> None:
    """A full car plugged in first holds no part of the surplus (issue 6: half of it was
    exported while it waited)."""
    site: EnergySite = await make_site(PV, evses=2)
    await site.arrive(1, "CARD-FULL", soc_percent=100.0)
    await site.arrive(2, "CARD-HUNGRY")
    site.site.pv_w = 6900.0
    await site.advance(30)
    assert site.plant(1).current_a == (0.0, 0.0, 0.0)
    assert site.plant(2).current_a == pytest.approx((10.0, 10.0, 10.0), abs=0.1)
    assert site.site.power_w() == pytest.approx(0.0, abs=30.0)  # nothing exported
