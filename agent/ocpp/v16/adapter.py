"""The OCPP 1.6J adapter: the station's core behind the 1.6 Core profile.

It answers the CSMS's CALLs by calling station commands, reports the station's events
as 1.6 messages, authorizes tokens (CSMS first, then the offline rules), and delivers
the journal's transaction entries as StartTransaction / MeterValues / StopTransaction
through the outbox sender. Everything 1.6-specific (numbering, keys, enumerations)
stays in this package; the core never learns which version it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from agent.core.events import (
    IdToken,
    MeterValuesSampled,
    StationEvent,
    StatusChanged,
    StorageFault,
    TxMessageQueued,
)
from agent.core.ports import (
    Clock,
    OutboxEntry,
    SampleContext,
    StopReason,
    TxEventKind,
    TxPoint,
)
from agent.core.reservations import Reservation
from agent.core.station import Station
from agent.core.status import ConnectorStatus
from agent.core.tasks import Mailbox, Signal, TaskSet, next_tick, sleep_unless
from agent.ocpp import data_transfer
from agent.ocpp.dialects import OCPP16
from agent.ocpp.outbox import NotYet, OutboxCall, OutboxSender, Pipeline, Skip
from agent.ocpp.rpc import AfterReply, CallTimeout, ConnectionLost, Handler, RpcEndpoint, RpcError
from agent.ocpp.v16 import mapping
from agent.ocpp.v16.auth import Ocpp16Authorization
from agent.ocpp.v16.config_keys import ConfigurationKeys
from agent.ocpp.v16.smart_charging import Ocpp16SmartCharging
from agent.store import AgentStore
from agent.store.auth import AuthCache, LocalAuthList
from drivers.types import TokenType

log = logging.getLogger(__name__)

#: A DataTransfer vendor handler: (messageId, data) -> (status, data).
VendorHandler = Callable[[str | None, str | None], Awaitable[tuple[str, str | None]]]

BOOT_RETRY_S = 30.0
SOFT_RESET_DRAIN_S = 10.0
#: vendorErrorCode of connector 0's OtherError while the store cannot persist.
STORE_VENDOR_ERROR = "StoreWriteFailed"


class Ocpp16Adapter:
    """Speaks OCPP 1.6J for one station over whatever connection the supervisor opens."""

    dialect = OCPP16

    def __init__(
        self,
        *,
        station: Station,
        store: AgentStore,
        clock: Clock,
        boot_payload: Mapping[str, str],
        install_settings: Mapping[str, str],
        request_reset: Callable[[bool], None],
        local_list: LocalAuthList,
        auth_cache: AuthCache,
        vendor_handlers: Mapping[str, VendorHandler] | None = None,
    ) -> None:
        self.station = station
        self.store = store
        self.clock = clock
        self._boot_payload = dict(boot_payload)
        self._request_reset = request_reset
        self._vendor_handlers = dict(vendor_handlers or {})
        # OCPP 1.6 numbers connectors 1..N across the station; the core has EVSEs.
        self.connectors: dict[int, tuple[int, int]] = {}
        for evse in station.evses.values():
            for connector in evse.connectors:
                self.connectors[len(self.connectors) + 1] = (evse.id, connector.id)
        self._connector_of = {place: number for number, place in self.connectors.items()}
        self.keys = ConfigurationKeys(
            store,
            install_defaults=install_settings,
            fixed={"NumberOfConnectors": str(len(self.connectors))},
        )
        store.retain_for_end(self._stop_reads)
        self._endpoint: RpcEndpoint | None = None
        self._accepted = False
        self._status_queue: Mailbox[tuple[int, ConnectorStatus, str]] = Mailbox()
        self._storage_fault: StorageFault | None = None  # reported on connector 0
        self._outbox: OutboxSender | None = None
        self._heartbeat_changed = Signal()
        self.auth = Ocpp16Authorization(
            keys=self.keys,
            clock=clock,
            local_list=local_list,
            cache=auth_cache,
            endpoint=lambda: self._endpoint,
            online=lambda: self.online,
        )
        self.smart = Ocpp16SmartCharging(
            station=station, store=store, keys=self.keys, connectors=self.connectors
        )
        self.keys.watch(self._on_key_changed)
        self.keys.watch(self.auth.on_key_changed)
        for key, value in self.keys.items():
            self._on_key_changed(key.name, value)
        self._tasks = TaskSet("ocpp16")
        #: Called after anything an observer may wait for: online state, outbox progress.
        self.on_change: list[Callable[[], None]] = []
        self._settled = Signal()  # set at every online change and outbox delivery
        station.authorizer = self.auth.chain
        station.subscribe(self._on_station_event)

    # -- wiring ----------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this adapter answers, by action."""
        return {
            "ChangeAvailability": self._on_change_availability,
            "ChangeConfiguration": self._on_change_configuration,
            "CancelReservation": self._on_cancel_reservation,
            "ClearCache": self.auth.on_clear_cache,
            "GetLocalListVersion": self.auth.on_get_local_list_version,
            "SendLocalList": self.auth.on_send_local_list,
            "DataTransfer": self._on_data_transfer,
            "GetConfiguration": self._on_get_configuration,
            "RemoteStartTransaction": self._on_remote_start,
            "RemoteStopTransaction": self._on_remote_stop,
            "ReserveNow": self._on_reserve_now,
            "TriggerMessage": self._on_trigger_message,
            "Reset": self._on_reset,
            "UnlockConnector": self._on_unlock_connector,
            **self.smart.handlers(),
        }

    def register_vendor(self, vendor_id: str, handler: VendorHandler) -> None:
        """Answer DataTransfer requests for `vendor_id` with `handler`."""
        self._vendor_handlers[vendor_id] = handler

    def ping_interval_s(self) -> float | None:
        """The websocket ping interval for the next connection (None: off)."""
        value = self.keys.get_int("WebSocketPingInterval")
        return float(value) if value > 0 else None

    @property
    def online(self) -> bool:
        """Connected and accepted by the CSMS."""
        return self._endpoint is not None and not self._endpoint.closed and self._accepted

    async def shutdown(self) -> None:
        """Cancel the adapter's own background tasks."""
        await self._tasks.cancel_all()

    def _on_key_changed(self, name: str, value: str) -> None:
        policy = self.station.policy
        if name == "MeterValueSampleInterval":
            policy.sample_interval_s = float(value)
        elif name == "ClockAlignedDataInterval":
            policy.aligned_interval_s = float(value)
            self.station.policy_changed()
        elif name == "ConnectionTimeOut":
            policy.connection_timeout_s = float(value)
        elif name == "StopTransactionOnEVSideDisconnect":
            # 1.6's rule in start/stop point terms (2.0.1 E01): start PowerPathClosed;
            # stop Authorized, and EVConnected when unplugging stops the transaction.
            policy.stop_tx_on_ev_disconnect = value == "true"
            stop_points = {TxPoint.AUTHORIZED}
            if policy.stop_tx_on_ev_disconnect:
                stop_points.add(TxPoint.EV_CONNECTED)
            policy.tx_start_points = frozenset({TxPoint.POWER_PATH_CLOSED})
            policy.tx_stop_points = frozenset(stop_points)
        elif name == "UnlockConnectorOnEVSideDisconnect":
            policy.unlock_on_ev_disconnect = value == "true"
        elif name == "HeartbeatInterval":
            self._heartbeat_changed.set()

    # -- one connection ---------------------------------------------------------

    async def run_session(self, endpoint: RpcEndpoint) -> None:
        """Boot, then report and deliver until the connection is lost."""
        self._endpoint = endpoint
        self._accepted = False
        try:
            await self._boot(endpoint)
            self._accepted = True
            self._changed()
            self._outbox = OutboxSender(
                self.store,
                Pipeline(endpoint, self._outbox_call),
                clock=self.clock,
                attempts=lambda: self.keys.get_int("TransactionMessageAttempts"),
                retry_interval_s=lambda: float(
                    self.keys.get_int("TransactionMessageRetryInterval")
                ),
                on_settled=lambda _entry, _delivered: self._changed(),
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(self._report_all_statuses(endpoint))
                group.create_task(self._outbox.run())
                group.create_task(self._heartbeat(endpoint))
        except* ConnectionLost:
            log.info("connection lost")
        finally:
            self._accepted = False
            self._endpoint = None
            self._outbox = None
            self._changed()

    def _changed(self) -> None:
        self.station.csms_online = self.online
        self._settled.set()
        for callback in list(self.on_change):
            callback()

    async def _boot(self, endpoint: RpcEndpoint) -> None:
        """BootNotification until Accepted; nothing else is sent before (section 4.2)."""
        while True:
            try:
                conf = await endpoint.call("BootNotification", self._boot_payload)
            except (RpcError, CallTimeout) as exc:
                log.warning("BootNotification failed (%s); retrying in %.0fs", exc, BOOT_RETRY_S)
                await self.clock.sleep(BOOT_RETRY_S)
                continue
            interval = int(conf["interval"])
            if conf["status"] == "Accepted":
                if interval > 0:
                    self.keys.change("HeartbeatInterval", str(interval))
                log.info("BootNotification accepted")
                return
            retry = interval if interval > 0 else BOOT_RETRY_S
            log.info("BootNotification %s; retrying in %ss", conf["status"], retry)
            await self.clock.sleep(retry)

    async def _heartbeat(self, endpoint: RpcEndpoint) -> None:
        """A Heartbeat every HeartbeatInterval (section 4.6), due at start + k x interval
        however long each exchange takes (missed ones skipped); a changed interval starts
        the count again from the change. Raises ConnectionLost."""
        while True:
            self._heartbeat_changed.clear()
            interval = self.keys.get_int("HeartbeatInterval")
            due = self.clock.now()
            while True:
                due = next_tick(due, interval, self.clock.now())
                delay = (due - self.clock.now()).total_seconds()
                await sleep_unless(self.clock.sleep, delay, self._heartbeat_changed)
                if self._heartbeat_changed.is_set():
                    break  # the interval changed: start over with the new one
                try:
                    await endpoint.call("Heartbeat", {})
                except (RpcError, CallTimeout) as exc:
                    log.warning("Heartbeat failed: %s", exc)

    async def _report_all_statuses(self, endpoint: RpcEndpoint) -> None:
        """Send every connector's current status, then each change as it happens."""
        # The snapshot and the fresh queue are taken together (no await between), so a
        # change is either in the snapshot or queued after it, never both.
        snapshot = self._status_snapshot()
        self._status_queue = Mailbox()
        for number, status, code in snapshot:
            await self._send_status(endpoint, number, status, code)
        while True:
            number, status, code = await self._status_queue.get()
            await self._send_status(endpoint, number, status, code)

    def _status_snapshot(self) -> list[tuple[int, ConnectorStatus, str]]:
        """Every connector's current status (connector 0: the station) and error code."""
        operative = any(evse.operative for evse in self.station.evses.values())
        station_status = ConnectorStatus.AVAILABLE if operative else ConnectorStatus.UNAVAILABLE
        snapshot = [(0, station_status, self._station_error())]
        for evse in self.station.evses.values():
            for connector_id, (status, fault) in evse.statuses().items():
                code = mapping.ERROR_CODES[fault] if fault else "NoError"
                snapshot.append((self._connector_of[(evse.id, connector_id)], status, code))
        return snapshot

    async def _send_status(
        self, endpoint: RpcEndpoint, connector: int, status: ConnectorStatus, code: str
    ) -> None:
        payload = {
            "connectorId": connector,
            "errorCode": code,
            "status": mapping.status_value(status),
            "timestamp": mapping.timestamp(self.clock.now()),
        }
        fault = self._storage_fault
        if connector == 0 and code == "OtherError" and fault is not None:
            payload["vendorErrorCode"] = STORE_VENDOR_ERROR
            payload["info"] = fault.detail[:50]
        try:
            await endpoint.call("StatusNotification", payload)
        except (RpcError, CallTimeout) as exc:
            log.warning("StatusNotification failed: %s", exc)

    def _station_error(self) -> str:
        """Connector 0's error code: OtherError while the store cannot persist."""
        return "NoError" if self._storage_fault is None else "OtherError"

    # -- station events -----------------------------------------------------------

    def _on_station_event(self, event: StationEvent) -> None:
        if isinstance(event, StatusChanged):
            if self.online:
                number = self._connector_of[(event.evse_id, event.connector_id)]
                code = mapping.ERROR_CODES[event.fault] if event.fault else "NoError"
                self._status_queue.put_nowait((number, event.status, code))
        elif isinstance(event, TxMessageQueued):
            if self._outbox is not None:
                self._outbox.wake()
        elif isinstance(event, MeterValuesSampled) and self.online:
            self._tasks.spawn(self._send_meter_values(event), name="meter-values")
        elif isinstance(event, StorageFault):
            self._storage_fault = event if event.active else None
            if self.online:
                self._status_queue.put_nowait(self._status_snapshot()[0])  # connector 0

    async def _send_meter_values(self, event: MeterValuesSampled) -> None:
        """Clock-aligned values outside a transaction: sent if online, never queued."""
        endpoint = self._endpoint
        measurands = self.keys.get_list("MeterValuesAlignedData")
        values = mapping.sampled_values(
            event.sample,
            measurands,
            mapping.READING_CONTEXT[event.context],
            event.offered_current_a,
        )
        if endpoint is None or not values:
            return
        payload = {
            "connectorId": self._connector_of[(event.evse_id, event.connector_id)],
            "meterValue": [{"timestamp": mapping.timestamp(event.at), "sampledValue": values}],
        }
        try:
            await endpoint.call("MeterValues", payload)
        except (RpcError, CallTimeout, ConnectionLost) as exc:
            log.info("aligned MeterValues not sent: %s", exc)

    # -- transaction messages (the outbox) -------------------------------------------

    def _outbox_call(self, entry: OutboxEntry, ahead: bool) -> OutboxCall:
        """The CALL for one journal entry (section 6: Start/Stop Transaction, MeterValues)
        and what its answer means; raises Skip (nothing to send), NotYet (`ahead` of the
        answer bringing the transactionId it needs)."""
        tx = self.store.get_transaction(entry.tx_local_id)
        connector = self._connector_of.get((tx.evse_id, tx.connector_id), 1)
        if entry.kind == TxEventKind.STARTED:
            payload: dict[str, Any] = {
                "connectorId": connector,
                "idTag": tx.id_token,
                "meterStart": mapping.energy_wh(tx.meter_start_wh),
                "timestamp": mapping.timestamp(tx.started_at),
            }
            if tx.reservation_id is not None:
                payload["reservationId"] = tx.reservation_id

            def started(conf: dict[str, Any]) -> None:
                self.store.set_csms_tx_id(tx.local_id, str(conf["transactionId"]))
                self.auth.remember(tx.id_token, conf["idTagInfo"])
                if conf["idTagInfo"]["status"] != "Accepted":
                    self._refused(tx.local_id)

            return OutboxCall("StartTransaction", payload, started)
        if tx.csms_tx_id is None:
            if ahead:  # its StartTransaction may still be waiting for the answer
                raise NotYet
            # Only possible when the StartTransaction was given up: never invent an id.
            log.error("transaction %s has no CSMS id; %s not sent", tx.local_id, entry.kind)
            raise Skip
        if entry.kind == TxEventKind.UPDATED:
            clock = entry.payload.get("context") == SampleContext.CLOCK
            key = "MeterValuesAlignedData" if clock else "MeterValuesSampledData"
            value = mapping.meter_value(entry.payload, self.keys.get_list(key))
            if value is None:
                raise Skip
            meter_values = {
                "connectorId": connector,
                "transactionId": int(tx.csms_tx_id),
                "meterValue": [value],
            }
            return OutboxCall("MeterValues", meter_values)
        stop: dict[str, Any] = {
            "transactionId": int(tx.csms_tx_id),
            "meterStop": mapping.energy_wh(tx.meter_stop_wh or tx.meter_start_wh),
            "timestamp": mapping.timestamp(tx.stopped_at or self.clock.now()),
            "reason": mapping.STOP_REASONS[tx.stop_reason or StopReason.OTHER],
        }
        if tx.stop_id_token:
            stop["idTag"] = tx.stop_id_token
        data = self._transaction_data(tx.local_id)
        if data:
            stop["transactionData"] = data

        def stopped(conf: dict[str, Any]) -> None:
            if tx.stop_id_token and "idTagInfo" in conf:
                self.auth.remember(tx.stop_id_token, conf["idTagInfo"])

        return OutboxCall("StopTransaction", stop, stopped)

    def _refused(self, local_id: int) -> None:
        """OCPP 1.6 section 9.1: the CSMS refused the token of a started transaction: stop it
        (StopTransactionOnInvalidId) or suspend its energy (MaxEnergyOnInvalidId Wh)."""
        if self.keys.get_bool("StopTransactionOnInvalidId"):
            self._tasks.spawn(
                self.station.stop_transaction(local_id, StopReason.DE_AUTHORIZED),
                name="stop-invalid-id",
            )
        else:
            self.station.suspend_refused(local_id, float(self.keys.get_int("MaxEnergyOnInvalidId")))

    def _stop_reads(self, entry: OutboxEntry) -> bool:
        """Whether a StopTransaction will read this delivered entry (transactionData: only
        when StopTxnSampledData or StopTxnAlignedData asks for values); the store may let
        the others go (agent/store/retention.py)."""
        keys = self.keys
        return bool(keys.get_list("StopTxnSampledData") or keys.get_list("StopTxnAlignedData"))

    def _transaction_data(self, local_id: int) -> list[dict[str, Any]]:
        """StopTxnSampledData / StopTxnAlignedData values of a transaction (section 9.1)."""
        sampled = self.keys.get_list("StopTxnSampledData")
        aligned = self.keys.get_list("StopTxnAlignedData")
        data: list[dict[str, Any]] = []
        if not sampled and not aligned:  # nothing asked for: no need to read the entries
            return data
        for entry in self.store.tx_entries(local_id):
            if not entry.payload:
                continue
            context = entry.payload.get("context")
            measurands = aligned if context == SampleContext.CLOCK else sampled
            value = mapping.meter_value(entry.payload, measurands)
            if value is not None:
                data.append(value)
        return data

    # -- CSMS-initiated CALLs ----------------------------------------------------------

    def _evse_of(self, connector: int) -> int | None:
        place = self.connectors.get(connector)
        return place[0] if place else None

    async def _on_remote_start(self, payload: dict[str, Any]) -> dict[str, Any]:
        connector = payload.get("connectorId")
        evse_id = self._evse_of(connector) if connector is not None else None
        if connector is not None and evse_id is None:
            return {"status": "Rejected"}
        token = IdToken(payload["idTag"], TokenType.CENTRAL)
        authorize = self.keys.get_bool("AuthorizeRemoteTxRequests")
        # With a chargingProfile, a TxProfile held for this transaction (section 5.11).
        profile = payload.get("chargingProfile")
        accepted = self.smart.remote_start(profile, evse_id, token, authorize=authorize)
        return {"status": "Accepted" if accepted else "Rejected"}

    async def _on_remote_stop(self, payload: dict[str, Any]) -> dict[str, Any]:
        wanted = str(payload["transactionId"])
        for evse in self.station.evses.values():
            if (
                evse.tx is not None
                and self.store.get_transaction(evse.tx.local_id).csms_tx_id == wanted
            ):
                self._tasks.spawn(
                    self.station.stop_transaction(evse.tx.local_id, StopReason.REMOTE),
                    name="remote-stop",
                )
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    async def _on_reserve_now(self, payload: dict[str, Any]) -> dict[str, Any]:
        """ReserveNow.req (section 5.13); connector 0 reserves any one connector."""
        connector = int(payload["connectorId"])
        expires_at = datetime.fromisoformat(payload["expiryDate"].replace("Z", "+00:00"))
        if connector == 0 and not self.keys.get_bool("ReserveConnectorZeroSupported"):
            return {"status": "Rejected"}
        evse_id = self._evse_of(connector) if connector else None
        if (connector and evse_id is None) or expires_at <= self.clock.now():
            return {"status": "Rejected"}
        result = self.station.reserve(
            Reservation(
                id=int(payload["reservationId"]),
                id_token=payload["idTag"],
                expires_at=expires_at,
                evse_id=evse_id,
                group_id=payload.get("parentIdTag"),
            )
        )
        return {"status": mapping.RESERVE_RESULTS[result]}

    async def _on_cancel_reservation(self, payload: dict[str, Any]) -> dict[str, Any]:
        """CancelReservation.req (section 5.1)."""
        cancelled = self.station.cancel_reservation(int(payload["reservationId"]))
        return {"status": "Accepted" if cancelled else "Rejected"}

    async def _on_trigger_message(self, payload: dict[str, Any]) -> dict[str, Any] | AfterReply:
        """TriggerMessage.req (section 5.17): answer, then send the requested message."""
        message = payload["requestedMessage"]
        connector = payload.get("connectorId")
        if connector is not None and connector != 0 and connector not in self.connectors:
            return {"status": "Rejected"}
        if message == "MeterValues" and not connector:
            return {"status": "Rejected"}  # a meter belongs to a connector

        def send() -> None:
            self._tasks.spawn(self._send_triggered(message, connector), name="triggered")

        return AfterReply({"status": "Accepted"}, send)

    async def _send_triggered(self, message: str, connector: int | None) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        try:
            if message == "BootNotification":
                await endpoint.call("BootNotification", self._boot_payload)
            elif message == "Heartbeat":
                await endpoint.call("Heartbeat", {})
            elif message == "StatusNotification":
                for number, status, code in self._status_snapshot():
                    if connector is None or connector == number:
                        await self._send_status(endpoint, number, status, code)
            elif message == "MeterValues" and connector:
                await self._send_triggered_meter_values(endpoint, connector)
            elif message == "DiagnosticsStatusNotification":
                await endpoint.call("DiagnosticsStatusNotification", {"status": "Idle"})
            elif message == "FirmwareStatusNotification":
                await endpoint.call("FirmwareStatusNotification", {"status": "Idle"})
        except (RpcError, CallTimeout, ConnectionLost) as exc:
            log.info("triggered %s not sent: %s", message, exc)

    async def _send_triggered_meter_values(self, endpoint: RpcEndpoint, connector: int) -> None:
        evse_id, _ = self.connectors[connector]
        evse = self.station.evses[evse_id]
        sample = await evse.read_meter()
        if sample is None:
            return
        offered = evse.offered_a()
        values = mapping.sampled_values(
            sample, self.keys.get_list("MeterValuesSampledData"), "Trigger", offered
        )
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [
                {"timestamp": mapping.timestamp(self.clock.now()), "sampledValue": values}
            ],
        }
        if evse.tx is not None:
            csms_id = self.store.get_transaction(evse.tx.local_id).csms_tx_id
            if csms_id is not None:
                payload["transactionId"] = int(csms_id)
        await endpoint.call("MeterValues", payload)

    async def _on_reset(self, payload: dict[str, Any]) -> AfterReply:
        hard = payload["type"] == "Hard"

        def reset() -> None:
            self._tasks.spawn(self._reset(hard), name="reset")

        return AfterReply({"status": "Accepted"}, reset)

    async def _reset(self, hard: bool) -> None:
        """Stop transactions (SoftReset / HardReset), then restart the agent (section 5.14)."""
        await self.station.stop_all(StopReason.HARD_RESET if hard else StopReason.SOFT_RESET)
        if not hard:
            # A soft reset lets the StopTransactions go out before the connection closes;
            # whatever is left is delivered after the restart.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SOFT_RESET_DRAIN_S):
                    while self.store.pending_count() and self.online:
                        self._settled.clear()
                        await self._settled.wait()
        self._request_reset(hard)

    async def _on_change_availability(self, payload: dict[str, Any]) -> dict[str, Any]:
        connector = int(payload["connectorId"])
        operative = payload["type"] == "Operative"
        if connector == 0:
            applied = self.station.set_operative(None, operative)
        else:
            evse_id = self._evse_of(connector)
            if evse_id is None:
                return {"status": "Rejected"}
            applied = self.station.set_operative(evse_id, operative)
        if connector == 0 and self.online:
            state = ConnectorStatus.AVAILABLE if operative else ConnectorStatus.UNAVAILABLE
            self._status_queue.put_nowait((0, state, self._station_error()))
        return {"status": "Accepted" if applied else "Scheduled"}

    async def _on_unlock_connector(self, payload: dict[str, Any]) -> dict[str, Any]:
        evse_id = self._evse_of(int(payload["connectorId"]))
        if evse_id is None:
            return {"status": "NotSupported"}
        result = await self.station.unlock(evse_id)
        return {
            "status": {"unlocked": "Unlocked", "failed": "UnlockFailed"}.get(result, "NotSupported")
        }

    async def _on_get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        wanted = payload.get("key")
        known = {key.name: (key, value) for key, value in self.keys.items()}
        names = wanted if wanted else list(known)
        result: dict[str, Any] = {"configurationKey": [], "unknownKey": []}
        for name in names:
            if name in known:
                key, value = known[name]
                result["configurationKey"].append(
                    {"key": name, "readonly": key.readonly, "value": value}
                )
            else:
                result["unknownKey"].append(name)
        return {field: items for field, items in result.items() if items}

    async def _on_change_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.keys.change(payload["key"], payload["value"]).value}

    async def _on_data_transfer(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await data_transfer.answer(self._vendor_handlers, payload)

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        """Send a DataTransfer to the CSMS; raises ConnectionLost when offline."""
        endpoint = self._endpoint if self.online else None
        return await data_transfer.send(endpoint, vendor_id, message_id, data)
