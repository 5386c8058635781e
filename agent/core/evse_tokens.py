"""The token half of an EVSE: what a presented token or a remote start does.

A mixin of `agent.core.evse.Evse`, split out to keep each file readable: a presented
token starts, stops or cancels a session (announced first as `TokenPresented`), a remote
start authorizes and goes, a card of the same group or a master pass stops a running
transaction. Checks run beside the lifecycle worker and only enqueue their verdict, so a
slow CSMS never holds the session machine.

This module must not: touch the hardware or the journal (the lifecycle steps it queues
on `Evse` do), or know an OCPP version.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.core.events import (
    AuthorizationOutcome,
    Authorizer,
    AuthResult,
    AuthStatus,
    IdToken,
    StationEvent,
    TokenHandling,
    TokenPresented,
)
from agent.core.policy import Policy
from agent.core.ports import StopReason, TransactionJournal, TxRecord, TxTrigger
from agent.core.reservations import ReservationGate
from agent.core.status import SessionPhase
from agent.core.tasks import Mailbox, TaskSet
from drivers.types import FaultCode

log = logging.getLogger("agent.core.evse")


class EvseTokens:
    """Tokens and remote starts at one EVSE (mixed into Evse, which provides the state)."""

    id: int
    state: SessionPhase
    operative: bool
    policy: Policy
    journal: TransactionJournal
    tx: TxRecord | None
    token: IdToken | None
    token_group: str | None
    _token_result: AuthResult | None
    _remote_start_id: int | None
    _authorizing: bool
    _reservations: ReservationGate
    _authorizer: Callable[[], Authorizer]
    _emit: Callable[[StationEvent], None]
    _inbox: Mailbox[Callable[[], Awaitable[Any]]]
    _tasks: TaskSet

    @property
    def blocking_faults(self) -> frozenset[FaultCode]:
        """The active faults that stop energy (Evse provides it)."""
        raise NotImplementedError

    async def _stop(self, reason: StopReason, stop_token: str | None) -> bool:
        """End the authorization and the transaction (Evse provides it)."""
        raise NotImplementedError

    async def _settle(self, trigger: TxTrigger, reason: StopReason | None = None) -> None:
        """Apply the start and stop points (Evse provides it)."""
        raise NotImplementedError

    def available_for_new_session(self) -> bool:
        """Whether a token or remote start may begin a session here now."""
        return (
            self.operative
            and not self.blocking_faults
            and self.state != SessionPhase.TRANSACTION
            and self.journal.accepting_new_transactions  # a full store backlog: no new one
        )

    def present_token(self, token: IdToken) -> None:
        """A token was presented at this EVSE (a reader, an EV's Plug & Charge identity):
        start, stop or cancel. What it does is announced first (TokenPresented), so the
        driver's indicator answers every tap."""
        handling = self._handling(token)
        self._emit(TokenPresented(self.id, token, handling))
        if handling == TokenHandling.ENDING:
            if self.tx is not None or self.state == SessionPhase.TRANSACTION:
                self._inbox.put_nowait(lambda: self._stop(StopReason.LOCAL, token.value))
            else:
                self._inbox.put_nowait(self._cancel_authorization)
        elif handling == TokenHandling.CONCURRENT:
            self._emit(AuthorizationOutcome(self.id, token, AuthResult(AuthStatus.CONCURRENT_TX)))
        elif handling == TokenHandling.RESERVED:
            # OCPP 1.6 section 5.13: refused without asking anyone.
            self._emit(AuthorizationOutcome(self.id, token, AuthResult(AuthStatus.INVALID)))
        elif handling == TokenHandling.CHECKING:
            self._authorizing = True
            if self.state == SessionPhase.TRANSACTION:
                # Another card of the same group may stop it (OCPP 1.6 section 3.5.2,
                # 2.0.1 C01.FR.03): ask who it belongs to.
                self._tasks.spawn(self._group_stop(token), name=f"evse-{self.id}-group-stop")
            else:
                self._tasks.spawn(
                    self._authorize_and_go(token, check=True), name=f"evse-{self.id}-auth"
                )

    def _handling(self, token: IdToken) -> TokenHandling:
        """What `present_token` will do with `token` now."""
        authorized = self.state in (SessionPhase.TRANSACTION, SessionPhase.AUTHORIZED)
        if authorized and self.token is not None and token.value == self.token.value:
            return TokenHandling.ENDING
        if self.state == SessionPhase.TRANSACTION:
            may_stop = self.token_group is not None or self.policy.master_pass_group
            return (
                TokenHandling.CHECKING
                if may_stop and not self._authorizing
                else TokenHandling.CONCURRENT
            )
        if not self.available_for_new_session():
            return TokenHandling.DROPPED
        if self._authorizing:
            return TokenHandling.BUSY
        if not self._reservations.may_admit(self.id, token):
            return TokenHandling.RESERVED
        return TokenHandling.CHECKING

    def remote_start(
        self, token: IdToken, *, authorize: bool, remote_start_id: int | None = None
    ) -> bool:
        """Accept a remote start if this EVSE can take it; authorize first if asked."""
        if not self.available_for_new_session() or self._authorizing:
            return False
        if self.state == SessionPhase.AUTHORIZED:
            return False
        if not authorize and not self._reservations.admits(self.id, token, None):
            return False  # reserved for someone else (OCPP 1.6 section 5.11)
        self._authorizing = True
        self._tasks.spawn(
            self._authorize_and_go(token, check=authorize, remote_start_id=remote_start_id),
            name=f"evse-{self.id}-remote",
        )
        return True

    @property
    def authorizing(self) -> bool:
        """Whether a token check is in flight (further taps are ignored meanwhile)."""
        return self._authorizing

    async def _authorize_and_go(
        self, token: IdToken, *, check: bool, remote_start_id: int | None = None
    ) -> None:
        try:
            if check:
                result = await self._authorizer().authorize(token)
            else:
                result = AuthResult(AuthStatus.ACCEPTED)
        finally:
            self._authorizing = False
        master = self.policy.master_pass_group
        if result.accepted and master is not None and result.group_id == master:
            log.info("EVSE %s: a master pass token stops, it does not start (C16)", self.id)
            result = AuthResult(AuthStatus.INVALID, result.group_id, result.expires_at)
        if result.accepted and not self._reservations.admits(self.id, token, result):
            log.info("EVSE %s: reserved for another token", self.id)
            result = AuthResult(AuthStatus.INVALID, result.group_id, result.expires_at)
        if result.accepted:
            self._inbox.put_nowait(lambda: self._authorized(token, result, remote_start_id))
        self._emit(AuthorizationOutcome(self.id, token, result))

    async def _group_stop(self, token: IdToken) -> None:
        try:
            result = await self._authorizer().authorize(token)
        finally:
            self._authorizing = False
        group = result.group_id
        same_group = group is not None and group == self.token_group
        master = group is not None and group == self.policy.master_pass_group
        outcome = result if same_group or master else AuthResult(AuthStatus.CONCURRENT_TX)
        self._emit(AuthorizationOutcome(self.id, token, outcome))
        if same_group or master:
            reason = StopReason.LOCAL if same_group else StopReason.MASTER_PASS
            self._inbox.put_nowait(lambda: self._stop(reason, token.value))

    async def _authorized(
        self, token: IdToken, result: AuthResult, remote_start_id: int | None
    ) -> None:
        if not self.available_for_new_session() or self.state == SessionPhase.AUTHORIZED:
            return
        self.token, self.token_group, self._token_result = token, result.group_id, result
        self._remote_start_id = remote_start_id
        if await self.authorize():  # type: ignore[attr-defined]
            trigger = TxTrigger.AUTHORIZED if remote_start_id is None else TxTrigger.REMOTE_START
            await self._settle(trigger)
        else:
            self.token = self.token_group = None
            self._remote_start_id = None

    async def _cancel_authorization(self) -> None:
        if await self.cancel_authorization():  # type: ignore[attr-defined]
            await self._settle(TxTrigger.AUTHORIZED, StopReason.LOCAL)
            self.token = self.token_group = None
