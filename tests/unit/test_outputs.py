"""The contactor and PWM rule: energy flows only in a transaction, to a ready EV, fault-free,
with a limit PWM can express (IEC 61851-1 Table A.8: at least 6 A)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.iec61851 import duty_percent_for_current
from agent.core.outputs import SAFE, Outputs, derive_outputs
from agent.core.status import SessionPhase
from drivers.types import FaultCode, PilotState

T = SessionPhase.TRANSACTION
NO_FAULT: frozenset[FaultCode] = frozenset()
DUTY_32_A = duty_percent_for_current(32.0)

# phase, pilot, faults, limit_a -> duty_percent, contactor_closed
CASES: list[tuple[str, SessionPhase, PilotState, frozenset[FaultCode], float, Outputs]] = [
    ("charging in C", T, PilotState.C, NO_FAULT, 32.0, Outputs(DUTY_32_A, True)),
    ("charging in D", T, PilotState.D, NO_FAULT, 32.0, Outputs(DUTY_32_A, True)),
    ("6 A is the least allowed", T, PilotState.C, NO_FAULT, 6.0, Outputs(10.0, True)),
    ("offered, EV not ready (B)", T, PilotState.B, NO_FAULT, 32.0, Outputs(DUTY_32_A, False)),
    ("unplugged, tx kept", T, PilotState.A, NO_FAULT, 32.0, Outputs(DUTY_32_A, False)),
    ("pilot short (E)", T, PilotState.E, NO_FAULT, 32.0, Outputs(DUTY_32_A, False)),
    ("pilot -12 V (F)", T, PilotState.F, NO_FAULT, 32.0, Outputs(DUTY_32_A, False)),
    ("fault", T, PilotState.C, frozenset({FaultCode.RCD_TRIP}), 32.0, SAFE),
    ("limit below 6 A pauses", T, PilotState.C, NO_FAULT, 5.9, SAFE),
    ("limit zero pauses", T, PilotState.C, NO_FAULT, 0.0, SAFE),
    ("no transaction: idle", SessionPhase.IDLE, PilotState.C, NO_FAULT, 32.0, SAFE),
    ("no transaction: authorized", SessionPhase.AUTHORIZED, PilotState.C, NO_FAULT, 32.0, SAFE),
    ("no transaction: plugged", SessionPhase.PLUGGED, PilotState.C, NO_FAULT, 32.0, SAFE),
    ("transaction over", SessionPhase.FINISHING, PilotState.C, NO_FAULT, 32.0, SAFE),
]


@pytest.mark.parametrize(
    ("phase", "pilot", "faults", "limit_a", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_outputs(
    phase: SessionPhase,
    pilot: PilotState,
    faults: frozenset[FaultCode],
    limit_a: float,
    expected: Outputs,
) -> None:
    assert derive_outputs(phase=phase, pilot=pilot, faults=faults, limit_a=limit_a) == expected


def test_safe_outputs_offer_nothing_and_keep_the_contactor_open() -> None:
    assert SAFE.duty_percent is None
    assert not SAFE.offering
    assert not SAFE.contactor_closed


@given(
    phase=st.sampled_from(list(SessionPhase)),
    pilot=st.sampled_from(list(PilotState)),
    faults=st.frozensets(st.sampled_from(list(FaultCode))),
    limit_a=st.floats(min_value=-10.0, max_value=200.0),
)
def test_contactor_closes_only_for_a_fault_free_transaction_with_a_ready_ev(
    phase: SessionPhase, pilot: PilotState, faults: frozenset[FaultCode], limit_a: float
) -> None:
    outputs = derive_outputs(phase=phase, pilot=pilot, faults=faults, limit_a=limit_a)
    if outputs.contactor_closed:
        assert phase == SessionPhase.TRANSACTION
        assert pilot in (PilotState.C, PilotState.D)
        assert not faults
        assert outputs.offering
        assert limit_a >= 6.0
    if outputs.offering:
        assert outputs.duty_percent is not None
        assert 10.0 <= outputs.duty_percent <= 96.0
