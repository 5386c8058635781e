"""Simulated drivers: the Protocols of drivers/interfaces.py implemented over a Plant.

Responsible for translating driver commands into changes of the plant and plant changes
into driver events, exactly as a real board, meter, lock or reader would: the agent runs on
these unchanged (DESIGN idea 7, "the simulator is a set of drivers plus a car").

Like every driver they are dumb and truthful: no IEC 61851 state machine and no OCPP here.
They must not import the agent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

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
from simulator.plant import PilotMode, Plant

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
