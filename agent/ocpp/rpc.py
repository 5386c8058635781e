"""OCPP-J RPC endpoint: framing, schema validation, one outstanding CALL at a time.

`RpcEndpoint` owns one connection's message flow (OCPP 1.6 §4, OCPP 2.0.1 part 4 §4):
it parses incoming frames (pushed by the connection, or read), answers CALLs through
registered handlers (each in a tracked task, so a slow handler never stops CALLRESULTs
being read), sends our CALLs strictly one at a time, validates every payload in both
directions against the dialect's official schemas, and reports every frame in and out to
the message log (`on_frame`).

A CALL goes out in two steps when the caller has work to overlap with the round trip:
`prepare()` validates and serializes it (no I/O), `start()` puts it on the wire once no
other CALL of ours is outstanding and returns at once, and the returned `CallInFlight`'s
`answer()` awaits the validated CALLRESULT. The outbox uses this to build the next
message while the CSMS answers the current one; `call()` is the two steps in one. A call
stays outstanding (and the next one waits) until its answer arrives, its response
timeout passes, the transport closes, or its caller stops awaiting the answer.

A caller that has the next CALL ready before the answer to the current one arrives can
chain them (`CallInFlight.then_send`): when the answer is delivered it is validated and
handed to the caller's `accept` right there, and the next CALL goes on the wire from the
same delivery, before the event loop runs anything else (a transport with a direct
`send_now`, as wsclient.PushConnection, is needed; a CALL of another caller waiting for
its turn goes first). The order is unchanged: the next CALL leaves only after the
answer before it passed its schema and was applied.

Message ids are a random per-process prefix and a counter (OCPP-J asks only that an id
be unique for its sender and at most 36 characters): unique across reconnects, and
across restarts with overwhelming probability, for about a tenth of a uuid4's cost.

It must not: know what an action means (handlers and adapters do), convert payload keys
or types (payloads stay camelCase dicts as on the wire), reconnect, retry or persist
calls (the connection supervisor and the outbox do), or send a payload that violates
its schema (an invalid outgoing request is our bug: ValueError, nothing is sent).

JSON (orjson with the standard library's rules) is encoded and decoded in wire_json.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

from agent.ocpp.dialects import Dialect
from agent.ocpp.wire_json import decode as _decode
from agent.ocpp.wire_json import encode as _encode

_log = logging.getLogger(__name__)

_CALL = 2
_CALLRESULT = 3
_CALLERROR = 4

# Descriptions from the OCPP 1.6 §4.2.3 error code table (the 2.0.1 table says the same).
_NOT_IMPLEMENTED = "Requested Action is not known by receiver"
_NOT_SUPPORTED = "Requested Action is recognized but not supported by the receiver"
_INTERNAL = (
    "An internal error occurred and the receiver was not able to process the requested "
    "Action successfully"
)


class RpcError(Exception):
    """A CALLERROR: one received from the peer, or one a handler raises to be sent."""

    def __init__(
        self, code: str, description: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = dict(details or {})


class CallTimeout(Exception):  # noqa: N818 (name fixed by the API brief)
    """No CALLRESULT or CALLERROR arrived within response_timeout_s."""


class ConnectionLost(Exception):  # noqa: N818 (name fixed by the API brief)
    """The transport closed while a call was pending, or before it could be sent."""


class Transport(Protocol):
    """A message-oriented connection; websockets' ClientConnection/ServerConnection fit.

    Optionally (looked up, not required) `deliver_until_closed(callback)`, pushing each
    message instead of being read, and `send_now(text) -> bool`, a synchronous send that
    returns False with nothing sent when the message must go through `send`
    (wsclient.PushConnection has both)."""

    async def send(self, message: str) -> None:
        """Send one text frame; raises when the connection is closed."""
        ...

    async def recv(self) -> str | bytes:
        """Return the next frame; raises when the connection is closed."""
        ...


class Frame(NamedTuple):
    """One frame as the message log records it (immutable; a tuple, cheap to make)."""

    at: datetime
    outgoing: bool
    text: str
    action: str | None  # the action of the CALL this frame is, or answers, if known


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A CALL validated against its schema and serialized, ready for `RpcEndpoint.start`."""

    unique_id: str
    action: str
    text: str


@dataclass(frozen=True, slots=True)
class AfterReply:
    """A handler's result whose `then` must run only once the CALLRESULT is on the wire
    (a Reset must not close the connection before the CSMS has its answer)."""

    payload: dict[str, Any]
    then: Callable[[], None]


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | AfterReply]]


@dataclass(frozen=True, slots=True)
class _Follow:
    """The CALL to send once an answer arrived, and what applies that answer first."""

    call: PreparedCall
    accept: Callable[[dict[str, Any]], None] | None


@dataclass(slots=True)
class _PendingCall:
    """Our one outstanding CALL, resolved by the reader with the raw CALLRESULT payload
    (or, when it was chained, with the payload already validated and applied)."""

    unique_id: str
    action: str
    future: asyncio.Future[dict[str, Any]]
    deadline: float  # loop time after which it has timed out
    follow: _Follow | None = None  # then_send: what to do when the answer is delivered
    applied: bool = False  # the answer was validated and accepted at its delivery
    successor: _PendingCall | None = None  # the CALL sent from that delivery


#: This process's message id prefix: 48 random bits, so ids stay unique across restarts.
_ID_PREFIX: Final = secrets.token_hex(6)
_id_counter = itertools.count(1)


def _unique_id() -> str:
    """A message id no other CALL of this process used: prefix and counter (<= 36 chars)."""
    return f"{_ID_PREFIX}-{next(_id_counter)}"


def _utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _is_int(value: Any) -> bool:
    """Tell whether value is a JSON integer (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class CallInFlight:
    """A CALL of ours on the wire (RpcEndpoint.start); `answer()` awaits its outcome."""

    __slots__ = ("_endpoint", "_pending")

    def __init__(self, endpoint: RpcEndpoint, pending: _PendingCall) -> None:
        self._endpoint = endpoint
        self._pending = pending

    @property
    def unique_id(self) -> str:
        """The CALL's message id."""
        return self._pending.unique_id

    async def answer(self) -> dict[str, Any]:
        """The validated CALLRESULT payload. Raises RpcError (CALLERROR received, or a
        response violating its schema), CallTimeout, ConnectionLost, or what the
        `accept` given to then_send raised."""
        return await self._endpoint._answer_of(self._pending)

    def then_send(
        self, call: PreparedCall, accept: Callable[[dict[str, Any]], None] | None = None
    ) -> bool:
        """Arrange for `call` to go on the wire as soon as this call's answer has been
        delivered, has passed its schema and has been given to `accept`: from inside
        that delivery, with no event-loop turn between them (module docstring).

        Returns False when it cannot be arranged (the answer is in already, the call is
        over, the transport has no `send_now`): the caller then applies the answer and
        starts `call` itself. Once arranged, `answer()` returns the answer already
        applied, and `successor` is `call` in flight, if it could be sent then (None:
        another CALL was waiting for its turn, the transport could not send at once, or
        the answer failed; the caller starts `call` as usual, if still wanted)."""
        return self._endpoint._arrange_follow(self._pending, call, accept)

    @property
    def successor(self) -> CallInFlight | None:
        """The CALL then_send put on the wire from this call's answer, if it did."""
        successor = self._pending.successor
        return None if successor is None else CallInFlight(self._endpoint, successor)

    def abandon(self) -> None:
        """Stop waiting for this call's answer: the next CALL may go (as when the task
        awaiting `answer()` is cancelled)."""
        self._endpoint._finish(self._pending, asyncio.CancelledError())


class RpcEndpoint:
    """One OCPP-J connection: answers incoming CALLs and sends ours one at a time."""

    def __init__(
        self,
        transport: Transport,
        dialect: Dialect,
        *,
        handlers: Mapping[str, Handler],
        response_timeout_s: float = 30.0,
        on_frame: Callable[[Frame], None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._transport = transport
        self._dialect = dialect
        self._handlers = handlers  # (not copied: a fleet holds thousands of endpoints)
        self._response_timeout_s = response_timeout_s
        self._on_frame = on_frame
        self._clock = clock
        self._call_lock = asyncio.Lock()  # held while a CALL of ours is outstanding
        self._waiting = 0  # callers of start() waiting for the lock
        self._send_now: Callable[[str], bool] | None = getattr(transport, "send_now", None)
        self._pending: _PendingCall | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_at = 0.0  # the loop time the watchdog is armed for
        self._sending: asyncio.Task[Any] | None = None  # the task inside transport.send
        self._send_expired: _PendingCall | None = None  # timed out inside transport.send
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once serve() has seen the transport close."""
        return self._closed

    @property
    def dialect(self) -> Dialect:
        """The OCPP version this endpoint speaks."""
        return self._dialect

    async def serve(self) -> None:
        """Take frames until the transport closes; raises RuntimeError if already served.

        A transport that pushes its messages (`deliver_until_closed`, as PushConnection
        in wsclient.py) hands each to the endpoint as it arrives; any other is read in a
        loop with `recv()`."""
        if self._serving or self._closed:
            raise RuntimeError("serve() runs once per endpoint")
        self._serving = True
        try:
            pushed = getattr(self._transport, "deliver_until_closed", None)
            if pushed is not None:  # a PushConnection (wsclient.py): no reader loop
                await pushed(self._receive)
                _log.info("transport closed")
                return
            while True:
                try:
                    raw = await self._transport.recv()
                except Exception as exc:  # websockets.ConnectionClosed or the like
                    _log.info("transport closed: %r", exc)
                    return
                self._receive(raw)
        finally:
            await self._shut_down()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and return the validated CALLRESULT payload.

        Raises ValueError (invalid request: our bug, nothing sent), RpcError (CALLERROR
        received, or a response violating its schema), CallTimeout, ConnectionLost.
        """
        if self._closed:
            raise ConnectionLost(f"cannot send {action}: the transport is closed")
        in_flight = await self.start(self.prepare(action, payload))
        return await in_flight.answer()

    def prepare(self, action: str, payload: dict[str, Any]) -> PreparedCall:
        """Validate and serialize a CALL under a fresh message id (no I/O).

        Raises ValueError if the version does not define `action`, or the payload
        violates its schema or is not JSON (our bug: it must not be sent).
        """
        try:
            violation = self._dialect.check(action, payload, response=False)
        except KeyError:
            raise ValueError(
                f"OCPP {self._dialect.version} does not define action {action!r}"
            ) from None
        if violation is not None:
            raise ValueError(
                f"invalid {action} request ({violation.code} at {violation.field!r}): "
                f"{violation.description}"
            )
        unique_id = _unique_id()
        try:
            text = _encode([_CALL, unique_id, action, payload])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{action} request is not JSON-serializable: {exc}") from exc
        return PreparedCall(unique_id, action, text)

    async def start(self, call: PreparedCall) -> CallInFlight:
        """Send a prepared CALL once no other CALL of ours is outstanding, and return as
        soon as it is on the wire (its answer is awaited through the result).

        Raises ConnectionLost (closed, or the send failed), or CallTimeout (the send
        itself outlasted the response timeout); the call is over then.
        """
        if self._closed:
            raise ConnectionLost(f"cannot send {call.action}: the transport is closed")
        self._waiting += 1
        try:
            await self._call_lock.acquire()
        finally:
            self._waiting -= 1
        if self._closed:
            self._call_lock.release()
            raise ConnectionLost(f"cannot send {call.action}: the transport is closed")
        pending = self._outstanding(call)
        self._sending = asyncio.current_task()
        try:
            await self._send(call.text, call.action)
        except asyncio.CancelledError:
            if self._send_expired is not pending:
                self._finish(pending, asyncio.CancelledError())
                raise
            # The watchdog cancelled a send that outlasted the response timeout.
            if self._sending is not None:
                self._sending.uncancel()
            raise self._timeout(pending) from None
        except Exception as exc:
            self._finish(pending, asyncio.CancelledError())  # no answer will be awaited
            if not pending.future.cancelled():  # closed meanwhile: ConnectionLost, seen here
                pending.future.exception()
            raise ConnectionLost(f"could not send {call.action}: {exc!r}") from exc
        finally:
            self._sending = None
            self._send_expired = None
        return CallInFlight(self, pending)

    # --- the outstanding call -------------------------------------------------------

    def _outstanding(self, call: PreparedCall) -> _PendingCall:
        """Make `call` the outstanding one (the lock is held for it), its response
        timeout watched."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._response_timeout_s
        pending = _PendingCall(call.unique_id, call.action, loop.create_future(), deadline)
        self._pending = pending
        if self._watchdog is None:
            self._watchdog_at = deadline
            self._watchdog = loop.call_at(deadline, self._watch)
        return pending

    def _arrange_follow(
        self,
        pending: _PendingCall,
        call: PreparedCall,
        accept: Callable[[dict[str, Any]], None] | None,
    ) -> bool:
        """CallInFlight.then_send."""
        if self._send_now is None or self._pending is not pending or pending.future.done():
            return False
        pending.follow = _Follow(call, accept)
        return True

    def _resolve_and_follow(
        self, pending: _PendingCall, follow: _Follow, result: dict[str, Any]
    ) -> None:
        """Validate and apply the answer to a chained call at its delivery, then send the
        CALL chained to it (`follow`) before anything else runs (then_send)."""
        try:
            result = self._checked(pending, result)
            if follow.accept is not None:
                follow.accept(result)
        except Exception as exc:  # an invalid answer, or the caller's accept failed
            self._finish(pending, exc)
            return
        pending.applied = True
        if self._waiting == 0 and not self._closed:  # a CALL waiting for its turn goes first
            pending.successor = self._send_following(follow.call)
        self._finish(pending, result)

    def _send_following(self, call: PreparedCall) -> _PendingCall | None:
        """Send `call` at once, from the answer's delivery: it takes over the lock from
        the call just answered. None if the transport cannot send it at once."""
        assert self._send_now is not None
        try:
            if not self._send_now(call.text):
                return None
        except Exception as exc:  # the connection failed; the caller's start() says so
            _log.warning("could not send %s: %r", call.action, exc)
            return None
        self._log_frame(outgoing=True, text=call.text, action=call.action)
        return self._outstanding(call)

    def _finish(self, pending: _PendingCall, outcome: BaseException | dict[str, Any]) -> None:
        """End the outstanding call `pending` (the first outcome wins) and let the next
        CALL go: resolve its future with a result, an exception, or cancel it."""
        if self._pending is pending:
            self._pending = None
            self._call_lock.release()
        future = pending.future
        if future.done():
            return
        if isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _timeout(self, pending: _PendingCall) -> CallTimeout:
        """The CallTimeout of `pending`."""
        return CallTimeout(
            f"no response to {pending.action} ({pending.unique_id}) "
            f"within {self._response_timeout_s} s"
        )

    def _watch(self) -> None:
        """Time out the outstanding call if its deadline has come, else wait for it.

        One timer serves every call: each starts with a later deadline than the ones
        before, so the timer, armed for an earlier call, fires early and is re-armed
        then, instead of being created and cancelled for every call.
        """
        self._watchdog = None
        pending = self._pending
        if pending is None:
            return
        if pending.deadline > self._watchdog_at:
            self._watchdog_at = pending.deadline
            self._watchdog = asyncio.get_running_loop().call_at(pending.deadline, self._watch)
            return
        if self._sending is not None:  # still inside transport.send: start() raises
            self._send_expired = pending
            self._sending.cancel()
            self._finish(pending, asyncio.CancelledError())
            return
        self._finish(pending, self._timeout(pending))

    async def _answer_of(self, pending: _PendingCall) -> dict[str, Any]:
        """The validated CALLRESULT payload of `pending`; raises as call() does."""
        try:
            result = await pending.future
        except asyncio.CancelledError:
            self._finish(pending, asyncio.CancelledError())  # the caller gave up on it,
            if pending.successor is not None:  # and on the CALL sent from its answer
                self._finish(pending.successor, asyncio.CancelledError())
            raise
        if pending.applied:  # checked at its delivery (then_send)
            return result
        return self._checked(pending, result)

    def _checked(self, pending: _PendingCall, result: dict[str, Any]) -> dict[str, Any]:
        """`result` if it is a valid answer to `pending`; raises RpcError if not."""
        violation = self._dialect.check(pending.action, result, response=True)
        if violation is not None:
            raise RpcError(
                self._dialect.formation_code,
                f"invalid {pending.action} response: {violation.description}",
                violation.details,
            )
        return result

    # --- outgoing -------------------------------------------------------------------

    async def _send(self, text: str, action: str | None) -> None:
        """Log a frame to the message log, then send it; raises what the transport raises."""
        self._log_frame(outgoing=True, text=text, action=action)
        await self._transport.send(text)

    async def _send_reply(self, frame: list[Any], action: str | None) -> None:
        """Send a CALLRESULT or CALLERROR; a closed transport is logged, not raised."""
        try:
            text = _encode(frame)
        except (TypeError, ValueError):
            _log.exception("reply to %s (%s) is not JSON; sending InternalError", action, frame[1])
            text = _encode([_CALLERROR, frame[1], "InternalError", _INTERNAL, {}])
        try:
            await self._send(text, action)
        except Exception as exc:
            _log.warning("reply to %s (%s) not sent: %r", action, frame[1], exc)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run coro in a task tracked until done; its failure is logged, never lost."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished task and log its exception, if any."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _log.error("task %s failed", task.get_name(), exc_info=exc)

    def _reply_error(self, unique_id: str, action: str | None, code: str, description: str) -> None:
        """Answer a frame with a CALLERROR carrying empty details."""
        frame = [_CALLERROR, unique_id, code, description, {}]
        self._spawn(self._send_reply(frame, action), name=f"ocpp-callerror-{unique_id}")

    # --- incoming -------------------------------------------------------------------

    def _receive(self, raw: str | bytes) -> None:
        """Log one incoming frame and dispatch it; never raises for a malformed frame."""
        # OCPP-J uses text frames; a binary one is decoded tolerantly and judged as text.
        text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        try:
            message = _decode(text)
        except (ValueError, RecursionError):
            self._log_frame(outgoing=False, text=text, action=None)
            _log.warning("dropped a frame that is not JSON: %.200s", text)
            return
        self._log_frame(outgoing=False, text=text, action=self._action_of(message))

        if not isinstance(message, list) or len(message) < 2:
            _log.warning("dropped a frame that is not an OCPP-J array: %.200s", text)
            return
        type_id, unique_id = message[0], message[1]
        if not _is_int(type_id) or not isinstance(unique_id, str):
            _log.warning("dropped a frame without message type id and unique id: %.200s", text)
            return
        if type_id == _CALL:
            self._on_call(unique_id, message, text)
        elif type_id == _CALLRESULT:
            self._on_result(unique_id, message, text)
        elif type_id == _CALLERROR:
            self._on_error(unique_id, message, text)
        elif self._dialect.message_type_not_supported_code is not None:
            # OCPP 2.0.1 part 4 §4.3: answer an unknown message type id we can address.
            _log.warning("unknown message type id %d: %.200s", type_id, text)
            self._reply_error(
                unique_id,
                None,
                self._dialect.message_type_not_supported_code,
                f"Message type id {type_id} is not supported",
            )
        else:
            _log.warning("dropped a frame with unknown message type id: %.200s", text)

    def _action_of(self, message: Any) -> str | None:
        """Return the action a parsed frame is, or answers, if it can be told."""
        if not isinstance(message, list) or len(message) < 2:
            return None
        if not _is_int(message[0]) or not isinstance(message[1], str):
            return None
        if message[0] == _CALL:
            return message[2] if len(message) > 2 and isinstance(message[2], str) else None
        pending = self._pending
        if message[0] in (_CALLRESULT, _CALLERROR) and pending is not None:
            return pending.action if message[1] == pending.unique_id else None
        return None

    def _on_call(self, unique_id: str, message: list[Any], text: str) -> None:
        """Answer a CALL in a tracked task, or a malformed one at once."""
        action = message[2] if len(message) > 2 and isinstance(message[2], str) else None
        if len(message) != 4 or action is None or not isinstance(message[3], dict):
            _log.warning("malformed CALL: %.200s", text)
            self._reply_error(
                unique_id,
                action,
                self._dialect.formation_code,
                "CALL must be [2, uniqueId, action, payload object]",
            )
            return
        self._spawn(self._answer(unique_id, action, message[3]), name=f"ocpp-{action}-{unique_id}")

    async def _answer(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        """Validate a CALL, run its handler and send the CALLRESULT or CALLERROR."""
        then: Callable[[], None] | None = None
        try:
            frame, then = await self._handle(unique_id, action, payload)
        except Exception:  # a bug in this module: still answer, as the CSMS waits for it
            _log.exception("answering %s (%s) failed", action, unique_id)
            frame = [_CALLERROR, unique_id, "InternalError", _INTERNAL, {}]
        await self._send_reply(frame, action)
        if then is not None:
            then()

    async def _handle(
        self, unique_id: str, action: str, payload: dict[str, Any]
    ) -> tuple[list[Any], Callable[[], None] | None]:
        """Return the reply frame for one incoming CALL, and what to run once it is sent."""
        dialect = self._dialect
        # OCPP 1.6 §4.2.3: unknown action -> NotImplemented; known but unhandled ->
        # NotSupported (the ocpp library has these two swapped).
        if action not in dialect.actions:
            return [_CALLERROR, unique_id, "NotImplemented", _NOT_IMPLEMENTED, {}], None
        handler = self._handlers.get(action)
        if handler is None:
            return [_CALLERROR, unique_id, "NotSupported", _NOT_SUPPORTED, {}], None
        violation = dialect.check(action, payload, response=False)
        if violation is not None:
            _log.warning("%s request violates its schema: %s", action, violation.description)
            error = [
                _CALLERROR,
                unique_id,
                violation.code,
                violation.description,
                violation.details,
            ]
            return error, None
        internal = [_CALLERROR, unique_id, "InternalError", _INTERNAL, {}]
        try:
            result = await handler(payload)
        except RpcError as exc:
            if exc.code not in dialect.error_codes:
                _log.error(
                    "handler for %s raised unknown OCPP %s error code %r; sending InternalError",
                    action,
                    dialect.version,
                    exc.code,
                )
                return internal, None
            return [_CALLERROR, unique_id, exc.code, exc.description, exc.details], None
        except Exception:
            _log.exception("handler for %s failed", action)
            return internal, None
        then: Callable[[], None] | None = None
        if isinstance(result, AfterReply):
            then = result.then
            result = result.payload
        violation = dialect.check(action, result, response=True)
        if violation is not None:
            _log.error(
                "handler for %s returned an invalid response (%s at %r: %s); sending InternalError",
                action,
                violation.code,
                violation.field,
                violation.description,
            )
            return internal, None
        return [_CALLRESULT, unique_id, result], then

    def _matching_pending(self, unique_id: str, kind: str, text: str) -> _PendingCall | None:
        """Return the pending call this response answers, or log and return None."""
        pending = self._pending
        if pending is None or pending.unique_id != unique_id or pending.future.done():
            _log.warning("ignored a %s for no pending call: %.200s", kind, text)
            return None
        return pending

    def _on_result(self, unique_id: str, message: list[Any], text: str) -> None:
        """Hand a CALLRESULT to the pending call (validated there, not in the reader)."""
        pending = self._matching_pending(unique_id, "CALLRESULT", text)
        if pending is None:
            return
        if len(message) != 3 or not isinstance(message[2], dict):
            self._finish(
                pending, RpcError(self._dialect.formation_code, "malformed CALLRESULT frame")
            )
            return
        follow, pending.follow = pending.follow, None
        if follow is not None:
            self._resolve_and_follow(pending, follow, message[2])
            return
        self._finish(pending, message[2])

    def _on_error(self, unique_id: str, message: list[Any], text: str) -> None:
        """Fail the pending call with the CALLERROR received (tolerating missing parts)."""
        pending = self._matching_pending(unique_id, "CALLERROR", text)
        if pending is None:
            return
        if len(message) < 3 or not isinstance(message[2], str):
            self._finish(
                pending, RpcError(self._dialect.formation_code, "malformed CALLERROR frame")
            )
            return
        description = message[3] if len(message) > 3 and isinstance(message[3], str) else ""
        details = message[4] if len(message) > 4 and isinstance(message[4], dict) else {}
        self._finish(pending, RpcError(message[2], description, details))

    # --- bookkeeping ----------------------------------------------------------------

    def _log_frame(self, *, outgoing: bool, text: str, action: str | None) -> None:
        """Report one frame to the message log; a failing log callback is only logged."""
        if self._on_frame is None:
            return
        try:
            self._on_frame(Frame(self._clock(), outgoing, text, action))
        except Exception:
            _log.exception("on_frame callback failed")

    async def _shut_down(self) -> None:
        """Mark closed, fail the pending call with ConnectionLost and cancel handler tasks."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending = self._pending
        if pending is not None:
            lost = ConnectionLost(f"transport closed while {pending.action} was pending")
            self._finish(pending, lost)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
