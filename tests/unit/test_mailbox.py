"""`Mailbox` and `Signal` (agent/core/tasks.py): asyncio.Queue's and asyncio.Event's
contracts for the objects a fleet holds thousands of (issue 8).

An EVSE's lifecycle jobs and an adapter's status reports go through a Mailbox; the 2.0.1
reservations wait (join) until every queued status was sent. Each contract test runs
against the asyncio original and the lean one, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.core.tasks import Mailbox, Signal
from tests.fakes import settle, wait_until


@pytest.fixture(params=[asyncio.Queue, Mailbox], ids=["Queue", "Mailbox"])
def queue(request: pytest.FixtureRequest) -> Any:
    return request.param()


@pytest.fixture(params=[asyncio.Event, Signal], ids=["Event", "Signal"])
def flag(request: pytest.FixtureRequest) -> Any:
    return request.param()


async def test_items_come_out_in_the_order_they_were_put(queue: Any) -> None:
    for item in ("a", "b", "c"):
        queue.put_nowait(item)
    assert queue.qsize() == 3 and not queue.empty()
    assert [await queue.get(), queue.get_nowait(), await queue.get()] == ["a", "b", "c"]
    assert queue.empty() and queue.qsize() == 0


async def test_get_nowait_on_an_empty_queue_raises_queue_empty(queue: Any) -> None:
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_waiting_getter_gets_the_item_put_later(queue: Any) -> None:
    getter = asyncio.create_task(queue.get())
    await settle()
    assert not getter.done()
    queue.put_nowait(42)
    await wait_until(getter.done, "the getter woken")
    assert getter.result() == 42


async def test_several_getters_each_get_one_item_and_none_is_lost(queue: Any) -> None:
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    for item in (1, 2, 3):
        queue.put_nowait(item)
    await wait_until(lambda: all(g.done() for g in getters), "every getter served")
    assert sorted(g.result() for g in getters) == [1, 2, 3]
    assert queue.empty()


async def test_a_cancelled_getter_leaves_the_item_for_the_next(queue: Any) -> None:
    cancelled = asyncio.create_task(queue.get())
    await settle()
    queue.put_nowait("job")
    cancelled.cancel()  # woken but cancelled before it ran
    await settle()
    assert cancelled.cancelled()
    assert await asyncio.wait_for(queue.get(), 1) == "job"


async def test_join_waits_until_every_item_put_is_marked_done(queue: Any) -> None:
    await asyncio.wait_for(queue.join(), 1)  # nothing put: at once
    queue.put_nowait("x")
    queue.put_nowait("y")
    joined = asyncio.create_task(queue.join())
    await queue.get()
    queue.task_done()
    await settle()
    assert not joined.done()  # "y" is still unfinished
    await queue.get()
    queue.task_done()
    await wait_until(joined.done, "join returned")
    queue.put_nowait("z")  # unfinished again: a new join waits
    again = asyncio.create_task(queue.join())
    await settle()
    assert not again.done()
    again.cancel()


async def test_task_done_more_often_than_put_raises_value_error(queue: Any) -> None:
    queue.put_nowait(1)
    await queue.get()
    queue.task_done()
    with pytest.raises(ValueError):
        queue.task_done()


async def test_a_flag_set_then_cleared_at_once_still_wakes_the_waiters(flag: Any) -> None:
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await settle()
    flag.set()
    flag.clear()
    await wait_until(lambda: all(w.done() for w in waiters), "both woken")
    assert [w.result() for w in waiters] == [True, True]
    assert not flag.is_set()
    late = asyncio.create_task(flag.wait())  # cleared: a new waiter waits for the next set
    await settle()
    assert not late.done()
    late.cancel()


async def test_a_cancelled_signal_waiter_is_forgotten() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait())
    await settle()
    waiter.cancel()
    await settle()
    assert waiter.cancelled()
    assert signal._waiters == []  # nothing held for a waiter that left
