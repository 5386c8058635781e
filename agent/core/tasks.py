"""A tracked set of background tasks: nothing fire-and-forget, every failure logged;
`sleep_unless`, the one way a loop waits for a time or an earlier change; `next_tick`,
how a periodic loop finds its next due time (no drift, no bursts); `Signal`, an
asyncio.Event, and `Mailbox`, an unbounded asyncio.Queue, for objects a fleet holds
thousands of."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """Keeps references to the tasks it starts, logs their failures, cancels them all."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Start `coro` as a tracked task and return it."""
        task = asyncio.get_running_loop().create_task(coro, name=name or self._name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s failed", self._name, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until they have finished."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Signal:
    """asyncio.Event's contract (set, clear, is_set, wait) in about 100 bytes.

    asyncio.Event allocates a deque for its waiters up front (about 850 bytes with it);
    a station holds a dozen such flags and a fleet thousands of stations. Waiters are
    woken in the order they came, as asyncio.Event's are.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if not self._set:
            self._set = True
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        """Reset the flag (waiters then wait for the next set())."""
        self._set = False

    async def wait(self) -> bool:
        """Return True once the flag is set (at once if it is)."""
        if not self._set:
            await self.waiter()
        return True

    def waiter(self) -> asyncio.Future[None]:
        """A future that completes once the flag is set, at once if it is (cancel it to
        stop waiting): what wait() awaits, for a caller that needs a future rather than
        a task."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._set:
            waiter.set_result(None)
            return waiter
        self._waiters.append(waiter)
        waiter.add_done_callback(self._waiters.remove)
        return waiter


async def wait_any(signals: Sequence[Signal]) -> None:
    """Return once any of `signals` is set (at once if one is). One future waits on all
    of them: no task, and nothing left behind in the others when one fires."""
    if any(signal.is_set() for signal in signals):
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for signal in signals:
        signal._waiters.append(waiter)
    try:
        await waiter
    finally:
        for signal in signals:
            signal._waiters.remove(waiter)


def flag_waiter(flag: asyncio.Event | Signal) -> asyncio.Future[Any]:
    """A future that completes when `flag` is set (at once if it is); cancel it to stop
    waiting. A Signal hands out a future; an asyncio.Event needs a task to wait for it."""
    return flag.waiter() if isinstance(flag, Signal) else asyncio.ensure_future(flag.wait())


class Mailbox(Generic[T]):
    """An unbounded asyncio.Queue (put_nowait, get, get_nowait, empty, qsize, task_done,
    join) in about 250 bytes instead of about 3 KiB.

    asyncio.Queue holds four deques (its items, getters, putters and the Event of join);
    this holds a list and a Signal, and a second Signal only once join() has to wait.
    Meant for the short queues of one station (an EVSE's lifecycle jobs, the status
    changes to report): taking an item moves the rest (list.pop(0)). Several getters
    may wait; each item goes to one of them.
    """

    __slots__ = ("_finished", "_items", "_ready", "_unfinished")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._ready = Signal()  # set by put_nowait; a getter clears it before waiting
        self._unfinished = 0  # items put and not yet task_done()
        self._finished: Signal | None = None  # what join() waits for, made by the first

    def qsize(self) -> int:
        """The number of items waiting."""
        return len(self._items)

    def empty(self) -> bool:
        """Whether no item is waiting."""
        return not self._items

    def put_nowait(self, item: T) -> None:
        """Add `item` and wake a getter."""
        self._items.append(item)
        self._unfinished += 1
        if self._finished is not None:
            self._finished.clear()
        self._ready.set()

    def get_nowait(self) -> T:
        """Remove and return the oldest item; raises asyncio.QueueEmpty if there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> T:
        """Remove and return the oldest item, waiting for one (at once if one waits)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.pop(0)

    def task_done(self) -> None:
        """Mark one item got earlier as processed (join() returns once all are); raises
        ValueError if called more times than items were put."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        """Return once every item put has been marked task_done() (at once if so)."""
        if self._unfinished > 0:
            if self._finished is None:
                self._finished = Signal()
            await self._finished.wait()


async def sleep_unless(
    sleep: Callable[[float], Awaitable[None]], seconds: float, event: asyncio.Event | Signal
) -> None:
    """Return after `sleep(seconds)` (a Clock's sleep), or earlier once `event` is set.

    The sleep runs in the calling task and the event, once set, cancels it, as
    asyncio.timeout() does at its deadline: no task for the sleep and no asyncio.wait,
    and with a Signal no task at all (about 4 KiB less for every loop waiting so; a fleet
    has thousands). A cancel from elsewhere still propagates.
    """
    if event.is_set():
        await asyncio.sleep(0)  # the caller yields, as it would waiting
        return
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("sleep_unless needs a running task")
    cancels_before = task.cancelling()
    sleeping = True
    woken = False

    def wake(_: asyncio.Future[Any]) -> None:
        nonlocal woken
        if sleeping:  # a callback already queued when the sleep ended must do nothing
            woken = True
            task.cancel()

    waiter = flag_waiter(event)
    waiter.add_done_callback(wake)
    try:
        await sleep(seconds)
    except asyncio.CancelledError:
        if woken and task.uncancel() <= cancels_before:
            return  # our own cancel: the event was set
        raise
    finally:
        sleeping = False
        waiter.remove_done_callback(wake)
        waiter.cancel()


def next_tick(due: datetime, interval_s: float, now: datetime) -> datetime:
    """The next due time of a periodic loop whose last tick was due at `due`: the first
    of due + k x interval (k >= 1) not before `now`.

    A loop that sleeps until that time ticks at start + k x interval however long each
    tick's work takes (no drift, so stations started apart stay apart under load); ticks
    missed while the work or the event loop ran late are skipped, not sent in a burst.
    If `now` is so far before `due` that the wall clock must have been set back, the
    count starts again from `now`. Raises ValueError unless interval_s > 0.
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    step = timedelta(seconds=interval_s)
    if due - now > step:
        return now + step
    behind = -((due - now) // step)  # whole or part intervals `now` is past `due`
    return due + max(1, behind) * step
