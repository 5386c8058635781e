"""The GPIO board and lock in the contract suites, against a modelled far end.

No gpio-sim and no /dev/gpiochip* on the test machines, so the seams are the driver's
own: the memory GPIO backend (a first-class backend, as python-can's virtual bus), a
real sysfs-shaped directory tree for the PWM (files the driver writes and the far end
reads), and an in-memory MCP3008 answering the SPI bytes.

`GpioFarEnd` is the world beyond the pins: the pilot generator driven by the PWM files,
the cable and an EV (resistors, S2, diode), the contactor with its mirror contact, an
RCD module and a lock motor. It answers every ADC conversion with the pilot voltage the
conditioning circuit would present at that instant, so the driver's burst sampling,
plateau detection and debouncing run for real. Faults are injected here: weld, stuck
contactor, RCD trip, pilot short, missing diode, an out-of-band level, a dead ADC.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drivers.gpio_backends import MemoryGpioBackend
from drivers.gpio_board import GpioBoardSupport, GpioConnectorLock, shared_key
from drivers.interfaces import BoardSupport, ConnectorLock
from drivers.pilot_adc import MemorySpiDev, PilotScaling
from drivers.registry import DriverContext
from tests.contract.conftest import BoardHarness, LockHarness

RELAY, MIRROR, RCD, LED_GREEN = 5, 6, 13, 20
LOCK_A, LOCK_B, LOCK_FEEDBACK = 16, 19, 26
CHIP = "far-end-chip"
_GOLDEN = 0.6180339887498949
#: An EV opens S2 some time after the PWM stops (IEC 61851-1 allows it seconds).
EV_REACTION_S = 0.1

BOARD_LINES: dict[str, Any] = {
    "contactor": RELAY,
    "contactor_feedback": MIRROR,
    # An RCD module's trip output: open collector, pulled up, low when tripped.
    "rcd_trip": {"line": RCD, "active_low": True, "bias": "pull_up"},
    "led_green": LED_GREEN,
}
LOCK_LINES: dict[str, Any] = {
    "lock_motor_a": LOCK_A,
    "lock_motor_b": LOCK_B,
    "lock_feedback": LOCK_FEEDBACK,
}
#: Fast sampling so a pilot change is reported within a few milliseconds.
FAST_SAMPLING = {"period_ms": 2, "burst_samples": 40, "debounce_count": 3}


def make_pwm_tree(root: Path, chip: int = 0, channel: int = 0) -> Path:
    """Create what the kernel shows for an exported PWM channel; return the channel dir."""
    chip_dir = root / f"pwmchip{chip}"
    channel_dir = chip_dir / f"pwm{channel}"
    channel_dir.mkdir(parents=True)
    (chip_dir / "export").write_text("")
    (chip_dir / "npwm").write_text("2\n")
    for name, value in (("period", "0"), ("duty_cycle", "0"), ("enable", "0")):
        (channel_dir / name).write_text(f"{value}\n")
    (channel_dir / "polarity").write_text("normal\n")
    return channel_dir


class PwmPeer:
    """The kernel's side of one sysfs PWM channel: it receives every write, in order.

    A sysfs attribute is a write handler, not storage: a duty written and overwritten a
    microsecond later still reached the hardware. To keep that, `duty_cycle` and
    `enable` are FIFOs (the driver's writes are ordinary file writes) and every write is
    taken out of them, in order, before anything is observed; `period` stays a regular
    file since the driver reads it back. `writes` keeps every value received;
    `listeners` hear each one. `close()` turns the FIFOs back into files.
    """

    _FIFOS = ("duty_cycle", "enable")

    def __init__(self, channel_dir: Path) -> None:
        self.channel_dir = channel_dir
        self.writes: list[tuple[str, int]] = []
        self.values: dict[str, int] = {"duty_cycle": 0, "enable": 0}
        self.listeners: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._fds: dict[int, str] = {}
        self._pending: dict[int, bytes] = {}
        for name in self._FIFOS:
            path = channel_dir / name
            path.unlink(missing_ok=True)
            os.mkfifo(path)
            # O_RDWR never blocks and holds a writer, so reads never see EOF and the
            # driver's open(O_WRONLY) always finds a reader.
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            self._fds[fd], self._pending[fd] = name, b""
        self._closed = False

    def drain(self) -> None:
        """Take every write the driver made so far, in order."""
        with self._lock:
            if self._closed:
                return
            for fd, name in self._fds.items():
                while True:
                    try:
                        chunk = os.read(fd, 4096)
                    except BlockingIOError:
                        break
                    *lines, self._pending[fd] = (self._pending[fd] + chunk).split(b"\n")
                    for line in lines:
                        self.writes.append((name, int(line)))
                        self.values[name] = int(line)
                        for listener in list(self.listeners):
                            listener()

    def period_ns(self) -> int:
        try:
            return int((self.channel_dir / "period").read_text())
        except ValueError:
            return 0

    def mode(self) -> tuple[str, float]:
        """("off" | "pwm" | "f", duty fraction) after the writes made so far."""
        with self._lock:
            self.drain()
            return self._mode_now()

    def _mode_now(self) -> tuple[str, float]:
        enable, duty_ns = self.values["enable"], self.values["duty_cycle"]
        period = self.period_ns()
        if not enable or period <= 0 or duty_ns <= 0:
            return "f", 0.0  # a disabled PWM idles low: -12 V
        if duty_ns >= period:
            return "off", 1.0
        return "pwm", duty_ns / period

    def close(self) -> None:
        with self._lock:
            self.drain()
            if self._closed:
                return
            self._closed = True
            for fd, name in self._fds.items():
                os.close(fd)
                path = self.channel_dir / name
                path.unlink()
                path.write_text(f"{self.values[name]}\n")


def board_options(pwm_root: Path, **extra: Any) -> dict[str, Any]:
    """The YAML options of a memory-backed GPIO board wired as the far end expects."""
    return {
        "backend": "memory",
        "chip": CHIP,
        "lines": dict(BOARD_LINES),
        "pwm": {"chip": 0, "channel": 0, "sysfs_root": str(pwm_root)},
        "adc": {"bus": 0, "device": 0, "channel": 0, "vref_v": 3.3},
        "sampling": dict(FAST_SAMPLING),
        "feedback_timeout_ms": 100,
        **extra,
    }


def lock_options(**extra: Any) -> dict[str, Any]:
    """The YAML options of a memory-backed GPIO lock wired as the far end expects."""
    return {
        "backend": "memory",
        "chip": CHIP,
        "lines": dict(LOCK_LINES),
        "lock_timeout_ms": 200,
        **extra,
    }


class GpioFarEnd:
    """Pilot generator, cable, EV, contactor, RCD and lock beyond the board's pins."""

    def __init__(
        self,
        chip: MemoryGpioBackend,
        *,
        spi: MemorySpiDev | None = None,
        pwm: PwmPeer | None = None,
        scaling: PilotScaling | None = None,
        adc_channel: int = 0,
        noise_v: float = 0.05,
    ) -> None:
        self.chip = chip
        self.pwm = pwm
        self.scaling = scaling or PilotScaling()
        self.adc_channel = adc_channel
        self.noise_v = noise_v
        # the vehicle and the cable
        self.ev_connected = False
        self.ev_wants_power = True
        self.ev_ventilation = False
        self.diode = True
        self.short = False
        self.pilot_override_v: float | None = None
        # the power path
        self.relay_on = False
        self.welded = False
        self.stuck_open = False
        self.contactor_closed = False
        self.contactor_closings = 0
        # the lock
        self.lock_jammed = False
        self.locked = False
        self._random = random.Random(61851)
        self._phase = 0.0
        self._pwm_ended_at: float | None = None
        self._was_pwm = False
        if pwm is not None:
            pwm.listeners.append(self._on_pwm)
        chip.on_output(self._on_output)
        chip.drive(MIRROR, False)
        self.trip_rcd(False)
        chip.drive(LOCK_FEEDBACK, False)
        if spi is not None:
            spi.source = self._adc_v

    # -- what a test does at the far end --------------------------------------------------

    def connect_ev(self, *, wants_power: bool = True, diode: bool = True) -> None:
        self.ev_wants_power, self.diode, self.ev_connected = wants_power, diode, True

    def unplug(self) -> None:
        self.ev_connected = False

    def weld(self, welded: bool = True) -> None:
        self.welded = welded
        self._update_contactor()

    def jam_open(self, stuck: bool = True) -> None:
        self.stuck_open = stuck
        self._update_contactor()

    def trip_rcd(self, tripped: bool = True) -> None:
        self.chip.drive(RCD, not tripped)  # active low: the module pulls the line down

    # -- what a test observes ---------------------------------------------------------------

    def pwm_state(self) -> tuple[str, float]:
        """("off" | "pwm" | "f", duty fraction) as the generator is driven now."""
        return self.pwm.mode() if self.pwm is not None else ("f", 0.0)

    def pilot_mode(self) -> str:
        return self.pwm_state()[0]

    def relay_level(self) -> bool:
        return self.chip.level(RELAY)

    # -- the physics ------------------------------------------------------------------------

    def plateaus_v(self) -> tuple[float, float]:
        """The pilot's (high, low) levels now, from the generator and the EV's load."""
        if self.pilot_override_v is not None:
            return self.pilot_override_v, self.pilot_override_v
        if self.short:
            return 0.0, 0.0
        if not self.ev_connected:
            return 12.0, -12.0
        s2_closed = self.ev_wants_power and self._sees_pwm()
        high = (3.0 if self.ev_ventilation else 6.0) if s2_closed else 9.0
        return high, (-12.0 if self.diode else -high)

    def _sees_pwm(self) -> bool:
        """Whether the EV holds S2 closed: PWM on, or gone for less than its reaction time."""
        if self.pwm_state()[0] == "pwm":
            return True
        ended = self._pwm_ended_at
        return ended is not None and time.monotonic() - ended < EV_REACTION_S

    def _on_pwm(self) -> None:
        """The generator's drive changed: one write reached the PWM peer."""
        if self.pwm is None:
            return
        pwm_now = self.pwm._mode_now()[0] == "pwm"
        if pwm_now:
            self._pwm_ended_at = None
        elif self._was_pwm:
            self._pwm_ended_at = time.monotonic()
        self._was_pwm = pwm_now

    def _adc_v(self, channel: int) -> float:
        """One conversion (called on the driver's sampling thread)."""
        if channel != self.adc_channel:
            return 0.0
        mode, duty = self.pwm_state()
        high_v, low_v = self.plateaus_v()
        # Successive conversions land at well-spread phases of the 1 kHz period.
        self._phase = (self._phase + _GOLDEN) % 1.0
        generator_high = mode == "off" or (mode == "pwm" and self._phase < duty)
        pilot_v = high_v if generator_high else low_v
        noise = self._random.uniform(-self.noise_v, self.noise_v)
        return self.scaling.adc_v(pilot_v + noise)

    def _on_output(self, offset: int, level: bool) -> None:
        if offset == RELAY:
            self.relay_on = level
            self._update_contactor()
        elif offset in (LOCK_A, LOCK_B):
            a, b = self.chip.level(LOCK_A), self.chip.level(LOCK_B)
            if a != b and not self.lock_jammed:
                self.locked = a
                self.chip.drive(LOCK_FEEDBACK, self.locked)

    def _update_contactor(self) -> None:
        closed = self.welded or (self.relay_on and not self.stuck_open)
        if closed and not self.contactor_closed:
            self.contactor_closings += 1
        self.contactor_closed = closed
        self.chip.drive(MIRROR, closed)


def far_end_of(board: Any, pwm: PwmPeer, **kwargs: Any) -> GpioFarEnd:
    """Attach a far end to a memory-backed GpioBoardSupport (built by the registry)."""
    if not isinstance(board, GpioBoardSupport):
        raise TypeError(f"not a GPIO board: {board!r}")
    chip, spi = board.gpio_backend, board.spi
    if not isinstance(chip, MemoryGpioBackend) or not isinstance(spi, MemorySpiDev):
        raise TypeError("the board does not use the memory backend")
    return GpioFarEnd(chip, spi=spi, pwm=pwm, **kwargs)


class GpioBoardHarness:
    def __init__(self, *, with_feedback: bool) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="gpio-board-")
        root = Path(self._dir.name)
        self.pwm = PwmPeer(make_pwm_tree(root))
        options = board_options(root)
        if not with_feedback:
            del options["lines"]["contactor_feedback"]
        self.context = DriverContext(evse_id=1, max_current_a=32.0, phases=3)
        self._board = GpioBoardSupport.from_options(options, self.context)
        self.far_end = far_end_of(self._board, self.pwm)
        spi = self._board.spi
        assert isinstance(spi, MemorySpiDev)
        self.spi = spi  # the ADC: inject bus faults here

    @property
    def board(self) -> BoardSupport:
        return self._board

    async def connect_ev(self) -> None:
        self.far_end.connect_ev()

    async def contactor_closed_at_hardware(self) -> bool:
        return self.far_end.contactor_closed

    async def pilot_mode_at_hardware(self) -> str:
        return self.far_end.pilot_mode()

    async def close(self) -> None:
        try:
            await self._board.stop()
        finally:
            self.pwm.close()
            self._dir.cleanup()


async def gpio_board() -> BoardHarness:
    return GpioBoardHarness(with_feedback=True)


async def gpio_board_without_feedback() -> BoardHarness:
    return GpioBoardHarness(with_feedback=False)


class GpioLockHarness:
    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        context = DriverContext(evse_id=1, max_current_a=32.0, phases=3)
        self._lock = GpioConnectorLock.from_options(options or lock_options(), context)
        chip = context.shared[shared_key("gpio", "memory", CHIP)]
        self.far_end = GpioFarEnd(chip)

    @property
    def lock(self) -> ConnectorLock:
        return self._lock

    async def jam(self) -> None:
        self.far_end.lock_jammed = True

    async def close(self) -> None:
        return None


async def gpio_lock() -> LockHarness:
    return GpioLockHarness()


BOARD_HARNESSES = [gpio_board, gpio_board_without_feedback]
LOCK_HARNESSES = [gpio_lock]
