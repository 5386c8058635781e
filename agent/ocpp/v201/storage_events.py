"""OCPP 2.0.1: tell the CSMS when the station's store cannot persist, and when it can again.

A StorageFault from the core (disk full, read-only database) becomes a NotifyEvent on
the standard variable ChargingStation.Problem (actualValue "true", techCode
"StoreWriteFailed", techInfo the store's error), and its end the same event with
"false" and `cleared` (N07 hard-wired notification; the device model has no monitor for
it, so the variable is not a reported one). Charging goes on meanwhile, so no connector
turns Faulted.

While offline nothing is queued: on each connection the CSMS hears the current state if
it differs from the last one it acknowledged.

This module must not: touch the store, or send anything but NotifyEvent.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.core.events import StorageFault
from agent.core.ports import Clock
from agent.core.tasks import Signal
from agent.ocpp.rpc import CallTimeout, RpcEndpoint, RpcError
from agent.ocpp.v201.metering import wire_time

log = logging.getLogger(__name__)

#: techCode of the ChargingStation.Problem event.
TECH_CODE = "StoreWriteFailed"


class StorageEvents:
    """Reports the store's health to the CSMS as NotifyEvent (one connection at a time)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._current: StorageFault | None = None
        self._reported = False  # the state the CSMS last acknowledged: a problem or not
        #: Set when there may be something to report (the adapter clears it, reports).
        self.changed = Signal()
        # eventId: unique for this station's life (a restart must not reuse a recent one).
        self._next_event_id = int(clock.now().timestamp()) % 1_000_000_000

    def on_fault(self, event: StorageFault) -> None:
        """Station listener: the store's health changed."""
        self._current = event
        self.changed.set()

    async def report(self, endpoint: RpcEndpoint) -> None:
        """Report the store's health if the CSMS has not heard it; raises ConnectionLost."""
        current = self._current
        unheard = current is not None and current.active != self._reported
        if current is not None and unheard and await self._send(endpoint, current):
            self._reported = current.active

    async def _send(self, endpoint: RpcEndpoint, fault: StorageFault) -> bool:
        """One NotifyEvent; False if the CSMS failed it. Raises ConnectionLost."""
        self._next_event_id += 1
        data: dict[str, Any] = {
            "eventId": self._next_event_id,
            "timestamp": wire_time(fault.at),
            "trigger": "Delta",
            "actualValue": "true" if fault.active else "false",
            "techCode": TECH_CODE,
            "techInfo": fault.detail[:500],
            "cleared": not fault.active,
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "ChargingStation"},
            "variable": {"name": "Problem"},
        }
        payload = {
            "generatedAt": wire_time(self._clock.now()),
            "seqNo": 0,
            "tbc": False,
            "eventData": [data],
        }
        try:
            await endpoint.call("NotifyEvent", payload)
        except (RpcError, CallTimeout) as exc:
            log.warning("NotifyEvent (store problem) failed: %s", exc)
            return False
        return True
