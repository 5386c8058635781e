"""Periodic messages keep their rhythm: due at start + k x interval, whatever each costs.

Heartbeats (OCPP 1.6 section 4.6, 2.0.1 G02) and a transaction's periodic meter samples
(MeterValueSampleInterval, SampledDataCtrlr.TxUpdatedInterval) are scheduled at absolute
times: when each exchange or meter read takes a while, the next one is not pushed back by
it (no drift, so a fleet's stations stay spread instead of bunching), and ticks missed
while the station was held up are skipped rather than sent in a burst. A changed
heartbeat interval starts the count again from the change.

Everything runs on a FakeClock moved one second at a time; the fake CSMS end answers each
CALL after a delay of fake time, as a loaded CSMS or link would.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from agent.core.ports import TxEventKind
from agent.core.tasks import TaskSet, next_tick
from agent.ocpp.v16.adapter import Ocpp16Adapter
from agent.ocpp.v201.adapter import Ocpp201Adapter
from agent.store.auth import AuthCache, LocalAuthList
from drivers.interfaces import PowerMeter
from drivers.types import MeterSample
from tests.fakes import FakeClock, settle, wait_until
from tests.unit.conftest import Rig, RigFactory

INTERVAL_S = 10
CALL_S = 3  # fake seconds each heartbeat exchange (or meter read) takes


class SlowCsms:
    """The CSMS end of a connection: answers every CALL after `delay_s` of fake time and
    records when (fake time) each call was made."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.closed = False
        self.calls: list[tuple[str, datetime]] = []
        self.delay_s: dict[str, float] = {"Heartbeat": CALL_S}

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((action, self.clock.now()))
        await self.clock.sleep(self.delay_s.get(action, 0.0))
        now = self.clock.now().isoformat()
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": INTERVAL_S}
        if action == "Heartbeat":
            return {"currentTime": now}
        return {}

    def times(self, action: str) -> list[datetime]:
        return [at for name, at in self.calls if name == action]


async def start_session(
    tasks: TaskSet, adapter: Ocpp16Adapter | Ocpp201Adapter, csms: SlowCsms
) -> datetime:
    """Run the adapter's session over `csms` until it is accepted and reporting; returns
    the (fake) time of the BootNotification."""
    tasks.spawn(adapter.run_session(csms))  # type: ignore[arg-type]
    await wait_until(lambda: csms.times("StatusNotification") != [], "booted and reporting")
    await settle()  # every loop of the session has started
    (booted,) = csms.times("BootNotification")
    return booted


async def run_clock(clock: FakeClock, seconds: int) -> None:
    """Move the fake clock `seconds` on, one second at a time, letting everything react."""
    for _ in range(seconds):
        clock.advance(1.0)
        await settle()


def steps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


@pytest.fixture
async def session_tasks() -> AsyncIterator[TaskSet]:
    tasks = TaskSet("test-session")
    yield tasks
    await tasks.cancel_all()


def v16_adapter(rig: Rig) -> Ocpp16Adapter:
    return Ocpp16Adapter(
        station=rig.station,
        store=rig.store,
        clock=rig.clock,
        boot_payload={"chargePointVendor": "cpagent", "chargePointModel": "test"},
        install_settings={},
        request_reset=lambda _hard: None,
        local_list=LocalAuthList(rig.store),
        auth_cache=AuthCache(rig.store, clock=rig.clock),
    )


def v201_adapter(rig: Rig) -> Ocpp201Adapter:
    return Ocpp201Adapter(
        station=rig.station,
        store=rig.store,
        clock=rig.clock,
        charging_station={"model": "test", "vendorName": "cpagent"},
        install_settings={},
        request_reset=lambda _hard: None,
        local_list=LocalAuthList(rig.store),
        auth_cache=AuthCache(rig.store, clock=rig.clock),
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_heartbeats_come_every_interval_from_the_boot_however_long_each_takes(
    make_rig: RigFactory, session_tasks: TaskSet, version: str
) -> None:
    rig = await make_rig()
    adapter = v16_adapter(rig) if version == "1.6" else v201_adapter(rig)
    csms = SlowCsms(rig.clock)
    booted = await start_session(session_tasks, adapter, csms)

    await run_clock(rig.clock, 5 * INTERVAL_S + 1)

    expected = [booted + timedelta(seconds=INTERVAL_S * k) for k in range(1, 6)]
    assert csms.times("Heartbeat") == expected  # not 10, 23, 36, ... (sleeping after each)
    await adapter.shutdown()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_changed_heartbeat_interval_counts_from_the_change(
    make_rig: RigFactory, session_tasks: TaskSet, version: str
) -> None:
    rig = await make_rig()
    csms = SlowCsms(rig.clock)
    v16 = v16_adapter(rig) if version == "1.6" else None
    v201 = v201_adapter(rig) if version == "2.0.1" else None
    adapter = v16 or v201
    assert adapter is not None
    booted = await start_session(session_tasks, adapter, csms)
    await run_clock(rig.clock, 25)  # heartbeats at +10 and +20

    changed = rig.clock.now()
    if v16 is not None:
        v16.keys.change("HeartbeatInterval", "7")  # as ChangeConfiguration does
    elif v201 is not None:
        v201.model.set(*_heartbeat_variable(), "7")  # as SetVariables does
    await settle()
    await run_clock(rig.clock, 20)

    assert csms.times("Heartbeat") == [
        booted + timedelta(seconds=10),
        booted + timedelta(seconds=20),
        changed + timedelta(seconds=7),
        changed + timedelta(seconds=14),
    ]
    await adapter.shutdown()


def _heartbeat_variable() -> tuple[Any, Any]:
    from agent.ocpp.v201.variables import ComponentKey, VariableKey

    return ComponentKey("OCPPCommCtrlr"), VariableKey("HeartbeatInterval")


async def test_heartbeats_missed_while_the_csms_took_too_long_are_skipped_not_bunched(
    make_rig: RigFactory, session_tasks: TaskSet
) -> None:
    rig = await make_rig()
    adapter = v16_adapter(rig)
    csms = SlowCsms(rig.clock)
    booted = await start_session(session_tasks, adapter, csms)
    csms.delay_s["Heartbeat"] = 25  # the first answer comes 2.5 intervals late

    await run_clock(rig.clock, 35)
    csms.delay_s["Heartbeat"] = 0
    await run_clock(rig.clock, 20)

    # +10 answered at +35: +20 and +30 are skipped, the rhythm goes on at +40, +50.
    assert csms.times("Heartbeat") == [booted + timedelta(seconds=s) for s in (10, 40, 50)]
    await adapter.shutdown()


class SlowMeter:
    """A PowerMeter whose every read takes `delay_s` of fake time."""

    def __init__(self, inner: PowerMeter, clock: FakeClock, delay_s: float) -> None:
        self.inner = inner
        self.clock = clock
        self.delay_s = delay_s

    async def read(self) -> MeterSample:
        await self.clock.sleep(self.delay_s)
        return await self.inner.read()


async def test_transaction_samples_keep_their_interval_when_the_meter_is_slow(
    rig: Rig,
) -> None:
    rig.station.policy.sample_interval_s = INTERVAL_S
    await rig.start_charging()
    rig.evse.meter = SlowMeter(rig.evse.meter, rig.clock, CALL_S)  # type: ignore[arg-type]

    await run_clock(rig.clock, 5 * INTERVAL_S + CALL_S + 1)

    stamps = []
    seq = 0
    while (entry := rig.store.next_pending(seq)) is not None:
        seq = entry.seq
        if entry.kind == TxEventKind.UPDATED and entry.payload.get("trigger") == "meter_periodic":
            stamps.append(entry.created_at)
    assert len(stamps) == 5
    assert steps(stamps) == [INTERVAL_S] * 4  # not 13 s apart (interval + read)


def test_next_tick_keeps_the_grid_skips_missed_ticks_and_restarts_after_a_clock_step() -> None:
    start = datetime(2025, 1, 1, 12, 0, tzinfo=FakeClock().now().tzinfo)

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    assert next_tick(start, 10, at(0)) == at(10)
    assert next_tick(start, 10, at(3)) == at(10)  # the work took 3 s: still at +10
    assert next_tick(start, 10, at(10)) == at(10)  # due now
    assert next_tick(start, 10, at(12)) == at(20)  # +10 missed: skipped
    assert next_tick(start, 10, at(35)) == at(40)
    assert next_tick(start, 10, at(-60)) == at(-50)  # the wall clock went back a minute
    with pytest.raises(ValueError):
        next_tick(start, 0, at(0))
