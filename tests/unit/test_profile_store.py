"""Installed charging profiles (agent.store.profiles) on a real SQLite store file and on
fleet mode's MemoryStore (where they live in memory only).

Pins the replacement rules of OCPP 1.6 section 3.13.1/3.13.2 (`ConflictRule.REPLACE`)
and the refusals of 2.0.1 K01 (`ConflictRule.REFUSE_OVERLAP`), that a rejected or failed
install changes nothing, that an install returns once durable and a removal is written
behind, and that profiles survive a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.core.composite import RunningTransaction, composite_schedule
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    RejectReason,
    SchedulePeriod,
)
from agent.store import AgentStore, MemoryStore, Store
from agent.store.profiles import (
    ConflictRule,
    ProfileNotStoredError,
    ProfileRejectedError,
    ProfileStore,
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
LIMITS = ProfileLimits(max_stack_level=8, max_periods=24, evse_ids=frozenset({1, 2}))
TX_DEFAULT, TX, STATION_MAX = (
    ProfilePurpose.TX_DEFAULT,
    ProfilePurpose.TX,
    ProfilePurpose.STATION_MAX,
)
REFUSE = ConflictRule.REFUSE_OVERLAP


def make(profile_id: int, limit_a: float = 16.0, **fields: Any) -> ChargingProfile:
    base = ChargingProfile(
        profile_id=profile_id,
        evse_id=1,
        purpose=TX_DEFAULT,
        stack_level=0,
        kind=ProfileKind.ABSOLUTE,
        schedule=ChargingSchedule(
            rate_unit=RateUnit.AMPERE,
            periods=(SchedulePeriod(0, limit_a),),
            start_schedule=T0,
        ),
    )
    return replace(base, **fields)


def tx(profile_id: int, transaction_id: str, **fields: Any) -> ChargingProfile:
    return make(profile_id, purpose=TX, transaction_id=transaction_id, **fields)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


@pytest.fixture(params=["sqlite", "python"])
def profiles(request: pytest.FixtureRequest, db_path: Path) -> Iterator[ProfileStore]:
    """A ProfileStore over a SQLite file, and over a MemoryStore."""
    host: AgentStore = Store(db_path) if request.param == "sqlite" else MemoryStore()
    try:
        yield ProfileStore(host)
    finally:
        host.close()


def ids(profile_store: ProfileStore) -> list[int]:
    return [profile.profile_id for profile in profile_store.profiles()]


async def test_a_profile_reads_back_as_installed_after_a_restart(db_path: Path) -> None:
    cest = timezone(timedelta(hours=2))
    rich = ChargingProfile(
        profile_id=7,
        evse_id=0,
        purpose=TX_DEFAULT,
        stack_level=3,
        kind=ProfileKind.RECURRING,
        recurrence=Recurrence.WEEKLY,
        valid_from=datetime(2025, 3, 1, 10, 0, tzinfo=cest),
        valid_to=T0 + timedelta(days=30, microseconds=5),
        schedule=ChargingSchedule(
            rate_unit=RateUnit.WATT,
            periods=(SchedulePeriod(0, 11000.0, 3), SchedulePeriod(28800, 6000.5)),
            start_schedule=T0,
            duration_s=86400,
            min_charging_rate=1380.0,
        ),
    )
    with Store(db_path) as store:
        await ProfileStore(store).install(rich, LIMITS)

    with Store(db_path) as store:
        stored = ProfileStore(store).get(7)

    assert stored == rich
    assert stored is not None and stored.valid_from == T0  # 10:00+02:00 is 08:00 UTC


async def test_a_profile_with_an_installed_id_replaces_it_wherever_it_was(
    profiles: ProfileStore,
) -> None:
    await profiles.install(make(1, 16.0), LIMITS)

    replaced = await profiles.install(make(1, 10.0, evse_id=2, stack_level=4), LIMITS)

    assert replaced == (1,)
    assert profiles.profiles() == [make(1, 10.0, evse_id=2, stack_level=4)]


async def test_same_purpose_and_stack_level_on_an_evse_replaces_the_installed_profile(
    profiles: ProfileStore,
) -> None:
    # OCPP 1.6 section 3.13.2.
    await profiles.install(make(1, 16.0), LIMITS)
    await profiles.install(make(2, 16.0, stack_level=1), LIMITS)

    replaced = await profiles.install(make(3, 6.0), LIMITS)

    assert replaced == (1,)
    assert ids(profiles) == [2, 3]


async def test_an_evse_tx_default_does_not_remove_the_evse_zero_one(profiles: ProfileStore) -> None:
    # 1.6 section 3.13.1: replaced "only for that specific connector"; the composite
    # shadows it on EVSE 1 and EVSE 2 keeps it.
    await profiles.install(make(1, 20.0, evse_id=0), LIMITS)

    assert await profiles.install(make(2, 12.0, evse_id=1), LIMITS) == ()

    installed = profiles.profiles()
    assert ids(profiles) == [1, 2]
    for evse_id, expected_a in ((1, 12.0), (2, 20.0)):
        composite = composite_schedule(
            installed, evse_id=evse_id, start=T0, duration_s=60, rate_unit=RateUnit.AMPERE
        )
        assert composite.limit_at(T0) == expected_a


async def test_a_tx_profile_replaces_the_one_on_its_stack_level_and_evse(
    profiles: ProfileStore,
) -> None:
    await profiles.install(tx(1, "tx-1"), LIMITS)
    await profiles.install(tx(2, "tx-1", evse_id=2), LIMITS)

    assert await profiles.install(tx(3, "tx-1", limit_a=8.0), LIMITS) == (1,)
    assert ids(profiles) == [2, 3]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (make(9, -1.0), RejectReason.NEGATIVE_LIMIT),
        (make(9, stack_level=9), RejectReason.STACK_LEVEL_TOO_HIGH),
        (
            make(9, valid_from=T0, valid_to=T0 - timedelta(hours=1)),
            RejectReason.VALID_TO_BEFORE_VALID_FROM,
        ),
        (
            make(9, schedule=replace(make(9).schedule, rate_unit=RateUnit.WATT)),
            RejectReason.UNSUPPORTED_UNIT,
        ),
    ],
    ids=["negative limit", "stack level", "validity", "unit"],
)
async def test_a_rejected_profile_changes_nothing(
    profiles: ProfileStore, bad: ChargingProfile, reason: RejectReason
) -> None:
    amps_only = replace(LIMITS, allowed_units=frozenset({RateUnit.AMPERE}))
    await profiles.install(make(1), LIMITS)
    await profiles.install(make(9, stack_level=2), LIMITS)
    before = profiles.profiles()

    # Would replace profile 9 (same id) and, at stack level 0, profile 1.
    with pytest.raises(ProfileRejectedError) as caught:
        await profiles.install(bad, amps_only)

    assert caught.value.reason is reason
    assert profiles.profiles() == before


async def test_an_install_that_fails_half_way_leaves_the_replaced_profile(store: Store) -> None:
    profiles = ProfileStore(store)
    await profiles.install(make(1, 16.0), LIMITS)
    with store.writing() as conn:  # the disk fails on the insert, after the delete
        conn.execute(
            "CREATE TRIGGER fail_99 BEFORE INSERT ON charging_profiles"
            " WHEN NEW.profile_id = 99 BEGIN SELECT RAISE(ABORT, 'write failed'); END"
        )

    with pytest.raises(ProfileNotStoredError, match="write failed") as caught:
        await profiles.install(make(99, 6.0), LIMITS)

    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)

    assert profiles.profiles() == [make(1, 16.0)]


def file_ids(path: Path) -> list[int]:
    """The profile ids a fresh connection reads from the file: what a power cut keeps."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT profile_id FROM charging_profiles ORDER BY profile_id")
        return [int(row[0]) for row in rows.fetchall()]
    finally:
        conn.close()


async def test_an_install_returns_once_durable_and_never_holds_the_event_loop(
    db_path: Path,
) -> None:
    # SetChargingProfile answers Accepted when install returns: the profile must be in
    # the file by then, committed by the store's writer thread, not on the event loop.
    with Store(db_path) as store:
        profiles = ProfileStore(store)
        busy, release = threading.Event(), threading.Event()

        def occupy(_conn: sqlite3.Connection) -> None:
            busy.set()
            release.wait(5)

        writer_busy = store.start_write(occupy)  # a slow disk: the writer thread waits
        assert busy.wait(5)
        installing = asyncio.create_task(profiles.install(make(1), LIMITS))
        for _ in range(5):
            await asyncio.sleep(0)  # the loop runs on while the write waits
        assert not installing.done()
        assert file_ids(db_path) == []

        release.set()
        assert await installing == ()
        assert file_ids(db_path) == [1]
        writer_busy.result(5)

        assert profiles.clear(profile_ids=[1]) == [1]  # a removal is written behind
        assert await profiles.written()
        assert file_ids(db_path) == []


async def test_the_installed_maximum_counts_what_the_new_profile_replaces(
    profiles: ProfileStore,
) -> None:
    two = replace(LIMITS, max_installed=2)
    await profiles.install(make(1), two)
    await profiles.install(make(2, stack_level=1), two)

    with pytest.raises(ProfileRejectedError) as caught:
        await profiles.install(make(3, stack_level=2), two)

    assert caught.value.reason is RejectReason.TOO_MANY_PROFILES
    assert await profiles.install(make(4, 6.0, stack_level=1), two) == (2,)
    assert ids(profiles) == [1, 4]
    assert profiles.count() == 2


async def test_a_tx_profile_for_no_running_transaction_is_rejected(profiles: ProfileStore) -> None:
    with pytest.raises(ProfileRejectedError) as caught:
        await profiles.install(tx(1, "tx-1"), LIMITS, active_transactions={2: "tx-1"})

    assert caught.value.reason is RejectReason.NO_ACTIVE_TRANSACTION
    assert await profiles.install(tx(1, "tx-1"), LIMITS, active_transactions={1: "tx-1"}) == ()


# -- 2.0.1: refuse instead of replace ------------------------------------------------------


async def test_refuse_overlap_still_replaces_the_same_id(profiles: ProfileStore) -> None:
    await profiles.install(make(1, 16.0), LIMITS, conflicts=REFUSE)

    assert await profiles.install(make(1, 8.0), LIMITS, conflicts=REFUSE) == (1,)  # K01.FR.05
    assert profiles.profiles() == [make(1, 8.0)]


async def test_refuse_overlap_rejects_a_second_profile_in_the_same_place(
    profiles: ProfileStore,
) -> None:
    # K01.FR.06: same purpose, stack level and EVSE with overlapping validity.
    await profiles.install(make(1, valid_to=T0 + timedelta(hours=2)), LIMITS, conflicts=REFUSE)

    with pytest.raises(ProfileRejectedError) as caught:
        await profiles.install(
            make(2, valid_from=T0 + timedelta(hours=1)), LIMITS, conflicts=REFUSE
        )

    assert caught.value.reason is RejectReason.CONFLICTING_PROFILE
    assert ids(profiles) == [1]


async def test_refuse_overlap_accepts_back_to_back_validity_windows(profiles: ProfileStore) -> None:
    await profiles.install(make(1, valid_to=T0 + timedelta(hours=2)), LIMITS, conflicts=REFUSE)
    await profiles.install(make(2, valid_from=T0 + timedelta(hours=2)), LIMITS, conflicts=REFUSE)
    await profiles.install(make(3, evse_id=2), LIMITS, conflicts=REFUSE)

    assert ids(profiles) == [1, 2, 3]


async def test_refuse_overlap_rejects_a_tx_profile_on_a_taken_stack_level(
    profiles: ProfileStore,
) -> None:
    await profiles.install(tx(1, "tx-1"), LIMITS, conflicts=REFUSE)

    with pytest.raises(ProfileRejectedError) as caught:  # K01.FR.39
        await profiles.install(
            tx(2, "tx-1", valid_from=T0 + timedelta(days=1)), LIMITS, conflicts=REFUSE
        )

    assert caught.value.reason is RejectReason.CONFLICTING_PROFILE
    await profiles.install(tx(3, "tx-2", evse_id=2), LIMITS, conflicts=REFUSE)
    assert ids(profiles) == [1, 3]


@pytest.mark.parametrize(("first_evse", "second_evse"), [(1, 0), (0, 1)])
async def test_refuse_overlap_keeps_evse_zero_and_evse_tx_defaults_off_one_level(
    profiles: ProfileStore, first_evse: int, second_evse: int
) -> None:
    # K01.FR.52 (EVSE 0 after an EVSE) and K01.FR.53 (an EVSE after EVSE 0).
    await profiles.install(make(1, evse_id=first_evse), LIMITS, conflicts=REFUSE)

    with pytest.raises(ProfileRejectedError) as caught:
        await profiles.install(make(2, evse_id=second_evse), LIMITS, conflicts=REFUSE)

    assert caught.value.reason is RejectReason.CONFLICTING_PROFILE
    await profiles.install(make(3, evse_id=second_evse, stack_level=1), LIMITS, conflicts=REFUSE)
    assert ids(profiles) == [1, 3]


# -- reads and removals ----------------------------------------------------------------------


@pytest.fixture
async def installed(profiles: ProfileStore) -> ProfileStore:
    for profile in (
        make(1, evse_id=0, purpose=STATION_MAX),
        make(2, evse_id=0),
        make(3, evse_id=1, stack_level=1),
        make(4, evse_id=2, stack_level=1),
        tx(5, "tx-1", stack_level=2),
        tx(6, "tx-2", evse_id=2, stack_level=2),
    ):
        await profiles.install(profile, LIMITS)
    return profiles


def test_profiles_are_selected_by_every_given_criterion(installed: ProfileStore) -> None:
    def select(**criteria: Any) -> list[int]:
        return [profile.profile_id for profile in installed.profiles(**criteria)]

    assert select() == [1, 2, 3, 4, 5, 6]
    assert select(evse_id=0) == [1, 2]
    assert select(purpose=TX_DEFAULT) == [2, 3, 4]
    assert select(stack_level=1, evse_id=2) == [4]
    assert select(profile_ids=[6, 1, 42]) == [1, 6]
    assert select(profile_ids=[]) == []
    assert installed.get(42) is None


def test_clear_removes_what_matches_every_criterion_and_says_which(
    installed: ProfileStore,
) -> None:
    assert installed.clear(purpose=TX_DEFAULT, stack_level=1) == [3, 4]
    assert installed.clear(profile_ids=[42]) == []
    assert installed.clear(evse_id=0, purpose=TX) == []
    assert ids(installed) == [1, 2, 5, 6]
    assert installed.clear() == [1, 2, 5, 6]
    assert installed.count() == 0


def test_a_transactions_tx_profiles_go_when_it_ends(installed: ProfileStore) -> None:
    assert installed.clear_transaction("tx-1") == [5]
    assert installed.clear_transaction("tx-1") == []
    assert ids(installed) == [1, 2, 3, 4, 6]


async def test_expired_profiles_are_removed_at_their_valid_to(profiles: ProfileStore) -> None:
    await profiles.install(make(1, valid_to=T0 + timedelta(hours=1)), LIMITS)
    await profiles.install(make(2, stack_level=1, valid_to=T0 + timedelta(hours=2)), LIMITS)
    await profiles.install(make(3, stack_level=2), LIMITS)

    assert profiles.clear_expired(T0 + timedelta(minutes=59)) == []
    assert profiles.clear_expired(T0 + timedelta(hours=1)) == [1]
    assert ids(profiles) == [2, 3]
    with pytest.raises(ValueError, match="naive"):
        profiles.clear_expired(datetime(2025, 3, 1, 9, 0))


async def test_the_composite_of_the_stored_profiles_caps_a_transaction(
    installed: ProfileStore,
) -> None:
    # Everything installed allows 16 A; a station maximum of 10 A on a higher stack
    # level prevails over the 16 A one and caps TX profile 5 of tx-1 on EVSE 1.
    await installed.install(make(7, 10.0, evse_id=0, purpose=STATION_MAX, stack_level=1), LIMITS)

    composite = composite_schedule(
        installed.profiles(),
        evse_id=1,
        start=T0,
        duration_s=3600,
        rate_unit=RateUnit.AMPERE,
        transaction=RunningTransaction("tx-1", T0),
    )

    assert composite.limit_at(T0 + timedelta(minutes=30)) == 10.0
