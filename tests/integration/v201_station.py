"""Run the real agent speaking OCPP 2.0.1, and act as its CSMS.

`RunningStation201` is conftest's RunningStation (run_agent, restarts after a Reset,
simulated EV and card at hand) whose config says `csms.ocpp_version: "2.0.1"`: app.py
builds the 2.0.1 adapter itself (boot reason RemoteReset after a Reset). Install
settings are device model paths in the config's `settings:`; vendor DataTransfer
handlers are registered on each agent's adapter before it runs.

Also: small helpers to act as a 2.0.1 CSMS (variables, statuses, a core transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.app import Agent, Outcome
from agent.config import Config, parse_config
from agent.core.events import IdToken
from agent.ocpp.v201.adapter import Ocpp201Adapter, VendorHandler
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, FAST_SETTINGS, RunningStation

#: Install settings every 2.0.1 test station starts with (by device model path).
FAST_SETTINGS_201: dict[str, str] = {"OCPPCommCtrlr/HeartbeatInterval": "300"}


def make_config_201(
    csms_url: str,
    store_dir: Path,
    *,
    evses: int = 1,
    settings: Mapping[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    ocpp_version: str | list[str] = "2.0.1",
) -> Config:
    """conftest's make_config for a station offering `ocpp_version` (one or a list), with
    the fast settings of each version offered."""
    versions = [ocpp_version] if isinstance(ocpp_version, str) else list(ocpp_version)
    fast: dict[str, Any] = {}
    if "1.6" in versions:
        fast.update(FAST_SETTINGS)
    if "2.0.1" in versions:
        fast.update(FAST_SETTINGS_201)
    document: dict[str, Any] = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {
            "url": csms_url,
            "ocpp_version": ocpp_version,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        },
        "evses": [
            {
                "connectors": [{"type": "cType2"}],
                "reader": {"driver": "sim"},
                "lock": {"driver": "sim"},
            }
            for _ in range(evses)
        ],
        "store": {"path": str(store_dir / "agent.db")},
        "simulator": {"time_scale": 60},
        "settings": {**fast, **(settings or {})},
    }
    for key, value in (extra or {}).items():
        document[key] = {**document.get(key, {}), **value}
    return parse_config(yaml.safe_dump(document), base_dir=store_dir)


class RunningStation201(RunningStation):
    """A RunningStation whose agents speak OCPP 2.0.1."""

    def __init__(
        self, config: Config, *, vendor_handlers: Mapping[str, VendorHandler] | None = None
    ) -> None:
        super().__init__(config)
        self.vendor_handlers = dict(vendor_handlers or {})

    @property
    def adapter(self) -> Ocpp201Adapter:
        """The 2.0.1 adapter of the agent running now."""
        adapter = self.agent.adapter
        if not isinstance(adapter, Ocpp201Adapter):
            raise AssertionError(f"the agent speaks OCPP {adapter.dialect.version}")
        return adapter

    @property
    def resets(self) -> list[bool]:
        """The `hard` flag of each reset an adapter asked for, in order."""
        resets = (Outcome.SOFT_RESET, Outcome.HARD_RESET)
        return [a.ending == Outcome.HARD_RESET for a in self.agents if a.ending in resets]

    def _on_agent(self, agent: Agent) -> None:
        if isinstance(agent.adapter, Ocpp201Adapter):
            for vendor_id, handler in self.vendor_handlers.items():
                agent.adapter.register_vendor(vendor_id, handler)
        super()._on_agent(agent)


async def start_station(csms: Csms, tmp_path: Any, **kwargs: Any) -> RunningStation201:
    """Start a 2.0.1 station against `csms`; kwargs: make_config_201's, install_settings
    (device model paths, added to `settings`), vendor_handlers. The caller stops it."""
    settings = {**(kwargs.pop("install_settings", None) or {}), **kwargs.pop("settings", {})}
    vendor_handlers = kwargs.pop("vendor_handlers", None)
    running = RunningStation201(
        make_config_201(csms.url, tmp_path, settings=settings, **kwargs),
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
