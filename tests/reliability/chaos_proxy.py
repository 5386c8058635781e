"""A TCP proxy that breaks the link between a station and its CSMS on a seeded schedule.

`ChaosProxy` listens on 127.0.0.1 (port 0) and forwards each accepted connection to the
upstream CSMS, byte for byte, in both directions. It counts the chunks it forwards; each
`Step` of its schedule fires once that many more chunks have gone through, on the
connection that forwarded the last one:

- `DROP`: close both sides (FIN), as a CSMS restart or a load balancer would;
- `STALL`: forward nothing either way for `duration_s`, buffering, then carry on (a
  congested or flapping link; longer than the station's response timeout, a CALL times
  out and its answer arrives late);
- `HALF_OPEN`: silently discard everything in one direction for `duration_s` without
  closing (a peer or NAT gone without a word), then reset the connection as the NAT
  finally would, unless an end gave up on it first;
- `RESET_MID_FRAME`: forward only the first half of the next chunk in one direction
  (a partial websocket frame), then reset both sides (TCP RST).

`schedule()` draws steps from a seed (`chaos_seed()`: CPAGENT_CHAOS_SEED or a fresh one,
printed), so a failing run can be replayed (timing still varies; the faults and their
order do not).

It must not: parse or change what it forwards (it knows nothing of websockets or OCPP),
leave a task or a socket behind after `stop()`, or bind anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]  # up: station -> CSMS; down: CSMS -> station
_CHUNK = 65536


def chaos_seed() -> int:
    """A run's seed: CPAGENT_CHAOS_SEED if set, else a fresh one (printed either way)."""
    text = os.environ.get("CPAGENT_CHAOS_SEED")
    seed = int(text) if text else random.SystemRandom().randrange(2**32)
    print(f"CPAGENT_CHAOS_SEED={seed}")
    return seed


class Fault(StrEnum):
    """What a step does to the connection."""

    DROP = "drop"
    STALL = "stall"
    HALF_OPEN = "half_open"
    RESET_MID_FRAME = "reset_mid_frame"


@dataclass(frozen=True, slots=True)
class Step:
    """One fault: fired after `after_chunks` more forwarded chunks."""

    fault: Fault
    after_chunks: int
    direction: Direction = "up"
    duration_s: float = 0.0


def schedule(
    seed: int,
    count: int,
    *,
    chunks: tuple[int, int] = (4, 30),
    stall_s: tuple[float, float] = (0.2, 3.0),
    half_open_s: tuple[float, float] = (0.5, 3.0),
    every_kind: bool = True,
) -> list[Step]:
    """`count` steps drawn from `seed`; with `every_kind`, each kind at least once (the
    first four steps, in a seeded order)."""
    rng = random.Random(seed)
    kinds = list(Fault)
    rng.shuffle(kinds)
    picks = kinds[:count] if every_kind else []
    picks += [rng.choice(list(Fault)) for _ in range(count - len(picks))]
    steps = []
    for fault in picks:
        duration = 0.0
        if fault == Fault.STALL:
            duration = rng.uniform(*stall_s)
        elif fault == Fault.HALF_OPEN:
            duration = rng.uniform(*half_open_s)
        direction: Direction = rng.choice(("up", "down"))
        steps.append(Step(fault, rng.randint(*chunks), direction, round(duration, 3)))
    return steps


@dataclass(eq=False)
class _Link:
    """One proxied connection: the station's side and the CSMS's side."""

    number: int
    station: asyncio.StreamWriter
    csms: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    discard: set[Direction] = field(default_factory=set)
    cut: set[Direction] = field(default_factory=set)
    closed: bool = False

    def __post_init__(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        """Close both sides gracefully (FIN)."""
        self.closed = True
        self.flowing.set()  # let a stalled pump see the end
        for writer in (self.station, self.csms):
            writer.close()

    def reset(self) -> None:
        """Reset both sides (RST: no FIN, unsent data dropped)."""
        self.closed = True
        self.flowing.set()
        for writer in (self.station, self.csms):
            writer.transport.abort()


class ChaosProxy:
    """Forwards 127.0.0.1:<port> to the CSMS at upstream_host:upstream_port, breaking the
    link as its schedule says; `applied` records what was done, in order."""

    def __init__(self, upstream_host: str, upstream_port: int, steps: list[Step]) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._steps = list(steps)
        self._countdown = self._steps[0].after_chunks if self._steps else 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_applied = asyncio.Event()
        if not self._steps:
            self._all_applied.set()
        self.applied: list[tuple[int, Step]] = []  # (link number, step)
        self.connections = 0

    async def start(self) -> None:
        """Listen on 127.0.0.1, port 0; raises OSError."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        """The bound port; raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("proxy not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/ocpp") -> str:
        """The ws:// URL of the proxy with `path`."""
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def pending(self) -> int:
        """Steps not yet fired."""
        return len(self._steps)

    async def wait_all_applied(self, timeout_s: float) -> None:
        """Return once every step has fired; raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            await self._all_applied.wait()

    async def stop(self) -> None:
        """Stop listening, reset every link and wait for every task."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            link.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("chaos proxy task %s failed", task.get_name(), exc_info=task.exception())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(self.connections, writer, up_writer)
        self._links.add(link)
        self._spawn(self._pump(link, "up", reader, up_writer), f"chaos-up-{link.number}")
        self._spawn(self._pump(link, "down", up_reader, writer), f"chaos-down-{link.number}")

    async def _pump(
        self,
        link: _Link,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Forward one direction until either side ends; then close the link."""
        try:
            while not link.closed:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await link.flowing.wait()
                if link.closed:
                    break
                if direction in link.discard:
                    continue
                if direction in link.cut:
                    writer.write(data[: max(1, len(data) // 2)])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    link.reset()
                    break
                writer.write(data)
                await writer.drain()
                self._forwarded(link)
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.closed:
                link.close()
            self._links.discard(link)

    def _forwarded(self, link: _Link) -> None:
        """Count a chunk; fire the next step when its count is reached."""
        if not self._steps:
            return
        self._countdown -= 1
        if self._countdown > 0:
            return
        step = self._steps.pop(0)
        if self._steps:
            self._countdown = self._steps[0].after_chunks
        else:
            self._all_applied.set()
        self.applied.append((link.number, step))
        log.info("chaos: %s on link %d", step, link.number)
        if step.fault == Fault.DROP:
            link.close()
        elif step.fault == Fault.RESET_MID_FRAME:
            link.cut.add(step.direction)
        elif step.fault == Fault.STALL:
            link.flowing.clear()
            self._spawn(self._resume(link, step.duration_s), f"chaos-stall-{link.number}")
        else:
            link.discard.add(step.direction)
            self._spawn(self._give_up(link, step.duration_s), f"chaos-half-{link.number}")

    async def _resume(self, link: _Link, after_s: float) -> None:
        await asyncio.sleep(after_s)  # the fault's length: chaos timing, not a wait
        link.flowing.set()

    async def _give_up(self, link: _Link, after_s: float) -> None:
        await asyncio.sleep(after_s)  # the NAT's patience
        if not link.closed:
            link.reset()
