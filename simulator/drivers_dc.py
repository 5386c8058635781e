"""Simulated DC drivers: PowerModule and IsolationMonitor over a small DC output model.

Responsible for the DC power path of a simulated charger, as simulator/drivers.py is for
the AC one: `SimPowerModule` is a power stage whose output voltage ramps towards the
setpoint at `ramp_v_per_s` while enabled (and back to 0 V while off), into a resistive
load whose current is limited by the current setpoint and the rated power (the voltage
then sags: constant-current mode, as on a real supply). `SimIsolationMonitor` is an IMD
(IEC 61557-8) measuring an insulation resistance the simulation sets. The world and the
faults are injected through plain methods (`set_load`, `over_temperature`,
`inject_fault`, `set_resistance`, `set_device_failure`, `self_test_passes`), so tests
and scenarios act on the far end without a bus; silence (a dead or unplugged device)
has no meaning in process and is not simulated: the CAN emulators cover it.

Like every driver they are dumb and truthful: they report what the model shows and never
decide (a fault does not make them switch anything off for the caller; the simulated
module protects itself, as a real one does, and resumes when the fault clears). Time is
injected (`monotonic`): the output model is evaluated lazily at each command, reading or
injection, so a fake clock drives it. Events go to the sink synchronously, on the thread
that calls in: the injection methods must be called on the event loop thread. They must
not import the agent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from drivers.interfaces import DriverError, IsolationEventSink, PowerModuleEventSink
from drivers.types import (
    FaultCode,
    FaultEvent,
    IsolationReading,
    IsolationSelfTest,
    PowerModuleCapabilities,
    PowerModuleReading,
)

Monotonic = Callable[[], float]

AMBIENT_TEMPERATURE_C = 25.0
OVERHEATED_TEMPERATURE_C = 95.0
#: Reading flags, named after what the module shows (PowerModuleReading.flags).
FLAG_OUTPUT_OFF = "dc_side_off"


class SimPowerModule:
    """PowerModule over a model of a DC output: a ramping voltage into a resistive load."""

    def __init__(
        self,
        capabilities: PowerModuleCapabilities,
        *,
        ramp_v_per_s: float = 1000.0,
        load_ohm: float | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        """A module with `capabilities`, off; raises ValueError for a ramp or load <= 0."""
        if not (math.isfinite(ramp_v_per_s) and ramp_v_per_s > 0.0):
            raise ValueError(f"ramp_v_per_s must be > 0, got {ramp_v_per_s}")
        _check_load(load_ohm)
        self._capabilities = capabilities
        self._ramp_v_per_s = ramp_v_per_s
        self._load_ohm = load_ohm
        self._monotonic = monotonic
        self._t = monotonic()
        self._v_reg = 0.0  # what the regulator drives, before the load's current limit
        self._sink: PowerModuleEventSink | None = None
        self._faults: dict[FaultCode, str] = {}  # active faults and their details
        self.enabled = False
        self.setpoint_voltage_v = 0.0
        self.setpoint_current_a = 0.0
        self.temperature_c = AMBIENT_TEMPERATURE_C

    # --- the PowerModule protocol -------------------------------------------------------

    @property
    def capabilities(self) -> PowerModuleCapabilities:
        """Static limits of this power stage."""
        return self._capabilities

    @property
    def started(self) -> bool:
        """Whether faults are being reported to a sink."""
        return self._sink is not None

    async def start(self, sink: PowerModuleEventSink) -> None:
        """Switch the output off and report faults to `sink`, standing ones at once.

        Raises DriverError when already started.
        """
        if self._sink is not None:
            raise DriverError("power module already started")
        self._advance()
        self.enabled = False
        self._sink = sink
        for code, detail in self._faults.items():  # a new sink hears standing faults afresh
            sink(FaultEvent(code, True, detail))

    async def stop(self) -> None:
        """Switch the output off, then stop reporting (idempotent)."""
        self._advance()
        self.enabled = False
        self._sink = None

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        """Set the voltage setpoint and current limit; raises DriverError beyond capabilities."""
        self._require_started()
        check_setpoint(self._capabilities, voltage_v, current_a)
        self._advance()
        self.setpoint_voltage_v = voltage_v
        self.setpoint_current_a = current_a

    async def set_enabled(self, on: bool) -> None:
        """Switch the DC output on or off; raises DriverError when not started."""
        self._require_started()
        self._advance()
        self.enabled = on

    async def read(self) -> PowerModuleReading:
        """The output now; raises DriverError when not started."""
        self._require_started()
        voltage_v, current_a = self._output()
        flags = set(self._faults_as_flags())
        if not self.delivering:
            flags.add(FLAG_OUTPUT_OFF)
        return PowerModuleReading(
            voltage_v=voltage_v,
            current_a=current_a,
            output_on=self.delivering,
            temperature_c=self.temperature_c,
            flags=frozenset(flags),
        )

    # --- what a test or the simulator observes ------------------------------------------

    @property
    def delivering(self) -> bool:
        """Whether the DC side is on: enabled and no fault (the module protects itself)."""
        return self.enabled and not self._faults

    @property
    def output_voltage_v(self) -> float:
        """The voltage at the output terminals now."""
        return self._output()[0]

    @property
    def output_current_a(self) -> float:
        """The current into the load now."""
        return self._output()[1]

    @property
    def active_faults(self) -> frozenset[FaultCode]:
        """The faults the module reports now."""
        return frozenset(self._faults)

    # --- the world and fault injection (call on the event loop thread) ------------------

    def set_load(self, load_ohm: float | None) -> None:
        """Connect a resistive load (None: open circuit); raises ValueError for <= 0 ohm."""
        _check_load(load_ohm)
        self._advance()
        self._load_ohm = load_ohm

    def over_temperature(self, active: bool) -> None:
        """Overheat (95 degC, OVER_TEMPERATURE, output off) or cool down to 25 degC."""
        self._advance()
        self.temperature_c = OVERHEATED_TEMPERATURE_C if active else AMBIENT_TEMPERATURE_C
        detail = f"module temperature {self.temperature_c:g} degC" if active else ""
        self.inject_fault(FaultCode.OVER_TEMPERATURE, active, detail)

    def inject_fault(self, code: FaultCode, active: bool, detail: str = "") -> None:
        """Raise or clear a fault of the module; the output is off while any is active."""
        self._advance()
        if active == (code in self._faults):
            return
        if active:
            detail = self._faults[code] = detail or f"simulated {code}"
        else:
            del self._faults[code]
            detail = ""
        if self._sink is not None:
            self._sink(FaultEvent(code, active, detail))

    # --- the model ------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._sink is None:
            raise DriverError("power module not started")

    def _faults_as_flags(self) -> list[str]:
        return [str(code) for code in self._faults]

    def _advance(self) -> None:
        """Ramp the regulated voltage up to now (piecewise: state changes only after this)."""
        now = self._monotonic()
        dt_s, self._t = max(0.0, now - self._t), now
        target_v = min(self.setpoint_voltage_v, self._capabilities.max_voltage_v)
        if not self.delivering:
            target_v = 0.0
        step_v = self._ramp_v_per_s * dt_s
        if self._v_reg < target_v:
            self._v_reg = min(target_v, self._v_reg + step_v)
        else:
            self._v_reg = max(target_v, self._v_reg - step_v)

    def _output(self) -> tuple[float, float]:
        self._advance()
        v_reg, load_ohm = self._v_reg, self._load_ohm
        if load_ohm is None or v_reg <= 0.0:
            return v_reg, 0.0
        caps = self._capabilities
        limit_a = min(self.setpoint_current_a, caps.max_current_a, caps.max_power_w / v_reg)
        current_a = v_reg / load_ohm
        if current_a > limit_a:
            return limit_a * load_ohm, limit_a  # constant current: the voltage sags
        return v_reg, current_a


def check_setpoint(caps: PowerModuleCapabilities, voltage_v: float, current_a: float) -> None:
    """Raise DriverError unless the setpoint is within `caps` (0 V is always allowed)."""
    if not (math.isfinite(voltage_v) and math.isfinite(current_a)):
        raise DriverError(f"setpoint {voltage_v} V, {current_a} A is not a number")
    if not (voltage_v == 0 or caps.min_voltage_v <= voltage_v <= caps.max_voltage_v):
        raise DriverError(
            f"{voltage_v:g} V outside {caps.min_voltage_v:g}-{caps.max_voltage_v:g} V"
        )
    if not 0 <= current_a <= caps.max_current_a:
        raise DriverError(f"{current_a:g} A outside 0-{caps.max_current_a:g} A")
    if voltage_v * current_a > caps.max_power_w * (1 + 1e-9):  # a rounding slip is not beyond
        raise DriverError(f"{voltage_v * current_a:g} W above {caps.max_power_w:g} W")


def _check_load(load_ohm: float | None) -> None:
    if load_ohm is not None and not (math.isfinite(load_ohm) and load_ohm > 0.0):
        raise ValueError(f"load_ohm must be > 0 or None, got {load_ohm}")


class SimIsolationMonitor:
    """IsolationMonitor over a simulated insulation resistance; reports on every change.

    A real IMD reports cyclically; this one reports a reading when something changes
    (start, measuring on/off, the resistance, a device failure), which is all a consumer
    can learn from a cyclic report of the same model.
    """

    def __init__(
        self,
        *,
        resistance_ohm: float = 5_000_000.0,
        alarm_threshold_ohm: float = 100_000.0,
        warning_threshold_ohm: float = 500_000.0,
        self_test_s: float = 0.0,
    ) -> None:
        """An IMD not measuring; raises ValueError for thresholds or durations out of range."""
        _check_resistance(resistance_ohm)
        if not (math.isfinite(alarm_threshold_ohm) and alarm_threshold_ohm > 0.0):
            raise ValueError(f"alarm_threshold_ohm must be > 0, got {alarm_threshold_ohm}")
        if not (
            math.isfinite(warning_threshold_ohm) and warning_threshold_ohm >= alarm_threshold_ohm
        ):
            raise ValueError("warning_threshold_ohm must not be below the alarm threshold")
        if not (math.isfinite(self_test_s) and self_test_s >= 0.0):
            raise ValueError(f"self_test_s must be >= 0, got {self_test_s}")
        self._alarm_ohm = alarm_threshold_ohm
        self._warning_ohm = warning_threshold_ohm
        self._self_test_s = self_test_s
        self._sink: IsolationEventSink | None = None
        self._alarm = False
        self._self_test: asyncio.TimerHandle | None = None
        self.resistance_ohm = resistance_ohm
        self.measuring = False
        self.device_failure = False
        self.self_test_passes = True

    # --- the IsolationMonitor protocol ----------------------------------------------------

    @property
    def alarm_threshold_ohm(self) -> float:
        """The resistance below which the device raises its alarm."""
        return self._alarm_ohm

    @property
    def started(self) -> bool:
        """Whether events are being reported to a sink."""
        return self._sink is not None

    async def start(self, sink: IsolationEventSink) -> None:
        """Report to `sink` (a first reading at once, standing faults); not measuring yet.

        Raises DriverError when already started.
        """
        if self._sink is not None:
            raise DriverError("isolation monitor already started")
        self._sink, self._alarm = sink, False
        self._changed()

    async def stop(self) -> None:
        """Stop measuring and any self-test, then stop reporting (idempotent)."""
        self.measuring = False
        if self._self_test is not None:
            self._self_test.cancel()
            self._self_test = None
        self._sink = None

    async def set_measuring(self, on: bool) -> None:
        """Start or stop recurring measurements (idempotent); raises DriverError if stopped."""
        self._require_started()
        if on != self.measuring:
            self.measuring = on
            self._changed()

    async def start_self_test(self) -> None:
        """Run a self-test; its verdict arrives after `self_test_s` as an IsolationSelfTest.

        Raises DriverError when not started. A self-test already running starts over.
        """
        self._require_started()
        if self._self_test is not None:
            self._self_test.cancel()
        loop = asyncio.get_running_loop()
        self._self_test = loop.call_later(self._self_test_s, self._finish_self_test)

    # --- the world and fault injection (call on the event loop thread) --------------------

    def set_resistance(self, resistance_ohm: float) -> None:
        """Change the insulation resistance of the DC output; raises ValueError if < 0."""
        _check_resistance(resistance_ohm)
        if resistance_ohm != self.resistance_ohm:
            self.resistance_ohm = resistance_ohm
            self._changed()

    def set_device_failure(self, active: bool) -> None:
        """Let the device fail (no valid readings, ISOLATION_FAULT, self-tests fail) or heal."""
        if active != self.device_failure:
            self.device_failure = active
            self._changed()

    # --- the model ------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._sink is None:
            raise DriverError("isolation monitor not started")

    def _changed(self) -> None:
        """Report a reading of the model now, then the fault it implies if that changed."""
        sink = self._sink
        if sink is None:
            return
        valid = self.measuring and not self.device_failure
        ohm = self.resistance_ohm
        sink(IsolationReading(ohm, valid, warning=valid and ohm < self._warning_ohm))
        reasons: list[str] = []
        if valid and ohm < self._alarm_ohm:
            reasons.append(f"insulation {ohm:g} ohm below alarm threshold {self._alarm_ohm:g} ohm")
        if self.device_failure:
            reasons.append("IMD device failure")
        alarm = bool(reasons)
        if alarm != self._alarm:
            self._alarm = alarm
            sink(FaultEvent(FaultCode.ISOLATION_FAULT, alarm, "; ".join(reasons)))

    def _finish_self_test(self) -> None:
        self._self_test = None
        sink = self._sink
        if sink is None:
            return
        if self.device_failure:
            sink(IsolationSelfTest(False, "device reports a system failure"))
        elif not self.self_test_passes:
            sink(IsolationSelfTest(False, "self-test failed"))
        else:
            sink(IsolationSelfTest(True))


def _check_resistance(resistance_ohm: float) -> None:
    if not (math.isfinite(resistance_ohm) and resistance_ohm >= 0.0):
        raise ValueError(f"resistance_ohm must be >= 0, got {resistance_ohm}")
