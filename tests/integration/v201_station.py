"""Run the real agent with the OCPP 2.0.1 adapter (until app.py can choose it itself).

`RunningStation201` is conftest's RunningStation (run_agent, restarts after a Reset,
simulated EV and card at hand) whose every agent has its 1.6 adapter and connection
supervisor replaced, before it runs, by an `Ocpp201Adapter` over the same station and
store and a supervisor speaking `ocpp2.0.1`, wired exactly as Agent.__init__ wires the
1.6 ones. An agent started after a Reset boots with reason RemoteReset.

Also: small helpers to act as a 2.0.1 CSMS (variables, statuses, a core transaction).

The replaced 1.6 adapter stays subscribed to the station (inert: never online) and its
authorizer stays installed. This reaches into Agent's private `_notify`, `_on_reset` and
`_ssl_context`: the hook app.py needs is to build the adapter by `csms.ocpp_version`
(and pass the boot reason).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.app import Agent
from agent.config import Config
from agent.core.events import IdToken
from agent.ocpp.connection import Backoff, ConnectionSupervisor
from agent.ocpp.v201.adapter import Ocpp201Adapter, VendorHandler
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation, make_config

#: Install settings every 2.0.1 test station starts with (by device model path).
FAST_SETTINGS_201: dict[str, str] = {"OCPPCommCtrlr/HeartbeatInterval": "300"}


class RunningStation201(RunningStation):
    """A RunningStation whose agents speak OCPP 2.0.1."""

    def __init__(
        self,
        config: Config,
        *,
        install_settings: Mapping[str, str] | None = None,
        vendor_handlers: Mapping[str, VendorHandler] | None = None,
    ) -> None:
        super().__init__(config)
        self.install_settings = {**FAST_SETTINGS_201, **(install_settings or {})}
        self.vendor_handlers = dict(vendor_handlers or {})
        self.resets: list[bool] = []  # the `hard` flag of each reset an adapter asked for
        self._reset_pending = False

    @property
    def adapter(self) -> Ocpp201Adapter:
        """The 2.0.1 adapter of the agent running now."""
        adapter = self.agent.adapter
        if not isinstance(adapter, Ocpp201Adapter):
            raise AssertionError("the agent's adapter was not replaced")
        return adapter

    def _on_agent(self, agent: Agent) -> None:
        reason = "RemoteReset" if self._reset_pending else "PowerUp"
        self._reset_pending = False
        install(agent, self, boot_reason=reason)
        super()._on_agent(agent)

    def _request_reset(self, agent: Agent, hard: bool) -> None:
        self.resets.append(hard)
        self._reset_pending = True
        agent._on_reset(hard)


def install(agent: Agent, running: RunningStation201, *, boot_reason: str) -> None:
    """Replace the agent's adapter and supervisor with 2.0.1 ones (before `run()`)."""
    station = agent.config.station
    charging_station = {"model": station.model, "vendorName": station.vendor}
    if station.serial_number:
        charging_station["serialNumber"] = station.serial_number
    if station.firmware_version:
        charging_station["firmwareVersion"] = station.firmware_version
    adapter = Ocpp201Adapter(
        station=agent.station,
        store=agent.store,
        clock=agent.clock,
        charging_station=charging_station,
        install_settings=running.install_settings,
        request_reset=lambda hard: running._request_reset(agent, hard),
        boot_reason=boot_reason,
        vendor_handlers=running.vendor_handlers,
    )
    csms = agent.config.csms
    agent.adapter = adapter  # type: ignore[assignment]
    agent.supervisor = ConnectionSupervisor(
        url=csms.url,
        charge_point_id=station.id,
        dialect=adapter.dialect,
        handlers=adapter.handlers(),
        session=adapter.run_session,
        backoff=Backoff(
            csms.reconnect.initial_backoff_s,
            csms.reconnect.max_backoff_s,
            csms.reconnect.jitter,
        ),
        response_timeout_s=csms.response_timeout_s,
        ping_interval_s=adapter.ping_interval_s,
        basic_auth=(csms.basic_auth.username, csms.basic_auth.password.reveal())
        if csms.basic_auth
        else None,
        ssl_context=agent._ssl_context(),
        on_frame=agent.messages,
        on_state=lambda _state: agent._notify(),
    )
    adapter.on_change.append(agent._notify)


async def start_station(csms: Csms, tmp_path: Any, **kwargs: Any) -> RunningStation201:
    """Start a 2.0.1 station against `csms`; kwargs: make_config's, install_settings,
    vendor_handlers. The caller stops it."""
    install_settings = kwargs.pop("install_settings", None)
    vendor_handlers = kwargs.pop("vendor_handlers", None)
    running = RunningStation201(
        make_config(csms.url, tmp_path, **kwargs),
        install_settings=install_settings,
        vendor_handlers=vendor_handlers,
    )
    await running.start()
    return running


# -- acting as the CSMS -------------------------------------------------------------------

CP = CP_ID


def variable(
    component: str,
    name: str,
    *,
    value: str | None = None,
    evse: int | None = None,
    connector: int | None = None,
    instance: str | None = None,
    attribute: str | None = None,
) -> dict[str, Any]:
    """A GetVariableData (or, with `value`, a SetVariableData) item."""
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": name}}
    if evse is not None:
        item["component"]["evse"] = {"id": evse}
        if connector is not None:
            item["component"]["evse"]["connectorId"] = connector
    if instance is not None:
        item["variable"]["instance"] = instance
    if attribute is not None:
        item["attributeType"] = attribute
    if value is not None:
        item["attributeValue"] = value
    return item


async def get_values(csms: Csms, *items: dict[str, Any]) -> list[dict[str, Any]]:
    """GetVariables; the results in order."""
    answer = await csms.call(CP, "GetVariables", {"getVariableData": list(items)})
    results: list[dict[str, Any]] = answer["getVariableResult"]
    return results


async def set_values(csms: Csms, *items: dict[str, Any]) -> list[str]:
    """SetVariables; the attributeStatus of each item in order."""
    answer = await csms.call(CP, "SetVariables", {"setVariableData": list(items)})
    return [result["attributeStatus"] for result in answer["setVariableResult"]]


async def value_of(csms: Csms, component: str, name: str, **kwargs: Any) -> str:
    """The Actual value of one variable (asserting it was Accepted)."""
    (result,) = await get_values(csms, variable(component, name, **kwargs))
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


def actions_before(csms: Csms, action: str, count: int) -> list[str]:
    """The actions the station sent before its count-th `action` CALL."""
    seen: list[str] = []
    for received in csms.received:
        if received.action == action:
            count -= 1
            if count == 0:
                return seen
        seen.append(received.action)
    raise AssertionError(f"no {action} #{count}")


def is_status(status: str, evse: int = 1, connector: int = 1) -> Callable[[dict[str, Any]], bool]:
    """A StatusNotification filter."""
    wanted = (status, evse, connector)
    return lambda p: (p["connectorStatus"], p["evseId"], p["connectorId"]) == wanted


async def start_transaction(running: RunningStation201, csms: Csms, evse_id: int = 1) -> int:
    """Plug an EV and start a (core) transaction on an EVSE; its local id."""
    running.plug(evse_id)
    await csms.wait_for("StatusNotification", where=is_status("Occupied", evse_id))
    agent = running.agent
    assert agent.station.remote_start(IdToken("TAG-201"), evse_id, authorize=False)
    evse = agent.station.evses[evse_id]
    await agent.wait_until(lambda: evse.tx is not None)
    assert evse.tx is not None
    return evse.tx.local_id
