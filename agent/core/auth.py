"""The authorization chain: local list, then cache, then the CSMS, then the offline rules.

One version-neutral answer to "may this token charge?" (OCPP 1.6 section 3.5, OCPP
2.0.1 block C). The local list and the cache are stores the chain reads through
Protocols; the CSMS is a `RemoteAuthorizer` the OCPP adapter provides; the policy is a
small mutable record each adapter fills from its own configuration keys.

The rules, in order:

0. With authorization switched off (`enabled` false, 2.0.1 AuthCtrlr.Enabled), every
   token is accepted and nobody is asked.
1. An entry in the local list (when enabled) wins over one in the cache for the same
   token; an expired entry counts as Expired.
2. Online, a token that list or cache knows as Accepted is accepted at once when
   `local_pre_authorize` is set; one they know as not Accepted keeps that verdict without
   asking when its source's post-authorize is off (2.0.1 DisablePostAuthorize);
   otherwise the CSMS is asked, and its answer goes into the cache (when enabled). With
   `remote_authorization` off (2.0.1 DisableRemoteAuthorization, C14) the CSMS is never
   asked: a known token gets its stored verdict, an unknown one is Invalid.
3. Offline (or when the CSMS cannot be reached), a known token gets its stored verdict
   when `local_authorize_offline` is set; an unknown one is accepted only when
   `allow_offline_tx_for_unknown_id` is set.

Tokens are looked up under `token_key(token)`: the value by default (1.6), the adapter's
own key otherwise (2.0.1 identifies a token by value and type).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from agent.core.events import AuthResult, AuthStatus, IdToken
from agent.core.ports import Clock

log = logging.getLogger(__name__)


class AuthRecord(Protocol):
    """A stored verdict (a local list or cache entry)."""

    @property
    def id_token(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def expires_at(self) -> datetime | None: ...

    @property
    def group_id(self) -> str | None: ...


class RecordSource(Protocol):
    """Where stored verdicts are looked up (the local list)."""

    def get(self, id_token: str) -> AuthRecord | None:
        """The entry for a token, or None."""
        ...


class CacheStore(RecordSource, Protocol):
    """The authorization cache."""

    def record(self, id_token: str, result: AuthResult) -> None:
        """Remember the CSMS's verdict on a token."""
        ...

    def touch(self, id_token: str) -> bool:
        """Count a use of an entry (for eviction and lifetime); False if it is gone."""
        ...

    def clear(self) -> None:
        """Forget every entry."""
        ...


class Unreachable(Exception):  # noqa: N818 - reads as a condition
    """The CSMS could not be asked (offline, timeout, connection lost)."""


class RemoteAuthorizer(Protocol):
    """The CSMS side of authorization (the OCPP adapter)."""

    @property
    def online(self) -> bool:
        """Whether the CSMS can be asked now."""
        ...

    async def authorize_remote(self, token: IdToken) -> AuthResult:
        """Ask the CSMS; raises Unreachable when it cannot be asked."""
        ...


@dataclass(slots=True)
class AuthPolicy:
    """Which sources the chain uses and how it decides offline."""

    local_list_enabled: bool = False
    cache_enabled: bool = True
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    #: False: every token is accepted without asking anyone (2.0.1 AuthCtrlr.Enabled).
    enabled: bool = True
    #: False: never ask the CSMS, decide from list and cache (2.0.1 C14).
    remote_authorization: bool = True
    #: Online, ask the CSMS about a token the list / the cache holds as not Accepted.
    list_post_authorize: bool = True
    cache_post_authorize: bool = True


def value_key(token: IdToken) -> str:
    """The default store key of a token: its value."""
    return token.value


class AuthorizationChain:
    """An Authorizer (agent.core.events) built from list, cache, CSMS and policy."""

    def __init__(
        self,
        *,
        remote: RemoteAuthorizer,
        clock: Clock,
        local_list: RecordSource | None = None,
        cache: CacheStore | None = None,
        policy: AuthPolicy | None = None,
        token_key: Callable[[IdToken], str] = value_key,
    ) -> None:
        self.remote = remote
        self.clock = clock
        self.local_list = local_list
        self.cache = cache
        self.policy = policy or AuthPolicy()
        self.token_key = token_key

    async def authorize(self, token: IdToken) -> AuthResult:
        """The verdict for `token`; never raises for network trouble."""
        if not self.policy.enabled:
            return AuthResult(AuthStatus.ACCEPTED)
        key = self.token_key(token)
        found = self._find(key)
        known = None if found is None else found[0]
        if self.remote.online:
            if found is not None:
                result, post_authorize = found
                if result.accepted and self.policy.local_pre_authorize:
                    return result
                if not result.accepted and not post_authorize:
                    return result
            if not self.policy.remote_authorization:
                return known if known is not None else AuthResult(AuthStatus.INVALID)
            try:
                answer = await self.remote.authorize_remote(token)
            except Unreachable as exc:
                log.info("CSMS unreachable for Authorize (%s): offline rules apply", exc)
            else:
                self.remember(key, answer)
                return answer
        return self.offline_verdict(known)

    def lookup(self, id_token: str) -> AuthResult | None:
        """The stored verdict for a token: local list first, then cache; None if unknown."""
        found = self._find(id_token)
        return None if found is None else found[0]

    def _find(self, id_token: str) -> tuple[AuthResult, bool] | None:
        """(stored verdict, whether its source allows post-authorize), or None."""
        if self.policy.local_list_enabled and self.local_list is not None:
            entry = self.local_list.get(id_token)
            if entry is not None:
                return self._verdict(entry), self.policy.list_post_authorize
        if self.policy.cache_enabled and self.cache is not None:
            entry = self.cache.get(id_token)
            if entry is not None:
                self.cache.touch(id_token)
                return self._verdict(entry), self.policy.cache_post_authorize
        return None

    def offline_verdict(self, known: AuthResult | None) -> AuthResult:
        """What the offline rules say about a token the stores know (or not)."""
        if known is not None:
            if self.policy.local_authorize_offline:
                return known
            return AuthResult(AuthStatus.INVALID)
        if self.policy.allow_offline_tx_for_unknown_id:
            return AuthResult(AuthStatus.ACCEPTED)
        return AuthResult(AuthStatus.INVALID)

    def remember(self, id_token: str, result: AuthResult) -> None:
        """Update the cache from a CSMS answer (Authorize, transaction confirmations)."""
        if self.policy.cache_enabled and self.cache is not None:
            self.cache.record(id_token, result)

    def _verdict(self, entry: AuthRecord) -> AuthResult:
        try:
            status = AuthStatus(entry.status)
        except ValueError:
            status = AuthStatus.INVALID
        expires = entry.expires_at
        if status == AuthStatus.ACCEPTED and expires is not None and expires <= self.clock.now():
            status = AuthStatus.EXPIRED
        return AuthResult(status=status, group_id=entry.group_id, expires_at=expires)
