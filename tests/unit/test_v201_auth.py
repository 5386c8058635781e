"""OCPP 2.0.1 authorization (blocks C and D): Authorize, the cache, the local list and
the Auth* variables, over the real store and device model.

The CSMS side is `SchemaCsms`: a small stand-in for an RpcEndpoint whose `call` checks
every request against the official 2.0.1 schema and answers with a schema-valid
response. Every answer the station gives is checked against its schema too.
"""

# Test names carry the OCPP 2.0.1 requirement ids as the spec writes them (C10_FR_08).
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.events import AuthStatus, IdToken
from agent.ocpp.dialects import OCPP201
from agent.ocpp.rpc import CallTimeout, ConnectionLost, RpcError
from agent.ocpp.v201.auth import ENTRY_BYTES, Ocpp201Authorization, token_key
from agent.ocpp.v201.device_model import DeviceModel, SetStatus, parse_path, set_variables
from agent.ocpp.v201.variables import VariableDef, station_variables
from agent.store import Store
from agent.store.auth import AuthCache, LocalAuthList
from drivers.types import TokenType
from tests.fakes import FakeClock

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CARD = IdToken("04A2B3C4D5", TokenType.ISO14443)
OTHER = IdToken("DEADBEEF", TokenType.ISO14443)
ACCEPTED = {"status": "Accepted"}


def wire_token(token: IdToken) -> dict[str, str]:
    """A core token as a 2.0.1 IdTokenType."""
    return {"idToken": token.value, "type": str(token.type)}


def validate(action: str, payload: dict[str, Any], *, response: bool) -> None:
    """Raise if `payload` violates the official 2.0.1 schema."""
    OCPP201.validator(action, response=response)(payload)


@dataclass
class SchemaCsms:
    """The CSMS end of `call`: validates the request, answers Authorize from `answers`."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # idToken -> info
    failure: Exception | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: bool = False

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        validate(action, payload, response=False)
        self.requests.append((action, payload))
        if self.failure is not None:
            raise self.failure
        if action != "Authorize":
            raise RpcError("NotImplemented", action)
        info = self.answers.get(payload["idToken"]["idToken"], {"status": "Unknown"})
        response = {"idTokenInfo": info}
        validate(action, response, response=True)
        return response

    def asked(self) -> list[str]:
        """The idTokens sent in Authorize, in order."""
        return [p["idToken"]["idToken"] for action, p in self.requests if action == "Authorize"]


@dataclass
class Station:
    """One station's authorization: model, stores, the component and its CSMS."""

    clock: FakeClock
    model: DeviceModel
    local_list: LocalAuthList
    cache: AuthCache
    csms: SchemaCsms
    auth: Ocpp201Authorization
    connected: list[bool]

    def go_offline(self) -> None:
        self.connected[0] = False

    def set(self, path: str, value: str) -> str:
        """A SetVariables from the CSMS (the wire path); returns the attributeStatus."""
        component, variable, _ = parse_path(path)
        component_wire: dict[str, Any] = {"name": component.name}
        request = {
            "setVariableData": [
                {
                    "attributeValue": value,
                    "component": component_wire,
                    "variable": {"name": variable.name},
                }
            ]
        }
        validate("SetVariables", request, response=False)
        response = set_variables(self.model, request)
        validate("SetVariables", response, response=True)
        return str(response["setVariableResult"][0]["attributeStatus"])

    async def handle(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CSMS-initiated CALL through the component's handlers, both ends validated."""
        validate(action, payload, response=False)
        response = await self.auth.handlers()[action](payload)
        if not isinstance(response, dict):
            raise AssertionError(f"{action} answered {response!r}")
        validate(action, response, response=True)
        return response

    async def send_list(
        self, version: int, update: str, items: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"versionNumber": version, "updateType": update}
        if items:
            payload["localAuthorizationList"] = items
        return await self.handle("SendLocalList", payload)

    async def list_version(self) -> int:
        return int((await self.handle("GetLocalListVersion", {}))["versionNumber"])


def with_limit(definitions: list[VariableDef], path: str, max_limit: int) -> list[VariableDef]:
    """The catalogue with `path`'s maxLimit changed (a smaller station)."""
    component, variable, _ = parse_path(path)
    return [
        replace(d, max_limit=max_limit)
        if (d.component.name, d.variable.name) == (component.name, variable.name)
        else d
        for d in definitions
    ]


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as opened:
        yield opened


def build(store: Store, definitions: list[VariableDef] | None = None) -> Station:
    clock = FakeClock(NOW)
    catalogue = definitions or station_variables([(1, [(1, "cType2")])])
    model = DeviceModel(store, catalogue, clock=clock)
    local_list = LocalAuthList(store)
    cache = AuthCache(store, clock=clock)
    csms = SchemaCsms()
    connected = [True]
    auth = Ocpp201Authorization(
        model=model,
        clock=clock,
        local_list=local_list,
        cache=cache,
        endpoint=lambda: csms if connected[0] else None,  # type: ignore[arg-type,return-value]
        online=lambda: connected[0],
    )
    return Station(clock, model, local_list, cache, csms, auth, connected)


@pytest.fixture
def station(store: Store) -> Station:
    return build(store)


def entry(token: IdToken, status: str = "Accepted", **info: Any) -> dict[str, Any]:
    """An AuthorizationData with idTokenInfo."""
    return {"idToken": wire_token(token), "idTokenInfo": {"status": status, **info}}


# -- C01/C02 Authorize ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire_status", "verdict"),
    [
        ("Accepted", AuthStatus.ACCEPTED),
        ("Blocked", AuthStatus.BLOCKED),
        ("ConcurrentTx", AuthStatus.CONCURRENT_TX),
        ("Expired", AuthStatus.EXPIRED),
        ("Invalid", AuthStatus.INVALID),
        ("NoCredit", AuthStatus.INVALID),
        ("NotAllowedTypeEVSE", AuthStatus.INVALID),
        ("NotAtThisLocation", AuthStatus.INVALID),
        ("NotAtThisTime", AuthStatus.INVALID),
        ("Unknown", AuthStatus.INVALID),
    ],
)
async def test_C01_authorize_maps_every_authorization_status(
    station: Station, wire_status: str, verdict: AuthStatus
) -> None:
    station.csms.answers[CARD.value] = {"status": wire_status}
    result = await station.auth.chain.authorize(CARD)
    assert result.status == verdict
    assert station.csms.requests == [("Authorize", {"idToken": wire_token(CARD)})]


async def test_C01_authorize_carries_the_group_and_the_cache_expiry(station: Station) -> None:
    station.csms.answers[CARD.value] = {
        "status": "Accepted",
        "groupIdToken": {"idToken": "FLEET-7", "type": "Central"},
        "cacheExpiryDateTime": "2025-01-02T00:00:00Z",
    }
    result = await station.auth.chain.authorize(CARD)
    assert result.accepted
    assert result.group_id == "FLEET-7"
    assert result.expires_at == datetime(2025, 1, 2, tzinfo=UTC)


async def test_C02_token_type_goes_to_the_csms(station: Station) -> None:
    key_code = IdToken("1234", TokenType.KEY_CODE)
    station.csms.answers["1234"] = ACCEPTED
    assert (await station.auth.chain.authorize(key_code)).accepted
    assert station.csms.requests[0][1]["idToken"] == {"idToken": "1234", "type": "KeyCode"}


async def test_a_token_longer_than_36_characters_is_invalid_without_asking(
    station: Station,
) -> None:
    result = await station.auth.chain.authorize(IdToken("x" * 37, TokenType.CENTRAL))
    assert result.status == AuthStatus.INVALID
    assert station.csms.requests == []


@pytest.mark.parametrize(
    "failure",
    [CallTimeout("no answer"), ConnectionLost("closed"), RpcError("InternalError")],
)
async def test_C15_unreachable_csms_falls_back_to_the_offline_rules(
    station: Station, failure: Exception
) -> None:
    station.csms.failure = failure
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID
    station.set("AuthCtrlr/OfflineTxForUnknownIdEnabled", "true")
    assert (await station.auth.chain.authorize(CARD)).accepted


# -- AuthCtrlr -----------------------------------------------------------------------------


async def test_auth_disabled_accepts_every_token_without_asking(station: Station) -> None:
    station.csms.answers[CARD.value] = {"status": "Blocked"}
    assert station.set("AuthCtrlr/Enabled", "false") == "Accepted"
    assert (await station.auth.chain.authorize(CARD)).accepted
    assert station.csms.requests == []


@pytest.mark.parametrize(("enabled", "verdict"), [("true", True), ("false", False)])
async def test_C15_offline_unknown_id_follows_offline_tx_for_unknown_id_enabled(
    station: Station, enabled: str, verdict: bool
) -> None:
    station.set("AuthCtrlr/OfflineTxForUnknownIdEnabled", enabled)
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted is verdict
    assert station.csms.requests == []


async def test_C14_disable_remote_authorization_decides_from_list_and_cache_only(
    station: Station,
) -> None:
    await station.send_list(1, "Full", [entry(CARD)])
    station.set("AuthCtrlr/DisableRemoteAuthorization", "true")
    assert (await station.auth.chain.authorize(CARD)).accepted
    assert (await station.auth.chain.authorize(OTHER)).status == AuthStatus.INVALID
    assert station.csms.requests == []


async def test_local_pre_authorize_accepts_a_listed_token_without_asking(
    station: Station,
) -> None:
    await station.send_list(1, "Full", [entry(CARD)])
    station.csms.answers[CARD.value] = ACCEPTED
    await station.auth.chain.authorize(CARD)
    assert station.csms.asked() == [CARD.value]  # LocalPreAuthorize false: still asked
    station.set("AuthCtrlr/LocalPreAuthorize", "true")
    assert (await station.auth.chain.authorize(CARD)).accepted
    assert station.csms.asked() == [CARD.value]


def test_authorize_remote_start_and_master_pass_group_follow_their_variables(
    station: Station,
) -> None:
    assert station.auth.authorize_remote_start is False
    assert station.auth.master_pass_group is None
    station.set("AuthCtrlr/AuthorizeRemoteStart", "true")
    station.set("AuthCtrlr/MasterPassGroupId", "MASTER")
    assert station.auth.authorize_remote_start is True
    assert station.auth.master_pass_group == "MASTER"


# -- C10/C11 the cache ---------------------------------------------------------------------


async def test_C10_an_authorize_answer_is_cached_and_used_offline(station: Station) -> None:
    station.csms.answers[CARD.value] = ACCEPTED
    await station.auth.chain.authorize(CARD)
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted
    assert station.csms.asked() == [CARD.value]


async def test_C10_a_transaction_event_answer_updates_the_cache(station: Station) -> None:
    station.csms.answers[CARD.value] = ACCEPTED
    await station.auth.chain.authorize(CARD)
    result = station.auth.remember(wire_token(CARD), {"status": "Blocked"})
    assert result.status == AuthStatus.BLOCKED
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.BLOCKED


async def test_C10_cache_expiry_date_time_is_honoured(station: Station) -> None:
    station.auth.remember(
        wire_token(CARD), {"status": "Accepted", "cacheExpiryDateTime": "2025-01-01T13:00:00Z"}
    )
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted
    station.clock.advance(2 * 3600)
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.EXPIRED


async def test_C10_FR_08_an_entry_unused_for_the_lifetime_is_gone(station: Station) -> None:
    assert station.set("AuthCacheCtrlr/LifeTime", "60") == "Accepted"
    station.auth.remember(wire_token(CARD), ACCEPTED)
    station.go_offline()
    station.clock.advance(30)
    assert (await station.auth.chain.authorize(CARD)).accepted  # a use: lifetime restarts
    station.clock.advance(59)
    assert (await station.auth.chain.authorize(CARD)).accepted
    station.clock.advance(61)
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID


async def test_C10_the_same_value_of_another_type_is_another_token(station: Station) -> None:
    station.auth.remember(wire_token(CARD), ACCEPTED)
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted
    same_value = IdToken(CARD.value, TokenType.ISO15693)
    assert (await station.auth.chain.authorize(same_value)).status == AuthStatus.INVALID


async def test_C10_disabled_cache_is_not_written(station: Station) -> None:
    station.set("AuthCacheCtrlr/Enabled", "false")
    station.auth.remember(wire_token(CARD), ACCEPTED)
    assert station.cache.size() == 0


@pytest.mark.parametrize(("disable", "asked"), [("false", True), ("true", False)])
async def test_C10_disable_post_authorize_keeps_a_cached_refusal_without_asking(
    station: Station, disable: str, asked: bool
) -> None:
    station.auth.remember(wire_token(CARD), {"status": "Blocked"})
    station.csms.answers[CARD.value] = ACCEPTED
    station.set("AuthCacheCtrlr/DisablePostAuthorize", disable)
    result = await station.auth.chain.authorize(CARD)
    assert result.accepted is asked
    assert station.csms.asked() == ([CARD.value] if asked else [])


@pytest.mark.parametrize(("policy", "evicted"), [("FIFO", "A"), ("LRU", "B"), ("LFU", "C")])
async def test_C10_set_variables_on_the_cache_policy_takes_effect_at_once(
    store: Store, policy: str, evicted: str
) -> None:
    catalogue = with_limit(
        station_variables([(1, [(1, "cType2")])]), "AuthCacheCtrlr/Storage", 3 * ENTRY_BYTES
    )
    station = build(store, catalogue)
    assert station.set("AuthCacheCtrlr/Policy", policy) == "Accepted"
    tokens = {name: IdToken(name) for name in "ABCD"}
    for name in "ABC":
        station.auth.remember(wire_token(tokens[name]), ACCEPTED)
    station.go_offline()
    # Uses: B twice, then C, then A. First in: A; least recent: B; least often: C (2 uses,
    # as A, but longer ago).
    for name in "BBCA":
        assert (await station.auth.chain.authorize(tokens[name])).accepted
    station.auth.remember(wire_token(tokens["D"]), ACCEPTED)  # the cache is full: one goes
    kept = {name for name in "ABCD" if station.cache.get(token_key(name, "ISO14443"))}
    assert kept == set("ABCD") - {evicted}


def test_a_custom_cache_policy_is_rejected(station: Station) -> None:
    assert station.set("AuthCacheCtrlr/Policy", "CUSTOM") == "Rejected"
    assert station.model.value("AuthCacheCtrlr/Policy") == "LRU"


async def test_C11_clear_cache_empties_the_cache(station: Station) -> None:
    station.auth.remember(wire_token(CARD), ACCEPTED)
    assert await station.handle("ClearCache", {}) == {"status": "Accepted"}
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID


async def test_C11_FR_04_clear_cache_is_rejected_while_the_cache_is_disabled(
    station: Station,
) -> None:
    station.auth.remember(wire_token(CARD), ACCEPTED)
    station.set("AuthCacheCtrlr/Enabled", "false")
    assert (await station.handle("ClearCache", {}))["status"] == "Rejected"
    assert station.cache.size() == 1


def test_cache_storage_counts_its_entries(station: Station) -> None:
    assert station.model.value("AuthCacheCtrlr/Storage") == "0"
    station.auth.remember(wire_token(CARD), ACCEPTED)
    station.auth.remember(wire_token(OTHER), {"status": "Invalid"})
    assert station.model.value("AuthCacheCtrlr/Storage") == str(2 * ENTRY_BYTES)


# -- D01/D02 the local list ----------------------------------------------------------------


async def test_D01_a_full_list_authorizes_offline_and_sets_the_version(station: Station) -> None:
    answer = await station.send_list(
        3, "Full", [entry(CARD), entry(OTHER, "Blocked", groupIdToken=wire_token(CARD))]
    )
    assert answer == {"status": "Accepted"}
    assert await station.list_version() == 3
    assert station.model.value("LocalAuthListCtrlr/Entries") == "2"
    assert station.model.value("LocalAuthListCtrlr/Storage") == str(2 * ENTRY_BYTES)
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted
    other = await station.auth.chain.authorize(OTHER)
    assert (other.status, other.group_id) == (AuthStatus.BLOCKED, CARD.value)


async def test_D01_id_tokens_match_case_insensitively(station: Station) -> None:
    await station.send_list(1, "Full", [entry(IdToken("04a2b3c4d5"))])
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted


async def test_D01_a_full_list_replaces_the_whole_list(station: Station) -> None:
    await station.send_list(1, "Full", [entry(CARD)])
    await station.send_list(2, "Full", [entry(OTHER)])
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID
    assert (await station.auth.chain.authorize(OTHER)).accepted


async def test_D01_an_empty_full_list_empties_it_and_the_version_reads_0(
    station: Station,
) -> None:
    await station.send_list(1, "Full", [entry(CARD)])
    assert await station.send_list(5, "Full") == {"status": "Accepted"}
    assert await station.list_version() == 0
    assert station.model.value("LocalAuthListCtrlr/Entries") == "0"


async def test_D01_a_differential_update_adds_replaces_and_removes(station: Station) -> None:
    third = IdToken("CAFE", TokenType.KEY_CODE)
    await station.send_list(1, "Full", [entry(CARD), entry(OTHER)])
    changes = [entry(OTHER, "Blocked"), {"idToken": wire_token(CARD)}, entry(third)]
    assert await station.send_list(2, "Differential", changes) == {"status": "Accepted"}
    assert await station.list_version() == 2
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID
    assert (await station.auth.chain.authorize(OTHER)).status == AuthStatus.BLOCKED
    assert (await station.auth.chain.authorize(third)).accepted


@pytest.mark.parametrize("version", [1, 2])
async def test_D01_a_differential_update_not_above_the_version_is_version_mismatch(
    station: Station, version: int
) -> None:
    await station.send_list(2, "Full", [entry(CARD)])
    answer = await station.send_list(version, "Differential", [{"idToken": wire_token(CARD)}])
    assert answer == {"status": "VersionMismatch"}
    assert await station.list_version() == 2
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).accepted


async def test_D01_more_entries_than_items_per_message_fail(station: Station) -> None:
    limit = station.model.int_value("LocalAuthListCtrlr/ItemsPerMessage")
    items = [entry(IdToken(f"T{n}")) for n in range(limit + 1)]
    answer = await station.send_list(1, "Full", items)
    assert answer == {"status": "Failed", "statusInfo": {"reasonCode": "TooManyElements"}}
    assert await station.list_version() == 0


async def test_D01_a_list_beyond_the_entries_limit_fails(store: Store) -> None:
    catalogue = with_limit(
        station_variables([(1, [(1, "cType2")])]), "LocalAuthListCtrlr/Entries", 2
    )
    station = build(store, catalogue)
    await station.send_list(1, "Full", [entry(CARD), entry(OTHER)])
    answer = await station.send_list(2, "Differential", [entry(IdToken("CAFE"))])
    assert answer["status"] == "Failed"
    assert await station.list_version() == 1


async def test_D01_a_full_list_entry_without_id_token_info_fails(station: Station) -> None:
    answer = await station.send_list(1, "Full", [entry(CARD), {"idToken": wire_token(OTHER)}])
    assert answer["status"] == "Failed"
    assert await station.list_version() == 0


async def test_D01_a_token_twice_in_one_update_fails(station: Station) -> None:
    answer = await station.send_list(1, "Full", [entry(CARD), entry(CARD, "Blocked")])
    assert answer["status"] == "Failed"


async def test_D01_a_disabled_list_is_neither_updated_nor_read(station: Station) -> None:
    await station.send_list(1, "Full", [entry(CARD)])
    station.set("LocalAuthListCtrlr/Enabled", "false")
    answer = await station.send_list(2, "Full", [entry(OTHER)])
    assert answer == {"status": "Failed", "statusInfo": {"reasonCode": "NotEnabled"}}
    assert await station.list_version() == 0  # D02: 0 when disabled
    station.go_offline()
    assert (await station.auth.chain.authorize(CARD)).status == AuthStatus.INVALID


async def test_D02_get_local_list_version_is_0_without_a_list(station: Station) -> None:
    assert await station.list_version() == 0


@pytest.mark.parametrize(("disable", "asked"), [("false", True), ("true", False)])
async def test_local_list_disable_post_authorize_keeps_a_listed_refusal(
    station: Station, disable: str, asked: bool
) -> None:
    await station.send_list(1, "Full", [entry(CARD, "Blocked")])
    station.csms.answers[CARD.value] = ACCEPTED
    station.set("LocalAuthListCtrlr/DisablePostAuthorize", disable)
    assert (await station.auth.chain.authorize(CARD)).accepted is asked


def test_the_list_and_cache_variables_are_read_only(station: Station) -> None:
    for path in (
        "LocalAuthListCtrlr/Entries",
        "LocalAuthListCtrlr/Storage",
        "AuthCacheCtrlr/Storage",
        "LocalAuthListCtrlr/ItemsPerMessage",
    ):
        assert station.set(path, "1") == SetStatus.REJECTED.value


def test_settings_survive_a_restart(store: Store) -> None:
    first = build(store)
    first.set("AuthCtrlr/OfflineTxForUnknownIdEnabled", "true")
    first.set("AuthCacheCtrlr/LifeTime", "120")
    again = build(store)
    assert again.auth.chain.policy.allow_offline_tx_for_unknown_id is True
    assert again.model.int_value("AuthCacheCtrlr/LifeTime") == 120


async def test_the_list_survives_a_restart(store: Store) -> None:
    first = build(store)
    await first.send_list(4, "Full", [entry(CARD)])
    again = build(store)
    assert await again.list_version() == 4
    again.go_offline()
    assert (await again.auth.chain.authorize(CARD)).accepted


async def test_a_cache_entry_that_expired_is_refused_until_the_csms_says_otherwise(
    station: Station,
) -> None:
    expiry = (NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    station.auth.remember(wire_token(CARD), {"status": "Accepted", "cacheExpiryDateTime": expiry})
    station.clock.advance(600)
    station.csms.answers[CARD.value] = ACCEPTED
    station.set("AuthCtrlr/LocalPreAuthorize", "true")
    assert (await station.auth.chain.authorize(CARD)).accepted  # asked: Expired is no pass
    assert station.csms.asked() == [CARD.value]
