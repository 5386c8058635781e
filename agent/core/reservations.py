"""Reservations: an EVSE (or, for the station, any one EVSE) held for a token until expiry.

OCPP 1.6 section 5.13 (ReserveNow, CancelReservation) and 2.0.1 block H say the same
thing in two dialects; this module holds the neutral rules:

- A reservation for one EVSE makes it Reserved: only the reserved token, or a token of
  the reservation's group, may start a session there. It ends when that session starts
  (used), at its expiry, when cancelled, or when the EVSE becomes Unavailable or
  Faulted.
- A reservation for the station (OCPP 1.6 connector 0, 2.0.1 without evseId) reserves no
  EVSE in particular: a session for anyone else may start only while enough EVSEs stay
  free for every such reservation. One with a connector type (2.0.1 connectorType) is
  held only by an EVSE having a connector of that type, so "enough" is a matching: each
  unbound reservation needs a free EVSE of its own that fits it (`unmatched`). It ends
  (removed) when an EVSE turning Faulted or Unavailable leaves none usable for it.
- A free EVSE that the unbound reservations cannot spare shows Reserved (2.0.1
  H01.FR.07: as many reservations as free EVSEs make every one of them Reserved).
- A new reservation with the id of an existing one replaces it.

The store is the settings store (one JSON value), so reservations survive a restart.
The rules here are pure functions over the book and the free EVSEs; the station
(agent/core/station.py) applies them. Must not: know any OCPP message or version.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from agent.core.events import AuthResult, IdToken
from agent.core.ports import SettingsStore

SETTING = "core.reservations"

#: The EVSEs anyone could start on now, each with the types of its connectors.
FreeEvses = Mapping[int, Collection[str]]


class ReserveResult(StrEnum):
    """The answer to a reservation request."""

    ACCEPTED = "accepted"
    FAULTED = "faulted"
    OCCUPIED = "occupied"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"


class ReservationGate(Protocol):
    """What an EVSE asks before a session starts (the station answers)."""

    def may_admit(self, evse_id: int, token: IdToken) -> bool:
        """Whether any authorization of this token could let it start here now (False:
        refuse it without asking anyone, e.g. another card at an EVSE reserved without a
        group, OCPP 1.6 section 5.13)."""
        ...

    def admits(self, evse_id: int, token: IdToken, result: AuthResult | None) -> bool:
        """Whether this token may start a session on this EVSE now."""
        ...

    def use(self, evse_id: int, token: IdToken, result: AuthResult | None) -> int | None:
        """Consume the reservation this session fulfils; its id, or None."""
        ...


class OpenGate:
    """No reservations at all (an EVSE built without a station)."""

    def may_admit(self, evse_id: int, token: IdToken) -> bool:
        return True

    def admits(self, evse_id: int, token: IdToken, result: AuthResult | None) -> bool:
        return True

    def use(self, evse_id: int, token: IdToken, result: AuthResult | None) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reservation; `evse_id` None reserves any one EVSE of the station (of those
    with a connector of `connector_type`, when given)."""

    id: int
    id_token: str
    expires_at: datetime
    evse_id: int | None = None
    group_id: str | None = None
    connector_type: str | None = None

    def admits(self, token: IdToken, result: AuthResult | None = None) -> bool:
        """Whether `token` (authorized with `result`) may use this reservation."""
        if token.value == self.id_token:
            return True
        group = result.group_id if result is not None else None
        return self.group_id is not None and group == self.group_id

    def fits(self, connector_types: Collection[str]) -> bool:
        """Whether an EVSE with these connector types can hold this reservation."""
        return self.connector_type is None or self.connector_type in connector_types


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

    def __len__(self) -> int:
        """How many reservations there are."""
        return len(self._by_id)

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


# -- the rules for reservations of no EVSE in particular ----------------------------------


def unmatched(reservations: Sequence[Reservation], free: FreeEvses) -> list[Reservation]:
    """The reservations left without a free EVSE of their own that fits them, in a
    maximum matching (augmenting paths; soonest expiry served first); [] if all are held."""
    holder: dict[int, Reservation] = {}  # evse id -> the reservation it holds

    def place(reservation: Reservation, tried: set[int]) -> bool:
        for evse_id, types in free.items():
            if evse_id in tried or not reservation.fits(types):
                continue
            tried.add(evse_id)
            current = holder.get(evse_id)
            if current is None or place(current, tried):
                holder[evse_id] = reservation
                return True
        return False

    ordered = sorted(reservations, key=lambda r: (r.expires_at, r.id))
    return [r for r in ordered if not place(r, set())]


def can_hold(reservations: Sequence[Reservation], free: FreeEvses) -> bool:
    """Whether every reservation gets a free EVSE of its own that fits it."""
    return not unmatched(reservations, free)


def without(free: FreeEvses, evse_id: int) -> dict[int, Collection[str]]:
    """The free EVSEs but one."""
    return {key: types for key, types in free.items() if key != evse_id}


def claim(
    unbound: Sequence[Reservation],
    free: FreeEvses,
    evse_id: int,
    evse_types: Collection[str],
    token: IdToken,
    result: AuthResult | None,
) -> tuple[bool, Reservation | None]:
    """May `token` start a session on EVSE `evse_id` while `unbound` reservations stand,
    and which of them does that session use (None: none)?

    A session that uses a reservation it fits frees that reservation's claim; any other
    session may start only if the unbound reservations still fit the EVSEs left free.
    """
    rest = without(free, evse_id)
    for reservation in sorted(unbound, key=lambda r: (r.expires_at, r.id)):
        if reservation.admits(token, result) and reservation.fits(evse_types):
            others = [r for r in unbound if r.id != reservation.id]
            if can_hold(others, rest):
                return True, reservation
    return can_hold(unbound, rest), None


def needed(unbound: Sequence[Reservation], free: FreeEvses) -> set[int]:
    """The free EVSEs the unbound reservations cannot spare (shown Reserved)."""
    if not unbound:
        return set()
    return {evse_id for evse_id in free if not can_hold(unbound, without(free, evse_id))}
