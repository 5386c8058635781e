"""The indicator as an RGB LED on GPIO lines: a colour and a blink pattern per state.

Responsible for rendering `IndicatorState`s (drivers/indicator.py) on up to three GPIO
outputs (`led_red`, `led_green`, `led_blue`; amber is red and green together) through
the backends of drivers/gpio_backends.py. The default patterns (`DEFAULT_PATTERNS`):

    idle         dim green (software PWM: 2 ms on, 8 ms off), or steady with soft_dim off
    authorizing  blue, blinking 4 times a second
    accepted     steady green
    rejected     red, blinking fast
    charging     blue, slow blink (1 s on, 1 s off)
    fault        steady red
    reserved     steady amber
    unavailable  dark

Blinking and holds run in one tracked task per indicator, replaced (cancelled and
awaited) by every `show()` and by `stop()`; its failures are logged. A hold that runs
out falls back to the last state shown without one, as the contract says. Time comes
from an injected `sleep` so tests drive the blinking with a fake clock.

It must not decide what to show or for how long a transient state lasts (the core's
feedback logic does), and it must not import the agent. The LED lines are its own: they
must not be listed in the board's `lines` too (the second request finds them busy).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.gpio_backends import GpioBackend, GpioRequest, LineConfig, OptionReader
from drivers.gpio_board import _shared_backend, read_lines
from drivers.indicator import IndicatorState
from drivers.interfaces import DriverError
from drivers.registry import DriverContext, DriverOptionError

log = logging.getLogger(__name__)

LED_ROLES = ("led_red", "led_green", "led_blue")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Rgb:
    """Which of the three LED colours are lit."""

    red: bool = False
    green: bool = False
    blue: bool = False


DARK = Rgb()
RED = Rgb(red=True)
GREEN = Rgb(green=True)
BLUE = Rgb(blue=True)
AMBER = Rgb(red=True, green=True)


@dataclass(frozen=True, slots=True)
class LedPattern:
    """A colour lit steadily (`off_s` 0), or lit `on_s` then dark `off_s`, repeated."""

    colour: Rgb
    on_s: float = 0.0
    off_s: float = 0.0

    def __post_init__(self) -> None:
        """Raises ValueError for a negative duration or a blink without an on-time."""
        if self.on_s < 0 or self.off_s < 0:
            raise ValueError("pattern durations are >= 0")
        if self.off_s > 0 and self.on_s <= 0:
            raise ValueError("a blinking pattern needs on_s > 0")

    @property
    def blinking(self) -> bool:
        """Whether the pattern toggles (and so needs the blink task)."""
        return self.off_s > 0 and self.colour != DARK


DIM_GREEN = LedPattern(GREEN, on_s=0.002, off_s=0.008)

DEFAULT_PATTERNS: Mapping[IndicatorState, LedPattern] = {
    IndicatorState.IDLE: DIM_GREEN,
    IndicatorState.AUTHORIZING: LedPattern(BLUE, on_s=0.125, off_s=0.125),
    IndicatorState.ACCEPTED: LedPattern(GREEN),
    IndicatorState.REJECTED: LedPattern(RED, on_s=0.1, off_s=0.1),
    IndicatorState.CHARGING: LedPattern(BLUE, on_s=1.0, off_s=1.0),
    IndicatorState.FAULT: LedPattern(RED),
    IndicatorState.RESERVED: LedPattern(AMBER),
    IndicatorState.UNAVAILABLE: LedPattern(DARK),
}


class GpioLedIndicator:
    """Indicator over an RGB LED (any subset of red, green, blue) on GPIO outputs."""

    def __init__(
        self,
        *,
        gpio: GpioBackend,
        lines: Mapping[str, LineConfig],
        patterns: Mapping[IndicatorState, LedPattern] = DEFAULT_PATTERNS,
        sleep: Sleep = asyncio.sleep,
        consumer: str = "cpagent-indicator",
    ) -> None:
        """A stopped indicator; raises ValueError without an LED line, for an unknown
        role, or without a pattern for every state."""
        unknown = [role for role in lines if role not in LED_ROLES]
        if unknown:
            raise ValueError(f"unknown LED roles {unknown} (known: {LED_ROLES})")
        if not lines:
            raise ValueError(f"an LED indicator needs at least one of {LED_ROLES}")
        missing = [state.value for state in IndicatorState if state not in patterns]
        if missing:
            raise ValueError(f"no LED pattern for {missing}")
        self._gpio = gpio
        self._lines = dict(lines)
        self._patterns = dict(patterns)
        self._sleep = sleep
        self._consumer = consumer
        self._request: GpioRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._steady: IndicatorState | None = None  # last shown without a hold
        self._shown: IndicatorState | None = None  # what the LED renders now
        self._colour = DARK

    @property
    def gpio_backend(self) -> GpioBackend:
        """The GPIO chip the LED is on (a MemoryGpioBackend is the far end in tests)."""
        return self._gpio

    @property
    def shown(self) -> IndicatorState | None:
        """The state the LED renders now (after any fallback); None before the first show,
        after a hold with no steady state to fall back to, and when stopped."""
        return self._shown

    @property
    def colour(self) -> Rgb:
        """The colour lit at this instant (DARK in the off-phase of a blink)."""
        return self._colour

    async def start(self) -> None:
        """Request the LED lines, all dark; raises DriverError (a line busy or missing)."""
        if self._request is not None:
            return
        self._request = self._gpio.request(
            self._consumer, outputs=self._lines, inputs={}, initial={}
        )
        self._colour = DARK

    async def stop(self) -> None:
        """Stop blinking, darken the LED and release the lines (idempotent)."""
        await self._cancel_task()
        request, self._request = self._request, None
        self._steady = self._shown = None
        if request is None:
            return
        try:
            self._light(DARK, request)
        except DriverError:
            log.warning("%s: could not darken the LED before releasing it", self._consumer)
        finally:
            request.release()

    async def show(self, state: IndicatorState, *, hold_s: float | None = None) -> None:
        """Render `state` (for at most `hold_s`, then the last steady state); raises
        DriverError when stopped or a line cannot be set."""
        request = self._require_started()
        if hold_s is not None and not hold_s >= 0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s}")
        if hold_s is None and state == self._steady == self._shown:
            return  # idempotent: the pattern runs on unbroken
        await self._cancel_task()
        if hold_s is None:
            self._steady = state
        self._render(request, state)
        pattern = self._patterns[state]
        if pattern.blinking or hold_s is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._animate(request, pattern, hold_s), name=f"{self._consumer}-blink"
            )
            self._task.add_done_callback(self._task_done)

    # -- rendering -----------------------------------------------------------------------

    def _require_started(self) -> GpioRequest:
        if self._request is None:
            raise DriverError("indicator not started")
        return self._request

    def _render(self, request: GpioRequest, state: IndicatorState | None) -> None:
        """Show the first phase of `state`'s pattern (dark for None)."""
        self._shown = state
        self._light(DARK if state is None else self._patterns[state].colour, request)

    def _light(self, colour: Rgb, request: GpioRequest) -> None:
        levels = {"led_red": colour.red, "led_green": colour.green, "led_blue": colour.blue}
        for role, on in levels.items():
            if role in self._lines:
                request.set_value(role, on)
        self._colour = colour

    async def _animate(
        self, request: GpioRequest, pattern: LedPattern, hold_s: float | None
    ) -> None:
        """Blink `pattern` (already lit); after `hold_s`, render the steady state on."""
        if hold_s is not None:
            await self._blink(request, pattern, hold_s)
            self._render(request, self._steady)
            if self._steady is None:
                return
            pattern = self._patterns[self._steady]
        if pattern.blinking:
            await self._blink(request, pattern, math.inf)

    async def _blink(self, request: GpioRequest, pattern: LedPattern, duration_s: float) -> None:
        """Toggle `pattern` (starting lit) for `duration_s` (math.inf: until cancelled)."""
        remaining_s = duration_s
        lit = True
        while remaining_s > 0:
            if not pattern.blinking:
                step_s = remaining_s
            else:
                step_s = min(pattern.on_s if lit else pattern.off_s, remaining_s)
            await self._sleep(step_s)
            remaining_s -= step_s
            if remaining_s > 0 and pattern.blinking:
                lit = not lit
                self._light(pattern.colour if lit else DARK, request)

    async def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: LED pattern failed", self._consumer, exc_info=task.exception())

    # -- configuration -------------------------------------------------------------------

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> GpioLedIndicator:
        """Build an indicator from its YAML options; raises DriverOptionError naming the key.

        Options: backend (gpiod, rpi, memory), chip, lines (led_red, led_green, led_blue:
        an offset, a name, or {line, active_low} for a common-anode LED) and soft_dim
        (idle as a dimmed green by software PWM; false shows it steady).
        """
        o = OptionReader(options)
        o.only("backend", "chip", "lines", "soft_dim")
        backend = o.choice("backend", ("gpiod", "rpi", "memory"), "gpiod")
        chip = o.text("chip", "/dev/gpiochip0")
        lines = read_lines(o, LED_ROLES, required=())
        if not lines:
            raise DriverOptionError(o.key("lines"), f"at least one of {LED_ROLES} is needed")
        patterns = dict(DEFAULT_PATTERNS)
        if not o.flag("soft_dim", True):
            patterns[IndicatorState.IDLE] = LedPattern(GREEN)
        return cls(
            gpio=_shared_backend(context, backend, chip),
            lines=lines,
            patterns=patterns,
            consumer=f"cpagent-evse{context.evse_id}-indicator",
        )
