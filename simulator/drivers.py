"""Simulated drivers: the Protocols of drivers/interfaces.py implemented over a Plant.

Responsible for translating driver commands into changes of the plant and plant changes
into driver events, exactly as a real board, meter, lock or reader would: the agent runs on
these unchanged (DESIGN idea 7, "the simulator is a set of drivers plus a car"). A site
meter (`SimSiteMeter` over a `SiteLoad`) measures the grid connection point of a
simulated site: a base load, every EVSE's plant and a PV inverter.

Like every driver they are dumb and truthful: no IEC 61851 state machine and no OCPP here.
They must not import the agent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from drivers.interfaces import BoardEventSink, DriverError, FaultSink, TokenSink
from drivers.types import (
    BoardCapabilities,
    BoardEvent,
    ContactorEvent,
    FaultCode,
    MeterSample,
    PilotEvent,
    TokenRead,
    TokenType,
)
from simulator.plant import NOMINAL_VOLTAGE_V, PilotMode, Plant

_log = logging.getLogger(__name__)

GRID_FREQUENCY_HZ = 50.0


class SimBoardSupport:
    """BoardSupport over a plant: pilot, PWM and contactor of one simulated EVSE."""

    def __init__(self, plant: Plant, capabilities: BoardCapabilities) -> None:
        """Drive `plant` as a board with `capabilities`."""
        self._plant = plant
        self._capabilities = capabilities
        self._sink: BoardEventSink | None = None

    @property
    def capabilities(self) -> BoardCapabilities:
        """Static limits of this EVSE's power path."""
        return self._capabilities

    @property
    def plant(self) -> Plant:
        """The plant this board drives."""
        return self._plant

    @property
    def started(self) -> bool:
        """Whether events are being reported to a sink."""
        return self._sink is not None

    async def start(self, sink: BoardEventSink) -> None:
        """Report events to `sink`, starting with the pilot state (and contactor, faults).

        Raises DriverError when already started.
        """
        if self._sink is not None:
            raise DriverError("board already started")
        self._sink = sink
        sink(PilotEvent(self._plant.pilot_state))
        if self._capabilities.has_contactor_feedback:
            sink(ContactorEvent(self._plant.contactor_closed))
        for fault in self._plant.fault_events():
            sink(fault)
        self._plant.subscribe(self._forward)

    async def stop(self) -> None:
        """Open the contactor, hold the pilot at +12 V, then stop reporting."""
        self._plant.set_contactor(False)
        self._plant.set_pilot(PilotMode.OFF)
        self._plant.unsubscribe(self._forward)
        self._sink = None

    async def pwm_on(self, duty_percent: float) -> None:
        """Oscillate the pilot with this duty; raises DriverError for a duty off 0..100."""
        if not (math.isfinite(duty_percent) and 0.0 <= duty_percent <= 100.0):
            raise DriverError(f"duty_percent must be within 0..100, got {duty_percent}")
        self._plant.set_pilot(PilotMode.PWM, duty_percent)

    async def pwm_off(self) -> None:
        """Hold the pilot at a constant +12 V."""
        self._plant.set_pilot(PilotMode.OFF)

    async def pwm_f(self) -> None:
        """Drive the pilot to -12 V (state F)."""
        self._plant.set_pilot(PilotMode.F)

    async def set_contactor(self, closed: bool) -> None:
        """Close or open the contactor; feedback arrives as a ContactorEvent."""
        self._plant.set_contactor(closed)

    async def set_phases(self, phases: int) -> None:
        """Switch the supply to 1 or 3 phases (PhaseSwitchingBoard).

        Raises DriverError when the board cannot switch (capabilities), for a count it does
        not have, or while the contactor is closed: like a board whose phase relay is
        interlocked with the contactor, it never switches under load.
        """
        if not self._capabilities.can_switch_phases:
            raise DriverError("this board cannot switch phases")
        if phases not in (1, 3) or phases > self._capabilities.phases:
            raise DriverError(f"cannot switch to {phases} phase(s)")
        if self._plant.contactor_closed:
            raise DriverError("will not switch phases with the contactor closed")
        self._plant.set_supply_phases(phases)

    def _forward(self, event: BoardEvent) -> None:
        sink = self._sink
        if sink is None:
            return
        if isinstance(event, ContactorEvent) and not self._capabilities.has_contactor_feedback:
            # Without a mirror contact a board can only repeat what it commanded.
            event = ContactorEvent(self._plant.contactor_commanded)
        sink(event)


class SimPowerMeter:
    """PowerMeter over a plant: reads the plant's energy register and power path."""

    def __init__(self, plant: Plant) -> None:
        """Meter the output of `plant`."""
        self._plant = plant

    async def read(self) -> MeterSample:
        """Step the plant and return a reading; raises DriverError while METER_LOST is active."""
        plant = self._plant
        plant.step()
        if plant.has_fault(FaultCode.METER_LOST):
            raise DriverError("meter does not answer")
        ev = plant.ev
        sample = MeterSample(
            energy_import_wh=plant.energy_import_wh,
            power_w=plant.power_w,
            current_a=plant.current_a,
            voltage_v=plant.voltage_v,
            frequency_hz=GRID_FREQUENCY_HZ,
            soc_percent=ev.soc_percent if ev is not None else None,
        )
        try:
            plant.save_register()
        except OSError:
            # The reading itself is good; losing the register file is the simulator's
            # problem, not the agent's, so it is logged rather than raised.
            _log.exception("could not persist the simulated meter register")
        return sample


class SiteLoad:
    """The grid connection point of a simulated site: a base load on each phase, the
    EVSEs' plants, and a PV inverter feeding in (spread over three phases).

    Currents are signed: negative on a phase that exports. Tests and the simulator change
    `base_load_a` and `pv_w` while it runs; `plants` may be filled in after the EVSEs are
    built.
    """

    def __init__(
        self,
        plants: Sequence[Plant] = (),
        *,
        base_load_a: tuple[float, float, float] = (0.0, 0.0, 0.0),
        pv_w: float = 0.0,
        voltage_v: float = NOMINAL_VOLTAGE_V,
    ) -> None:
        self.plants: list[Plant] = list(plants)
        self.base_load_a = base_load_a
        self.pv_w = pv_w
        self.voltage_v = voltage_v

    def evse_currents_a(self) -> tuple[float, float, float]:
        """What the EVSEs draw together, per phase."""
        totals = [0.0, 0.0, 0.0]
        for plant in self.plants:
            for phase, current in enumerate(plant.current_a):
                totals[phase] += current
        return (totals[0], totals[1], totals[2])

    def currents_a(self) -> tuple[float, float, float]:
        """The current at the connection point per phase (negative: export)."""
        pv_a = self.pv_w / (3 * self.voltage_v)
        evses = self.evse_currents_a()
        l1, l2, l3 = (b + e - pv_a for b, e in zip(self.base_load_a, evses, strict=True))
        return (l1, l2, l3)

    def power_w(self) -> float:
        """Active power at the connection point (negative: export)."""
        return sum(current * self.voltage_v for current in self.currents_a())


class SimSiteMeter:
    """PowerMeter at a simulated site's grid connection point (a `SiteLoad`).

    Currents are signed (negative: export), the registers integrate over `monotonic`
    seconds scaled by `time_scale`; `failing` makes every read raise DriverError.
    """

    def __init__(
        self,
        site: SiteLoad,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
    ) -> None:
        self.site = site
        self.failing = False
        self.reads = 0
        self._monotonic = monotonic
        self._time_scale = time_scale
        self._last_s = monotonic()
        self._import_wh = 0.0
        self._export_wh = 0.0

    async def read(self) -> MeterSample:
        """A reading of the connection point now; raises DriverError while `failing`."""
        self.reads += 1
        if self.failing:
            raise DriverError("site meter does not answer")
        now_s = self._monotonic()
        elapsed_s, self._last_s = max(0.0, now_s - self._last_s) * self._time_scale, now_s
        power_w = self.site.power_w()
        if power_w >= 0:
            self._import_wh += power_w * elapsed_s / 3600.0
        else:
            self._export_wh -= power_w * elapsed_s / 3600.0
        voltage = self.site.voltage_v
        return MeterSample(
            energy_import_wh=self._import_wh,
            power_w=power_w,
            current_a=self.site.currents_a(),
            voltage_v=(voltage, voltage, voltage),
            energy_export_wh=self._export_wh,
            frequency_hz=GRID_FREQUENCY_HZ,
        )


class SimConnectorLock:
    """ConnectorLock over a plant: confirms every command unless jammed."""

    def __init__(self, plant: Plant) -> None:
        """A lock on the socket outlet of `plant`'s EVSE, unlocked and free to move."""
        self._plant = plant
        self._locked = False
        self.jammed = False

    @property
    def locked(self) -> bool:
        """The lock's feedback: whether the pin is engaged."""
        return self._locked

    async def set_locked(self, locked: bool) -> bool:
        """Drive the lock; False (and no movement) while jammed or LOCK_FAILURE is active."""
        if self.jammed or self._plant.has_fault(FaultCode.LOCK_FAILURE):
            return self._locked == locked
        self._locked = locked
        return True


class SimTokenReader:
    """TokenReader fed by `tap()`: a card presented at a simulated reader."""

    def __init__(
        self, *, debounce_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """A stopped reader that drops repeats of a token within `debounce_s` seconds."""
        if not (math.isfinite(debounce_s) and debounce_s >= 0.0):
            raise ValueError(f"debounce_s must be >= 0, got {debounce_s}")
        self._debounce_s = debounce_s
        self._monotonic = monotonic
        self._sink: TokenSink | None = None
        self._last_delivered_s: dict[TokenRead, float] = {}

    @property
    def started(self) -> bool:
        """Whether taps are being delivered."""
        return self._sink is not None

    async def start(self, sink: TokenSink, faults: FaultSink | None = None) -> None:
        """Deliver future taps to `sink`; raises DriverError when already started."""
        if self._sink is not None:
            raise DriverError("token reader already started")
        self._sink = sink

    async def stop(self) -> None:
        """Stop delivering taps (idempotent)."""
        self._sink = None

    def tap(self, id_token: str, token_type: TokenType = TokenType.ISO14443) -> bool:
        """Present a token; return whether it was delivered (not stopped, not a repeat)."""
        sink = self._sink
        if sink is None:
            return False
        read = TokenRead(id_token=id_token, token_type=token_type)
        now_s = self._monotonic()
        # Forget taps older than the window so the table stays as small as the window.
        self._last_delivered_s = {
            seen: at_s
            for seen, at_s in self._last_delivered_s.items()
            if now_s - at_s < self._debounce_s
        }
        last_s = self._last_delivered_s.get(read)
        if last_s is not None and now_s - last_s < self._debounce_s:
            return False
        self._last_delivered_s[read] = now_s
        sink(read)
        return True
