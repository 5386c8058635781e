"""The shared session machine (agent/core/session.py): one machine, many EVSE models.

What a fleet relies on: every station's EVSEs are models of one `SessionMachine`; each
model keeps its own state and its own event queue (a trigger fired while one of the same
model runs waits its turn, another model's does not), and the machine holds nothing of a
model once its events are done, so a stopped station is freed.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from agent.core.session import build_machine, session_machine
from agent.core.status import SessionPhase
from tests.fakes import wait_until


class Model:
    """The callbacks the session table names, recorded; `hold` blocks phase_changed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = SessionPhase.IDLE
        self.ev_here = True
        self.phases: list[SessionPhase] = []
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail = False

    async def phase_changed(self, *_: Any) -> None:
        self.phases.append(self.state)
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise RuntimeError("callback failed")

    def ev_present(self, *_: Any) -> bool:
        return self.ev_here

    def stops_on_ev_disconnect(self, *_: Any) -> bool:
        return True

    def arm_connection_timeout(self, *_: Any) -> None:
        pass

    async def fire(self, trigger: str) -> bool:
        result: bool = await getattr(self, trigger)()
        return result


def test_every_station_shares_one_machine() -> None:
    assert session_machine() is session_machine()


async def test_models_of_one_machine_keep_their_own_state() -> None:
    machine = build_machine()
    a, b = Model("a"), Model("b")
    machine.add_model(a)
    machine.add_model(b)

    await a.fire("plug")
    await b.fire("authorize")
    await a.fire("authorize")

    assert (a.state, b.state) == (SessionPhase.TRANSACTION, SessionPhase.AUTHORIZED)
    assert a.phases == [SessionPhase.PLUGGED, SessionPhase.TRANSACTION]
    assert b.phases == [SessionPhase.AUTHORIZED]


async def test_a_trigger_fired_during_a_running_one_waits_its_turn() -> None:
    machine = build_machine()
    model = Model("a")
    machine.add_model(model)
    model.hold = asyncio.Event()

    first = asyncio.create_task(model.fire("plug"))
    await wait_until(model.entered.is_set, "plug running")
    second = asyncio.create_task(model.fire("authorize"))
    await asyncio.sleep(0)
    assert model.phases == [SessionPhase.PLUGGED]  # authorize waits behind plug

    model.hold.set()
    await asyncio.gather(first, second)
    assert model.phases == [SessionPhase.PLUGGED, SessionPhase.TRANSACTION]
    assert model.state == SessionPhase.TRANSACTION


async def test_another_models_trigger_does_not_wait_for_a_running_one() -> None:
    machine = build_machine()
    slow, other = Model("slow"), Model("other")
    machine.add_model(slow)
    machine.add_model(other)
    slow.hold = asyncio.Event()

    running = asyncio.create_task(slow.fire("plug"))
    await wait_until(slow.entered.is_set, "slow plug running")
    assert await other.fire("plug")  # completes while slow's callback still runs

    assert other.state == SessionPhase.PLUGGED
    assert not running.done()
    slow.hold.set()
    await running


async def test_a_failing_callback_drops_that_models_queued_triggers_and_raises() -> None:
    machine = build_machine()
    model = Model("a")
    machine.add_model(model)
    model.hold = asyncio.Event()
    model.fail = True

    first = asyncio.create_task(model.fire("plug"))
    await wait_until(model.entered.is_set, "plug running")
    queued = asyncio.create_task(model.fire("authorize"))
    await asyncio.sleep(0)
    model.hold.set()

    with pytest.raises(RuntimeError, match="callback failed"):
        await first
    assert await queued  # accepted into the queue, then dropped with it
    assert model.phases == [SessionPhase.PLUGGED]
    model.fail, model.hold = False, None
    assert await model.fire("authorize")  # the model goes on with a fresh queue
    assert model.state == SessionPhase.TRANSACTION


async def test_the_machine_keeps_nothing_of_a_model_once_its_events_are_done() -> None:
    machine = build_machine()
    model = Model("a")
    machine.add_model(model)
    await model.fire("plug")
    await model.fire("unplug")
    gone = weakref.ref(model)

    del model
    gc.collect()

    assert gone() is None
    assert machine.models == []
    assert machine._queues == {}


async def test_an_invalid_trigger_is_ignored_and_the_state_stays() -> None:
    machine = build_machine()
    model = Model("a")
    machine.add_model(model)

    await model.fire("unplug")  # no transition from IDLE

    assert model.state == SessionPhase.IDLE
    assert model.phases == []
