"""IEC 61851-1 pilot signalling: the decoder of pilot transitions and the PWM mapping.

Pure functions only. The decoder turns a change of measured pilot state into the EV
events the session layer understands; the mapping turns a current limit into the PWM
duty cycle the EV reads. Neither knows about sessions, transactions or OCPP.
"""

from __future__ import annotations

from enum import StrEnum

from drivers.types import PilotState

#: Below this current an AC EV may not be asked to charge (IEC 61851-1 Table A.8).
MIN_CURRENT_A = 6.0
#: The highest current PWM can express (96 % duty).
MAX_PWM_CURRENT_A = 80.0

PLUGGED_STATES = frozenset({PilotState.B, PilotState.C, PilotState.D})
READY_STATES = frozenset({PilotState.C, PilotState.D})
ERROR_STATES = frozenset({PilotState.E, PilotState.F})


class EvEvent(StrEnum):
    """What a pilot transition means for the session layer."""

    PLUGGED = "plugged"  # A -> B/C/D: a vehicle is connected
    UNPLUGGED = "unplugged"  # B/C/D/E/F -> A: the vehicle is gone
    READY = "ready"  # -> C/D: the EV asks for energy (S2 closed)
    NOT_READY = "not_ready"  # C/D -> B: the EV paused, is full, or asks to stop
    PILOT_ERROR = "pilot_error"  # -> E/F not driven by us: short, diode fault
    PILOT_ERROR_CLEARED = "pilot_error_cleared"


def duty_percent_for_current(current_a: float) -> float | None:
    """PWM duty for a current limit (IEC 61851-1 Table A.7); None below 6 A (pause the EV).

    6-51 A: duty = A / 0.6; 52.5-80 A: duty = A / 2.5 + 64; above 80 A the duty is capped
    at 96 % (80 A).
    """
    if current_a < MIN_CURRENT_A:
        return None
    current_a = min(current_a, MAX_PWM_CURRENT_A)
    if current_a <= 51.0:
        return round(current_a / 0.6, 2)
    if current_a < 52.5:
        # The table has no duty for 51-52.5 A: 85 % reads as 51 A and anything above 85 %
        # already reads as 52.5 A or more, so offer 51 A rather than more than the limit.
        return 85.0
    return round(current_a / 2.5 + 64.0, 2)


def current_for_duty_percent(duty_percent: float) -> float:
    """The current an EV reads from a duty (IEC 61851-1 Table A.8); 0 outside 8-97 %."""
    if 8.0 <= duty_percent < 10.0:
        return MIN_CURRENT_A
    if 10.0 <= duty_percent <= 85.0:
        return duty_percent * 0.6
    if 85.0 < duty_percent <= 97.0:
        return min((duty_percent - 64.0) * 2.5, MAX_PWM_CURRENT_A)
    return 0.0


class PilotDecoder:
    """Turns the sequence of measured pilot states into EV events (IEC 61851-1 Table A.3).

    It remembers the last good (non-error) state, so that B -> E -> B is an error that
    came and went with the car still there, and A -> E -> B is a car that arrived.
    A direct jump (A -> C, C -> A) yields every event on the way, in order.
    """

    def __init__(self) -> None:
        self.last_good = PilotState.A
        self.in_error = False

    def feed(self, state: PilotState, *, driving_f: bool = False) -> list[EvEvent]:
        """The EV events implied by a new measured state.

        `driving_f` says whether the EVSE itself holds the pilot at -12 V: then F is our
        own doing, read as "no information about the car", not as an error.
        """
        if state == PilotState.F and driving_f:
            return []
        events: list[EvEvent] = []
        if state in ERROR_STATES:
            if not self.in_error:
                self.in_error = True
                if self.last_good in READY_STATES:
                    events.append(EvEvent.NOT_READY)
                    self.last_good = PilotState.B  # energy stopped; the car may still be there
                events.append(EvEvent.PILOT_ERROR)
            return events
        if self.in_error:
            self.in_error = False
            events.append(EvEvent.PILOT_ERROR_CLEARED)
        before, self.last_good = self.last_good, state
        if before in READY_STATES and state not in READY_STATES:
            events.append(EvEvent.NOT_READY)
        if state == PilotState.A and before != PilotState.A:
            events.append(EvEvent.UNPLUGGED)
        if state in PLUGGED_STATES and before not in PLUGGED_STATES:
            events.append(EvEvent.PLUGGED)
        if state in READY_STATES and before not in READY_STATES:
            events.append(EvEvent.READY)
        return events
