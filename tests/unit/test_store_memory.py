"""Fleet mode's plain-Python store (agent/store/memory.py) where it differs from SQLite's:
how it is chosen, what it never does (wait, fail, retry), and that a fleet station's
local list, cache and charging profiles open no SQLite database until a list arrives.

Its contract (journal, outbox, settings, retention) is pinned by the suites that run
over both backends: test_store.py, test_store_retention.py, test_outbox_replay.py,
test_auth_store.py, test_profile_store.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.app import Agent
from agent.core.events import AuthStatus
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    SchedulePeriod,
)
from agent.store import MEMORY_PATH, MemoryStore, Store, is_in_memory, open_store
from agent.store.auth import AuthEntry
from drivers.types import TokenType
from simulator.fleet import FleetOptions, fleet_template, station_config
from tests.fakes import FakeClock

T0 = datetime(2025, 5, 1, 7, 0, tzinfo=UTC)


@pytest.fixture
def memory() -> Iterator[MemoryStore]:
    with MemoryStore() as store:
        yield store


def test_the_store_path_picks_the_backend(tmp_path: Path) -> None:
    chosen = [open_store(MEMORY_PATH), open_store(":memory:"), open_store(tmp_path / "a.db")]
    try:
        assert [type(store) for store in chosen] == [MemoryStore, Store, Store]
        assert [is_in_memory(p) for p in (MEMORY_PATH, ":memory:", tmp_path / "a.db")] == [
            True,
            True,
            False,
        ]
    finally:
        for store in chosen:
            store.close()


async def test_every_write_is_durable_at_once_and_listeners_hear_it_on_the_loop(
    memory: MemoryStore,
) -> None:
    heard = asyncio.Event()
    memory.subscribe_durable(heard.set)
    tx = memory.begin_transaction(
        evse_id=1,
        connector_id=1,
        id_token="TAG",
        token_type=TokenType.ISO14443,
        started_at=T0,
        meter_start_wh=0.0,
    )
    assert await memory.wait_durable() and memory.flush()
    await asyncio.wait_for(heard.wait(), 5)  # called on the loop, after the write
    entry = memory.next_pending()
    assert entry is not None and entry.tx_local_id == tx.local_id  # at once: durable
    health = memory.health
    assert (health.writable, health.backlog, health.accepting_new) == (True, 0, True)


async def test_its_retry_loop_ends_at_once_instead_of_waiting(memory: MemoryStore) -> None:
    clock = FakeClock()
    await asyncio.wait_for(memory.retry_forever(clock), 1)  # nothing could ever fail
    assert clock.deadlines() == []


def fleet_agent(version: str) -> Agent:
    template = fleet_template(FleetOptions(url="ws://127.0.0.1:9/ocpp", version=version))
    return Agent(station_config(template, "CP-0007"))


def profile(profile_id: int) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        evse_id=0,
        purpose=ProfilePurpose.TX_DEFAULT,
        stack_level=0,
        kind=ProfileKind.ABSOLUTE,
        schedule=ChargingSchedule(
            rate_unit=RateUnit.AMPERE, periods=(SchedulePeriod(0, 16.0),), start_schedule=T0
        ),
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_fleet_station_opens_no_sqlite_until_the_csms_sends_a_list(version: str) -> None:
    agent = fleet_agent(version)
    store = agent.store
    try:
        assert isinstance(store, MemoryStore)
        agent.auth_cache.put(AuthEntry("CARD", AuthStatus.ACCEPTED))  # every CSMS answer
        assert agent.auth_cache.get("CARD") is not None
        await agent.profiles.install(profile(1), ProfileLimits(max_stack_level=8, max_periods=24))
        assert [p.profile_id for p in agent.profiles.profiles()] == [1]
        assert agent.profiles.clear_expired(T0) == []  # the smart-charging loop's check
        assert (agent.local_list.version(), agent.local_list.get("CARD")) == (0, None)
        assert await agent.local_list.purge_stale() == 0  # what Agent.run does first
        assert not store.opened

        await agent.local_list.replace(3, [AuthEntry("CARD", AuthStatus.BLOCKED)], max_length=10)
        assert store.opened  # the list's tables: a private SQLite database in memory
        assert agent.local_list.version() == 3
        assert agent.local_list.get("CARD") == AuthEntry("CARD", AuthStatus.BLOCKED)
    finally:
        store.close()
