"""The plant: the cable and power path between one EVSE's board and a simulated car.

Responsible for the physics the sim drivers observe: the pilot line (what the charger
drives and what the car's S2 switch and diode make of it, IEC 61851-1 Annex A), the
contactor and its mirror contact, the supply's phases (switched between 1 and 3 by a
board that can), the current the car draws, and an energy register that
integrates power over (scaled) time and, like a real meter, never goes backwards or loses
its count across restarts.

Time is injected (`monotonic`, `time_scale`): tests drive a fake clock and call `step()`.
Power is piecewise constant between events, so every change of state first integrates
energy up to now and only then changes anything.

It must not interpret what it measures: no IEC session logic and no fault handling. A
fault raised here is only reported (as a FaultEvent through the board); what a fault
means is decided by the agent. It must not import the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from drivers.interfaces import BoardEventSink
from drivers.types import (
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
)
from simulator.ev import TAPER_START_SOC_PERCENT, SimEv

_log = logging.getLogger(__name__)

NOMINAL_VOLTAGE_V = 230.0
# IEC 61851-1 Table A.8: the EV treats a duty outside 8..97 % as "no charging allowed"
# (below 8 % only digital communication or an error).
MIN_CHARGING_DUTY_PERCENT = 8.0
MAX_CHARGING_DUTY_PERCENT = 97.0
_CHARGING_STATES = frozenset({PilotState.C, PilotState.D})
_FORCEABLE_STATES = frozenset(
    {PilotState.B, PilotState.C, PilotState.D, PilotState.E, PilotState.F}
)


class PilotMode(StrEnum):
    """What the charger drives onto the pilot line."""

    OFF = "off"  # constant +12 V (state x1)
    PWM = "pwm"  # 1 kHz +-12 V square wave with a duty cycle (state x2)
    F = "f"  # constant -12 V: EVSE not available


def offered_current_a(duty_percent: float) -> float:
    """Current per phase an EV reads from a PWM duty (IEC 61851-1 Table A.8, EV side)."""
    if not math.isfinite(duty_percent):
        return 0.0
    if MIN_CHARGING_DUTY_PERCENT <= duty_percent < 10.0:
        return 6.0
    if 10.0 <= duty_percent <= 85.0:
        return duty_percent * 0.6
    if 85.0 < duty_percent <= 96.0:
        return (duty_percent - 64.0) * 2.5
    if 96.0 < duty_percent <= MAX_CHARGING_DUTY_PERCENT:
        return 80.0
    return 0.0


def _load_register(path: Path) -> float:
    """Read the energy register saved at `path` (0 if absent); raises ValueError if corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0.0
    try:
        value = json.loads(text)["energy_import_wh"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a saved energy register ({exc})") from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: energy_import_wh must be a number, got {value!r}")
    energy_wh = float(value)
    if not math.isfinite(energy_wh) or energy_wh < 0.0:
        raise ValueError(f"{path}: energy_import_wh must be finite and >= 0, got {energy_wh}")
    return energy_wh


class Plant:
    """One EVSE's pilot line, contactor, power path and energy register, with a car or not."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
        register_path: Path | None = None,
        voltage_v: float = NOMINAL_VOLTAGE_V,
        substep_s: float = 1.0,
    ) -> None:
        """Create an idle plant (pilot off, contactor open, no EV); raises ValueError.

        `time_scale` is simulated seconds per second of `monotonic`; `substep_s` is the
        longest simulated interval integrated at once while the car's draw may change.
        The register is loaded from `register_path` when that file exists.
        """
        if not (math.isfinite(time_scale) and time_scale > 0.0):
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        if not (math.isfinite(substep_s) and substep_s > 0.0):
            raise ValueError(f"substep_s must be > 0, got {substep_s}")
        self._monotonic = monotonic
        self._time_scale = time_scale
        self._substep_s = substep_s
        self._voltage_v = voltage_v
        self._register_path = register_path
        self._energy_import_wh = 0.0
        self._saved_energy_wh: float | None = None
        if register_path is not None and register_path.exists():
            self._energy_import_wh = _load_register(register_path)
            self._saved_energy_wh = self._energy_import_wh
        self._last_step_s = monotonic()
        self._pilot_mode = PilotMode.OFF
        self._duty_percent = 0.0
        self._contactor_commanded = False
        self._welded = False
        self._ev: SimEv | None = None
        self._forced: PilotState | None = None
        self._faults: dict[FaultCode, str] = {}
        self._sinks: list[BoardEventSink] = []
        self._watchers: list[Callable[[], None]] = []
        self._wake: asyncio.Event | None = None  # set while run() waits for a change
        self._supply_phases = 3
        self._pilot_state = self._physical_pilot_state()

    # --- status (read-only) -------------------------------------------------------------

    @property
    def pilot_state(self) -> PilotState:
        """The pilot state the EVSE side measures now (IEC 61851-1 Table A.3)."""
        return self._pilot_state

    @property
    def pilot_mode(self) -> PilotMode:
        """What the charger drives onto the pilot line."""
        return self._pilot_mode

    @property
    def duty_percent(self) -> float | None:
        """The PWM duty cycle while oscillating, None otherwise."""
        return self._duty_percent if self._pilot_mode is PilotMode.PWM else None

    @property
    def offered_current_a(self) -> float:
        """The current per phase the present pilot signal offers to a car."""
        if self._pilot_mode is not PilotMode.PWM:
            return 0.0
        return offered_current_a(self._duty_percent)

    @property
    def contactor_commanded(self) -> bool:
        """What the board last commanded the contactor to be (True = closed)."""
        return self._contactor_commanded

    @property
    def contactor_closed(self) -> bool:
        """The mirror contact: closed when commanded closed, or whenever welded."""
        return self._contactor_commanded or self._welded

    @property
    def contactor_welded(self) -> bool:
        """Whether the contactor is (simulated as) welded shut."""
        return self._welded

    @property
    def voltage_v(self) -> tuple[float, float, float]:
        """Grid voltage on L1, L2, L3 at the meter."""
        return (self._voltage_v, self._voltage_v, self._voltage_v)

    @property
    def supply_phases(self) -> int:
        """The phases the charger's supply is switched to (1 or 3; 3 unless switched)."""
        return self._supply_phases

    @property
    def current_a(self) -> tuple[float, float, float]:
        """Current flowing on L1, L2, L3 (0 on phases the car does not use)."""
        return self._phase_currents_a()

    @property
    def power_w(self) -> float:
        """Active power flowing to the car now."""
        return sum(v * i for v, i in zip(self.voltage_v, self._phase_currents_a(), strict=True))

    @property
    def energy_import_wh(self) -> float:
        """The energy register: everything delivered so far (integrated up to the last step)."""
        return self._energy_import_wh

    @property
    def ev(self) -> SimEv | None:
        """The car plugged in, if any."""
        return self._ev

    @property
    def forced_pilot_state(self) -> PilotState | None:
        """The injected pilot state overriding physics, if any."""
        return self._forced

    @property
    def active_faults(self) -> frozenset[FaultCode]:
        """The fault conditions active now."""
        return frozenset(self._faults)

    def has_fault(self, code: FaultCode) -> bool:
        """Whether fault `code` is active now."""
        return code in self._faults

    def fault_events(self) -> list[FaultEvent]:
        """One FaultEvent(active=True) per fault active now (for a board's start report)."""
        return [FaultEvent(code, True, detail) for code, detail in self._faults.items()]

    # --- subscribers --------------------------------------------------------------------

    def subscribe(self, sink: BoardEventSink) -> None:
        """Deliver every future pilot, contactor and fault event to `sink`."""
        if sink not in self._sinks:
            self._sinks.append(sink)

    def unsubscribe(self, sink: BoardEventSink) -> None:
        """Stop delivering events to `sink` (no effect if it was not subscribed)."""
        if sink in self._sinks:
            self._sinks.remove(sink)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every change of the plant and every step (a recorder of
        the current drawn, say); returns the function that stops it."""
        self._watchers.append(callback)

        def unwatch() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unwatch

    # --- charger side -------------------------------------------------------------------

    def set_pilot(self, mode: PilotMode, duty_percent: float = 0.0) -> None:
        """Drive the pilot (duty used only for PWM); raises ValueError for a duty off 0..100."""
        if mode is PilotMode.PWM and not (
            math.isfinite(duty_percent) and 0.0 <= duty_percent <= 100.0
        ):
            raise ValueError(f"duty_percent must be within 0..100, got {duty_percent}")
        new_duty = duty_percent if mode is PilotMode.PWM else 0.0
        if mode is self._pilot_mode and new_duty == self._duty_percent:
            return
        self._integrate()
        self._pilot_mode = mode
        self._duty_percent = new_duty
        self._evaluate()

    def set_contactor(self, closed: bool) -> None:
        """Command the contactor; a changed command reports the mirror as a ContactorEvent."""
        if closed == self._contactor_commanded:
            return
        self._integrate()
        self._contactor_commanded = closed
        # The board reports its feedback after every effective command, so a welded
        # contactor answers an open command with closed=True.
        self._emit(ContactorEvent(closed=self.contactor_closed))
        self._evaluate()

    def set_supply_phases(self, phases: int) -> None:
        """Switch the supply to `phases` (1 or 3): the car draws on at most that many from
        now on; raises ValueError for any other count."""
        if phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {phases}")
        if phases == self._supply_phases:
            return
        self._integrate()
        self._supply_phases = phases
        self._evaluate()

    # --- car side -----------------------------------------------------------------------

    def plug_in(self, ev: SimEv) -> None:
        """Connect `ev` to the cable; raises ValueError if a car is already plugged in."""
        if self._ev is not None:
            raise ValueError("an EV is already plugged in")
        ev.bind(self)
        self._integrate()
        self._ev = ev
        self._evaluate()

    def unplug(self) -> SimEv | None:
        """Disconnect the car (idempotent) and return it."""
        ev = self._ev
        if ev is None:
            return None
        self._integrate()
        self._ev = None
        ev.bind(None)
        self._evaluate()
        return ev

    def ev_will_change(self) -> None:
        """EvListener: integrate up to now before the car changes what it wants."""
        self._integrate()

    def ev_changed(self) -> None:
        """EvListener: re-evaluate the pilot after the car changed what it wants."""
        self._evaluate()

    # --- fault injection ----------------------------------------------------------------

    def force_pilot(self, state: PilotState | None) -> None:
        """Override the measured pilot with B, C, D, E or F (None: back to physics).

        Raises ValueError for state A (unplug the car instead).
        """
        if state is not None and state not in _FORCEABLE_STATES:
            raise ValueError(f"cannot force pilot state {state}")
        if state == self._forced:
            return
        self._integrate()
        self._forced = state
        self._evaluate()

    def raise_fault(self, code: FaultCode, detail: str = "") -> None:
        """Make fault `code` active and report it (no event if already active as such)."""
        if self._faults.get(code) == detail:
            return
        self._faults[code] = detail
        self._emit(FaultEvent(code, True, detail))

    def clear_fault(self, code: FaultCode) -> None:
        """Clear fault `code` and report it (no event if it was not active)."""
        if code not in self._faults:
            return
        del self._faults[code]
        self._emit(FaultEvent(code, False))

    def weld_contactor(self, welded: bool) -> None:
        """Weld the contactor shut (or free it); the mirror reports closed while welded."""
        if welded == self._welded:
            return
        self._integrate()
        was_closed = self.contactor_closed
        self._welded = welded
        if self.contactor_closed != was_closed:
            self._emit(ContactorEvent(closed=self.contactor_closed))
        self._evaluate()

    # --- time ---------------------------------------------------------------------------

    def step(self) -> None:
        """Integrate energy and SoC up to now, then report what changed (e.g. EV full -> B)."""
        self._integrate()
        self._evaluate()

    async def run(self, tick_s: float = 1.0) -> None:
        """Call step() until cancelled: every `tick_s` seconds while the car's draw may
        change by itself (tapering) or a watcher listens; otherwise when a steady draw is
        due to change, or at once after any change of the plant (nothing else can change
        while no energy flows). Raises ValueError if `tick_s` < 0."""
        if not (math.isfinite(tick_s) and tick_s >= 0.0):
            raise ValueError(f"tick_s must be >= 0, got {tick_s}")
        # Fleet mode: thousands of plants ticking every second cost more CPU than
        # everything else a charging station does between its meter values.
        self._wake = wake = asyncio.Event()
        try:
            while True:
                self.step()
                wake.clear()
                quiet_s = self._quiet_s()
                if quiet_s == 0.0:
                    await asyncio.sleep(tick_s)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(quiet_s):
                        await wake.wait()
        finally:
            self._wake = None

    def _quiet_s(self) -> float | None:
        """How long (in `monotonic` seconds) nothing changes unless the plant is told to:
        None while no energy flows, 0 while the car's draw may change any time (tapering)
        or a watcher listens, else until the steady draw ends."""
        if self._watchers:
            return 0.0
        power_w = self.power_w
        if power_w <= 0.0:
            return None
        return self._steady_span_s(power_w) / self._time_scale

    def save_register(self) -> None:
        """Persist the energy register atomically (no-op without a path or a change).

        Raises OSError when the file cannot be written.
        """
        path = self._register_path
        if path is None or self._saved_energy_wh == self._energy_import_wh:
            return
        value = self._energy_import_wh
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_name(path.name + ".tmp")
        with tmp_path.open("w", encoding="utf-8") as f:
            json.dump({"energy_import_wh": value}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        self._saved_energy_wh = value

    # --- internals ----------------------------------------------------------------------

    def _physical_pilot_state(self) -> PilotState:
        """What the EVSE measures on the pilot (IEC 61851-1 Table A.3), overrides first."""
        if self._forced is not None:
            return self._forced
        # A pilot held at -12 V reads -12 V whatever is on the far end: the car's diode
        # only shapes the positive half, so F wins over presence detection.
        if self._pilot_mode is PilotMode.F:
            return PilotState.F
        ev = self._ev
        if ev is None:
            return PilotState.A
        # The car closes S2 (state C/D) only on a PWM with a duty it can charge from
        # (IEC 61851-1 Table A.8); on a steady +12 V or an invalid duty it stays in B.
        oscillating = self._pilot_mode is PilotMode.PWM and (
            MIN_CHARGING_DUTY_PERCENT <= self._duty_percent <= MAX_CHARGING_DUTY_PERCENT
        )
        if not (oscillating and ev.wants_power):
            return PilotState.B
        return PilotState.D if ev.ventilation else PilotState.C

    def _flowing_current_a(self) -> float:
        """Per-phase current the car draws now: only through a closed contact in C or D."""
        ev = self._ev
        if ev is None or not self.contactor_closed:
            return 0.0
        if self._physical_pilot_state() not in _CHARGING_STATES:
            return 0.0
        return ev.charge_current_a(self.offered_current_a)

    def _phase_currents_a(self) -> tuple[float, float, float]:
        current_a = self._flowing_current_a()
        if self._ev is None or current_a <= 0.0:
            return (0.0, 0.0, 0.0)
        phases = min(self._ev.phases, self._supply_phases)
        l1, l2, l3 = (current_a if n < phases else 0.0 for n in range(3))
        return (l1, l2, l3)

    def _steady_span_s(self, power_w: float) -> float:
        """Simulated time the car's draw stays constant at `power_w` (0 if it may change)."""
        ev = self._ev
        if ev is None or power_w <= 0.0:
            return 0.0
        limit_percent = min(TAPER_START_SOC_PERCENT, ev.params.target_soc_percent)
        if ev.soc_percent >= limit_percent:
            return 0.0
        energy_wh = (limit_percent - ev.soc_percent) / 100.0 * ev.params.battery_wh
        return energy_wh * 3600.0 / power_w

    def _integrate(self) -> None:
        """Add the energy delivered since the last call to the register and the battery."""
        now_s = self._monotonic()
        remaining_s = max(0.0, now_s - self._last_step_s) * self._time_scale
        self._last_step_s = now_s
        while remaining_s > 0.0:
            power_w = self.power_w
            ev = self._ev
            if ev is None or power_w <= 0.0:
                # Nothing flows, and nothing can start flowing before the next change.
                return
            span_s = min(remaining_s, max(self._substep_s, self._steady_span_s(power_w)))
            energy_wh = power_w * span_s / 3600.0
            self._energy_import_wh += energy_wh
            ev.absorb(energy_wh)
            remaining_s -= span_s

    def _evaluate(self) -> None:
        """Report the measured pilot state if it changed since the last report, then tell
        the watchers that something may have changed."""
        state = self._physical_pilot_state()
        if state != self._pilot_state:
            self._pilot_state = state
            self._emit(PilotEvent(state))
        if self._wake is not None:
            self._wake.set()  # run() recomputes how long nothing changes
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:
                _log.exception("plant watcher failed")

    def _emit(self, event: BoardEvent) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:
                _log.exception("plant event sink failed on %r", event)
