"""Reservations: an EVSE (or, for the station, any one EVSE) held for a token until expiry.

OCPP 1.6 section 5.13 (ReserveNow, CancelReservation) and 2.0.1 block H say the same
thing in two dialects; this module holds the neutral rules:

- A reservation for one EVSE makes it Reserved: only the reserved token, or a token of
  the reservation's group, may start a session there. It ends when that session starts
  (used), at its expiry, when cancelled, or when the EVSE becomes Unavailable or
  Faulted.
- A reservation for the station (OCPP 1.6 connector 0, 2.0.1 without evseId) reserves no
  EVSE in particular: a session for anyone else may start only while enough EVSEs stay
  free for every such reservation.
- A new reservation with the id of an existing one replaces it.

The store is the settings store (one JSON value), so reservations survive a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from agent.core.events import AuthResult, IdToken
from agent.core.ports import SettingsStore

SETTING = "core.reservations"


class ReserveResult(StrEnum):
    """The answer to a reservation request."""

    ACCEPTED = "accepted"
    FAULTED = "faulted"
    OCCUPIED = "occupied"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"


class ReservationGate(Protocol):
    """What an EVSE asks before a session starts (the station answers)."""

    def admits(self, evse_id: int, token: IdToken, result: AuthResult | None) -> bool:
        """Whether this token may start a session on this EVSE now."""
        ...

    def use(self, evse_id: int, token: IdToken, result: AuthResult | None) -> int | None:
        """Consume the reservation this session fulfils; its id, or None."""
        ...


class OpenGate:
    """No reservations at all (an EVSE built without a station)."""

    def admits(self, evse_id: int, token: IdToken, result: AuthResult | None) -> bool:
        return True

    def use(self, evse_id: int, token: IdToken, result: AuthResult | None) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reservation; `evse_id` None reserves any one EVSE of the station."""

    id: int
    id_token: str
    expires_at: datetime
    evse_id: int | None = None
    group_id: str | None = None

    def admits(self, token: IdToken, result: AuthResult | None = None) -> bool:
        """Whether `token` (authorized with `result`) may use this reservation."""
        if token.value == self.id_token:
            return True
        group = result.group_id if result is not None else None
        return self.group_id is not None and group == self.group_id


class ReservationBook:
    """The station's reservations, persisted in the settings store."""

    def __init__(self, settings: SettingsStore) -> None:
        self._settings = settings
        self._by_id: dict[int, Reservation] = {}
        raw = settings.get_setting(SETTING)
        for item in json.loads(raw) if raw else []:
            item["expires_at"] = datetime.fromisoformat(item["expires_at"])
            reservation = Reservation(**item)
            self._by_id[reservation.id] = reservation

    def all(self) -> list[Reservation]:
        """Every reservation, soonest expiry first."""
        return sorted(self._by_id.values(), key=lambda r: r.expires_at)

    def get(self, reservation_id: int) -> Reservation | None:
        """The reservation with this id, or None."""
        return self._by_id.get(reservation_id)

    def for_evse(self, evse_id: int) -> Reservation | None:
        """The reservation holding this EVSE, if any."""
        return next((r for r in self._by_id.values() if r.evse_id == evse_id), None)

    def station_wide(self) -> list[Reservation]:
        """Reservations of any one EVSE."""
        return [r for r in self._by_id.values() if r.evse_id is None]

    def add(self, reservation: Reservation) -> None:
        """Record a reservation (replacing one with the same id)."""
        self._by_id[reservation.id] = reservation
        self._save()

    def remove(self, reservation_id: int) -> Reservation | None:
        """Forget a reservation and return it (None if unknown)."""
        reservation = self._by_id.pop(reservation_id, None)
        if reservation is not None:
            self._save()
        return reservation

    def expired(self, now: datetime) -> list[Reservation]:
        """The reservations whose expiry has passed."""
        return [r for r in self._by_id.values() if r.expires_at <= now]

    def _save(self) -> None:
        items: Iterable[dict[str, object]] = (
            {**asdict(r), "expires_at": r.expires_at.isoformat()} for r in self._by_id.values()
        )
        self._settings.set_setting(SETTING, json.dumps(list(items)))
