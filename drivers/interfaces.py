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

from drivers.types import BoardCapabilities, BoardEvent, MeterSample, TokenRead


class DriverError(Exception):
    """A driver could not carry out a command or a reading."""


BoardEventSink = Callable[[BoardEvent], None]
TokenSink = Callable[[TokenRead], None]


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

    async def start(self, sink: TokenSink) -> None:
        """Begin reporting presented tokens to `sink` (debounced by the driver)."""
        ...

    async def stop(self) -> None:
        """Stop reading."""
        ...
