"""The derived connector status (OCPP 1.6 section 4.9 meanings) and the primary fault."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.status import (
    ConnectorStatus,
    SessionPhase,
    StatusInputs,
    derive_status,
    primary_fault,
)
from drivers.types import FaultCode, PilotState

S = ConnectorStatus
IDLE, AUTHORIZED, PLUGGED, TRANSACTION, FINISHING = (
    SessionPhase.IDLE,
    SessionPhase.AUTHORIZED,
    SessionPhase.PLUGGED,
    SessionPhase.TRANSACTION,
    SessionPhase.FINISHING,
)
A, B, C, D = PilotState.A, PilotState.B, PilotState.C, PilotState.D
NO_FAULT: frozenset[FaultCode] = frozenset()
GROUND = frozenset({FaultCode.GROUND_FAULT})

# phase, pilot, offering, faults, operative, reserved -> status
CASES: list[tuple[str, SessionPhase, PilotState, bool, frozenset[FaultCode], bool, bool, S]] = [
    ("free connector", IDLE, A, False, NO_FAULT, True, False, S.AVAILABLE),
    ("reserved and free", IDLE, A, False, NO_FAULT, True, True, S.RESERVED),
    ("inoperative", IDLE, A, False, NO_FAULT, False, False, S.UNAVAILABLE),
    ("inoperative beats reserved", IDLE, A, False, NO_FAULT, False, True, S.UNAVAILABLE),
    ("token accepted, no car yet", AUTHORIZED, A, False, NO_FAULT, True, False, S.PREPARING),
    ("preparing beats reserved", AUTHORIZED, A, False, NO_FAULT, True, True, S.PREPARING),
    ("car plugged, no token yet", PLUGGED, B, False, NO_FAULT, True, False, S.PREPARING),
    ("car plugged while reserved", PLUGGED, B, False, NO_FAULT, True, True, S.PREPARING),
    ("car plugged, inoperative", PLUGGED, B, False, NO_FAULT, False, False, S.UNAVAILABLE),
    ("energy flowing (C)", TRANSACTION, C, True, NO_FAULT, True, False, S.CHARGING),
    ("energy flowing (D)", TRANSACTION, D, True, NO_FAULT, True, False, S.CHARGING),
    ("offered, EV not taking", TRANSACTION, B, True, NO_FAULT, True, False, S.SUSPENDED_EV),
    ("offered, EV unplugged, tx kept", TRANSACTION, A, True, NO_FAULT, True, False, S.SUSPENDED_EV),
    ("EV ready, EVSE not offering", TRANSACTION, C, False, NO_FAULT, True, False, S.SUSPENDED_EVSE),
    ("nobody wants energy", TRANSACTION, B, False, NO_FAULT, True, False, S.SUSPENDED_EVSE),
    # OCPP 1.6 section 5.2: Inoperative during a transaction is Scheduled for its end.
    ("scheduled inoperative, charging", TRANSACTION, C, True, NO_FAULT, False, False, S.CHARGING),
    ("scheduled inop., suspended EV", TRANSACTION, B, True, NO_FAULT, False, False, S.SUSPENDED_EV),
    ("scheduled inop., suspended", TRANSACTION, B, False, NO_FAULT, False, False, S.SUSPENDED_EVSE),
    ("transaction beats reserved", TRANSACTION, C, True, NO_FAULT, True, True, S.CHARGING),
    ("tx ended, cable still in", FINISHING, B, False, NO_FAULT, True, False, S.FINISHING),
    ("finishing beats reserved", FINISHING, B, False, NO_FAULT, True, True, S.FINISHING),
    ("scheduled inoperative applied", FINISHING, B, False, NO_FAULT, False, False, S.UNAVAILABLE),
    ("fault while free", IDLE, A, False, GROUND, True, False, S.FAULTED),
    ("fault while charging", TRANSACTION, C, True, GROUND, True, False, S.FAULTED),
    ("fault while inoperative", IDLE, A, False, GROUND, False, False, S.FAULTED),
    ("fault while reserved", IDLE, A, False, GROUND, True, True, S.FAULTED),
    ("fault while finishing", FINISHING, B, False, GROUND, True, False, S.FAULTED),
    ("fault while preparing", PLUGGED, B, False, GROUND, True, False, S.FAULTED),
]


@pytest.mark.parametrize(
    ("phase", "pilot", "offering", "faults", "operative", "reserved", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_derived_status(
    phase: SessionPhase,
    pilot: PilotState,
    offering: bool,
    faults: frozenset[FaultCode],
    operative: bool,
    reserved: bool,
    expected: ConnectorStatus,
) -> None:
    inputs = StatusInputs(phase, pilot, offering, faults, operative, reserved)
    assert derive_status(inputs) == expected


def test_the_table_covers_every_connector_status() -> None:
    assert {case[-1] for case in CASES} == set(ConnectorStatus)


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (frozenset(), None),
        (frozenset({FaultCode.METER_LOST}), FaultCode.METER_LOST),
        (frozenset({FaultCode.METER_LOST, FaultCode.GROUND_FAULT}), FaultCode.GROUND_FAULT),
        (frozenset({FaultCode.INTERNAL_ERROR, FaultCode.PILOT_FAULT}), FaultCode.PILOT_FAULT),
        (frozenset(FaultCode), FaultCode.GROUND_FAULT),
    ],
)
def test_primary_fault_is_the_first_active_in_catalogue_order(
    faults: frozenset[FaultCode], expected: FaultCode | None
) -> None:
    assert primary_fault(faults) == expected


inputs_strategy = st.builds(
    StatusInputs,
    phase=st.sampled_from(list(SessionPhase)),
    pilot=st.sampled_from(list(PilotState)),
    offering=st.booleans(),
    faults=st.frozensets(st.sampled_from(list(FaultCode))),
    operative=st.booleans(),
    reserved=st.booleans(),
)


@given(inputs_strategy)
def test_status_is_total_and_faulted_exactly_when_a_fault_is_active(inputs: StatusInputs) -> None:
    status = derive_status(inputs)
    assert isinstance(status, ConnectorStatus)
    assert (status == ConnectorStatus.FAULTED) == bool(inputs.faults)


@given(inputs_strategy)
def test_reserved_and_available_only_for_a_free_operative_connector(inputs: StatusInputs) -> None:
    status = derive_status(inputs)
    free = inputs.phase == SessionPhase.IDLE and inputs.operative and not inputs.faults
    if status in (ConnectorStatus.AVAILABLE, ConnectorStatus.RESERVED):
        assert free
        assert (status == ConnectorStatus.RESERVED) == inputs.reserved


@given(st.frozensets(st.sampled_from(list(FaultCode)), min_size=1))
def test_primary_fault_is_one_of_the_active_faults(faults: frozenset[FaultCode]) -> None:
    fault = primary_fault(faults)
    assert fault in faults
    order = list(FaultCode)
    assert all(order.index(fault) <= order.index(other) for other in faults)
