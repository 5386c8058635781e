"""The GPIO board: pilot, PWM, contactor, RCD input, LEDs and lock on a Linux SBC's pins.

Responsible for one EVSE built from discrete parts (docs/gpio-board.md has the wiring and
the electrical assumptions):

* the pilot generator is fed by one PWM channel (`SysfsPwm`): 100 % duty holds +12 V,
  0 % holds -12 V (state F), anything between oscillates at 1 kHz;
* the pilot voltage comes back through a divider into an MCP3008 (`drivers.pilot_adc`):
  a sampling thread reads bursts, and the event loop classifies and debounces them;
* the contactor relay is a GPIO output with its mirror contact on an input: a mirror that
  does not follow the command within `feedback_timeout_ms` becomes CONTACTOR_WELDED
  (stays closed) or CONTACTOR_STUCK_OPEN (never closes);
* an RCD (or RDC-DD module) trip output on an input becomes RCD_TRIP for as long as the
  input says tripped;
* `GpioConnectorLock` drives a lock motor through two lines and waits for its feedback.

Faults the driver latches, because the condition cannot be observed again without the
core's cooperation: CONTACTOR_STUCK_OPEN (until a close is confirmed or the board is
restarted) and a missing diode (until the pilot reads A, the vehicle gone). Everything
else follows the hardware: the fault clears when the condition does.

It must not decide what a pilot level means for a session, nor when to open the
contactor on a fault (the core does both); it reports facts and executes commands.
Hardware libraries are imported by the backends only (drivers/gpio_backends.py, and
spidev by drivers/pilot_adc.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drivers.gpio_backends import (
    Bias,
    GpioBackend,
    GpiodBackend,
    GpioRequest,
    LineConfig,
    MemoryGpioBackend,
    OptionReader,
    RpiGpioBackend,
)
from drivers.interfaces import BoardEventSink, DriverError
from drivers.pilot_adc import (
    MCP3004_CHANNELS,
    MCP3008_CHANNELS,
    AdcChannel,
    Mcp3008AdcChannel,
    MemorySpiDev,
    PilotProblem,
    PilotReading,
    PilotSampler,
    PilotSampling,
    PilotScaling,
    SpidevTransport,
    SpiTransport,
    SysfsPwm,
)
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import (
    BoardCapabilities,
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
)

log = logging.getLogger(__name__)

BOARD_ROLES = ("contactor", "contactor_feedback", "rcd_trip", "led_red", "led_green", "led_blue")
LOCK_ROLES = ("lock_motor_a", "lock_motor_b", "lock_feedback")
_BOARD_INPUTS = ("contactor_feedback", "rcd_trip")


def shared_key(kind: str, *where: object) -> tuple[object, ...]:
    """The `DriverContext.shared` key under which the GPIO drivers keep a backend.

    ("gpio", backend, chip) holds the GpioBackend of a chip, ("spi", backend, bus, device)
    the SpiTransport of an ADC; with backend "memory" these are the in-memory chips a test
    or a developer drives as the far end.
    """
    return (kind, *where)


class GpioBoardSupport:
    """BoardSupport over GPIO lines, a sysfs PWM channel and an SPI ADC."""

    def __init__(
        self,
        *,
        gpio: GpioBackend,
        lines: Mapping[str, LineConfig],
        pwm: SysfsPwm,
        adc: AdcChannel,
        capabilities: BoardCapabilities,
        scaling: PilotScaling | None = None,
        sampling: PilotSampling | None = None,
        feedback_timeout_s: float = 0.3,
        consumer: str = "cpagent",
        spi: SpiTransport | None = None,
        on_stop: Sequence[Callable[[], None]] = (),
    ) -> None:
        """A stopped board; raises ValueError without a contactor line."""
        if "contactor" not in lines:
            raise ValueError("a GPIO board needs a contactor line")
        self._gpio = gpio
        self._lines = dict(lines)
        self._pwm = pwm
        self._sampler = PilotSampler(adc, scaling=scaling, sampling=sampling, name=consumer)
        self._spi = spi
        self._capabilities = capabilities
        self._feedback_timeout_s = feedback_timeout_s
        self._consumer = consumer
        self._on_stop = tuple(on_stop)
        self._has_feedback = "contactor_feedback" in lines
        self._request: GpioRequest | None = None
        self._sink: BoardEventSink | None = None
        self._duty_percent: float | None = None
        self._reset_observations()

    def _reset_observations(self) -> None:
        self._reported: PilotState | None = None
        self._initial_done = False
        self._initial = asyncio.Event()
        self._faults: dict[FaultCode, str] = {}
        self._diode_latched = False
        self._commanded = False
        self._feedback: bool | None = None
        self._feedback_timer: asyncio.TimerHandle | None = None

    # -- identity ------------------------------------------------------------------------

    @property
    def capabilities(self) -> BoardCapabilities:
        """Static limits of this EVSE's power path."""
        return self._capabilities

    @property
    def gpio_backend(self) -> GpioBackend:
        """The GPIO chip this board uses (a MemoryGpioBackend is the far end in tests)."""
        return self._gpio

    @property
    def spi(self) -> SpiTransport | None:
        """The ADC's SPI transport (a MemorySpiDev with backend memory)."""
        return self._spi

    @property
    def started(self) -> bool:
        """Whether events are being reported."""
        return self._sink is not None

    # -- BoardSupport --------------------------------------------------------------------

    async def start(self, sink: BoardEventSink) -> None:
        """Make the outputs safe, then report pilot, contactor and faults; raises DriverError."""
        if self._sink is not None:
            raise DriverError("board already started")
        await asyncio.to_thread(self._pwm.open)
        self._duty_percent = None  # open() may have rewritten the duty
        self._reset_observations()
        inputs = {r: c for r, c in self._lines.items() if r in _BOARD_INPUTS}
        outputs = {r: c for r, c in self._lines.items() if r not in _BOARD_INPUTS}
        request = self._gpio.request(self._consumer, outputs=outputs, inputs=inputs, initial={})
        try:
            self._set_pilot(100.0, oscillating=False)
            request.watch(self._on_edge)
            if self._has_feedback:
                self._feedback = request.get_value("contactor_feedback")
            if "rcd_trip" in inputs and request.get_value("rcd_trip"):
                self._fault(FaultCode.RCD_TRIP, True, "RCD tripped")
        except DriverError:
            request.release()
            raise
        self._request = request
        self._sink = sink
        self._check_contactor()
        self._sampler.start(self._apply, self._on_adc_failure)
        try:
            await asyncio.wait_for(self._initial.wait(), self._sampler.sampling.start_timeout_s)
        except TimeoutError:
            self._fault(FaultCode.INTERNAL_ERROR, True, "no stable pilot reading after start")
            self._report_initial(None)

    async def stop(self) -> None:
        """Stop sampling, open the contactor, hold the pilot at +12 V, release the lines."""
        if self._sink is None:
            return
        self._sink = None
        if self._feedback_timer is not None:
            self._feedback_timer.cancel()
            self._feedback_timer = None
        request, self._request = self._request, None
        try:
            if request is not None:
                request.set_value("contactor", False)
            self._set_pilot(100.0, oscillating=False)
        finally:
            if request is not None:
                request.release()
            await self._sampler.stop()
            for closer in self._on_stop:
                closer()

    async def pwm_on(self, duty_percent: float) -> None:
        """Oscillate the pilot at 1 kHz with this duty; raises DriverError off 0..100."""
        self._require_started()
        self._set_pilot(duty_percent, oscillating=0.0 < duty_percent < 100.0)

    async def pwm_off(self) -> None:
        """Hold the pilot at +12 V (100 % duty)."""
        self._require_started()
        self._set_pilot(100.0, oscillating=False)

    async def pwm_f(self) -> None:
        """Hold the pilot at -12 V (0 % duty): state F, reported at once."""
        self._require_started()
        if self._duty_percent == 0.0:
            return
        self._set_pilot(0.0, oscillating=False)
        # F is the EVSE's own level, not the vehicle's: report it now, as a board without
        # a pilot ADC would; the measurement confirms it or (a short: E) corrects it.
        if self._reported != PilotState.F:
            self._reported = PilotState.F
            self._emit(PilotEvent(PilotState.F))

    async def set_contactor(self, closed: bool) -> None:
        """Drive the relay; the mirror contact's edge reports it (a ContactorEvent)."""
        request = self._require_started()
        if closed == self._commanded:
            return
        request.set_value("contactor", closed)
        self._commanded = closed
        if not self._has_feedback:
            self._emit(ContactorEvent(closed))  # without a mirror: repeat the command
        self._check_contactor()

    async def set_indicator(self, *, red: bool, green: bool, blue: bool) -> None:
        """Light the status LEDs that are wired; raises DriverError when stopped."""
        request = self._require_started()
        for role, on in (("led_red", red), ("led_green", green), ("led_blue", blue)):
            if role in self._lines:
                request.set_value(role, on)

    # -- the pilot -----------------------------------------------------------------------

    def _require_started(self) -> GpioRequest:
        if self._request is None:
            raise DriverError("board not started")
        return self._request

    def _set_pilot(self, duty_percent: float, *, oscillating: bool) -> None:
        if duty_percent == self._duty_percent:
            return
        if 0.0 in (duty_percent, self._duty_percent):
            # Entering or leaving F: whatever is measured next is news, even the level
            # that was stable before F.
            self._sampler.forget()
        with self._sampler.changing_drive(oscillating):
            self._pwm.set_duty_percent(duty_percent)
            self._duty_percent = duty_percent

    def _on_adc_failure(self, detail: str) -> None:
        self._fault(FaultCode.INTERNAL_ERROR, True, detail)
        if not self._initial_done:
            self._report_initial(None)

    def _apply(self, reading: PilotReading) -> None:
        state = reading.state
        if reading.problem == PilotProblem.DIODE_MISSING:
            self._diode_latched = True
        elif state == PilotState.A:
            self._diode_latched = False  # the vehicle without a diode is gone
        problem = reading.problem is not None and reading.problem != PilotProblem.DIODE_MISSING
        pilot_fault = problem or self._diode_latched
        self._fault(FaultCode.INTERNAL_ERROR, False)
        if pilot_fault:
            detail = reading.describe() if reading.problem else "diode missing"
            self._fault(FaultCode.PILOT_FAULT, True, detail)
        if not self._initial_done:
            self._report_initial(state)
        elif state is not None and state != self._reported:
            self._reported = state
            self._emit(PilotEvent(state))
        if not pilot_fault:
            self._fault(FaultCode.PILOT_FAULT, False)

    def _report_initial(self, state: PilotState | None) -> None:
        """The report `start()` owes: pilot first, then the contactor, then active faults."""
        self._initial_done = True
        # No plausible level yet: report E, "no supply", until a reading says otherwise.
        self._reported = state or PilotState.E
        self._emit(PilotEvent(self._reported))
        if self._has_feedback and self._feedback is not None:
            self._emit(ContactorEvent(self._feedback))
        for code, detail in self._faults.items():
            self._emit(FaultEvent(code, True, detail))
        self._initial.set()

    # -- inputs and faults ---------------------------------------------------------------

    def _emit(self, event: BoardEvent) -> None:
        sink = self._sink
        if sink is not None and self._initial_done:
            sink(event)

    def _fault(self, code: FaultCode, active: bool, detail: str = "") -> None:
        if active == (code in self._faults):
            return
        if active:
            log.warning("%s: %s %s", self._consumer, code, detail)
            self._faults[code] = detail
        else:
            log.info("%s: %s cleared", self._consumer, code)
            del self._faults[code]
        self._emit(FaultEvent(code, active, detail))

    def _on_edge(self, role: str, value: bool) -> None:
        """On the loop: an input changed (the backend may repeat a value; ignore that)."""
        if self._request is None:
            return
        if role == "contactor_feedback":
            if value == self._feedback:
                return
            self._feedback = value
            self._emit(ContactorEvent(value))
            self._check_contactor()
        elif role == "rcd_trip":
            self._fault(FaultCode.RCD_TRIP, value, "RCD tripped")

    def _check_contactor(self) -> None:
        """Compare the mirror with the command; a mismatch that outlasts the timeout is a fault."""
        if not self._has_feedback:
            return
        if self._feedback == self._commanded:
            if self._feedback_timer is not None:
                self._feedback_timer.cancel()
                self._feedback_timer = None
            # A weld is gone once the contact reads open while commanded open; a contactor
            # that would not close is cleared only by a confirmed close.
            self._fault(
                FaultCode.CONTACTOR_STUCK_OPEN if self._commanded else FaultCode.CONTACTOR_WELDED,
                False,
            )
        elif self._feedback_timer is None:
            loop = asyncio.get_running_loop()
            self._feedback_timer = loop.call_later(self._feedback_timeout_s, self._feedback_expired)

    def _feedback_expired(self) -> None:
        self._feedback_timer = None
        if self._feedback == self._commanded or self._request is None:
            return
        waited_ms = round(self._feedback_timeout_s * 1000)
        if self._commanded:
            self._fault(
                FaultCode.CONTACTOR_STUCK_OPEN, True, f"mirror still open after {waited_ms} ms"
            )
        else:
            self._fault(
                FaultCode.CONTACTOR_WELDED, True, f"mirror still closed after {waited_ms} ms"
            )

    # -- configuration -------------------------------------------------------------------

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> GpioBoardSupport:
        """Build a board from its YAML options; raises DriverOptionError naming the key."""
        o = OptionReader(options)
        o.only(
            "backend", "chip", "lines", "pwm", "adc", "sampling", "feedback_timeout_ms",
            "max_current_a",
        )  # fmt: skip
        backend = o.choice("backend", ("gpiod", "rpi", "memory"), "gpiod")
        chip = o.text("chip", "/dev/gpiochip0")
        lines = read_lines(o, BOARD_ROLES, required=("contactor",))
        pwm_o = o.section("pwm")
        pwm_o.only("chip", "channel", "sysfs_root", "inverted")
        pwm = SysfsPwm(
            sysfs_root=Path(pwm_o.text("sysfs_root", "/sys/class/pwm")),
            chip=pwm_o.integer("chip", 0, minimum=0),
            channel=pwm_o.integer("channel", 0, minimum=0),
            inverted=pwm_o.flag("inverted", False),
        )
        adc_o = o.section("adc")
        adc_o.only(
            "type", "bus", "device", "channel", "vref_v", "max_speed_hz",
            "pilot_v_per_adc_v", "pilot_v_at_adc_zero",
        )  # fmt: skip
        channels = {"mcp3008": MCP3008_CHANNELS, "mcp3004": MCP3004_CHANNELS}[
            adc_o.choice("type", ("mcp3008", "mcp3004"), "mcp3008")
        ]
        bus, device = adc_o.integer("bus", 0, minimum=0), adc_o.integer("device", 0, minimum=0)
        channel = adc_o.integer("channel", 0, minimum=0, maximum=channels - 1)
        vref_v = adc_o.number("vref_v", 3.3, minimum=0.1)
        speed_hz = adc_o.integer("max_speed_hz", 1_000_000, minimum=10_000)
        scaling = PilotScaling(
            adc_o.number("pilot_v_per_adc_v", 24.0 / 3.3, minimum=0.1),
            adc_o.number("pilot_v_at_adc_zero", -12.0),
        )
        s_o = o.section("sampling")
        s_o.only("period_ms", "burst_samples", "debounce_count", "hysteresis_v", "start_timeout_ms")
        sampling = PilotSampling(
            period_s=s_o.number("period_ms", 10.0, minimum=0.5) / 1000.0,
            burst_samples=s_o.integer("burst_samples", 32, minimum=4),
            debounce_count=s_o.integer("debounce_count", 3, minimum=1),
            hysteresis_v=s_o.number("hysteresis_v", 0.25, minimum=0.0, maximum=0.45),
            start_timeout_s=s_o.number("start_timeout_ms", 1000.0, minimum=10.0) / 1000.0,
        )
        feedback_timeout_s = o.number("feedback_timeout_ms", 300.0, minimum=10.0) / 1000.0
        max_current_a = o.number("max_current_a", context.max_current_a, minimum=6.0)
        gpio = _shared_backend(context, backend, chip)
        spi, closers = _shared_spi(context, backend, bus, device, speed_hz, vref_v)
        return cls(
            gpio=gpio,
            lines=lines,
            pwm=pwm,
            adc=Mcp3008AdcChannel(spi, channel=channel, vref_v=vref_v, channels=channels),
            capabilities=BoardCapabilities(
                max_current_a=max_current_a,
                phases=context.phases,
                has_contactor_feedback="contactor_feedback" in lines,
            ),
            scaling=scaling,
            sampling=sampling,
            feedback_timeout_s=feedback_timeout_s,
            consumer=f"cpagent-evse{context.evse_id}",
            spi=spi,
            on_stop=closers,
        )


class GpioConnectorLock:
    """ConnectorLock over two motor lines (an H-bridge) and a feedback input.

    The lines are requested for each movement and released after it, so the motor can
    never be left powered and an in-process restart finds them free.
    """

    def __init__(
        self,
        *,
        gpio: GpioBackend,
        lines: Mapping[str, LineConfig],
        timeout_s: float = 1.0,
        consumer: str = "cpagent-lock",
    ) -> None:
        """A lock on these lines; raises ValueError when one of LOCK_ROLES is missing."""
        missing = [role for role in LOCK_ROLES if role not in lines]
        if missing:
            raise ValueError(f"a GPIO lock needs lines {missing}")
        self._gpio = gpio
        self._lines = dict(lines)
        self._timeout_s = timeout_s
        self._consumer = consumer
        self._busy = asyncio.Lock()

    @property
    def gpio_backend(self) -> GpioBackend:
        """The GPIO chip this lock uses."""
        return self._gpio

    async def set_locked(self, locked: bool) -> bool:
        """Drive the motor until the feedback confirms `locked` or the timeout; raises
        DriverError when the lines cannot be requested."""
        async with self._busy:
            request = self._gpio.request(
                self._consumer,
                outputs={r: self._lines[r] for r in ("lock_motor_a", "lock_motor_b")},
                inputs={"lock_feedback": self._lines["lock_feedback"]},
                initial={},
            )
            try:
                return await self._move(request, locked)
            finally:
                with contextlib.suppress(DriverError):
                    request.set_value("lock_motor_a", False)
                    request.set_value("lock_motor_b", False)
                request.release()

    async def _move(self, request: GpioRequest, locked: bool) -> bool:
        moved = asyncio.Event()
        request.watch(lambda role, value: moved.set() if value == locked else None)
        if request.get_value("lock_feedback") == locked:
            return True  # idempotent: already there, the motor stays off
        request.set_value("lock_motor_a", locked)
        request.set_value("lock_motor_b", not locked)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                while request.get_value("lock_feedback") != locked:
                    moved.clear()
                    await moved.wait()
        return request.get_value("lock_feedback") == locked

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> GpioConnectorLock:
        """Build a lock from its YAML options; raises DriverOptionError naming the key."""
        o = OptionReader(options)
        o.only("backend", "chip", "lines", "lock_timeout_ms")
        backend = o.choice("backend", ("gpiod", "rpi", "memory"), "gpiod")
        chip = o.text("chip", "/dev/gpiochip0")
        lines = read_lines(o, LOCK_ROLES, required=LOCK_ROLES)
        return cls(
            gpio=_shared_backend(context, backend, chip),
            lines=lines,
            timeout_s=o.number("lock_timeout_ms", 1000.0, minimum=10.0) / 1000.0,
            consumer=f"cpagent-evse{context.evse_id}-lock",
        )


def read_lines(
    o: OptionReader, roles: tuple[str, ...], *, required: tuple[str, ...]
) -> dict[str, LineConfig]:
    """The `lines` section: role -> offset, name, or {line, active_low, bias, debounce_ms}."""
    section = o.section("lines")
    section.only(*roles)
    lines: dict[str, LineConfig] = {}
    for role in roles:
        raw = section.raw(role)
        if raw is None:
            if role in required:
                raise DriverOptionError(section.key(role), "required")
            continue
        if isinstance(raw, Mapping):
            line_o = section.section(role)
            line_o.only("line", "active_low", "bias", "debounce_ms")
            raw_line = line_o.raw("line")
            bias = line_o.choice("bias", tuple(b.value for b in Bias), Bias.AS_IS.value)
            config = LineConfig(
                line=_line_id(line_o.key("line"), raw_line),
                active_low=line_o.flag("active_low", False),
                bias=Bias(bias),
                debounce_ms=line_o.number("debounce_ms", 0.0, minimum=0.0, maximum=1000.0),
            )
        else:
            config = LineConfig(line=_line_id(section.key(role), raw))
        clash = [other for other, cfg in lines.items() if cfg.line == config.line]
        if clash:
            raise DriverOptionError(section.key(role), f"line {config.line} is also {clash[0]}")
        lines[role] = config
    return lines


def _line_id(key: str, raw: object) -> int | str:
    if isinstance(raw, bool) or not isinstance(raw, int | str) or raw == "":
        raise DriverOptionError(key, f"expected a line offset or name, got {raw!r}")
    if isinstance(raw, int) and raw < 0:
        raise DriverOptionError(key, f"a line offset is >= 0, got {raw}")
    return raw


def _shared_backend(context: DriverContext, backend: str, chip: str) -> GpioBackend:
    """One backend per (backend, chip) and station, kept in `context.shared`."""
    key = shared_key("gpio", backend, chip)
    existing = context.shared.get(key)
    if existing is not None:
        found: GpioBackend = existing
        return found
    made: GpioBackend
    if backend == "memory":
        made = MemoryGpioBackend(chip)
    elif backend == "rpi":
        made = RpiGpioBackend()
    else:
        if not Path(chip).exists():
            raise DriverOptionError("chip", f"no GPIO chip at {chip}")
        made = GpiodBackend(chip)
    context.shared[key] = made
    return made


def _shared_spi(
    context: DriverContext, backend: str, bus: int, device: int, speed_hz: int, vref_v: float
) -> tuple[SpiTransport, list[Callable[[], None]]]:
    """The ADC's transport: a shared MemorySpiDev for `memory`, else spidev (opened lazily)."""
    if backend == "memory":
        key = shared_key("spi", "memory", bus, device)
        if key not in context.shared:
            context.shared[key] = MemorySpiDev(vref_v=vref_v)
        memory: MemorySpiDev = context.shared[key]
        return memory, []
    path = Path(f"/dev/spidev{bus}.{device}")
    if not path.exists():
        raise DriverOptionError("adc.bus", f"no SPI device at {path} (is SPI enabled?)")
    spidev = SpidevTransport(bus, device, speed_hz)
    return spidev, [spidev.close]
