"""CAN device emulators: an Infypower REG-series DC module and a Bender iso165C-style IMD.

Responsible for being the far end of drivers/can_power.py in tests and local trials, on
python-can's `virtual` interface (any interface works): real frames on a real bus object,
answered as docs/can-power-module.md says the devices answer. The frames are encoded here
independently of drivers/can_frames.py, so an encoding slip on one side shows up as a
failing test instead of cancelling out.

* `InfyModulePeer` answers reads 0x03 (V/I), 0x04 (status), 0x0A (capabilities), takes
  0x1A (on/off) and 0x1C (setpoints), and models its output: the voltage ramps towards the
  setpoint at `ramp_v_per_s`, a resistive load draws current, limited by the current
  setpoint and the rated power (the voltage then sags: constant-current mode). Faults are
  injected as the module's own flags; a protective one (over-temperature, input
  under-voltage, ...) switches the output off until it clears, then the output resumes if
  still commanded on (an emulator choice: the real resume behaviour is not documented).
  Like the real module it switches off after `watchdog_s` without a controller message.
* `Iso165cPeer` sends IMD_Info every `info_period_s`, answers IMD_Request with
  IMD_Response, keeps thresholds, measuring on/off, lock and a timed self-test.

Both run on python-can threads and guard their state with one condition variable; a test
awaits a state with `await peer.wait_until(predicate)` instead of sleeping. Time is
injected (`monotonic`) so the output model can be driven by a fake clock. It must not
import the agent or the drivers it plays against.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import can

Monotonic = Callable[[], float]

#: Status flag (byte, bit) positions of the 0x04 answer (V1.13).
FLAG_BITS: dict[str, tuple[int, int]] = {
    "output_short_current": (7, 0),
    "sleeping": (7, 4),
    "discharge_abnormal": (7, 5),
    "dc_side_off": (6, 0),
    "fault_alarm": (6, 1),
    "protection_alarm": (6, 2),
    "fan_fault_alarm": (6, 3),
    "over_temperature_alarm": (6, 4),
    "output_over_voltage_alarm": (6, 5),
    "walk_in_enable": (6, 6),
    "communication_interrupt_alarm": (6, 7),
    "power_limit_status": (5, 0),
    "id_repeat_alarm": (5, 1),
    "load_sharing_alarm": (5, 2),
    "input_phase_lost_alarm": (5, 3),
    "input_unbalanced_alarm": (5, 4),
    "input_low_voltage_alarm": (5, 5),
    "input_over_voltage_protection": (5, 6),
    "pfc_side_off": (5, 7),
}

#: Flags under which the emulated module stops delivering.
PROTECTIVE = frozenset(
    {
        "output_short_current",
        "fault_alarm",
        "protection_alarm",
        "over_temperature_alarm",
        "output_over_voltage_alarm",
        "input_phase_lost_alarm",
        "input_low_voltage_alarm",
        "input_over_voltage_protection",
    }
)


class _Peer:
    """A device on a bus: its own Bus and Notifier, state under one condition variable."""

    def __init__(self, channel: str, interface: str) -> None:
        self.channel = channel
        self.interface = interface
        self._cond = threading.Condition()  # an RLock inside: properties may re-enter
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self.received: list[can.Message] = []

    def open(self) -> Self:
        """Join the bus and start answering."""
        self._bus = can.Bus(interface=self.interface, channel=self.channel, ignore_config=True)
        self._notifier = can.Notifier(self._bus, [self._on_message], timeout=0.05)
        return self

    def close(self) -> None:
        """Stop answering and leave the bus."""
        if self._notifier is not None:
            self._notifier.stop()
        if self._bus is not None:
            self._bus.shutdown()
        self._bus = self._notifier = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def wait_until(self, predicate: Callable[[Any], bool], timeout_s: float = 2.0) -> None:
        """Return once `predicate(self)` holds; raises TimeoutError after `timeout_s`."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: predicate(self), timeout_s)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"{type(self).__name__}: condition not met in {timeout_s} s")

    def _on_message(self, msg: can.Message) -> None:
        with self._cond:
            self.received.append(msg)
            self._handle(msg)
            self._cond.notify_all()

    def _handle(self, msg: can.Message) -> None:
        raise NotImplementedError

    def _send(self, arbitration_id: int, data: bytes, *, extended: bool) -> None:
        if self._bus is not None:
            self._bus.send(
                can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=extended)
            )

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()


class InfyModulePeer(_Peer):
    """An Infypower REG-series module (protocol V1.13) with an output model."""

    def __init__(
        self,
        channel: str,
        *,
        address: int = 0,
        controller_address: int = 0xF0,
        max_voltage_v: float = 1000.0,
        min_voltage_v: float = 150.0,
        max_current_a: float = 100.0,
        rated_power_w: float = 30_000.0,
        ramp_v_per_s: float = 1000.0,
        load_ohm: float | None = None,
        watchdog_s: float = 10.0,
        monotonic: Monotonic = time.monotonic,
        interface: str = "virtual",
    ) -> None:
        """A module at `address`, answering the controller at `controller_address`."""
        super().__init__(channel, interface)
        self.address = address
        self.controller_address = controller_address
        self.max_voltage_v = max_voltage_v
        self.min_voltage_v = min_voltage_v
        self.max_current_a = max_current_a
        self.rated_power_w = rated_power_w
        self.ramp_v_per_s = ramp_v_per_s
        self.watchdog_s = watchdog_s
        self._monotonic = monotonic
        self._load_ohm = load_ohm
        self._t = monotonic()
        self._last_controller = self._t
        self._v_reg = 0.0
        self.commanded_on = False
        self.setpoint_voltage_v = 0.0
        self.setpoint_current_a = 0.0
        self.temperature_c = 25
        self.flags: set[str] = set()
        self.silent = False
        self.garbled = False
        self.refused: set[int] = set()

    # --- what a test observes ---------------------------------------------------------

    @property
    def output_voltage_v(self) -> float:
        """The voltage at the output terminals now."""
        return self._output()[0]

    @property
    def output_current_a(self) -> float:
        """The current into the load now."""
        return self._output()[1]

    @property
    def delivering(self) -> bool:
        """Whether the DC side is on (commanded on, and no protective flag)."""
        with self._cond:
            self._advance()
            return self.commanded_on and not (self.flags & PROTECTIVE)

    def commands(self, command: int) -> list[can.Message]:
        """The frames received from the controller with this command number."""
        with self._cond:
            return [m for m in self.received if (m.arbitration_id >> 16) & 0x3F == command]

    # --- fault injection and the world ------------------------------------------------

    def set_flag(self, name: str, active: bool) -> None:
        """Raise or clear one of the module's own status flags (see FLAG_BITS)."""
        if name not in FLAG_BITS:
            raise KeyError(name)
        with self._cond:
            self._advance()
            (self.flags.add if active else self.flags.discard)(name)
        self._changed()

    def over_temperature(self, active: bool) -> None:
        """Overheat (95 degC, output off) or cool down (25 degC)."""
        with self._cond:
            self.temperature_c = 95 if active else 25
        self.set_flag("over_temperature_alarm", active)

    def input_under_voltage(self, active: bool) -> None:
        """Let the AC input sag below the module's limit (output off), or recover."""
        self.set_flag("input_low_voltage_alarm", active)

    def silence(self, active: bool) -> None:
        """Stop answering anything (a cut bus or a dead module), or resume."""
        with self._cond:
            self.silent = active
        self._changed()

    def garble(self, active: bool) -> None:
        """Answer with truncated 3-byte frames, or normally again."""
        with self._cond:
            self.garbled = active
        self._changed()

    def refuse(self, command: int, active: bool) -> None:
        """Answer `command` with error code 3 (data invalid) instead of data, or normally."""
        with self._cond:
            (self.refused.add if active else self.refused.discard)(command)
        self._changed()

    def set_load(self, load_ohm: float | None) -> None:
        """Connect a resistive load (None: open circuit)."""
        with self._cond:
            self._advance()
            self._load_ohm = load_ohm
        self._changed()

    # --- the model ----------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._monotonic()
        dt, self._t = max(0.0, now - self._t), now
        if self.commanded_on and now - self._last_controller > self.watchdog_s:
            self.commanded_on = False  # V1.13: off after 10 s without a controller message
        on = self.commanded_on and not (self.flags & PROTECTIVE)
        target = min(self.setpoint_voltage_v, self.max_voltage_v) if on else 0.0
        step = self.ramp_v_per_s * dt
        if self._v_reg < target:
            self._v_reg = min(target, self._v_reg + step)
        else:
            self._v_reg = max(target, self._v_reg - step)

    def _output(self) -> tuple[float, float]:
        with self._cond:
            self._advance()
            v_reg, load = self._v_reg, self._load_ohm
            if load is None or v_reg <= 0.0:
                return v_reg, 0.0
            limit_a = min(self.setpoint_current_a, self.max_current_a, self.rated_power_w / v_reg)
            current_a = v_reg / load
            if current_a > limit_a:
                return limit_a * load, limit_a  # constant-current: the voltage sags
            return v_reg, current_a

    # --- the wire -----------------------------------------------------------------------

    def _handle(self, msg: can.Message) -> None:
        if not msg.is_extended_id:
            return
        ident = msg.arbitration_id
        command = (ident >> 16) & 0x3F
        if (ident >> 8) & 0xFF != self.address or ident & 0xFF != self.controller_address:
            return
        self._advance()
        self._last_controller = self._t
        if self.silent:
            return
        data = bytes(msg.data)
        if command in self.refused:
            self._answer(command, bytes(8), error_code=0x03)
        elif command == 0x03:
            self._answer(command, struct.pack(">ff", *self._output()))
        elif command == 0x04:
            self._answer(command, self._status_payload())
        elif command == 0x0A:
            self._answer(
                command,
                struct.pack(
                    ">HHHH",
                    round(self.max_voltage_v),
                    round(self.min_voltage_v),
                    round(self.max_current_a * 10),
                    round(self.rated_power_w / 10),
                ),
            )
        elif command == 0x1A and len(data) == 8:
            self.commanded_on = data[0] == 0x00
        elif command == 0x1C and len(data) == 8:
            voltage_mv, current_ma = struct.unpack(">II", data)
            self.setpoint_voltage_v = voltage_mv / 1000
            self.setpoint_current_a = current_ma / 1000
        else:
            self._answer(command, bytes(8), error_code=0x02)  # command invalid

    def _status_payload(self) -> bytes:
        payload = bytearray(8)
        payload[4] = self.temperature_c & 0xFF
        flags = set(self.flags)
        if not (self.commanded_on and not (self.flags & PROTECTIVE)):
            flags.add("dc_side_off")
        for name in flags:
            byte, bit = FLAG_BITS[name]
            payload[byte] |= 1 << bit
        return bytes(payload)

    def _answer(self, command: int, payload: bytes, error_code: int = 0) -> None:
        ident = (
            error_code << 26
            | 0x0A << 22
            | command << 16
            | self.controller_address << 8
            | self.address
        )
        self._send(ident, payload[:3] if self.garbled else payload, extended=True)


class Iso165cPeer(_Peer):
    """A Bender iso165C-style IMD: cyclic IMD_Info 0x37, IMD_Request 0x22 / Response 0x23."""

    def __init__(
        self,
        channel: str,
        *,
        resistance_ohm: float = 5_000_000.0,
        info_period_s: float = 1.0,
        self_test_s: float = 0.1,
        monotonic: Monotonic = time.monotonic,
        interface: str = "virtual",
    ) -> None:
        """An IMD that measures `resistance_ohm`, locked, not measuring, self-test not run."""
        super().__init__(channel, interface)
        self.info_period_s = info_period_s
        self.self_test_s = self_test_s
        self._monotonic = monotonic
        self.resistance_ohm = resistance_ohm
        self.measuring = False
        self.locked = True
        self.alarm_threshold_kohm = 100
        self.warning_threshold_kohm = 500
        self.self_test_until: float | None = None
        self.self_test_done = False
        self.chassis_fault = False
        self.system_failure = False
        self.silent = False
        self.infos_sent = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def open(self) -> Self:
        """Join the bus, start answering and sending IMD_Info."""
        super().open()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="iso165c-info", daemon=True)
        self._ticker.start()
        return self

    def close(self) -> None:
        """Stop sending and answering, and leave the bus."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        super().close()

    def set(self, **state: Any) -> None:
        """Change the device or the world: resistance_ohm, chassis_fault, system_failure, silent."""
        with self._cond:
            for name, value in state.items():
                if name not in ("resistance_ohm", "chassis_fault", "system_failure", "silent"):
                    raise KeyError(name)
                setattr(self, name, value)
        self._changed()

    def _tick(self) -> None:
        while not self._stop.wait(self.info_period_s):
            with self._cond:
                if not self.silent:
                    self._send(0x37, self._info(), extended=False)
                    self.infos_sent += 1
                self._cond.notify_all()

    def _info(self) -> bytes:
        now = self._monotonic()
        if self.self_test_until is not None and now >= self.self_test_until:
            self.self_test_until = None
            self.self_test_done = True
        kohm = min(0xFFFF, round(self.resistance_ohm / 1000))
        imc = 0
        if self.measuring and kohm < self.alarm_threshold_kohm:
            imc |= 1 << 0
        if self.chassis_fault:
            imc |= 1 << 1
        if self.system_failure:
            imc |= 1 << 2
        if self.self_test_until is not None:
            imc |= 1 << 4
        if self.measuring and kohm < self.warning_threshold_kohm:
            imc |= 1 << 5
        vifc = 1 << 13  # the parameter-configuration self-test is never run here
        if not self.measuring:
            vifc |= 1 << 0 | 1 << 8  # measurement off, value outdated
        if not self.self_test_done:
            vifc |= 1 << 12
        return struct.pack("<HHH", kohm, imc, vifc) + bytes(2)

    def _handle(self, msg: can.Message) -> None:
        if msg.is_extended_id or msg.arbitration_id != 0x22 or len(msg.data) < 5:
            return
        if self.silent:
            return
        command, word1, word2 = struct.unpack_from("<BHH", bytes(msg.data))
        if command == 0xCA:
            self.locked = word1 == 1
        elif command == 0x28 and not self.locked:
            self.alarm_threshold_kohm = word1
        elif command == 0x29 and not self.locked:
            self.warning_threshold_kohm = word1
        elif command == 0xCB:
            self.measuring = word1 == 1
        elif command == 0x21 and word1 == 1:
            self.self_test_until = self._monotonic() + self.self_test_s
            self.self_test_done = False
        self._send(0x23, struct.pack("<BHH", command, word1, word2) + bytes(3), extended=False)
