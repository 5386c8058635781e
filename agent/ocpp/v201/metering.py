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

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from math import isfinite
from typing import Any, Final

from agent.core.events import SAMPLE_KEY
from agent.core.ports import SampleContext

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
    # isoformat is C and about three times faster than strftime; "+00:00" is six chars.
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


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
    `offered_phases`, else `phases`. Raises ValueError for a context outside
    ReadingContextEnumType or phases outside 1..3, and KeyError, IndexError or
    ValueError when a requested reading is missing from the payload or not a number
    (a payload that sample_payload() did not write).
    """
    if context not in READING_CONTEXTS:
        raise ValueError(f"not a ReadingContextEnumType value: {context!r}")
    if not 1 <= phases <= len(PHASES):
        raise ValueError(f"phases must be 1 to 3, not {phases}")
    key = (measurands if type(measurands) is tuple else tuple(measurands), phases)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(*key)
    offered_current_a = float(payload.get("offered_current_a") or 0.0)
    offered_on = int(payload.get("offered_phases") or offered_phases or phases)
    values: list[dict[str, Any]] = []
    add = values.append
    rounded = _ROUNDED.get
    for read, measurand, location, unit, phase in plan:
        value = read(payload, offered_current_a, offered_on)
        if value is None or not isfinite(value):
            continue
        number = rounded(value)
        if number is None:
            number = _round(value)
        entry = {
            "value": number,
            "context": context,
            "measurand": measurand,
            "location": location,
            "unitOfMeasure": {"unit": unit},
        }
        if phase is not None:
            entry["phase"] = phase
        add(entry)
    return values


_PHASES_N: Final = tuple(f"{phase}-N" for phase in PHASES)
#: Recent readings, rounded: currents, voltages and the like repeat sample after sample,
#: and round() (correctly rounded, through a decimal string) is the dearest step here.
_ROUNDED: dict[float, float] = {}
_ROUNDED_KEPT: Final = 4096

#: Reads one value from a journal sample payload, given the offered current and the
#: phases it is offered on; None when the payload lacks that (optional) reading.
_Read = Callable[[Mapping[str, Any], float, int], float | None]
#: One SampledValueType a plan yields: how to read it, its measurand, location, unit
#: and phase (None: a measurand without phases).
_Row = tuple[_Read, str, str, str, str | None]
#: Plans by (measurands, phases): which entries a sample becomes, worked out once per
#: device model list rather than for every sample.
_PLANS: dict[tuple[tuple[str, ...], int], tuple[_Row, ...]] = {}
_PLANS_KEPT: Final = 64


def _plan(measurands: tuple[str, ...], phases: int) -> tuple[_Row, ...]:
    """The rows the requested measurands yield (unsupported names yield none), cached."""
    rows: list[_Row] = []
    for measurand in dict.fromkeys(measurands):
        location = "EV" if measurand == SOC else "Outlet"
        if measurand in (CURRENT_IMPORT, VOLTAGE):
            key = "current_a" if measurand == CURRENT_IMPORT else "voltage_v"
            names = PHASES if measurand == CURRENT_IMPORT else _PHASES_N
            for index, phase in enumerate(names[:phases]):
                rows.append(
                    (_phase_reader(key, index), measurand, location, _UNITS[measurand], phase)
                )
            continue
        read = _READERS.get(measurand)
        if read is not None:  # else unsupported (Temperature, a typo)
            rows.append((read, measurand, location, _UNITS[measurand], None))
    plan = tuple(rows)
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.clear()
    _PLANS[(measurands, phases)] = plan
    return plan


def _phase_reader(key: str, index: int) -> _Read:
    """Reads one phase of a per-phase reading (current_a, voltage_v)."""

    def read(payload: Mapping[str, Any], _current: float, _phases: int) -> float:
        return float(payload[key][index])

    return read


def _optional(key: str) -> _Read:
    """Reads a reading the meter or EV may not report (None then)."""

    def read(payload: Mapping[str, Any], _current: float, _phases: int) -> float | None:
        value = payload.get(key)
        return None if value is None else float(value)

    return read


#: How each measurand without phases is read. Power.Offered is the offered current on
#: the phases the supply is switched to.
_READERS: dict[str, _Read] = {
    ENERGY_IMPORT: lambda payload, _current, _phases: float(payload["energy_import_wh"]),
    ENERGY_EXPORT: lambda payload, _current, _phases: float(payload.get("energy_export_wh") or 0.0),
    POWER_IMPORT: lambda payload, _current, _phases: float(payload["power_w"]),
    POWER_OFFERED: lambda _payload, current, phases: current * NOMINAL_VOLTAGE_V * phases,
    CURRENT_OFFERED: lambda _payload, current, _phases: current,
    FREQUENCY: _optional("frequency_hz"),
    SOC: _optional("soc_percent"),
}


def _round(value: float) -> float:
    """A reading to 3 decimals, never negative zero (remembered in _ROUNDED)."""
    number = round(float(value), DECIMALS) + 0.0
    if len(_ROUNDED) >= _ROUNDED_KEPT:
        _ROUNDED.clear()
    _ROUNDED[value] = number
    return number


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
    holds no meter sample (no SAMPLE_KEY) or when no measurand yields a value. Raises
    ValueError as sampled_values() does, or for a naive or malformed "at".
    """
    if SAMPLE_KEY not in payload:
        return None
    if context is None:
        context = READING_CONTEXT[SampleContext(payload["context"])]
    values = sampled_values(
        payload, measurands, context, phases=phases, offered_phases=offered_phases
    )
    if not values:
        return None
    return {"timestamp": wire_time(datetime.fromisoformat(payload["at"])), "sampledValue": values}


def register_reading(
    energy_wh: float, at: datetime, measurands: Iterable[str]
) -> dict[str, Any] | None:
    """The end's MeterValueType when the journal holds no end sample (a transaction
    ended after a power loss: its final register is the last one read), or None if
    the energy register is not among `measurands`."""
    if ENERGY_IMPORT not in measurands:
        return None
    end = READING_CONTEXT[SampleContext.END]
    values = sampled_values({SAMPLE_KEY: energy_wh}, (ENERGY_IMPORT,), end)
    return {"timestamp": wire_time(at), "sampledValue": values} if values else None


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
