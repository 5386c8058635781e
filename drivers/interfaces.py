"""The hardware contract: what every driver, real or simulated, provides.

Semantics every implementation must honour (the contract suites in tests/contract
check them over every implementation):

* Commands are idempotent: sending the same command twice has the effect of once.
* A driver reports facts, not interpretations: pilot levels, mirror contacts, fault
  conditions. No IEC 61851 state machine and no OCPP inside a driver.
* Events go to the sink given to `start()`. The sink must be called on the event loop
  thread; a driver that reads hardware in a thread hands events over with
  `loop.call_soon_threadsafe`.
* After `start()`, a board reports the current pilot state at once (one `PilotEvent`),
  and the contactor state if it has feedback.
* Faults are `FaultEvent`s from the closed catalogue in drivers.types. An exception from a
  command means "could not carry out", never "the hardware is in a fault state".
* `pwm_on` while already oscillating changes the duty without a gap; the driver does not
  remember a duty across `pwm_off`/`pwm_f`: the caller passes it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from drivers.types import (
    BoardCapabilities,
    BoardEvent,
    FaultEvent,
    IsolationEvent,
    MeterSample,
    PowerModuleCapabilities,
    PowerModuleReading,
    TokenRead,
)


class DriverError(Exception):
    """A driver could not carry out a command or a reading."""


BoardEventSink = Callable[[BoardEvent], None]
TokenSink = Callable[[TokenRead], None]
FaultSink = Callable[[FaultEvent], None]
PowerModuleEventSink = Callable[[FaultEvent], None]
IsolationEventSink = Callable[[IsolationEvent], None]


@runtime_checkable
class BoardSupport(Protocol):
    """Pilot, PWM and contactor of one EVSE (the EVSE board, or one channel of it)."""

    @property
    def capabilities(self) -> BoardCapabilities:
        """Static limits of this EVSE's power path."""
        ...

    async def start(self, sink: BoardEventSink) -> None:
        """Begin reporting events to `sink`; reports the current pilot state at once."""
        ...

    async def stop(self) -> None:
        """Stop reporting, open the contactor and leave the pilot at +12 V."""
        ...

    async def pwm_on(self, duty_percent: float) -> None:
        """Oscillate the pilot at 1 kHz with this duty cycle (state x2)."""
        ...

    async def pwm_off(self) -> None:
        """Hold the pilot at a constant +12 V (state x1)."""
        ...

    async def pwm_f(self) -> None:
        """Drive the pilot to -12 V: the EVSE is not available (state F)."""
        ...

    async def set_contactor(self, closed: bool) -> None:
        """Close or open the power contactor; feedback arrives as a ContactorEvent."""
        ...


@runtime_checkable
class PhaseSwitchingBoard(Protocol):
    """A board that can switch its supply between 1 and 3 phases
    (BoardCapabilities.can_switch_phases); the core switches only with the contactor
    open and the pilot at +12 V."""

    async def set_phases(self, phases: int) -> None:
        """Switch the supply to `phases` (1 or 3); raises DriverError on failure."""
        ...


@runtime_checkable
class PowerMeter(Protocol):
    """An energy meter on one EVSE's output."""

    async def read(self) -> MeterSample:
        """Return a fresh reading; raises DriverError when the meter does not answer."""
        ...


@runtime_checkable
class ConnectorLock(Protocol):
    """The motor lock that holds the plug in a socket outlet."""

    async def set_locked(self, locked: bool) -> bool:
        """Drive the lock; return whether the feedback confirms the requested state."""
        ...


@runtime_checkable
class TokenReader(Protocol):
    """An RFID/NFC reader, keypad or other source of tokens at the charger."""

    async def start(self, sink: TokenSink, faults: FaultSink | None = None) -> None:
        """Begin reporting presented tokens to `sink` (debounced by the driver), and the
        reader's own failures (FaultCode.READER_FAILURE) to `faults`."""
        ...

    async def stop(self) -> None:
        """Stop reading."""
        ...


@runtime_checkable
class PowerModule(Protocol):
    """A DC power stage (one or more AC/DC modules acting as one output).

    The module converts; it does not decide. Setpoints are absolute, so sending one twice
    has the effect of once. A module that stops answering, or reports an internal fault,
    is a FaultEvent to the sink (POWER_MODULE_FAULT, OVER_TEMPERATURE, ...); the caller
    decides whether to switch it off and open the DC contactors.
    """

    @property
    def capabilities(self) -> PowerModuleCapabilities:
        """Static limits of this power stage."""
        ...

    async def start(self, sink: PowerModuleEventSink) -> None:
        """Begin talking to the module and reporting faults to `sink`; the output stays off."""
        ...

    async def stop(self) -> None:
        """Switch the output off, then stop reporting."""
        ...

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        """Set the voltage setpoint and current limit; raises DriverError beyond capabilities."""
        ...

    async def set_enabled(self, on: bool) -> None:
        """Switch the DC output on or off."""
        ...

    async def read(self) -> PowerModuleReading:
        """A fresh reading of the output; raises DriverError when the module does not answer."""
        ...


@runtime_checkable
class IsolationMonitor(Protocol):
    """An insulation monitoring device (IEC 61557-8) on a DC output.

    Readings (IsolationReading, resistance in ohms) go to the sink as the device reports
    them. A resistance below the device's alarm threshold, a device failure or a silent
    device is FaultEvent(ISOLATION_FAULT); it clears when the condition does.
    """

    @property
    def alarm_threshold_ohm(self) -> float:
        """The resistance below which the device raises its alarm."""
        ...

    async def start(self, sink: IsolationEventSink) -> None:
        """Begin reporting to `sink`; does not start measuring."""
        ...

    async def stop(self) -> None:
        """Stop measuring, then stop reporting."""
        ...

    async def set_measuring(self, on: bool) -> None:
        """Start or stop recurring insulation measurements (idempotent)."""
        ...

    async def start_self_test(self) -> None:
        """Ask the device for a self-test; the verdict arrives as an IsolationSelfTest."""
        ...
