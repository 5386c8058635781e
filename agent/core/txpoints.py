"""When a transaction starts and ends: the start and stop point rules, as pure functions.

A transaction is not the same thing as a charging session. OCPP 1.6 starts it when a car
is connected and a token accepted (PowerPathClosed, in 2.0.1 words) and ends it when
either goes away; OCPP 2.0.1 makes both configurable (TxStartPoint, TxStopPoint). The
EVSE computes which conditions hold now (`holding`), and these rules say what follows:

- a transaction begins when any start point holds, except in FINISHING (a transaction
  just ended there: the car still being connected must not start another one);
- it ends when a stop point that has held during it no longer holds. Stop points are
  edges, so an EVConnected start with an Authorized stop does not end at once for want
  of a token. An explicit stop (a token, the CSMS, an unlock, a reset) ends it whatever
  the points, and so does the session going back to IDLE (no car, nobody authorized:
  nothing is left to bill for).

This module must not do I/O or know any OCPP version.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.core.ports import StopReason, TxPoint, TxTrigger
from agent.core.status import SessionPhase

#: The stop reason when a stop point ceases to hold, in order of precedence.
_STOP_REASONS: tuple[tuple[TxPoint, StopReason], ...] = (
    (TxPoint.EV_CONNECTED, StopReason.EV_DISCONNECTED),
    (TxPoint.AUTHORIZED, StopReason.DE_AUTHORIZED),
    (TxPoint.POWER_PATH_CLOSED, StopReason.DE_AUTHORIZED),
    (TxPoint.ENERGY_TRANSFER, StopReason.STOPPED_BY_EV),
)


def holding(phase: SessionPhase, *, ev_connected: bool, energy_flowing: bool) -> frozenset[TxPoint]:
    """The conditions that hold for an EVSE in `phase` with these inputs."""
    points = set()
    if ev_connected:
        points.add(TxPoint.EV_CONNECTED)
    if phase in (SessionPhase.AUTHORIZED, SessionPhase.TRANSACTION):
        points.add(TxPoint.AUTHORIZED)
    if phase == SessionPhase.TRANSACTION and ev_connected:
        points.add(TxPoint.POWER_PATH_CLOSED)
        if energy_flowing:
            points.add(TxPoint.ENERGY_TRANSFER)
    return frozenset(points)


def starts(start_points: Iterable[TxPoint], phase: SessionPhase, now: frozenset[TxPoint]) -> bool:
    """Whether a transaction begins now (none is running)."""
    if phase in (SessionPhase.IDLE, SessionPhase.FINISHING):
        return False
    return any(point in now for point in start_points)


def start_trigger(
    start_points: Iterable[TxPoint], now: frozenset[TxPoint], trigger: TxTrigger
) -> TxTrigger:
    """What started the transaction: the step's own trigger, unless the only start point
    that holds is one that step did not bring (the EV drawing, the cable plugged in)."""
    satisfied = now & frozenset(start_points)
    if satisfied == {TxPoint.ENERGY_TRANSFER}:
        return TxTrigger.CHARGING_STATE_CHANGED
    if satisfied == {TxPoint.EV_CONNECTED}:
        return TxTrigger.CABLE_PLUGGED_IN
    return trigger


def stop_reason(
    stop_points: Iterable[TxPoint],
    phase: SessionPhase,
    held: frozenset[TxPoint],
    now: frozenset[TxPoint],
) -> StopReason | None:
    """Why the running transaction ends now, or None if it goes on.

    `held` are the conditions that have held at some moment of this transaction.
    """
    if phase == SessionPhase.IDLE:
        return StopReason.EV_DISCONNECTED if TxPoint.EV_CONNECTED in held else StopReason.TIMEOUT
    wanted = set(stop_points)
    for point, reason in _STOP_REASONS:
        if point in wanted and point in held and point not in now:
            return reason
    return None


def offers_before_transaction(start_points: Iterable[TxPoint]) -> bool:
    """Whether power may be offered before the transaction exists (an EnergyTransfer
    start: the transaction begins when the EV draws)."""
    return TxPoint.ENERGY_TRANSFER in set(start_points)
