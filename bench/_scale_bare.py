"""The floor for bench/scale.py: a fleet written with the `ocpp` library alone.

Each station is what a minimal simulator built on mobilityhouse `ocpp` does: one
websocket, one `ChargePoint` (schema validation on, as the library defaults), a
BootNotification, a StatusNotification, an Authorize and a transaction start, then a
Heartbeat every boot interval and a meter value with 10 sampled values every
`sample_interval_s` (1.6 MeterValues, 2.0.1 TransactionEvent Updated/MeterValuePeriodic).
No store, no state machine, no simulated hardware: what the agent adds on top of this is
what its fleet costs beyond this floor.

It must not: be used as a charging station (it answers no CSMS-initiated CALL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.charge_point import ChargePoint
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from agent.core.tasks import TaskSet

logging.getLogger("ocpp").setLevel(logging.ERROR)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _values16(energy_wh: float) -> list[dict[str, Any]]:
    """10 sampled values, as the agent's fleet sends them."""
    values = [
        {"value": f"{energy_wh:.0f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "22080", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "32", "measurand": "Current.Offered", "unit": "A"},
        {"value": "10", "measurand": "SoC", "unit": "Percent"},
    ]
    for phase in ("L1", "L2", "L3"):
        values.append({"value": "32", "measurand": "Current.Import", "unit": "A", "phase": phase})
        values.append({"value": "230", "measurand": "Voltage", "unit": "V", "phase": f"{phase}-N"})
    return [{**v, "context": "Sample.Periodic", "location": "Outlet"} for v in values]


def _values201(energy_wh: float) -> list[dict[str, Any]]:
    values = []
    for value in _values16(energy_wh):
        item: dict[str, Any] = {
            "value": float(value["value"]),
            "context": "Sample.Periodic",
            "measurand": value["measurand"],
            "unit_of_measure": {"unit": value["unit"]},
        }
        if "phase" in value:
            item["phase"] = value["phase"]
        values.append(item)
    return values


class BareStation:
    """One station made of the `ocpp` library's ChargePoint and two timers."""

    __slots__ = ("charging", "id", "sample_interval_s", "url", "version")

    def __init__(self, url: str, cp_id: str, version: str, sample_interval_s: float) -> None:
        self.url = url
        self.id = cp_id
        self.version = version
        self.sample_interval_s = sample_interval_s
        self.charging = False

    async def run(self) -> None:
        """Connect, boot, start a transaction, then heartbeat and meter until cancelled."""
        subprotocol = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        async with websockets.connect(
            f"{self.url.rstrip('/')}/{self.id}",
            subprotocols=[subprotocol],  # type: ignore[list-item]
        ) as ws:
            cp: ChargePoint = (ChargePoint16 if self.version == "1.6" else ChargePoint201)(
                self.id, ws
            )
            reader = asyncio.ensure_future(cp.start())
            try:
                if self.version == "1.6":
                    await self._run16(cp)
                else:
                    await self._run201(cp)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    async def _run16(self, cp: ChargePoint) -> None:
        boot = await cp.call(call16.BootNotification("cpagent", "bare"))
        await cp.call(call16.StatusNotification(1, "NoError", "Preparing", timestamp=_now()))
        await cp.call(call16.Authorize(id_tag=f"T{self.id}"[-20:]))
        start = await cp.call(call16.StartTransaction(1, f"T{self.id}"[-20:], 0, _now()))
        tx_id = start.transaction_id
        self.charging = True

        async def meter() -> None:
            energy = 0.0
            while True:
                await asyncio.sleep(self.sample_interval_s)
                energy += 61.3
                value = [{"timestamp": _now(), "sampled_value": _values16(energy)}]
                await cp.call(call16.MeterValues(1, value, transaction_id=tx_id))

        await self._beat(cp, float(boot.interval), call16.Heartbeat, meter())

    async def _run201(self, cp: ChargePoint) -> None:
        boot = await cp.call(
            call201.BootNotification({"model": "bare", "vendor_name": "cpagent"}, "PowerUp")
        )
        await cp.call(call201.StatusNotification(_now(), "Occupied", 1, 1))
        token = {"id_token": f"T{self.id}", "type": "ISO14443"}
        await cp.call(call201.Authorize(id_token=token))
        info = {"transaction_id": f"bare-{self.id}"}
        await cp.call(
            call201.TransactionEvent(
                "Started", _now(), "Authorized", 0, info, id_token=token, evse={"id": 1}
            )
        )
        self.charging = True

        async def meter() -> None:
            energy = 0.0
            seq = 0
            while True:
                await asyncio.sleep(self.sample_interval_s)
                energy += 61.3
                seq += 1
                value = [{"timestamp": _now(), "sampled_value": _values201(energy)}]
                await cp.call(
                    call201.TransactionEvent(
                        "Updated", _now(), "MeterValuePeriodic", seq, info, meter_value=value
                    )
                )

        await self._beat(cp, float(boot.interval), call201.Heartbeat, meter())

    @staticmethod
    async def _beat(cp: ChargePoint, interval_s: float, heartbeat: Any, meter: Any) -> None:
        async def beat() -> None:
            while True:
                await asyncio.sleep(interval_s)
                await cp.call(heartbeat())

        async with asyncio.TaskGroup() as group:
            group.create_task(beat())
            group.create_task(meter)


class BareFleet:
    """N bare stations in this loop, grown like simulator.fleet.Fleet."""

    def __init__(self, url: str, version: str, sample_interval_s: float = 10.0) -> None:
        self.url = url
        self.version = version
        self.sample_interval_s = sample_interval_s
        self.stations: list[BareStation] = []
        self._tasks = TaskSet("bare-fleet")

    def __len__(self) -> int:
        return len(self.stations)

    async def grow_to(self, count: int, *, spread_s: float = 0.0) -> None:
        """Start stations until there are `count`, evenly over `spread_s` seconds."""
        loop = asyncio.get_running_loop()
        first = len(self.stations)
        added = count - first
        begin = loop.time()
        for offset in range(max(0, added)):
            delay = begin + spread_s * offset / added - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            station = BareStation(
                self.url, f"CP-{first + offset + 1:04d}", self.version, self.sample_interval_s
            )
            self.stations.append(station)
            self._tasks.spawn(station.run(), name=station.id)

    def counts(self) -> dict[str, int]:
        """Started and charging stations."""
        charging = sum(s.charging for s in self.stations)
        return {"stations": len(self.stations), "online": charging, "charging": charging}

    async def stop(self) -> None:
        """Cancel every station."""
        await self._tasks.cancel_all()
