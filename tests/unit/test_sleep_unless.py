"""`sleep_unless` and `Signal` (agent/core/tasks.py): wait for a time or an earlier change.

Every loop that waits "until the next due time, unless something changes" uses it
(heartbeats, smart charging, the station's timers, the store's retry), so its contract
is pinned here on a FakeClock: it returns at the time, or as soon as the event is set;
a cancel from outside is never swallowed, even when it meets the event; and nothing it
started is left running. Each test runs with an asyncio.Event and with a Signal (the
lean flag with the same contract).
"""

from __future__ import annotations

import asyncio

import pytest

from agent.core.tasks import Signal, flag_waiter, sleep_unless, wait_any
from tests.fakes import FakeClock, settle, wait_until

Flag = asyncio.Event | Signal


@pytest.fixture(params=[asyncio.Event, Signal], ids=["Event", "Signal"])
def event(request: pytest.FixtureRequest) -> Flag:
    flag: Flag = request.param()
    return flag


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_it_returns_when_the_time_has_passed(event: Flag) -> None:
    clock = FakeClock()
    waiting = asyncio.create_task(sleep_unless(clock.sleep, 10, event))
    await wait_until(lambda: len(clock.deadlines()) == 1, "sleeping")

    clock.advance(9.9)
    await settle()
    assert not waiting.done()
    clock.advance(0.1)
    await waiting
    await settle(3)
    assert other_tasks() == set()  # the event's waiter is gone too


async def test_it_returns_as_soon_as_the_event_is_set_and_the_caller_goes_on(event: Flag) -> None:
    clock = FakeClock()
    after: list[str] = []

    async def loop() -> None:
        await sleep_unless(clock.sleep, 3600, event)
        after.append("woken")
        await asyncio.sleep(0)  # the caller is not left cancelled
        after.append("went on")

    task = asyncio.create_task(loop())
    await wait_until(lambda: len(clock.deadlines()) == 1, "sleeping")
    event.set()
    await task

    assert after == ["woken", "went on"]
    assert not task.cancelled()
    assert clock.deadlines() == []  # the sleep was given up
    await settle(3)
    assert other_tasks() == set()


async def test_an_event_already_set_returns_at_once(event: Flag) -> None:
    clock = FakeClock()
    event.set()

    await asyncio.wait_for(sleep_unless(clock.sleep, 3600, event), timeout=1)

    assert clock.deadlines() == []


async def test_a_cancel_from_outside_propagates(event: Flag) -> None:
    clock = FakeClock()
    task = asyncio.create_task(sleep_unless(clock.sleep, 3600, event))
    await wait_until(lambda: len(clock.deadlines()) == 1, "sleeping")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(3)
    assert other_tasks() == set()


async def test_a_cancel_from_outside_that_meets_the_event_still_propagates(event: Flag) -> None:
    clock = FakeClock()
    task = asyncio.create_task(sleep_unless(clock.sleep, 3600, event))
    await wait_until(lambda: len(clock.deadlines()) == 1, "sleeping")

    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_event_set_as_the_sleep_ends_leaves_the_caller_uncancelled(event: Flag) -> None:
    clock = FakeClock()
    done: list[str] = []

    async def loop() -> None:
        await sleep_unless(clock.sleep, 10, event)
        for _ in range(5):
            await asyncio.sleep(0)  # a late wake-up must not cancel any of these
        done.append("ok")

    task = asyncio.create_task(loop())
    await wait_until(lambda: len(clock.deadlines()) == 1, "sleeping")
    clock.advance(10)
    event.set()
    await task

    assert done == ["ok"]


async def test_a_signal_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    signal = Signal()
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    await settle(3)
    assert not any(w.done() for w in waiters)

    signal.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert signal.is_set()
    assert await signal.wait()  # set: returns at once
    signal.clear()
    late = asyncio.create_task(signal.wait())
    await settle(3)
    assert not late.done()
    late.cancel()
    await settle(3)
    assert signal._waiters == []  # a cancelled wait leaves nothing behind


async def test_flag_waiter_completes_on_set_and_at_once_for_a_set_flag(event: Flag) -> None:
    waiter = flag_waiter(event)
    await settle()
    assert not waiter.done()
    event.set()
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(flag_waiter(event), 1)  # set already: completes without a set()


async def test_a_cancelled_flag_waiter_leaves_nothing_behind(event: Flag) -> None:
    before = other_tasks()
    waiter = flag_waiter(event)
    waiter.cancel()
    await settle()
    assert other_tasks() == before
    if isinstance(event, Signal):
        assert not event._waiters  # the cancelled waiter let go of the flag


async def test_wait_any_returns_when_one_of_its_signals_is_set_and_lets_go_of_all() -> None:
    first, second, third = Signal(), Signal(), Signal()
    waiting = asyncio.create_task(wait_any([first, second, third]))
    await settle()
    assert not waiting.done()
    second.set()
    await asyncio.wait_for(waiting, 1)
    assert not first._waiters and not second._waiters and not third._waiters
    await asyncio.wait_for(wait_any([first, second]), 1)  # one is set: at once


async def test_a_cancelled_wait_any_leaves_nothing_behind() -> None:
    first, second = Signal(), Signal()
    waiting = asyncio.create_task(wait_any([first, second]))
    await settle()
    waiting.cancel()
    await settle()
    assert waiting.cancelled()
    assert not first._waiters and not second._waiters
    first.set()  # nothing left to wake
