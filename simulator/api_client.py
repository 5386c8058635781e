"""A small typed async client for the agent's local control API (docs/openapi.yaml).

Responsible for: one method per route, JSON in and JSON out, the optional bearer token,
turning an error answer into `ApiError(status, message)` and a failed connection into
`ApiUnreachable(url, reason)`, and reading the server-sent message stream.

It talks to a running agent over HTTP only, exactly as `curl` would.
It must not import the agent, retry, interpret the station's state, or print.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import aiohttp

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_PREFIX = "/api/v1"
#: Biggest single line accepted from the message stream (a large OCPP frame fits).
_MAX_LINE_BYTES = 4 * 1024 * 1024

JsonObject = dict[str, Any]


class ApiError(Exception):
    """The API answered with an error status; `message` is its `error` text."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class ApiUnreachable(Exception):  # noqa: N818 - reads as a message
    """No answer from the API at `url` (refused, timed out, not HTTP)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the API at {url}: {reason}")


def _base_url(url: str) -> str:
    """Return `url` without a trailing slash or /api/v1; raises ValueError if not http(s)."""
    base = url.rstrip("/").removesuffix(API_PREFIX)
    if not base.startswith(("http://", "https://")) or len(base.split("://", 1)[1]) == 0:
        raise ValueError(f"the API URL must start with http:// or https://, got {url!r}")
    return base


def _reason(exc: aiohttp.ClientError) -> str:
    """Why a connection failed, in a few words (`Connection refused`)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return exc.os_error.strerror or str(exc.os_error) or "cannot connect"
    return str(exc) or type(exc).__name__


class MessageStream:
    """The OCPP messages of `/messages/stream`, one dict per `event: message`, as they come.

    Iteration ends when the server closes the stream; raises ApiUnreachable if the
    connection breaks.
    """

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> JsonObject:
        """Return the next message; raises StopAsyncIteration at the end of the stream."""
        event, data = "message", []  # SSE defaults (WHATWG HTML, server-sent events)
        while True:
            try:
                raw = await self._response.content.readline()
            except (aiohttp.ClientError, ValueError) as exc:
                raise ApiUnreachable(self._url, f"the message stream broke: {exc}") from None
            if not raw:
                raise StopAsyncIteration
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
                continue  # comments (":" keep-alives) and other fields are ignored
            if data and event == "message":
                try:
                    message = json.loads("\n".join(data))
                except json.JSONDecodeError:
                    message = None
                if isinstance(message, dict):
                    return message
            event, data = "message", []


class ApiClient:
    """One method per route of the local control API; use as `async with ApiClient(...)`."""

    def __init__(
        self, base_url: str = DEFAULT_API_URL, *, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        """Prepare a client for `base_url`; raises ValueError if it is not an http(s) URL."""
        self.base_url = _base_url(base_url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections (the client can be used again afterwards)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                read_bufsize=_MAX_LINE_BYTES,
            )
        return self._session

    def url(self, path: str) -> str:
        """Return the full URL of an API path such as `/status`."""
        return f"{self.base_url}{API_PREFIX}{path}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON answer; raises ApiError, ApiUnreachable."""
        url = self.url(path)
        try:
            async with self._http().request(
                method, url, json=None if body is None else dict(body), params=params
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError:
            raise ApiUnreachable(url, f"no answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise ApiUnreachable(url, _reason(exc)) from None
        try:
            answer = json.loads(text) if text else None
        except json.JSONDecodeError:
            answer = None
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise ApiError(status, str(message) if message else text[:200] or f"HTTP {status}")
        if answer is None:
            raise ApiUnreachable(url, f"HTTP {status} without a JSON body: not the cpagent API?")
        return answer

    async def _object(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> JsonObject:
        answer = await self._request(method, path, body=body)
        if not isinstance(answer, dict):
            raise ApiUnreachable(self.url(path), "expected a JSON object: not the cpagent API?")
        return answer

    # -- status ----------------------------------------------------------------------------

    async def status(self) -> JsonObject:
        """GET /status: the station, its EVSEs, the connection and the outbox."""
        return await self._object("GET", "/status")

    async def evse(self, evse_id: int) -> JsonObject:
        """GET /evses/{id}: one EVSE."""
        return await self._object("GET", f"/evses/{evse_id}")

    async def openapi(self) -> JsonObject:
        """GET /openapi.json: the API contract."""
        return await self._object("GET", "/openapi.json")

    # -- the EV and the cable --------------------------------------------------------------

    async def plug(
        self,
        evse_id: int,
        *,
        battery_wh: float | None = None,
        soc_percent: float | None = None,
        max_current_a: float | None = None,
        phases: int | None = None,
        target_soc_percent: float | None = None,
    ) -> JsonObject:
        """POST /evses/{id}/plug: plug a simulated EV in (omitted values: config defaults)."""
        given = {
            "battery_wh": battery_wh,
            "soc_percent": soc_percent,
            "max_current_a": max_current_a,
            "phases": phases,
            "target_soc_percent": target_soc_percent,
        }
        body = {key: value for key, value in given.items() if value is not None}
        return await self._object("POST", f"/evses/{evse_id}/plug", body)

    async def unplug(self, evse_id: int) -> JsonObject:
        """POST /evses/{id}/unplug: pull the cable."""
        return await self._object("POST", f"/evses/{evse_id}/unplug")

    async def set_pilot(self, evse_id: int, state: str | None) -> JsonObject:
        """POST /evses/{id}/pilot: force the pilot state (B..F), or None for the EV's own."""
        return await self._object("POST", f"/evses/{evse_id}/pilot", {"state": state})

    async def pause_ev(self, evse_id: int) -> JsonObject:
        """POST /evses/{id}/ev/pause: the EV stops asking for energy."""
        return await self._object("POST", f"/evses/{evse_id}/ev/pause")

    async def resume_ev(self, evse_id: int) -> JsonObject:
        """POST /evses/{id}/ev/resume: the EV asks for energy again."""
        return await self._object("POST", f"/evses/{evse_id}/ev/resume")

    async def tap(self, evse_id: int, id_token: str, token_type: str | None = None) -> JsonObject:
        """POST /evses/{id}/tap: present a token at the EVSE's reader."""
        body: JsonObject = {"id_token": id_token}
        if token_type is not None:
            body["type"] = token_type
        return await self._object("POST", f"/evses/{evse_id}/tap", body)

    async def boost(self, evse_id: int) -> JsonObject:
        """POST /evses/{id}/boost: the driver lifts off-peak and PV for this session."""
        return await self._object("POST", f"/evses/{evse_id}/boost")

    async def energy(self) -> JsonObject:
        """GET /energy: what local energy management sees and decides."""
        return await self._object("GET", "/energy")

    # -- faults ----------------------------------------------------------------------------

    async def raise_fault(self, evse_id: int, code: str, detail: str | None = None) -> JsonObject:
        """POST /evses/{id}/faults: raise a catalogue fault on the simulated hardware."""
        body: JsonObject = {"code": code}
        if detail is not None:
            body["detail"] = detail
        return await self._object("POST", f"/evses/{evse_id}/faults", body)

    async def clear_fault(self, evse_id: int, code: str) -> JsonObject:
        """DELETE /evses/{id}/faults/{code}: clear a fault."""
        return await self._object("DELETE", f"/evses/{evse_id}/faults/{code}")

    # -- network and power -----------------------------------------------------------------

    async def network_drop(self) -> JsonObject:
        """POST /network/drop: close the CSMS connection; the agent reconnects."""
        return await self._object("POST", "/network/drop")

    async def network_offline(self, seconds: float | None = None) -> JsonObject:
        """POST /network/offline: stay offline for `seconds` (None: until network_online)."""
        return await self._object("POST", "/network/offline", {"seconds": seconds})

    async def network_online(self) -> JsonObject:
        """POST /network/online: end an offline hold, reconnect now."""
        return await self._object("POST", "/network/online")

    async def power_cut(self) -> JsonObject:
        """POST /power/cut: the simulated station loses power at once."""
        return await self._object("POST", "/power/cut")

    async def power_restore(self) -> JsonObject:
        """POST /power/restore: power returns, the agent starts again over its store."""
        return await self._object("POST", "/power/restore")

    # -- messages --------------------------------------------------------------------------

    async def messages(self, limit: int | None = None) -> list[JsonObject]:
        """GET /messages: the last OCPP messages, oldest first."""
        params = None if limit is None else {"limit": str(limit)}
        answer = await self._request("GET", "/messages", params=params)
        if not isinstance(answer, list):
            raise ApiUnreachable(
                self.url("/messages"), "expected a JSON list: not the cpagent API?"
            )
        return [item for item in answer if isinstance(item, dict)]

    @asynccontextmanager
    async def message_stream(self) -> AsyncIterator[MessageStream]:
        """GET /messages/stream: yield the live stream once the server has accepted it;
        raises ApiError, ApiUnreachable."""
        url = self.url("/messages/stream")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s)
        try:
            response = await self._http().get(url, timeout=timeout)
        except TimeoutError:
            raise ApiUnreachable(url, f"no answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise ApiUnreachable(url, _reason(exc)) from None
        try:
            if response.status >= 400:
                text = await response.text()
                try:
                    message = json.loads(text).get("error")
                except (json.JSONDecodeError, AttributeError):
                    message = None
                raise ApiError(response.status, str(message or text[:200] or "error"))
            yield MessageStream(response, url)
        finally:
            response.close()  # an endless stream is never handed back to the pool
