"""What the EVSE's hardware should be doing: a pure function of its inputs.

The contactor closes only with a transaction running, the EV in state C or D, no active
fault and a current limit of at least 6 A. It opens on unplug, state B, E or F, a fault,
a stop or pause, or a limit below 6 A (IEC 61851-1 Table A.8: below 6 A the EV is paused,
here by holding the pilot at +12 V, state x1).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.iec61851 import READY_STATES, duty_percent_for_current
from agent.core.status import SessionPhase
from drivers.types import FaultCode, PilotState


@dataclass(frozen=True, slots=True)
class Outputs:
    """The commanded state of the pilot generator and the contactor."""

    duty_percent: float | None  # None: constant +12 V (no PWM)
    contactor_closed: bool

    @property
    def offering(self) -> bool:
        """Whether the EV is allowed to draw current."""
        return self.duty_percent is not None


SAFE = Outputs(duty_percent=None, contactor_closed=False)


def derive_outputs(
    *,
    phase: SessionPhase,
    pilot: PilotState,
    faults: frozenset[FaultCode],
    limit_a: float,
) -> Outputs:
    """The outputs for these inputs; SAFE whenever energy must not flow."""
    if phase != SessionPhase.TRANSACTION or faults:
        return SAFE
    duty = duty_percent_for_current(limit_a)
    if duty is None:
        return SAFE
    return Outputs(duty_percent=duty, contactor_closed=pilot in READY_STATES)
