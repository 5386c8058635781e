"""Fault injection into the reference MCU, at the far end of the wire.

`McuFaultInjection` is the part of `McuEmulator` (simulator/mcu_emulator.py) a test or
the emulator's console uses to break things: garbled frames either way, a deaf or silent
MCU, a reset, a welded or stuck-open contactor, an RCD trip, over temperature, a jammed
lock, a cable of any PP coding, a failing RCD self-test, unknown fault bits and a pilot
fault. Each injection only sets the condition; the firmware's own rules (McuEmulator's
`_apply`) decide what follows from it, exactly as they would on a board.

It must not decide anything about safety itself, and it must not import the agent.
"""

from __future__ import annotations

import time

from drivers.serial_mcu_protocol import FaultBit, ResetCause
from simulator.plant import Plant


class McuFaultInjection:
    """The emulated MCU's fault injections (mixed into McuEmulator, which owns the state)."""

    plant: Plant
    temperature_c: float
    cable_ampacity_a: int | None
    _garble_out: int
    _garble_in: int
    _injected_rx_errors: int
    _silent: bool
    _deaf: bool
    _unknown_bits: int
    _stuck_open: bool
    _pilot_fault: bool
    _fail_selftest: bool
    _jammed: bool
    _rcd_bits: int
    _next_lock_try_s: float

    def _clear_injections(self) -> None:
        """No fault injected (the state a new emulator starts in)."""
        self._garble_out = 0
        self._garble_in = 0
        self._injected_rx_errors = 0
        self._silent = False
        self._deaf = False
        self._unknown_bits = 0
        self._stuck_open = False
        self._pilot_fault = False
        self._fail_selftest = False
        self._jammed = False

    # -- provided by McuEmulator -----------------------------------------------------

    def _apply(self) -> None:
        """Drive pilot and coil from the firmware's rules; report what changed."""
        raise NotImplementedError

    def _notify(self) -> None:
        """Wake everyone waiting for a change."""
        raise NotImplementedError

    def _boot(self, cause: ResetCause) -> None:
        """Restart the firmware with this reset cause and announce BOOT."""
        raise NotImplementedError

    # -- fault injection -------------------------------------------------------------

    def garble_next(self, count: int = 1) -> None:
        """Corrupt the CRC of the next `count` frames the MCU sends."""
        self._garble_out += count

    def garble_incoming(self, count: int = 1) -> None:
        """Treat the next `count` frames from the agent as garbled (line noise)."""
        self._garble_in += count

    def set_deaf(self, deaf: bool) -> None:
        """Cut (or restore) the MCU's receive line: to it, the agent has gone silent."""
        self._deaf = deaf

    def set_silent(self, silent: bool) -> None:
        """Cut (or restore) the MCU's transmit line: it still hears the agent."""
        self._silent = silent
        self._notify()

    def reset(self, cause: ResetCause = ResetCause.WATCHDOG) -> None:
        """Reboot the firmware: everything granted is gone, BOOT is announced."""
        self._boot(cause)

    def weld_contactor(self, welded: bool) -> None:
        """Weld the contactor's contacts shut (or free them)."""
        self.plant.weld_contactor(welded)

    def stick_contactor_open(self, stuck: bool) -> None:
        """Make the contactor ignore its coil and stay open (or free it)."""
        self._stuck_open = stuck
        self._apply()

    def trip_rcd(self, dc: bool = True) -> None:
        """A residual current trips the RCD (DC 6 mA or AC 30 mA); the trip latches
        until the vehicle is disconnected or a self-test passes."""
        self._rcd_bits |= FaultBit.RCD_DC_6MA if dc else FaultBit.RCD_AC_30MA
        self._apply()

    def set_temperature(self, temperature_c: float) -> None:
        """Set the hottest sensor's reading (derating, then a trip with hysteresis)."""
        self.temperature_c = temperature_c
        self._apply()

    def jam_lock(self, jammed: bool) -> None:
        """Block (or free) the lock mechanically; a free lock is retried by the MCU."""
        self._jammed = jammed
        self._next_lock_try_s = time.monotonic()
        self._apply()

    def set_cable(self, ampacity_a: int | None) -> None:
        """Plug a cable of this ampacity into the socket (None: tethered, 0: none,
        0xFF: a PP resistance matching no coding)."""
        self.cable_ampacity_a = ampacity_a
        self._apply()

    def fail_selftests(self, failing: bool) -> None:
        """Make the RCD's self-test fail (or pass) from now on."""
        self._fail_selftest = failing

    def set_unknown_fault_bits(self, bits: int) -> None:
        """Report FAULTS bits this protocol version does not define (a newer firmware)."""
        self._unknown_bits = bits
        self._apply()

    def set_pilot_fault(self, active: bool) -> None:
        """Report a pilot fault the MCU detects by itself (e.g. a missing EV diode)."""
        self._pilot_fault = active
        self._apply()
