"""OCPP 2.0.1 charging profiles on the wire (block K): the mapping to and from the core.

Responsible for: 2.0.1's ChargingProfileType to the core's version-neutral
`ChargingProfile` and back (purpose, chargingProfileKind, recurrencyKind,
validFrom/validTo, transactionId, one chargingSchedule with its id, startSchedule,
duration, minChargingRate and periods with numberPhases); composites for the wire (an
EVSE's `bounded` by its own maximum, EVSE 0's as the `station_composite` sum, then
CompositeScheduleType with limits rounded down to 0.1); the Appendix 5 reasonCode of
each reason a profile is Rejected for, and the refusals the mapping itself makes: a purpose of
ChargingStationExternalConstraints (K01.FR.22), more than one chargingSchedule (this
station follows one), a phaseToUse (K01.FR.19/20: no board can choose the phase), a
malformed dateTime. Profile limits go on the wire with at most one decimal.

The requests that use it are in charging_profiles.py (K01, K05, K08-K10) and
charging_limits.py (K12/K13).

Must not: validate what the core validates (agent/core/profiles.py), read the device
model or the store, send anything, or import the RPC layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from agent.core.composite import CompositePeriod, CompositeSchedule
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    RejectReason,
    SchedulePeriod,
)
from agent.ocpp.v201.device_model import wire_time

#: chargingLimitSource of every profile the CSMS installs.
CSO: Final = "CSO"
EXTERNAL_CONSTRAINTS: Final = "ChargingStationExternalConstraints"
ADDITIONAL_INFO_CHARS: Final = 512  # StatusInfoType.additionalInfo maxLength

PURPOSES: dict[str, ProfilePurpose] = {
    "ChargingStationMaxProfile": ProfilePurpose.STATION_MAX,
    "TxDefaultProfile": ProfilePurpose.TX_DEFAULT,
    "TxProfile": ProfilePurpose.TX,
}
PURPOSE_NAMES: dict[ProfilePurpose, str] = {purpose: name for name, purpose in PURPOSES.items()}
KINDS: dict[str, ProfileKind] = {
    "Absolute": ProfileKind.ABSOLUTE,
    "Recurring": ProfileKind.RECURRING,
    "Relative": ProfileKind.RELATIVE,
}
KIND_NAMES: dict[ProfileKind, str] = {kind: name for name, kind in KINDS.items()}
RECURRENCES: dict[str, Recurrence] = {"Daily": Recurrence.DAILY, "Weekly": Recurrence.WEEKLY}
RECURRENCE_NAMES: dict[Recurrence, str] = {value: name for name, value in RECURRENCES.items()}

#: The Appendix 5 reasonCode of a SetChargingProfileResponse Rejected for each reason.
REASON_CODES: dict[RejectReason, str] = {
    RejectReason.NO_PERIODS: "InvalidSchedule",
    RejectReason.FIRST_PERIOD_NOT_AT_ZERO: "InvalidSchedule",  # K01.FR.31
    RejectReason.PERIODS_OUT_OF_ORDER: "InvalidSchedule",  # K01.FR.35
    RejectReason.TOO_MANY_PERIODS: "InvalidSchedule",  # PeriodsPerSchedule
    RejectReason.UNSUPPORTED_UNIT: "UnsupportedRateUnit",  # K01.FR.26
    RejectReason.NEGATIVE_LIMIT: "InvalidSchedule",
    RejectReason.INVALID_NUMBER_PHASES: "InvalidSchedule",
    RejectReason.INVALID_DURATION: "InvalidSchedule",
    RejectReason.INVALID_MIN_CHARGING_RATE: "InvalidSchedule",
    RejectReason.NEGATIVE_STACK_LEVEL: "InvalidStackLevel",
    RejectReason.STACK_LEVEL_TOO_HIGH: "InvalidStackLevel",  # ProfileStackLevel
    RejectReason.VALID_TO_BEFORE_VALID_FROM: "InvalidProfile",
    RejectReason.MISSING_START_SCHEDULE: "InvalidSchedule",  # K01.FR.40
    RejectReason.START_SCHEDULE_ON_RELATIVE: "InvalidSchedule",  # K01.FR.41
    RejectReason.MISSING_RECURRENCE: "InvalidSchedule",
    RejectReason.UNKNOWN_EVSE: "UnknownEvse",  # K01.FR.28
    RejectReason.STATION_MAX_NOT_ON_STATION: "InvalidValue",
    RejectReason.STATION_MAX_RELATIVE: "InvalidValue",  # K01.FR.38
    RejectReason.TX_PROFILE_ON_STATION: "InvalidValue",  # K01.FR.16
    RejectReason.TX_PROFILE_WITHOUT_TRANSACTION: "MissingParam",  # K01.FR.03
    RejectReason.NO_ACTIVE_TRANSACTION: "TxNotFound",  # K01.FR.09
    RejectReason.TRANSACTION_NOT_ON_EVSE: "TxNotFound",  # K01.FR.33
    RejectReason.TOO_MANY_PROFILES: "OutOfStorage",  # Entries(ChargingProfiles).maxLimit
    RejectReason.CONFLICTING_PROFILE: "DuplicateProfile",  # K01.FR.06/39/52/53
}


class ProfileMappingError(ValueError):
    """A wire profile this station cannot take; `reason_code` is its Appendix 5 code."""

    def __init__(self, reason_code: str, detail: str) -> None:
        """Carry the reasonCode and a human-readable detail (additionalInfo)."""
        super().__init__(detail)
        self.reason_code = reason_code
        self.detail = detail


def rejected(reason_code: str, detail: str = "") -> dict[str, Any]:
    """A Rejected answer with its reasonCode (and additionalInfo when given)."""
    info: dict[str, Any] = {"reasonCode": reason_code}
    if detail:
        info["additionalInfo"] = detail[:ADDITIONAL_INFO_CHARS]
    return {"status": "Rejected", "statusInfo": info}


def parse_time(text: str) -> datetime:
    """A wire dateTime as an aware UTC datetime (naive counts as UTC); raises
    ProfileMappingError (InvalidValue) for text that is not one."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ProfileMappingError("InvalidValue", f"not a dateTime: {text!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


# -- the wire to the core and back -------------------------------------------------------


def profile_from_wire(
    evse_id: int,
    wire: Mapping[str, Any],
    *,
    transaction_id: Callable[[str], str] = str,
) -> tuple[ChargingProfile, int]:
    """The core profile of a schema-valid ChargingProfileType for `evse_id`, and its
    chargingSchedule's id.

    `transaction_id` maps the wire's transactionId onto the core's. Raises
    ProfileMappingError for what the mapping alone can refuse (the rest is
    validate_profile's): ChargingStationExternalConstraints, several schedules, a
    phaseToUse, a malformed dateTime.
    """
    purpose_name = wire["chargingProfilePurpose"]
    if purpose_name not in PURPOSES:
        # K01.FR.22: external constraints are the station's to set, never the CSMS's.
        raise ProfileMappingError("InvalidValue", f"{purpose_name} cannot be set by the CSMS")
    schedules = wire["chargingSchedule"]
    if len(schedules) != 1:
        raise ProfileMappingError(
            "TooManyElements", f"{len(schedules)} chargingSchedules: one is supported"
        )
    (schedule,) = schedules
    periods = []
    for period in schedule["chargingSchedulePeriod"]:
        if "phaseToUse" in period:
            # K01.FR.19/20: only with ACPhaseSwitchingSupported, which this station is not.
            raise ProfileMappingError("InvalidSchedule", "phaseToUse is not supported")
        periods.append(
            SchedulePeriod(
                int(period["startPeriod"]), float(period["limit"]), period.get("numberPhases")
            )
        )
    recurrence = wire.get("recurrencyKind")
    wire_tx = wire.get("transactionId")
    profile = ChargingProfile(
        profile_id=int(wire["id"]),
        evse_id=evse_id,
        purpose=PURPOSES[purpose_name],
        stack_level=int(wire["stackLevel"]),
        kind=KINDS[wire["chargingProfileKind"]],
        schedule=ChargingSchedule(
            rate_unit=RateUnit(schedule["chargingRateUnit"]),
            periods=tuple(periods),
            start_schedule=_optional_time(schedule.get("startSchedule")),
            duration_s=schedule.get("duration"),
            min_charging_rate=schedule.get("minChargingRate"),
        ),
        recurrence=None if recurrence is None else RECURRENCES[recurrence],
        valid_from=_optional_time(wire.get("validFrom")),
        valid_to=_optional_time(wire.get("validTo")),
        transaction_id=None if wire_tx is None else transaction_id(wire_tx),
    )
    return profile, int(schedule["id"])


def _limit(value: float) -> float:
    """A limit as the wire takes it: at most one decimal (K01: "8.1"), no negative zero."""
    return round(value, 1) + 0.0


def profile_to_wire(
    profile: ChargingProfile,
    *,
    schedule_id: int,
    transaction_id: Callable[[str], str | None] = lambda local: local,
) -> dict[str, Any]:
    """The ChargingProfileType of an installed profile (ReportChargingProfiles).

    `transaction_id` maps the core's transaction id of a TxProfile back onto the wire's
    (None: leave it out).
    """
    schedule = profile.schedule
    periods = []
    for period in schedule.periods:
        item: dict[str, Any] = {"startPeriod": period.start_s, "limit": _limit(period.limit)}
        if period.number_phases is not None:
            item["numberPhases"] = period.number_phases
        periods.append(item)
    wire_schedule: dict[str, Any] = {
        "id": schedule_id,
        "chargingRateUnit": str(schedule.rate_unit),
        "chargingSchedulePeriod": periods,
    }
    if schedule.start_schedule is not None:
        wire_schedule["startSchedule"] = wire_time(schedule.start_schedule)
    if schedule.duration_s is not None:
        wire_schedule["duration"] = schedule.duration_s
    if schedule.min_charging_rate is not None:
        wire_schedule["minChargingRate"] = _limit(schedule.min_charging_rate)
    wire: dict[str, Any] = {
        "id": profile.profile_id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": PURPOSE_NAMES[profile.purpose],
        "chargingProfileKind": KIND_NAMES[profile.kind],
        "chargingSchedule": [wire_schedule],
    }
    if profile.recurrence is not None:
        wire["recurrencyKind"] = RECURRENCE_NAMES[profile.recurrence]
    if profile.valid_from is not None:
        wire["validFrom"] = wire_time(profile.valid_from)
    if profile.valid_to is not None:
        wire["validTo"] = wire_time(profile.valid_to)
    if profile.purpose is ProfilePurpose.TX and profile.transaction_id is not None:
        wire_tx = transaction_id(profile.transaction_id)
        if wire_tx is not None:
            wire["transactionId"] = wire_tx
    return wire


def _floor_tenth(value: float) -> float:
    """A limit rounded down to 0.1 (a composite never reports more than the limit)."""
    return math.floor(value * 10 + 1e-6) / 10 + 0.0


def bounded(
    schedule: CompositeSchedule, local_limit: float, local_phases: int
) -> CompositeSchedule:
    """`schedule` with each limit no more than `local_limit` (the EVSE's own maximum in
    the schedule's unit), which also fills the instants no profile limits, with
    `local_phases`; equal neighbours merged."""
    periods: list[CompositePeriod] = []
    for period in schedule.periods:
        limited = period.limit is not None and period.limit < local_limit
        limit = period.limit if limited and period.limit is not None else local_limit
        phases = period.number_phases if limited and period.number_phases else local_phases
        if periods and (periods[-1].limit, periods[-1].number_phases) == (limit, phases):
            continue
        periods.append(CompositePeriod(period.start_s, limit, phases))
    return replace(schedule, periods=tuple(periods))


def station_composite(
    station: CompositeSchedule, evses: Sequence[CompositeSchedule]
) -> CompositeSchedule:
    """EVSE 0's composite, the grid connection's (GetCompositeSchedule evseId 0): at each
    instant the sum of the EVSEs' limits, no more than the station's own maximum.

    `station` is the ChargingStationMaxProfile composite (None limits: no maximum),
    `evses` the EVSEs' composites already `bounded` (every limit set), all over the same
    window and in the same unit. Raises ValueError if a window differs.
    """
    starts = sorted({p.start_s for s in (station, *evses) for p in s.periods})
    periods: list[CompositePeriod] = []
    for start_s in starts:
        at = station.start + timedelta(seconds=start_s)
        parts = [evse.period_at(at) for evse in evses]
        total = sum(part.limit or 0.0 for part in parts)
        phases = max((part.number_phases or 0 for part in parts), default=0) or None
        cap = station.period_at(at)
        if cap.limit is not None and (not parts or cap.limit < total):
            total, phases = cap.limit, cap.number_phases
        if periods and (periods[-1].limit, periods[-1].number_phases) == (total, phases):
            continue
        periods.append(CompositePeriod(start_s, total, phases))
    return replace(station, periods=tuple(periods))


def composite_to_wire(schedule: CompositeSchedule) -> dict[str, Any]:
    """The CompositeScheduleType of a composite whose every limit is set (`bounded`);
    limits rounded down to 0.1. Raises ValueError for a period without a limit."""
    periods: list[dict[str, Any]] = []
    for period in schedule.periods:
        if period.limit is None:
            raise ValueError(f"period at {period.start_s} s has no limit: bound it first")
        item: dict[str, Any] = {"startPeriod": period.start_s, "limit": _floor_tenth(period.limit)}
        if period.number_phases is not None:
            item["numberPhases"] = period.number_phases
        if periods and (periods[-1]["limit"], periods[-1].get("numberPhases")) == (
            item["limit"],
            item.get("numberPhases"),
        ):
            continue
        periods.append(item)
    return {
        "evseId": schedule.evse_id,
        "duration": schedule.duration_s,
        "scheduleStart": wire_time(schedule.start),
        "chargingRateUnit": str(schedule.rate_unit),
        "chargingSchedulePeriod": periods,
    }
