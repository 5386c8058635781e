"""The local control API over real HTTP on 127.0.0.1, against the real agent (simulated
drivers) and the test CSMS: the contract, status, the message log and its stream, bad
input, the token, and real hardware.

Every request goes through `ApiClient`, which checks each answer against the response
schema the OpenAPI document gives for that operation and status, and records which
operations a test exercised. `EXERCISED_BY` names, for each operation of the document,
the tests that exercise it; a test that claims an operation and does not call it fails,
and a test fails when the document has an operation the table does not name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from agent.api import ApiServer
from agent.api.contract import operations
from agent.api.stream import Subscriber, sse_event
from agent.app import Agent, AgentRunner
from agent.core.status import ConnectorStatus, SessionPhase
from agent.ocpp.connection import ConnectionState
from agent.ocpp.rpc import Frame
from drivers.types import FaultCode, PilotState, TokenType
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, make_config

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "openapi.yaml"
PACKAGED_DOC_PATH = ROOT / "agent" / "api" / "openapi.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
TOKEN = "api-token-0123456789abcdef"

# --- which test exercises which operation --------------------------------------------------

_ACTIONS = "test_api_actions.py::"
EXERCISED_BY: dict[str, list[str]] = {
    "getStatus": ["test_status_reports_station_evses_connection_and_outbox"],
    "getEvse": ["test_status_reports_station_evses_connection_and_outbox"],
    "plugIn": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "tap": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "setPilot": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "pauseEv": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "resumeEv": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "unplug": [_ACTIONS + "test_a_session_driven_through_the_api_reaches_the_csms"],
    "raiseFault": [_ACTIONS + "test_raising_and_clearing_a_fault_reports_faulted_then_available"],
    "clearFault": [_ACTIONS + "test_raising_and_clearing_a_fault_reports_faulted_then_available"],
    "dropConnection": [_ACTIONS + "test_network_drop_reconnects_and_boots_again"],
    "holdOffline": [
        _ACTIONS + "test_offline_for_a_second_reconnects_after_it",
        _ACTIONS + "test_offline_until_told_then_online_reconnects",
    ],
    "goOnline": [_ACTIONS + "test_offline_until_told_then_online_reconnects"],
    "cutPower": [
        _ACTIONS + "test_power_cut_and_restore_close_the_open_transaction_with_power_loss"
    ],
    "restorePower": [
        _ACTIONS + "test_power_cut_and_restore_close_the_open_transaction_with_power_loss"
    ],
    "getMessages": ["test_message_log_returns_the_last_frames_with_tokens_masked"],
    "streamMessages": ["test_message_stream_yields_new_frames_as_server_sent_events"],
    "getOpenApi": ["test_openapi_document_is_valid_served_and_shipped_identical"],
    "boost": [
        "test_energy_api.py::test_boost_lifts_the_off_peak_pause_for_the_session_only",
        "test_energy_api.py::test_a_station_without_energy_management_says_so",
    ],
    "getEnergy": [
        "test_energy_api.py::test_boost_lifts_the_off_peak_pause_for_the_session_only",
        "test_energy_api.py::test_a_station_without_energy_management_says_so",
    ],
}

#: The operations the running test called (reset before each test).
RECORDED: set[str] = set()


def _claims_of(nodeid: str) -> set[str]:
    file, _, name = nodeid.rpartition("::")
    claim = name if file.endswith("test_api.py") else f"{Path(file).name}::{name}"
    return {op for op, tests in EXERCISED_BY.items() if claim in tests}


@pytest.fixture(autouse=True, name="operations_claimed_are_exercised")
def operations_claimed_are_exercised_fixture(request: pytest.FixtureRequest) -> Any:
    """After each test: the operations EXERCISED_BY attributes to it were called."""
    RECORDED.clear()
    yield
    missing = _claims_of(request.node.nodeid.split("[")[0]) - RECORDED
    assert not missing, f"EXERCISED_BY says this test calls {sorted(missing)}; it did not"


# --- a client that checks every answer against the contract ---------------------------------

_TEMPLATES = [
    (op_id, method, re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
    for op_id, (method, path) in operations(DOCUMENT).items()
]


def operation_of(method: str, path: str) -> str | None:
    """The operationId a request goes to, or None for a route not in the document."""
    bare = path.split("?", 1)[0]
    for op_id, op_method, pattern in _TEMPLATES:
        if op_method == method.upper() and pattern.match(bare):
            return op_id
    return None


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of the document ($refs into its components resolve)."""
    return Draft202012Validator({**schema, "components": DOCUMENT["components"]})


def response_schema(op_id: str | None, status: int) -> dict[str, Any] | None:
    """The JSON schema the document gives for this answer (Error for 401s and routes it
    does not have); fails the test for a status the operation does not document."""
    error = {"$ref": "#/components/schemas/Error"}
    if op_id is None or status == 401:  # the bearer token guards every operation
        assert status in (401, 404, 405), f"undocumented answer {status} to an unknown route"
        return error
    method, path = operations(DOCUMENT)[op_id]
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{op_id} does not document status {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {})
    if "application/json" not in content:
        return None
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


class ApiClient:
    """HTTP to the API; every JSON answer is checked against the document."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        expect: int = 200,
        *,
        body: Any = None,
        data: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request, check the answer against the contract and `expect`; return it."""
        op_id = operation_of(method, path)
        if op_id is not None:
            RECORDED.add(op_id)
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        elif data is not None:
            kwargs["data"] = data
        async with self.session.request(method, path, **kwargs) as response:
            assert response.content_type == "application/json", response.content_type
            answer = await response.json()
            status = response.status
        schema = response_schema(op_id, status)
        if schema is not None:
            schema_validator(schema).validate(answer)
        assert status == expect, f"{method} {path}: {status} {answer}"
        if status >= 400:
            assert answer["error"], "an error answer must say what was wrong"
        return answer

    async def get(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """GET `path`."""
        return await self.call("GET", path, expect, **kwargs)

    async def post(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """POST `path`."""
        return await self.call("POST", path, expect, **kwargs)

    async def delete(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """DELETE `path`."""
        return await self.call("DELETE", path, expect, **kwargs)


class EventStream:
    """A text/event-stream read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout_s: float = 10.0) -> tuple[str, str]:
        """The next event as (event name, data), or ("comment", text) for a comment."""
        lines: list[str] = []
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if line:
                    lines.append(line)
                    continue
                if lines:
                    break
        if lines[0].startswith(":"):
            return "comment", lines[0][1:].strip()
        fields = dict(line.split(": ", 1) for line in lines)
        return fields["event"], fields["data"]

    async def message(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next `message` event whose Message matches, checked against the schema."""
        while True:
            event, data = await self.next()
            if event != "message":
                continue
            message: dict[str, Any] = json.loads(data)
            schema_validator({"$ref": "#/components/schemas/Message"}).validate(message)
            if predicate(message):
                return message


@dataclasses.dataclass
class ApiStation:
    """A running AgentRunner with an ApiServer beside it, and a client for it."""

    runner: AgentRunner
    server: ApiServer
    api: ApiClient
    session: aiohttp.ClientSession
    agents: list[Agent]

    @property
    def agent(self) -> Agent:
        """The agent running now."""
        agent = self.runner.agent
        assert agent is not None
        return agent

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[EventStream]:
        """Open the message stream (checked against the contract) once subscribed."""
        RECORDED.add("streamMessages")
        async with self.session.get("/api/v1/messages/stream") as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            events = EventStream(response)
            assert await events.next() == ("comment", "subscribed")
            yield events


StationFactory = Callable[..., Awaitable[ApiStation]]


@pytest.fixture(name="api_station")
async def api_station_fixture(csms: Csms, tmp_path: Path) -> AsyncIterator[StationFactory]:
    """Start AgentRunner(config).run(stop) and an ApiServer beside it; stop both after."""
    started: list[tuple[ApiStation, asyncio.Event, asyncio.Task[None]]] = []

    async def factory(
        *, evses: int = 1, token: str | None = None, keepalive_s: float = 15.0, **extra: Any
    ) -> ApiStation:
        api: dict[str, Any] = {"enabled": True, "port": 0}
        if token is not None:
            (tmp_path / "api-token").write_text(token + "\n", encoding="utf-8")
            api["token_file"] = str(tmp_path / "api-token")
        config = make_config(csms.url, tmp_path, evses=evses, extra={"api": api, **extra})
        agents: list[Agent] = []
        first = asyncio.Event()

        def on_agent(agent: Agent) -> None:
            agents.append(agent)
            first.set()

        runner = AgentRunner(config, on_agent=on_agent)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        async with asyncio.timeout(10):
            await first.wait()
        server = runner.api  # the runner serves the API the config enables
        assert server is not None
        server.sse_keepalive_s = keepalive_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        session = aiohttp.ClientSession(base_url=server.url, headers=headers)
        station = ApiStation(runner, server, ApiClient(session), session, agents)
        started.append((station, stop, task))
        await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == evses)
        return station

    yield factory
    for station, stop, task in started:
        await station.session.close()
        await station.server.stop()
        stop.set()
        await task


# --- the contract ------------------------------------------------------------------------------


async def test_openapi_document_is_valid_served_and_shipped_identical(
    api_station: StationFactory,
) -> None:
    validate_spec(DOCUMENT)
    assert PACKAGED_DOC_PATH.read_bytes() == DOC_PATH.read_bytes(), (
        "agent/api/openapi.yaml must be a copy of docs/openapi.yaml"
    )
    station = await api_station(token=TOKEN)
    served = await station.api.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert served == DOCUMENT


def test_contract_enums_are_the_code_enums() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["FaultCode"]["enum"] == [code.value for code in FaultCode]
    assert schemas["Connector"]["properties"]["status"]["enum"] == [
        status.value for status in ConnectorStatus
    ]
    assert schemas["Evse"]["properties"]["phase"]["enum"] == [p.value for p in SessionPhase]
    assert schemas["Evse"]["properties"]["pilot"]["enum"] == [p.value for p in PilotState]
    assert schemas["Connection"]["properties"]["state"]["enum"] == [
        s.value for s in ConnectionState
    ]
    tap = DOCUMENT["paths"]["/api/v1/evses/{evseId}/tap"]["post"]["requestBody"]
    tap_type = tap["content"]["application/json"]["schema"]["properties"]["type"]
    assert tap_type["enum"] == [t.value for t in TokenType]


def test_every_operation_in_the_contract_is_exercised_by_a_named_test() -> None:
    assert set(EXERCISED_BY) == set(operations(DOCUMENT))
    for tests in EXERCISED_BY.values():
        for test in tests:
            module_name, _, name = test.rpartition("::")
            module = importlib.import_module(
                "tests.integration." + (module_name or "test_api.py").removesuffix(".py")
            )
            assert callable(getattr(module, name, None)), f"no test {test}"


# --- status ------------------------------------------------------------------------------------


async def test_status_reports_station_evses_connection_and_outbox(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station(evses=2)
    status = await station.api.get("/api/v1/status")
    assert status["id"] == CP_ID and status["ocpp_version"] == "1.6"
    assert status["simulated"] is True and status["powered"] is True
    connection = status["connection"]
    assert connection["state"] == "connected" and connection["online"] is True
    assert connection["url"].endswith("/" + CP_ID) and connection["held_offline"] is False
    assert status["outbox_pending"] == 0
    assert [evse["id"] for evse in status["evses"]] == [1, 2]

    evse = await station.api.get("/api/v1/evses/2")
    assert evse["phase"] == "idle" and evse["status"] == "Available"
    assert evse["connectors"] == [{"id": 1, "type": "cType2", "status": "Available", "fault": None}]
    assert evse["pilot"] == "A" and evse["contactor_closed"] is False
    assert evse["offered_current_a"] == 0 and evse["duty_percent"] is None
    assert evse["transaction"] is None and evse["faults"] == [] and evse["ev"] is None
    assert evse["operative"] is True and evse["simulated"] is True


# --- the message log ---------------------------------------------------------------------------


async def test_message_log_returns_the_last_frames_with_tokens_masked(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    await station.api.post("/api/v1/evses/1/tap", body={"id_token": "CARD-SECRET-42"})
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    frames = station.agent.messages.frames
    # Quiet from here: the answer to the last CALL (that StatusNotification) is in.
    await station.agent.wait_until(
        lambda: not frames[-1].outgoing and frames[-1].action == "StatusNotification"
    )

    everything = await station.api.get("/api/v1/messages")
    assert everything[0]["action"] == "BootNotification" and everything[0]["direction"] == "out"
    authorize = [m for m in everything if m["action"] == "Authorize"]
    assert [m["direction"] for m in authorize] == ["out", "in"]
    assert '"idTag":"**********T-42"' in authorize[0]["text"]
    assert all("CARD-SECRET-42" not in m["text"] for m in everything)
    times = [datetime.fromisoformat(m["at"]) for m in everything]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    last_two = await station.api.get("/api/v1/messages?limit=2")
    assert last_two == everything[-2:]
    for bad in ("0", "1001", "abc", "2.5"):
        answer = await station.api.get(f"/api/v1/messages?limit={bad}", 400)
        assert "limit" in answer["error"]


async def test_message_stream_yields_new_frames_as_server_sent_events(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    async with station.stream() as events:
        await station.api.post("/api/v1/evses/1/plug")
        sent = await events.message(
            lambda m: m["action"] == "StatusNotification" and "Preparing" in m["text"]
        )
        assert sent["direction"] == "out"
        answer = await events.message(lambda m: m["direction"] == "in")
        assert answer["action"] == "StatusNotification"
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Preparing")
    await station.server.feed.wait_subscribers(0)  # the listener goes with its client


async def test_message_stream_sends_keepalive_comments_while_quiet(
    api_station: StationFactory,
) -> None:
    station = await api_station(keepalive_s=0.2)
    async with station.stream() as events:
        assert await events.next(timeout_s=5) == ("comment", "keepalive")


async def test_stopping_the_server_ends_open_streams(api_station: StationFactory) -> None:
    station = await api_station()
    async with station.stream() as events:
        await station.server.stop()
        with pytest.raises(EOFError):
            await events.next(timeout_s=5)
    assert station.server.feed.subscriber_count == 0
    # Only the agent's own listener is left on its message log: the API's is gone.
    assert len(station.agent.messages.listeners) == 1


def test_a_lagging_stream_client_loses_the_oldest_frames_and_is_told_how_many() -> None:
    subscriber = Subscriber(2)
    frames = [Frame(datetime.now().astimezone(), True, f"[{i}]", None) for i in range(5)]
    for frame in frames:
        subscriber.push(frame)
    assert subscriber.take() == (3, frames[3:])
    assert subscriber.take() == (0, [])
    assert sse_event("dropped", {"dropped": 3}) == b'event: dropped\ndata: {"dropped":3}\n\n'


# --- bad input, the token, real hardware ---------------------------------------------------


async def test_bad_requests_get_a_json_error_and_the_agent_keeps_running(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station()
    api = station.api
    assert "no EVSE 9" in (await api.get("/api/v1/evses/9", 404))["error"]
    await api.post("/api/v1/evses/0/plug", 404)
    await api.post("/api/v1/evses/2/faults", 404, body={"code": "rcd_trip"})
    assert "no such route" in (await api.get("/api/v1/evses/one", 404))["error"]
    assert "no such route" in (await api.get("/api/v1/nothing", 404))["error"]

    unknown = await api.post("/api/v1/evses/1/faults", 400, body={"code": "gremlins"})
    assert "body.code" in unknown["error"]
    assert "gremlins" in (await api.delete("/api/v1/evses/1/faults/gremlins", 400))["error"]
    assert (
        "not valid JSON"
        in (await api.post("/api/v1/evses/1/pilot", 400, data='{"state": '))["error"]
    )
    wrong_type = await api.post("/api/v1/evses/1/pilot", 400, body={"state": 3})
    assert "body.state" in wrong_type["error"] and "'B'" not in wrong_type["error"]
    await api.post("/api/v1/evses/1/pilot", 400, body={"state": "A"})
    assert "required" in (await api.post("/api/v1/evses/1/tap", 400))["error"]
    await api.post("/api/v1/evses/1/tap", 400, body={"id_token": "A", "uid": "x"})
    await api.post("/api/v1/evses/1/plug", 400, body={"phases": "3"})
    await api.post("/api/v1/evses/1/plug", 400, data='{"soc_percent": NaN}')
    await api.post("/api/v1/network/offline", 400, body={"seconds": 0})
    await api.call("PUT", "/api/v1/status", 405)

    status = await api.get("/api/v1/status")
    assert status["connection"]["state"] == "connected"
    assert status["evses"][0]["ev"] is None, "a rejected plug must not plug anything in"
    assert csms.connected(CP_ID)


async def test_every_route_but_the_document_needs_the_bearer_token(
    api_station: StationFactory,
) -> None:
    station = await api_station(token=TOKEN)
    api = station.api
    missing = await api.get("/api/v1/status", 401, headers={"Authorization": ""})
    assert "bearer token is required" in missing["error"]
    wrong = await api.post("/api/v1/evses/1/plug", 401, headers={"Authorization": "Bearer nope"})
    assert "wrong" in wrong["error"]
    await api.get("/api/v1/messages", 401, headers={"Authorization": f"Basic {TOKEN}"})
    async with station.session.get(
        "/api/v1/messages/stream", headers={"Authorization": ""}
    ) as response:
        assert response.status == 401
    assert (await api.post("/api/v1/evses/1/plug"))["ev"] is not None
    assert (await api.get("/api/v1/openapi.json", headers={"Authorization": ""}))["openapi"]


async def test_real_hardware_serves_status_and_log_but_refuses_simulator_actions(
    csms: Csms, api_station: StationFactory
) -> None:
    station = await api_station(evses=2)
    hardware = station.agent.hardware
    simulated = hardware[1]
    # EVSE 1 as a real board would be: the same drivers, no plant behind them.
    hardware[1] = dataclasses.replace(simulated, plant=None)
    try:
        api = station.api
        status = await api.get("/api/v1/status")
        assert status["simulated"] is False
        assert [e["simulated"] for e in status["evses"]] == [False, True]
        assert status["evses"][0]["ev"] is None
        assert await api.get("/api/v1/messages?limit=1")
        for path, body in [
            ("plug", None),
            ("unplug", None),
            ("pilot", {"state": "C"}),
            ("ev/pause", None),
            ("ev/resume", None),
            ("tap", {"id_token": "CARD-1"}),
            ("faults", {"code": "rcd_trip"}),
        ]:
            refused = await api.post(f"/api/v1/evses/1/{path}", 409, body=body)
            assert "real hardware" in refused["error"]
        await api.delete("/api/v1/evses/1/faults/rcd_trip", 409)
        await api.post("/api/v1/network/drop", 409)
        await api.post("/api/v1/network/offline", 409)
        await api.post("/api/v1/power/cut", 409)
        assert station.runner.powered and csms.connected(CP_ID)
        assert (await api.post("/api/v1/evses/2/plug"))["ev"] is not None
    finally:
        hardware[1] = simulated
    assert not station.agent.hardware[1].plant.contactor_closed
