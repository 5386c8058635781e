"""Local energy management: site limit, site meter, off-peak windows, PV surplus, boost.

Responsible for turning the `energy:` config and the site meter's readings into local
limits of the station's smart-charging loop (agent/core/smart_charging.py), which
combines them with the hardware and the CSMS's profiles (the least wins) and shares the
site's capacity between the EVSEs (6 A minimum, running sessions first). Each input is
one named source, so each replaces only its own value:

- `site`: the static limit (`site_limit_a`) as the EVSEs' shared capacity, when no site
  meter measures the connection point;
- `site_meter`: with a site meter, the headroom `site_limit_a - other loads`, the other
  loads being the site meter's current less the EVSE meters', per phase, read every
  control period (agent/core/energy.py `site_headroom_a`);
- `off_peak` (per EVSE): 0 A outside the cheap windows, lifted inside; the task sleeps to
  the next window boundary (no polling);
- `pv` (per EVSE in PV mode): the surplus shared between the PV EVSEs with a
  transaction (`share_surplus`: charging sessions first, a waiting one admitted when
  its start threshold is left, the rest equally up to what each EV takes, so a car
  that draws less or nothing leaves its part to the others), each share through a
  `PvRegulator` (thresholds held for a time, the EV's phases learned from its meter,
  1/3-phase switching where the board and the core can switch);
- the driver's boost (`boost`): lifts `off_peak` and `pv` on one EVSE until its session
  ends (the EV unplugged); never the site limit, the CSMS's limits or the hardware.

The site limit holds within one control period: a new session only takes what the
allocator gives it from the capacity computed at the last reading (so arrivals and
departures never push the total over), and a rise of the other loads is seen at the
next reading. Every reading refreshes the EVSE meters, so an EV drawing less than its
share frees the rest at the next period.

A site meter that does not answer: from the first failed reading until the next good one
the EVSEs together get `meter_fallback_a` per phase (default 6 A: one EV at the minimum),
because the other loads are unknown; PV mode sees no surplus meanwhile (its stop delay
then applies). Every reading in between is tried again.

Must not: make decisions agent/core/energy.py can make (pure rules live there), command
hardware (the smart-charging loop and the EVSEs do), or pick drivers (agent/hardware.py
builds the site meter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast
from zoneinfo import ZoneInfo

from agent.config_model import EnergyConfig
from agent.core.allocation import RAMP_MARGIN_A, SELF_LIMITED_MARGIN_A
from agent.core.energy import (
    OffPeakState,
    PvClaim,
    PvDecision,
    PvRegulator,
    PvSettings,
    Window,
    drawing_phases,
    off_peak_state,
    other_loads_a,
    share_surplus,
    signed_currents,
    site_headroom_a,
    surplus_w,
)
from agent.core.events import PhaseChanged, StationEvent
from agent.core.ports import Clock
from agent.core.station import Station
from agent.core.status import SessionPhase
from agent.core.tasks import Signal, TaskSet
from drivers.interfaces import DriverError, PowerMeter
from drivers.meter_maps import PHASE_CURRENTS, PHASE_POWERS, Quantity

__all__ = ["BoostRefusedError", "EnergyManager", "SiteReading"]

log = logging.getLogger(__name__)

SITE: Final = "site"
SITE_METER: Final = "site_meter"
OFF_PEAK: Final = "off_peak"
PV: Final = "pv"
#: The longest sleep when no window boundary is ahead.
_IDLE_SLEEP_S: Final = 86_400.0


class BoostRefusedError(Exception):
    """A boost that cannot be given (no session, nothing to lift); the message says why."""


@dataclass(frozen=True, slots=True)
class SiteReading:
    """The grid connection point at one instant: signed currents (negative: export)."""

    currents_a: tuple[float, float, float]
    power_w: float


class _QuantityMeter(Protocol):
    async def read_quantities(self) -> dict[Quantity, float]: ...


class EnergyManager:
    """The station's local energy management (one per agent)."""

    def __init__(
        self,
        config: EnergyConfig,
        *,
        station: Station,
        clock: Clock,
        site_meter: PowerMeter | None = None,
    ) -> None:
        """Manage `station` by `config`; `site_meter` measures the grid connection point."""
        self.config = config
        self.station = station
        self.smart = station.smart
        self.clock = clock
        self.site_meter = site_meter
        self.cycles = 0  # control periods completed
        self.reading: SiteReading | None = None  # the last good site reading
        self.meter_ok = site_meter is None
        self.off_peak: OffPeakState | None = None
        self.boosted: set[int] = set()
        self.pv_decisions: dict[int, PvDecision] = {}
        self._tasks = TaskSet("energy")
        self._cycled = Signal()
        self._unsubscribe: Callable[[], None] | None = None
        off_peak = config.off_peak
        self._zone = ZoneInfo(off_peak.timezone) if off_peak is not None else UTC
        self._windows = (
            [Window(frozenset(w.days), w.start, w.end) for w in off_peak.windows]
            if off_peak is not None
            else []
        )
        #: The EVSEs that charge only in the windows.
        self._off_peak_evses: tuple[int, ...] = (
            (off_peak.evses or tuple(station.evses)) if off_peak is not None else ()
        )
        self._regulators: dict[int, PvRegulator] = {}
        pv = config.pv
        if pv is not None:
            for evse_id in pv.evses or tuple(station.evses):
                evse = station.evses[evse_id]
                can_switch = evse.board.capabilities.can_switch_phases
                self._regulators[evse_id] = PvRegulator(
                    self._pv_settings(), max_phases=evse.max_phases, can_switch=can_switch
                )

    def _pv_settings(self) -> PvSettings:
        pv, phases = self.config.pv, self.config.phase_switching
        if pv is None:
            return PvSettings()
        return PvSettings(
            keep_min_current=pv.min_current,
            start_surplus_w=pv.start_surplus_w,
            stop_surplus_w=pv.stop_surplus_w,
            start_delay_s=pv.start_delay_s,
            stop_delay_s=pv.stop_delay_s,
            three_phases_above_w=phases.three_phases_above_w,
            one_phase_below_w=phases.one_phase_below_w,
            phase_delay_s=phases.delay_s,
            voltage_v=self.smart.voltage_v,
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def regulating(self) -> bool:
        """Whether a control loop runs (a site limit, a site meter or PV mode)."""
        c = self.config
        return c.site_limit_a is not None or c.site_meter is not None or c.pv is not None

    async def start(self) -> None:
        """Apply the limits known now and start the control and window tasks."""
        c = self.config
        if c.site_limit_a is not None:
            if self.site_meter is None:
                self.smart.set_site_capacity(SITE, c.site_limit_a)
            else:  # nothing known of the other loads before the first reading
                self.smart.set_site_capacity(SITE_METER, c.meter_fallback_a)
        for evse_id, regulator in self._regulators.items():
            self._apply_pv(evse_id, regulator.update(self.clock.now(), 0.0))
        self._unsubscribe = self.station.subscribe(self._on_event)
        if self._windows:
            self._apply_windows()
            self._tasks.spawn(self._window_loop(), name="off-peak")
        if self.regulating:
            self._tasks.spawn(self._control_loop(), name="energy-control")

    async def stop(self) -> None:
        """Stop the tasks (the limits stay as they are: the station is stopping too)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._tasks.cancel_all()

    async def next_cycle(self, timeout_s: float = 10.0) -> None:
        """Return once the control cycle running or next to run has completed; raises
        TimeoutError."""
        target = self.cycles + 1
        async with asyncio.timeout(timeout_s):
            while self.cycles < target:
                self._cycled.clear()
                await self._cycled.wait()

    # -- the driver's boost ------------------------------------------------------------

    def boost(self, evse_id: int) -> None:
        """Lift the off-peak and PV caps on `evse_id` until its session ends; raises
        BoostRefusedError without a session or when nothing would be lifted, KeyError for an
        unknown EVSE."""
        evse = self.station.evses[evse_id]
        if evse_id not in self._off_peak_evses and evse_id not in self._regulators:
            raise BoostRefusedError(f"EVSE {evse_id} has neither off-peak windows nor PV mode")
        if evse.state is SessionPhase.IDLE:
            raise BoostRefusedError(f"EVSE {evse_id} has no session (plug in or present a card)")
        self.boosted.add(evse_id)
        log.info("EVSE %s: boost for this session (off-peak and PV lifted)", evse_id)
        if evse_id in self._off_peak_evses:
            self.smart.set_evse_cap(OFF_PEAK, evse_id, None)
        if evse_id in self._regulators:
            self._set_pv_cap(evse_id, None, None)

    def _on_event(self, event: StationEvent) -> None:
        if not isinstance(event, PhaseChanged) or event.phase is not SessionPhase.IDLE:
            return
        # The session is over: its boost ends, PV starts the next one from a pause.
        self.boosted.discard(event.evse_id)
        if event.evse_id in self._off_peak_evses:
            self._apply_window(event.evse_id)
        regulator = self._regulators.get(event.evse_id)
        if regulator is not None:
            regulator.reset()
            self._apply_pv(event.evse_id, regulator.update(self.clock.now(), 0.0))

    # -- off-peak windows --------------------------------------------------------------

    async def _window_loop(self) -> None:
        while True:
            now = self.clock.now()
            state = self._apply_windows()
            delay = _IDLE_SLEEP_S if state.until is None else (state.until - now).total_seconds()
            await self.clock.sleep(max(0.0, min(delay, _IDLE_SLEEP_S)))

    def _apply_windows(self) -> OffPeakState:
        state = off_peak_state(self._windows, self._zone, self.clock.now())
        if state != self.off_peak:
            if self.off_peak is None or state.inside != self.off_peak.inside:
                log.info("off-peak window %s", "open" if state.inside else "closed")
            self.off_peak = state
            for evse_id in self._off_peak_evses:
                self._apply_window(evse_id)
        return state

    def _apply_window(self, evse_id: int) -> None:
        state = self.off_peak
        lifted = state is None or state.inside or evse_id in self.boosted
        self.smart.set_evse_cap(OFF_PEAK, evse_id, None if lifted else 0.0)

    # -- the control period ------------------------------------------------------------

    async def _control_loop(self) -> None:
        period = self.config.control_period_s
        while True:
            began = self.clock.now()
            try:
                await self._cycle()
            except Exception:
                log.exception("energy management: a control cycle failed")
            self.cycles += 1
            self._cycled.set()
            # A slow meter eats into the period: readings stay one period apart.
            spent = (self.clock.now() - began).total_seconds()
            await self.clock.sleep(max(0.0, period - spent))

    async def _cycle(self) -> None:
        """Read the meters, then set the site capacity and the PV caps."""
        samples = {}
        for evse_id, evse in self.station.evses.items():
            if evse.tx is not None:  # only a running transaction can draw
                samples[evse_id] = await evse.read_meter()
        evse_currents = [s.current_a for s in samples.values() if s is not None]
        reading = await self._read_site() if self.site_meter is not None else None
        limit = self.config.site_limit_a
        if limit is not None and self.site_meter is None:
            self.smart.set_site_capacity(SITE, limit)  # fresh samples: shares revised
        elif limit is not None:
            capacity = (
                self.config.meter_fallback_a
                if reading is None
                else site_headroom_a(limit, reading.currents_a, evse_currents)
            )
            self.smart.set_site_capacity(SITE_METER, capacity)
        if self._regulators:
            self._pv_cycle(reading, samples)

    async def _read_site(self) -> SiteReading | None:
        """The site meter's reading, or None (logged once per outage) when it fails."""
        meter = self.site_meter
        if meter is None:
            return None
        try:
            if hasattr(meter, "read_quantities"):
                values = await cast(_QuantityMeter, meter).read_quantities()
                currents = [values.get(q, 0.0) for q in PHASE_CURRENTS]
                powers = [values[q] for q in PHASE_POWERS if q in values]
                power = values.get(Quantity.POWER_W, sum(powers))
                reading = SiteReading(
                    signed_currents(currents, powers if len(powers) == 3 else None), power
                )
            else:
                sample = await meter.read()
                reading = SiteReading(signed_currents(sample.current_a), sample.power_w)
        except DriverError as exc:
            if self.meter_ok:
                log.warning(
                    "site meter: no reading (%s); the EVSEs share %.1f A until it answers",
                    exc,
                    self.config.meter_fallback_a,
                )
            self.meter_ok = False
            return None
        if not self.meter_ok:
            log.info("site meter: answering again")
        self.meter_ok = True
        self.reading = reading
        return reading

    def _pv_cycle(self, reading: SiteReading | None, samples: dict[int, Any]) -> None:
        now = self.clock.now()
        pv_power = [
            s.power_w for i, s in samples.items() if i in self._regulators and s is not None
        ]
        surplus = 0.0 if reading is None else max(0.0, surplus_w(reading.power_w, pv_power))
        claims = []
        for evse_id, regulator in self._regulators.items():
            evse = self.station.evses[evse_id]
            tx = evse.tx
            if tx is None:
                regulator.reset()
                self._apply_pv(evse_id, regulator.update(now, 0.0))
                continue
            sample = samples.get(evse_id)
            if sample is not None:
                regulator.saw_drawing(drawing_phases(sample.current_a), evse.active_phases)
            want, headroom = self._pv_want_w(evse_id, regulator)
            claims.append(
                PvClaim(
                    evse_id=evse_id,
                    charging=regulator.charging,
                    since=tx.started_at.timestamp(),
                    need_w=regulator.need_w,
                    want_w=want,
                    headroom_w=headroom,
                )
            )
        shares = share_surplus(surplus, claims)
        for claim in claims:
            regulator = self._regulators[claim.evse_id]
            self._apply_pv(claim.evse_id, regulator.update(now, shares[claim.evse_id]))

    def _pv_want_w(self, evse_id: int, regulator: PvRegulator) -> tuple[float, float]:
        """The most the EVSE can use of the surplus (its hardware on the EV's phases, or
        its EV's settled draw when that is clearly less than offered) and the headroom
        shown to such an EV so it can grow again (not taken from the others)."""
        evse = self.station.evses[evse_id]
        want = regulator.max_power_w(evse.hardware_max_a)
        draw = self.smart.settled_draw_a(evse_id)
        offered = evse.offered_a()
        if (
            draw is None
            or offered < self.smart.min_current_a
            or draw >= offered - SELF_LIMITED_MARGIN_A
        ):
            return want, 0.0
        watts_per_a = self.smart.voltage_v * regulator.phases_drawn
        return min(want, draw * watts_per_a), RAMP_MARGIN_A * watts_per_a

    def _apply_pv(self, evse_id: int, decision: PvDecision) -> None:
        self.pv_decisions[evse_id] = decision
        if evse_id in self.boosted:
            return
        phases = decision.phases if self._regulators[evse_id].can_switch else None
        self._set_pv_cap(evse_id, decision.current_a, phases)

    def _set_pv_cap(self, evse_id: int, current_a: float | None, phases: int | None) -> None:
        self.smart.set_evse_cap(PV, evse_id, current_a, phases=phases)

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What energy management sees and decided, as plain data (the local API)."""
        c = self.config
        reading = self.reading
        evse_currents = [
            s.current_a
            for evse in self.station.evses.values()
            if evse.tx is not None and (s := evse.last_sample) is not None
        ]
        off_peak = self.off_peak
        return {
            "site_limit_a": c.site_limit_a,
            "capacity_a": self.smart.site_capacity_a,
            "site_meter": None
            if self.site_meter is None
            else {
                "answering": self.meter_ok,
                "current_a": list(reading.currents_a) if reading is not None else None,
                "power_w": reading.power_w if reading is not None else None,
                "other_loads_a": list(other_loads_a(reading.currents_a, evse_currents))
                if reading is not None
                else None,
            },
            "off_peak": None
            if off_peak is None
            else {"inside": off_peak.inside, "until": _iso(off_peak.until)},
            "boosted": sorted(self.boosted),
            "pv": {
                str(evse_id): {
                    "current_a": d.current_a,
                    "phases": d.phases,
                    "from_surplus": d.from_surplus,
                }
                for evse_id, d in sorted(self.pv_decisions.items())
            },
            "limits": {
                str(evse_id): {
                    "current_a": cap.current_a,
                    "phases": cap.phases,
                    "reason": cap.reason,
                }
                for evse_id, cap in sorted(self.smart.limits.items())
            },
        }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")
