"""OCPP 1.6 authorization: Authorize, the cache, and the Local Auth List Management profile.

The decision itself is the core's `AuthorizationChain`; this module is its 1.6 face:
the CSMS side of the chain (Authorize.req), the mapping of idTagInfo to verdicts, the
configuration keys that set the chain's policy, and the CSMS's list and cache commands
(SendLocalList, GetLocalListVersion, ClearCache; sections 5.4, 5.10, 5.15).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from agent.core.auth import AuthorizationChain, AuthPolicy, Unreachable
from agent.core.events import AuthResult, AuthStatus, IdToken
from agent.core.ports import Clock
from agent.ocpp.rpc import CallTimeout, ConnectionLost, RpcEndpoint, RpcError
from agent.ocpp.v16 import mapping
from agent.ocpp.v16.config_keys import ConfigurationKeys
from agent.store.auth import (
    AuthCache,
    AuthEntry,
    InvalidList,
    ListRemoval,
    ListTooLong,
    LocalAuthList,
    VersionMismatch,
)

log = logging.getLogger(__name__)

ID_TAG_MAX = 20  # IdToken is CiString20Type in 1.6

#: Configuration key -> the chain's policy field it sets.
POLICY_KEYS = {
    "LocalAuthListEnabled": "local_list_enabled",
    "AuthorizationCacheEnabled": "cache_enabled",
    "LocalPreAuthorize": "local_pre_authorize",
    "LocalAuthorizeOffline": "local_authorize_offline",
    "AllowOfflineTxForUnknownId": "allow_offline_tx_for_unknown_id",
}


def id_tag_info(info: Mapping[str, Any]) -> AuthResult:
    """The verdict an idTagInfo carries (section 7.17)."""
    expiry = info.get("expiryDate")
    return AuthResult(
        status=mapping.AUTH_STATUS.get(info["status"], AuthStatus.INVALID),
        group_id=info.get("parentIdTag"),
        expires_at=datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None,
    )


class Ocpp16Authorization:
    """The chain wired to OCPP 1.6: asks the CSMS, keeps the list and cache in step."""

    def __init__(
        self,
        *,
        keys: ConfigurationKeys,
        clock: Clock,
        local_list: LocalAuthList,
        cache: AuthCache,
        endpoint: Callable[[], RpcEndpoint | None],
        online: Callable[[], bool],
    ) -> None:
        self.keys = keys
        self.local_list = local_list
        self.cache = cache
        self._endpoint = endpoint
        self._online = online
        self.chain = AuthorizationChain(
            remote=self, clock=clock, local_list=local_list, cache=cache, policy=AuthPolicy()
        )
        for key, field in POLICY_KEYS.items():
            setattr(self.chain.policy, field, keys.get_bool(key))

    def on_key_changed(self, name: str, value: str) -> None:
        """Follow ChangeConfiguration of the keys that shape the chain."""
        field = POLICY_KEYS.get(name)
        if field is not None:
            setattr(self.chain.policy, field, value == "true")
        if name == "AuthorizationCacheEnabled" and value == "false":
            self.cache.clear()

    # -- the chain's RemoteAuthorizer --------------------------------------------------

    @property
    def online(self) -> bool:
        """Connected and accepted by the CSMS."""
        return self._online()

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        """Authorize.req (section 4.1); raises Unreachable when it cannot be asked."""
        if len(token.value) > ID_TAG_MAX:
            return AuthResult(AuthStatus.INVALID)  # cannot be expressed in 1.6
        endpoint = self._endpoint()
        if endpoint is None:
            raise Unreachable("not connected")
        try:
            conf = await endpoint.call("Authorize", {"idTag": token.value})
        except (RpcError, CallTimeout, ConnectionLost) as exc:
            raise Unreachable(str(exc)) from exc
        return id_tag_info(conf["idTagInfo"])

    def remember(self, id_tag: str, info: Mapping[str, Any]) -> AuthResult:
        """Update the cache from an idTagInfo in a transaction confirmation."""
        result = id_tag_info(info)
        self.chain.remember(id_tag, result)
        return result

    # -- CSMS-initiated CALLs --------------------------------------------------------

    async def on_clear_cache(self, payload: dict[str, Any]) -> dict[str, Any]:
        """ClearCache.req (section 5.4)."""
        self.cache.clear()
        return {"status": "Accepted"}

    async def on_get_local_list_version(self, payload: dict[str, Any]) -> dict[str, Any]:
        """GetLocalListVersion.req (section 5.10): -1 when the list is disabled."""
        if not self.keys.get_bool("LocalAuthListEnabled"):
            return {"listVersion": -1}
        return {"listVersion": self.local_list.version()}

    async def on_send_local_list(self, payload: dict[str, Any]) -> dict[str, Any]:
        """SendLocalList.req (section 5.15), full or differential."""
        if not self.keys.get_bool("LocalAuthListEnabled"):
            return {"status": "NotSupported"}
        items = payload.get("localAuthorizationList", [])
        if len(items) > self.keys.get_int("SendLocalListMaxLength"):
            return {"status": "Failed"}
        version = int(payload["listVersion"])
        max_length = self.keys.get_int("LocalAuthListMaxLength")
        try:
            if payload["updateType"] == "Full":
                entries = [_entry(item) for item in items if "idTagInfo" in item]
                await self.local_list.replace(version, entries, max_length=max_length)
            else:
                changes = [
                    _entry(item) if "idTagInfo" in item else ListRemoval(item["idTag"])
                    for item in items
                ]
                await self.local_list.update(version, changes, max_length=max_length)
        except VersionMismatch:
            return {"status": "VersionMismatch"}
        except (ListTooLong, InvalidList) as exc:
            log.warning("SendLocalList refused: %s", exc)
            return {"status": "Failed"}
        return {"status": "Accepted"}


def _entry(item: Mapping[str, Any]) -> AuthEntry:
    result = id_tag_info(item["idTagInfo"])
    return AuthEntry(item["idTag"], result.status, result.expires_at, result.group_id)
