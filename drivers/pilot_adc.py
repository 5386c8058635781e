"""The pilot's analog side for the GPIO board: the PWM that drives it, the ADC that reads it.

Responsible for the generator's input (`SysfsPwm`: one channel of the Linux PWM class at
1 kHz) and for turning ADC codes into pilot volts and bursts of pilot volts into a
measured pilot level, exactly as IEC 61851-1 Table A.4 draws the bands:

* `Mcp3008AdcChannel` reads one channel of an MCP3004/MCP3008 (10 bit) over a `SpiTransport`
  (spidev's `SpiDev` on a board; `MemorySpiDev` in tests and on a laptop, a first-class
  in-memory chip that answers the same bytes).
* `PilotScaling` undoes the analog conditioning: the pilot's -12..+12 V are divided and
  offset into the ADC's 0..Vref range (default: -12 V -> 0 V, +12 V -> 3.3 V).
* `classify_burst` takes a burst of samples spread over at least one PWM period and reads
  the high plateau (the maximum) for states A-E and the low plateau (the minimum) for the
  diode check: with PWM on and a vehicle present, the low plateau must sit at -12 V
  (state F band); otherwise the vehicle's diode is missing (IEC 61851-1 A.2.2, Table A.4).
* `PilotDebouncer` reports a new reading only after N identical consecutive ones.
* `PilotSampler` runs it: a thread reads bursts (blocking SPI), the event loop classifies
  and debounces them and hears about each new stable reading.

It must not interpret the level for a session (no "plugged", no "ready": that is the
core's decoder), must not decide what is a fault (the board does), and must not touch
GPIO: the board tells the sampler when it changes the generator's drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from drivers.interfaces import DriverError
from drivers.types import PilotState

log = logging.getLogger(__name__)

#: IEC 61851-1 Table A.4: nominal EVSE-side pilot levels with their +-1 V tolerance.
PILOT_BANDS_V: dict[PilotState, tuple[float, float]] = {
    PilotState.A: (11.0, 13.0),
    PilotState.B: (8.0, 10.0),
    PilotState.C: (5.0, 7.0),
    PilotState.D: (2.0, 4.0),
    PilotState.E: (-1.0, 1.0),
    PilotState.F: (-13.0, -11.0),
}

#: The states in which a vehicle loads the pilot and its diode can be checked.
_VEHICLE_STATES = frozenset({PilotState.B, PilotState.C, PilotState.D})

MCP3008_CHANNELS = 8
MCP3004_CHANNELS = 4
_MCP300X_FULL_SCALE = 1024  # datasheet: code = 1024 * Vin / Vref
_NULL_BIT = 0x04  # second received byte: the chip drives a 0 just before B9


class AdcError(Exception):
    """The ADC did not answer, or answered something no MCP300x can send."""


class SpiTransport(Protocol):
    """The part of spidev's `SpiDev` the ADC needs: one full-duplex transfer."""

    def xfer2(self, data: list[int]) -> list[int]:
        """Clock out `data` with chip select held; return the bytes clocked in."""
        ...


class AdcChannel(Protocol):
    """One analog input: blocking reads in volts at the ADC pin."""

    def read_v(self) -> float:
        """Return one conversion in volts; raises AdcError or OSError."""
        ...


class Mcp3008AdcChannel:
    """One single-ended channel of an MCP3004/MCP3008 behind a SpiTransport."""

    def __init__(
        self, spi: SpiTransport, *, channel: int, vref_v: float, channels: int = MCP3008_CHANNELS
    ) -> None:
        """Read `channel` of the chip on `spi`; raises ValueError for a bad channel or vref."""
        if not 0 <= channel < channels:
            raise ValueError(f"channel must be 0..{channels - 1}, got {channel}")
        if not (math.isfinite(vref_v) and vref_v > 0.0):
            raise ValueError(f"vref_v must be > 0, got {vref_v}")
        self._spi = spi
        self._request = [0x01, (0x08 | channel) << 4, 0x00]  # start, single-ended + channel
        self._vref_v = vref_v

    def read_code(self) -> int:
        """Return one 10-bit conversion; raises AdcError for a reply without the null bit."""
        reply = self._spi.xfer2(list(self._request))
        if len(reply) != 3:
            raise AdcError(f"expected 3 bytes from the ADC, got {len(reply)}")
        if reply[1] & _NULL_BIT:
            # A floating MISO (chip missing or unpowered) reads as ones; the null bit
            # is the one bit the chip always drives low.
            raise AdcError(f"no null bit in the ADC reply {bytes(reply).hex()}")
        return ((reply[1] & 0x03) << 8) | reply[2]

    def read_v(self) -> float:
        """Return one conversion in volts at the ADC pin; raises AdcError or OSError."""
        return self.read_code() * self._vref_v / _MCP300X_FULL_SCALE


class MemorySpiDev:
    """An MCP3008 in memory: answers `xfer2` with the bytes the chip would send.

    The analog input of each channel comes from `source(channel)` (volts at the pin),
    called on the thread that transfers, or from `set_voltage`. Faults can be injected:
    `error` is raised from every transfer (the bus fails) and `floating` makes every
    reply 0xff (the chip is gone and MISO floats high).
    """

    def __init__(self, *, vref_v: float = 3.3) -> None:
        """A chip with every input at 0 V."""
        self.vref_v = vref_v
        self.source: Callable[[int], float] | None = None
        self.error: OSError | None = None
        self.floating = False
        self.transfers = 0
        self._voltages_v = [0.0] * MCP3008_CHANNELS
        self._lock = threading.Lock()

    def set_voltage(self, channel: int, voltage_v: float) -> None:
        """Hold input `channel` at `voltage_v` (used when no `source` is set)."""
        with self._lock:
            self._voltages_v[channel] = voltage_v

    def xfer2(self, data: list[int]) -> list[int]:
        """Answer one transfer as an MCP3008 does; raises the injected `error`."""
        with self._lock:
            self.transfers += 1
            error, floating = self.error, self.floating
        if error is not None:
            raise error
        if floating or len(data) != 3:
            return [0xFF] * len(data)
        if not data[0] & 0x01 or not data[1] & 0x80:
            return [0xFF, 0xFB, 0xFF]  # no start bit or differential mode: not modelled
        channel = (data[1] >> 4) & 0x07
        source = self.source
        if source is not None:
            voltage_v = source(channel)
        else:
            with self._lock:
                voltage_v = self._voltages_v[channel]
        code = round(voltage_v * _MCP300X_FULL_SCALE / self.vref_v)
        code = max(0, min(_MCP300X_FULL_SCALE - 1, code))
        # The bits before the null bit are high-impedance on the real chip: send ones
        # there, so a reader that forgets to mask them gets a wrong value.
        return [0xFF, 0xF8 | (code >> 8), code & 0xFF]


@dataclass(frozen=True, slots=True)
class PilotScaling:
    """The analog conditioning between the pilot and the ADC pin, as a straight line.

    pilot_v = adc_v * pilot_v_per_adc_v + pilot_v_at_adc_zero. The default maps the
    pilot's -12..+12 V onto 0..3.3 V (a divider from the pilot plus a 1.65 V offset).
    """

    pilot_v_per_adc_v: float = 24.0 / 3.3
    pilot_v_at_adc_zero: float = -12.0

    def pilot_v(self, adc_v: float) -> float:
        """The pilot voltage for a voltage at the ADC pin."""
        return adc_v * self.pilot_v_per_adc_v + self.pilot_v_at_adc_zero

    def adc_v(self, pilot_v: float) -> float:
        """The voltage at the ADC pin for a pilot voltage (the inverse of `pilot_v`)."""
        return (pilot_v - self.pilot_v_at_adc_zero) / self.pilot_v_per_adc_v


class PilotProblem(StrEnum):
    """Why a burst did not yield a plain pilot state."""

    OUT_OF_BAND = "out_of_band"  # the high plateau lies in no band of Table A.4
    DIODE_MISSING = "diode_missing"  # with PWM on, the low plateau is not at -12 V
    NO_HIGH_PLATEAU = "no_high_plateau"  # with PWM on, no sample reached above -11 V


@dataclass(frozen=True, slots=True)
class PilotReading:
    """What one burst (or a debounced run of bursts) says about the pilot.

    `state` is the band of the high plateau (None when out of band); `problem` is set
    when the level is implausible. Two readings are "the same" for debouncing when state
    and problem agree: the voltages only explain.
    """

    state: PilotState | None
    problem: PilotProblem | None
    high_v: float
    low_v: float

    @property
    def key(self) -> tuple[PilotState | None, PilotProblem | None]:
        """What debouncing compares."""
        return (self.state, self.problem)

    def describe(self) -> str:
        """A short human text for logs and fault details."""
        what = self.problem.value if self.problem else f"state {self.state}"
        return f"{what} (high {self.high_v:+.2f} V, low {self.low_v:+.2f} V)"


def classify_level(
    pilot_v: float, *, previous: PilotState | None = None, hysteresis_v: float = 0.0
) -> PilotState | None:
    """The Table A.4 band holding `pilot_v`, or None between bands.

    The band of `previous` is widened by `hysteresis_v` on both sides, so a level that
    wanders around a band edge does not toggle between a state and "out of band".
    """
    if previous is not None:
        low_v, high_v = PILOT_BANDS_V[previous]
        if low_v - hysteresis_v <= pilot_v <= high_v + hysteresis_v:
            return previous
    for state, (low_v, high_v) in PILOT_BANDS_V.items():
        if low_v <= pilot_v <= high_v:
            return state
    return None


def classify_burst(
    samples_v: Sequence[float],
    *,
    pwm_on: bool,
    previous: PilotState | None = None,
    hysteresis_v: float = 0.0,
) -> PilotReading:
    """Classify a burst of pilot voltages; raises ValueError for an empty burst.

    `pwm_on` says whether the EVSE is oscillating the pilot during the burst: only then
    is there a low plateau to check the diode with.
    """
    if not samples_v:
        raise ValueError("a burst needs at least one sample")
    high_v, low_v = max(samples_v), min(samples_v)
    state = classify_level(high_v, previous=previous, hysteresis_v=hysteresis_v)
    if state is None:
        return PilotReading(None, PilotProblem.OUT_OF_BAND, high_v, low_v)
    if pwm_on and state == PilotState.F:
        # The generator is oscillating, so a high plateau exists: the burst missed it.
        return PilotReading(None, PilotProblem.NO_HIGH_PLATEAU, high_v, low_v)
    if pwm_on and state in _VEHICLE_STATES:
        f_low_v, f_high_v = PILOT_BANDS_V[PilotState.F]
        if not f_low_v - hysteresis_v <= low_v <= f_high_v + hysteresis_v:
            return PilotReading(state, PilotProblem.DIODE_MISSING, high_v, low_v)
    return PilotReading(state, None, high_v, low_v)


class PilotDebouncer:
    """Passes a reading on only after `count` consecutive bursts agreed on it."""

    def __init__(self, count: int) -> None:
        """Require `count` (>= 1) identical readings; raises ValueError otherwise."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._count = count
        self._candidate: PilotReading | None = None
        self._seen = 0
        self.stable: PilotReading | None = None

    def feed(self, reading: PilotReading) -> PilotReading | None:
        """Return the reading when it has just become stable and differs from the last one."""
        if self._candidate is not None and self._candidate.key == reading.key:
            self._seen += 1
        else:
            self._candidate, self._seen = reading, 1
        if self._seen < self._count:
            return None
        if self.stable is not None and self.stable.key == reading.key:
            return None
        self.stable = reading
        return reading


# --- sampling -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PilotSampling:
    """How the pilot is sampled and debounced."""

    period_s: float = 0.01
    burst_samples: int = 32
    debounce_count: int = 3
    hysteresis_v: float = 0.25
    start_timeout_s: float = 1.0
    no_plateau_limit: int = 25  # bursts without a high plateau before that is a reading


@dataclass(frozen=True, slots=True)
class _Drive:
    """What the generator is told, stamped so a burst taken across a change is dropped."""

    generation: int
    oscillating: bool
    settled: bool


_Burst = tuple[list[float], _Drive] | Exception


class PilotSampler:
    """Reads bursts on a thread; classifies and debounces them on the event loop.

    The owner wraps every change of the generator's drive in `changing_drive`, so a burst
    that overlapped a change (two levels mixed) is dropped, and the diode is checked only
    on bursts taken while the pilot oscillated.
    """

    def __init__(
        self,
        adc: AdcChannel,
        *,
        scaling: PilotScaling | None = None,
        sampling: PilotSampling | None = None,
        name: str = "pilot",
    ) -> None:
        """A stopped sampler over `adc`."""
        self._adc = adc
        self._scaling = scaling or PilotScaling()
        self.sampling = sampling or PilotSampling()
        self._name = name
        self._drive = _Drive(0, oscillating=False, settled=True)
        self._session = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_reading: Callable[[PilotReading], None] = _ignore
        self._on_failure: Callable[[str], None] = _ignore
        self._debouncer = PilotDebouncer(self.sampling.debounce_count)
        self._failures = 0
        self._no_plateau = 0

    def start(
        self, on_reading: Callable[[PilotReading], None], on_failure: Callable[[str], None]
    ) -> None:
        """Sample until `stop()`: each new stable reading goes to `on_reading`, an ADC that
        failed `debounce_count` times in a row to `on_failure`, both on this loop."""
        self._on_reading, self._on_failure = on_reading, on_failure
        self._session += 1
        self.forget()
        self._failures = self._no_plateau = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._sample,
            args=(self._session, self._stop, asyncio.get_running_loop()),
            name=f"{self._name}-pilot",
            daemon=True,
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop the thread and wait for it; readings still in flight are dropped."""
        self._session += 1
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def forget(self) -> None:
        """Report the next stable reading even if it equals the last one."""
        self._debouncer = PilotDebouncer(self.sampling.debounce_count)

    @contextlib.contextmanager
    def changing_drive(self, oscillating: bool) -> Iterator[None]:
        """Wrap a change of the generator's drive; `oscillating`: PWM between 0 and 100 %."""
        generation = self._drive.generation + 1
        self._drive = _Drive(generation, oscillating, settled=False)
        try:
            yield
        finally:
            self._drive = _Drive(generation + 1, oscillating, settled=True)

    def _sample(self, session: int, stop: threading.Event, loop: asyncio.AbstractEventLoop) -> None:
        """The thread: read bursts and hand them to the loop until `stop`."""
        samples, pilot_v = self.sampling.burst_samples, self._scaling.pilot_v
        while not stop.is_set():
            drive = self._drive
            result: _Burst
            try:
                result = ([pilot_v(self._adc.read_v()) for _ in range(samples)], drive)
            except (AdcError, OSError) as exc:
                result = exc
            except Exception as exc:  # a bug must not end the thread silently
                log.exception("%s: pilot sampling failed", self._name)
                result = exc
            if isinstance(result, Exception) or (drive.settled and drive is self._drive):
                try:
                    loop.call_soon_threadsafe(self._on_burst, session, result)
                except RuntimeError:
                    return  # the loop is closed
            stop.wait(self.sampling.period_s)

    def _on_burst(self, session: int, result: _Burst) -> None:
        """On the loop: classify a burst, debounce it, report what became stable."""
        if session != self._session:
            return
        if isinstance(result, Exception):
            self._failures += 1
            if self._failures >= self.sampling.debounce_count:
                # Whatever is read after the ADC recovers is news, even an unchanged level.
                self.forget()
                self._on_failure(f"pilot ADC: {result}")
            return
        self._failures = 0
        samples_v, drive = result
        if drive is not self._drive:
            return  # the drive changed while this burst waited for the loop: it is stale
        stable = self._debouncer.stable
        reading = classify_burst(
            samples_v,
            pwm_on=drive.oscillating,
            previous=stable.state if stable else None,
            hysteresis_v=self.sampling.hysteresis_v,
        )
        if reading.problem == PilotProblem.NO_HIGH_PLATEAU:
            self._no_plateau += 1
            if self._no_plateau < self.sampling.no_plateau_limit:
                return  # most likely a burst that missed a short high plateau
        else:
            self._no_plateau = 0
        changed = self._debouncer.feed(reading)
        if changed is not None:
            self._on_reading(changed)


def _ignore(_: Any) -> None:
    return None


class SpidevTransport:
    """spidev's SpiDev, opened on the first transfer and closed when the board stops."""

    def __init__(self, bus: int, device: int, speed_hz: int) -> None:
        """Use /dev/spidev`bus`.`device` at `speed_hz`, SPI mode 0 (as the MCP3008 wants)."""
        self._bus, self._device, self._speed_hz = bus, device, speed_hz
        self._spi: Any = None
        self._lock = threading.Lock()

    def xfer2(self, data: list[int]) -> list[int]:
        """One transfer; raises OSError (also when spidev is not installed)."""
        with self._lock:
            if self._spi is None:
                try:
                    import spidev
                except ImportError as exc:
                    raise OSError(f"spidev is not installed: {exc}") from exc
                spi = spidev.SpiDev()
                spi.open(self._bus, self._device)
                spi.max_speed_hz = self._speed_hz
                spi.mode = 0
                self._spi = spi
            reply: list[int] = self._spi.xfer2(data)
            return reply

    def close(self) -> None:
        """Close the device (idempotent); the next transfer opens it again."""
        with self._lock:
            if self._spi is not None:
                self._spi.close()
                self._spi = None


# --- sysfs PWM ------------------------------------------------------------------------------

PWM_PERIOD_NS = 1_000_000  # 1 kHz (IEC 61851-1 A.2.2)


class SysfsPwm:
    """One channel of the Linux PWM class: period, duty_cycle and enable under sysfs.

    The pilot generator turns the PWM output's high level into +12 V and its low level
    into -12 V, so a constant +12 V is 100 % duty and a constant -12 V is 0 % duty; the
    channel stays enabled and only its duty changes (no gap when the duty changes).
    `inverted` is for a generator stage that inverts: the duty is complemented here,
    since not every PWM chip supports the `polarity` file.
    """

    def __init__(
        self,
        *,
        sysfs_root: Path,
        chip: int,
        channel: int,
        period_ns: int = PWM_PERIOD_NS,
        inverted: bool = False,
        export_timeout_s: float = 1.0,
    ) -> None:
        """Drive pwmchip`chip`/pwm`channel` under `sysfs_root`; nothing written yet."""
        self.chip_dir = sysfs_root / f"pwmchip{chip}"
        self.channel = channel
        self.channel_dir = self.chip_dir / f"pwm{channel}"
        self.period_ns = period_ns
        self.inverted = inverted
        self._export_timeout_s = export_timeout_s
        self._written: dict[str, int] = {}

    def open(self) -> None:
        """Export the channel if needed and set the period; raises DriverError."""
        if not self.chip_dir.is_dir():
            raise DriverError(f"no PWM chip at {self.chip_dir}")
        if not self.channel_dir.is_dir():
            self._write_file(self.chip_dir / "export", self.channel)
            deadline = time.monotonic() + self._export_timeout_s
            # udev may take a moment to create the files (and grant access) after export.
            while not (self.channel_dir / "period").exists():
                if time.monotonic() >= deadline:
                    raise DriverError(f"{self.channel_dir} did not appear after export")
                time.sleep(0.01)
        self._written.clear()
        if self._read("period") != self.period_ns:
            # The kernel refuses a period below the current duty: zero the duty first.
            self._write("duty_cycle", 0)
            self._write("period", self.period_ns)

    def set_duty_percent(self, duty_percent: float) -> None:
        """Output this duty (0 = constant low, 100 = constant high); raises DriverError."""
        if not (math.isfinite(duty_percent) and 0.0 <= duty_percent <= 100.0):
            raise DriverError(f"duty_percent must be within 0..100, got {duty_percent}")
        duty_ns = round(self.period_ns * duty_percent / 100.0)
        if self.inverted:
            duty_ns = self.period_ns - duty_ns
        self._write("duty_cycle", duty_ns)
        self._write("enable", 1)

    def _read(self, name: str) -> int | None:
        try:
            return int((self.channel_dir / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def _write(self, name: str, value: int) -> None:
        if self._written.get(name) == value:
            return  # idempotent: the kernel already holds this value
        self._write_file(self.channel_dir / name, value)
        self._written[name] = value

    @staticmethod
    def _write_file(path: Path, value: int) -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            raise DriverError(f"cannot write {value} to {path}: {exc}") from exc
