"""OCPP 1.6 Smart Charging profile: charging profiles between the 1.6 wire and the core.

Responsible for:

- SetChargingProfile (sections 5.16, 6.43): the `csChargingProfiles` payload becomes a
  core `ChargingProfile` (connector -> EVSE; the CSMS's integer transactionId -> the
  journal's local id, the name TX profiles carry in the store) and is installed through
  the ProfileStore with 1.6's replacement rule (section 3.13.2) under the limits the
  Smart Charging keys advertise (section 9.4). Every reason to refuse one (periods out
  of order, an unsupported unit, too many periods, a stack level above
  ChargeProfileMaxStackLevel, validTo before validFrom, a TxProfile without its
  transaction, ...) answers Rejected, and the store's all-or-nothing install leaves the
  installed set as it was.
- ClearChargingProfile (section 5.5): one profile by id, or every profile matching the
  given connector, purpose and stack level (the id, when given, decides alone:
  "either a specific charging profile (denoted by id) or a selection").
- GetCompositeSchedule (sections 5.7, 6.27): connector n reports its EVSE's composite
  (ChargePointMax and TxProfile or TxDefaultProfile, section 3.13.3) bounded by the
  EVSE's hardware maximum, which also fills the instants no profile limits (a period
  always carries a limit). Connector 0 reports what section 5.7 asks for: "the total
  expected power or current the Charge Point expects to consume from the grid", the sum
  of its connectors' composites bounded by the ChargePointMaxProfile. Limits are in the
  requested chargingRateUnit (converted with the period's phases and the nominal
  voltage, section 7.12) and rounded down to the wire's 0.1; an unknown connector or a
  duration outside 1 s .. MAX_COMPOSITE_S is Rejected.
- the chargingProfile of a RemoteStartTransaction (section 5.11): only a TxProfile
  without transactionId is accepted (else the remote start is Rejected); it is
  validated at once and handed to the core to install, naming the transaction, when
  that transaction begins; a remote start that comes to nothing (its authorization is
  refused or times out) drops it.

Mapping choices where 1.6 leaves room: an Absolute profile without startSchedule is
"relative to start of charging" (section 7.13, startSchedule) for TxProfile and
TxDefaultProfile; a ChargePointMaxProfile has no charging to be relative to and starts
when received. A Relative profile's startSchedule means nothing and is ignored.
Times on the wire are parsed and written by agent/ocpp/v16/mapping.py.

Must not: compute schedules (agent/core/composite.py), decide or apply what an EVSE
offers (agent/core/smart_charging.py), or send anything to the CSMS.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from agent.core.composite import CompositeSchedule, convert_limit
from agent.core.events import IdToken
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    RejectReason,
    SchedulePeriod,
    validate_profile,
)
from agent.core.station import Station
from agent.core.status import SessionPhase
from agent.ocpp.rpc import Handler
from agent.ocpp.v16 import mapping
from agent.ocpp.v16.config_keys import ConfigurationKeys
from agent.store import AgentStore
from agent.store.profiles import ConflictRule, ProfileRejectedError, ProfileStore

__all__ = [
    "MAX_COMPOSITE_S",
    "Ocpp16SmartCharging",
    "WirePeriod",
    "allowed_units",
    "capped_periods",
    "composite_payload",
    "profile_from_wire",
    "station_total",
]

log = logging.getLogger(__name__)

#: The longest GetCompositeSchedule window answered (longer ones are Rejected): the
#: composite is computed on the event loop, so its size stays bounded.
MAX_COMPOSITE_S: Final = 31 * 86_400

PURPOSES: Final[Mapping[str, ProfilePurpose]] = {
    "ChargePointMaxProfile": ProfilePurpose.STATION_MAX,
    "TxDefaultProfile": ProfilePurpose.TX_DEFAULT,
    "TxProfile": ProfilePurpose.TX,
}
KINDS: Final[Mapping[str, ProfileKind]] = {
    "Absolute": ProfileKind.ABSOLUTE,
    "Recurring": ProfileKind.RECURRING,
    "Relative": ProfileKind.RELATIVE,
}
RECURRENCES: Final[Mapping[str, Recurrence]] = {
    "Daily": Recurrence.DAILY,
    "Weekly": Recurrence.WEEKLY,
}
RATE_UNITS: Final[Mapping[str, RateUnit]] = {"A": RateUnit.AMPERE, "W": RateUnit.WATT}
#: ChargingScheduleAllowedChargingRateUnit's values (section 9.4) as units.
QUANTITIES: Final[Mapping[str, RateUnit]] = {"Current": RateUnit.AMPERE, "Power": RateUnit.WATT}

#: The transaction a remote start's profile is validated with before it has one.
_PENDING_TX: Final = "pending-remote-start"


# -- payload <-> model -------------------------------------------------------------------


def _time(text: str | None) -> datetime | None:
    """An optional wire dateTime as an aware UTC datetime; raises ValueError."""
    return None if text is None else mapping.parse_timestamp(text)


def profile_from_wire(
    data: Mapping[str, Any],
    *,
    evse_id: int,
    transaction_id: str | None,
    received_at: datetime,
) -> ChargingProfile:
    """The core profile for a schema-valid 1.6 ChargingProfile on `evse_id` (0: the
    station); `transaction_id` is the local id a TxProfile names (ignored for the other
    purposes). Raises ValueError for a dateTime that is not one."""
    purpose = PURPOSES[data["chargingProfilePurpose"]]
    kind = KINDS[data["chargingProfileKind"]]
    wire_schedule: Mapping[str, Any] = data["chargingSchedule"]
    start = _time(wire_schedule.get("startSchedule"))
    if kind is ProfileKind.RELATIVE:
        start = None  # the transaction's start is the schedule's start
    elif kind is ProfileKind.ABSOLUTE and start is None:
        if purpose is ProfilePurpose.STATION_MAX:
            start = received_at.replace(microsecond=0)
        else:
            kind = ProfileKind.RELATIVE  # section 7.13: "relative to start of charging"
    recurrency = data.get("recurrencyKind")
    recurrence = None
    if kind is ProfileKind.RECURRING and recurrency is not None:
        recurrence = RECURRENCES[recurrency]
    min_rate = wire_schedule.get("minChargingRate")
    return ChargingProfile(
        profile_id=int(data["chargingProfileId"]),
        evse_id=evse_id,
        purpose=purpose,
        stack_level=int(data["stackLevel"]),
        kind=kind,
        recurrence=recurrence,
        valid_from=_time(data.get("validFrom")),
        valid_to=_time(data.get("validTo")),
        transaction_id=transaction_id if purpose is ProfilePurpose.TX else None,
        schedule=ChargingSchedule(
            rate_unit=RATE_UNITS[wire_schedule["chargingRateUnit"]],
            periods=tuple(
                SchedulePeriod(
                    start_s=int(period["startPeriod"]),
                    limit=float(period["limit"]),
                    number_phases=period.get("numberPhases"),
                )
                for period in wire_schedule["chargingSchedulePeriod"]
            ),
            start_schedule=start,
            duration_s=wire_schedule.get("duration"),
            min_charging_rate=None if min_rate is None else float(min_rate),
        ),
    )


def allowed_units(quantities: Iterable[str]) -> frozenset[RateUnit]:
    """The units ChargingScheduleAllowedChargingRateUnit's items allow (unknown ones ignored)."""
    return frozenset(QUANTITIES[q] for q in quantities if q in QUANTITIES)


@dataclass(frozen=True, slots=True)
class WirePeriod:
    """One ChargingSchedulePeriod of a reported composite (a limit on every period)."""

    start_s: int
    limit: float
    number_phases: int | None = None


def capped_periods(
    schedule: CompositeSchedule, hardware_max_a: float, phases: int, voltage_v: float
) -> list[WirePeriod]:
    """An EVSE's composite bounded by its hardware maximum (per phase, on `phases` unless
    a period says), which also fills the instants no profile limits."""
    capped: list[WirePeriod] = []
    for period in schedule.periods:
        hardware = convert_limit(
            hardware_max_a,
            from_unit=RateUnit.AMPERE,
            to_unit=schedule.rate_unit,
            number_phases=period.number_phases or phases,
            voltage_v=voltage_v,
        )
        if period.limit is None or period.limit > hardware:
            capped.append(WirePeriod(period.start_s, hardware, period.number_phases))
        else:
            capped.append(WirePeriod(period.start_s, period.limit, period.number_phases))
    return capped


class _Timed(Protocol):
    """A period of a schedule: from `start_s` on."""

    @property
    def start_s(self) -> int: ...


_P = TypeVar("_P", bound=_Timed)


def _covering(periods: Sequence[_P], offset_s: int) -> _P:
    """The period of `periods` (in order, the first at 0) covering `offset_s`."""
    index = bisect_right([period.start_s for period in periods], offset_s) - 1
    return periods[max(index, 0)]


def station_total(
    evse_periods: Sequence[Sequence[WirePeriod]], station: CompositeSchedule
) -> list[WirePeriod]:
    """Connector 0's schedule (section 5.7): at each instant the sum of the EVSEs'
    limits, bounded by the station's maximum (`station`: the composite of EVSE 0)."""
    offsets = {period.start_s for periods in evse_periods for period in periods}
    offsets.update(period.start_s for period in station.periods)
    total: list[WirePeriod] = []
    for offset_s in sorted(offsets):
        summed = sum(_covering(periods, offset_s).limit for periods in evse_periods)
        cap = _covering(station.periods, offset_s)
        if cap.limit is not None and cap.limit < summed:
            total.append(WirePeriod(offset_s, cap.limit, cap.number_phases))
        else:
            total.append(WirePeriod(offset_s, summed))
    return total


def _wire_limit(limit: float) -> float:
    """A limit as the wire takes it: rounded down to 0.1 (multipleOf 0.1), never more."""
    return math.floor(limit * 10 + 1e-6) / 10


def composite_payload(
    connector_id: int,
    start: datetime,
    duration_s: int,
    rate_unit: RateUnit,
    periods: Iterable[WirePeriod],
) -> dict[str, Any]:
    """GetCompositeSchedule.conf (Accepted) for `periods`, equal neighbours merged."""
    wire: list[dict[str, Any]] = []
    last: tuple[float, int | None] | None = None
    for period in periods:
        value = (_wire_limit(period.limit), period.number_phases)
        if value == last:
            continue  # equal once rounded: one period
        last = value
        entry: dict[str, Any] = {"startPeriod": period.start_s, "limit": value[0]}
        if period.number_phases is not None:
            entry["numberPhases"] = period.number_phases
        wire.append(entry)
    at = mapping.timestamp(start)
    return {
        "status": "Accepted",
        "connectorId": connector_id,
        "scheduleStart": at,
        "chargingSchedule": {
            "duration": duration_s,
            "startSchedule": at,
            "chargingRateUnit": rate_unit.value,
            "chargingSchedulePeriod": wire,
        },
    }


# -- the handlers -------------------------------------------------------------------------


class Ocpp16SmartCharging:
    """The Smart Charging profile of one 1.6 adapter (one station, one agent run)."""

    def __init__(
        self,
        *,
        station: Station,
        store: AgentStore,
        keys: ConfigurationKeys,
        connectors: Mapping[int, tuple[int, int]],
    ) -> None:
        """Serve `station` (its smart-charging loop and, as `station.smart.source`, the
        ProfileStore); `connectors` maps 1.6 connector numbers to (EVSE, connector)."""
        self.station = station
        self.store = store
        self.keys = keys
        self.connectors = connectors
        source = station.smart.source
        #: None when the station was built without a ProfileStore: SetChargingProfile
        #: then answers NotSupported.
        self.profiles: ProfileStore | None = source if isinstance(source, ProfileStore) else None

    def handlers(self) -> dict[str, Handler]:
        """The CALLs of the Smart Charging profile, by action."""
        return {
            "SetChargingProfile": self.on_set_charging_profile,
            "ClearChargingProfile": self.on_clear_charging_profile,
            "GetCompositeSchedule": self.on_get_composite_schedule,
        }

    def limits(self) -> ProfileLimits:
        """What SetChargingProfile accepts now (the Smart Charging keys, section 9.4)."""
        return ProfileLimits(
            max_stack_level=self.keys.get_int("ChargeProfileMaxStackLevel"),
            max_periods=self.keys.get_int("ChargingScheduleMaxPeriods"),
            allowed_units=allowed_units(
                self.keys.get_list("ChargingScheduleAllowedChargingRateUnit")
            ),
            evse_ids=frozenset(self.station.evses),
            max_installed=self.keys.get_int("MaxChargingProfilesInstalled"),
        )

    def _evse_of(self, connector: int) -> int | None:
        """The EVSE of a 1.6 connector number (0: the station), None if unknown."""
        if connector == 0:
            return 0
        place = self.connectors.get(connector)
        return place[0] if place is not None else None

    def _active(self) -> dict[int, str]:
        """{EVSE: local id} of the running transactions (what TX profiles must name)."""
        return {
            evse.id: str(evse.tx.local_id)
            for evse in self.station.evses.values()
            if evse.tx is not None
        }

    # -- SetChargingProfile (section 5.16) -------------------------------------------------

    async def on_set_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """SetChargingProfile.req -> Accepted, Rejected or NotSupported."""
        status = await self._set(int(payload["connectorId"]), payload["csChargingProfiles"])
        return {"status": status}

    async def _set(self, connector: int, data: Mapping[str, Any]) -> str:
        """Install `data` on `connector`, all or nothing, durably; the SetChargingProfile
        status."""
        if self.profiles is None:
            return "NotSupported"
        profile_id = data["chargingProfileId"]
        evse_id = self._evse_of(connector)
        if evse_id is None:
            log.info("SetChargingProfile %s: unknown connector %s", profile_id, connector)
            return "Rejected"
        try:
            profile = profile_from_wire(
                data,
                evse_id=evse_id,
                transaction_id=self._transaction_of(evse_id, data),
                received_at=self.station.clock.now(),
            )
            await self.profiles.install(
                profile,
                self.limits(),
                conflicts=ConflictRule.REPLACE,
                active_transactions=self._active(),
            )
        except ProfileRejectedError as exc:
            log.info(
                "SetChargingProfile %s on connector %s rejected: %s", profile_id, connector, exc
            )
            return "Rejected"
        except ValueError as exc:
            log.info("SetChargingProfile %s: %s", profile_id, exc)
            return "Rejected"
        self.station.smart.profiles_changed()
        return "Accepted"

    def _transaction_of(self, evse_id: int, data: Mapping[str, Any]) -> str | None:
        """The local id a TxProfile names: that of the CSMS's transactionId, else that of
        the transaction running on the EVSE (section 5.16.3); raises ProfileRejectedError
        when there is none."""
        if data["chargingProfilePurpose"] != "TxProfile":
            return None
        wire_id = data.get("transactionId")
        if wire_id is None:
            evse = self.station.evses.get(evse_id)
            if evse is None or evse.tx is None:
                raise ProfileRejectedError(
                    RejectReason.NO_ACTIVE_TRANSACTION, f"no transaction on EVSE {evse_id}"
                )
            return str(evse.tx.local_id)
        for evse in self.station.evses.values():
            # The journal keeps the CSMS's id on the row (set by StartTransaction.conf).
            if evse.tx is not None and self.store.get_transaction(
                evse.tx.local_id
            ).csms_tx_id == str(wire_id):
                return str(evse.tx.local_id)
        raise ProfileRejectedError(
            RejectReason.NO_ACTIVE_TRANSACTION, f"transaction {wire_id} is not running"
        )

    # -- ClearChargingProfile (section 5.5) ------------------------------------------------

    async def on_clear_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """ClearChargingProfile.req -> Accepted if any profile was removed, else Unknown."""
        if self.profiles is None:
            return {"status": "Unknown"}
        if "id" in payload:
            cleared = self.profiles.clear(profile_ids=[int(payload["id"])])
        else:
            connector = payload.get("connectorId")
            evse_id = None if connector is None else self._evse_of(int(connector))
            if connector is not None and evse_id is None:
                return {"status": "Unknown"}
            purpose = payload.get("chargingProfilePurpose")
            cleared = self.profiles.clear(
                evse_id=evse_id,
                purpose=None if purpose is None else PURPOSES[purpose],
                stack_level=payload.get("stackLevel"),
            )
        if not cleared:
            return {"status": "Unknown"}
        log.info("cleared charging profiles %s", cleared)
        self.station.smart.profiles_changed()
        return {"status": "Accepted"}

    # -- GetCompositeSchedule (section 5.7) ------------------------------------------------

    async def on_get_composite_schedule(self, payload: dict[str, Any]) -> dict[str, Any]:
        """GetCompositeSchedule.req -> the composite from now for `duration` seconds, or
        Rejected for an unknown connector or a duration out of range."""
        connector = int(payload["connectorId"])
        duration_s = int(payload["duration"])
        evse_id = self._evse_of(connector)
        if evse_id is None or not 1 <= duration_s <= MAX_COMPOSITE_S:
            return {"status": "Rejected"}
        unit_name = payload.get("chargingRateUnit")
        if unit_name is None:
            allowed = self.limits().allowed_units
            unit_name = "W" if allowed == frozenset({RateUnit.WATT}) else "A"
        unit = RATE_UNITS[unit_name]
        smart = self.station.smart
        start = self.station.clock.now()
        per_evse: list[list[WirePeriod]] = []
        for evse in self.station.evses.values():
            if evse_id in (0, evse.id):
                schedule = smart.composite(evse.id, duration_s, unit, start)
                per_evse.append(
                    capped_periods(schedule, evse.hardware_max_a, evse.max_phases, smart.voltage_v)
                )
        station = smart.composite(0, duration_s, unit, start)
        periods = per_evse[0] if evse_id else station_total(per_evse, station)
        return composite_payload(connector, station.start, duration_s, unit, periods)

    # -- RemoteStartTransaction's chargingProfile (section 5.11) ---------------------------

    def remote_start(
        self,
        data: Mapping[str, Any] | None,
        evse_id: int | None,
        token: IdToken,
        *,
        authorize: bool,
    ) -> bool:
        """RemoteStartTransaction: start for `token` on `evse_id` (None: the station's
        choice), with the chargingProfile `data`, if any, held for the transaction; False
        (Rejected) if no EVSE can start or `data` is not a valid TxProfile without
        transactionId."""
        if data is None or self.profiles is None:
            if data is not None:
                log.info("RemoteStartTransaction's charging profile ignored: no profile store")
            return self.station.remote_start(token, evse_id, authorize=authorize)
        if data["chargingProfilePurpose"] != "TxProfile" or "transactionId" in data:
            log.info(
                "RemoteStartTransaction rejected: its profile must be a TxProfile without"
                " transactionId (section 5.11)"
            )
            return False
        evse_id = self._choose_evse() if evse_id is None else evse_id
        if evse_id is None:
            return False
        try:
            profile = profile_from_wire(
                data, evse_id=evse_id, transaction_id=None, received_at=self.station.clock.now()
            )
        except ValueError as exc:
            log.info("RemoteStartTransaction rejected: %s", exc)
            return False
        reason = validate_profile(replace(profile, transaction_id=_PENDING_TX), self.limits())
        if reason is not None:
            log.info("RemoteStartTransaction rejected: its profile is invalid (%s)", reason)
            return False
        if not self.station.remote_start(token, evse_id, authorize=authorize):
            return False
        # remote_start only spawned the work: no transaction can begin before this hold.
        self.station.smart.hold_for_next_transaction(
            evse_id, profile, self._install_held, token.value
        )
        return True

    def _choose_evse(self) -> int | None:
        """The EVSE Station.remote_start picks without a connector (a plugged one first)."""
        ranked = sorted(self.station.evses.values(), key=lambda e: e.state != SessionPhase.PLUGGED)
        free = [evse.id for evse in ranked if evse.available_for_new_session()]
        return free[0] if free else None

    def _install_held(self, profile: ChargingProfile) -> None:
        """Install a remote start's profile, now naming its transaction (written behind:
        the core calls this as the transaction begins and cannot wait)."""
        if self.profiles is not None:
            self.profiles.install_soon(
                profile,
                self.limits(),
                conflicts=ConflictRule.REPLACE,
                active_transactions=self._active(),
            )
