"""The agent's end of the serial MCU link: one session with one MCU over one port.

Responsible for the transport and session rules of docs/serial-mcu-protocol.md: opening
the port, the reader thread, heartbeats, stop-and-wait delivery with retransmission,
duplicate suppression, silence detection, re-initialisation after an MCU reset, and the
latest value of every MCU report. The board and lock drivers (drivers/serial_mcu.py)
share one `SerialMcuLink` per port through `DriverContext.shared`. Its settings, states,
grants and counters are in drivers/serial_mcu_link_values.py (re-exported here), the
pyserial port and reader thread in drivers/serial_mcu_port.py.

Design notes:

* State, not events, crosses the link. The agent's side is three granted values
  (contactor permission, pilot drive, lock request), each with a generation number; a
  command bumps the generation and returns once the MCU acknowledged a SET carrying it.
  One sender task sends whatever is not yet acknowledged, stop-and-wait, in safety order
  (an opening contactor first, a closing one last). After any loss of the session (MCU
  reset, silence, an unacknowledged frame) the sender starts over with HELLO, which
  revokes every permission at the MCU, and re-sends the granted values; the link fault
  clears only when all of that is acknowledged and a fresh snapshot has arrived.
* While the link is lost, commands towards the safe state (contactor open, PWM off)
  return at once: the MCU enforces them by itself (permission lapse, watchdog reset, or
  it hears us and applies them though its answers are lost). Commands that grant
  something raise DriverError.
* pyserial runs in a reader thread (blocking `read` with a short timeout; see
  drivers/serial_mcu_port.py) that hands bytes to the event loop with
  `call_soon_threadsafe`; decoding, sequencing and every
  state change happen on the loop thread only, so nothing here needs a lock. A thread
  rather than `loop.add_reader` because it works for every pyserial URL (`loop://`,
  `socket://`, `rfc2217://`) and every event loop. Writes are single frames of at most
  73 bytes, written from the loop thread with a write timeout of one heartbeat.

It must not interpret what the MCU reports (no IEC 61851, no OCPP, no fault policy) and
must not import the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import serial

from drivers.interfaces import DriverError
from drivers.serial_mcu_link_values import Grant, LinkSettings, LinkState, LinkStats
from drivers.serial_mcu_port import McuPort, open_mcu_port
from drivers.serial_mcu_protocol import (
    SNAPSHOT,
    Ack,
    Boot,
    FaultBit,
    Faults,
    Frame,
    FrameReader,
    Heartbeat,
    HeartbeatFlag,
    Hello,
    Message,
    MessageError,
    MsgType,
    PilotMode,
    RcdSelfTest,
    SetContactor,
    SetLock,
    SetPwm,
    Unknown,
    encode_frame,
    frame_of,
    is_sequenced,
    next_seq,
    unpack,
)

__all__ = [
    "REQUIRED_REPORTS",
    "Grant",
    "LinkSettings",
    "LinkState",
    "LinkStats",
    "SerialMcuLink",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

#: Reports the link needs after HELLO before it is ready: the MCU's whole snapshot.
REQUIRED_REPORTS = frozenset(SNAPSHOT)


@dataclass(slots=True)
class _Job:
    message: Message
    on_acked: Callable[[], None]


@dataclass(slots=True)
class _InFlight:
    seq: int
    acked: asyncio.Future[bool]


class SerialMcuLink:
    """One session with one MCU over one serial port, shared by a board and a lock."""

    def __init__(self, settings: LinkSettings) -> None:
        """A closed link; `attach()` opens it."""
        self.settings = settings
        self.stats = LinkStats()
        self.state = LinkState.CLOSED
        self.link_fault: str | None = None  # why the session was lost (MCU_TIMEOUT)
        self.board_claimed = False
        #: The latest MCU report of each type, and how many of each arrived so far.
        self.reports: dict[int, Message] = {}
        self.report_counts: Counter[int] = Counter()
        self._users = 0
        self._open_lock = asyncio.Lock()
        self._port: McuPort | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader = FrameReader()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._started_s = time.monotonic()
        self._last_rx_s = 0.0
        self._tx_seq = 0
        self._rx_last = 0
        self._in_flight: _InFlight | None = None
        self._session = False
        self._ever_ready = False
        self._since_hello: set[int] = set()
        self._desired: dict[Grant, Any] = {}
        self._gen: dict[Grant, int] = dict.fromkeys(Grant, 0)
        self._acked_gen: dict[Grant, int] = dict.fromkeys(Grant, 0)
        self._synced: set[Grant] = set()
        self._selftests_requested = 0
        self._selftests_sent = 0

    @property
    def is_open(self) -> bool:
        """Whether the port is open (the session may still be syncing or lost)."""
        return self.state is not LinkState.CLOSED

    # -- users ------------------------------------------------------------------------

    async def attach(self) -> None:
        """Count a user; the first one opens the port (or keeps trying: `link_fault`)."""
        async with self._open_lock:
            if self._users == 0:
                await self._open()
            self._users += 1

    async def detach(self) -> None:
        """Uncount a user; the last one closes the port (the MCU's permission lapses)."""
        async with self._open_lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self.state is not LinkState.CLOSED:
                await self._close()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` on the loop thread after every change of state or report."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener` (idempotent)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Return True once `predicate()` holds, False after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            return False
        return True

    # -- commands ---------------------------------------------------------------------

    async def grant(self, what: Grant, value: Any, *, safe: bool) -> None:
        """Make `value` the granted state and await the MCU's ack; raises DriverError.

        While the session is lost (`link_fault`), a `safe` value (contactor open, PWM
        off) returns at once, as the MCU enforces it by itself, and any other raises.
        """
        if not self.is_open:
            raise DriverError(f"serial MCU link on {self.settings.port} is not open")
        if not safe and self.link_fault is not None:
            raise DriverError(f"MCU not answering ({self.link_fault}); {what.name} not granted")
        self._desired[what] = value
        self._gen[what] += 1
        generation = self._gen[what]
        self._wake.set()

        def done() -> bool:
            lost = safe and self.link_fault is not None
            return not self.is_open or lost or self._acked_gen[what] >= generation

        if not await self.wait_for(done, self.settings.timeout_s + self.settings.heartbeat_s):
            raise DriverError(f"MCU did not acknowledge {what.name} = {value!r}")
        if not self.is_open:
            raise DriverError("serial MCU link closed while commanding")

    def request_selftest(self) -> None:
        """Queue one RCD self-test request (the result arrives as a report)."""
        self._selftests_requested += 1
        self._wake.set()

    # -- opening and closing ----------------------------------------------------------

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._desired = {Grant.CONTACTOR: False, Grant.PWM: (PilotMode.OFF, 0)}
        self._synced.clear()
        self._session = False
        self._ever_ready = False
        self.link_fault = None
        self.reports.clear()
        self._last_rx_s = time.monotonic()
        self.state = LinkState.SYNCING
        try:
            self._port = await self._open_port()
        except DriverError as exc:
            # A USB adapter may enumerate late: report the MCU as lost and keep trying,
            # so that the charger stays reachable (and Faulted) rather than not starting.
            log.error("%s", exc)
            self._lose(str(exc))
        for coro, name in ((self._sender(), "sender"), (self._ticker(), "ticker")):
            task = asyncio.create_task(coro, name=f"serial-mcu-{name}-{self.settings.port}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("serial MCU %s task failed", task.get_name(), exc_info=task.exception())

    async def _open_port(self) -> McuPort:
        port = await open_mcu_port(
            self.settings.port,
            baudrate=self.settings.baudrate,
            write_timeout_s=self.settings.heartbeat_s,
        )
        self._reader = FrameReader()  # a new port: forget any partial frame
        port.start_reader(
            f"serial-mcu-{self.settings.port}", self._post, self._on_bytes, self._on_port_error
        )
        return port

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            loop.call_soon_threadsafe(callback, *args)

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._port is not None:
            await self._release_port(self._port)
            self._port = None
        self._abandon_in_flight()
        self.state = LinkState.CLOSED
        self._notify()

    async def _release_port(self, port: McuPort) -> None:
        try:
            await port.release()
        except (serial.SerialException, OSError):
            log.warning("serial port %s did not close cleanly", self.settings.port)

    def _on_port_error(self, port: McuPort, exc: BaseException) -> None:
        if port is not self._port:
            return
        log.error("serial port %s failed: %s", self.settings.port, exc)
        self._port = None
        port.stop.set()
        with contextlib.suppress(serial.SerialException, OSError):
            port.handle.close()
        self._lose(f"serial port error: {exc}")

    # -- sending ----------------------------------------------------------------------

    def _write(self, frame: Frame) -> None:
        port = self._port
        if port is None:
            return
        try:
            port.handle.write(encode_frame(frame))
        except (serial.SerialException, OSError) as exc:
            self._on_port_error(port, exc)
            return
        self.stats.frames_out += 1

    def _next_job(self) -> _Job | None:
        if self._port is None:
            return None
        if not self._session:
            hello = Hello(self.settings.heartbeat_ms, self.settings.timeout_ms)
            return _Job(hello, self._session_started)
        closing = self._desired.get(Grant.CONTACTOR) is True
        order = [Grant.PWM, Grant.LOCK, Grant.CONTACTOR] if closing else list(Grant)
        for what in order:
            value = self._desired.get(what)
            generation = self._gen[what]
            if value is None or (what in self._synced and self._acked_gen[what] >= generation):
                continue
            return _Job(_grant_message(what, value), self._acked(what, generation))
        if self._selftests_sent < self._selftests_requested:
            return _Job(RcdSelfTest(), self._selftest_sent)
        return None

    async def _sender(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._deliver(job)

    async def _deliver(self, job: _Job) -> None:
        """Send `job` until acknowledged; after timeout_s the session is lost."""
        self._tx_seq = next_seq(self._tx_seq)
        in_flight = _InFlight(self._tx_seq, asyncio.get_running_loop().create_future())
        self._in_flight = in_flight
        if isinstance(job.message, Hello):
            self._since_hello = set()
        deadline_s = time.monotonic() + self.settings.timeout_s
        attempt = 0
        try:
            while True:
                self._write(frame_of(job.message, seq=in_flight.seq, ack=self._rx_last))
                if attempt:
                    self.stats.retransmits += 1
                attempt += 1
                try:
                    async with asyncio.timeout(self.settings.retransmit_s):
                        acked = await asyncio.shield(in_flight.acked)
                except TimeoutError:
                    if time.monotonic() < deadline_s:
                        continue
                    if self.state is not LinkState.LOST:
                        name = type(job.message).__name__
                        self._lose(
                            f"MCU did not acknowledge {name} within {self.settings.timeout_ms} ms"
                        )
                    return
                if acked:
                    job.on_acked()
                return
        finally:
            if self._in_flight is in_flight:
                self._in_flight = None

    def _session_started(self) -> None:
        self._session = True
        self.stats.sessions += 1
        self._check_ready()

    def _acked(self, what: Grant, generation: int) -> Callable[[], None]:
        def acked() -> None:
            self._acked_gen[what] = max(self._acked_gen[what], generation)
            self._synced.add(what)
            self._check_ready()
            self._notify()

        return acked

    def _selftest_sent(self) -> None:
        self._selftests_sent += 1

    async def _ticker(self) -> None:
        """Heartbeats out, silence detection in, port reopening after a failure."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            if self._port is None:
                await self._try_reopen()
                continue
            uptime_ms = int((time.monotonic() - self._started_s) * 1000) & 0xFFFFFFFF
            heartbeat = Heartbeat(uptime_ms, min(self.stats.garbled, 0xFFFF))
            self._write(frame_of(heartbeat, ack=self._rx_last))
            silent_s = time.monotonic() - self._last_rx_s
            if self.state is not LinkState.LOST and silent_s > self.settings.timeout_s:
                self._lose(f"MCU silent for {silent_s * 1000:.0f} ms")

    async def _try_reopen(self) -> None:
        try:
            self._port = await self._open_port()
        except DriverError as exc:
            log.debug("%s", exc)
            await asyncio.sleep(self.settings.timeout_s)
            return
        self._last_rx_s = time.monotonic()
        self._wake.set()

    # -- receiving --------------------------------------------------------------------

    def _on_bytes(self, port: McuPort, data: bytes) -> None:
        if port is not self._port:
            return
        reader = self._reader
        garbled = reader.garbled
        for frame in reader.feed(data):
            self._on_frame(frame)
        if reader.garbled != garbled:
            log.debug("garbled frame from the MCU: %s", reader.last_error)
            self.stats.garbled += reader.garbled - garbled

    def _on_frame(self, frame: Frame) -> None:
        self.stats.frames_in += 1
        self._last_rx_s = time.monotonic()
        if self.state is LinkState.LOST:
            self._resync()
        in_flight = self._in_flight
        if in_flight is not None and frame.ack == in_flight.seq and not in_flight.acked.done():
            in_flight.acked.set_result(True)
        if not is_sequenced(frame.msg_type):
            if frame.msg_type == MsgType.HEARTBEAT:
                self._on_heartbeat(frame.payload)
            return
        new = frame.msg_type in (MsgType.HELLO, MsgType.BOOT) or frame.seq != self._rx_last
        if new:
            self._rx_last = frame.seq
        self._write(frame_of(Ack(), ack=self._rx_last))
        if not new:
            self.stats.duplicates += 1
            return
        try:
            message = unpack(frame.msg_type, frame.payload)
        except MessageError as exc:
            self.stats.malformed += 1
            log.warning("malformed message from the MCU (acknowledged, ignored): %s", exc)
            return
        self._handle(message)
        self._since_hello.add(frame.msg_type)
        self._check_ready()
        self._notify()

    def _on_heartbeat(self, payload: bytes) -> None:
        try:
            heartbeat = unpack(MsgType.HEARTBEAT, payload)
        except MessageError:
            self.stats.malformed += 1
            return
        if (
            isinstance(heartbeat, Heartbeat)
            and self._session
            and not heartbeat.flags & HeartbeatFlag.SESSION
        ):
            # The MCU has no session with us (its permission lapsed, or it reset): our
            # acks or HELLO do not reach it, or its BOOT has not reached us yet.
            self._lose("MCU reports no session with the agent")

    def _handle(self, message: Message | Unknown) -> None:
        if isinstance(message, Unknown):
            log.debug("unknown MCU message type 0x%02x ignored", message.msg_type)
            return
        self.reports[message.TYPE] = message
        self.report_counts[message.TYPE] += 1
        if isinstance(message, Boot):
            self._on_boot(message)
        elif isinstance(message, Faults):
            lapsed = message.bits & FaultBit.PERMISSION_LAPSED
            if lapsed and self.state is LinkState.READY:
                self._resync()  # the MCU lost our session: HELLO again

    def report(self, kind: type[M]) -> M | None:
        """The latest report of this message class since the port opened, if any."""
        value = self.reports.get(kind.TYPE)
        return value if isinstance(value, kind) else None

    def _on_boot(self, boot: Boot) -> None:
        firmware = f"{boot.fw_major}.{boot.fw_minor}.{boot.fw_patch}"
        log.warning("MCU (re)started: firmware %s, reset %s", firmware, boot.reset_cause.name)
        if self._ever_ready:
            self._set_link_fault(f"MCU reset ({boot.reset_cause.name.lower()})")
        self._resync()

    # -- session state ----------------------------------------------------------------

    def _abandon_in_flight(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None and not in_flight.acked.done():
            in_flight.acked.set_result(False)

    def _resync(self) -> None:
        """Start the session over: HELLO, then every granted value again."""
        self._session = False
        self._synced.clear()
        self._abandon_in_flight()
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.SYNCING
        self._wake.set()
        self._notify()

    def _lose(self, reason: str) -> None:
        if self.link_fault is None:
            log.warning("serial MCU on %s lost: %s", self.settings.port, reason)
        self._set_link_fault(reason)
        self._resync()
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.LOST
        self._notify()

    def _set_link_fault(self, reason: str) -> None:
        if self.link_fault is None:
            self.link_fault = reason

    def _check_ready(self) -> None:
        if self.state is not LinkState.SYNCING or not self._session:
            return
        for what, value in self._desired.items():
            if value is not None and (
                what not in self._synced or self._acked_gen[what] < self._gen[what]
            ):
                return
        if not self._since_hello >= REQUIRED_REPORTS:
            return
        self.state = LinkState.READY
        self._ever_ready = True
        if self.link_fault is not None:
            log.info("serial MCU on %s re-initialised", self.settings.port)
            self.link_fault = None
        self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for listener in list(self._listeners):
            listener()


def _grant_message(what: Grant, value: Any) -> Message:
    if what is Grant.CONTACTOR:
        return SetContactor(bool(value))
    if what is Grant.LOCK:
        return SetLock(bool(value))
    mode, duty_permille = value
    return SetPwm(mode, duty_permille)
