"""The station's timers: clock-aligned samples and reservation expiry (agent/core/station.py).

One loop serves both and runs only while there is either: a station with no
ClockAlignedDataInterval and no reservation (every station of a fleet) keeps no task
that only waits. The rig (tests/unit/conftest.py) is one simulated EVSE on a FakeClock.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from agent.core.events import MeterValuesSampled, ReservationEnd, ReservationEnded
from agent.core.ports import SampleContext
from agent.core.reservations import Reservation
from agent.core.station import next_aligned
from tests.fakes import wait_until
from tests.unit.conftest import Rig

TIMERS = "station-timers"


def timer_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == TIMERS]


def station_loops() -> list[str]:
    """The Station methods running as tasks now."""
    names = (getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks())
    return [name for name in names if name.startswith("Station.")]


def aligned_samples(rig: Rig) -> list[datetime]:
    return [
        e.at
        for e in rig.events
        if isinstance(e, MeterValuesSampled) and e.context == SampleContext.CLOCK
    ]


def expiries(rig: Rig) -> list[int]:
    return [
        e.reservation_id
        for e in rig.events
        if isinstance(e, ReservationEnded) and e.reason == ReservationEnd.EXPIRED
    ]


async def until_sleeping_to(rig: Rig, when: datetime) -> None:
    await wait_until(lambda: when in rig.clock.deadlines(), f"a timer due at {when}")


async def test_a_station_without_aligned_data_or_reservations_runs_no_timer_task(
    rig: Rig,
) -> None:
    assert rig.station.policy.aligned_interval_s == 0
    assert len(rig.station.reservations) == 0
    assert station_loops() == []


async def test_aligned_samples_come_at_each_boundary_and_the_loop_ends_when_switched_off(
    rig: Rig,
) -> None:
    rig.station.policy.aligned_interval_s = 60.0
    rig.station.policy_changed()
    first = next_aligned(rig.clock.now(), 60.0)
    await until_sleeping_to(rig, first)

    rig.clock.set(first)
    await until_sleeping_to(rig, first + timedelta(seconds=60))
    rig.clock.set(first + timedelta(seconds=60))
    await until_sleeping_to(rig, first + timedelta(seconds=120))

    assert aligned_samples(rig) == [first, first + timedelta(seconds=60)]
    rig.station.policy.aligned_interval_s = 0.0
    rig.station.policy_changed()
    await wait_until(lambda: not timer_tasks(), "the timer loop ended")
    rig.clock.advance(600)
    assert len(aligned_samples(rig)) == 2


async def test_a_reservation_starts_the_timer_loop_and_its_expiry_ends_both(rig: Rig) -> None:
    expires_at = rig.clock.now() + timedelta(minutes=5)
    rig.station.reserve(Reservation(id=7, id_token="DRIVER", expires_at=expires_at, evse_id=1))
    await until_sleeping_to(rig, expires_at)
    assert station_loops() == ["Station._run_timers"]

    rig.clock.set(expires_at)
    await wait_until(lambda: expiries(rig) == [7], "reservation 7 expired")
    await wait_until(lambda: not timer_tasks(), "the timer loop ended")


async def test_one_loop_serves_an_expiry_between_two_aligned_samples(rig: Rig) -> None:
    rig.station.policy.aligned_interval_s = 60.0
    rig.station.policy_changed()
    first = next_aligned(rig.clock.now(), 60.0)
    expires_at = first + timedelta(seconds=25)  # not when the idle meter watch wakes
    rig.station.reserve(Reservation(id=3, id_token="DRIVER", expires_at=expires_at, evse_id=1))

    await until_sleeping_to(rig, first)
    rig.clock.set(first)
    await until_sleeping_to(rig, expires_at)  # the earlier of the next boundary and expiry
    assert (aligned_samples(rig), expiries(rig)) == ([first], [])
    rig.clock.set(expires_at)
    await until_sleeping_to(rig, first + timedelta(seconds=60))
    assert (aligned_samples(rig), expiries(rig)) == ([first], [3])
    rig.clock.set(first + timedelta(seconds=60))
    await until_sleeping_to(rig, first + timedelta(seconds=120))

    assert aligned_samples(rig) == [first, first + timedelta(seconds=60)]
    assert len(timer_tasks()) == 1
