"""OCPP 2.0.1 block K requests on charging profiles, over the core's ProfileStore and loop.

Responsible for:

- SetChargingProfile (K01): the profile is mapped (smart_charging.py), checked against
  this station's phases (K01.FR.45), then validated and installed by the store under
  2.0.1's conflict rules; Rejected with the reasonCode of the first problem and nothing
  installed, else Accepted and the loop recomputes at once. A TxProfile names the
  station's transactionId, mapped onto the journal's local id the store keeps;
- GetChargingProfiles (K09): Accepted or NoProfiles, then one ReportChargingProfiles per
  EVSE with the request's requestId, tbc true on all but the last; every profile here
  is the CSMS's (chargingLimitSource CSO);
- ClearChargingProfile (K10): by id (the criteria are then ignored, K10.FR.03) or by
  criteria (evseId, purpose, stackLevel; none: all); Unknown when nothing matched;
- GetCompositeSchedule (K08): the core's composite of the EVSE in A or W, each limit
  no more than the EVSE's own maximum, which also fills the instants no profile limits;
  for evseId 0 the grid connection's: the sum over the EVSEs, no more than the
  ChargingStationMaxProfile. Rejected for an unknown EVSE (UnknownEvse) or a unit
  outside SmartChargingCtrlr.RateUnit. Local energy-management limits are present
  values, not schedules: they are not in the forecast;
- the TxProfile of a RequestStartTransaction (K05): checked before the start is
  accepted (a TxProfile without transactionId, valid on its own), then handed to the
  core to be installed for the transaction the start begins (from its first PWM), or
  installed at once when a cable-first transaction already runs there; forgotten when
  the start comes to nothing;
- SmartChargingCtrlr: Enabled false answers every block K request with CALLERROR
  NotSupported (K01.FR.29) and ignores a remote start's profile; Entries(ChargingProfiles)
  shows the installed count; its maxLimit, ProfileStackLevel, PeriodsPerSchedule and
  RateUnit bound what is accepted.

The chargingSchedule's own id, which the core model does not carry, is kept in the
settings store beside the profiles (pruned to the installed ones).

Must not: decide or apply limits (agent/core/smart_charging.py does), keep profiles
anywhere but the ProfileStore, or send anything but through the endpoint it is handed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import replace
from typing import Any, Final

from agent.core.composite import convert_limit
from agent.core.evse import Evse
from agent.core.ports import TxRecord
from agent.core.profiles import ChargingProfile, ProfileLimits, RateUnit, validate_profile
from agent.core.station import Station
from agent.core.status import SessionPhase
from agent.ocpp.rpc import AfterReply, CallTimeout, Handler, RpcEndpoint, RpcError
from agent.ocpp.v201.charging_limits import ExternalLimits
from agent.ocpp.v201.device_model import DeviceModel, parse_path
from agent.ocpp.v201.smart_charging import (
    CSO,
    EXTERNAL_CONSTRAINTS,
    PURPOSES,
    REASON_CODES,
    ProfileMappingError,
    bounded,
    composite_to_wire,
    profile_from_wire,
    profile_to_wire,
    rejected,
    station_composite,
)
from agent.ocpp.v201.transactions import Ocpp201Transactions
from agent.store import AgentStore
from agent.store.profiles import ConflictRule, ProfileRejectedError, ProfileStore

log = logging.getLogger(__name__)

ENABLED: Final = "SmartChargingCtrlr/Enabled"
ENTRIES: Final = "SmartChargingCtrlr/Entries(ChargingProfiles)"
PERIODS_PER_SCHEDULE: Final = "SmartChargingCtrlr/PeriodsPerSchedule"
PROFILE_STACK_LEVEL: Final = "SmartChargingCtrlr/ProfileStackLevel"
RATE_UNIT: Final = "SmartChargingCtrlr/RateUnit"

#: The settings key of the chargingSchedule ids, by profile id (JSON).
SCHEDULE_IDS_SETTING: Final = "ocpp201.schedule_ids"

#: The transaction id a remote start's profile is validated with before it has one.
_PENDING_TX: Final = "pending"


class Ocpp201SmartCharging:
    """Block K for one station: profiles in, reports and composites out."""

    def __init__(
        self,
        *,
        station: Station,
        store: AgentStore,
        model: DeviceModel,
        transactions: Ocpp201Transactions,
        endpoint: Callable[[], RpcEndpoint | None],
        spawn: Callable[[Coroutine[Any, Any, Any], str], None],
    ) -> None:
        """`spawn(coro, name)` runs a task the adapter tracks (the reports)."""
        self.station = station
        self.store = store
        self.model = model
        self.transactions = transactions
        self._endpoint = endpoint
        self._spawn = spawn
        source = station.smart.source
        if isinstance(source, ProfileStore):
            self.profiles = source
        else:
            log.warning("the station reads no ProfileStore: 2.0.1 profiles will not apply")
            self.profiles = ProfileStore(store)
        #: External limits (K12/K13); the adapter runs `limits.run` while online.
        self.limits = ExternalLimits(station=station, model=model, clock=station.clock)
        entries = parse_path(ENTRIES)
        model.bind(entries.component, entries.variable, lambda: str(self.profiles.count()))

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this block answers, by action."""
        return {
            "SetChargingProfile": self._on_set_charging_profile,
            "GetChargingProfiles": self._on_get_charging_profiles,
            "ClearChargingProfile": self._on_clear_charging_profile,
            "GetCompositeSchedule": self._on_get_composite_schedule,
        }

    # -- what the station accepts ------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """SmartChargingCtrlr.Enabled."""
        return self.model.bool_value(ENABLED)

    def _require_enabled(self, action: str) -> None:
        """K01.FR.29: raise RpcError NotSupported while smart charging is not enabled."""
        if not self.enabled:
            raise RpcError("NotSupported", f"{action}: SmartChargingCtrlr is not enabled")

    def units(self) -> list[str]:
        """The chargingRateUnits this station takes (SmartChargingCtrlr.RateUnit, in order)."""
        return [unit for unit in self.model.list_value(RATE_UNIT) if unit in ("A", "W")]

    def profile_limits(self) -> ProfileLimits:
        """The limits SetChargingProfile checks against, from SmartChargingCtrlr."""
        entries = parse_path(ENTRIES)
        definition = self.model.lookup(entries.component, entries.variable)
        maximum = None if definition is None else definition.max_limit
        return ProfileLimits(
            max_stack_level=self.model.int_value(PROFILE_STACK_LEVEL),
            max_periods=self.model.int_value(PERIODS_PER_SCHEDULE),
            allowed_units=frozenset(RateUnit(unit) for unit in self.units()),
            evse_ids=frozenset(self.station.evses),
            max_installed=None if maximum is None else int(maximum),
        )

    def _active_transactions(self) -> dict[int, str]:
        """{evse id: core transaction id} of the running transactions."""
        return {
            evse_id: str(evse.tx.local_id)
            for evse_id, evse in self.station.evses.items()
            if evse.tx is not None
        }

    def _core_tx_id(self, wire_id: str) -> str:
        """The core's id of a wire transactionId; one that never matches if not ours."""
        local_id = self.transactions.local_id(wire_id)
        return f"unknown:{wire_id}" if local_id is None else str(local_id)

    def _wire_tx_id(self, core_id: str) -> str | None:
        """The wire transactionId of a core transaction id (None if it is not one)."""
        return self.transactions.transaction_id(int(core_id)) if core_id.isdigit() else None

    def _max_phases(self, evse_id: int) -> int:
        """The phases an EVSE (0: any EVSE of the station) can use."""
        evse = self.station.evses.get(evse_id)
        if evse is not None:
            return evse.max_phases
        return max((e.max_phases for e in self.station.evses.values()), default=3)

    def _check_phases(self, profile: ChargingProfile) -> None:
        """K01.FR.45: raise ProfileMappingError for more phases than the EVSE has."""
        most = self._max_phases(profile.evse_id)
        for period in profile.schedule.periods:
            if period.number_phases is not None and period.number_phases > most:
                raise ProfileMappingError(
                    "InvalidSchedule", f"numberPhases {period.number_phases}: the EVSE has {most}"
                )

    # -- SetChargingProfile (K01) ------------------------------------------------------

    async def install_durably(self, profile: ChargingProfile, schedule_id: int) -> None:
        """Install under 2.0.1's rules, returning once the profile is durable, and
        remember the schedule's id; raises ProfileRejectedError (nothing installed). The
        caller tells the loop."""
        await self.profiles.install(
            profile,
            self.profile_limits(),
            conflicts=ConflictRule.REFUSE_OVERLAP,
            active_transactions=self._active_transactions(),
        )
        self._remember_schedule(profile, schedule_id)

    def install(self, profile: ChargingProfile, schedule_id: int) -> None:
        """`install_durably` for callers that cannot wait (a remote start's profile):
        installed at once, written behind. Raises ProfileRejectedError."""
        self.profiles.install_soon(
            profile,
            self.profile_limits(),
            conflicts=ConflictRule.REFUSE_OVERLAP,
            active_transactions=self._active_transactions(),
        )
        self._remember_schedule(profile, schedule_id)

    def _remember_schedule(self, profile: ChargingProfile, schedule_id: int) -> None:
        """Keep the schedule id of an installed profile (settings store)."""
        ids = self._schedule_ids()
        ids[profile.profile_id] = schedule_id
        self._save_schedule_ids(ids)

    async def _on_set_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """K01: install the profile, or Rejected with the reason and nothing changed."""
        self._require_enabled("SetChargingProfile")
        try:
            profile, schedule_id = profile_from_wire(
                int(payload["evseId"]), payload["chargingProfile"], transaction_id=self._core_tx_id
            )
            self._check_phases(profile)
            await self.install_durably(profile, schedule_id)
        except ProfileMappingError as exc:
            return rejected(exc.reason_code, exc.detail)
        except ProfileRejectedError as exc:
            return rejected(REASON_CODES[exc.reason], str(exc))
        self.station.smart.profiles_changed()
        return {"status": "Accepted"}

    # -- GetChargingProfiles (K09) -----------------------------------------------------

    async def _on_get_charging_profiles(
        self, payload: dict[str, Any]
    ) -> dict[str, Any] | AfterReply:
        """K09: Accepted then the reports, or NoProfiles."""
        self._require_enabled("GetChargingProfiles")
        request_id = int(payload["requestId"])
        criteria = payload["chargingProfile"]
        sources = criteria.get("chargingLimitSource")
        purpose_name = criteria.get("chargingProfilePurpose")
        if (sources is not None and CSO not in sources) or purpose_name == EXTERNAL_CONSTRAINTS:
            return {"status": "NoProfiles"}  # this station keeps only the CSMS's profiles
        found = self.profiles.profiles(
            profile_ids=criteria.get("chargingProfileId"),
            evse_id=payload.get("evseId"),
            purpose=None if purpose_name is None else PURPOSES[purpose_name],
            stack_level=criteria.get("stackLevel"),
        )
        if not found:
            return {"status": "NoProfiles"}
        reports = self.reports(request_id, found)

        def send() -> None:
            self._spawn(self._send_reports(reports), f"report-profiles-{request_id}")

        return AfterReply({"status": "Accepted"}, send)

    def reports(
        self, request_id: int, profiles: Collection[ChargingProfile]
    ) -> list[dict[str, Any]]:
        """The ReportChargingProfilesRequests for `profiles`: one per EVSE, in EVSE order,
        tbc on all but the last."""
        ids = self._schedule_ids()
        by_evse: dict[int, list[dict[str, Any]]] = {}
        for profile in sorted(profiles, key=lambda p: (p.evse_id, p.profile_id)):
            by_evse.setdefault(profile.evse_id, []).append(
                profile_to_wire(
                    profile,
                    schedule_id=ids.get(profile.profile_id, profile.profile_id),
                    transaction_id=self._wire_tx_id,
                )
            )
        last = len(by_evse) - 1
        return [
            {
                "requestId": request_id,
                "chargingLimitSource": CSO,
                "tbc": index < last,
                "evseId": evse_id,
                "chargingProfile": wire_profiles,
            }
            for index, (evse_id, wire_profiles) in enumerate(by_evse.items())
        ]

    async def _send_reports(self, reports: list[dict[str, Any]]) -> None:
        """Each report after the previous one's answer; a failure ends the report."""
        endpoint = self._endpoint()
        for report in reports:
            if endpoint is None:
                return
            try:
                await endpoint.call("ReportChargingProfiles", report)
            except (RpcError, CallTimeout) as exc:
                log.warning("ReportChargingProfiles %s stopped: %s", report["requestId"], exc)
                return

    # -- ClearChargingProfile (K10) ----------------------------------------------------

    async def _on_clear_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """K10: clear by id, or by criteria (none: all); Unknown if nothing matched."""
        self._require_enabled("ClearChargingProfile")
        profile_id = payload.get("chargingProfileId")
        criteria = payload.get("chargingProfileCriteria") or {}
        purpose_name = criteria.get("chargingProfilePurpose")
        if profile_id is not None:
            cleared = self.profiles.clear(profile_ids=[int(profile_id)])  # K10.FR.03
        elif purpose_name == EXTERNAL_CONSTRAINTS:
            return {"status": "Unknown", "statusInfo": {"reasonCode": "InvalidValue"}}
        else:
            cleared = self.profiles.clear(
                evse_id=criteria.get("evseId"),
                purpose=None if purpose_name is None else PURPOSES[purpose_name],
                stack_level=criteria.get("stackLevel"),
            )
        if not cleared:
            return {"status": "Unknown"}
        ids = self._schedule_ids()
        self._save_schedule_ids({k: v for k, v in ids.items() if k not in cleared})
        self.station.smart.profiles_changed()
        return {"status": "Accepted"}

    # -- GetCompositeSchedule (K08) ----------------------------------------------------

    async def _on_get_composite_schedule(self, payload: dict[str, Any]) -> dict[str, Any]:
        """K08: the composite schedule of an EVSE (0: the station) from now on."""
        self._require_enabled("GetCompositeSchedule")
        evse_id = int(payload["evseId"])
        if evse_id != 0 and evse_id not in self.station.evses:
            return rejected("UnknownEvse")
        units = self.units()
        unit = payload.get("chargingRateUnit") or (units[0] if units else "A")
        if unit not in units:
            return rejected("UnsupportedRateUnit")
        duration_s = int(payload["duration"])
        if duration_s < 1:
            return rejected("InvalidValue", "duration must be at least 1 s")
        rate_unit = RateUnit(unit)
        smart = self.station.smart
        now = self.station.clock.now()
        evses = [
            bounded(
                smart.composite(evse.id, duration_s, rate_unit, now), *self._own(evse, rate_unit)
            )
            for evse in self.station.evses.values()
            if evse_id in (0, evse.id)
        ]
        if evse_id == 0:
            schedule = station_composite(smart.composite(0, duration_s, rate_unit, now), evses)
        else:
            (schedule,) = evses
        return {"status": "Accepted", "schedule": composite_to_wire(schedule)}

    def _own(self, evse: Evse, unit: RateUnit) -> tuple[float, int]:
        """An EVSE's own maximum in `unit`, and its phases."""
        limit = convert_limit(
            evse.hardware_max_a,
            from_unit=RateUnit.AMPERE,
            to_unit=unit,
            number_phases=evse.max_phases,
            voltage_v=self.station.smart.voltage_v,
        )
        return limit, evse.max_phases

    # -- a remote start's TxProfile (K05) ------------------------------------------------

    def check_remote_start(
        self, wire: Mapping[str, Any], evse_id: int | None
    ) -> dict[str, Any] | None:
        """None if the profile of a RequestStartTransaction may be used (or is ignored,
        smart charging being disabled), else the Rejected answer to the request."""
        if not self.enabled:
            return None
        if wire["chargingProfilePurpose"] != "TxProfile":
            return rejected("InvalidProfile", "a remote start takes a TxProfile (K05)")
        if "transactionId" in wire:
            return rejected("InvalidProfile", "a remote start's TxProfile has no transactionId")
        target = self._remote_start_target(evse_id)
        try:
            profile, _ = profile_from_wire(target or 1, wire)
            self._check_phases(profile)
        except ProfileMappingError as exc:
            return rejected(exc.reason_code, exc.detail)
        reason = validate_profile(
            replace(profile, transaction_id=_PENDING_TX), self.profile_limits()
        )
        return None if reason is None else rejected(REASON_CODES[reason], str(reason))

    def hold_remote_start(
        self,
        wire: Mapping[str, Any],
        evse_id: int | None,
        token: str,
        running: TxRecord | None,
    ) -> None:
        """Apply an accepted remote start's profile (checked by check_remote_start): to
        `running` (a transaction that began with the cable) at once, else to the next
        transaction on the EVSE the station chose."""
        if not self.enabled:
            log.info("RequestStartTransaction's chargingProfile ignored: smart charging is off")
            return
        target = self._remote_start_target(evse_id)
        if target is None:
            return
        profile, schedule_id = profile_from_wire(target, wire)
        if running is not None:
            try:
                self.install(replace(profile, transaction_id=str(running.local_id)), schedule_id)
            except ProfileRejectedError:
                log.exception("EVSE %s: the remote start's profile was refused", target)
                return
            self.station.smart.profiles_changed()
            return
        self.station.smart.hold_for_next_transaction(
            target, profile, lambda bound: self.install(bound, schedule_id), token
        )

    def _remote_start_target(self, evse_id: int | None) -> int | None:
        """The EVSE a remote start goes to: the one named, else the one Station.remote_start
        picks (a plugged-in EVSE first, then the first free one)."""
        if evse_id is not None:
            return evse_id
        ranked = sorted(self.station.evses.values(), key=lambda e: e.state != SessionPhase.PLUGGED)
        free = [evse for evse in ranked if evse.available_for_new_session()]
        return free[0].id if free else None

    # -- the schedules' own ids ----------------------------------------------------------

    def _schedule_ids(self) -> dict[int, int]:
        """chargingSchedule id by profile id (the core model does not carry it)."""
        text = self.store.get_setting(SCHEDULE_IDS_SETTING)
        try:
            stored = json.loads(text) if text else {}
            return {int(key): int(value) for key, value in stored.items()}
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring unreadable %s", SCHEDULE_IDS_SETTING)
            return {}

    def _save_schedule_ids(self, ids: Mapping[int, int]) -> None:
        """Store the ids, keeping only those of installed profiles."""
        installed = {profile.profile_id for profile in self.profiles.profiles()}
        kept = {str(key): value for key, value in ids.items() if key in installed}
        self.store.set_setting(SCHEDULE_IDS_SETTING, json.dumps(kept, separators=(",", ":")))
