"""The reference MCU: docs/serial-mcu-protocol.md spoken over a pty, in front of a Plant.

Responsible for behaving as a board vendor's firmware must: it owns electrical safety and
enforces the rules of the spec on its own (contactor open without the agent's permission,
on permission lapse, on an RCD trip, over temperature, without a usable cable, and with
the pilot outside C/D when the interlock is fitted), clamps the PWM to the cable's
ampacity and the temperature derating, acknowledges, retransmits and heartbeats, and
reports pilot, contactor mirror, faults, PP, lock and temperature. The pilot line,
contactor and car are a simulator Plant (and SimEv), so the emulator is "an MCU in front
of the plant".

Faults are injected here, at the far end of the wire: garbled frames either way,
silence, a reset, a welded or stuck-open contactor, an RCD trip, over temperature, a
jammed lock, a failing RCD self-test, a pilot fault (the injection methods are in
simulator/mcu_emulator_faults.py).

It runs on an asyncio loop (`loop.add_reader` on the pty master; a ticker task for
heartbeats, retransmissions, the permission lapse and lock retries). It must not import
the agent, and it shares only the pure codec (drivers/serial_mcu_protocol.py) with the
agent's driver. `python -m simulator.mcu_emulator` prints the pty's slave path for
`cpagent run` and takes fault injections on stdin (simulator/mcu_emulator_console.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import tty
from collections import deque
from collections.abc import Callable

from drivers.serial_mcu_protocol import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_TIMEOUT_MS,
    NO_CURRENT_LIMIT,
    SNAPSHOT,
    Ack,
    Boot,
    Contactor,
    FaultBit,
    Faults,
    Feature,
    Frame,
    FrameReader,
    Heartbeat,
    HeartbeatFlag,
    Hello,
    Ident,
    Lock,
    LockPosition,
    LockResult,
    Message,
    MessageError,
    Mirror,
    MsgType,
    Pilot,
    PilotLevel,
    PilotMode,
    Pp,
    RcdSelfTest,
    ResetCause,
    SelfTest,
    SelfTestResult,
    SetContactor,
    SetLock,
    SetPwm,
    Temperature,
    Unknown,
    encode_body,
    frame_of,
    is_sequenced,
    next_seq,
    unpack,
    wire_bytes,
)
from drivers.types import BoardEvent, PilotState
from simulator.mcu_emulator_faults import McuFaultInjection
from simulator.plant import PilotMode as PlantPilot
from simulator.plant import Plant, offered_current_a

FIRMWARE = (1, 0, 0)
FEATURES = Feature.CONTACTOR_MIRROR | Feature.LOCK | Feature.RCD | Feature.PP | Feature.TEMPERATURE
#: PP resistor per cable ampacity (IEC 61851-1 Table B.2, nominal values).
PP_RESISTANCE_OHM = {13: 1500, 20: 680, 32: 220, 63: 100}
#: Pilot plateau levels the EVSE side measures, by state (IEC 61851-1 Table A.4, nominal).
PILOT_HIGH_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0, "F": -12000}
_READY = (PilotState.C, PilotState.D)
#: Reports waiting for their turn; the oldest go when nobody listens (HELLO resends all).
MAX_PENDING_REPORTS = 64


def _duty_permille_for_current(current_a: float) -> int:
    """The duty offering `current_a` (IEC 61851-1 Table A.7), in 0.1 %."""
    if current_a <= 51.0:
        return round(max(current_a, 6.0) / 0.6 * 10)
    return round((min(current_a, 80.0) / 2.5 + 64.0) * 10)


class McuEmulator(McuFaultInjection):
    """One EVSE's MCU firmware, emulated, speaking protocol version 1 over a pty.

    Observe it through `plant`, `contactor_closed`, `pilot_mode`, `fault_bits` and the
    attributes `coil_on`, `session_active` (HELLO received, no lapse since),
    `permission_lapsed` and `lock_position`; they are the firmware's, not to be set.
    """

    def __init__(
        self,
        plant: Plant | None = None,
        *,
        interlock: bool = True,
        cable_ampacity_a: int | None = None,
        board_current_a: float = 32.0,
        lock_retry_s: float = 2.0,
        trip_temperature_c: float = 85.0,
        reset_temperature_c: float = 75.0,
        derate_from_c: float = 60.0,
        derate_to_c: float = 80.0,
    ) -> None:
        """An MCU in front of `plant`; `interlock=False` is a board without the pilot
        interlock (it closes on permission alone), `cable_ampacity_a` None a tethered
        cable (PP not applicable)."""
        self.plant = plant if plant is not None else Plant()
        self.interlock = interlock
        self.board_current_a = board_current_a
        self.lock_retry_s = lock_retry_s
        self.trip_temperature_c = trip_temperature_c
        self.reset_temperature_c = reset_temperature_c
        self.derate_from_c = derate_from_c
        self.derate_to_c = derate_to_c
        self.cable_ampacity_a = cable_ampacity_a
        self.temperature_c = 25.0
        self.frames_received = 0
        self.malformed = 0
        self.boots = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_path = ""
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._clear_injections()
        # physical state that survives a reset
        self.lock_position = LockPosition.UNLOCKED
        self._rcd_bits = 0
        self._overtemp = False
        self._stuck_latched = False
        self._last_pilot_state = self.plant.pilot_state
        self._boot_state(ResetCause.POWER_ON)
        self.plant.subscribe(self._on_plant_event)

    def _boot_state(self, cause: ResetCause) -> None:
        """What the firmware holds after a reset: nothing granted, defaults for timing."""
        self._reset_cause = cause
        self._booted_s = time.monotonic()
        self._heartbeat_s = DEFAULT_HEARTBEAT_MS / 1000.0
        self._timeout_s = DEFAULT_TIMEOUT_MS / 1000.0
        self.session_active = False
        self._session_ever = False
        self.permission_lapsed = False
        self._permission = False
        self._pilot_cmd: tuple[PilotMode, int] = (PilotMode.OFF, 0)
        self.coil_on = False
        self._selftest_failed = False
        self._stuck_latched = False
        self._lock_requested = self.lock_position is LockPosition.LOCKED
        self._lock_result = LockResult.REACHED
        self._lock_failed = False
        self._next_lock_try_s = 0.0
        self._tx_seq = 0
        self._rx_last = 0
        self._pending: deque[Message] = deque(maxlen=MAX_PENDING_REPORTS)
        self._last_queued: dict[int, Message] = {}
        self._in_flight: tuple[int, Message] | None = None
        self._sent_s = 0.0
        self._last_heartbeat_s = 0.0
        self._last_agent_rx_s = time.monotonic()
        self._reader = FrameReader()
        self._applying = False
        self._dirty = False
        self._hold = False  # while answering HELLO: the snapshot goes out first

    # -- running -----------------------------------------------------------------------

    async def start(self) -> str:
        """Open the pty, announce BOOT and return the slave path for the agent."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a raw UART
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        self._task = asyncio.create_task(self._run(), name="mcu-emulator")
        self._boot(ResetCause.POWER_ON)
        return self._slave_path

    async def close(self) -> None:
        """Stop the firmware and close the pty (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self.plant.unsubscribe(self._on_plant_event)

    @property
    def slave_path(self) -> str:
        """The pty device the agent opens as its serial port."""
        return self._slave_path

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Return once `predicate()` holds (re-checked on every change); raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s / 4.0)
            self._tick()

    # -- observations ----------------------------------------------------------------

    @property
    def contactor_closed(self) -> bool:
        """The power path (the mirror contact): closed when driven, or welded."""
        return self.plant.contactor_closed

    @property
    def pilot_mode(self) -> str:
        """What is on the pilot: "off" (+12 V), "pwm" or "f" (-12 V)."""
        return str(self.plant.pilot_mode)

    @property
    def rx_errors(self) -> int:
        """Garbled frames received from the agent (injected ones included)."""
        return self._reader.garbled + self._injected_rx_errors

    @property
    def fault_bits(self) -> int:
        """The FAULTS bitfield as it would be reported now."""
        bits = self._rcd_bits | self._unknown_bits
        closed = self.plant.contactor_closed
        flags = (
            (self._selftest_failed, FaultBit.RCD_SELFTEST_FAILED),
            (closed and not self.coil_on, FaultBit.CONTACTOR_WELDED),
            (self._stuck_latched, FaultBit.CONTACTOR_STUCK_OPEN),
            (self._overtemp, FaultBit.OVER_TEMPERATURE),
            (self._pilot_fault, FaultBit.PILOT_FAULT),
            (self._lock_failed, FaultBit.LOCK_FAILURE),
            (self.permission_lapsed, FaultBit.PERMISSION_LAPSED),
        )
        for active, bit in flags:
            if active:
                bits |= bit
        return bits

    # -- safety and outputs ----------------------------------------------------------

    def _allowed_current_a(self) -> float | None:
        """Derating: full current up to derate_from_c, linearly to 6 A at derate_to_c."""
        t = self.temperature_c
        if t <= self.derate_from_c:
            return None
        span = max(self.derate_to_c - self.derate_from_c, 0.1)
        fraction = min(1.0, (t - self.derate_from_c) / span)
        return max(6.0, self.board_current_a - (self.board_current_a - 6.0) * fraction)

    def _applied_pilot(self) -> tuple[PilotMode, int]:
        mode, duty_permille = self._pilot_cmd if self.session_active else (PilotMode.OFF, 0)
        if mode is not PilotMode.PWM:
            return mode, 0
        limits = [a for a in (self._cable_limit_a(), self._allowed_current_a()) if a]
        if limits and offered_current_a(duty_permille / 10.0) > min(limits):
            duty_permille = min(duty_permille, _duty_permille_for_current(min(limits)))
        return mode, duty_permille

    def _cable_limit_a(self) -> float | None:
        ampacity = self.cable_ampacity_a
        return float(ampacity) if ampacity in PP_RESISTANCE_OHM else None

    def _cable_usable(self) -> bool:
        """Tethered (None), or a socket with a cable of a valid PP coding (S7)."""
        return self.cable_ampacity_a is None or self.cable_ampacity_a in PP_RESISTANCE_OHM

    def _apply(self) -> None:
        """Drive pilot and coil from the rules; report what changed."""
        if self._applying:
            self._dirty = True
            return
        self._applying = True
        try:
            for _ in range(5):
                self._dirty = False
                self._apply_once()
                if not self._dirty:
                    break
        finally:
            self._applying = False
        self._refresh_reports()
        self._notify()

    def _apply_once(self) -> None:
        plant = self.plant
        mode, duty_permille = self._applied_pilot()
        plant_mode = {PilotMode.OFF: PlantPilot.OFF, PilotMode.PWM: PlantPilot.PWM}.get(
            mode, PlantPilot.F
        )
        plant.set_pilot(plant_mode, duty_permille / 10.0)
        state, before = plant.pilot_state, self._last_pilot_state
        self._last_pilot_state = state
        if state is PilotState.A:
            self._rcd_bits = 0  # no vehicle: the RCD latch may reset
            if before is not PilotState.A:
                self._stuck_latched = False  # the vehicle has gone: try again next time
        if self.temperature_c >= self.trip_temperature_c:
            self._overtemp = True
        elif self.temperature_c <= self.reset_temperature_c:
            self._overtemp = False
        self.coil_on = (
            self.session_active
            and self._permission
            and not self._rcd_bits
            and not self._selftest_failed
            and not self._overtemp
            and not self._stuck_latched
            and self._cable_usable()
            and (not self.interlock or state in _READY)
        )
        plant.set_contactor(self.coil_on and not self._stuck_open)
        if self.coil_on and not plant.contactor_closed:
            self._stuck_latched = True  # a real MCU allows the contacts ~200 ms first
            self._dirty = True

    def _on_plant_event(self, _event: BoardEvent) -> None:
        self._apply()

    def _move_lock(self) -> None:
        target = LockPosition.LOCKED if self._lock_requested else LockPosition.UNLOCKED
        if self._jammed and self.lock_position is not target:
            self._lock_result = LockResult.FAILED
            self._lock_failed = True
            self._next_lock_try_s = time.monotonic() + self.lock_retry_s
            return
        self.lock_position = target
        self._lock_result = LockResult.REACHED
        self._lock_failed = False

    # -- reports ---------------------------------------------------------------------

    def _report(self, msg_type: MsgType) -> Message:
        """The current value of one report."""
        if msg_type is MsgType.IDENT:
            return Ident(*FIRMWARE, int(FEATURES), self._reset_cause)
        if msg_type is MsgType.PILOT:
            state = self.plant.pilot_state
            mode, duty_permille = self._applied_pilot()
            high_mv = PILOT_HIGH_MV[state.value]
            low_mv = -12000 if mode is not PilotMode.OFF else high_mv
            return Pilot(PilotLevel[state.value], mode, duty_permille, high_mv, low_mv)
        if msg_type is MsgType.CONTACTOR:
            mirror = Mirror.CLOSED if self.plant.contactor_closed else Mirror.OPEN
            return Contactor(self.coil_on, mirror)
        if msg_type is MsgType.FAULTS:
            return Faults(int(self.fault_bits))
        if msg_type is MsgType.PP:
            ampacity = self.cable_ampacity_a or 0
            return Pp(ampacity, PP_RESISTANCE_OHM.get(ampacity, 0xFFFF))
        if msg_type is MsgType.LOCK:
            return Lock(self._lock_requested, self.lock_position, self._lock_result)
        allowed = self._allowed_current_a()
        allowed_da = NO_CURRENT_LIMIT if allowed is None else round(allowed * 10)
        return Temperature(round(self.temperature_c * 10), allowed_da)

    def _refresh_reports(self) -> None:
        for msg_type in SNAPSHOT[1:]:
            self._queue(self._report(msg_type))

    def _queue(self, message: Message, *, force: bool = False) -> None:
        """Queue a sequenced report unless it repeats the last one of its type.

        Every change is queued, not only the latest: a transition (B -> E -> B) must
        reach the agent even when it is over before the first report is acknowledged.
        """
        msg_type = int(message.TYPE)
        if msg_type != MsgType.BOOT and not self._session_ever:
            return  # before the first HELLO only BOOT goes out
        if not force and self._last_queued.get(msg_type) == message:
            return
        self._last_queued[msg_type] = message
        self._pending.append(message)
        self._send_next()

    def _send_next(self) -> None:
        if self._in_flight is not None or not self._pending or self._hold:
            return
        message = self._pending.popleft()
        self._tx_seq = next_seq(self._tx_seq)
        self._in_flight = (self._tx_seq, message)
        self._sent_s = time.monotonic()
        self._write(frame_of(message, seq=self._tx_seq, ack=self._rx_last))

    def _write(self, frame: Frame) -> None:
        if self._silent or self._master is None:
            return
        body = encode_body(frame)
        if self._garble_out > 0:
            self._garble_out -= 1
            body = body[:-1] + bytes((body[-1] ^ 0x01,))  # a wrong CRC
        with contextlib.suppress(OSError):  # buffer full: nobody reads the port
            os.write(self._master, wire_bytes(body))

    def _boot(self, cause: ResetCause) -> None:
        self.boots += 1
        self._boot_state(cause)
        self._apply()
        self._queue(Boot(*FIRMWARE, int(FEATURES), cause), force=True)

    # -- receiving -------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        for frame in self._reader.feed(data):
            self._on_frame(frame)
        self._notify()

    def _on_frame(self, frame: Frame) -> None:
        if self._deaf:
            return
        if self._garble_in > 0:
            self._garble_in -= 1
            self._injected_rx_errors += 1
            return
        self.frames_received += 1
        self._last_agent_rx_s = time.monotonic()
        if self._in_flight is not None and frame.ack == self._in_flight[0]:
            self._in_flight = None
        if is_sequenced(frame.msg_type):
            hello = frame.msg_type == MsgType.HELLO
            if not (hello or self.session_active):
                return  # no session: commands are neither applied nor acknowledged
            if hello or frame.seq != self._rx_last:
                self._rx_last = frame.seq
                try:
                    self._handle(unpack(frame.msg_type, frame.payload))
                except MessageError:
                    self.malformed += 1
            self._write(frame_of(Ack(), ack=self._rx_last))
        self._send_next()

    def _handle(self, message: Message | Unknown) -> None:
        if isinstance(message, Hello):
            self._heartbeat_s = max(message.heartbeat_ms, 10) / 1000.0
            self._timeout_s = max(message.timeout_ms, 20) / 1000.0
            self.session_active = self._session_ever = True
            self.permission_lapsed = False
            self._permission = False  # HELLO revokes every permission
            self._pilot_cmd = (PilotMode.OFF, 0)
            self._in_flight = None
            self._hold = True
            try:
                self._apply()
                self._pending.clear()
                for msg_type in SNAPSHOT:
                    self._queue(self._report(msg_type), force=True)
            finally:
                self._hold = False
            self._send_next()
        elif isinstance(message, SetPwm):
            self._pilot_cmd = (message.mode, message.duty_permille)
            self._apply()
        elif isinstance(message, SetContactor):
            self._permission = message.closed
            self._apply()
        elif isinstance(message, SetLock):
            self._lock_requested = message.locked
            self._move_lock()
            self._apply()
            self._queue(self._report(MsgType.LOCK), force=True)
        elif isinstance(message, RcdSelfTest):
            self._queue(SelfTestResult(self._selftest()), force=True)

    def _selftest(self) -> SelfTest:
        if self.coil_on:
            return SelfTest.REFUSED
        self._selftest_failed = self._fail_selftest
        if not self._fail_selftest:
            self._rcd_bits = 0
        self._apply()
        return SelfTest.FAILED if self._fail_selftest else SelfTest.PASSED

    # -- time --------------------------------------------------------------------------

    def _tick(self) -> None:
        now_s = time.monotonic()
        if now_s - self._last_heartbeat_s >= self._heartbeat_s:
            self._last_heartbeat_s = now_s
            uptime_ms = int((now_s - self._booted_s) * 1000) & 0xFFFFFFFF
            flags = HeartbeatFlag.SESSION if self.session_active else 0
            heartbeat = Heartbeat(uptime_ms, min(self.rx_errors, 0xFFFF), int(flags))
            self._write(frame_of(heartbeat, ack=self._rx_last))
        if self._in_flight is not None and now_s - self._sent_s >= self._heartbeat_s / 2.0:
            seq, message = self._in_flight
            self._sent_s = now_s
            self._write(frame_of(message, seq=seq, ack=self._rx_last))
        if self.session_active and now_s - self._last_agent_rx_s > self._timeout_s:
            self.session_active = False  # the agent went silent: its permission lapses
            self.permission_lapsed = True
            self._apply()
        target = LockPosition.LOCKED if self._lock_requested else LockPosition.UNLOCKED
        if self.lock_position is not target and now_s >= self._next_lock_try_s:
            self._move_lock()
            self._apply()
        self.plant.step()

    def _notify(self) -> None:
        self._changed.set()


if __name__ == "__main__":
    from simulator.mcu_emulator_console import main

    sys.exit(main())
