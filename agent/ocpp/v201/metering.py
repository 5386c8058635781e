"""OCPP 2.0.1 meter values (block J): journal sample payloads to MeterValueType on the wire.

Responsible for: turning one version-neutral meter sample, as the journal stores it
(`agent.core.events.sample_payload`), into the `meterValue` items that MeterValuesRequest
(J01 clock-aligned, J02 triggered / outside a transaction) and TransactionEventRequest
(J02 sampled, E0x start/update/end) carry, for the measurands a device model list
(SampledDataCtrlr.Tx*Measurands, AlignedDataCtrlr.*Measurands) selects; and the list of
measurands this agent can report, which those MemberList variables offer.

Wire choices (2.0.1 SampledValueType, MeterValuesRequest.json):
- `value` is a JSON number (1.6 sent a decimal string), rounded to 3 decimals; a
  non-finite reading (NaN, infinity) is left out, since JSON cannot carry it.
- `unitOfMeasure.unit` is always given. The schema's default unit "Wh" only applies to
  the Energy measurands, so leaving it out elsewhere would leave the unit undefined;
  writing it always keeps every entry self-describing and the rule one line. The
  multiplier is left at its schema default 0 (values are in Wh, W, A, V, Hz, Percent).
- `measurand`, `context` and `location` are always given too, for the same reason.
  Location is Outlet except SoC, which the EV reports (location EV).
- Temperature is not a 2.0.1 measurand and is never sent; unknown or unsupported
  measurand names in a device model list are skipped, as are measurands the sample
  lacks (Frequency, SoC when the meter or EV does not report them).

Must not: send anything, read the device model or the store, or import the RPC layer,
websockets or another module of this package (variables.py imports this one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from agent.core.events import sample_from_payload
from agent.core.ports import SampleContext
from drivers.types import MeterSample

ENERGY_IMPORT: Final = "Energy.Active.Import.Register"
ENERGY_EXPORT: Final = "Energy.Active.Export.Register"
POWER_IMPORT: Final = "Power.Active.Import"
POWER_OFFERED: Final = "Power.Offered"
CURRENT_IMPORT: Final = "Current.Import"
CURRENT_OFFERED: Final = "Current.Offered"
VOLTAGE: Final = "Voltage"
FREQUENCY: Final = "Frequency"
SOC: Final = "SoC"

#: MeasurandEnumType values a MeterSample can report, in the order a CSMS sees them
#: offered in the MemberList variables (2.0.1 has no Temperature measurand).
SUPPORTED_MEASURANDS: tuple[str, ...] = (
    ENERGY_IMPORT,
    ENERGY_EXPORT,
    POWER_IMPORT,
    POWER_OFFERED,
    CURRENT_IMPORT,
    CURRENT_OFFERED,
    VOLTAGE,
    FREQUENCY,
    SOC,
)

#: ReadingContextEnumType for each reason the core takes a sample.
READING_CONTEXT: dict[SampleContext, str] = {
    SampleContext.BEGIN: "Transaction.Begin",
    SampleContext.PERIODIC: "Sample.Periodic",
    SampleContext.CLOCK: "Sample.Clock",
    SampleContext.END: "Transaction.End",
    SampleContext.TRIGGER: "Trigger",
}

#: Every ReadingContextEnumType value (a caller may name one the core has no sample for).
READING_CONTEXTS: frozenset[str] = frozenset(
    {*READING_CONTEXT.values(), "Interruption.Begin", "Interruption.End", "Other"}
)

PHASES: Final = ("L1", "L2", "L3")
NOMINAL_VOLTAGE_V: Final = 230.0  # Power.Offered from the offered current (no live voltage)
DECIMALS: Final = 3

_UNITS: dict[str, str] = {
    ENERGY_IMPORT: "Wh",
    ENERGY_EXPORT: "Wh",
    POWER_IMPORT: "W",
    POWER_OFFERED: "W",
    CURRENT_IMPORT: "A",
    CURRENT_OFFERED: "A",
    VOLTAGE: "V",
    FREQUENCY: "Hz",
    SOC: "Percent",
}


def wire_time(at: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with milliseconds; raises ValueError if naive."""
    # Here rather than in device_model so that this module imports no sibling (no cycle).
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _readings(
    sample: MeterSample,
    measurand: str,
    offered_current_a: float,
    phases: int,
    offered_phases: int,
) -> list[tuple[float, str | None]]:
    """(value, phase) pairs one measurand yields for a sample; empty if the sample lacks it.

    Power.Offered is the offered current on the phases the supply is switched to
    (`offered_phases`), per-phase values are for the EVSE's `phases`."""
    if measurand == ENERGY_IMPORT:
        return [(sample.energy_import_wh, None)]
    if measurand == ENERGY_EXPORT:
        return [(sample.energy_export_wh, None)]
    if measurand == POWER_IMPORT:
        return [(sample.power_w, None)]
    if measurand == POWER_OFFERED:
        return [(offered_current_a * NOMINAL_VOLTAGE_V * offered_phases, None)]
    if measurand == CURRENT_OFFERED:
        return [(offered_current_a, None)]
    if measurand == CURRENT_IMPORT:
        return list(zip(sample.current_a[:phases], PHASES, strict=False))
    if measurand == VOLTAGE:
        return [(v, f"{p}-N") for v, p in zip(sample.voltage_v[:phases], PHASES, strict=False)]
    if measurand == FREQUENCY and sample.frequency_hz is not None:
        return [(sample.frequency_hz, None)]
    if measurand == SOC and sample.soc_percent is not None:
        return [(sample.soc_percent, None)]
    return []  # unsupported (Temperature, a typo) or not measured


def _number(value: float) -> float:
    """A reading as a JSON number: 3 decimals, no negative zero."""
    return round(float(value), DECIMALS) + 0.0


def sampled_values(
    payload: Mapping[str, Any],
    measurands: Iterable[str],
    context: str,
    *,
    phases: int = 3,
    offered_phases: int | None = None,
) -> list[dict[str, Any]]:
    """SampledValueType entries for the requested measurands of one journal sample payload.

    Entries follow the order of `measurands` (a repeated name counts once). The phases
    power is offered on are the payload's "offered_phases" if it recorded them, else
    `offered_phases`, else `phases`. Raises
    ValueError for a context outside ReadingContextEnumType or phases outside 1..3, and
    KeyError/ValueError for a payload that sample_payload() did not write.
    """
    if context not in READING_CONTEXTS:
        raise ValueError(f"not a ReadingContextEnumType value: {context!r}")
    if not 1 <= phases <= len(PHASES):
        raise ValueError(f"phases must be 1 to 3, not {phases}")
    sample = sample_from_payload(payload)
    offered_current_a = float(payload.get("offered_current_a") or 0.0)
    offered_on = int(payload.get("offered_phases") or offered_phases or phases)
    values: list[dict[str, Any]] = []
    for measurand in dict.fromkeys(measurands):
        for value, phase in _readings(sample, measurand, offered_current_a, phases, offered_on):
            if not math.isfinite(value):
                continue
            entry: dict[str, Any] = {
                "value": _number(value),
                "context": context,
                "measurand": measurand,
                "location": "EV" if measurand == SOC else "Outlet",
                "unitOfMeasure": {"unit": _UNITS[measurand]},
            }
            if phase is not None:
                entry["phase"] = phase
            values.append(entry)
    return values


def meter_value(
    payload: Mapping[str, Any],
    measurands: Iterable[str],
    context: str | None = None,
    *,
    phases: int = 3,
    offered_phases: int | None = None,
) -> dict[str, Any] | None:
    """One MeterValueType from a journal sample payload, or None if nothing applies.

    The payload's "at" gives the timestamp and its "context" the reading context unless
    `context` (a ReadingContextEnumType value) overrides it. None for a journal entry that
    holds no meter sample (no "energy_import_wh") or when no measurand yields a value.
    Raises ValueError as sampled_values() does, or for a naive or malformed "at".
    """
    if "energy_import_wh" not in payload:
        return None
    if context is None:
        context = READING_CONTEXT[SampleContext(payload["context"])]
    values = sampled_values(
        payload, measurands, context, phases=phases, offered_phases=offered_phases
    )
    if not values:
        return None
    return {"timestamp": wire_time(datetime.fromisoformat(payload["at"])), "sampledValue": values}


def meter_values_request(
    evse_id: int,
    payloads: Sequence[Mapping[str, Any]],
    measurands: Iterable[str],
    context: str | None = None,
    *,
    phases: int = 3,
    offered_phases: int | None = None,
) -> dict[str, Any] | None:
    """A MeterValuesRequest (J01 clock-aligned, J02 triggered) for one EVSE, or None if empty.

    `evse_id` 0 is the main meter (MeterValuesRequest.evseId). Payloads that hold no
    sample or no requested measurand are left out. Raises ValueError for a negative
    evse_id and as meter_value() does.
    """
    if evse_id < 0:
        raise ValueError(f"evse_id must be 0 or more, not {evse_id}")
    wanted = tuple(measurands)
    items = [
        meter_value(payload, wanted, context, phases=phases, offered_phases=offered_phases)
        for payload in payloads
    ]
    present = [item for item in items if item is not None]
    if not present:
        return None
    return {"evseId": evse_id, "meterValue": present}
