"""The RGB LED indicator on the memory GPIO chip: lines lit per state, blink timing, holds.

The LED's far end is a MemoryGpioBackend whose output levels every test reads; time is
a FakeClock handed to the indicator as its `sleep`, so blink phases and holds move only
when the test advances the clock (`run_for`), and each level change is recorded with the
fake time it happened at.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from drivers import gpio_board
from drivers.gpio_backends import EdgeCallback, GpioRequest, LineConfig, MemoryGpioBackend
from drivers.gpio_indicator import (
    DEFAULT_PATTERNS,
    GpioLedIndicator,
    LedPattern,
    Rgb,
)
from drivers.indicator import Indicator, IndicatorState
from drivers.interfaces import DriverError
from drivers.registry import DriverContext, DriverOptionError
from simulator.indicator import SimIndicator
from tests.fakes import FakeClock, settle

RED_LINE, GREEN_LINE, BLUE_LINE = 5, 6, 13
LINES = {
    "led_red": LineConfig(RED_LINE),
    "led_green": LineConfig(GREEN_LINE),
    "led_blue": LineConfig(BLUE_LINE),
}
S = IndicatorState

OFF = (False, False, False)
RED = (True, False, False)
GREEN = (False, True, False)
BLUE = (False, False, True)
AMBER = (True, True, False)


@dataclass
class Led:
    """The far end: an RGB LED on a memory chip, watched against a fake clock."""

    chip: MemoryGpioBackend
    clock: FakeClock
    indicator: GpioLedIndicator
    lines: Mapping[str, LineConfig] = field(default_factory=lambda: LINES)
    #: (fake time, line offset, physical level) for every change of an LED line.
    changes: list[tuple[datetime, int, bool]] = field(default_factory=list)

    def shown(self) -> IndicatorState | None:
        """The state the indicator says it renders now."""
        return self.indicator.shown

    def rgb(self) -> tuple[bool, bool, bool]:
        """The physical levels of the red, green and blue lines now."""
        return (
            self.chip.level(RED_LINE),
            self.chip.level(GREEN_LINE),
            self.chip.level(BLUE_LINE),
        )

    async def run_for(self, seconds: float) -> None:
        """Move the fake clock `seconds` ahead, stopping at every sleep's deadline on the
        way so that each blink step happens at its own time."""
        end = self.clock.now() + timedelta(seconds=seconds)
        await settle(5)
        while True:
            due = [d for d in self.clock.deadlines() if d <= end]
            if not due:
                break
            self.clock.set(due[0])
            await settle(5)
        self.clock.set(end)
        await settle(5)

    def toggles(self, line: int) -> list[tuple[float, bool]]:
        """The changes of one line as (seconds since the first change, level)."""
        picked = [(at, level) for at, offset, level in self.changes if offset == line]
        if not picked:
            return []
        start = picked[0][0]
        return [((at - start).total_seconds(), level) for at, level in picked]


def _build(lines: Mapping[str, LineConfig] = LINES, **kwargs: object) -> Led:
    chip = MemoryGpioBackend()
    clock = FakeClock()
    indicator = GpioLedIndicator(gpio=chip, lines=lines, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]
    led = Led(chip, clock, indicator, lines)
    chip.on_output(lambda offset, level: led.changes.append((clock.now(), offset, level)))
    return led


@pytest.fixture
async def led() -> AsyncIterator[Led]:
    """A started LED indicator; stopped after the test, which must leave no task behind."""
    made = _build()
    await made.indicator.start()
    made.changes.clear()  # the request itself drove the lines low
    yield made
    await made.indicator.stop()
    await settle(5)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leaked, f"tasks leaked: {leaked}"


# -- steady states ---------------------------------------------------------------------------


def test_both_indicators_implement_the_indicator_protocol() -> None:
    assert isinstance(_build().indicator, Indicator)
    assert isinstance(SimIndicator(), Indicator)


async def test_start_holds_the_led_lines_dark_and_stop_releases_them() -> None:
    made = _build()
    await made.indicator.start()
    assert made.rgb() == OFF
    assert all(made.chip.is_requested(line) for line in (RED_LINE, GREEN_LINE, BLUE_LINE))
    await made.indicator.show(S.FAULT)
    await made.indicator.stop()
    assert made.rgb() == OFF
    assert not made.chip.is_requested(RED_LINE)
    assert made.indicator.shown is None


@pytest.mark.parametrize(
    ("state", "lit"),
    [(S.ACCEPTED, GREEN), (S.FAULT, RED), (S.RESERVED, AMBER), (S.UNAVAILABLE, OFF)],
)
async def test_steady_states_light_their_colour_and_keep_it(
    led: Led, state: IndicatorState, lit: tuple[bool, bool, bool]
) -> None:
    await led.indicator.show(state)
    assert led.rgb() == lit
    await led.run_for(10.0)
    assert led.rgb() == lit
    assert led.shown() == state


async def test_a_new_state_replaces_the_previous_pattern_at_once(led: Led) -> None:
    await led.indicator.show(S.CHARGING)
    await led.run_for(1.5)  # in the dark phase of the slow blink
    assert led.rgb() == OFF
    assert led.indicator.colour == Rgb()
    await led.indicator.show(S.FAULT)
    assert led.rgb() == RED
    await led.run_for(5.0)
    assert led.rgb() == RED  # the old blink no longer touches the lines


# -- blinking --------------------------------------------------------------------------------


async def test_authorizing_blinks_blue_four_times_a_second(led: Led) -> None:
    await led.indicator.show(S.AUTHORIZING)
    await led.run_for(1.0)
    assert led.toggles(BLUE_LINE) == [
        (0.0, True), (0.125, False), (0.25, True), (0.375, False),
        (0.5, True), (0.625, False), (0.75, True), (0.875, False), (1.0, True),
    ]  # fmt: skip
    assert led.toggles(RED_LINE) == led.toggles(GREEN_LINE) == []


async def test_charging_blinks_blue_slowly(led: Led) -> None:
    await led.indicator.show(S.CHARGING)
    await led.run_for(4.0)
    assert led.toggles(BLUE_LINE) == [(0.0, True), (1.0, False), (2.0, True), (3.0, False),
                                      (4.0, True)]  # fmt: skip


async def test_idle_is_a_dim_green_lit_a_fifth_of_the_time(led: Led) -> None:
    await led.indicator.show(S.IDLE)
    await led.run_for(0.1)
    toggles = led.toggles(GREEN_LINE)
    lit_s = sum(end - start for (start, level), (end, _) in itertools.pairwise(toggles) if level)
    span_s = toggles[-1][0] - toggles[0][0]
    assert len(toggles) >= 19  # 100 Hz: ten periods in 0.1 s
    assert lit_s / span_s == pytest.approx(0.2, abs=0.03)
    assert led.toggles(RED_LINE) == led.toggles(BLUE_LINE) == []


async def test_showing_the_same_state_again_does_not_restart_its_blink(led: Led) -> None:
    await led.indicator.show(S.CHARGING)
    await led.run_for(0.6)
    await led.indicator.show(S.CHARGING)
    await led.run_for(0.5)  # 1.1 s after the first show: the dark phase
    assert led.rgb() == OFF


# -- transient states: holds and fallback ----------------------------------------------------


async def test_rejected_blinks_red_for_its_hold_then_falls_back_to_the_steady_state(
    led: Led,
) -> None:
    await led.indicator.show(S.IDLE)
    await led.indicator.show(S.REJECTED, hold_s=3.0)
    assert led.rgb() == RED
    await led.run_for(0.1)
    assert led.rgb() == OFF  # blinking
    await led.run_for(2.85)
    assert led.shown() == S.REJECTED
    red = led.toggles(RED_LINE)
    assert red[-1][0] == pytest.approx(2.9)
    await led.run_for(0.1)  # 3.05 s: the hold is over
    assert led.shown() == S.IDLE
    assert led.rgb()[0] is False and led.rgb()[2] is False
    assert led.toggles(GREEN_LINE)  # the dim green runs again
    await led.run_for(5.0)
    assert led.toggles(RED_LINE) == red  # red stays dark after the hold


async def test_accepted_shows_solid_green_for_its_hold_then_charging_blinks(led: Led) -> None:
    await led.indicator.show(S.CHARGING)
    await led.indicator.show(S.ACCEPTED, hold_s=2.0)
    await led.run_for(1.9)
    assert led.rgb() == GREEN
    await led.run_for(0.2)
    assert led.shown() == S.CHARGING
    assert led.rgb() == BLUE  # the slow blink starts again, lit
    await led.run_for(1.0)
    assert led.rgb() == OFF


async def test_a_hold_without_a_steady_state_before_it_ends_dark(led: Led) -> None:
    await led.indicator.show(S.ACCEPTED, hold_s=2.0)
    await led.run_for(2.5)
    assert led.rgb() == OFF
    assert led.shown() is None


async def test_a_steady_state_shown_during_a_hold_ends_the_hold(led: Led) -> None:
    await led.indicator.show(S.IDLE)
    await led.indicator.show(S.ACCEPTED, hold_s=2.0)
    await led.run_for(0.5)
    await led.indicator.show(S.FAULT)
    assert led.rgb() == RED
    await led.run_for(3.0)
    assert led.rgb() == RED
    assert led.shown() == S.FAULT


async def test_a_steady_state_shown_again_during_a_hold_ends_the_hold(led: Led) -> None:
    await led.indicator.show(S.FAULT)
    await led.indicator.show(S.REJECTED, hold_s=3.0)
    await led.run_for(0.1)
    await led.indicator.show(S.FAULT)
    assert led.rgb() == RED
    await led.run_for(0.1)
    assert led.rgb() == RED  # no longer blinking


# -- wiring variants and failures ------------------------------------------------------------


async def test_a_common_anode_led_is_lit_by_driving_its_lines_low() -> None:
    lines = {role: LineConfig(cfg.line, active_low=True) for role, cfg in LINES.items()}
    made = _build(lines)
    await made.indicator.start()
    assert made.rgb() == (True, True, True)  # dark: every cathode pulled high
    await made.indicator.show(S.FAULT)
    assert made.rgb() == (False, True, True)
    await made.indicator.stop()


async def test_an_led_with_only_red_and_green_shows_amber_and_ignores_blue() -> None:
    made = _build({"led_red": LineConfig(RED_LINE), "led_green": LineConfig(GREEN_LINE)})
    await made.indicator.start()
    await made.indicator.show(S.RESERVED)
    assert made.rgb() == AMBER
    await made.indicator.show(S.ACCEPTED)
    assert made.rgb() == GREEN
    assert not made.chip.is_requested(BLUE_LINE)
    await made.indicator.stop()


async def test_custom_patterns_replace_the_defaults() -> None:
    patterns: dict[IndicatorState, LedPattern] = {
        **DEFAULT_PATTERNS,
        S.FAULT: LedPattern(Rgb(red=True), on_s=0.5, off_s=0.5),
    }
    made = _build(patterns=patterns)
    await made.indicator.start()
    await made.indicator.show(S.FAULT)
    await made.run_for(0.5)
    assert made.rgb() == OFF
    await made.indicator.stop()


async def test_show_before_start_raises_driver_error() -> None:
    with pytest.raises(DriverError):
        await _build().indicator.show(S.IDLE)


async def test_start_fails_when_the_board_already_holds_the_led_lines() -> None:
    made = _build()
    held = made.chip.request("board", outputs={"x": LineConfig(GREEN_LINE)}, inputs={}, initial={})
    with pytest.raises(DriverError, match="busy"):
        await made.indicator.start()
    held.release()


def test_construction_refuses_unknown_roles_missing_lines_and_missing_patterns() -> None:
    chip = MemoryGpioBackend()
    with pytest.raises(ValueError, match="unknown LED roles"):
        GpioLedIndicator(gpio=chip, lines={"contactor": LineConfig(1)})
    with pytest.raises(ValueError, match="at least one"):
        GpioLedIndicator(gpio=chip, lines={})
    with pytest.raises(ValueError, match="fault"):
        patterns: dict[IndicatorState, LedPattern] = {
            s: p for s, p in DEFAULT_PATTERNS.items() if s != S.FAULT
        }
        GpioLedIndicator(gpio=chip, lines=LINES, patterns=patterns)


class _FailingChip(MemoryGpioBackend):
    """A chip whose lines stop accepting values once `broken` is set."""

    broken = False

    def request(
        self,
        consumer: str,
        *,
        outputs: Mapping[str, LineConfig],
        inputs: Mapping[str, LineConfig],
        initial: Mapping[str, bool],
    ) -> GpioRequest:
        inner = super().request(consumer, outputs=outputs, inputs=inputs, initial=initial)
        chip = self

        class Breaking:
            def set_value(self, role: str, value: bool) -> None:
                if chip.broken:
                    raise DriverError("line write failed")
                inner.set_value(role, value)

            def get_value(self, role: str) -> bool:
                return inner.get_value(role)

            def watch(self, on_edge: EdgeCallback) -> None:
                inner.watch(on_edge)

            def release(self) -> None:
                inner.release()

        return Breaking()


async def test_a_line_that_fails_mid_blink_is_logged_and_stop_still_releases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chip, clock = _FailingChip(), FakeClock()
    indicator = GpioLedIndicator(gpio=chip, lines=LINES, sleep=clock.sleep)
    await indicator.start()
    await indicator.show(S.CHARGING)
    await settle(5)  # the blink task waits for the end of the lit phase
    chip.broken = True
    with caplog.at_level(logging.ERROR):
        clock.advance(1.0)
        await settle(5)
    assert "LED pattern failed" in caplog.text
    with pytest.raises(DriverError):
        await indicator.show(S.FAULT)
    await indicator.stop()
    assert not chip.is_requested(RED_LINE)


# -- options ---------------------------------------------------------------------------------


def _context() -> DriverContext:
    return DriverContext(evse_id=2, max_current_a=32.0, phases=3)


async def test_options_build_an_indicator_on_the_board_s_shared_memory_chip() -> None:
    context = _context()
    options = {"backend": "memory", "chip": "c0", "lines": {"led_red": 5, "led_green": 6}}
    indicator = GpioLedIndicator.from_options(options, context)
    chip = context.shared[gpio_board.shared_key("gpio", "memory", "c0")]
    assert isinstance(chip, MemoryGpioBackend)
    assert indicator.gpio_backend is chip
    await indicator.start()
    await indicator.show(S.RESERVED)
    assert (chip.level(5), chip.level(6)) == (True, True)
    await indicator.stop()


async def test_soft_dim_off_shows_idle_as_steady_green() -> None:
    options = {"backend": "memory", "lines": {"led_green": 6}, "soft_dim": False}
    indicator = GpioLedIndicator.from_options(options, _context())
    chip = indicator.gpio_backend
    assert isinstance(chip, MemoryGpioBackend)
    await indicator.start()
    await indicator.show(S.IDLE)
    await settle(5)
    assert chip.level(6) is True
    await indicator.stop()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"backend": "memory", "lines": {"led_red": 5}, "colour": "x"}, "colour"),
        ({"backend": "memory", "lines": {}}, "lines"),
        ({"backend": "memory", "lines": {"led_red": 5, "contactor": 6}}, "lines.contactor"),
        ({"backend": "memory", "lines": {"led_red": 5, "led_blue": 5}}, "lines.led_blue"),
        ({"backend": "memory", "lines": {"led_red": 5}, "soft_dim": "yes"}, "soft_dim"),
        ({"backend": "sysfs", "lines": {"led_red": 5}}, "backend"),
    ],
)
def test_bad_options_name_their_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(DriverOptionError) as caught:
        GpioLedIndicator.from_options(options, _context())
    assert caught.value.key == key
