"""The GPIO board's parts and faults: sysfs PWM files, GPIO backends, options, lock.

The board runs against the far end of tests/contract/harness_gpio_board.py (memory GPIO,
a PWM tree whose writes a PwmPeer receives, an in-memory MCP3008). The gpiod and RPi.GPIO
backends cannot run here (no /dev/gpiochip*, no Raspberry Pi): they are exercised
against small stand-ins of the libraries' documented APIs, which checks our side of the
boundary only.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
import threading
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers import registry
from drivers.gpio_backends import (
    Bias,
    GpiodBackend,
    LineConfig,
    MemoryGpioBackend,
    RpiGpioBackend,
)
from drivers.gpio_board import GpioBoardSupport, GpioConnectorLock
from drivers.interfaces import DriverError
from drivers.pilot_adc import SysfsPwm
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import BoardEvent, ContactorEvent, FaultCode, FaultEvent, PilotEvent, PilotState
from tests.contract.conftest import EventRecorder
from tests.contract.harness_gpio_board import (
    LED_GREEN,
    LOCK_A,
    LOCK_B,
    RELAY,
    GpioBoardHarness,
    GpioLockHarness,
    board_options,
    lock_options,
    make_pwm_tree,
)

CONTEXT = DriverContext(evse_id=1, max_current_a=32.0, phases=3)

# -- sysfs PWM: real files under tmp_path ----------------------------------------------------


def _pwm(tmp_path: Path, **kwargs: Any) -> tuple[SysfsPwm, Path]:
    channel_dir = make_pwm_tree(tmp_path)
    return SysfsPwm(sysfs_root=tmp_path, chip=0, channel=0, **kwargs), channel_dir


@pytest.mark.parametrize(
    ("duty_percent", "duty_ns"), [(53.3, 533000), (10.0, 100000), (100.0, 1000000), (0.0, 0)]
)
def test_sysfs_pwm_writes_a_1_khz_period_and_the_duty_in_ns(
    tmp_path: Path, duty_percent: float, duty_ns: int
) -> None:
    pwm, files = _pwm(tmp_path)
    pwm.open()
    pwm.set_duty_percent(duty_percent)
    assert (files / "period").read_text() == "1000000\n"
    assert (files / "duty_cycle").read_text() == f"{duty_ns}\n"
    assert (files / "enable").read_text() == "1\n"


def test_sysfs_pwm_complements_the_duty_for_an_inverting_generator(tmp_path: Path) -> None:
    pwm, files = _pwm(tmp_path, inverted=True)
    pwm.open()
    pwm.set_duty_percent(25.0)
    assert (files / "duty_cycle").read_text() == "750000\n"


def test_sysfs_pwm_zeroes_a_larger_duty_before_shortening_the_period(tmp_path: Path) -> None:
    pwm, files = _pwm(tmp_path)
    (files / "period").write_text("20000000\n")
    (files / "duty_cycle").write_text("15000000\n")
    pwm.open()
    assert (files / "duty_cycle").read_text() == "0\n"
    assert (files / "period").read_text() == "1000000\n"


@pytest.mark.parametrize("duty_percent", [-1.0, 100.5, float("nan")])
def test_sysfs_pwm_refuses_a_duty_off_0_to_100(tmp_path: Path, duty_percent: float) -> None:
    pwm, files = _pwm(tmp_path)
    pwm.open()
    with pytest.raises(DriverError):
        pwm.set_duty_percent(duty_percent)
    assert (files / "enable").read_text() == "0\n"


def test_sysfs_pwm_exports_a_missing_channel_and_fails_if_it_never_appears(
    tmp_path: Path,
) -> None:
    (tmp_path / "pwmchip0").mkdir()
    (tmp_path / "pwmchip0" / "export").write_text("")
    pwm = SysfsPwm(sysfs_root=tmp_path, chip=0, channel=1, export_timeout_s=0.05)
    with pytest.raises(DriverError, match="did not appear"):
        pwm.open()
    assert (tmp_path / "pwmchip0" / "export").read_text() == "1\n"


def test_sysfs_pwm_without_the_chip_is_a_driver_error(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="no PWM chip"):
        SysfsPwm(sysfs_root=tmp_path, chip=3, channel=0).open()


def _edges(request: Any) -> tuple[list[tuple[str, bool]], asyncio.Event]:
    """Watch a request's inputs: the edges seen so far and an event set on each."""
    edges: list[tuple[str, bool]] = []
    arrived = asyncio.Event()

    def on_edge(role: str, value: bool) -> None:
        edges.append((role, value))
        arrived.set()

    request.watch(on_edge)
    return edges, arrived


# -- the memory GPIO backend -------------------------------------------------------------------


async def test_memory_backend_applies_active_low_and_delivers_edges_on_the_loop() -> None:
    chip = MemoryGpioBackend("t", line_names={"K1": 7})
    request = chip.request(
        "test",
        outputs={"relay": LineConfig("K1", active_low=True)},
        inputs={"trip": LineConfig(3, active_low=True, bias=Bias.PULL_UP)},
        initial={},
    )
    assert chip.level(7) is True  # inactive, active low: the pin is high
    assert request.get_value("trip") is False  # pulled up, active low: not tripped
    request.set_value("relay", True)
    assert chip.level("K1") is False
    edges, arrived = _edges(request)
    chip.drive(3, False)  # the module pulls the line down: tripped
    await arrived.wait()
    assert edges == [("trip", True)]
    with pytest.raises(DriverError, match="busy"):
        chip.request("other", outputs={"x": LineConfig(7)}, inputs={}, initial={})
    with pytest.raises(DriverError, match="output"):
        chip.drive(7, True)
    request.release()
    assert not chip.is_requested(7)
    assert chip.level(7) is False  # a released output falls back low


# -- the board against its far end -------------------------------------------------------------


@pytest.fixture
async def harness() -> AsyncIterator[GpioBoardHarness]:
    made = GpioBoardHarness(with_feedback=True)
    try:
        yield made
    finally:
        await made.close()


class Recorder(EventRecorder[BoardEvent]):
    """An EventRecorder that can also await a fault by code, whatever its detail."""

    async def wait_fault(self, code: FaultCode, active: bool, *, after: int = 0) -> int:
        async with asyncio.timeout(2.0):
            while True:
                for index in range(after, len(self.events)):
                    event = self.events[index]
                    if isinstance(event, FaultEvent) and (event.code, event.active) == (
                        code,
                        active,
                    ):
                        return index
                self._arrived.clear()
                await self._arrived.wait()

    def faults(self, code: FaultCode) -> list[FaultEvent]:
        return [e for e in self.events if isinstance(e, FaultEvent) and e.code == code]


async def _started(harness: GpioBoardHarness) -> Recorder:
    recorder = Recorder()
    await harness.board.start(recorder)
    await recorder.wait_for(PilotEvent(PilotState.A))
    return recorder


async def test_pilot_commands_reach_the_pwm_files_as_ns(harness: GpioBoardHarness) -> None:
    board = harness.board
    await _started(harness)
    await board.pwm_on(53.3)
    await board.pwm_f()
    await board.pwm_off()
    harness.pwm.drain()
    duties = [value for name, value in harness.pwm.writes if name == "duty_cycle"]
    assert duties[-4:] == [1000000, 533000, 0, 1000000]  # +12 V at start, PWM, F, +12 V
    assert ("enable", 1) in harness.pwm.writes


async def test_welded_contactor_is_reported_after_the_feedback_timeout_and_clears(
    harness: GpioBoardHarness,
) -> None:
    board, far = harness.board, harness.far_end
    recorder = await _started(harness)
    await board.set_contactor(True)
    closed = await recorder.wait_for(ContactorEvent(closed=True))
    far.weld()
    await board.set_contactor(False)
    welded = await recorder.wait_fault(FaultCode.CONTACTOR_WELDED, True, after=closed)
    assert not far.relay_level()
    assert ContactorEvent(closed=False) not in recorder.events[closed:welded]
    far.weld(False)
    opened = await recorder.wait_for(ContactorEvent(closed=False), after=welded)
    await recorder.wait_fault(FaultCode.CONTACTOR_WELDED, False, after=opened)


async def test_stuck_open_contactor_is_latched_until_a_close_is_confirmed(
    harness: GpioBoardHarness,
) -> None:
    board, far = harness.board, harness.far_end
    recorder = await _started(harness)
    far.jam_open()
    await board.set_contactor(True)
    stuck = await recorder.wait_fault(FaultCode.CONTACTOR_STUCK_OPEN, True)
    await board.set_contactor(False)  # command and mirror agree again, the fault stays
    far.jam_open(False)
    await board.set_contactor(True)
    confirmed = await recorder.wait_for(ContactorEvent(closed=True), after=stuck)
    await recorder.wait_fault(FaultCode.CONTACTOR_STUCK_OPEN, False, after=confirmed)
    # Raised once, cleared once: not by the open command, only by the confirmed close.
    assert recorder.faults(FaultCode.CONTACTOR_STUCK_OPEN) == [
        recorder.events[stuck],
        FaultEvent(FaultCode.CONTACTOR_STUCK_OPEN, False),
    ]


async def test_rcd_trip_follows_the_modules_output(harness: GpioBoardHarness) -> None:
    recorder = await _started(harness)
    harness.far_end.trip_rcd()
    tripped = await recorder.wait_fault(FaultCode.RCD_TRIP, True)
    harness.far_end.trip_rcd(False)
    await recorder.wait_fault(FaultCode.RCD_TRIP, False, after=tripped)


async def test_an_rcd_tripped_before_start_is_in_the_start_report(
    harness: GpioBoardHarness,
) -> None:
    harness.far_end.trip_rcd()
    recorder = await _started(harness)
    fault = await recorder.wait_for(FaultEvent(FaultCode.RCD_TRIP, True, "RCD tripped"))
    assert recorder.events[: fault + 1] == [
        PilotEvent(PilotState.A),
        ContactorEvent(closed=False),
        FaultEvent(FaultCode.RCD_TRIP, True, "RCD tripped"),
    ]


async def test_pilot_short_reads_as_state_e_and_back(harness: GpioBoardHarness) -> None:
    recorder = await _started(harness)
    harness.far_end.short = True
    short = await recorder.wait_for(PilotEvent(PilotState.E))
    harness.far_end.short = False
    await recorder.wait_for(PilotEvent(PilotState.A), after=short)


async def test_a_level_between_bands_is_a_pilot_fault_until_it_is_back_in_a_band(
    harness: GpioBoardHarness,
) -> None:
    recorder = await _started(harness)
    harness.far_end.pilot_override_v = 4.6  # between C and D
    raised = await recorder.wait_fault(FaultCode.PILOT_FAULT, True)
    assert "out_of_band" in recorder.faults(FaultCode.PILOT_FAULT)[0].detail
    harness.far_end.pilot_override_v = None
    cleared = await recorder.wait_fault(FaultCode.PILOT_FAULT, False, after=raised)
    pilot = [e for e in recorder.events[1:cleared] if isinstance(e, PilotEvent)]
    assert pilot == []  # the level was A before and after: no pilot event either way


async def test_missing_diode_is_latched_until_the_vehicle_leaves(
    harness: GpioBoardHarness,
) -> None:
    board, far = harness.board, harness.far_end
    recorder = await _started(harness)
    far.connect_ev(diode=False)
    await recorder.wait_for(PilotEvent(PilotState.B))
    await board.pwm_on(50.0)
    raised = await recorder.wait_fault(FaultCode.PILOT_FAULT, True)
    assert "diode_missing" in recorder.faults(FaultCode.PILOT_FAULT)[0].detail
    await board.pwm_off()  # no low plateau any more: nothing left to see the diode with
    paused = await recorder.wait_for(PilotEvent(PilotState.B), after=raised)
    assert len(recorder.faults(FaultCode.PILOT_FAULT)) == 1  # raised, and still raised
    far.unplug()
    gone = await recorder.wait_for(PilotEvent(PilotState.A), after=paused)
    await recorder.wait_fault(FaultCode.PILOT_FAULT, False, after=gone)


async def test_an_adc_that_stops_answering_is_an_internal_error_until_it_answers(
    harness: GpioBoardHarness,
) -> None:
    recorder = await _started(harness)
    spi = harness.spi
    spi.floating = True
    raised = await recorder.wait_fault(FaultCode.INTERNAL_ERROR, True)
    spi.floating = False
    await recorder.wait_fault(FaultCode.INTERNAL_ERROR, False, after=raised)


async def test_a_dead_adc_at_start_reports_e_and_an_internal_error(
    harness: GpioBoardHarness,
) -> None:
    harness.spi.error = OSError(5, "Input/output error")
    recorder = Recorder()
    await harness.board.start(recorder)
    assert recorder.events[0] == PilotEvent(PilotState.E)
    raised = await recorder.wait_fault(FaultCode.INTERNAL_ERROR, True)
    harness.spi.error = None
    await recorder.wait_fault(FaultCode.INTERNAL_ERROR, False, after=raised)
    await recorder.wait_for(PilotEvent(PilotState.A), after=raised)


async def test_leds_and_release_of_the_lines_on_stop(harness: GpioBoardHarness) -> None:
    board = harness.board
    assert isinstance(board, GpioBoardSupport)
    await _started(harness)
    await board.set_indicator(red=True, green=True, blue=False)  # no red LED wired: ignored
    assert harness.far_end.chip.level(LED_GREEN)
    await board.stop()
    assert not harness.far_end.chip.is_requested(RELAY)
    assert not harness.far_end.chip.level(LED_GREEN)
    with pytest.raises(DriverError, match="not started"):
        await board.set_contactor(True)


async def test_a_duty_off_0_to_100_is_refused(harness: GpioBoardHarness) -> None:
    await _started(harness)
    with pytest.raises(DriverError):
        await harness.board.pwm_on(120.0)
    assert harness.far_end.pilot_mode() == "off"


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"backend": "spi"}, "backend"),
        ({"lines": {}}, "lines.contactor"),
        ({"lines": {"contactor": 5, "contactor_feedback": 5}}, "lines.contactor_feedback"),
        ({"lines": {"contactor": {"line": 5, "bias": "up"}}}, "lines.contactor.bias"),
        ({"lines": {"contactor": True}}, "lines.contactor"),
        ({"adc": {"channel": 8}}, "adc.channel"),
        ({"adc": {"type": "mcp3004", "channel": 4}}, "adc.channel"),
        ({"sampling": {"debounce_count": 0}}, "sampling.debounce_count"),
        ({"pwm": {"inverted": "yes"}}, "pwm.inverted"),
        ({"feedback_timeout_ms": "fast"}, "feedback_timeout_ms"),
        ({"backend": "gpiod", "chip": "/dev/no-such-gpiochip"}, "chip"),
    ],
)
def test_bad_options_name_their_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    options = {**board_options(tmp_path), **change}
    with pytest.raises(DriverOptionError) as error:
        GpioBoardSupport.from_options(options, DriverContext(1, 32.0, 3))
    assert error.value.key == key


def test_the_documented_configuration_is_accepted(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "gpio-board.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    evse = yaml.safe_load(block)["evses"][0]
    board_o = {k: v for k, v in evse["board"].items() if k != "driver"}
    lock_o = {k: v for k, v in evse["lock"].items() if k != "driver"}
    # Only what needs hardware changes: the backend and where the PWM tree is.
    for options in (board_o, lock_o):
        options["backend"] = "memory"
    board_o["pwm"]["sysfs_root"] = str(tmp_path)
    context = DriverContext(1, 32.0, 3)
    board = GpioBoardSupport.from_options(board_o, context)
    GpioConnectorLock.from_options(lock_o, context)
    assert board.capabilities.has_contactor_feedback


def test_the_registry_names_the_gpio_drivers() -> None:
    assert registry.factory("board", "gpio") == GpioBoardSupport.from_options
    assert registry.factory("lock", "gpio") == GpioConnectorLock.from_options


def test_board_and_lock_of_a_station_share_one_memory_chip(tmp_path: Path) -> None:
    context = DriverContext(1, 16.0, 1)
    board = GpioBoardSupport.from_options(board_options(tmp_path), context)
    lock = GpioConnectorLock.from_options(lock_options(), context)
    assert board.gpio_backend is lock.gpio_backend
    assert board.capabilities.max_current_a == 16.0 and board.capabilities.phases == 1


# -- the lock ----------------------------------------------------------------------------------


async def test_lock_moves_stops_the_motor_and_releases_its_lines() -> None:
    harness = GpioLockHarness()
    chip = harness.far_end.chip
    moves: list[tuple[int, bool]] = []
    chip.on_output(lambda offset, level: moves.append((offset, level)))
    assert await harness.lock.set_locked(True)
    assert harness.far_end.locked
    assert not chip.level(LOCK_A) and not chip.level(LOCK_B)
    assert not chip.is_requested(LOCK_A)
    moves.clear()
    assert await harness.lock.set_locked(True)  # already locked: the motor does not run
    assert not [m for m in moves if m[1]]
    assert await harness.lock.set_locked(False)
    assert not harness.far_end.locked


async def test_jammed_lock_times_out_with_the_motor_off() -> None:
    harness = GpioLockHarness()
    await harness.jam()
    assert not await harness.lock.set_locked(True)
    assert not harness.far_end.chip.level(LOCK_A)
    assert not harness.far_end.chip.is_requested(LOCK_A)


async def test_lock_lines_held_elsewhere_are_a_driver_error() -> None:
    harness = GpioLockHarness()
    harness.far_end.chip.request("other", outputs={"x": LineConfig(LOCK_A)}, inputs={}, initial={})
    with pytest.raises(DriverError, match="busy"):
        await harness.lock.set_locked(True)


# -- gpiod v2 and RPi.GPIO against stand-ins of their APIs -------------------------------------


class _Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


def _fake_gpiod(names: dict[str, int]) -> tuple[types.ModuleType, types.ModuleType, list[Any]]:
    """gpiod and gpiod.line as far as GpiodBackend uses them (libgpiod v2 bindings)."""
    line = types.ModuleType("gpiod.line")
    line.Value = _Value  # type: ignore[attr-defined]
    line.Direction = enum.Enum("Direction", "AS_IS INPUT OUTPUT")  # type: ignore[attr-defined]
    line.Edge = enum.Enum("Edge", "NONE RISING FALLING BOTH")  # type: ignore[attr-defined]
    line.Bias = enum.Enum("Bias", "AS_IS DISABLED PULL_UP PULL_DOWN")  # type: ignore[attr-defined]
    gpiod = types.ModuleType("gpiod")
    requests: list[Any] = []

    class EdgeEvent:
        Type = enum.Enum("Type", "RISING_EDGE FALLING_EDGE")

        def __init__(self, event_type: Any, line_offset: int) -> None:
            self.event_type, self.line_offset = event_type, line_offset

    class LineSettings:
        def __init__(self, **settings: Any) -> None:
            self.settings = settings

    class LineRequest:
        def __init__(self, path: str, consumer: str, config: dict[Any, Any]) -> None:
            self.path, self.consumer, self.config = path, consumer, config
            self.lines = list(config)
            self.offsets = [names.get(x, x) if isinstance(x, str) else x for x in self.lines]
            self.values = {
                x: s.settings.get("output_value", _Value.INACTIVE) for x, s in config.items()
            }
            self.fd, self._w = os.pipe()
            self.pending: list[Any] = []
            self.released = False

        def set_value(self, x: Any, value: Any) -> None:
            self.values[x] = value

        def get_value(self, x: Any) -> Any:
            return self.values[x]

        def edge(self, offset: int, rising: bool) -> None:
            kind = EdgeEvent.Type.RISING_EDGE if rising else EdgeEvent.Type.FALLING_EDGE
            self.pending.append(EdgeEvent(kind, offset))
            os.write(self._w, b"e")

        def read_edge_events(self) -> list[Any]:
            os.read(self.fd, 64)
            events, self.pending = self.pending, []
            return events

        def release(self) -> None:
            self.released = True
            os.close(self.fd)
            os.close(self._w)

    def request_lines(path: str, consumer: str, config: dict[Any, Any]) -> LineRequest:
        requests.append(LineRequest(path, consumer, config))
        return requests[-1]

    gpiod.LineSettings = LineSettings  # type: ignore[attr-defined]
    gpiod.EdgeEvent = EdgeEvent  # type: ignore[attr-defined]
    gpiod.request_lines = request_lines  # type: ignore[attr-defined]
    gpiod.line = line  # type: ignore[attr-defined]
    return gpiod, line, requests


async def test_gpiod_backend_requests_settings_and_reads_edges_from_the_fd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpiod, line, requests = _fake_gpiod({"RCD_TRIP": 22})
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    request = GpiodBackend("/dev/gpiochip0").request(
        "cpagent-evse1",
        outputs={"contactor": LineConfig(17, active_low=True)},
        inputs={"rcd_trip": LineConfig("RCD_TRIP", bias=Bias.PULL_UP, debounce_ms=5)},
        initial={"contactor": False},
    )
    fake = requests[0]
    relay, rcd = fake.config[17].settings, fake.config["RCD_TRIP"].settings
    assert (fake.path, fake.consumer) == ("/dev/gpiochip0", "cpagent-evse1")
    assert relay["direction"].name == "OUTPUT" and relay["active_low"] is True
    assert relay["output_value"] is _Value.INACTIVE
    assert rcd["direction"].name == "INPUT" and rcd["edge_detection"].name == "BOTH"
    assert rcd["bias"].name == "PULL_UP" and rcd["debounce_period"].total_seconds() == 0.005
    request.set_value("contactor", True)
    assert fake.values[17] is _Value.ACTIVE
    edges, arrived = _edges(request)
    fake.edge(22, rising=True)  # the line named RCD_TRIP is offset 22 on this chip
    await arrived.wait()
    assert edges == [("rcd_trip", True)]
    request.release()
    assert fake.released


def test_gpiod_backend_without_the_library_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(DriverError, match="gpiod"):
        GpiodBackend("/dev/gpiochip0").request("x", outputs={}, inputs={}, initial={})


async def test_rpi_backend_hands_callbacks_from_its_thread_to_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []
    levels: dict[int, int] = {27: 1}
    callbacks: dict[int, Any] = {}
    gpio = types.SimpleNamespace(
        BCM="BCM", OUT="OUT", IN="IN", HIGH=1, LOW=0, BOTH="BOTH",
        PUD_UP="UP", PUD_DOWN="DOWN", PUD_OFF="OFF",
        setwarnings=lambda flag: None,
        setmode=lambda mode: calls.append(("setmode", mode)),
        setup=lambda ch, d, **kw: calls.append(("setup", ch, d, kw)),
        output=lambda ch, level: levels.__setitem__(ch, int(level)),
        input=lambda ch: levels[ch],
        add_event_detect=lambda ch, edge, callback, **kw: callbacks.__setitem__(ch, callback),
        remove_event_detect=lambda ch: callbacks.pop(ch),
        cleanup=lambda channels: calls.append(("cleanup", sorted(channels))),
    )  # fmt: skip
    package = types.ModuleType("RPi")
    package.GPIO = gpio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    request = RpiGpioBackend().request(
        "cpagent",
        outputs={"contactor": LineConfig(17)},
        inputs={"rcd_trip": LineConfig(27, active_low=True, bias=Bias.PULL_UP)},
        initial={},
    )
    assert ("setmode", "BCM") in calls
    assert ("setup", 17, "OUT", {"initial": 0}) in calls
    assert ("setup", 27, "IN", {"pull_up_down": "UP"}) in calls
    request.set_value("contactor", True)
    assert levels[17] == 1
    edges, arrived = _edges(request)
    levels[27] = 0  # pulled low by the RCD module: tripped
    thread = threading.Thread(target=callbacks[27], args=(27,))  # RPi.GPIO's own thread
    thread.start()
    thread.join()
    await arrived.wait()
    assert edges == [("rcd_trip", True)]
    request.release()
    assert ("cleanup", [17, 27]) in calls
    with pytest.raises(DriverError, match="BCM number"):
        RpiGpioBackend().request("x", outputs={"y": LineConfig("GPIO17")}, inputs={}, initial={})
