"""What the indicator of one EVSE should show: a pure function of the core's events.

Responsible for the policy of feedback to the person at the charger (issue 5): every
tap gets a visible answer, and between taps the indicator tells how the EVSE is doing.
`IndicatorLogic` is fed the station's events with the time of each, and answers with the
`Display` to render: a state and, for a transient one, when it ends.

The state has two layers:

* the steady state, derived from the connectors' statuses and the session phase alone
  (`steady_state`): fault > charging (a transaction runs) > unavailable > accepted
  (authorized, waiting for the car) > reserved > idle;
* a transient state on top of it: AUTHORIZING from a tap until the answer, ACCEPTED or
  REJECTED for a while after it. How long is data (`FeedbackTimings`). A fault that
  appears cancels any transient at once: a red light must never wait behind a green one.

Every tap gets an answer. The EVSE announces what it does with each token
(`TokenPresented.handling`) before acting: a check shows AUTHORIZING until its
AuthorizationOutcome; the card that stops a transaction or cancels its own authorization
is ACCEPTED when the phase changes (no outcome follows); a tap the EVSE drops because it
is faulted or Inoperative is REJECTED at once; a tap ignored while another card is being
checked changes nothing.

It must not do I/O or use asyncio: time is passed in, and the caller schedules the
wake-up at `IndicatorLogic.deadline` (calling `expire()` then) and drives the indicator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.core.events import (
    AuthorizationOutcome,
    PhaseChanged,
    StationEvent,
    StatusChanged,
    TokenHandling,
    TokenPresented,
)
from agent.core.status import ConnectorStatus, SessionPhase
from drivers.indicator import IndicatorState

_TRANSACTION_STATUSES = frozenset(
    {ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE}
)


@dataclass(frozen=True, slots=True)
class FeedbackTimings:
    """How long the transient states last."""

    accepted_s: float = 2.0
    rejected_s: float = 3.0
    #: A tap whose answer never comes (the core dropped it) stops showing AUTHORIZING
    #: after this; it exceeds the OCPP response timeout (30 s) an Authorize may take.
    authorizing_timeout_s: float = 40.0

    def __post_init__(self) -> None:
        """Raises ValueError for a duration that is not positive."""
        for name in ("accepted_s", "rejected_s", "authorizing_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class Display:
    """What to show: a state, and the end of it when it is transient (None: steady)."""

    state: IndicatorState
    until: datetime | None = None

    def hold_s(self, now: datetime) -> float | None:
        """The seconds left of a transient state at `now` (>= 0); None when steady."""
        if self.until is None:
            return None
        return max(0.0, (self.until - now).total_seconds())


def steady_state(phase: SessionPhase, statuses: Iterable[ConnectorStatus]) -> IndicatorState:
    """The state to show between taps, from the session phase and connector statuses."""
    present = set(statuses)
    if ConnectorStatus.FAULTED in present:
        return IndicatorState.FAULT
    if phase == SessionPhase.TRANSACTION or present & _TRANSACTION_STATUSES:
        return IndicatorState.CHARGING
    # Every connector Unavailable: the EVSE is Inoperative. One connector Unavailable
    # beside a busy one only means "busy on the other connector".
    if present and present <= {ConnectorStatus.UNAVAILABLE}:
        return IndicatorState.UNAVAILABLE
    if phase == SessionPhase.AUTHORIZED:
        return IndicatorState.ACCEPTED  # plug in now
    if ConnectorStatus.RESERVED in present:
        return IndicatorState.RESERVED
    return IndicatorState.IDLE


class IndicatorLogic:
    """The indicator state of one EVSE, fed with station events and the time of each."""

    def __init__(self, evse_id: int, *, timings: FeedbackTimings | None = None) -> None:
        """Start steady IDLE, with no status seen yet."""
        self.evse_id = evse_id
        self.timings = timings or FeedbackTimings()
        self._phase = SessionPhase.IDLE
        self._statuses: dict[int, ConnectorStatus] = {}
        self._transient: Display | None = None
        #: The phase a stop or cancel tap expects the core to leave (no outcome follows).
        self._leaving: SessionPhase | None = None

    @property
    def steady(self) -> IndicatorState:
        """The state shown when no transient one is."""
        return steady_state(self._phase, self._statuses.values())

    @property
    def display(self) -> Display:
        """What to show, as of the last call (call `expire()` at `deadline` to move on)."""
        return self._transient or Display(self.steady)

    @property
    def deadline(self) -> datetime | None:
        """When the transient state shown now ends; None when the display is steady."""
        return None if self._transient is None else self._transient.until

    def expire(self, now: datetime) -> Display:
        """Drop a transient state whose time is up at `now`; returns the display."""
        transient = self._transient
        if transient is not None and transient.until is not None and now >= transient.until:
            self._transient = None
            self._leaving = None
        return self.display

    def feed(self, event: StationEvent, now: datetime) -> Display:
        """Take one event (others' EVSEs and unrelated kinds are ignored) at `now`;
        returns the display."""
        self.expire(now)
        if event.evse_id != self.evse_id:
            return self.display
        if isinstance(event, StatusChanged):
            was = self.steady
            self._statuses[event.connector_id] = event.status
            if self.steady == IndicatorState.FAULT and (
                was != IndicatorState.FAULT or event.status == ConnectorStatus.FAULTED
            ):
                self._clear()  # a fault reported shows at once, over any answer shown
        elif isinstance(event, PhaseChanged):
            self._on_phase(event.phase, now)
        elif isinstance(event, AuthorizationOutcome):
            if event.result.accepted:
                self._show(IndicatorState.ACCEPTED, now, self.timings.accepted_s)
            else:
                self._show(IndicatorState.REJECTED, now, self.timings.rejected_s)
        elif isinstance(event, TokenPresented):
            self._on_tap(event.handling, now)
        return self.display

    def _on_phase(self, phase: SessionPhase, now: datetime) -> None:
        left, self._phase = self._phase, phase
        if self._leaving is not None and left == self._leaving and phase != left:
            # The tap stopped the transaction or cancelled the authorization: the core
            # answers those with the phase change, not with an AuthorizationOutcome.
            self._show(IndicatorState.ACCEPTED, now, self.timings.accepted_s)

    def _on_tap(self, handling: TokenHandling, now: datetime) -> None:
        """Answer a tap as the EVSE said it handles it."""
        if handling == TokenHandling.CHECKING:
            self._show(IndicatorState.AUTHORIZING, now, self.timings.authorizing_timeout_s)
        elif handling == TokenHandling.ENDING:
            # A stop or a cancel, answered by the phase change (no outcome follows).
            self._show(IndicatorState.AUTHORIZING, now, self.timings.authorizing_timeout_s)
            self._leaving = self._phase
        elif handling == TokenHandling.DROPPED:
            # The core drops a tap it cannot act on; the person still gets an answer.
            self._show(IndicatorState.REJECTED, now, self.timings.rejected_s)
        # CONCURRENT, RESERVED: the AuthorizationOutcome follows at once; BUSY: ignored.

    def _is_showing(self, state: IndicatorState) -> bool:
        return self._transient is not None and self._transient.state == state

    def _show(self, state: IndicatorState, now: datetime, duration_s: float) -> None:
        self._transient = Display(state, now + timedelta(seconds=duration_s))
        self._leaving = None

    def _clear(self) -> None:
        self._transient = None
        self._leaving = None
