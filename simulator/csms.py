"""A small OCPP 1.6J / 2.0.1 CSMS: the real peer for integration tests and `cpagent demo`.

Responsibilities:
- Serve OCPP-J over real `websockets` (default 127.0.0.1, port 0). Each connection is one
  `ChargePoint` of the mobilityhouse `ocpp` library (`ocpp.v16` or `ocpp.v201`), with
  schema validation ON for every CALL and CALLRESULT in both directions. The charge point
  id is the last segment of the request path; an empty id is refused with HTTP 400.
- Negotiate the version per connection from `subprotocols` (default ("ocpp1.6",); known:
  "ocpp1.6", "ocpp2.0.1"). websockets (>= 13, asyncio server) picks the first entry of the
  SERVER's list that the client offers, whatever the client's order: ("ocpp2.0.1",
  "ocpp1.6") gives 2.0.1 to a client offering both and 1.6 to a 1.6-only client; a
  handshake offering none is refused with HTTP 400. `version()` tells which one a charge
  point speaks.
- Answer every charge-point-initiated action of that version (simulator.csms_v16,
  simulator.csms_v201) from a mutable `CsmsBehaviour`, which tests change while the server
  runs (boot status, tag statuses, injected CALLERRORs, CALLs left unanswered).
- Record exactly what arrived: every raw frame per charge point (`frames()`), and every
  CALL as a `Received` built from the raw frame (camelCase payload as on the wire), once,
  in arrival order, with whether it was answered with a CALLRESULT.
- Let tests act as the CSMS: `call()` (through the ocpp library, `suppress=False`),
  `send_raw()` (bypassing the library), `disconnect()`.

Recording rules (what `received` contains):
- A CALL appears in `received` (and for `calls()`/`wait_for()`) once its fate is settled:
  answered with a CALLRESULT (`answered=True`), answered with a CALLERROR (schema
  violation, `fail_next`, unknown action: `answered=False`), deliberately ignored
  (`ignore_next`: `answered=False`), or left without reply when the library moved on or
  the connection closed (`answered=False`). Entries keep arrival order.
- Frames that are not a well-formed CALL with an object payload (garbage, wrong arity) are
  never `Received`; they are only in `frames()`.

It must not: start untracked tasks (it starts none of its own: websockets owns the
connection handler tasks and `stop()` waits for them), retry, reorder or deduplicate what
the charge point sent, nor let replies to `send_raw()` frames reach the library.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import logging
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, is_dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from types import ModuleType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from ocpp.charge_point import camel_to_snake_case
from ocpp.v16 import call as v16_call
from ocpp.v201 import call as v201_call
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from simulator import csms_v16, csms_v201

LOGGER = logging.getLogger(__name__)

TEST_VENDOR_ID = "org.cpagent.test"
_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4
# OCPP-J has no id for a reply to an unparseable frame; 2.0.1 (section 4.2.3) uses "-1".
_UNPARSEABLE_ID = "-1"
# The library's own response timeout; `call()` applies the caller's timeout_s on top.
_LIBRARY_RESPONSE_TIMEOUT_S = 3600

Direction = Literal["in", "out"]


@dataclass
class CsmsBehaviour:
    """How the CSMS answers (both versions); mutable, tests change it while it runs."""

    boot_status: str = "Accepted"  # "Accepted" | "Pending" | "Rejected"
    boot_interval_s: int = 300
    accepted_tags: set[str] | None = None  # None: every idTag / idToken is Accepted
    tag_status_otherwise: str = "Invalid"
    # 1.6 idTagInfo.parentIdTag; 2.0.1 idTokenInfo.groupIdToken (type Central)
    parent_id_tag: str | None = None
    # action -> answer the next N CALLs of that action with CALLERROR InternalError
    fail_next: dict[str, int] = field(default_factory=dict)
    # action -> never answer the next N CALLs of that action
    ignore_next: dict[str, int] = field(default_factory=dict)
    # DataTransfer from this vendorId is echoed (Accepted); any other gets UnknownVendorId
    echo_vendor_id: str = TEST_VENDOR_ID
    #: 2.0.1 Authorize with Plug & Charge contract data: the certificateStatus answered.
    contract_status: str = "Accepted"

    def tag_status(self, token: str) -> str:
        """Return the authorization status given to an idTag / idToken value."""
        accepted = self.accepted_tags is None or token in self.accepted_tags
        return "Accepted" if accepted else self.tag_status_otherwise

    def consume_fail_next(self, action: str) -> bool:
        """Consume one fail_next unit of `action`; return whether this CALL must fail."""
        return _take(self.fail_next, action)


@dataclass(frozen=True)
class _Dialect:
    """What one negotiated subprotocol means: version name, ChargePoint class, requests."""

    version: str
    charge_point: type[csms_v16.CsmsChargePoint] | type[csms_v201.CsmsChargePoint]
    requests: ModuleType  # ocpp.v16.call / ocpp.v201.call


_DIALECTS = {
    csms_v16.SUBPROTOCOL: _Dialect(csms_v16.VERSION, csms_v16.CsmsChargePoint, v16_call),
    csms_v201.SUBPROTOCOL: _Dialect(csms_v201.VERSION, csms_v201.CsmsChargePoint, v201_call),
}


@dataclass(frozen=True)
class Received:
    """One CALL from a charge point; `payload` is exactly as on the wire (camelCase)."""

    charge_point_id: str
    action: str
    payload: dict[str, Any]
    at: datetime
    unique_id: str
    answered: bool


@dataclass
class _Entry:
    """A CALL in arrival order; visible in `Csms.received` once its fate is settled."""

    call: Received
    settled: bool = False


def _parse_frame(text: str) -> list[Any] | None:
    """Return the frame as a JSON array, or None when it is not one."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, list) else None


def _as_call(frame: list[Any] | None) -> tuple[str, str, dict[str, Any]] | None:
    """Return (unique_id, action, payload) when the frame is a well-formed CALL."""
    if frame is None or len(frame) != 4 or frame[0] != _CALL:
        return None
    unique_id, action, payload = frame[1:]
    ok = isinstance(unique_id, str) and isinstance(action, str) and isinstance(payload, dict)
    return (unique_id, action, payload) if ok else None


def _reply_id(frame: list[Any] | None) -> str | None:
    """Return the unique id when the frame is a CALLRESULT or CALLERROR."""
    if frame is None or len(frame) < 2 or frame[0] not in (_CALLRESULT, _CALLERROR):
        return None
    return frame[1] if isinstance(frame[1], str) else None


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an HTTP Basic Authorization header, or None."""
    if header is None or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _take(counters: dict[str, int], action: str) -> bool:
    """Consume one unit of `counters[action]`; return whether one was available."""
    left = counters.pop(action, 0)
    if left > 1:
        counters[action] = left - 1
    return left > 0


class _Connection:
    """Duck-typed connection handed to the ocpp library: records and intercepts frames."""

    def __init__(self, csms: Csms, cp_id: str, ws: ServerConnection) -> None:
        self.csms = csms
        self.cp_id = cp_id
        self.ws = ws
        # Without a negotiated subprotocol (a server offering none) the peer speaks 1.6.
        self.dialect = _DIALECTS[ws.subprotocol or csms_v16.SUBPROTOCOL]
        self.current: _Entry | None = None  # the CALL the library is handling
        self.raw_waiters: dict[str, asyncio.Future[list[Any] | None]] = {}
        self.expected_results: set[str] = set()  # unique ids of our `call()`s
        self.results: dict[str, list[Any]] = {}
        self.calls_in_flight: dict[str, asyncio.Task[Any]] = {}  # by unique id
        self.is_closed = False
        self.cp = self.dialect.charge_point(
            cp_id, self, csms, response_timeout_s=_LIBRARY_RESPONSE_TIMEOUT_S
        )

    async def recv(self) -> str:
        """Return the next frame for the library; raises ConnectionClosed when closed."""
        while True:
            # The library calls recv() only after it finished the previous frame.
            self._settle_current(answered=False)
            raw = await self.ws.recv()
            text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
            self.csms._record_frame(self.cp_id, "in", text)
            frame = _parse_frame(text)
            reply_id = _reply_id(frame)
            if reply_id is not None and reply_id in self.raw_waiters:
                waiter = self.raw_waiters.pop(reply_id)
                if not waiter.done():
                    waiter.set_result(frame)
                continue  # a reply to send_raw() must not reach the library's queue
            if reply_id is not None and reply_id in self.expected_results and frame:
                self.results[reply_id] = frame
            call = _as_call(frame)
            if call is not None:
                entry = self.csms._arrived(self.cp_id, *call)
                if _take(self.csms.behaviour.ignore_next, entry.call.action):
                    LOGGER.info(
                        "%s: ignoring %s %s", self.cp_id, entry.call.action, entry.call.unique_id
                    )
                    self.csms._settle(entry, answered=False)
                    continue
                self.current = entry
            return text

    async def send(self, text: str) -> None:
        """Send a frame to the charge point, recording it; raises ConnectionClosed."""
        self.csms._record_frame(self.cp_id, "out", text)
        frame = _parse_frame(text)
        current = self.current
        if current is not None and _reply_id(frame) == current.call.unique_id and frame:
            self._settle_current(answered=frame[0] == _CALLRESULT)
        await self.ws.send(text)

    def _settle_current(self, *, answered: bool) -> None:
        """Settle the CALL being handled, if any."""
        if self.current is not None:
            self.csms._settle(self.current, answered=answered)
            self.current = None

    def closed(self) -> None:
        """Settle what is pending, release send_raw() waiters, cancel unanswered call()s."""
        self.is_closed = True
        self._settle_current(answered=False)
        for unique_id, task in self.calls_in_flight.items():
            if unique_id not in self.results:  # a reply that arrived is queued in the library
                task.cancel()
        for waiter in self.raw_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self.raw_waiters.clear()


class Csms:
    """An OCPP 1.6J / 2.0.1 central system on real websockets recording what it receives."""

    def __init__(
        self,
        behaviour: CsmsBehaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        subprotocols: Iterable[str] = ("ocpp1.6",),
        ssl_context: ssl.SSLContext | None = None,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        self.behaviour = behaviour if behaviour is not None else CsmsBehaviour()
        self._ssl = ssl_context
        # Security profile 1/2: HTTP Basic auth per charge point id (None: no check).
        self._passwords = dict(passwords) if passwords is not None else None
        self._host = host
        self._requested_port = port
        self._subprotocols = [Subprotocol(s) for s in subprotocols]
        if unknown := [s for s in self._subprotocols if s not in _DIALECTS]:
            raise ValueError(f"unsupported subprotocol(s) {unknown}; known: {list(_DIALECTS)}")
        self._server: Server | None = None
        self._entries: list[_Entry] = []
        self._frames: dict[str, list[tuple[Direction, str]]] = {}
        self._connections: dict[str, _Connection] = {}
        self._transaction_ids = itertools.count(1)
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; raises RuntimeError if already started, OSError if bind fails."""
        if self._server is not None:
            raise RuntimeError("CSMS already started")
        self._server = await serve(
            self._handle, self._host, self._requested_port,
            subprotocols=self._subprotocols, process_request=self._check_request,
            ssl=self._ssl,
        )  # fmt: skip

    async def stop(self) -> None:
        """Close every connection and the server, waiting for all connection handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> Csms:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port; raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("CSMS not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The endpoint URL; the charge point appends "/<charge point id>"."""
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self._host}:{self.port}/ocpp"

    # -- what was received -----------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every settled CALL from every charge point, in arrival order (a snapshot)."""
        return [e.call for e in self._entries if e.settled]

    def calls(self, action: str, cp_id: str | None = None) -> list[dict[str, Any]]:
        """Return the payloads of the settled CALLs of `action` (from `cp_id`), in order."""
        return [r.payload for r in self._matching(action, cp_id, None)]

    def frames(self, cp_id: str) -> list[tuple[str, str]]:
        """Return every raw frame exchanged with `cp_id` as ("in"|"out", text), in order."""
        return list(self._frames.get(cp_id, []))

    async def wait_for(
        self,
        action: str,
        *,
        cp_id: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        count: int = 1,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """Return the payload of the count-th matching CALL; raises TimeoutError saying
        what was received instead."""
        if count < 1:
            raise ValueError("count must be >= 1")
        try:
            await self._wait_until(
                lambda: len(self._matching(action, cp_id, where)) >= count, timeout_s
            )
        except TimeoutError:
            raise TimeoutError(self._explain_missing(action, cp_id, count, timeout_s)) from None
        return self._matching(action, cp_id, where)[count - 1].payload

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Return once predicate() holds, re-checked whenever a CALL settles or a charge
        point connects or disconnects; raises TimeoutError."""
        await self._wait_until(predicate, timeout_s)

    # -- connections -----------------------------------------------------------------------

    def connected(self, cp_id: str) -> bool:
        """Return whether `cp_id` has an open connection."""
        return cp_id in self._connections

    def version(self, cp_id: str) -> str:
        """Return the version ("1.6"/"2.0.1") `cp_id` speaks; raises KeyError if not connected."""
        return self._require(cp_id).dialect.version

    async def wait_connected(self, cp_id: str, timeout_s: float = 10.0) -> None:
        """Return once `cp_id` is connected; raises TimeoutError."""
        await self._wait_until(lambda: self.connected(cp_id), timeout_s)

    async def wait_disconnected(self, cp_id: str, timeout_s: float = 10.0) -> None:
        """Return once `cp_id` has no connection; raises TimeoutError."""
        await self._wait_until(lambda: not self.connected(cp_id), timeout_s)

    async def disconnect(self, cp_id: str) -> None:
        """Close the websocket of `cp_id` and wait until its handler let go; raises
        KeyError if it is not connected."""
        conn = self._require(cp_id)
        await conn.ws.close()
        await self._wait_until(lambda: self._connections.get(cp_id) is not conn, 10.0)

    # -- acting as the CSMS ----------------------------------------------------------------

    async def call(
        self, cp_id: str, action: str, payload: dict[str, Any], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Send a CSMS-initiated CALL and return the CALLRESULT payload (camelCase, as on
        the wire) in the version `cp_id` speaks; raises KeyError if not connected,
        ValueError for an action unknown to that version, TypeError for unknown fields,
        OCPPError on CALLERROR, TimeoutError, ConnectionError when the charge point
        disconnects first."""
        conn = self._require(cp_id)
        request_type = getattr(conn.dialect.requests, action, None)
        if not (isinstance(request_type, type) and is_dataclass(request_type)):
            version = conn.dialect.version
            raise ValueError(f"not an OCPP {version} CSMS-initiated action: {action!r}")
        request = request_type(**camel_to_snake_case(payload))
        unique_id = str(uuid.uuid4())
        in_flight = asyncio.create_task(
            conn.cp.call(request, suppress=False, unique_id=unique_id), name=f"csms-{action}"
        )
        conn.calls_in_flight[unique_id] = in_flight  # cancelled if the connection closes
        conn.expected_results.add(unique_id)
        try:
            async with asyncio.timeout(timeout_s):
                await in_flight
            frame = conn.results[unique_id]
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if conn.is_closed and in_flight.cancelled() and (me is None or not me.cancelling()):
                raise ConnectionError(f"{cp_id} disconnected before answering {action}") from None
            raise
        finally:
            conn.calls_in_flight.pop(unique_id, None)
            conn.expected_results.discard(unique_id)
            conn.results.pop(unique_id, None)
        result: dict[str, Any] = frame[2]
        return result

    async def send_raw(
        self,
        cp_id: str,
        text: str,
        timeout_s: float = 5.0,
        *,
        reply_id: str | None = None,
    ) -> list[Any] | None:
        """Send `text` as is and return the reply frame with the matching unique id, or
        None if none comes within timeout_s; raises KeyError if not connected.

        The id awaited is `reply_id`, else the frame's own unique id, else "-1" (the
        OCPP 2.0.1 convention for replies to unparseable frames)."""
        conn = self._require(cp_id)
        if reply_id is None:
            frame = _parse_frame(text)
            has_id = frame is not None and len(frame) >= 2 and isinstance(frame[1], str)
            reply_id = frame[1] if frame is not None and has_id else _UNPARSEABLE_ID
        waiter: asyncio.Future[list[Any] | None] = asyncio.get_running_loop().create_future()
        conn.raw_waiters[reply_id] = waiter
        try:
            await conn.send(text)
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            return None
        finally:
            if conn.raw_waiters.get(reply_id) is waiter:
                del conn.raw_waiters[reply_id]

    # -- internals -------------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake whose path has no charge point id (HTTP 400)."""
        cp_id = _cp_id_from_path(request.path)
        if not cp_id:
            return connection.respond(HTTPStatus.BAD_REQUEST, "missing charge point id\n")
        if self._passwords is not None:
            expected = self._passwords.get(cp_id)
            given = _basic_auth(request.headers.get("Authorization"))
            if expected is None or given != (cp_id, expected):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one charge point connection until it closes."""
        cp_id = _cp_id_from_path(ws.request.path if ws.request is not None else "")
        conn = _Connection(self, cp_id, ws)
        old = self._connections.get(cp_id)
        self._connections[cp_id] = conn
        self._notify()
        LOGGER.info("%s: connected (subprotocol %s)", cp_id, ws.subprotocol)
        try:
            if old is not None:
                LOGGER.info("%s: new connection replaces the old one", cp_id)
                await old.ws.close(reason="replaced by a new connection")
            await conn.cp.start()
        except ConnectionClosed:
            pass
        except Exception:
            LOGGER.exception("%s: connection handler failed", cp_id)
        finally:
            conn.closed()
            if self._connections.get(cp_id) is conn:
                del self._connections[cp_id]
            self._notify()
            LOGGER.info("%s: disconnected", cp_id)

    def _require(self, cp_id: str) -> _Connection:
        """Return the live connection of `cp_id`; raises KeyError."""
        try:
            return self._connections[cp_id]
        except KeyError:
            raise KeyError(f"charge point {cp_id!r} is not connected") from None

    def _record_frame(self, cp_id: str, direction: Direction, text: str) -> None:
        """Append one raw frame to the log of `cp_id`."""
        self._frames.setdefault(cp_id, []).append((direction, text))
        LOGGER.info("%s %s %s", cp_id, "->" if direction == "in" else "<-", text)

    def _arrived(self, cp_id: str, unique_id: str, action: str, payload: dict[str, Any]) -> _Entry:
        """Register a CALL at arrival; it becomes visible once settled."""
        entry = _Entry(Received(cp_id, action, payload, datetime.now(UTC), unique_id, False))
        self._entries.append(entry)
        return entry

    def _settle(self, entry: _Entry, *, answered: bool) -> None:
        """Fix the fate of a CALL and wake waiters."""
        if not entry.settled:
            entry.call = replace(entry.call, answered=answered)
            entry.settled = True
            self._notify()

    def _next_transaction_id(self) -> int:
        """Return a transactionId unique over this CSMS run, starting at 1."""
        return next(self._transaction_ids)

    def _matching(
        self, action: str, cp_id: str | None, where: Callable[[dict[str, Any]], bool] | None
    ) -> list[Received]:
        """Return the settled CALLs of `action` (from `cp_id`) accepted by `where`."""
        return [
            r for r in self.received
            if r.action == action and (cp_id is None or r.charge_point_id == cp_id)
            and (where is None or where(r.payload))
        ]  # fmt: skip

    def _explain_missing(self, action: str, cp_id: str | None, count: int, timeout_s: float) -> str:
        """Describe a wait_for() that timed out, listing what was received."""
        seen = [r for r in self.received if cp_id is None or r.charge_point_id == cp_id]
        lines = [
            f"waited {timeout_s}s for {action} #{count} from {cp_id or 'any charge point'}; "
            f"received {len(seen)} CALL(s):"
        ]
        lines += [
            f"  {r.charge_point_id} {r.action} {json.dumps(r.payload)}"
            f"{'' if r.answered else ' (not answered)'}"
            for r in seen
        ]
        return "\n".join(lines)

    def _notify(self) -> None:
        """Wake everything waiting in _wait_until()."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Return once predicate() holds, re-checking on every change; raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()


def _cp_id_from_path(path: str) -> str:
    """Return the charge point id: the last segment of the request path (URL-decoded)."""
    return unquote(urlsplit(path).path.rsplit("/", 1)[-1])


#: `--version` choices: the subprotocols offered, in the server's order of preference.
_VERSION_CHOICES = {"1.6": ["ocpp1.6"], "2.0.1": ["ocpp2.0.1"], "both": ["ocpp2.0.1", "ocpp1.6"]}


async def _serve_forever(host: str, port: int, subprotocols: Iterable[str]) -> None:
    """Run a CSMS until cancelled (Ctrl-C)."""
    async with Csms(host=host, port=port, subprotocols=subprotocols) as csms:
        LOGGER.info("offering subprotocols %s", ", ".join(subprotocols))
        print(f"CSMS listening on {csms.url}/<cp-id>", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Run the CSMS standalone, logging each message in one line, until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.csms", description="A small OCPP 1.6J / 2.0.1 CSMS."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--version", choices=list(_VERSION_CHOICES), default="both",
        help="OCPP version(s) to speak; 'both' prefers 2.0.1 if offered (default: both)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("ocpp").setLevel(logging.WARNING)  # we log every frame ourselves
    logging.getLogger("websockets").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, _VERSION_CHOICES[args.version]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
