"""The OCPP 2.0.1 adapter: provisioning and availability of the station's core.

Responsible for: registering the station (B01-B04: BootNotification with its reason,
Pending and Rejected retried at the interval the CSMS gives, nothing but a
BootNotification sent before acceptance), Heartbeat at OCPPCommCtrlr.HeartbeatInterval,
the device model (B05-B08: Get/SetVariables, GetBaseReport and GetReport answered, then
their NotifyReports sent in order), the variables the core acts on (mirrored into its
Policy), connector status (G01-G04: StatusNotification in 2.0.1's five states, on
change and as a snapshot after each boot; ChangeAvailability for the station, an EVSE
or a connector), Reset (B11/B12), TriggerMessage (F06) and DataTransfer (P01/P02).

Transactions (TransactionEvent from the journal's outbox, remote start and stop) are in
agent/ocpp/v201/transactions.py, authorization (Authorize, cache, local list) in
agent/ocpp/v201/auth.py, reservations (block H) in agent/ocpp/v201/reservations.py;
this adapter wires them to the connection.

Must not: keep status by hand (the core derives it; this adapter only folds and reports
it), decide when transactions start or end (the core does), or know anything of 1.6.
A lost connection is not a reboot here (2.0.1 B04): once accepted, a new connection
reports only what changed while offline - or everything, after more than
OCPPCommCtrlr.OfflineThreshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from agent.core.events import (
    MeterValuesSampled,
    ReservationEnded,
    StationEvent,
    StatusChanged,
    StorageFault,
    TxMessageQueued,
)
from agent.core.ports import Clock, StopReason
from agent.core.station import Station
from agent.core.status import ConnectorStatus
from agent.core.tasks import Mailbox, Signal, TaskSet, next_tick, sleep_unless, wait_any
from agent.ocpp import data_transfer
from agent.ocpp.dialects import OCPP201
from agent.ocpp.outbox import OutboxSender, Pipeline
from agent.ocpp.rpc import AfterReply, CallTimeout, ConnectionLost, Handler, RpcEndpoint, RpcError
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.auth import Ocpp201Authorization
from agent.ocpp.v201.charging_profiles import Ocpp201SmartCharging
from agent.ocpp.v201.device_model import (
    DeviceModel,
    SetStatus,
    parse_path,
    wire_time,
)
from agent.ocpp.v201.device_requests import DeviceModelRequests
from agent.ocpp.v201.reservations import Ocpp201Reservations
from agent.ocpp.v201.storage_events import StorageEvents
from agent.ocpp.v201.transactions import Ocpp201Transactions
from agent.ocpp.v201.variables import Attribute, VariableDef
from agent.store import AgentStore
from agent.store.auth import AuthCache, LocalAuthList

log = logging.getLogger(__name__)

#: A DataTransfer vendor handler: (messageId, data) -> (status, data or None).
VendorHandler = data_transfer.VendorHandler

BOOT_RETRY_S = 30.0  # when the CSMS gives no interval, or the BootNotification failed
RESET_DRAIN_S = 10.0  # how long a reset waits for the outbox to drain
ACCEPTED, PENDING, REJECTED = "Accepted", "Pending", "Rejected"

#: What the CSMS may ask while the registration is Pending (B02): provisioning, and a
#: reset to apply what it set. Anything else is a SecurityError (as B02.FR.09 is for it).
PENDING_ACTIONS = frozenset(
    {"GetVariables", "SetVariables", "GetBaseReport", "GetReport", "TriggerMessage", "Reset"}
)

_HEARTBEAT = parse_path(mapping.HEARTBEAT_INTERVAL)
_TRIGGERED_BOOT = ("TriggerMessage", "BootNotification")
_Place = tuple[int, int]  # (evse id, connector id): the core's numbering, 2.0.1's too


def _refusal(status: str, reason: str) -> dict[str, Any]:
    """A response refusing a request, with the Appendix 5 reason code."""
    return {"status": status, "statusInfo": {"reasonCode": reason}}


class Ocpp201Adapter:
    """Speaks OCPP 2.0.1 for one station over whatever connection the supervisor opens."""

    dialect = OCPP201

    def __init__(
        self,
        *,
        station: Station,
        store: AgentStore,
        clock: Clock,
        charging_station: Mapping[str, str],
        install_settings: Mapping[str, str],
        request_reset: Callable[[bool], None],
        boot_reason: str = "PowerUp",
        vendor_handlers: Mapping[str, VendorHandler] | None = None,
        local_list: LocalAuthList | None = None,
        auth_cache: AuthCache | None = None,
    ) -> None:
        """`charging_station` is the BootNotification's ChargingStationType (model,
        vendorName, serialNumber, firmwareVersion); `install_settings` are device model
        values by path ("OCPPCommCtrlr/HeartbeatInterval"). `boot_reason` says why this
        process started (B01: PowerUp, RemoteReset, ...). Raises ValueError for an unknown
        boot reason, a ChargingStationType without model or vendorName, or an install
        setting the device model refuses."""
        if boot_reason not in mapping.BOOT_REASONS:
            raise ValueError(f"{boot_reason!r} is not a BootReasonEnumType value")
        if not {"model", "vendorName"} <= set(charging_station):
            raise ValueError("charging_station needs model and vendorName")
        self.station = station
        self.store = store
        self.clock = clock
        self._charging_station = dict(charging_station)
        self._boot_reason = boot_reason
        self._request_reset = request_reset
        self._vendor_handlers = dict(vendor_handlers or {})
        self._extra_handlers: dict[str, Handler] = {}
        self._local_list = local_list or LocalAuthList(store)
        self._auth_cache = auth_cache or AuthCache(store, clock=clock)
        catalogue = mapping.station_catalogue(
            station,
            vendor_name=self._charging_station["vendorName"],
            model=self._charging_station["model"],
        )
        self.model = DeviceModel(store, catalogue, install_defaults=install_settings, clock=clock)
        self.auth = Ocpp201Authorization(
            model=self.model,
            clock=clock,
            local_list=self._local_list,
            cache=self._auth_cache,
            endpoint=lambda: self._endpoint,
            online=lambda: self.online,
        )
        station.authorizer = self.auth.chain
        self._outbox: OutboxSender | None = None
        self._registration: str | None = None  # the last BootNotification answer
        self._endpoint: RpcEndpoint | None = None
        self._offline_since: datetime | None = None
        self._boot_now = Signal()  # TriggerMessage(BootNotification): do not wait
        self._heartbeat_changed = Signal()
        self._station_changed = Signal()  # any station event (an OnIdle reset waits)
        self._progress = Signal()  # set at every online change and outbox delivery
        self._reset_task: asyncio.Task[Any] | None = None
        self._tasks = TaskSet("ocpp201")
        self.device_requests = DeviceModelRequests(
            model=self.model,
            clock=clock,
            endpoint=lambda: self._endpoint,
            spawn_call=self._spawn_call,
        )
        self.transactions = Ocpp201Transactions(
            station=station,
            store=store,
            model=self.model,
            auth=self.auth,
            endpoint=lambda: self._endpoint,
            spawn=self._spawn_call,
        )
        self.reservations = Ocpp201Reservations(
            station=station,
            store=store,
            model=self.model,
            clock=clock,
            on_settled=self._changed,
            statuses_sent=lambda: self._status_queue.join(),
        )
        self.smart_charging = Ocpp201SmartCharging(
            station=station,
            store=store,
            model=self.model,
            transactions=self.transactions,
            endpoint=lambda: self._endpoint,
            spawn=self._spawn_call,
        )
        self.transactions.start_profiles = self.smart_charging  # K05
        self.storage_events = StorageEvents(clock)  # the store's write failures (NotifyEvent)
        #: Called after anything an observer may wait for: registration, online state.
        self.on_change: list[Callable[[], None]] = []
        # The 2.0.1 status of every connector now, and what the CSMS last heard.
        self._statuses: dict[_Place, str] = {}
        self._reported: dict[_Place, str] = {}
        self._evse_states: dict[int, str] = {}
        self._status_queue: Mailbox[tuple[_Place, str, datetime]] = Mailbox()
        for evse in station.evses.values():
            for connector in evse.connectors:
                status = evse.status(connector.id)
                self._statuses[(evse.id, connector.id)] = mapping.connector_status(
                    status, ev_connected=evse.ev_present(), reserved=evse.reserved
                )
            self._mirror_availability(evse.id)
        mapping.apply_policy(station.policy, self.model.value)
        self.model.watch(self._on_variable_set)
        station.subscribe(self._on_station_event)

    # -- wiring ----------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this adapter answers, by action (gated by the registration state)."""
        table: dict[str, Handler] = {
            "ChangeAvailability": self._on_change_availability,
            "DataTransfer": self._on_data_transfer,
            "Reset": self._on_reset,
            "TriggerMessage": self._on_trigger_message,
        }
        table.update(self.device_requests.handlers())
        table.update(self.auth.handlers())
        table.update(self.transactions.handlers())
        table.update(self.reservations.handlers())
        table.update(self.smart_charging.handlers())
        table.update(self._extra_handlers)
        return {action: _Gated(self, action, handler) for action, handler in table.items()}

    def add_handlers(self, handlers: Mapping[str, Handler]) -> None:
        """Answer more CALLs (before `handlers()` is taken), gated like the adapter's own."""
        self._extra_handlers.update(handlers)

    def register_vendor(self, vendor_id: str, handler: VendorHandler) -> None:
        """Answer DataTransfer requests for `vendor_id` with `handler`."""
        self._vendor_handlers[vendor_id] = handler

    def ping_interval_s(self) -> float | None:
        """The websocket ping interval for the next connection (None: off)."""
        value = self.model.int_value(mapping.WEBSOCKET_PING_INTERVAL)
        return float(value) if value > 0 else None

    @property
    def registration(self) -> str | None:
        """The CSMS's last answer to BootNotification (None before the first)."""
        return self._registration

    @property
    def online(self) -> bool:
        """Connected and accepted by the CSMS."""
        endpoint = self._endpoint
        return endpoint is not None and not endpoint.closed and self._registration == ACCEPTED

    async def shutdown(self) -> None:
        """Cancel the adapter's own background tasks."""
        await self._tasks.cancel_all()

    def _changed(self) -> None:
        """Tell the observers (on_change) that something they may wait for changed."""
        self.station.csms_online = self.online
        self._progress.set()
        for callback in list(self.on_change):
            callback()

    def _on_variable_set(self, definition: VariableDef, attribute: Attribute, _value: str) -> None:
        """A SetVariables took effect: tell the core and the heartbeat."""
        mapping.apply_policy(self.station.policy, self.model.value)
        self.station.policy_changed()
        if definition is self.model.lookup(_HEARTBEAT.component, _HEARTBEAT.variable):
            self._heartbeat_changed.set()

    # -- one connection ---------------------------------------------------------

    async def run_session(self, endpoint: RpcEndpoint) -> None:
        """Register (once per boot), then report until the connection is lost."""
        self._endpoint = endpoint
        try:
            everything = True
            if self._registration != ACCEPTED:
                await self._boot(endpoint)
            else:
                everything = self._offline_too_long()
            self._changed()
            self._outbox = OutboxSender(
                self.store,
                Pipeline(endpoint, self.transactions.outbox_call),
                clock=self.clock,
                attempts=self.transactions.attempts,
                retry_interval_s=self.transactions.attempt_interval_s,
                on_settled=lambda _entry, _delivered: self._changed(),
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(self._report_statuses(endpoint, everything=everything))
                group.create_task(self._outbox.run())
                group.create_task(self._heartbeat(endpoint))
                group.create_task(self._report_changes(endpoint))
        except* ConnectionLost:
            log.info("connection lost")
        finally:
            self._offline_since = self.clock.now()
            self._endpoint = None
            self._outbox = None
            self._changed()

    def _offline_too_long(self) -> bool:
        """B04.FR.01/02: past OfflineThreshold every status is sent again, else the changes."""
        if self._offline_since is None:
            return True
        offline_s = (self.clock.now() - self._offline_since).total_seconds()
        return offline_s > self.model.int_value(mapping.OFFLINE_THRESHOLD)

    async def _boot(self, endpoint: RpcEndpoint) -> None:
        """BootNotification until Accepted (B01-B03); raises ConnectionLost."""
        while True:
            self._boot_now.clear()
            payload = {"reason": self._boot_reason, "chargingStation": self._charging_station}
            try:
                conf = await endpoint.call("BootNotification", payload)
            except (RpcError, CallTimeout) as exc:
                log.warning("BootNotification failed (%s); retrying in %.0fs", exc, BOOT_RETRY_S)
                await self._sleep_unless(BOOT_RETRY_S, self._boot_now)
                continue
            interval = int(conf["interval"])
            self._registration = conf["status"]
            self._changed()
            if self._registration == ACCEPTED:
                log.info("BootNotification accepted")
                if interval > 0:
                    self._set_heartbeat_interval(interval)
                return
            # B02.FR.01 / B03.FR.01: retry after the interval; B03.FR.02: nothing else.
            retry = interval if interval > 0 else BOOT_RETRY_S
            log.info("BootNotification %s; retrying in %ss", self._registration, retry)
            await self._sleep_unless(retry, self._boot_now)

    def _set_heartbeat_interval(self, interval_s: int) -> None:
        """B01.FR.04: the interval of an accepted boot becomes the HeartbeatInterval."""
        result = self.model.set(_HEARTBEAT.component, _HEARTBEAT.variable, str(interval_s))
        if result.status != SetStatus.ACCEPTED:
            log.warning("heartbeat interval %s not applied: %s", interval_s, result.reason)

    async def _sleep_unless(self, seconds: float, event: asyncio.Event | Signal) -> None:
        """Sleep `seconds` of the adapter's clock, or less if `event` is set."""
        await sleep_unless(self.clock.sleep, seconds, event)

    async def _heartbeat(self, endpoint: RpcEndpoint) -> None:
        """A Heartbeat every HeartbeatInterval (G02), due at start + k x interval
        however long each exchange takes (missed ones skipped); a changed interval starts
        the count again from the change. Raises ConnectionLost."""
        while True:
            self._heartbeat_changed.clear()
            interval_s = self.model.int_value(mapping.HEARTBEAT_INTERVAL)
            due = self.clock.now()
            while True:
                due = next_tick(due, interval_s, self.clock.now())
                delay = (due - self.clock.now()).total_seconds()
                await self._sleep_unless(delay, self._heartbeat_changed)
                if self._heartbeat_changed.is_set():
                    break  # the interval changed: start over with the new one
                await self._send(endpoint, "Heartbeat", {})

    async def _report_changes(self, endpoint: RpcEndpoint) -> None:
        """Reservation updates, external limits and the store's health, each reported as
        it changes: one task waits for any of them (a fleet station saves two). Each
        reporter's flag is cleared before its pass, so a change during a pass is reported
        in the next. Raises ConnectionLost."""
        reporters = (self.reservations, self.smart_charging.limits, self.storage_events)
        flags = [reporter.changed for reporter in reporters]
        while True:
            for reporter in reporters:
                reporter.changed.clear()
                await reporter.report(endpoint)
            await wait_any(flags)

    async def _send(
        self, endpoint: RpcEndpoint, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Call `action`; None if the CSMS failed it (logged). Raises ConnectionLost."""
        try:
            return await endpoint.call(action, payload)
        except (RpcError, CallTimeout) as exc:
            log.warning("%s failed: %s", action, exc)
            return None

    def _spawn_call(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a message exchange started by a request, tolerating a lost connection."""

        async def run() -> None:
            try:
                await coro
            except ConnectionLost as exc:
                log.info("%s not completed: %s", name, exc)

        self._tasks.spawn(run(), name=name)

    # -- status (G01-G04) ----------------------------------------------------------

    async def _report_statuses(self, endpoint: RpcEndpoint, *, everything: bool) -> None:
        """Send every connector's status (or those the CSMS has not heard), then changes."""
        # The snapshot and the fresh queue are taken together (no await between), so a
        # change is either in the snapshot or queued after it, never lost.
        now = self.clock.now()
        snapshot = [
            (place, status)
            for place, status in self._statuses.items()
            if everything or self._reported.get(place) != status
        ]
        self._status_queue = Mailbox()
        for place, status in snapshot:
            await self._send_status(endpoint, place, status, now)
        while True:
            place, status, at = await self._status_queue.get()
            await self._send_status(endpoint, place, status, at)
            self._status_queue.task_done()  # reservation updates wait for it (join)

    async def _send_status(
        self, endpoint: RpcEndpoint, place: _Place, status: str, at: datetime
    ) -> None:
        """One StatusNotification; remembered as heard once the CSMS answered it."""
        payload = {
            "timestamp": wire_time(at),
            "connectorStatus": status,
            "evseId": place[0],
            "connectorId": place[1],
        }
        if await self._send(endpoint, "StatusNotification", payload) is not None:
            self._reported[place] = status

    def _on_station_event(self, event: StationEvent) -> None:
        """Station listener: wake an OnIdle reset, track connector statuses."""
        self._station_changed.set()
        if isinstance(event, StatusChanged):
            self._track_status(event.evse_id, event.connector_id, event.status, event.at)
        elif isinstance(event, TxMessageQueued):
            if self._outbox is not None:
                self._outbox.wake()
        elif isinstance(event, MeterValuesSampled) and self.online:
            self._spawn_call(self.transactions.send_meter_values(event), "meter-values")
        elif isinstance(event, StorageFault):
            self.storage_events.on_fault(event)
        elif isinstance(event, ReservationEnded):
            self.reservations.on_ended(event)
            evse = self.station.evses.get(event.evse_id or 0)
            if evse is not None:  # G01.FR.09: a car plugged in there is Reserved no more
                for connector in evse.connectors:
                    derived = evse.status(connector.id)
                    self._track_status(evse.id, connector.id, derived, self.clock.now())

    def _track_status(
        self, evse_id: int, connector_id: int, derived: ConnectorStatus, at: datetime
    ) -> None:
        """Fold a derived status; report it if the 2.0.1 status changed (G01.FR.01)."""
        evse = self.station.evses[evse_id]
        status = mapping.connector_status(
            derived, ev_connected=evse.ev_present(), reserved=evse.reserved
        )
        place = (evse_id, connector_id)
        if self._statuses.get(place) == status:
            return
        self._statuses[place] = status
        self._mirror_availability(evse_id)
        if self.online:
            self._status_queue.put_nowait((place, status, at))

    def _mirror_availability(self, evse_id: int) -> None:
        """Show the statuses in the device model: AvailabilityState and Problem."""
        evse = self.station.evses[evse_id]
        states = {c.id: self._statuses[(evse_id, c.id)] for c in evse.connectors}
        self._evse_states[evse_id] = mapping.evse_status(states.values())
        updates = mapping.availability_values(evse_id, states, self._evse_states)
        try:
            for component, variable, value in updates:
                self.model.update(component, variable, value)
        except (KeyError, ValueError):
            log.exception("cannot show EVSE %s availability in the device model", evse_id)

    # -- availability (G03/G04) and reset (B11/B12) -----------------------------------

    async def _on_change_availability(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The station, an EVSE or a connector; Scheduled while a transaction runs there."""
        operative = payload["operationalStatus"] == "Operative"
        target = payload.get("evse")
        if target is None:
            applied = self.station.set_operative(None, operative)
        else:
            evse = self.station.evses.get(int(target["id"]))
            if evse is None:
                return _refusal("Rejected", "UnknownEvse")
            connector_id = target.get("connectorId")
            if connector_id is not None:
                connector_ids = [connector.id for connector in evse.connectors]
                if connector_id not in connector_ids:
                    return _refusal("Rejected", "UnknownConnectorId")
                if len(connector_ids) > 1:
                    # The core keeps availability per EVSE: one connector of several
                    # cannot be taken out alone.
                    return _refusal("Rejected", "UnsupportedRequest")
            applied = self.station.set_operative(evse.id, operative)
        return {"status": "Accepted" if applied else "Scheduled"}

    async def _on_reset(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """Immediate stops transactions, then restarts; OnIdle waits for them (B11/B12)."""
        immediate = payload["type"] == "Immediate"
        evse_id = payload.get("evseId")
        if evse_id is not None:
            evse = self.station.evses.get(int(evse_id))
            if evse is None:
                return _refusal("Rejected", "UnknownEvse")
            if evse.tx is None:
                return {"status": "Accepted"}  # an EVSE alone has nothing to restart
            if not immediate:
                return {"status": "Scheduled"}  # B12.FR.07: its transaction ends normally

            def stop_evse() -> None:
                self._tasks.spawn(evse.stop_transaction(StopReason.HARD_RESET), name="evse-reset")

            return AfterReply({"status": "Accepted"}, stop_evse)
        if immediate:
            return AfterReply({"status": "Accepted"}, lambda: self._schedule(self._reset_now()))
        busy = self.station.transaction_running()  # B12.FR.01: Scheduled until idle
        status = "Scheduled" if busy else "Accepted"
        return AfterReply({"status": status}, lambda: self._schedule(self._reset_when_idle()))

    def _schedule(self, reset: Coroutine[Any, Any, None]) -> None:
        """Run `reset`, replacing a reset still waiting for the station to be idle."""
        if self._reset_task is not None:
            self._reset_task.cancel()
        self._reset_task = self._tasks.spawn(reset, name="reset")

    async def _reset_now(self) -> None:
        """B12.FR.02: stop every transaction (reason ImmediateReset), then restart.

        The Ended events get a moment to be delivered (and acknowledged) first: one cut
        off in flight would be sent again after the restart, a duplicate for the CSMS.
        """
        await self.station.stop_all(StopReason.HARD_RESET)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESET_DRAIN_S):
                while self.store.pending_count() and self.online:
                    self._progress.clear()
                    await self._progress.wait()
        self._request_reset(True)

    async def _reset_when_idle(self) -> None:
        """Restart once no transaction runs."""
        while True:
            self._station_changed.clear()
            if not self.station.transaction_running():
                break
            await self._station_changed.wait()
        self._request_reset(False)

    # -- TriggerMessage (F06) and DataTransfer (P01/P02) -----------------------------------

    async def _on_trigger_message(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """BootNotification, Heartbeat and StatusNotification; the rest NotImplemented."""
        requested = payload["requestedMessage"]
        places = list(self._statuses)
        target = payload.get("evse")
        if target is not None:
            places = [p for p in places if p[0] == target["id"]]
            if not places:
                return _refusal("Rejected", "UnknownEvse")
            if "connectorId" in target:
                places = [p for p in places if p[1] == target["connectorId"]]
                if not places:
                    return _refusal("Rejected", "UnknownConnectorId")
        if requested == "BootNotification":
            if self._registration == ACCEPTED:
                return {"status": "Rejected"}  # F06.FR.17
            return AfterReply({"status": "Accepted"}, self._trigger_boot)
        endpoint = self._endpoint
        if endpoint is None:
            return {"status": "Rejected"}
        evse_ids = sorted({place[0] for place in places})
        under_way = self.transactions.trigger(requested, evse_ids)
        if under_way is not None:
            return {"status": "Accepted" if under_way else "Rejected"}
        if requested in ("LogStatusNotification", "FirmwareStatusNotification"):
            # Nothing is uploading or updating: the status is Idle (F06.FR.xx, L01, N01).
            action = requested

            def idle() -> None:
                self._spawn_call(self._send(endpoint, action, {"status": "Idle"}), action)

            return AfterReply({"status": "Accepted"}, idle)
        if requested not in ("Heartbeat", "StatusNotification"):
            return {"status": "NotImplemented"}
        if requested == "Heartbeat":

            def beat() -> None:
                self._spawn_call(self._send(endpoint, "Heartbeat", {}), "heartbeat")

            return AfterReply({"status": "Accepted"}, beat)

        async def send_statuses() -> None:
            at = self.clock.now()
            for place in places:
                await self._send_status(endpoint, place, self._statuses[place], at)

        return AfterReply(
            {"status": "Accepted"}, lambda: self._spawn_call(send_statuses(), "statuses")
        )

    def _trigger_boot(self) -> None:
        """Send the next BootNotification now, with reason Triggered."""
        self._boot_reason = "Triggered"
        self._boot_now.set()

    async def _on_data_transfer(self, payload: dict[str, Any]) -> dict[str, Any]:
        """P01: the vendor's handler answers; an unknown vendor is UnknownVendorId."""
        return await data_transfer.answer(self._vendor_handlers, payload)

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> dict[str, Any]:
        """P02: send a DataTransfer (data omitted when None) and return the CSMS's answer.

        Raises ConnectionLost when not online, RpcError or CallTimeout as the call does.
        """
        endpoint = self._endpoint if self.online else None
        return await data_transfer.send(endpoint, vendor_id, message_id, data)


class _Gated:
    """A handler refusing with SecurityError what the adapter's registration state
    forbids: one slotted object per action and station (a closure and its three cells
    were about 300 bytes each, 8 KiB a station)."""

    __slots__ = ("_action", "_adapter", "_handler")

    def __init__(self, adapter: Ocpp201Adapter, action: str, handler: Handler) -> None:
        self._adapter = adapter
        self._action = action
        self._handler = handler

    async def __call__(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """The handler's answer; raises RpcError(SecurityError) if the state forbids it."""
        action = self._action
        state = self._adapter.registration
        allowed = (
            state == ACCEPTED
            or (state == PENDING and action in PENDING_ACTIONS)
            # B03.FR.08: the one request a CSMS may send to a station it rejected.
            or (action, payload.get("requestedMessage")) == _TRIGGERED_BOOT
        )
        if not allowed:
            raise RpcError("SecurityError", f"{action} refused: registration is {state}")
        return await self._handler(payload)
