"""The `energy:` section of the install configuration: local energy management.

Responsible for reading and checking the section into `EnergyConfig` (agent/config_model.py)
with every problem named by key path and line, like the rest of agent/config.py, which
calls `read_energy`. The keys (config/sim-site-limit.yaml shows each with a comment):

    energy:
      control_period_s: 5          # how often the site meter is read and shares revised
      site_limit_a: 40             # the grid connection's limit, A per phase
      site_meter: {driver: modbus, host: ..., map: sdm630}   # or {driver: sim, ...}
      meter_fallback_a: 6          # the EVSEs' total per phase while the meter is silent
      off_peak:
        timezone: Europe/Berlin
        windows: [{days: weekdays, start: "22:00", end: "06:00"}]
        evses: [4]                 # default: every EVSE
      pv: {evses: [1], min_current: false, start_surplus_w: 1500, stop_surplus_w: 700,
           start_delay_s: 60, stop_delay_s: 300}
      phase_switching: {three_phases_above_w: 4600, one_phase_below_w: 4100, delay_s: 300}

Must not: validate the site meter's driver options (the driver does, when it is built),
import agent/core, agent/ocpp or drivers.
"""

from __future__ import annotations

import re
from datetime import time
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.nodes import Node, ScalarNode, SequenceNode

from agent.config_model import (
    DriverConfig,
    EnergyConfig,
    EvseConfig,
    OffPeakConfig,
    OffPeakWindowConfig,
    PhaseSwitchingConfig,
    PvConfig,
)
from agent.config_yaml import TAG, NodeMap, NodeReader, describe, is_null

__all__ = ["DAY_NAMES", "read_energy"]

#: Day names as written in `days:` (0 = Monday, as datetime.weekday()).
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_SETS = {
    "daily": tuple(range(7)),
    "weekdays": tuple(range(5)),
    "weekends": (5, 6),
}
_LONG_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_KEYS = (
    "control_period_s",
    "site_limit_a",
    "site_meter",
    "meter_fallback_a",
    "off_peak",
    "pv",
    "phase_switching",
)


def read_energy(r: NodeReader, top: NodeMap, evses: tuple[EvseConfig, ...]) -> EnergyConfig:
    """Read `energy:` (absent or empty: everything off), reporting problems to `r`."""
    m = r.section(top, "energy", _KEYS)
    if not m.line:
        return EnergyConfig()
    site_limit = _optional_number(r, m, "site_limit_a", gt=0, le=10_000)
    site_meter = _read_site_meter(r, m)
    pv = _read_pv(r, m, evses)
    if pv is not None and site_meter is None:
        r.problem(m.at("pv"), m.entries["pv"][0], "PV surplus mode needs a site_meter")
    return EnergyConfig(
        control_period_s=r.number(m, "control_period_s", 5.0, gt=0, le=60),
        site_limit_a=site_limit,
        site_meter=site_meter,
        meter_fallback_a=r.number(m, "meter_fallback_a", 6.0, ge=0, le=10_000),
        off_peak=_read_off_peak(r, m, evses),
        pv=pv,
        phase_switching=_read_phase_switching(r, m),
    )


def _optional_number(
    r: NodeReader, m: NodeMap, key: str, *, gt: float | None = None, ge: float | None = None,
    le: float | None = None,
) -> float | None:  # fmt: skip
    if r.typed(m, key, ("int", "float"), "a number") is None:
        return None  # absent, or not a number (reported)
    value = r.number(m, key, float("nan"), gt=gt, ge=ge, le=le)
    return None if value != value else value  # NaN: reported already


def _read_site_meter(r: NodeReader, m: NodeMap) -> DriverConfig | None:
    meter = r.section(m, "site_meter", None)
    if not meter.line:
        return None
    name = r.text(meter, "driver", "", required=True, min_len=1) or ""
    options = {k: r.plain(v, meter.at(k)) for k, (_, v) in meter.entries.items() if k != "driver"}
    return DriverConfig(name, MappingProxyType(options))


def _read_off_peak(
    r: NodeReader, m: NodeMap, evses: tuple[EvseConfig, ...]
) -> OffPeakConfig | None:
    off_peak = r.section(m, "off_peak", ("timezone", "windows", "evses"))
    if not off_peak.line:
        return None
    zone = r.text(off_peak, "timezone", "UTC", min_len=1) or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        r.problem(
            off_peak.at("timezone"),
            off_peak.node("timezone"),
            f"unknown time zone '{zone}' (an IANA name such as Europe/Berlin or UTC)",
        )
    node = r.required(off_peak, "windows")
    windows: list[OffPeakWindowConfig] = []
    if node is not None and (not isinstance(node, SequenceNode) or not node.value):
        got = "an empty list" if isinstance(node, SequenceNode) else describe(node)
        r.problem(off_peak.at("windows"), node, f"expected a list of windows, got {got}")
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            window = _read_window(r, item, f"{off_peak.at('windows')}[{i}]")
            if window is not None:
                windows.append(window)
    ids = _read_evse_ids(r, off_peak, evses)
    return OffPeakConfig(timezone=zone, windows=tuple(windows), evses=ids)


def _read_window(r: NodeReader, node: Node, path: str) -> OffPeakWindowConfig | None:
    w = r.mapping(node, path, ("days", "start", "end"))
    if not w.line:
        return None
    days = _read_days(r, w)
    start = _read_clock(r, w, "start", allow_24=False)
    end = _read_clock(r, w, "end", allow_24=True)
    if days is None or start is None or end is None:
        return None
    return OffPeakWindowConfig(days=days, start=start, end=end)


def _read_days(r: NodeReader, w: NodeMap) -> tuple[int, ...] | None:
    node = r.required(w, "days")
    if node is None:
        return None
    hint = f"'daily', 'weekdays', 'weekends' or a list of {', '.join(DAY_NAMES)}"
    if isinstance(node, ScalarNode) and node.tag == TAG + "str":
        days = _DAY_SETS.get(str(node.value).lower())
        if days is None:
            r.problem(w.at("days"), node, f"expected {hint}, got '{node.value}'")
        return days
    if not isinstance(node, SequenceNode) or not node.value:
        r.problem(w.at("days"), node, f"expected {hint}, got {describe(node)}")
        return None
    found: list[int] = []
    for i, item in enumerate(node.value):
        name = str(item.value).lower() if isinstance(item, ScalarNode) else ""
        day = DAY_NAMES.index(name[:3]) if name in DAY_NAMES or name in _LONG_NAMES else None
        if day is None:
            r.problem(f"{w.at('days')}[{i}]", item, f"expected a day ({', '.join(DAY_NAMES)})")
        elif day in found:
            r.problem(f"{w.at('days')}[{i}]", item, f"'{name}' is listed twice")
        else:
            found.append(day)
    return tuple(sorted(found)) if len(found) == len(node.value) else None


def _read_clock(r: NodeReader, w: NodeMap, key: str, *, allow_24: bool) -> time | None:
    node = r.required(w, key)
    if node is None:
        return None
    # YAML 1.1 reads an unquoted 22:00 as a base-60 integer: take the text as written.
    text = str(node.value) if isinstance(node, ScalarNode) and not is_null(node) else ""
    match = _CLOCK.match(text)
    if match is None or (int(match[1]) == 24 and (not allow_24 or match[2] != "00")):
        latest = "24:00" if allow_24 else "23:59"
        r.problem(
            w.at(key),
            node,
            f"expected a local time HH:MM (00:00 to {latest}), got {describe(node)}",
        )
        return None
    hour = int(match[1])
    return time(0 if hour == 24 else hour, int(match[2]))


def _read_pv(r: NodeReader, m: NodeMap, evses: tuple[EvseConfig, ...]) -> PvConfig | None:
    pv = r.section(
        m,
        "pv",
        ("evses", "min_current", "start_surplus_w", "stop_surplus_w", "start_delay_s",
         "stop_delay_s"),
    )  # fmt: skip
    entry = m.entries.get("pv")
    if entry is None or (not pv.line and not is_null(entry[1])):
        return None  # absent, or not a mapping (reported)
    start = _optional_number(r, pv, "start_surplus_w", ge=0, le=1_000_000)
    stop = _optional_number(r, pv, "stop_surplus_w", ge=0, le=1_000_000)
    if start is not None and stop is not None and stop > start:
        r.problem(
            pv.at("stop_surplus_w"),
            pv.node("stop_surplus_w"),
            f"must be at most start_surplus_w ({start:g}): the gap is the hysteresis",
        )
    return PvConfig(
        evses=_read_evse_ids(r, pv, evses),
        min_current=r.boolean(pv, "min_current", False),
        start_surplus_w=start,
        stop_surplus_w=stop,
        start_delay_s=r.number(pv, "start_delay_s", 60.0, ge=0, le=86_400),
        stop_delay_s=r.number(pv, "stop_delay_s", 300.0, ge=0, le=86_400),
    )


def _read_evse_ids(r: NodeReader, pv: NodeMap, evses: tuple[EvseConfig, ...]) -> tuple[int, ...]:
    """Read `evses:`, a list of configured EVSE ids (absent: () for every EVSE)."""
    node = pv.node("evses")
    if node is None:
        return ()
    known = {evse.id for evse in evses}
    if not isinstance(node, SequenceNode) or not node.value:
        r.problem(pv.at("evses"), node, f"expected a list of EVSE ids, got {describe(node)}")
        return ()
    ids: list[int] = []
    for i, item in enumerate(node.value):
        value = r.scalar(item, f"{pv.at('evses')}[{i}]") if isinstance(item, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int) or value not in known:
            listed = ", ".join(str(k) for k in sorted(known))
            r.problem(f"{pv.at('evses')}[{i}]", item, f"expected an EVSE id ({listed})")
        elif value not in ids:
            ids.append(value)
    return tuple(ids)


def _read_phase_switching(r: NodeReader, m: NodeMap) -> PhaseSwitchingConfig:
    ps = r.section(m, "phase_switching", ("three_phases_above_w", "one_phase_below_w", "delay_s"))
    up = _optional_number(r, ps, "three_phases_above_w", gt=0, le=1_000_000)
    down = _optional_number(r, ps, "one_phase_below_w", gt=0, le=1_000_000)
    if up is not None and down is not None and down > up:
        r.problem(
            ps.at("one_phase_below_w"),
            ps.node("one_phase_below_w"),
            f"must be at most three_phases_above_w ({up:g}): the gap is the hysteresis",
        )
    return PhaseSwitchingConfig(
        three_phases_above_w=up,
        one_phase_below_w=down,
        delay_s=r.number(ps, "delay_s", 300.0, ge=0, le=86_400),
    )
