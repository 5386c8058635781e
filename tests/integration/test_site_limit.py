"""The site limit over a real Modbus site meter: four EVSEs, staggered arrivals and
departures, the real agent (OCPP 1.6 to the test CSMS) on a fake clock.

The grid meter is a pymodbus server (simulator/modbus_meter_peer.py) whose current is a
base load plus every EVSE's plant; the agent reads it with its Modbus driver every
control period. The grid current is recorded at every change of any plant, and must
never stay above the site limit for longer than one control period.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.meter_maps import MAPS
from simulator.csms import Csms
from simulator.drivers import SiteLoad
from simulator.modbus_meter_peer import ModbusMeterPeer, site_load
from tests.integration.energy_site import EnergySite

LIMIT_A = 32.0
PERIOD_S = 2.0

@pytest.fixture
async def grid_meter() -> AsyncIterator[tuple[ModbusMeterPeer, SiteLoad]]:
    """An SDM630 at the grid connection point of a site with a 2 A base load."""
    site = SiteLoad(base_load_a=(2.0, 2.0, 2.0))
    peer = ModbusMeterPeer(MAPS["sdm630"], load=site_load(site))
    await peer.serve_tcp()
    yield peer, site
    await peer.close()


@pytest.fixture
async def metered_site(
    csms: Csms, tmp_path: Path, grid_meter: tuple[ModbusMeterPeer, SiteLoad]
) -> AsyncIterator[EnergySite]:
    """Four EVSEs behind a 32 A connection measured by the Modbus grid meter."""
    peer, site = grid_meter
    running = EnergySite(
        csms,
        tmp_path,
        evses=4,
        site=site,
        energy={
            "control_period_s": PERIOD_S,
            "site_limit_a": LIMIT_A,
            "site_meter": {
                "driver": "modbus",
                "host": "127.0.0.1",
                "port": peer.port,
                "map": "sdm630",
                "timeout_s": 2,
            },
        },
    )
    await running.start()
    yield running
    await running.stop()


def capacity(site: EnergySite) -> float:
    """What the EVSEs may draw together now, as the smart-charging loop has it."""
    value = site.agent.station.smart.site_capacity_a
    assert value is not None
    return value


def offered_total(site: EnergySite) -> float:
    """What the EVSEs offer together now (their pilots)."""
    return sum(site.offered_a(i) for i in site.agent.hardware)


async def test_four_evses_staggered_never_exceed_the_site_limit_beyond_one_period(
    metered_site: EnergySite, grid_meter: tuple[ModbusMeterPeer, SiteLoad]
) -> None:
    site = metered_site
    peer, load = grid_meter
    await site.advance(PERIOD_S)  # a first reading: 30 A of headroom
    assert capacity(site) == pytest.approx(30.0, abs=0.01)

    for evse_id in (1, 2, 3, 4):  # staggered arrivals, one every 5 s
        await site.arrive(evse_id, f"CARD-{evse_id}")
        assert offered_total(site) <= capacity(site) + 0.1
        await site.advance(5)
        assert offered_total(site) <= capacity(site) + 0.1
        assert site.plant(evse_id).current_a[0] >= 6.0  # every EV charges

    # Another load on site: 6 A more. The site is over its limit until the next reading;
    # then the EVSEs have 24 A between them.
    load.base_load_a = (8.0, 8.0, 8.0)
    await site.advance(PERIOD_S)
    assert capacity(site) == pytest.approx(24.0, abs=0.01)
    assert max(site.site.currents_a()) <= LIMIT_A

    for evse_id in (2, 4):  # staggered departures, with the load switching off between
        await site.leave(evse_id)
        assert offered_total(site) <= capacity(site) + 0.1
        await site.advance(5)
        load.base_load_a = (2.0, 2.0, 2.0)
    await site.advance(PERIOD_S)
    assert capacity(site) == pytest.approx(30.0, abs=0.01)
    await site.leave(1)
    await site.leave(3)
    await site.advance(PERIOD_S)

    spans = site.over_limit_spans(LIMIT_A)
    assert spans, "the load step must show in the trace"
    assert all(duration <= PERIOD_S + 1e-6 for _, duration in spans), spans
    assert max(sample.current_a for sample in site.trace) > 28.0  # the EVs did draw
    assert site.trace[-1].current_a == pytest.approx(2.0)  # all gone: the base load
    assert len(peer.requests) >= 15  # read every control period, over Modbus


async def test_fair_shares_a_departure_and_an_ev_drawing_less(
    metered_site: EnergySite, grid_meter: tuple[ModbusMeterPeer, SiteLoad]
) -> None:
    site = metered_site
    _, load = grid_meter
    await site.advance(PERIOD_S)
    await site.arrive(1, "CARD-1")
    await site.advance(4)
    assert site.offered_a(1) == pytest.approx(30.0, abs=0.2)

    await site.arrive(2, "CARD-2")
    await site.advance(4)
    assert [site.offered_a(i) for i in (1, 2)] == pytest.approx([15.0, 15.0], abs=0.2)

    await site.arrive(3, "CARD-3", max_current_a=6.0)  # an EV that takes 6 A at most
    await site.arrive(4, "CARD-4")
    await site.advance(4)
    assert [site.offered_a(i) for i in (1, 2, 3, 4)] == pytest.approx([7.5] * 4, abs=0.2)

    # A session ends: its share goes to the others at once.
    await site.leave(2)
    assert [site.offered_a(i) for i in (1, 3, 4)] == pytest.approx([10.0] * 3, abs=0.2)

    # EV 3 draws 6 A of its 10: once a reading shows it had time to follow its offer
    # (5 s, IEC 61851-1), it keeps its draw plus a margin (8 A), the others share the
    # rest, and it stays so.
    load.base_load_a = (2.0, 2.0, 2.0)
    await site.advance(6)
    for _ in range(3):
        await site.advance(PERIOD_S)
        assert site.offered_a(3) == pytest.approx(8.0, abs=0.2)
        assert [site.offered_a(i) for i in (1, 4)] == pytest.approx([11.0, 11.0], abs=0.2)


async def test_a_silent_site_meter_leaves_the_evses_the_fallback_until_it_answers(
    metered_site: EnergySite, grid_meter: tuple[ModbusMeterPeer, SiteLoad]
) -> None:
    site = metered_site
    peer, _ = grid_meter
    await site.advance(PERIOD_S)
    await site.arrive(1, "CARD-1")
    await site.arrive(2, "CARD-2")
    await site.advance(4)
    energy = site.agent.energy
    assert energy is not None and energy.meter_ok

    await peer.unplug()
    await site.advance(PERIOD_S)
    # 6 A for the two EVSEs together: one EV at the minimum, the other paused.
    assert not energy.meter_ok
    assert capacity(site) == 6.0
    assert sorted(site.offered_a(i) for i in (1, 2)) == pytest.approx([0.0, 6.0], abs=0.1)
    assert sum(site.plant(i).current_a[0] for i in (1, 2)) <= 6.0

    await peer.plug_in()
    await site.advance(PERIOD_S)
    assert energy.meter_ok
    assert capacity(site) == pytest.approx(30.0, abs=0.01)
    assert offered_total(site) > 12.0
