"""The local list, the authorization cache and the charging profiles on a store that
refuses writes: the CSMS gets a clean refusal, a tap keeps its verdict, nothing half-done.

Real SQLite throughout, made to refuse as tests/unit/test_store_writer.py does: a full
disk is `PRAGMA max_page_count` capping the file at its size (SQLITE_FULL as soon as a
write needs a new page), a read-only store is `PRAGMA query_only` (SQLITE_READONLY).
Both pragmas hold per connection, so the helpers set them on the writer's connection and
the owner's. The wire cases run the real agent against the test CSMS, OCPP 1.6J and
2.0.1, on a store file made with 512-byte pages (like tests/reliability/test_store_full.py)
so that a list or a profile needs new pages; a CALLERROR would make `csms.call` raise.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.auth import AuthorizationChain, Unreachable
from agent.core.events import AuthResult, AuthStatus, IdToken
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    RejectReason,
    SchedulePeriod,
)
from agent.ocpp.v201.device_model import wire_time
from agent.store import Store
from agent.store.auth import AuthCache, AuthEntry, ListNotStored, ListTooLong, LocalAuthList
from agent.store.profiles import ProfileNotStoredError, ProfileStore
from simulator.csms import Csms, CsmsBehaviour
from tests.fakes import FakeClock
from tests.integration.conftest import CP_ID, RunningStation
from tests.integration.v201_station import make_config_201

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
ACCEPTED = AuthStatus.ACCEPTED
MODES = ("background", "inline-file", "memory")


def open_store(mode: str, tmp_path: Path) -> Store:
    """A store committing the way `mode` says (as in test_store_writer.py)."""
    if mode == "memory":
        return Store(":memory:")
    return Store(tmp_path / "agent.db", background=mode == "background")


@pytest.fixture(params=MODES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(str(request.param), tmp_path) as s:
        yield s


def fill_disk(store: Store, full: bool = True) -> None:
    """The file may not grow (SQLITE_FULL on a new page), or space returns."""
    pages = 1 if full else 1_000_000
    store.on_writer(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    store.connection.execute(f"PRAGMA max_page_count = {pages}")


def make_read_only(store: Store, read_only: bool = True) -> None:
    """Every write is refused (SQLITE_READONLY), or accepted again."""
    store.on_writer(lambda conn: conn.execute(f"PRAGMA query_only = {int(read_only)}"))
    store.connection.execute(f"PRAGMA query_only = {int(read_only)}")


def tokens(prefix: str, count: int) -> list[AuthEntry]:
    return [AuthEntry(f"{prefix}{i:05d}", ACCEPTED) for i in range(count)]


async def writer_caught_up(store: Store) -> None:
    """Return once every write handed to the store's writer so far has run (its calls
    run in order: this one runs after them), whether or not the disk took them."""
    with contextlib.suppress(sqlite3.Error):
        await store.run_write(lambda _conn: None, durable=False)


def file_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What a fresh connection reads from the store file (what survived)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- the local list ----------------------------------------------------------------------


async def test_a_full_update_the_full_disk_refuses_fails_and_keeps_the_old_list(
    store: Store,
) -> None:
    local_list = LocalAuthList(store, chunk_rows=100)
    await local_list.replace(1, tokens("OLD", 10), max_length=5000)
    fill_disk(store)

    with pytest.raises(ListNotStored, match="SQLITE_FULL") as refused:
        await local_list.replace(2, tokens("NEW", 2000), max_length=5000)

    assert isinstance(refused.value, ListTooLong)  # the adapters answer Failed
    assert (local_list.version(), local_list.size()) == (1, 10)
    assert local_list.get("OLD00009") == AuthEntry("OLD00009", ACCEPTED)
    assert local_list.get("NEW00000") is None

    fill_disk(store, full=False)
    await local_list.replace(2, tokens("NEW", 2000), max_length=5000)
    assert (local_list.version(), local_list.get("NEW01999")) == (2, tokens("NEW", 2000)[-1])
    assert await local_list.purge_stale() == 0  # the refused attempt's rows went too


async def test_a_differential_update_on_a_read_only_store_fails_and_changes_nothing(
    store: Store,
) -> None:
    local_list = LocalAuthList(store, chunk_rows=100)
    await local_list.replace(1, tokens("OLD", 300), max_length=5000)
    make_read_only(store)

    with pytest.raises(ListNotStored, match="SQLITE_READONLY"):
        await local_list.update(2, tokens("NEW", 50), max_length=5000)

    assert (local_list.version(), local_list.size()) == (1, 300)
    assert local_list.get("NEW00000") is None
    make_read_only(store, False)
    await local_list.update(2, tokens("NEW", 50), max_length=5000)
    assert (local_list.version(), local_list.size()) == (2, 350)


async def test_an_applied_list_survives_a_restart_though_its_rows_skipped_the_fsync(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "agent.db") as store:
        await LocalAuthList(store, chunk_rows=100).replace(7, tokens("T", 1000), max_length=5000)
    rows = file_rows(tmp_path / "agent.db", "SELECT version, size FROM auth_list_meta")
    assert rows == [(7, 1000)]
    with Store(tmp_path / "agent.db") as store:
        local_list = LocalAuthList(store)
        assert local_list.get("T00999") == AuthEntry("T00999", ACCEPTED)
        assert await local_list.purge_stale() == 0


# -- the authorization cache: a tap never fails ------------------------------------------------


class Offline:
    """A CSMS that cannot be asked."""

    online = False

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        raise Unreachable("offline")


class Answers:
    """A CSMS that answers every Authorize with `status`."""

    online = True

    def __init__(self, status: AuthStatus) -> None:
        self.status = status

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        return AuthResult(self.status)


async def test_a_cache_hit_on_a_read_only_store_authorizes_and_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    cache = AuthCache(store, clock=clock)
    cache.put(AuthEntry("CARD", ACCEPTED))
    make_read_only(store)
    chain = AuthorizationChain(remote=Offline(), clock=clock, cache=cache)

    with caplog.at_level(logging.WARNING, logger="agent.store"):
        verdict = await chain.authorize(IdToken("CARD"))
        await writer_caught_up(store)

    assert verdict.accepted  # the tap stands
    assert "authorization cache update not written" in caplog.text
    assert "SQLITE_READONLY" in caplog.text


async def test_a_csms_answer_on_a_full_disk_is_cached_in_memory_and_written_when_space_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.db"
    clock = FakeClock(T0)
    with Store(path) as store:
        cache = AuthCache(store, clock=clock)
        chain = AuthorizationChain(remote=Answers(AuthStatus.BLOCKED), clock=clock, cache=cache)
        make_read_only(store)

        assert (await chain.authorize(IdToken("STOLEN"))).status is AuthStatus.BLOCKED
        await writer_caught_up(store)
        assert cache.get("STOLEN") == AuthEntry("STOLEN", AuthStatus.BLOCKED)
        assert file_rows(path, "SELECT id_token FROM auth_cache") == []

        make_read_only(store, False)
        clock.advance(60)
        cache.put(AuthEntry("OTHER", ACCEPTED))  # the next change rewrites the whole cache
        await writer_caught_up(store)

    assert file_rows(path, "SELECT id_token, status FROM auth_cache ORDER BY id_token") == [
        ("OTHER", "accepted"),
        ("STOLEN", "blocked"),
    ]
    with Store(path) as store:  # and a restart reads it back
        assert AuthCache(store, clock=clock).get("STOLEN") == AuthEntry(
            "STOLEN", AuthStatus.BLOCKED
        )


# -- charging profiles --------------------------------------------------------------------------

LIMITS = ProfileLimits(max_stack_level=8, max_periods=24, evse_ids=frozenset({1}))


def tx_default(profile_id: int, limit_a: float = 16.0) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        evse_id=1,
        purpose=ProfilePurpose.TX_DEFAULT,
        stack_level=profile_id,
        kind=ProfileKind.ABSOLUTE,
        schedule=ChargingSchedule(
            rate_unit=RateUnit.AMPERE,
            start_schedule=T0,
            periods=(SchedulePeriod(0, limit_a),),
        ),
    )


async def test_a_profile_the_read_only_store_refuses_is_rejected_and_not_installed(
    store: Store,
) -> None:
    profiles = ProfileStore(store)
    await profiles.install(tx_default(1), LIMITS)
    make_read_only(store)

    with pytest.raises(ProfileNotStoredError, match="SQLITE_READONLY") as refused:
        await profiles.install(tx_default(2), LIMITS)

    assert refused.value.reason is RejectReason.TOO_MANY_PROFILES  # 2.0.1: OutOfStorage
    assert [p.profile_id for p in profiles.profiles()] == [1]


async def test_a_removal_the_store_refuses_holds_in_memory_and_reaches_the_file_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        profiles = ProfileStore(store)
        await profiles.install(tx_default(1), LIMITS)
        await profiles.install(tx_default(2), LIMITS)
        make_read_only(store)

        assert profiles.clear(profile_ids=[1]) == [1]  # ClearChargingProfile: Accepted
        assert [p.profile_id for p in profiles.profiles()] == [2]
        assert (profiles.get(1), profiles.count()) == (None, 1)
        assert profiles.clear_expired(T0 + timedelta(days=1)) == []  # the loop's check
        assert not await profiles.written()  # the store refused the removal
        assert file_rows(path, "SELECT profile_id FROM charging_profiles") == [(1,), (2,)]

        make_read_only(store, False)
        await profiles.install(tx_default(3), LIMITS)  # the next write takes it along
        assert await profiles.written()

    rows = file_rows(path, "SELECT profile_id FROM charging_profiles ORDER BY profile_id")
    assert rows == [(2,), (3,)]


# -- on the wire: SendLocalList Failed, SetChargingProfile Rejected -----------------------------


def small_pages(path: Path) -> None:
    """Create the store file with 512-byte pages: a list or a profile needs new pages."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size = 512")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def send_local_list(version: str, list_version: int, count: int) -> dict[str, Any]:
    if version == "1.6":
        items = [{"idTag": f"T{i:05d}", "idTagInfo": {"status": "Accepted"}} for i in range(count)]
        return {"listVersion": list_version, "updateType": "Full", "localAuthorizationList": items}
    items = [
        {
            "idToken": {"idToken": f"T{i:05d}", "type": "ISO14443"},
            "idTokenInfo": {"status": "Accepted"},
        }
        for i in range(count)
    ]
    return {"versionNumber": list_version, "updateType": "Full", "localAuthorizationList": items}


def set_charging_profile(version: str, profile_id: int, stack_level: int) -> dict[str, Any]:
    """A TxDefaultProfile for the whole station, 10 A from now."""
    start = wire_time(datetime.now(UTC))
    periods = [{"startPeriod": 0, "limit": 10.0}]
    if version == "1.6":
        schedule = {
            "chargingRateUnit": "A",
            "startSchedule": start,
            "chargingSchedulePeriod": periods,
        }
        body = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": schedule,
        }
        return {"connectorId": 0, "csChargingProfiles": body}
    wire: dict[str, Any] = {"id": 10 * profile_id, "chargingRateUnit": "A", "startSchedule": start}
    wire["chargingSchedulePeriod"] = periods
    profile = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [wire],
    }
    return {"evseId": 0, "chargingProfile": profile}


FAILED = {
    "1.6": {"status": "Failed"},
    "2.0.1": {"status": "Failed", "statusInfo": {"reasonCode": "OutOfStorage"}},
}
LIST_VERSION = {"1.6": "listVersion", "2.0.1": "versionNumber"}
SUBPROTOCOLS = {"1.6": ("ocpp1.6",), "2.0.1": ("ocpp2.0.1",)}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_D01_K01_a_full_disk_answers_failed_and_rejected_then_accepted(  # noqa: N802
    version: str, tmp_path: Path
) -> None:
    small_pages(tmp_path / "agent.db")
    async with Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS[version]) as csms:
        running = RunningStation(make_config_201(csms.url, tmp_path, ocpp_version=version))
        await running.start()
        try:
            await csms.wait_for("StatusNotification")
            first = await csms.call(
                CP_ID, "SetChargingProfile", set_charging_profile(version, 2, 1)
            )
            assert first == {"status": "Accepted"}  # it fills the profiles' only page
            store = running.agent.store
            fill_disk(store)

            answer = await csms.call(CP_ID, "SendLocalList", send_local_list(version, 3, 250))
            assert answer == FAILED[version]
            listed = await csms.call(CP_ID, "GetLocalListVersion", {})
            assert listed == {LIST_VERSION[version]: 0}

            answer = await csms.call(
                CP_ID, "SetChargingProfile", set_charging_profile(version, 1, 0)
            )
            assert answer["status"] == "Rejected"
            if version == "2.0.1":
                assert answer["statusInfo"]["reasonCode"] == "OutOfStorage"
            assert running.agent.profiles.get(1) is None

            fill_disk(store, full=False)
            answer = await csms.call(CP_ID, "SendLocalList", send_local_list(version, 3, 250))
            assert answer == {"status": "Accepted"}
            listed = await csms.call(CP_ID, "GetLocalListVersion", {})
            assert listed == {LIST_VERSION[version]: 3}
            answer = await csms.call(
                CP_ID, "SetChargingProfile", set_charging_profile(version, 1, 0)
            )
            assert answer == {"status": "Accepted"}
            assert running.agent.profiles.get(1) is not None
        finally:
            await running.stop()
