"""The session machine: the life of one EVSE's session, as a table.

One `transitions.AsyncMachine` serves every EVSE of the process (`session_machine()`:
each EVSE is a model of it, as STYLE.md recommends for fleet mode). States are
`SessionPhase`; the table below is the whole behaviour, and the callbacks it names live on
the model (agent.core.evse.Evse). Events are queued per model, so a trigger fired while
another is running waits its turn.

The machine is `SessionMachine`, an AsyncMachine made for thousands of models: adding a
model binds only the table's triggers to it (no is_<state>/may_<trigger> helpers, which
nothing uses), the machine keeps no list of its models (an EVSE is freed with its
station; there is nothing to remove), and a model's event queue exists only while it has
events queued. A fleet station then costs about 1 KiB of session machinery instead of 17
(bench/_fleet_memory.py).

TRANSACTION is the charging session: authorized, with a car (the power path may close).
With OCPP 1.6's rule it coincides with the transaction; with other 2.0.1 start points a
transaction may already run in PLUGGED or AUTHORIZED (agent.core.txpoints).

Only the lifecycle is here. What the hardware does (PWM, contactor) is derived from the
phase and the inputs by agent.core.outputs, so an unplug or a fault never waits behind a
transition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import cache, partial
from typing import TYPE_CHECKING, Any, Literal

from transitions.extensions.asyncio import AsyncMachine

from agent.core.status import SessionPhase

if TYPE_CHECKING:
    from transitions.core import StateIdentifier  # in the stubs only

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


class SessionMachine(AsyncMachine):
    """An AsyncMachine (queued per model) that many models share at little cost each.

    Differences from AsyncMachine, none of them visible to a model: `add_model` sets the
    initial state and binds one method per trigger (`await evse.plug()`), nothing else;
    the machine holds no reference to its models (so `models`, `dispatch` and
    `remove_model` do not apply); a model's queue is made on its first event and dropped
    once it has drained.
    """

    def __init__(self, **kwargs: Any) -> None:
        """AsyncMachine's keyword arguments; `queued` must be "model"."""
        if kwargs.get("queued") != "model":
            raise ValueError('SessionMachine queues per model: pass queued="model"')
        super().__init__(**kwargs)
        #: The triggers waiting per model (by id), the running one first.
        self._queues: dict[int, deque[Callable[[], Awaitable[None]]]] = {}

    def add_model(
        self,
        model: Literal["self"] | object | Sequence[Literal["self"] | object],
        initial: StateIdentifier | None = None,
    ) -> None:
        """Put `model` in the initial state and bind the table's triggers to it."""
        models = model if isinstance(model, list | tuple) else [model]
        state = initial if initial is not None else self.initial
        if state is None:
            raise ValueError("no initial state")
        for one in models:
            for trigger, event in self.events.items():
                setattr(one, trigger, partial(event.trigger, one))
            self.set_state(state, model=one)

    def remove_model(self, model: object | Sequence[object]) -> None:
        """Nothing to do: the machine keeps no reference to its models."""

    async def _process_async(self, trigger: Callable[[], Awaitable[None]], model: object) -> bool:
        """Run `trigger` now, or after the model's running and queued events (AsyncMachine's
        queued="model" behaviour, with the queue kept only while it is not empty)."""
        key = id(model)  # the queued triggers hold the model: its id is not reused meanwhile
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(trigger)  # the task draining this queue will run it
            return True
        queue = self._queues[key] = deque([trigger])
        try:
            while queue:
                try:
                    await queue[0]()
                except BaseException:
                    queue.clear()  # as AsyncMachine: the queued events are dropped
                    raise
                queue.popleft()
        finally:
            del self._queues[key]
        return True


def build_machine() -> SessionMachine:
    """A machine with the session table and no models; add each EVSE with add_model()."""
    return SessionMachine(
        model=None,
        states=SessionPhase,
        transitions=TRANSITIONS,
        initial=SessionPhase.IDLE,
        auto_transitions=False,
        queued="model",
        ignore_invalid_triggers=True,
        after_state_change="phase_changed",
    )


@cache
def session_machine() -> SessionMachine:
    """The process's one session machine, which every station's EVSEs share."""
    return build_machine()
