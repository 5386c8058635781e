"""The authorization chain: local list, cache, CSMS and the offline rules (OCPP 1.6
section 3.5; OCPP 2.0.1 C.01-C.17), one case per policy combination."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.auth import AuthorizationChain, AuthPolicy, Unreachable
from agent.core.events import AuthResult, AuthStatus, IdToken
from tests.fakes import FakeClock

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ACCEPTED = AuthResult(AuthStatus.ACCEPTED)


@dataclass(frozen=True)
class Entry:
    id_token: str
    status: str
    expires_at: datetime | None = None
    group_id: str | None = None


@dataclass
class Records:
    entries: dict[str, Entry] = field(default_factory=dict)

    def get(self, id_token: str) -> Entry | None:
        return self.entries.get(id_token)


@dataclass
class Cache(Records):
    def touch(self, id_token: str) -> bool:
        return id_token in self.entries

    def record(self, id_token: str, result: AuthResult) -> None:
        self.entries[id_token] = Entry(
            id_token, result.status.value, result.expires_at, result.group_id
        )

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class Csms:
    online: bool = True
    reachable: bool = True
    answer: AuthResult = ACCEPTED
    asked: list[str] = field(default_factory=list)

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        self.asked.append(token.value)
        if not self.reachable:
            raise Unreachable("timeout")
        return self.answer


def chain(
    csms: Csms,
    *,
    listed: dict[str, Entry] | None = None,
    cached: dict[str, Entry] | None = None,
    **policy: bool,
) -> tuple[AuthorizationChain, Cache]:
    cache = Cache(dict(cached or {}))
    return (
        AuthorizationChain(
            remote=csms,
            clock=FakeClock(NOW),
            local_list=Records(dict(listed or {})),
            cache=cache,
            policy=AuthPolicy(local_list_enabled=True, **policy),
        ),
        cache,
    )


async def test_online_asks_the_csms_and_caches_its_answer() -> None:
    csms = Csms(answer=AuthResult(AuthStatus.BLOCKED, group_id="FLEET"))
    authorizer, cache = chain(csms)
    result = await authorizer.authorize(IdToken("CARD"))
    assert result.status == AuthStatus.BLOCKED
    assert csms.asked == ["CARD"]
    assert cache.entries["CARD"].status == "blocked" and cache.entries["CARD"].group_id == "FLEET"


async def test_local_pre_authorize_skips_the_csms_for_a_listed_accepted_token() -> None:
    csms = Csms()
    authorizer, _ = chain(
        csms, listed={"CARD": Entry("CARD", "accepted")}, local_pre_authorize=True
    )
    assert (await authorizer.authorize(IdToken("CARD"))).accepted
    assert csms.asked == []


async def test_without_pre_authorize_a_listed_token_is_still_checked_online() -> None:
    csms = Csms(answer=AuthResult(AuthStatus.BLOCKED))
    authorizer, _ = chain(csms, listed={"CARD": Entry("CARD", "accepted")})
    assert (await authorizer.authorize(IdToken("CARD"))).status == AuthStatus.BLOCKED


async def test_local_list_wins_over_the_cache() -> None:
    authorizer, _ = chain(
        Csms(online=False),
        listed={"CARD": Entry("CARD", "blocked")},
        cached={"CARD": Entry("CARD", "accepted")},
    )
    assert (await authorizer.authorize(IdToken("CARD"))).status == AuthStatus.BLOCKED


async def test_an_expired_entry_is_expired() -> None:
    past = NOW - timedelta(seconds=1)
    authorizer, _ = chain(Csms(online=False), cached={"CARD": Entry("CARD", "accepted", past)})
    assert (await authorizer.authorize(IdToken("CARD"))).status == AuthStatus.EXPIRED


async def test_unreachable_csms_falls_back_to_the_offline_rules() -> None:
    csms = Csms(reachable=False)
    authorizer, _ = chain(csms, cached={"CARD": Entry("CARD", "accepted")})
    assert (await authorizer.authorize(IdToken("CARD"))).accepted
    assert csms.asked == ["CARD"]


# One case per offline policy combination: LocalAuthorizeOffline x AllowOfflineTxForUnknownId
# x (token listed accepted / cached accepted / cached blocked / unknown).
KNOWN = {
    "listed accepted": ({"T": Entry("T", "accepted")}, {}),
    "cached accepted": ({}, {"T": Entry("T", "accepted")}),
    "cached blocked": ({}, {"T": Entry("T", "blocked")}),
    "unknown": ({}, {}),
}


def expected_offline(known: str, local_authorize_offline: bool, allow_unknown: bool) -> AuthStatus:
    if known == "unknown":
        return AuthStatus.ACCEPTED if allow_unknown else AuthStatus.INVALID
    if not local_authorize_offline:
        return AuthStatus.INVALID
    return AuthStatus.BLOCKED if known == "cached blocked" else AuthStatus.ACCEPTED


@pytest.mark.parametrize(
    ("known", "local_authorize_offline", "allow_unknown"),
    list(itertools.product(KNOWN, (True, False), (True, False))),
)
async def test_offline_policy_combination(
    known: str, local_authorize_offline: bool, allow_unknown: bool
) -> None:
    listed, cached = KNOWN[known]
    csms = Csms(online=False)
    authorizer, _ = chain(
        csms,
        listed=listed,
        cached=cached,
        local_authorize_offline=local_authorize_offline,
        allow_offline_tx_for_unknown_id=allow_unknown,
    )
    result = await authorizer.authorize(IdToken("T"))
    assert result.status == expected_offline(known, local_authorize_offline, allow_unknown)
    assert csms.asked == []


async def test_disabled_cache_is_neither_read_nor_written() -> None:
    csms = Csms(online=False)
    authorizer, cache = chain(csms, cached={"T": Entry("T", "accepted")}, cache_enabled=False)
    assert (await authorizer.authorize(IdToken("T"))).status == AuthStatus.INVALID
    authorizer.remember("U", ACCEPTED)
    assert "U" not in cache.entries


async def test_disabled_local_list_is_not_read() -> None:
    authorizer, _ = chain(Csms(online=False), listed={"T": Entry("T", "accepted")})
    authorizer.policy.local_list_enabled = False
    assert (await authorizer.authorize(IdToken("T"))).status == AuthStatus.INVALID
