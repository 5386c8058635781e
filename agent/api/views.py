"""JSON views of a running agent for the local API, shaped as docs/openapi.yaml says.

Responsible for: reading the agent's state (station, EVSEs, connectors, the simulated
plant and EV, the CSMS connection, the outbox, OCPP frames) and turning it into the
contract's Station, Evse, Connection and Message objects, with id tokens masked when
the config says so. Times leave as ISO 8601 UTC strings.

Must not: change anything (views only read), or talk HTTP (the server does).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.core.evse import Evse

if TYPE_CHECKING:  # agent.app imports the API when it wires it in: no import at runtime
    from agent.app import Agent
    from agent.hardware import EvseHardware
    from agent.ocpp.rpc import Frame

log = logging.getLogger(__name__)

_NO_CURRENT_A = [0.0, 0.0, 0.0]


def mask_id_token(value: str) -> str:
    """Hide all but the last 4 characters of an id token (the rule agent.app logs with)."""
    return "*" * max(0, len(value) - 4) + value[-4:]


def wire_time(at: datetime) -> str:
    """An aware datetime as an ISO 8601 UTC string with milliseconds and a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_simulated(hardware: EvseHardware) -> bool:
    """Whether an EVSE's hardware is the simulator (a plant with a car socket)."""
    return hardware.plant is not None


def connection_view(agent: Agent | None, *, down: bool) -> dict[str, Any]:
    """The CSMS connection: supervisor state, URL, accepted by the CSMS, held offline."""
    if agent is None or down:
        url = "" if agent is None else agent.supervisor.url
        return {"state": "stopped", "url": url, "online": False, "held_offline": False}
    supervisor = agent.supervisor
    return {
        "state": supervisor.state.value,
        "url": supervisor.url,
        "online": agent.adapter.online,
        "held_offline": supervisor.held_offline,
    }


def outbox_pending(agent: Agent | None, *, down: bool) -> int | None:
    """Transaction messages waiting for delivery; None when the store cannot be read."""
    if agent is None or down:
        return None
    try:
        return agent.store.pending_count()
    except sqlite3.Error:  # the store closes while an agent restarts
        return None


def evse_view(agent: Agent, evse_id: int) -> dict[str, Any]:
    """One EVSE: session phase, statuses, pilot, outputs, metering, transaction, EV."""
    evse = agent.station.evses[evse_id]
    hardware = agent.hardware[evse_id]
    plant = hardware.plant
    statuses = evse.statuses()
    commanded = evse.commanded
    offering = commanded.duty_percent is not None and commanded.duty_percent >= 0
    if plant is not None:  # the simulator knows what flows right now
        current_a = [float(value) for value in plant.current_a]
        power_w = float(plant.power_w)
        energy_wh = float(plant.energy_import_wh)
    else:
        sample = evse.last_sample
        current_a = list(sample.current_a) if sample is not None else list(_NO_CURRENT_A)
        power_w = sample.power_w if sample is not None else 0.0
        energy_wh = sample.energy_import_wh if sample is not None else 0.0
    return {
        "id": evse.id,
        "phase": evse.state.value,
        "status": evse.status(evse.connectors[0].id).value,
        "connectors": [
            {
                "id": spec.id,
                "type": spec.type,
                "status": evse.status(spec.id).value,
                "fault": _fault(statuses.get(spec.id)),
            }
            for spec in evse.connectors
        ],
        "pilot": evse.pilot.value,
        "contactor_closed": commanded.contactor_closed,
        "offered_current_a": float(evse.limit_a) if offering else 0.0,
        "duty_percent": commanded.duty_percent if offering else None,
        "current_a": current_a,
        "power_w": power_w,
        "energy_wh": energy_wh,
        "transaction": _transaction(agent, evse),
        "faults": sorted(code.value for code in evse.faults),
        "operative": evse.operative,
        "simulated": is_simulated(hardware),
        "ev": _ev(plant),
    }


def station_view(
    agent: Agent | None, *, station_id: str, ocpp_version: str, simulated: bool, down: bool
) -> dict[str, Any]:
    """The station: identity, power, connection, outbox and (when up) every EVSE."""
    evses = [] if agent is None or down else [evse_view(agent, i) for i in agent.station.evses]
    return {
        "id": station_id,
        "ocpp_version": ocpp_version,
        "simulated": simulated,
        "powered": not down,
        "connection": connection_view(agent, down=down),
        "outbox_pending": outbox_pending(agent, down=down),
        "evses": evses,
    }


def message_view(frame: Frame, *, mask: bool) -> dict[str, Any]:
    """One OCPP frame of the message log (id tokens masked when `mask`)."""
    from agent.app import mask_tokens  # at call time: agent.app may import this package

    return {
        "at": wire_time(frame.at),
        "direction": "out" if frame.outgoing else "in",
        "action": frame.action,
        "text": mask_tokens(frame.text) if mask else frame.text,
    }


def _fault(entry: tuple[Any, Any] | None) -> str | None:
    if entry is None or entry[1] is None:
        return None
    return str(entry[1].value)


def _transaction(agent: Agent, evse: Evse) -> dict[str, Any] | None:
    tx = evse.tx
    if tx is None:
        return None
    csms_id = tx.csms_tx_id
    try:  # the running record is the one journalled at the start: the CSMS id comes later
        csms_id = agent.store.get_transaction(tx.local_id).csms_tx_id
    except (KeyError, sqlite3.Error):
        log.debug("transaction %s: no journal record to read the CSMS id from", tx.local_id)
    mask = agent.config.logging.mask_id_tokens
    return {
        "local_id": tx.local_id,
        "csms_id": csms_id,
        "id_token": mask_id_token(tx.id_token) if mask else tx.id_token,
        "started_at": wire_time(tx.started_at),
        "meter_start_wh": tx.meter_start_wh,
    }


def _ev(plant: Any) -> dict[str, Any] | None:
    ev = None if plant is None else plant.ev
    if ev is None:
        return None
    return {
        "soc_percent": float(ev.soc_percent),
        "battery_wh": float(ev.params.battery_wh),
        "max_current_a": float(ev.max_current_a),
        "phases": int(ev.phases),
        "paused": bool(ev.paused),
    }
