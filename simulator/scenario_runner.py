"""Running a scenario against a running agent, through its local control API only.

Responsible for: carrying out each `Step` of a checked Scenario with an `ApiClient`,
printing one line per step (`[n/N] <step> ... ok (1.2s)` or `FAILED: <why>`) and a
summary, stopping at the first failure unless told to keep going.

`expect` steps look at the OCPP message stream, subscribed before the first step so that
nothing is missed; `wait` steps re-check /status whenever a message arrives and at most
every 0.5 s otherwise (no busy polling).

Must not: touch the agent in-process, change the agent's config, or hide an API that
cannot be reached (ApiUnreachable ends the run; the caller reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from simulator.api_client import ApiClient, ApiError, ApiUnreachable, JsonObject
from simulator.scenario import Scenario, Step

log = logging.getLogger(__name__)

#: The fallback re-check period of `wait: {status: ...}` when no message arrives.
STATUS_RECHECK_S = 0.5
_STREAM_RETRY_S = 0.5
#: Steps that only observe: they do not move the cursor `expect` looks from, so a run of
#: waits and expects after an action all look at what that action caused.
PASSIVE_STEPS = frozenset({"wait", "expect"})


class StepFailed(Exception):  # noqa: N818 - reads as a message
    """A step did not hold; the message says why, for the run's output."""


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one step went: `detail` says what happened, or why it failed."""

    index: int  # 1-based
    step: Step
    ok: bool
    elapsed_s: float
    detail: str


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of a scenario run; steps after a failure are missing unless keep-going."""

    scenario: Scenario
    outcomes: tuple[StepOutcome, ...]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """True when every step ran and held."""
        return len(self.outcomes) == len(self.scenario.steps) and all(o.ok for o in self.outcomes)


class MessageFeed:
    """Every OCPP message seen since the feed opened, read from /messages/stream by one
    tracked task; reopens the stream if the server ends it (e.g. across a power cut)."""

    def __init__(self, client: ApiClient) -> None:
        self.messages: list[JsonObject] = []
        self._client = client
        self._arrival = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MessageFeed:
        """Return once the stream is subscribed; raises ApiError, ApiUnreachable."""
        task = asyncio.create_task(self._follow(), name="scenario-message-feed")
        self._task = task
        subscribed = asyncio.create_task(self._subscribed.wait(), name="scenario-subscribed")
        try:
            await asyncio.wait({task, subscribed}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                await task  # raises what kept the stream from opening
        except BaseException:
            await self.__aexit__()
            raise
        finally:
            subscribed.cancel()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})  # our own cancellation still propagates
        error = None if task.cancelled() else task.exception()
        if error is not None and self._subscribed.is_set():
            log.warning("the message stream failed: %r", error)

    def arrival(self) -> asyncio.Event:
        """An event set when the next message arrives (take it before checking)."""
        return self._arrival

    async def _follow(self) -> None:
        while True:
            try:
                async with self._client.message_stream() as stream:
                    self._subscribed.set()
                    async for message in stream:
                        self.messages.append(message)
                        self._arrival.set()
                        self._arrival = asyncio.Event()
            except (ApiError, ApiUnreachable) as exc:
                if not self._subscribed.is_set():
                    raise
                log.info("message stream interrupted (%s); subscribing again", exc)
            await asyncio.sleep(_STREAM_RETRY_S)  # back-off before subscribing again


class ScenarioRunner:
    """Runs a scenario's steps against the API, printing one line per step to `out`."""

    def __init__(
        self,
        scenario: Scenario,
        client: ApiClient,
        *,
        out: TextIO,
        evse: int | None = None,
        keep_going: bool = False,
    ) -> None:
        self.scenario = scenario
        self._client = client
        self._out = out
        self._evse = evse or scenario.evse
        self._keep_going = keep_going

    async def run(self) -> RunResult:
        """Run every step (until the first failure unless keep_going); raises ApiUnreachable."""
        outcomes: list[StepOutcome] = []
        total = len(self.scenario.steps)
        began = time.monotonic()
        self._print(f"{self.scenario.name} ({self.scenario.source}, {total} steps)\n")
        async with MessageFeed(self._client) as feed:
            since = 0  # expect looks at messages from when the last action step started
            for index, step in enumerate(self.scenario.steps, 1):
                self._print(f"[{index}/{total}] {step.text} ... ")
                started = time.monotonic()
                if step.kind not in PASSIVE_STEPS:
                    since = len(feed.messages)
                try:
                    detail, ok = await self._execute(step, feed, since), True
                except StepFailed as failure:
                    detail, ok = str(failure), False
                except ApiUnreachable:
                    self._print("FAILED: the API stopped answering\n")
                    raise
                elapsed_s = time.monotonic() - started
                outcomes.append(StepOutcome(index, step, ok, elapsed_s, detail))
                if ok:
                    self._print(f"ok ({elapsed_s:.1f}s){': ' + detail if detail else ''}\n")
                else:
                    self._print(f"FAILED: {detail} ({elapsed_s:.1f}s)\n")
                    if not self._keep_going:
                        break
        result = RunResult(self.scenario, tuple(outcomes), time.monotonic() - began)
        self._print(summary(result) + "\n")
        return result

    def _print(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def _execute(self, step: Step, feed: MessageFeed, since: int) -> str:
        """Carry out one step; return what happened; raises StepFailed, ApiUnreachable."""
        evse = step.evse or self._evse
        timeout_s = step.timeout_s or self.scenario.timeout_s
        client = self._client
        try:
            match step.kind:
                case "plug":
                    return _evse_note(await client.plug(evse, **step.options))
                case "unplug":
                    return _evse_note(await client.unplug(evse))
                case "pause":
                    return _evse_note(await client.pause_ev(evse))
                case "resume":
                    return _evse_note(await client.resume_ev(evse))
                case "tap":
                    return _evse_note(await client.tap(evse, step.value, step.options.get("type")))
                case "pilot":
                    return _evse_note(await client.set_pilot(evse, step.value))
                case "fault":
                    detail = step.options.get("detail")
                    return _evse_note(await client.raise_fault(evse, step.value, detail))
                case "clear":
                    return _evse_note(await client.clear_fault(evse, step.value))
                case "network":
                    return f"connection {(await self._network(step)).get('state')}"
                case "power":
                    cut = step.value == "cut"
                    answer = await (client.power_cut() if cut else client.power_restore())
                    return "power on" if answer.get("powered") else "power off"
                case "wait":
                    return await self._wait(step, evse, timeout_s, feed)
                case "expect":
                    return await _expect(step, feed, since, timeout_s)
        except ApiError as error:
            raise StepFailed(f"the API answered {error.status}: {error.message}") from None
        raise StepFailed(f"unknown step kind {step.kind!r}")

    async def _network(self, step: Step) -> JsonObject:
        if step.value == "drop":
            return await self._client.network_drop()
        if step.value == "online":
            return await self._client.network_online()
        return await self._client.network_offline(step.options.get("seconds"))

    async def _wait(self, step: Step, evse: int, timeout_s: float, feed: MessageFeed) -> str:
        condition = step.options.get("condition", "status")
        if condition == "seconds":
            await asyncio.sleep(step.value)  # the scenario asks for this much time to pass
            return ""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            arrival = feed.arrival()  # before the check, so no arrival slips between
            station = await self._client.status()
            if condition == "online":
                online = bool(station.get("connection", {}).get("online"))
                now, held = ("online" if online else "offline"), online == step.value
            else:
                now = evse_status(station, evse)
                held = now == step.value
            if held:
                return ""
            if now.startswith("missing"):
                raise StepFailed(now)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                wanted = (
                    ("online" if step.value else "offline")
                    if condition == "online"
                    else (f"EVSE {evse} {step.value}")
                )
                raise StepFailed(f"still {now} after {timeout_s:g} s (waited for {wanted})")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(STATUS_RECHECK_S, remaining)):
                    await arrival.wait()


async def _expect(step: Step, feed: MessageFeed, since: int, timeout_s: float) -> str:
    """Wait for `count` CALLs of the step's action (payload subset) from index `since`."""
    direction = step.options.get("direction", "out")
    wanted, count = step.options.get("payload"), step.options.get("count", 1)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        arrival = feed.arrival()
        matched, differences = 0, []
        for message in feed.messages[since:]:
            call = ocpp_call(message, direction)
            if call is None or call[0] != step.value:
                continue
            difference = None if wanted is None else payload_difference(wanted, call[1])
            if difference is None:
                matched += 1
            else:
                differences.append(difference)
        if matched >= count:
            return f"{matched} seen" if count > 1 else ""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise StepFailed(_missing(step, feed.messages[since:], matched, differences, timeout_s))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await arrival.wait()


def _missing(
    step: Step, messages: list[JsonObject], matched: int, differences: list[str], timeout_s: float
) -> str:
    """Why an expect step failed: what did arrive instead."""
    direction = step.options.get("direction", "out")
    way = "outgoing" if direction == "out" else "incoming"
    wanted = f"{step.options.get('count', 1)} {way} {step.value}"
    if matched:
        return f"only {matched} of {wanted} within {timeout_s:g} s"
    if differences:
        return f"{len(differences)} {way} {step.value} arrived, none matching ({differences[-1]})"
    seen = sorted({c[0] for m in messages if (c := ocpp_call(m, direction)) is not None})
    saw = f"; saw {', '.join(seen)}" if seen else f"; no {way} CALL at all"
    return f"no {way} {step.value} within {timeout_s:g} s{saw}"


def ocpp_call(message: Mapping[str, Any], direction: str) -> tuple[str, Any] | None:
    """Return (action, payload) if `message` is an OCPP-J CALL going `direction`, else None."""
    if message.get("direction") != direction:
        return None
    try:
        frame = json.loads(str(message.get("text", "")))
    except json.JSONDecodeError:
        return None
    if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2 and isinstance(frame[2], str):
        return frame[2], frame[3]
    return None


def payload_difference(expected: Any, actual: Any, path: str = "payload") -> str | None:
    """Return the first way `actual` fails to contain `expected` (recursive subset), or None.

    Mappings: every expected key must be present and match. Lists: every expected item
    must match some item of the actual list. Scalars: equal (a boolean is not a number).
    """
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path}: expected a mapping, got {_show(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            difference = payload_difference(value, actual[key], f"{path}.{key}")
            if difference is not None:
                return difference
        return None
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            return f"{path}: expected a list, got {_show(actual)}"
        for item in expected:
            if not any(payload_difference(item, candidate) is None for candidate in actual):
                return f"{path}: no item matches {_show(item)}"
        return None
    if isinstance(expected, bool) != isinstance(actual, bool) or expected != actual:
        return f"{path}: expected {_show(expected)}, got {_show(actual)}"
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def evse_status(station: Mapping[str, Any], evse_id: int) -> str:
    """The status of an EVSE in a /status answer, or a word saying why there is none."""
    if not station.get("powered", True):
        return "without power"
    for evse in station.get("evses", []):
        if evse.get("id") == evse_id:
            return str(evse.get("status"))
    return f"missing (the station has no EVSE {evse_id})"


def _evse_note(evse: Mapping[str, Any]) -> str:
    """What an EVSE action led to, briefly: `EVSE 1 Preparing` (+ faults)."""
    faults = ", ".join(evse.get("faults") or [])
    return f"EVSE {evse.get('id')} {evse.get('status')}" + (f" ({faults})" if faults else "")


def summary(result: RunResult) -> str:
    """The last line of a run: passed, or which steps failed and how many did not run."""
    name, total = result.scenario.name, len(result.scenario.steps)
    passed = sum(1 for o in result.outcomes if o.ok)
    if result.ok:
        return f"PASSED: {name}: {passed}/{total} steps ok in {result.elapsed_s:.1f}s"
    failed = [str(o.index) for o in result.outcomes if not o.ok]
    not_run = total - len(result.outcomes)
    rest = f", {not_run} not run" if not_run else ""
    return (
        f"FAILED: {name}: step {', '.join(failed)} failed, {passed}/{total} ok{rest} "
        f"in {result.elapsed_s:.1f}s"
    )
