"""The smart-charging loop (agent.core.smart_charging) with fake EVSEs and a fake clock.

Asserts what the EVSE is told to offer (`apply_limit`) and when: at once on a change of
the inputs, at a schedule's period boundary by itself (the loop sleeps until then), and
never more than a shared capacity in total.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.ports import TxRecord
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    SchedulePeriod,
)
from agent.core.smart_charging import SETTLE_S, SmartCharging
from agent.core.status import SessionPhase
from drivers.types import MeterSample, TokenType
from tests.fakes import FakeClock, wait_until

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


@dataclass
class FakeEvse:
    id: int
    hardware_max_a: float = 32.0
    max_phases: int = 3
    state: SessionPhase = SessionPhase.IDLE
    tx: TxRecord | None = None
    limit_a: float = 32.0
    last_sample: MeterSample | None = None
    flowing: bool = False
    declining: bool = False  # SuspendedEV: offered, not asking
    applied: list[tuple[float, int | None]] = field(default_factory=list)

    def energy_flowing(self) -> bool:
        return self.flowing

    def ev_declining(self) -> bool:
        return self.declining

    def apply_limit(self, current_a: float, phases: int | None = None) -> None:
        self.limit_a = current_a
        self.applied.append((current_a, phases))

    def begin(self, local_id: int, at: datetime = T0) -> None:
        self.state = SessionPhase.TRANSACTION
        self.flowing = True
        self.tx = TxRecord(
            local_id=local_id, evse_id=self.id, connector_id=1, id_token="T",
            token_type=TokenType.ISO14443, started_at=at, meter_start_wh=0.0,
            last_meter_wh=0.0, last_meter_at=at,
        )  # fmt: skip

    def end(self) -> None:
        self.state, self.tx, self.flowing = SessionPhase.IDLE, None, False


class MemoryProfiles:
    """A ProfileSource over a dict (the real store has its own tests)."""

    def __init__(self) -> None:
        self.installed: dict[int, ChargingProfile] = {}

    def profiles(self) -> list[ChargingProfile]:
        return [self.installed[k] for k in sorted(self.installed)]

    def install(self, profile: ChargingProfile) -> None:
        self.installed[profile.profile_id] = profile

    def clear_transaction(self, transaction_id: str) -> list[int]:
        gone = [k for k, p in self.installed.items() if p.transaction_id == transaction_id]
        for k in gone:
            del self.installed[k]
        return gone

    def clear_expired(self, now: datetime) -> list[int]:
        gone = [
            k for k, p in self.installed.items() if p.valid_to is not None and p.valid_to <= now
        ]
        for k in gone:
            del self.installed[k]
        return gone


def profile(
    profile_id: int,
    periods: list[tuple[int, float]],
    *,
    evse_id: int = 1,
    purpose: ProfilePurpose = ProfilePurpose.TX_DEFAULT,
    start: datetime | None = T0,
    unit: RateUnit = RateUnit.AMPERE,
    **fields: object,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        evse_id=evse_id,
        purpose=purpose,
        stack_level=0,
        kind=ProfileKind.ABSOLUTE if start is not None else ProfileKind.RELATIVE,
        schedule=ChargingSchedule(
            rate_unit=unit,
            periods=tuple(SchedulePeriod(start_s, limit) for start_s, limit in periods),
            start_schedule=start,
        ),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store() -> MemoryProfiles:
    return MemoryProfiles()


@pytest.fixture
def evses() -> dict[int, FakeEvse]:
    return {1: FakeEvse(1), 2: FakeEvse(2)}


@pytest.fixture
async def loop(
    clock: FakeClock, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> AsyncIterator[SmartCharging]:
    smart = SmartCharging(clock=clock, profiles=store, evses=evses)  # type: ignore[arg-type]
    task = asyncio.create_task(smart.run())
    await wait_until(lambda: bool(clock.deadlines()), "the loop sleeping")
    yield smart
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def installed(smart: SmartCharging, store: MemoryProfiles, p: ChargingProfile) -> None:
    store.install(p)
    smart.profiles_changed()


async def test_without_profiles_each_evse_offers_its_hardware_maximum(
    loop: SmartCharging, evses: dict[int, FakeEvse]
) -> None:
    assert evses[1].limit_a == 32.0
    assert loop.limits[1].reason == "hardware"


async def test_a_profile_applies_at_once_and_changes_at_its_period_boundary_without_polling(
    loop: SmartCharging, clock: FakeClock, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    installed(loop, store, profile(1, [(0, 16.0), (600, 10.0)]))
    assert evses[1].limit_a == 16.0
    # The loop sleeps exactly until the boundary (not a polling interval).
    await wait_until(lambda: T0 + timedelta(seconds=600) in clock.deadlines(), "a wake-up")
    clock.advance(599)
    await asyncio.sleep(0)
    assert evses[1].limit_a == 16.0
    clock.advance(1)
    await wait_until(lambda: evses[1].limit_a == 10.0, "the second period")
    assert evses[2].limit_a == 32.0  # the profile is for EVSE 1 only


async def test_tx_default_on_evse_zero_applies_to_every_evse(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    installed(loop, store, profile(1, [(0, 12.0)], evse_id=0))
    assert (evses[1].limit_a, evses[2].limit_a) == (12.0, 12.0)


async def test_a_limit_in_watts_becomes_amperes_per_phase(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    installed(loop, store, profile(1, [(0, 11_040.0)], unit=RateUnit.WATT))
    assert evses[1].limit_a == 16.0  # 11,040 W / (230 V * 3)


async def test_the_station_maximum_is_shared_between_active_evses(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    installed(loop, store, profile(1, [(0, 20.0)], evse_id=0, purpose=ProfilePurpose.STATION_MAX))
    evses[1].begin(1)
    loop.recompute()  # as the EVSE's step hook does
    assert evses[1].limit_a == 20.0
    assert evses[2].limit_a == 0.0  # no session: nothing until it has one
    evses[2].begin(2, T0 + timedelta(seconds=5))
    loop.recompute()  # as the EVSE's step hook does
    assert (evses[1].limit_a, evses[2].limit_a) == (10.0, 10.0)
    evses[1].end()
    loop.recompute()  # as the EVSE's step hook does
    assert evses[2].limit_a == 20.0


async def test_the_least_of_site_capacity_station_profile_and_local_caps_wins(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    evses[1].begin(1)
    loop.set_site_capacity("site", 25.0)
    assert (evses[1].limit_a, loop.limits[1].reason) == (25.0, "site")
    installed(loop, store, profile(1, [(0, 18.0)], evse_id=0, purpose=ProfilePurpose.STATION_MAX))
    assert (evses[1].limit_a, loop.limits[1].reason) == (18.0, "station")
    loop.set_evse_cap("off_peak", 1, 0.0)
    assert (evses[1].limit_a, loop.limits[1].reason) == (0.0, "off_peak")
    loop.set_evse_cap("off_peak", 1, None)
    loop.set_site_capacity("site", None)
    assert evses[1].limit_a == 18.0


async def test_a_held_tx_profile_is_installed_for_the_next_transaction_and_ends_with_it(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    tx_profile = profile(7, [(0, 8.0)], purpose=ProfilePurpose.TX, start=None)
    loop.hold_for_next_transaction(1, tx_profile, store.install, "T")
    assert evses[1].limit_a == 32.0 and store.installed == {}
    evses[1].begin(42)
    loop.recompute()  # as the EVSE's step hook does
    assert store.installed[7].transaction_id == "42"
    assert evses[1].limit_a == 8.0
    evses[1].end()
    loop.recompute()  # as the EVSE's step hook does
    assert store.installed == {}
    assert evses[1].limit_a == 32.0


async def test_a_tx_profile_applies_only_to_its_transaction(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    evses[1].begin(5)
    other = profile(3, [(0, 8.0)], purpose=ProfilePurpose.TX, transaction_id="4")
    installed(loop, store, other)
    assert evses[1].limit_a == 32.0
    installed(loop, store, replace(other, transaction_id="5"))
    assert evses[1].limit_a == 8.0


async def test_a_refused_held_profile_does_not_stop_the_limits(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    def refuse(_: ChargingProfile) -> None:
        raise ValueError("refused")

    refusing: Callable[[ChargingProfile], object] = refuse
    loop.hold_for_next_transaction(1, profile(7, [(0, 8.0)], start=None), refusing, "T")
    evses[1].begin(1)
    loop.recompute()  # as the EVSE's step hook does
    assert evses[1].limit_a == 32.0


async def test_an_expired_profile_is_removed_at_its_validity_end(
    loop: SmartCharging, clock: FakeClock, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    until = T0 + timedelta(hours=1)
    installed(loop, store, profile(1, [(0, 10.0)], valid_to=until))
    assert evses[1].limit_a == 10.0
    await wait_until(lambda: until in clock.deadlines(), "a wake-up at the validity end")
    clock.set(until)
    await wait_until(lambda: evses[1].limit_a == 32.0, "the fall-back")
    assert store.installed == {}


async def test_the_limit_is_only_pushed_when_it_changes(
    loop: SmartCharging, evses: dict[int, FakeEvse]
) -> None:
    before = len(evses[1].applied)
    loop.recompute()
    loop.set_site_capacity("site", None)
    assert len(evses[1].applied) == before


def amps(per_phase: float) -> MeterSample:
    return MeterSample(0.0, per_phase * 690, (per_phase,) * 3, (230.0,) * 3)


async def test_a_reading_from_before_the_ev_could_follow_its_offer_cuts_nothing(
    loop: SmartCharging, clock: FakeClock, evses: dict[int, FakeEvse]
) -> None:
    """The begin register (0 A) must not make a drawing EV look self-limited."""
    loop.set_site_capacity("site", 20.0)
    evses[1].last_sample = amps(0.0)
    evses[1].begin(1)
    loop.recompute()  # as the EVSE's step hook does
    assert evses[1].limit_a == 20.0
    clock.advance(10)
    loop.recompute()  # no new reading since the flow began
    assert evses[1].limit_a == 20.0


async def test_an_ev_drawing_less_gives_the_rest_to_the_others_once_its_reading_settles(
    loop: SmartCharging, clock: FakeClock, evses: dict[int, FakeEvse]
) -> None:
    loop.set_site_capacity("site", 32.0)
    evses[1].begin(1)
    evses[2].begin(2, T0 + timedelta(seconds=1))
    loop.recompute()  # as the EVSE's step hook does
    assert (evses[1].limit_a, evses[2].limit_a) == (16.0, 16.0)
    clock.advance(1)
    evses[1].last_sample = amps(8.0)  # too soon after the flow began: says nothing
    loop.recompute()
    assert evses[1].limit_a == 16.0
    clock.advance(10)
    evses[1].last_sample = amps(8.0)  # a settled reading: EVSE 1 takes 8 A only
    loop.recompute()
    assert (evses[1].limit_a, evses[2].limit_a) == (10.0, 22.0)
    clock.advance(10)
    evses[1].last_sample = amps(10.0)  # it follows its whole offer again: fair shares
    loop.recompute()
    assert (evses[1].limit_a, evses[2].limit_a) == (16.0, 16.0)


async def test_a_full_car_keeps_the_minimum_and_its_share_goes_to_the_others(
    loop: SmartCharging, clock: FakeClock, evses: dict[int, FakeEvse]
) -> None:
    """A car that stops asking (SuspendedEV) is trimmed to 6 A once it had SETTLE_S to
    take its offer: the loop wakes for it by itself, without a reading."""
    loop.set_site_capacity("site", 30.0)
    evses[1].begin(1)
    evses[2].begin(2, T0 + timedelta(seconds=1))
    loop.recompute()
    assert (evses[1].limit_a, evses[2].limit_a) == (15.0, 15.0)
    clock.advance(60)
    evses[1].flowing, evses[1].declining = False, True  # full: pilot back to B
    loop.recompute()  # as the EVSE's step hook does
    assert evses[1].limit_a == 15.0  # not yet: it may be a pause of a few seconds
    due = clock.now() + timedelta(seconds=SETTLE_S)
    await wait_until(lambda: due in clock.deadlines(), "a wake-up when the wait ends")
    clock.set(due)
    await wait_until(lambda: evses[2].limit_a == 24.0, "the share moving to EVSE 2")
    assert evses[1].limit_a == 6.0  # kept, so the car can resume
    assert loop.settled_draw_a(1) == 0.0
    evses[1].last_sample = amps(0.0)  # the reading while it declined
    evses[1].flowing, evses[1].declining = True, False  # it asks again: its share back
    loop.recompute()
    assert (evses[1].limit_a, evses[2].limit_a) == (15.0, 15.0)


async def test_a_local_cap_may_ask_for_fewer_phases_and_the_least_wins(
    loop: SmartCharging, store: MemoryProfiles, evses: dict[int, FakeEvse]
) -> None:
    loop.set_evse_cap("pv", 1, 10.0, phases=1)
    assert evses[1].applied[-1] == (10.0, 1)
    loop.set_evse_cap("pv", 1, 16.0)  # the same source, no phase wish any more
    assert evses[1].applied[-1] == (16.0, None)
    loop.set_evse_cap("pv", 1, None)
    assert evses[1].applied[-1] == (32.0, None)


async def test_listeners_hear_each_change_of_a_limit(
    loop: SmartCharging, evses: dict[int, FakeEvse]
) -> None:
    heard: list[float] = []
    unsubscribe = loop.subscribe(lambda limits: heard.append(limits[1].current_a))
    loop.set_evse_cap("off_peak", 1, 0.0)
    loop.recompute()  # nothing changed: nothing heard
    loop.set_evse_cap("off_peak", 1, None)
    unsubscribe()
    loop.set_evse_cap("off_peak", 1, 0.0)
    assert heard == [0.0, 32.0]
