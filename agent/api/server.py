"""The local HTTP + JSON control API (docs/openapi.yaml), served with aiohttp.

Responsible for: the routes of the contract, over whichever agent the runner runs now
(read through `runner.agent` on every request, never cached: a Reset or a simulated power
restore brings a new one); the bearer token; checking request bodies against the
contract's own schemas; JSON errors that say what was wrong (400, 401, 404, 409, 503) and
never take the agent down; the OCPP message log and its event stream; the driver's boost
and the energy management's state.

Status, the message log, the boost and the energy state are served on every station. EV,
token and fault actions act on an EVSE's simulated plant, network and power actions on a
fully simulated station; on real hardware they answer 409.

Must not: hold the agent's internals across requests, start untracked tasks, or block
the event loop (every action is a quick call into the agent or the simulator).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.api import views
from agent.api.contract import BodyError, RequestBodies, load_document
from agent.api.stream import MessageFeed, serve_stream
from agent.core.events import IdToken
from agent.core.tasks import TaskSet
from agent.energy import BoostRefusedError
from agent.ocpp.connection import ConnectionState
from drivers.types import FaultCode, PilotState, TokenType

if TYPE_CHECKING:  # agent.app imports this package when it wires the API in
    from agent.app import Agent, AgentRunner
    from agent.config import ApiConfig

log = logging.getLogger(__name__)
access_log = logging.getLogger("agent.api.access")

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
_EVSE = PREFIX + r"/evses/{evse_id:\d+}"
#: How long an action waits for the agent to take it in before answering anyway.
SETTLE_TIMEOUT_S = 2.0
#: How long a power cut or restore may take before the answer goes out anyway.
POWER_TIMEOUT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than 200, with the sentence that goes into `{"error": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="cpagent"'} if status == 401 else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _fault_code(text: str) -> FaultCode:
    """The catalogue's fault code spelled `text`; raises ApiError 400 naming the known ones."""
    try:
        return FaultCode(text)
    except ValueError:
        known = ", ".join(code.value for code in FaultCode)
        raise ApiError(400, f"'{text}' is not a fault code (known: {known})") from None


async def _noop() -> None:
    """A lifecycle job that does nothing: awaiting it means earlier jobs are done."""


class ApiServer:
    """Serves the local API for an AgentRunner's current agent on config.host:config.port."""

    def __init__(
        self,
        runner: AgentRunner,
        config: ApiConfig,
        *,
        sse_keepalive_s: float = 15.0,
        sse_queue_size: int = 256,
    ) -> None:
        """Prepare the API (nothing listens before start())."""
        self._runner = runner
        self._config = config
        self.sse_keepalive_s = sse_keepalive_s  # seconds between SSE keepalive comments
        self._sse_queue_size = sse_queue_size
        self._document = load_document()
        self._bodies = RequestBodies(self._document)
        self._feed = MessageFeed(lambda: runner.agent)
        self._tasks = TaskSet("api")
        self._cut_agent: Agent | None = None  # the agent a power cut was asked of
        self._web: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on config.host:config.port; raises OSError when the port cannot be bound."""
        if self._web is not None:
            raise RuntimeError("the API server is already started")
        app = web.Application(middlewares=[self._guard])
        self._add_routes(app)
        runner = web.AppRunner(app, shutdown_timeout=5.0, access_log=access_log)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._config.host, self._config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._web = runner
        self._port = int(runner.addresses[0][1])
        self._feed = MessageFeed(lambda: self._runner.agent)  # a fresh one after a stop()
        self._feed.sync()
        self._runner.on_change.append(self._feed.sync)
        self._feed.sync()
        log.info("local API listening on %s", self.url)

    async def stop(self) -> None:
        """End every event stream, stop listening and cancel the API's own tasks."""
        runner, self._web = self._web, None
        if self._feed.sync in self._runner.on_change:
            self._runner.on_change.remove(self._feed.sync)
        await self._tasks.cancel_all()
        self._feed.close()
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The bound TCP port; raises RuntimeError before start()."""
        if self._port is None:
            raise RuntimeError("the API server is not started")
        return self._port

    @property
    def feed(self) -> MessageFeed:
        """The OCPP message feed behind /messages and /messages/stream."""
        return self._feed

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8080; raises RuntimeError before start()."""
        host = self._config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _add_routes(self, app: web.Application) -> None:
        get, post = web.get, web.post
        app.add_routes(
            [
                get(f"{PREFIX}/status", self._status, allow_head=False),
                get(_EVSE, self._evse, allow_head=False),
                post(f"{_EVSE}/plug", self._plug),
                post(f"{_EVSE}/unplug", self._unplug),
                post(f"{_EVSE}/pilot", self._pilot),
                post(f"{_EVSE}/ev/pause", self._pause),
                post(f"{_EVSE}/ev/resume", self._resume),
                post(f"{_EVSE}/tap", self._tap),
                post(f"{_EVSE}/boost", self._boost),
                get(f"{PREFIX}/energy", self._energy, allow_head=False),
                post(f"{_EVSE}/faults", self._raise_fault),
                web.delete(f"{_EVSE}/faults/{{code}}", self._clear_fault),
                post(f"{PREFIX}/network/drop", self._drop),
                post(f"{PREFIX}/network/offline", self._offline),
                post(f"{PREFIX}/network/online", self._online),
                post(f"{PREFIX}/power/cut", self._power_cut),
                post(f"{PREFIX}/power/restore", self._power_restore),
                get(f"{PREFIX}/messages", self._messages, allow_head=False),
                get(f"{PREFIX}/messages/stream", self._stream, allow_head=False),
                get(OPENAPI_PATH, self._openapi, allow_head=False),
            ]
        )

    # -- every request -----------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Check the token, run the handler, and turn every failure into a JSON error."""
        try:
            if request.path != OPENAPI_PATH:
                self._authorize(request)
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message)
        except web.HTTPException as exc:  # raised by aiohttp itself: 404, 405, 413
            if exc.status < 400:
                raise
            if exc.status == 404:
                return _error(404, f"no such route: {request.method} {request.path}")
            if exc.status == 405:
                return _error(405, f"{request.method} is not allowed on {request.path}")
            return _error(exc.status, exc.reason)
        except Exception:
            log.exception("local API: %s %s failed", request.method, request.path)
            return _error(500, "internal error (the agent's log has the details)")

    def _authorize(self, request: web.Request) -> None:
        token = self._config.token
        if token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "a bearer token is required (Authorization: Bearer <token>)")
        if not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
            raise ApiError(401, "the bearer token is wrong")

    async def _body(self, request: web.Request, operation_id: str) -> dict[str, Any]:
        try:
            return self._bodies.check(operation_id, await request.read())
        except BodyError as exc:
            raise ApiError(400, str(exc)) from None

    # -- where the agent is ------------------------------------------------------------

    def _down(self) -> bool:
        """Whether the agent is down (simulated power cut asked for, or not started)."""
        agent = self._runner.agent
        return agent is None or not self._runner.powered or agent is self._cut_agent

    def _live_agent(self) -> Agent:
        agent = self._runner.agent
        if agent is None:
            raise ApiError(503, "the agent is not running yet")
        if self._down():
            raise ApiError(503, "the agent is down (simulated power cut); POST /power/restore")
        return agent

    def _evse_id(self, request: web.Request) -> int:
        evse_id = int(request.match_info["evse_id"])
        if evse_id not in {evse.id for evse in self._runner.config.evses}:
            known = ", ".join(str(evse.id) for evse in self._runner.config.evses)
            raise ApiError(404, f"no EVSE {evse_id} (this station has EVSE {known})")
        return evse_id

    def _target(self, request: web.Request) -> tuple[Agent, int]:
        evse_id = self._evse_id(request)
        return self._live_agent(), evse_id

    @staticmethod
    def _plant(agent: Agent, evse_id: int, action: str) -> Any:
        plant = agent.hardware[evse_id].plant
        if plant is None:
            raise ApiError(
                409, f"EVSE {evse_id} has real hardware: cannot {action} (simulator only)"
            )
        return plant

    def _simulated_station(self, agent: Agent | None) -> bool:
        if agent is None:
            return all(evse.board.driver == "sim" for evse in self._runner.config.evses)
        return all(views.is_simulated(hardware) for hardware in agent.hardware.values())

    def _require_simulated_station(self, agent: Agent | None, action: str) -> None:
        if not self._simulated_station(agent):
            raise ApiError(409, f"this station has real hardware: cannot {action} (simulator only)")

    async def _evse_after(self, agent: Agent, evse_id: int) -> web.Response:
        """The EVSE once its session machine has taken in what the action caused."""
        evse = agent.station.evses[evse_id]
        settled = self._tasks.spawn(evse.run_in_lifecycle(_noop), name=f"api-settle-{evse_id}")
        await asyncio.wait({settled}, timeout=SETTLE_TIMEOUT_S)
        return web.json_response(views.evse_view(agent, evse_id))

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Await `predicate` (re-checked at each change of agent or power): False on timeout."""
        try:
            await self._runner.wait_until(predicate, timeout_s)
        except TimeoutError:
            return False
        return True

    # -- status ------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        agent = self._runner.agent
        config = self._runner.config
        return web.json_response(
            views.station_view(
                agent,
                station_id=config.station.id,
                # the running agent's version (negotiated), else the first preference
                ocpp_version=agent.ocpp_version if agent is not None else config.csms.ocpp_version,
                simulated=self._simulated_station(agent),
                down=self._down(),
            )
        )

    async def _evse(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        return web.json_response(views.evse_view(agent, evse_id))

    # -- the EV ------------------------------------------------------------------------

    async def _plug(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        body = await self._body(request, "plugIn")
        plant = self._plant(agent, evse_id, "plug in an EV")
        if plant.ev is not None:
            raise ApiError(409, f"an EV is already plugged in at EVSE {evse_id}")
        from simulator.ev import EvParameters, SimEv  # the simulator only when simulating

        defaults = agent.config.simulator.ev
        try:
            params = EvParameters(
                battery_wh=body.get("battery_wh", defaults.battery_wh),
                soc_percent=body.get("soc_percent", defaults.soc_percent),
                max_current_a=body.get("max_current_a", defaults.max_current_a),
                phases=body.get("phases", defaults.phases),
                target_soc_percent=body.get("target_soc_percent", defaults.target_soc_percent),
            )
        except ValueError as exc:
            raise ApiError(400, f"no EV can have these parameters: {exc}") from None
        plant.plug_in(SimEv(params))
        return await self._evse_after(agent, evse_id)

    async def _unplug(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        plant = self._plant(agent, evse_id, "unplug an EV")
        if plant.ev is None:
            raise ApiError(409, f"no EV is plugged in at EVSE {evse_id}")
        plant.force_pilot(None)  # a pulled cable reads state A, whatever was forced
        plant.unplug()
        return await self._evse_after(agent, evse_id)

    async def _pilot(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        body = await self._body(request, "setPilot")
        plant = self._plant(agent, evse_id, "force the pilot state")
        state = body["state"]
        plant.force_pilot(None if state is None else PilotState(state))
        return await self._evse_after(agent, evse_id)

    async def _pause(self, request: web.Request) -> web.Response:
        return await self._ev_switch(request, pause=True)

    async def _resume(self, request: web.Request) -> web.Response:
        return await self._ev_switch(request, pause=False)

    async def _ev_switch(self, request: web.Request, *, pause: bool) -> web.Response:
        agent, evse_id = self._target(request)
        plant = self._plant(agent, evse_id, "pause or resume an EV")
        ev = plant.ev
        if ev is None:
            raise ApiError(409, f"no EV is plugged in at EVSE {evse_id}")
        if pause:
            ev.pause()
        else:
            ev.resume()
        return await self._evse_after(agent, evse_id)

    # -- tokens and faults ---------------------------------------------------------------

    async def _tap(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        body = await self._body(request, "tap")
        self._plant(agent, evse_id, "present a token")
        token = IdToken(body["id_token"], TokenType(body["type"]))
        # Through the simulated reader, as a card would come; straight to the station
        # when there is no reader or it did not pass the tap on (stopped, a repeat).
        tap = getattr(agent.hardware[evse_id].reader, "tap", None)
        if tap is None or not tap(token.value, token.type):
            agent.station.present_token(evse_id, token)
        return await self._evse_after(agent, evse_id)

    # -- energy management -------------------------------------------------------------

    async def _boost(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        if agent.energy is None:
            raise ApiError(409, "no energy management is configured (the config's energy:)")
        try:
            agent.energy.boost(evse_id)
        except BoostRefusedError as exc:
            raise ApiError(409, str(exc)) from None
        return await self._evse_after(agent, evse_id)

    async def _energy(self, request: web.Request) -> web.Response:
        agent = self._live_agent()
        if agent.energy is None:
            return web.json_response({"enabled": False})
        return web.json_response({"enabled": True, **agent.energy.status()})

    async def _raise_fault(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        body = await self._body(request, "raiseFault")
        plant = self._plant(agent, evse_id, "raise a fault")
        plant.raise_fault(_fault_code(body["code"]), body.get("detail", "raised through the API"))
        return await self._evse_after(agent, evse_id)

    async def _clear_fault(self, request: web.Request) -> web.Response:
        agent, evse_id = self._target(request)
        code = _fault_code(request.match_info["code"])
        plant = self._plant(agent, evse_id, "clear a fault")
        if not plant.has_fault(code):
            by_agent = code in agent.station.evses[evse_id].faults
            why = " (the agent itself raised it)" if by_agent else ""
            raise ApiError(
                409,
                f"fault {code.value} is not raised on the simulated hardware of EVSE "
                f"{evse_id}{why}",
            )
        plant.clear_fault(code)
        return await self._evse_after(agent, evse_id)

    # -- network -----------------------------------------------------------------------

    async def _drop(self, request: web.Request) -> web.Response:
        agent = self._live_agent()
        self._require_simulated_station(agent, "drop the CSMS connection")
        supervisor = agent.supervisor
        if supervisor.state != ConnectionState.CONNECTED:
            raise ApiError(409, f"not connected to the CSMS (connection {supervisor.state})")
        before = supervisor.connections
        await supervisor.drop()
        await self._settle_connection(
            agent,
            lambda: (
                supervisor.state != ConnectionState.CONNECTED or supervisor.connections != before
            ),
        )
        return web.json_response(views.connection_view(agent, down=False))

    async def _offline(self, request: web.Request) -> web.Response:
        agent = self._live_agent()
        body = await self._body(request, "holdOffline")
        self._require_simulated_station(agent, "hold the CSMS connection offline")
        await agent.supervisor.hold_offline(body.get("seconds"))
        return web.json_response(views.connection_view(agent, down=False))

    async def _online(self, request: web.Request) -> web.Response:
        agent = self._live_agent()
        self._require_simulated_station(agent, "end an offline hold")
        supervisor = agent.supervisor
        if not supervisor.held_offline:
            raise ApiError(409, "the connection is not held offline")
        supervisor.release()
        await self._settle_connection(
            agent, lambda: supervisor.state != ConnectionState.HELD_OFFLINE
        )
        return web.json_response(views.connection_view(agent, down=False))

    @staticmethod
    async def _settle_connection(agent: Agent, predicate: Callable[[], bool]) -> None:
        try:
            await agent.wait_until(predicate, SETTLE_TIMEOUT_S)
        except TimeoutError:
            log.info("local API: the connection did not change within %ss", SETTLE_TIMEOUT_S)

    # -- power -------------------------------------------------------------------------

    async def _power_cut(self, request: web.Request) -> web.Response:
        runner = self._runner
        agent = runner.agent
        self._require_simulated_station(agent, "cut the power")
        if self._down() or not runner.power_cut():
            raise ApiError(409, "the power is already off")
        self._cut_agent = agent
        await self._wait(lambda: not runner.powered, POWER_TIMEOUT_S)
        return web.json_response({"powered": False})

    async def _power_restore(self, request: web.Request) -> web.Response:
        runner = self._runner
        cut = self._cut_agent
        self._require_simulated_station(runner.agent, "restore the power")
        if runner.powered and cut is not None and runner.agent is cut:
            await self._wait(lambda: not runner.powered, POWER_TIMEOUT_S)  # still going down
        if not runner.power_restore():
            raise ApiError(409, "the power is on")
        await self._wait(lambda: runner.agent is not cut, POWER_TIMEOUT_S)
        self._cut_agent = None
        self._feed.sync()
        return web.json_response({"powered": True})

    # -- the message log ---------------------------------------------------------------

    def _message_view(self) -> Callable[[Any], dict[str, Any]]:
        mask = self._runner.config.logging.mask_id_tokens
        return lambda frame: views.message_view(frame, mask=mask)

    async def _messages(self, request: web.Request) -> web.Response:
        text = request.query.get("limit", "100")
        try:
            limit = int(text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise ApiError(400, f"limit must be an integer from 1 to 1000, got '{text}'")
        self._feed.sync()
        frames = list(self._feed.history)[-limit:]
        view = self._message_view()
        return web.json_response([view(frame) for frame in frames])

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await serve_stream(
            request,
            self._feed,
            self._message_view(),
            keepalive_s=self.sse_keepalive_s,
            queue_size=self._sse_queue_size,
        )

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._document)
