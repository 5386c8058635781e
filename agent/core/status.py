"""Connector status, derived: one pure function of the EVSE's inputs.

The status the CSMS sees is never stored and never set by hand (DESIGN idea 2, after
MicroOcpp's Connector.cpp): it is recomputed from the session phase, the pilot, the
outputs, availability, reservation and faults every time one of them changes, and the
adapters report it when the result differs from what they last sent.

The vocabulary is OCPP 1.6's richer set; an adapter for a version with fewer states
(2.0.1's Occupied) folds it in its own table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from drivers.types import FaultCode, PilotState


class ConnectorStatus(StrEnum):
    """The status of a connector as a charge point operator sees it."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class SessionPhase(StrEnum):
    """Where the EVSE's session is in its life (the session machine's states)."""

    IDLE = "idle"  # no car, nobody authorized
    AUTHORIZED = "authorized"  # a token was accepted, waiting for the car
    PLUGGED = "plugged"  # a car is connected, waiting for a token
    TRANSACTION = "transaction"  # a transaction is running
    FINISHING = "finishing"  # the transaction ended, the car is still connected


@dataclass(frozen=True, slots=True)
class StatusInputs:
    """Everything the status depends on."""

    phase: SessionPhase
    pilot: PilotState
    offering: bool  # PWM on: the EVSE allows the EV to draw current
    faults: frozenset[FaultCode] = frozenset()
    operative: bool = True
    reserved: bool = False


def derive_status(inputs: StatusInputs) -> ConnectorStatus:
    """The connector status for these inputs (OCPP 1.6 section 4.9 state definitions)."""
    if inputs.faults:
        return ConnectorStatus.FAULTED
    phase = inputs.phase
    if phase == SessionPhase.TRANSACTION:
        # A change to Inoperative during a transaction is Scheduled: it waits for the end.
        if not inputs.offering:
            return ConnectorStatus.SUSPENDED_EVSE
        if inputs.pilot in (PilotState.C, PilotState.D):
            return ConnectorStatus.CHARGING
        return ConnectorStatus.SUSPENDED_EV
    if not inputs.operative:
        return ConnectorStatus.UNAVAILABLE
    if phase == SessionPhase.FINISHING:
        return ConnectorStatus.FINISHING
    if phase in (SessionPhase.AUTHORIZED, SessionPhase.PLUGGED):
        return ConnectorStatus.PREPARING
    if inputs.reserved:
        return ConnectorStatus.RESERVED
    return ConnectorStatus.AVAILABLE


#: Faults reported to the CSMS that do not stop charging: a dead card reader still
#: leaves remote start and a running session working (OCPP 1.6 lets StatusNotification
#: carry an errorCode with a status other than Faulted).
ADVISORY_FAULTS = frozenset({FaultCode.READER_FAILURE})


def primary_fault(faults: frozenset[FaultCode]) -> FaultCode | None:
    """The fault to report when several are active: the first in catalogue order."""
    for code in FaultCode:
        if code in faults:
            return code
    return None


def connector_statuses(
    inputs: StatusInputs,
    connector_ids: tuple[int, ...],
    advisory: frozenset[FaultCode] = frozenset(),
) -> dict[int, tuple[ConnectorStatus, FaultCode | None]]:
    """Status and reported fault of every connector of one EVSE.

    The session uses the first connector; the others are Unavailable while it is busy.
    A Faulted connector reports its blocking fault, any other an advisory one (or none).
    """
    fault = primary_fault(inputs.faults)
    notice = primary_fault(advisory)
    result: dict[int, tuple[ConnectorStatus, FaultCode | None]] = {}
    for index, connector_id in enumerate(connector_ids):
        if index == 0:
            status = derive_status(inputs)
        else:
            status = derive_status(replace(inputs, phase=SessionPhase.IDLE))
            if inputs.phase != SessionPhase.IDLE and status == ConnectorStatus.AVAILABLE:
                status = ConnectorStatus.UNAVAILABLE
        result[connector_id] = (status, fault if status == ConnectorStatus.FAULTED else notice)
    return result
