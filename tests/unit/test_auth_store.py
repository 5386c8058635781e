"""Local authorization list and authorization cache on a real SQLite store file (and,
where a test takes the `store` fixture, on fleet mode's MemoryStore too).

The list's update rules follow OCPP 1.6 SendLocalList / GetLocalListVersion and 2.0.1
D01/D02 (the adapters map the exceptions to wire statuses); the cache follows 1.6
section 3.5.1 and 2.0.1 C10 (AuthCacheCtrlr.LifeTime, AuthCacheCtrlr.Policy). Applies are
interleaved with the test on the event loop by yielding to it (`asyncio.sleep(0)`), never
by waiting on wall time; the cache's time is a FakeClock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.core.events import AuthStatus
from agent.store import MemoryStore, Store
from agent.store.auth import (
    AuthCache,
    AuthEntry,
    CachePolicy,
    InvalidList,
    ListRemoval,
    ListTooLong,
    LocalAuthList,
    VersionMismatch,
    as_of,
)
from tests.fakes import FakeClock

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ACCEPTED = AuthStatus.ACCEPTED
BIG = 1_000_000  # a max_length that does not constrain


def accepted(
    token: str, *, expires_at: datetime | None = None, group_id: str | None = None
) -> AuthEntry:
    return AuthEntry(token, ACCEPTED, expires_at, group_id)


def tokens(prefix: str, count: int) -> list[AuthEntry]:
    return [accepted(f"{prefix}{i:05d}") for i in range(count)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture(params=["sqlite", "python"])
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Store]:
    """A store file, and fleet mode's MemoryStore (its list in a SQLite database it opens
    for the first update; its cache in memory only)."""
    opened = Store(db_path) if request.param == "sqlite" else MemoryStore()
    with opened as s:
        yield s  # type: ignore[misc]  # both satisfy the TableHost the stores take


@pytest.fixture
def local_list(store: Store) -> LocalAuthList:
    return LocalAuthList(store)


# -- local list: reads and full updates ------------------------------------------------------


def test_a_new_list_is_empty_at_version_zero(local_list: LocalAuthList) -> None:
    assert (local_list.version(), local_list.size(), local_list.get("ANY")) == (0, 0, None)


async def test_full_update_replaces_the_whole_list_and_sets_its_version(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(3, [accepted("OLD")], max_length=10)
    expiry = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await local_list.replace(
        7,
        [
            accepted("A", expires_at=expiry, group_id="FLEET"),
            AuthEntry("B", AuthStatus.BLOCKED),
        ],
        max_length=10,
    )
    assert local_list.version() == 7
    assert local_list.size() == 2
    assert local_list.get("OLD") is None
    assert local_list.get("A") == AuthEntry("A", ACCEPTED, expiry, "FLEET")
    assert local_list.get("B") == AuthEntry("B", AuthStatus.BLOCKED)


async def test_full_update_keeps_expiry_in_any_timezone_as_the_same_instant(
    local_list: LocalAuthList,
) -> None:
    cet = datetime(2026, 1, 2, 10, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    await local_list.replace(1, [accepted("A", expires_at=cet)], max_length=10)
    entry = local_list.get("A")
    assert entry is not None and entry.expires_at == datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    assert entry.expires_at.tzinfo == UTC


async def test_full_update_with_an_empty_list_empties_it_and_reads_version_zero(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(4, tokens("T", 3), max_length=10)
    await local_list.replace(5, [], max_length=10)
    # 1.6 5.10 / 2.0.1 D02: version 0 means "the list is empty".
    assert (local_list.version(), local_list.size(), local_list.get("T00000")) == (0, 0, None)


async def test_full_update_longer_than_max_length_is_refused_and_keeps_the_old_list(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, [accepted("KEEP")], max_length=3)
    with pytest.raises(ListTooLong):
        await local_list.replace(2, tokens("T", 4), max_length=3)
    assert (local_list.version(), local_list.size()) == (1, 1)
    assert local_list.get("KEEP") is not None
    await local_list.replace(2, tokens("T", 3), max_length=3)  # exactly the limit is fine
    assert local_list.size() == 3


async def test_an_update_naming_a_token_twice_is_refused(local_list: LocalAuthList) -> None:
    await local_list.replace(1, [accepted("KEEP")], max_length=10)
    with pytest.raises(InvalidList):
        await local_list.replace(2, [accepted("A"), accepted("A")], max_length=10)
    with pytest.raises(InvalidList):
        await local_list.update(2, [accepted("A"), ListRemoval("A")], max_length=10)
    assert (local_list.version(), local_list.get("KEEP")) == (1, accepted("KEEP"))


async def test_negative_version_or_max_length_is_refused(local_list: LocalAuthList) -> None:
    with pytest.raises(InvalidList):
        await local_list.replace(-1, [accepted("A")], max_length=10)
    with pytest.raises(InvalidList):
        await local_list.replace(1, [accepted("A")], max_length=-1)
    with pytest.raises(InvalidList):
        await local_list.update(1, [accepted("A")], max_length=-1)
    assert local_list.size() == 0


def test_an_entry_with_a_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        AuthEntry("A", ACCEPTED, expires_at=datetime(2026, 1, 1))


def test_chunk_rows_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        LocalAuthList(store, chunk_rows=0)


# -- local list: differential updates ---------------------------------------------------------


async def test_differential_update_adds_replaces_and_removes_entries(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, [accepted("A"), accepted("B"), accepted("C")], max_length=10)
    await local_list.update(
        2,
        [AuthEntry("B", AuthStatus.BLOCKED), ListRemoval("C"), accepted("D", group_id="G")],
        max_length=10,
    )
    assert local_list.version() == 2
    assert local_list.size() == 3
    assert local_list.get("A") == accepted("A")
    assert local_list.get("B") == AuthEntry("B", AuthStatus.BLOCKED)
    assert local_list.get("C") is None
    assert local_list.get("D") == accepted("D", group_id="G")


@pytest.mark.parametrize("version", [4, 3, 0])
async def test_differential_update_not_above_the_current_version_is_a_version_mismatch(
    local_list: LocalAuthList, version: int
) -> None:
    await local_list.replace(4, [accepted("A")], max_length=10)
    with pytest.raises(VersionMismatch):
        await local_list.update(version, [accepted("B")], max_length=10)
    assert (local_list.version(), local_list.get("B")) == (4, None)


async def test_differential_update_may_start_an_empty_list(local_list: LocalAuthList) -> None:
    await local_list.update(1, [accepted("A")], max_length=10)
    assert (local_list.version(), local_list.size()) == (1, 1)


async def test_differential_update_is_refused_when_the_result_exceeds_max_length(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, [accepted("A"), accepted("B")], max_length=2)
    with pytest.raises(ListTooLong):
        await local_list.update(2, [accepted("C")], max_length=2)
    assert (local_list.version(), local_list.get("C")) == (1, None)
    # Replacing a known token does not grow the list; a removal makes room.
    await local_list.update(2, [AuthEntry("A", AuthStatus.BLOCKED)], max_length=2)
    await local_list.update(3, [ListRemoval("B"), accepted("C")], max_length=2)
    assert local_list.size() == 2
    assert (local_list.get("B"), local_list.get("C")) == (None, accepted("C"))


async def test_removing_an_unknown_token_is_ignored(local_list: LocalAuthList) -> None:
    await local_list.replace(1, [accepted("A")], max_length=1)
    await local_list.update(2, [ListRemoval("NOT-THERE")], max_length=1)
    assert (local_list.version(), local_list.size()) == (2, 1)


async def test_differential_update_without_changes_moves_only_the_version(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, [accepted("A")], max_length=1)
    await local_list.update(2, [], max_length=1)
    assert (local_list.version(), local_list.get("A")) == (2, accepted("A"))


async def test_differential_update_removing_every_entry_reads_version_zero(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, [accepted("A")], max_length=1)
    await local_list.update(2, [ListRemoval("A")], max_length=1)
    assert (local_list.version(), local_list.size()) == (0, 0)


async def test_a_sequence_of_updates_matches_a_dictionary_model(store: Store) -> None:
    local_list = LocalAuthList(store, chunk_rows=7)  # many chunk boundaries
    rng = random.Random(20250301)
    model: dict[str, AuthEntry] = {}
    statuses = list(AuthStatus)
    version = 0
    for _ in range(25):
        version += 1
        if rng.random() < 0.2:
            picked = rng.sample(range(60), rng.randrange(0, 40))
            full = [AuthEntry(f"T{i}", rng.choice(statuses)) for i in picked]
            await local_list.replace(version, full, max_length=BIG)
            model = {entry.id_token: entry for entry in full}
        else:
            changes: list[AuthEntry | ListRemoval] = []
            for i in rng.sample(range(60), rng.randrange(1, 20)):
                if rng.random() < 0.4:
                    changes.append(ListRemoval(f"T{i}"))
                    model.pop(f"T{i}", None)
                else:
                    entry = AuthEntry(f"T{i}", rng.choice(statuses), group_id=f"G{version}")
                    changes.append(entry)
                    model[entry.id_token] = entry
            await local_list.update(version, changes, max_length=BIG)
        assert local_list.size() == len(model)
        assert local_list.version() == (version if model else 0)
        assert {f"T{i}": local_list.get(f"T{i}") for i in range(60)} == {
            f"T{i}": model.get(f"T{i}") for i in range(60)
        }
        version = local_list.version()


async def test_concurrent_updates_apply_one_after_the_other(store: Store) -> None:
    local_list = LocalAuthList(store, chunk_rows=50)
    first = asyncio.create_task(local_list.replace(1, tokens("A", 500), max_length=BIG))
    second = asyncio.create_task(local_list.update(2, tokens("B", 500), max_length=BIG))
    await asyncio.gather(first, second)
    assert (local_list.version(), local_list.size()) == (2, 1000)
    assert local_list.get("A00499") is not None and local_list.get("B00499") is not None


# -- local list: size, interleaving, crash, persistence ----------------------------------------


async def test_a_ten_thousand_entry_full_update_is_applied_whole(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, tokens("OLD", 10_000), max_length=10_000)
    await local_list.replace(2, tokens("T", 10_000), max_length=10_000)
    assert (local_list.version(), local_list.size()) == (2, 10_000)
    assert local_list.get("T00000") == accepted("T00000")
    assert local_list.get("T09999") == accepted("T09999")
    assert local_list.get("OLD00000") is None
    assert await local_list.purge_stale() == 0  # the old list's rows are already gone


async def test_a_thousand_entry_differential_update_on_ten_thousand_entries(
    local_list: LocalAuthList,
) -> None:
    await local_list.replace(1, tokens("T", 10_000), max_length=11_000)
    changes: list[AuthEntry | ListRemoval] = [ListRemoval(f"T{i:05d}") for i in range(500)]
    changes += [AuthEntry(f"N{i:05d}", AuthStatus.BLOCKED) for i in range(500)]
    await local_list.update(2, changes, max_length=11_000)
    assert (local_list.version(), local_list.size()) == (2, 10_000)
    assert local_list.get("T00499") is None
    assert local_list.get("T00500") == accepted("T00500")
    assert local_list.get("N00499") == AuthEntry("N00499", AuthStatus.BLOCKED)
    assert await local_list.purge_stale() == 0


@pytest.mark.parametrize("differential", [False, True])
async def test_readers_see_the_old_list_whole_until_the_switch(
    store: Store, differential: bool
) -> None:
    local_list = LocalAuthList(store, chunk_rows=100)
    await local_list.replace(1, tokens("OLD", 2000), max_length=BIG)
    if differential:
        changes: list[AuthEntry | ListRemoval] = [ListRemoval(f"OLD{i:05d}") for i in range(2000)]
        changes += tokens("NEW", 2000)
        apply = local_list.update(2, changes, max_length=BIG)
    else:
        apply = local_list.replace(2, tokens("NEW", 2000), max_length=BIG)
    task = asyncio.create_task(apply)
    seen: list[str] = []
    while not task.done():
        old = (local_list.version(), local_list.get("OLD00000"), local_list.get("OLD01999"))
        new = (local_list.version(), local_list.get("NEW00000"), local_list.get("NEW01999"))
        if old == (1, accepted("OLD00000"), accepted("OLD01999")):
            assert local_list.get("NEW00000") is None and local_list.size() == 2000
            seen.append("old")
        else:
            assert new == (2, accepted("NEW00000"), accepted("NEW01999"))
            assert local_list.get("OLD00000") is None and local_list.size() == 2000
            seen.append("new")
        await asyncio.sleep(0)  # let the apply run one chunk
    await task
    # The apply yielded at least once per 100-row chunk, and the list switched only once.
    assert seen.count("old") >= 20
    assert "new" not in seen or seen.index("new") == seen.count("old")
    assert (local_list.version(), local_list.get("NEW01999")) == (2, accepted("NEW01999"))


async def staged_rows(store: Store) -> int:
    """Yield to the loop until some rows of a generation above the active one are in the
    file (the apply is staging, on the store's writer thread); return how many."""
    async with asyncio.timeout(10):
        while True:
            (count,) = store.connection.execute(
                "SELECT COUNT(*) FROM auth_list"
                " WHERE gen > (SELECT active_gen FROM auth_list_meta WHERE id = 1)"
            ).fetchone()
            if count:
                return int(count)
            await asyncio.sleep(0)  # one loop turn: the apply stages a chunk per few turns


# The cut comes while the new list is being staged (a differential update: while the
# active list is copied into the staged generation, before the changes are applied).
@pytest.mark.parametrize("differential", [False, True])
async def test_an_apply_cut_short_leaves_the_old_list_and_the_next_start_cleans_up(
    db_path: Path, differential: bool
) -> None:
    with Store(db_path) as store:
        local_list = LocalAuthList(store, chunk_rows=100)
        await local_list.replace(1, tokens("OLD", 1000), max_length=BIG)
        if differential:
            apply = local_list.update(2, tokens("NEW", 2000), max_length=BIG)
        else:
            apply = local_list.replace(2, tokens("NEW", 2000), max_length=BIG)
        task = asyncio.create_task(apply)
        assert await staged_rows(store) < 2000
        assert not task.done()
        task.cancel()  # stands for a crash: nothing after this point runs
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (local_list.version(), local_list.size()) == (1, 1000)
        assert local_list.get("NEW00000") is None
    with Store(db_path) as store:  # the next start
        local_list = LocalAuthList(store)
        assert (local_list.version(), local_list.get("OLD00999")) == (1, accepted("OLD00999"))
        assert await local_list.purge_stale() > 0  # the staged rows were there
        assert await local_list.purge_stale() == 0
        await local_list.update(2, tokens("NEW", 10), max_length=BIG)
        assert (local_list.version(), local_list.size()) == (2, 1010)


async def test_the_next_apply_cleans_up_after_one_cut_short(store: Store) -> None:
    local_list = LocalAuthList(store, chunk_rows=100)
    await local_list.replace(1, tokens("OLD", 100), max_length=BIG)
    task = asyncio.create_task(local_list.replace(2, tokens("NEW", 1000), max_length=BIG))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await local_list.replace(2, tokens("NEW", 1000), max_length=BIG)
    assert (local_list.version(), local_list.size()) == (2, 1000)
    assert await local_list.purge_stale() == 0


async def test_the_list_survives_a_restart(db_path: Path) -> None:
    expiry = datetime(2027, 6, 1, tzinfo=UTC)
    with Store(db_path) as store:
        local_list = LocalAuthList(store)
        await local_list.replace(9, [accepted("A", expires_at=expiry, group_id="G")], max_length=5)
        await local_list.update(10, [AuthEntry("B", AuthStatus.EXPIRED)], max_length=5)
    with Store(db_path) as store:
        local_list = LocalAuthList(store)
        assert (local_list.version(), local_list.size()) == (10, 2)
        assert local_list.get("A") == accepted("A", expires_at=expiry, group_id="G")
        assert local_list.get("B") == AuthEntry("B", AuthStatus.EXPIRED)


async def test_a_status_this_agent_does_not_know_reads_as_invalid(
    store: Store, local_list: LocalAuthList
) -> None:
    await local_list.replace(1, [accepted("A")], max_length=5)
    store.connection.execute("UPDATE auth_list SET status = 'from_the_future'")
    assert local_list.get("A") == AuthEntry("A", AuthStatus.INVALID)


# -- as_of -------------------------------------------------------------------------------------


def test_an_accepted_entry_past_its_expiry_is_considered_expired() -> None:
    entry = accepted("A", expires_at=T0)
    assert as_of(entry, T0 - timedelta(seconds=1)).status == ACCEPTED
    assert as_of(entry, T0).status == AuthStatus.EXPIRED
    blocked = AuthEntry("B", AuthStatus.BLOCKED, expires_at=T0)
    assert as_of(blocked, T0 + timedelta(days=1)).status == AuthStatus.BLOCKED


# -- authorization cache -----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def make_cache(store: Store, clock: FakeClock, **kwargs: object) -> AuthCache:
    return AuthCache(store, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_cache_returns_the_last_answer_put_for_a_token(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock)
    assert cache.get("A") is None
    cache.put(accepted("A", group_id="G"))
    assert cache.get("A") == accepted("A", group_id="G")
    cache.put(AuthEntry("A", AuthStatus.BLOCKED))  # a later answer replaces the earlier
    assert cache.get("A") == AuthEntry("A", AuthStatus.BLOCKED)
    assert cache.size() == 1


def test_cached_entry_past_its_expiry_reads_expired(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock)
    cache.put(accepted("A", expires_at=T0 + timedelta(hours=1)))
    assert cache.get("A") == accepted("A", expires_at=T0 + timedelta(hours=1))
    clock.advance(3600)
    assert cache.get("A") == AuthEntry("A", AuthStatus.EXPIRED, T0 + timedelta(hours=1))


def test_an_entry_unused_for_longer_than_the_lifetime_is_gone(
    store: Store, clock: FakeClock
) -> None:
    cache = make_cache(store, clock, lifetime_s=600)
    cache.put(accepted("A"))
    cache.put(accepted("B"))
    clock.advance(500)
    assert cache.touch("A")  # a use restarts A's lifetime (2.0.1 C10.FR.08)
    clock.advance(200)
    assert cache.get("A") == accepted("A")
    assert cache.get("B") is None
    cache.put(accepted("C"))  # a write drops what outlived its lifetime
    assert cache.size() == 2
    clock.advance(601)
    assert cache.get("A") is None


def test_touch_of_an_unknown_token_reports_false(store: Store, clock: FakeClock) -> None:
    assert make_cache(store, clock).touch("NOBODY") is False


def test_clear_empties_the_cache(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock)
    cache.put(accepted("A"))
    cache.put(accepted("B"))
    cache.clear()
    assert (cache.size(), cache.get("A"), cache.get("B")) == (0, None, None)


def fill(cache: AuthCache, clock: FakeClock, *names: str) -> None:
    for name in names:
        cache.put(accepted(name))
        clock.advance(1)


def cached(cache: AuthCache, *names: str) -> set[str]:
    return {name for name in names if cache.get(name) is not None}


def test_lru_evicts_the_least_recently_used(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock, max_entries=3, policy=CachePolicy.LRU)
    fill(cache, clock, "A", "B", "C")
    cache.touch("A")
    cache.put(accepted("D"))
    assert cached(cache, "A", "B", "C", "D") == {"A", "C", "D"}


def test_lfu_evicts_the_least_frequently_used_but_never_the_new_entry(
    store: Store, clock: FakeClock
) -> None:
    cache = make_cache(store, clock, max_entries=3, policy=CachePolicy.LFU)
    fill(cache, clock, "A", "B", "C")
    cache.touch("A")
    cache.touch("A")
    cache.touch("C")
    cache.touch("B")  # B and C: two uses, both more recent than A's three
    cache.put(accepted("D"))  # one use, but just answered: it stays
    # LRU would drop A; LFU drops the least used, the least recent of a tie: C.
    assert cached(cache, "A", "B", "C", "D") == {"A", "B", "D"}


def test_fifo_evicts_the_first_stored_whatever_its_use(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock, max_entries=3, policy=CachePolicy.FIFO)
    fill(cache, clock, "A", "B", "C")
    cache.touch("A")
    cache.put(accepted("A"))  # a new answer for A does not make it new in the queue
    cache.put(accepted("D"))
    assert cached(cache, "A", "B", "C", "D") == {"B", "C", "D"}


@pytest.mark.parametrize("policy", list(CachePolicy))
def test_entries_that_would_not_authorize_are_evicted_first(
    store: Store, clock: FakeClock, policy: CachePolicy
) -> None:
    cache = make_cache(store, clock, max_entries=3, policy=policy)
    cache.put(accepted("OLD"))
    cache.put(AuthEntry("BLOCKED", AuthStatus.BLOCKED))
    cache.put(accepted("LAPSED", expires_at=T0 + timedelta(seconds=5)))
    clock.advance(10)
    cache.touch("BLOCKED")
    cache.put(accepted("NEW1"))
    cache.put(accepted("NEW2"))
    assert cached(cache, "OLD", "BLOCKED", "LAPSED", "NEW1", "NEW2") == {"OLD", "NEW1", "NEW2"}


def test_a_smaller_limit_applies_at_the_next_put(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock, max_entries=5)
    fill(cache, clock, "A", "B", "C", "D")
    cache.configure(max_entries=2)
    cache.put(accepted("E"))
    assert cached(cache, "A", "B", "C", "D", "E") == {"D", "E"}


def test_configure_rejects_limits_that_make_no_sense(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock)
    with pytest.raises(ValueError, match="max_entries"):
        cache.configure(max_entries=0)
    with pytest.raises(ValueError, match="lifetime_s"):
        cache.configure(lifetime_s=0)
    with pytest.raises(ValueError, match="max_entries"):
        make_cache(store, clock, max_entries=-1)


def test_lifetime_can_be_removed(store: Store, clock: FakeClock) -> None:
    cache = make_cache(store, clock, lifetime_s=10)
    cache.put(accepted("A"))
    clock.advance(11)
    assert cache.get("A") is None
    cache.configure(clear_lifetime=True)
    assert cache.get("A") == accepted("A")


def test_the_cache_survives_a_restart_with_its_use_order(db_path: Path, clock: FakeClock) -> None:
    with Store(db_path) as store:
        cache = make_cache(store, clock, max_entries=2)
        fill(cache, clock, "A", "B")
        cache.touch("A")
    with Store(db_path) as store:
        cache = make_cache(store, clock, max_entries=2)
        assert cached(cache, "A", "B") == {"A", "B"}
        cache.put(accepted("C"))
        assert cached(cache, "A", "B", "C") == {"A", "C"}


async def test_list_and_cache_share_a_store_without_touching_each_other(
    store: Store, clock: FakeClock, local_list: LocalAuthList
) -> None:
    cache = make_cache(store, clock)
    cache.put(accepted("CACHED"))
    await local_list.replace(1, [accepted("LISTED")], max_length=5)
    cache.clear()
    assert (local_list.get("LISTED"), local_list.get("CACHED")) == (accepted("LISTED"), None)
    await local_list.replace(2, [], max_length=5)
    cache.put(accepted("AGAIN"))
    assert (cache.get("AGAIN"), cache.get("LISTED")) == (accepted("AGAIN"), None)
