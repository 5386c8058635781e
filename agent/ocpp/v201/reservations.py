"""OCPP 2.0.1 block H (reservations) over the core's reservation book.

Responsible for:
- ReserveNow (H01): a given EVSE (evseId), any one EVSE (no evseId), any one EVSE with a
  connector of a type (connectorType). Rejected while ReservationCtrlr is not Available
  and Enabled (H01.FR.01), without evseId while ReservationCtrlr.NonEvseSpecific is
  false (H01.FR.19), for an unknown EVSE or a connector type no EVSE has, and for an
  expiry already past; otherwise the core's answer (Accepted, Occupied, Faulted,
  Unavailable). The same id replaces a reservation (H01.FR.02). idToken and groupIdToken
  become the core reservation's token and group, so a token of that group (learnt from
  the local list, the cache or an Authorize) may use it (H03).
- CancelReservation (H02): Accepted for a known id, Rejected otherwise.
- ReservationStatusUpdate for the ends the core reports: Expired (H04) and Removed (the
  EVSE turned Faulted or Unavailable, H01). A used reservation is reported by
  the reservationId of the TransactionEvent that used it (agent/ocpp/v201/transactions.py),
  a cancelled one by the CancelReservation answer: neither gets an update.
  Updates wait in the settings store until the CSMS has answered them, so one that falls
  in an offline period, or before a restart, is sent once the station is accepted again.

Must not: decide whether an EVSE can be reserved, which EVSE stays free or who may use
a reservation (agent/core/station.py and agent/core/reservations.py do), nor send
before the registration is accepted (the adapter starts `run` after it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from agent.core.events import ReservationEnded
from agent.core.ports import Clock, SettingsStore
from agent.core.reservations import Reservation
from agent.core.station import Station
from agent.core.tasks import Signal
from agent.ocpp.rpc import CallTimeout, Handler, RpcEndpoint, RpcError
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.device_model import DeviceModel

log = logging.getLogger(__name__)

#: The settings key of the ReservationStatusUpdates not yet answered by the CSMS.
PENDING_SETTING = "v201.reservation_updates"

AVAILABLE = "ReservationCtrlr/Available"
ENABLED = "ReservationCtrlr/Enabled"
NON_EVSE_SPECIFIC = "ReservationCtrlr/NonEvseSpecific"


def _refusal(reason: str) -> dict[str, Any]:
    """A Rejected answer with its Appendix 5 reason code."""
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason}}


def _expiry(text: str) -> datetime | None:
    """expiryDateTime as an aware UTC datetime (naive counts as UTC); None if malformed."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class Ocpp201Reservations:
    """ReserveNow, CancelReservation and ReservationStatusUpdate for one station."""

    def __init__(
        self,
        *,
        station: Station,
        store: SettingsStore,
        model: DeviceModel,
        clock: Clock,
        on_settled: Callable[[], None] | None = None,
        statuses_sent: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`on_settled` is called each time a pending update leaves the store;
        `statuses_sent` returns once every StatusNotification queued so far was sent, so
        an update follows the status change that caused it (Faulted, then Removed)."""
        self._station = station
        self._store = store
        self._model = model
        self._clock = clock
        self._on_settled = on_settled
        self._statuses_sent = statuses_sent
        #: Set when there may be something to report (the adapter clears it, reports).
        self.changed = Signal()

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this block answers, by action."""
        return {
            "ReserveNow": self._on_reserve_now,
            "CancelReservation": self._on_cancel_reservation,
        }

    # -- H01, H02 ----------------------------------------------------------------------

    async def _on_reserve_now(self, payload: dict[str, Any]) -> dict[str, Any]:
        """H01: reserve an EVSE, any EVSE, or any EVSE with a connector type."""
        if not (self._model.bool_value(AVAILABLE) and self._model.bool_value(ENABLED)):
            return _refusal("NotEnabled")  # H01.FR.01
        evse_id = payload.get("evseId")
        connector_type = payload.get("connectorType")
        if evse_id is None and not self._model.bool_value(NON_EVSE_SPECIFIC):
            return _refusal("UnsupportedRequest")  # H01.FR.19
        if evse_id is not None and int(evse_id) not in self._station.evses:
            return _refusal("UnknownEvse")
        if connector_type is not None and not any(
            connector.type == connector_type
            for evse in self._station.evses.values()
            if evse_id is None or evse.id == int(evse_id)
            for connector in evse.connectors
        ):
            return _refusal("UnknownConnectorType")
        expires_at = _expiry(payload["expiryDateTime"])
        if expires_at is None or expires_at <= self._clock.now():
            return _refusal("InvalidValue")
        group = payload.get("groupIdToken")
        result = self._station.reserve(
            Reservation(
                id=int(payload["id"]),
                id_token=payload["idToken"]["idToken"],
                expires_at=expires_at,
                evse_id=None if evse_id is None else int(evse_id),
                group_id=group["idToken"] if group else None,
                connector_type=connector_type,
            )
        )
        return {"status": mapping.RESERVE_RESULTS[result]}

    async def _on_cancel_reservation(self, payload: dict[str, Any]) -> dict[str, Any]:
        """H02: Accepted and cancelled for a known id (H02.FR.02), else Rejected (H02.FR.01)."""
        cancelled = self._station.cancel_reservation(int(payload["reservationId"]))
        return {"status": "Accepted" if cancelled else "Rejected"}

    # -- ReservationStatusUpdate (H01, H04) ------------------------------------------------

    def on_ended(self, event: ReservationEnded) -> None:
        """Station event: keep the ReservationStatusUpdate an expiry or removal needs."""
        status = mapping.RESERVATION_UPDATES.get(event.reason)
        if status is None:
            return
        pending = self.pending()
        pending.append({"reservationId": event.reservation_id, "reservationUpdateStatus": status})
        self._save(pending)
        self.changed.set()

    def pending(self) -> list[dict[str, Any]]:
        """The ReservationStatusUpdate payloads not yet answered, oldest first."""
        raw = self._store.get_setting(PENDING_SETTING)
        items: list[dict[str, Any]] = json.loads(raw) if raw else []
        return items

    async def report(self, endpoint: RpcEndpoint) -> None:
        """Send the pending updates in order (those added meanwhile too); raises
        ConnectionLost.

        An update leaves the store once answered; one the CSMS refuses (CALLERROR) or
        leaves unanswered is logged and dropped rather than retried for ever."""
        while pending := self.pending():
            first = pending[0]
            if self._statuses_sent is not None:
                await self._statuses_sent()
            try:
                await endpoint.call("ReservationStatusUpdate", first)
            except (RpcError, CallTimeout) as exc:
                log.warning("ReservationStatusUpdate %s dropped: %s", first, exc)
            self._save(self.pending()[1:])  # new ones were appended meanwhile
            if self._on_settled is not None:
                self._on_settled()

    def _save(self, pending: list[dict[str, Any]]) -> None:
        self._store.set_setting(PENDING_SETTING, json.dumps(pending))
