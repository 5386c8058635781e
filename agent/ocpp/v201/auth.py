"""OCPP 2.0.1 authorization: Authorize, the cache and the local list (blocks C and D).

The decision itself is the core's `AuthorizationChain`; this module is its 2.0.1 face:
the CSMS side of the chain (AuthorizeRequest, C01/C02), the mapping of IdTokenInfo to
verdicts, the AuthCtrlr / AuthCacheCtrlr / LocalAuthListCtrlr variables that set the
chain's policy and the cache's limits (re-read at once after a SetVariables), and the
CSMS's list and cache commands (ClearCache C11, SendLocalList D01, GetLocalListVersion
D02). The adapter wires `handlers()` and calls `remember()` with every IdTokenInfo a
TransactionEventResponse carries (C10).

Decisions where the spec leaves room:

- Tokens are stored under `token_key(idToken, type)`: 2.0.1 identifies a token by value
  and type, and the value is case-insensitive (IdTokenType). The 1.6 adapter keeps its
  plain idTag keys; the two never meet in one running agent.
- SendLocalList with more entries than LocalAuthListCtrlr.ItemsPerMessage, or larger
  than its BytesPerMessage, is answered Failed (statusInfo TooManyElements /
  TooLargeElement) rather than with a CALLERROR: the response has a status for a list
  that was not applied, and a CALLERROR would tell the CSMS the message was malformed.
- A disabled local list answers SendLocalList Failed (NotEnabled) and
  GetLocalListVersion 0; a disabled cache answers ClearCache Rejected (C11.FR.04).
- A Full update whose entry lacks idTokenInfo ("Required when UpdateType is Full") and
  a non-empty list with versionNumber < 1 (0 means "no list", D02) are Failed.
- Storage (LocalAuthListCtrlr, AuthCacheCtrlr) is reported as entries x ENTRY_BYTES,
  an upper bound of one stored entry; the catalogue's Storage maxLimit sets the cache's
  capacity, LocalAuthListCtrlr.Entries' maxLimit the list's.

Must not: decide whether a token may charge (the chain does), know 1.6, or run a list
update on the event loop in one piece (LocalAuthList stages it in chunks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from agent.core.auth import AuthorizationChain, AuthPolicy, Unreachable
from agent.core.events import AuthResult, AuthStatus, ContractProof, IdToken
from agent.core.ports import Clock
from agent.ocpp.rpc import CallTimeout, ConnectionLost, Handler, RpcEndpoint, RpcError
from agent.ocpp.v201.device_model import DeviceModel, parse_path, wire_size
from agent.ocpp.v201.variables import Attribute, VariableDef
from agent.store.auth import (
    AuthCache,
    AuthEntry,
    CachePolicy,
    InvalidList,
    ListRemoval,
    ListTooLong,
    LocalAuthList,
    VersionMismatch,
)

log = logging.getLogger(__name__)

ID_TOKEN_MAX: Final = 36  # IdTokenType.idToken maxLength
#: Bytes one stored entry takes at most (key of type and token, status, expiry, group,
#: the cache's bookkeeping): the unit of the Storage variables.
ENTRY_BYTES: Final = 160
#: Entries the local list holds when the catalogue gives Entries no maxLimit.
DEFAULT_LIST_CAPACITY: Final = 10_000

#: AuthorizationStatusEnumType -> the core's verdict. The statuses the core has no word
#: for (NoCredit, NotAllowedTypeEVSE, NotAtThisLocation, NotAtThisTime, Unknown) refuse.
AUTHORIZATION_STATUS: Final[Mapping[str, AuthStatus]] = {
    "Accepted": AuthStatus.ACCEPTED,
    "Blocked": AuthStatus.BLOCKED,
    "ConcurrentTx": AuthStatus.CONCURRENT_TX,
    "Expired": AuthStatus.EXPIRED,
    "Invalid": AuthStatus.INVALID,
}

# Device model paths this module reads.
AUTH_ENABLED: Final = "AuthCtrlr/Enabled"
AUTHORIZE_REMOTE_START: Final = "AuthCtrlr/AuthorizeRemoteStart"
LOCAL_AUTHORIZE_OFFLINE: Final = "AuthCtrlr/LocalAuthorizeOffline"
LOCAL_PRE_AUTHORIZE: Final = "AuthCtrlr/LocalPreAuthorize"
OFFLINE_TX_FOR_UNKNOWN_ID: Final = "AuthCtrlr/OfflineTxForUnknownIdEnabled"
DISABLE_REMOTE_AUTHORIZATION: Final = "AuthCtrlr/DisableRemoteAuthorization"
MASTER_PASS_GROUP_ID: Final = "AuthCtrlr/MasterPassGroupId"
CACHE_ENABLED: Final = "AuthCacheCtrlr/Enabled"
CACHE_LIFETIME: Final = "AuthCacheCtrlr/LifeTime"
CACHE_POLICY: Final = "AuthCacheCtrlr/Policy"
CACHE_STORAGE: Final = "AuthCacheCtrlr/Storage"
CACHE_DISABLE_POST_AUTHORIZE: Final = "AuthCacheCtrlr/DisablePostAuthorize"
LIST_ENABLED: Final = "LocalAuthListCtrlr/Enabled"
LIST_ENTRIES: Final = "LocalAuthListCtrlr/Entries"
LIST_ITEMS_PER_MESSAGE: Final = "LocalAuthListCtrlr/ItemsPerMessage"
LIST_BYTES_PER_MESSAGE: Final = "LocalAuthListCtrlr/BytesPerMessage"
LIST_STORAGE: Final = "LocalAuthListCtrlr/Storage"
LIST_DISABLE_POST_AUTHORIZE: Final = "LocalAuthListCtrlr/DisablePostAuthorize"

_COMPONENTS: Final = frozenset({"authctrlr", "authcachectrlr", "localauthlistctrlr"})
_CACHE_POLICIES: Final = {"LRU": CachePolicy.LRU, "LFU": CachePolicy.LFU, "FIFO": CachePolicy.FIFO}


def token_key(id_token: str, token_type: str) -> str:
    """The list and cache key of a 2.0.1 token: type and case-folded value."""
    return f"{token_type}:{id_token.casefold()}"


def _key_of(token: IdToken) -> str:
    """The key of a core token (its TokenType values are IdTokenEnumType strings)."""
    return token_key(token.value, str(token.type))


def _wire_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime (naive counts as UTC); None if absent."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        log.warning("ignoring malformed cacheExpiryDateTime %r", text)
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def contract_fields(contract: ContractProof | None) -> dict[str, Any]:
    """The AuthorizeRequest fields that carry a Plug & Charge contract (C07)."""
    if contract is None:
        return {}
    fields: dict[str, Any] = {}
    if contract.certificate_pem:
        fields["certificate"] = contract.certificate_pem
    if contract.ocsp:
        fields["iso15118CertificateHashData"] = [
            {
                "hashAlgorithm": item.hash_algorithm,
                "issuerNameHash": item.issuer_name_hash,
                "issuerKeyHash": item.issuer_key_hash,
                "serialNumber": item.serial_number,
                "responderURL": item.responder_url,
            }
            for item in contract.ocsp[:4]
        ]
    return fields


def id_token_info(info: Mapping[str, Any]) -> AuthResult:
    """The verdict an IdTokenInfoType carries (status, groupIdToken, cacheExpiryDateTime)."""
    group = info.get("groupIdToken")
    return AuthResult(
        status=AUTHORIZATION_STATUS.get(info["status"], AuthStatus.INVALID),
        group_id=group["idToken"] if group else None,
        expires_at=_wire_time(info.get("cacheExpiryDateTime")),
    )


def _refusal(status: str, reason: str) -> dict[str, Any]:
    """A response refusing a request, with its Appendix 5 reason code."""
    return {"status": status, "statusInfo": {"reasonCode": reason}}


class _Refused(Exception):  # noqa: N818 - reads as the refusal
    """A SendLocalList that cannot be applied: answer Failed with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _entry(item: Mapping[str, Any]) -> AuthEntry:
    """A list entry from an AuthorizationData that has idTokenInfo."""
    result = id_token_info(item["idTokenInfo"])
    token = item["idToken"]
    return AuthEntry(
        token_key(token["idToken"], token["type"]), result.status, result.expires_at,
        result.group_id,
    )  # fmt: skip


class Ocpp201Authorization:
    """The chain wired to OCPP 2.0.1: asks the CSMS, follows the device model, keeps the
    local list and the cache in step."""

    def __init__(
        self,
        *,
        model: DeviceModel,
        clock: Clock,
        local_list: LocalAuthList,
        cache: AuthCache,
        endpoint: Callable[[], RpcEndpoint | None],
        online: Callable[[], bool],
    ) -> None:
        """Read the Auth* variables and follow their changes; KeyError if one is missing."""
        self.model = model
        self.local_list = local_list
        self.cache = cache
        self._endpoint = endpoint
        self._online = online
        self.chain = AuthorizationChain(
            remote=self,
            clock=clock,
            local_list=local_list,
            cache=cache,
            policy=AuthPolicy(),
            token_key=_key_of,
        )
        entries_max = self._definition(LIST_ENTRIES).max_limit
        self._list_capacity = DEFAULT_LIST_CAPACITY if entries_max is None else int(entries_max)
        storage = self._definition(CACHE_STORAGE).max_limit
        self._cache_capacity = max(1, int(storage or 0) // ENTRY_BYTES) if storage else None
        self._bind(LIST_ENTRIES, lambda: str(self.local_list.size()))
        self._bind(LIST_STORAGE, lambda: str(self.local_list.size() * ENTRY_BYTES))
        self._bind(CACHE_STORAGE, lambda: str(self.cache.size() * ENTRY_BYTES))
        self.on_variable_set()
        model.watch(self._on_set)

    # -- the device model --------------------------------------------------------------

    def on_variable_set(self) -> None:
        """Re-read the AuthCtrlr, AuthCacheCtrlr and LocalAuthListCtrlr variables."""
        flag = self.model.bool_value
        policy = self.chain.policy
        policy.enabled = flag(AUTH_ENABLED)
        policy.local_pre_authorize = flag(LOCAL_PRE_AUTHORIZE)
        policy.local_authorize_offline = flag(LOCAL_AUTHORIZE_OFFLINE)
        policy.allow_offline_tx_for_unknown_id = flag(OFFLINE_TX_FOR_UNKNOWN_ID)
        policy.remote_authorization = not flag(DISABLE_REMOTE_AUTHORIZATION)
        policy.cache_enabled = flag(CACHE_ENABLED)
        policy.cache_post_authorize = not flag(CACHE_DISABLE_POST_AUTHORIZE)
        policy.local_list_enabled = flag(LIST_ENABLED)
        policy.list_post_authorize = not flag(LIST_DISABLE_POST_AUTHORIZE)
        lifetime_s = self.model.int_value(CACHE_LIFETIME)
        self.cache.configure(
            max_entries=self._cache_capacity,
            policy=_CACHE_POLICIES.get(self.model.value(CACHE_POLICY), CachePolicy.LRU),
            lifetime_s=float(lifetime_s) if lifetime_s > 0 else None,
            clear_lifetime=lifetime_s <= 0,
        )

    @property
    def authorize_remote_start(self) -> bool:
        """AuthCtrlr.AuthorizeRemoteStart: Authorize a RequestStartTransaction's token."""
        return self.model.bool_value(AUTHORIZE_REMOTE_START)

    @property
    def master_pass_group(self) -> str | None:
        """AuthCtrlr.MasterPassGroupId (C16), or None when unset."""
        return self.model.value(MASTER_PASS_GROUP_ID) or None

    def _on_set(self, definition: VariableDef, attribute: Attribute, value: str) -> None:
        """A device model watcher: follow sets of this module's components."""
        if definition.component.name.casefold() in _COMPONENTS:
            self.on_variable_set()

    def _definition(self, path: str) -> VariableDef:
        """The catalogue definition at `path`; KeyError if the model lacks it."""
        component, variable, _ = parse_path(path)
        definition = self.model.lookup(component, variable)
        if definition is None:
            raise KeyError(path)
        return definition

    def _bind(self, path: str, getter: Callable[[], str]) -> None:
        """Serve a read-only variable live from `getter`."""
        component, variable, _ = parse_path(path)
        self.model.bind(component, variable, getter)

    # -- the chain's RemoteAuthorizer --------------------------------------------------

    @property
    def online(self) -> bool:
        """Connected and accepted by the CSMS."""
        return self._online()

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        """AuthorizeRequest (C01); raises Unreachable when the CSMS cannot be asked."""
        if len(token.value) > ID_TOKEN_MAX:
            return AuthResult(AuthStatus.INVALID)  # cannot be expressed in 2.0.1
        endpoint = self._endpoint()
        if endpoint is None:
            raise Unreachable("not connected")
        request: dict[str, Any] = {"idToken": {"idToken": token.value, "type": str(token.type)}}
        request.update(contract_fields(token.contract))
        try:
            response = await endpoint.call("Authorize", request)
        except (RpcError, CallTimeout, ConnectionLost) as exc:
            raise Unreachable(str(exc)) from exc
        result = id_token_info(response["idTokenInfo"])
        certificate = response.get("certificateStatus")
        if token.contract is not None and result.accepted and certificate != "Accepted":
            # C07.FR.?: no charging on a contract the CSMS could not validate.
            log.warning("Plug & Charge contract refused: certificateStatus %s", certificate)
            return AuthResult(AuthStatus.INVALID)
        return result

    def remember(self, id_token: Mapping[str, Any], info: Mapping[str, Any]) -> AuthResult:
        """Cache (C10) and return the verdict of an IdTokenInfo the CSMS sent for a token."""
        result = id_token_info(info)
        self.chain.remember(token_key(id_token["idToken"], id_token["type"]), result)
        return result

    # -- CSMS-initiated CALLs --------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this module answers, by action."""
        return {
            "ClearCache": self.on_clear_cache,
            "GetLocalListVersion": self.on_get_local_list_version,
            "SendLocalList": self.on_send_local_list,
        }

    async def on_clear_cache(self, payload: dict[str, Any]) -> dict[str, Any]:
        """ClearCacheRequest (C11): Rejected while the cache is disabled (C11.FR.04)."""
        if not self.model.bool_value(CACHE_ENABLED):
            return _refusal("Rejected", "NotEnabled")
        self.cache.clear()
        return {"status": "Accepted"}

    async def on_get_local_list_version(self, payload: dict[str, Any]) -> dict[str, Any]:
        """GetLocalListVersionRequest (D02): 0 when the list is empty or disabled."""
        if not self.model.bool_value(LIST_ENABLED):
            return {"versionNumber": 0}
        return {"versionNumber": self.local_list.version()}

    async def on_send_local_list(self, payload: dict[str, Any]) -> dict[str, Any]:
        """SendLocalListRequest (D01), Full or Differential, applied all or nothing."""
        try:
            await self._apply(payload)
        except _Refused as refusal:
            log.warning("SendLocalList refused: %s", refusal.reason)
            return _refusal("Failed", refusal.reason)
        except VersionMismatch as exc:
            log.info("SendLocalList: %s", exc)
            return {"status": "VersionMismatch"}
        except ListTooLong as exc:
            log.warning("SendLocalList refused: %s", exc)
            return _refusal("Failed", "OutOfStorage")
        except InvalidList as exc:
            log.warning("SendLocalList refused: %s", exc)
            return _refusal("Failed", "InvalidValue")
        return {"status": "Accepted"}

    async def _apply(self, payload: Mapping[str, Any]) -> None:
        """Check and apply one SendLocalList; raises _Refused or an AuthListError."""
        if not self.model.bool_value(LIST_ENABLED):
            raise _Refused("NotEnabled")
        items: list[Mapping[str, Any]] = payload.get("localAuthorizationList") or []
        if len(items) > self.model.int_value(LIST_ITEMS_PER_MESSAGE):
            raise _Refused("TooManyElements")
        if wire_size(payload) > self.model.int_value(LIST_BYTES_PER_MESSAGE):
            raise _Refused("TooLargeElement")
        version = int(payload["versionNumber"])
        if payload["updateType"] == "Full":
            if items and version < 1:
                raise _Refused("InvalidValue")  # version 0 means "no list" (D02)
            if not all("idTokenInfo" in item for item in items):
                raise _Refused("MissingParam")
            entries = [_entry(item) for item in items]
            await self.local_list.replace(version, entries, max_length=self._list_capacity)
        else:
            # D01: an entry with idTokenInfo is added or replaced, one without is removed.
            changes = [
                _entry(item)
                if "idTokenInfo" in item
                else ListRemoval(token_key(item["idToken"]["idToken"], item["idToken"]["type"]))
                for item in items
            ]
            await self.local_list.update(version, changes, max_length=self._list_capacity)
