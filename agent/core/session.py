"""The session machine: the life of one EVSE's session, as a table.

One `transitions.AsyncMachine` serves every EVSE (each EVSE is a model added to it, as
STYLE.md recommends for fleet mode). States are `SessionPhase`; the table below is the
whole behaviour, and the callbacks it names live on the model (agent.core.evse.Evse).
Events are queued per model, so a trigger fired while another is running waits its turn.

TRANSACTION is the charging session: authorized, with a car (the power path may close).
With OCPP 1.6's rule it coincides with the transaction; with other 2.0.1 start points a
transaction may already run in PLUGGED or AUTHORIZED (agent.core.txpoints).

Only the lifecycle is here. What the hardware does (PWM, contactor) is derived from the
phase and the inputs by agent.core.outputs, so an unplug or a fault never waits behind a
transition.
"""

from __future__ import annotations

from typing import Any

from transitions.extensions.asyncio import AsyncMachine

from agent.core.status import SessionPhase

IDLE, AUTHORIZED, PLUGGED, TRANSACTION, FINISHING = (
    SessionPhase.IDLE,
    SessionPhase.AUTHORIZED,
    SessionPhase.PLUGGED,
    SessionPhase.TRANSACTION,
    SessionPhase.FINISHING,
)

#: trigger, sources, destination, conditions. The table is the session only (who is
#: authorized, whether a car is here); when a transaction starts and ends follows from it
#: by the rules of agent.core.txpoints, applied by the EVSE after every step.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "plug", "source": IDLE, "dest": PLUGGED},
    {"trigger": "plug", "source": AUTHORIZED, "dest": TRANSACTION},
    {"trigger": "authorize", "source": [PLUGGED, FINISHING], "dest": TRANSACTION},
    {"trigger": "authorize", "source": IDLE, "dest": AUTHORIZED, "after": "arm_connection_timeout"},
    {"trigger": "cancel_authorization", "source": AUTHORIZED, "dest": IDLE},
    {"trigger": "unplug", "source": [PLUGGED, FINISHING], "dest": IDLE},
    {
        "trigger": "unplug",
        "source": TRANSACTION,
        "dest": IDLE,
        "conditions": "stops_on_ev_disconnect",
    },
    # The authorization ends (a stop, or a transaction that could not start).
    {
        "trigger": "end",
        "source": [TRANSACTION, PLUGGED],
        "dest": FINISHING,
        "conditions": "ev_present",
    },
    {"trigger": "end", "source": [TRANSACTION, PLUGGED], "dest": IDLE, "unless": "ev_present"},
    {"trigger": "end", "source": AUTHORIZED, "dest": IDLE},
]


def build_machine() -> AsyncMachine:
    """A machine with the session table and no models; add each EVSE with add_model()."""
    return AsyncMachine(
        model=None,
        states=SessionPhase,
        transitions=TRANSITIONS,
        initial=SessionPhase.IDLE,
        auto_transitions=False,
        queued="model",
        ignore_invalid_triggers=True,
        after_state_change="phase_changed",
    )
