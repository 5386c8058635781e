"""The authorization chain: local list, then cache, then the CSMS, then the offline rules.

One version-neutral answer to "may this token charge?" (OCPP 1.6 section 3.5, OCPP
2.0.1 block C). The local list and the cache are stores the chain reads through
Protocols; the CSMS is a `RemoteAuthorizer` the OCPP adapter provides; the policy is a
small mutable record each adapter fills from its own configuration keys.

The rules, in order:

1. An entry in the local list (when enabled) wins over one in the cache for the same
   token; an expired entry counts as Expired.
2. Online, a token that list or cache knows as Accepted is accepted at once when
   `local_pre_authorize` is set; otherwise the CSMS is asked, and its answer goes into
   the cache (when enabled).
3. Offline (or when the CSMS cannot be reached), a known token gets its stored verdict
   when `local_authorize_offline` is set; an unknown one is accepted only when
   `allow_offline_tx_for_unknown_id` is set.
"""

from __future__ import annotations

import logging
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
    ) -> None:
        self.remote = remote
        self.clock = clock
        self.local_list = local_list
        self.cache = cache
        self.policy = policy or AuthPolicy()

    async def authorize(self, token: IdToken) -> AuthResult:
        """The verdict for `token`; never raises for network trouble."""
        known = self.lookup(token.value)
        if self.remote.online:
            if known is not None and known.accepted and self.policy.local_pre_authorize:
                return known
            try:
                result = await self.remote.authorize_remote(token)
            except Unreachable as exc:
                log.info("CSMS unreachable for Authorize (%s): offline rules apply", exc)
            else:
                self.remember(token.value, result)
                return result
        return self.offline_verdict(known)

    def lookup(self, id_token: str) -> AuthResult | None:
        """The stored verdict for a token: local list first, then cache; None if unknown."""
        if self.policy.local_list_enabled and self.local_list is not None:
            entry = self.local_list.get(id_token)
            if entry is not None:
                return self._verdict(entry)
        if self.policy.cache_enabled and self.cache is not None:
            entry = self.cache.get(id_token)
            if entry is not None:
                self.cache.touch(id_token)
                return self._verdict(entry)
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
