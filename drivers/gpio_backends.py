"""GPIO lines and the pilot PWM for the GPIO board: one seam, three GPIO backends.

Responsible for the Linux-facing I/O of the GPIO board and nothing else:

* `GpioBackend` is the seam: request named roles ("contactor", "rcd_trip") mapped to
  lines by offset or name, set and get *logical* values (active-low applied here), and
  deliver input edges as `(role, value)` calls on the event loop thread.
* `GpiodBackend` speaks libgpiod v2 (`gpiod.request_lines` with `LineSettings`); edges
  come from the request's file descriptor, watched with `loop.add_reader`, so no thread.
  It is written against the libgpiod v2 Python API and has not run on hardware here.
* `RpiGpioBackend` speaks RPi.GPIO (BCM numbering); its edge callbacks run on the
  library's own thread and are handed over with `loop.call_soon_threadsafe`.
* `MemoryGpioBackend` is a first-class in-memory chip (as python-can's `virtual` bus):
  the tests' far end and a developer without hardware drive its inputs and watch its
  outputs.
* `OptionReader` reads a driver's YAML options, naming the full key in every
  DriverOptionError.

The hardware libraries are imported inside the backend that needs them, so this module
imports on a laptop without them. It must not know what a line means (no contactor or
fault logic: that is drivers/gpio_board.py) and it must not import the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from drivers.interfaces import DriverError
from drivers.registry import DriverOptionError

_log = logging.getLogger(__name__)

#: Called on the event loop thread with the role of an input and its new logical value.
EdgeCallback = Callable[[str, bool], None]


class Bias(StrEnum):
    """The internal pull of an input line."""

    AS_IS = "as_is"
    DISABLED = "disabled"
    PULL_UP = "pull_up"
    PULL_DOWN = "pull_down"


@dataclass(frozen=True, slots=True)
class LineConfig:
    """One line: its offset (or name on the chip), polarity, pull and input debounce."""

    line: int | str
    active_low: bool = False
    bias: Bias = Bias.AS_IS
    debounce_ms: float = 0.0


class GpioRequest(Protocol):
    """Lines held for exclusive use, addressed by role."""

    def set_value(self, role: str, value: bool) -> None:
        """Drive an output role to a logical value; raises DriverError."""
        ...

    def get_value(self, role: str) -> bool:
        """Read the logical value of a role; raises DriverError."""
        ...

    def watch(self, on_edge: EdgeCallback) -> None:
        """Deliver every edge of the input roles to `on_edge` on the running loop."""
        ...

    def release(self) -> None:
        """Stop watching and give the lines back (idempotent)."""
        ...


class GpioBackend(Protocol):
    """A GPIO chip that hands out requests."""

    def request(
        self,
        consumer: str,
        *,
        outputs: Mapping[str, LineConfig],
        inputs: Mapping[str, LineConfig],
        initial: Mapping[str, bool],
    ) -> GpioRequest:
        """Request the lines, outputs driven to `initial` (default inactive); raises
        DriverError when a line does not exist or is busy."""
        ...


# --- memory ---------------------------------------------------------------------------------


class MemoryGpioBackend:
    """A GPIO chip in memory: the far end drives inputs and watches outputs.

    Levels are physical (what a voltmeter on the pin shows); requests apply active-low.
    A line nobody drives reads its pull (high with a pull-up, else low); a released
    output falls back to low, as a relay driver with a pull-down on its input does.
    """

    def __init__(
        self, name: str = "memory", *, line_names: Mapping[str, int] | None = None
    ) -> None:
        """An empty chip; `line_names` lets requests name lines as gpiod allows."""
        self.name = name
        self._names = dict(line_names or {})
        self._levels: dict[int, bool] = {}
        self._driven: set[int] = set()  # inputs the far end has driven
        self._owners: dict[int, _MemoryRequest] = {}
        self._output_watchers: list[Callable[[int, bool], None]] = []
        self._lock = threading.RLock()

    def offset(self, line: int | str) -> int:
        """The offset of a line given by offset or name; raises DriverError."""
        if isinstance(line, int):
            return line
        try:
            return self._names[line]
        except KeyError:
            raise DriverError(f"{self.name}: no line named {line!r}") from None

    def level(self, line: int | str) -> bool:
        """The physical level of a line now."""
        with self._lock:
            return self._levels.get(self.offset(line), False)

    def drive(self, line: int | str, level: bool) -> None:
        """The far end drives an input to a physical level; raises DriverError on an output."""
        offset = self.offset(line)
        with self._lock:
            owner = self._owners.get(offset)
            if owner is not None and owner.is_output(offset):
                raise DriverError(f"{self.name}: line {offset} is an output")
            self._driven.add(offset)
            changed = self._levels.get(offset, False) != level
            self._levels[offset] = level
        if changed and owner is not None:
            owner.input_changed(offset, level)

    def on_output(self, watcher: Callable[[int, bool], None]) -> None:
        """Call `watcher(offset, level)` whenever a requested output changes level."""
        self._output_watchers.append(watcher)

    def is_requested(self, line: int | str) -> bool:
        """Whether a request holds the line."""
        with self._lock:
            return self.offset(line) in self._owners

    def request(
        self,
        consumer: str,
        *,
        outputs: Mapping[str, LineConfig],
        inputs: Mapping[str, LineConfig],
        initial: Mapping[str, bool],
    ) -> GpioRequest:
        """Request lines of this chip; raises DriverError when one is already held."""
        roles = {role: (cfg, self.offset(cfg.line)) for role, cfg in {**outputs, **inputs}.items()}
        with self._lock:
            busy = [offset for _, offset in roles.values() if offset in self._owners]
            if busy:
                raise DriverError(f"{self.name}: line(s) {busy} busy")
            request = _MemoryRequest(self, consumer, roles, set(outputs))
            for role, (cfg, offset) in roles.items():
                self._owners[offset] = request
                if role in outputs:
                    self._levels[offset] = initial.get(role, False) != cfg.active_low
                elif offset not in self._driven:
                    self._levels[offset] = cfg.bias == Bias.PULL_UP
        for role in outputs:
            _, offset = roles[role]
            self._output_changed(offset, self._levels[offset])
        return request

    def _set_output(self, offset: int, level: bool) -> None:
        with self._lock:
            changed = self._levels.get(offset, False) != level
            self._levels[offset] = level
        if changed:
            self._output_changed(offset, level)

    def _output_changed(self, offset: int, level: bool) -> None:
        for watcher in list(self._output_watchers):
            watcher(offset, level)

    def _release(self, request: _MemoryRequest) -> None:
        released_outputs: list[int] = []
        with self._lock:
            for offset, owner in list(self._owners.items()):
                if owner is request:
                    del self._owners[offset]
                    if request.is_output(offset):
                        released_outputs.append(offset)
        for offset in released_outputs:
            self._set_output(offset, False)


class _MemoryRequest:
    def __init__(
        self,
        chip: MemoryGpioBackend,
        consumer: str,
        roles: dict[str, tuple[LineConfig, int]],
        outputs: set[str],
    ) -> None:
        self._chip = chip
        self.consumer = consumer
        self._roles = roles
        self._outputs = {roles[role][1] for role in outputs}
        self._role_at = {offset: role for role, (_, offset) in roles.items()}
        self._on_edge: EdgeCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released = False

    def is_output(self, offset: int) -> bool:
        return offset in self._outputs

    def _line(self, role: str) -> tuple[LineConfig, int]:
        if self._released:
            raise DriverError(f"{self._chip.name}: request of {self.consumer} released")
        try:
            return self._roles[role]
        except KeyError:
            raise DriverError(f"{self._chip.name}: no line for {role!r}") from None

    def set_value(self, role: str, value: bool) -> None:
        cfg, offset = self._line(role)
        if offset not in self._outputs:
            raise DriverError(f"{self._chip.name}: {role} is an input")
        self._chip._set_output(offset, value != cfg.active_low)

    def get_value(self, role: str) -> bool:
        cfg, offset = self._line(role)
        return self._chip.level(offset) != cfg.active_low

    def watch(self, on_edge: EdgeCallback) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_edge = on_edge

    def input_changed(self, offset: int, level: bool) -> None:
        loop, on_edge, role = self._loop, self._on_edge, self._role_at.get(offset)
        if loop is None or on_edge is None or role is None or self._released:
            return
        value = level != self._roles[role][0].active_low
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens any more
            loop.call_soon_threadsafe(self._deliver, on_edge, role, value)

    def _deliver(self, on_edge: EdgeCallback, role: str, value: bool) -> None:
        if not self._released and on_edge is self._on_edge:
            on_edge(role, value)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._on_edge = None
        self._chip._release(self)


# --- libgpiod v2 ----------------------------------------------------------------------------


class GpiodBackend:
    """The Linux GPIO character device through libgpiod v2's Python bindings."""

    def __init__(self, chip_path: str) -> None:
        """Use the chip at `chip_path` (for example /dev/gpiochip0); nothing opened yet."""
        self.chip_path = chip_path

    def request(
        self,
        consumer: str,
        *,
        outputs: Mapping[str, LineConfig],
        inputs: Mapping[str, LineConfig],
        initial: Mapping[str, bool],
    ) -> GpioRequest:
        """Request the lines in one `gpiod.request_lines`; raises DriverError."""
        try:
            import gpiod
            from gpiod.line import Bias as GpiodBias
            from gpiod.line import Direction, Edge, Value
        except ImportError as exc:
            raise DriverError(f"gpiod (libgpiod v2 bindings) is not installed: {exc}") from exc
        biases = {
            Bias.AS_IS: GpiodBias.AS_IS,
            Bias.DISABLED: GpiodBias.DISABLED,
            Bias.PULL_UP: GpiodBias.PULL_UP,
            Bias.PULL_DOWN: GpiodBias.PULL_DOWN,
        }
        config: dict[Any, Any] = {}
        for role, cfg in outputs.items():
            config[cfg.line] = gpiod.LineSettings(
                direction=Direction.OUTPUT,
                active_low=cfg.active_low,
                output_value=Value.ACTIVE if initial.get(role, False) else Value.INACTIVE,
            )
        for cfg in inputs.values():
            config[cfg.line] = gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=Edge.BOTH,
                bias=biases[cfg.bias],
                active_low=cfg.active_low,
                debounce_period=timedelta(milliseconds=cfg.debounce_ms),
            )
        try:
            request = gpiod.request_lines(self.chip_path, consumer=consumer, config=config)
        except (OSError, ValueError) as exc:
            raise DriverError(f"{self.chip_path}: cannot request lines: {exc}") from exc
        roles = {role: cfg.line for role, cfg in {**outputs, **inputs}.items()}
        # Edge events carry offsets; the request lists them in the order of `config`, so
        # lines requested by name map through it.
        offsets = dict(zip(config, request.offsets, strict=True))
        role_at = {offsets[line]: role for role, line in roles.items() if role in inputs}
        return _GpiodRequest(request, roles, role_at, Value)


class _GpiodRequest:
    def __init__(
        self, request: Any, roles: dict[str, int | str], role_at: dict[int, str], value: Any
    ) -> None:
        self._request = request
        self._roles = roles
        self._role_at = role_at
        self._value = value  # gpiod.line.Value
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released = False

    def _line(self, role: str) -> int | str:
        if self._released:
            raise DriverError("gpiod request released")
        try:
            return self._roles[role]
        except KeyError:
            raise DriverError(f"no line for {role!r}") from None

    def set_value(self, role: str, value: bool) -> None:
        line = self._line(role)
        try:
            self._request.set_value(line, self._value.ACTIVE if value else self._value.INACTIVE)
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot set {role}: {exc}") from exc

    def get_value(self, role: str) -> bool:
        line = self._line(role)
        try:
            return bool(self._request.get_value(line) == self._value.ACTIVE)
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot read {role}: {exc}") from exc

    def watch(self, on_edge: EdgeCallback) -> None:
        import gpiod

        rising = gpiod.EdgeEvent.Type.RISING_EDGE
        loop = asyncio.get_running_loop()

        def drain() -> None:
            try:
                events = self._request.read_edge_events()
            except OSError:
                _log.exception("reading GPIO edge events failed")
                return
            for event in events:
                role = self._role_at.get(event.line_offset)
                if role is not None:
                    # Edges are in logical terms: active-low is already applied.
                    on_edge(role, event.event_type == rising)

        loop.add_reader(self._request.fd, drain)
        self._loop = loop

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._request.fd)
        self._request.release()


# --- RPi.GPIO -------------------------------------------------------------------------------


class RpiGpioBackend:
    """A Raspberry Pi's GPIO through RPi.GPIO, lines by BCM number."""

    def request(
        self,
        consumer: str,
        *,
        outputs: Mapping[str, LineConfig],
        inputs: Mapping[str, LineConfig],
        initial: Mapping[str, bool],
    ) -> GpioRequest:
        """Set up the channels; raises DriverError (lines must be BCM numbers)."""
        try:
            import RPi.GPIO as gpio  # noqa: N811 - the library spells its module GPIO
        except ImportError as exc:
            raise DriverError(f"RPi.GPIO is not installed: {exc}") from exc
        roles: dict[str, LineConfig] = {**outputs, **inputs}
        for role, cfg in roles.items():
            if not isinstance(cfg.line, int):
                raise DriverError(f"{role}: RPi.GPIO needs a BCM number, got {cfg.line!r}")
        pulls = {
            Bias.PULL_UP: gpio.PUD_UP,
            Bias.PULL_DOWN: gpio.PUD_DOWN,
            Bias.DISABLED: gpio.PUD_OFF,
            Bias.AS_IS: gpio.PUD_OFF,
        }
        try:
            gpio.setwarnings(False)
            gpio.setmode(gpio.BCM)
            for role, cfg in outputs.items():
                level = initial.get(role, False) != cfg.active_low
                gpio.setup(cfg.line, gpio.OUT, initial=gpio.HIGH if level else gpio.LOW)
            for cfg in inputs.values():
                gpio.setup(cfg.line, gpio.IN, pull_up_down=pulls[cfg.bias])
        except (RuntimeError, ValueError) as exc:
            raise DriverError(f"RPi.GPIO setup failed ({consumer}): {exc}") from exc
        return _RpiRequest(gpio, roles, set(inputs))


class _RpiRequest:
    def __init__(self, gpio: Any, roles: dict[str, LineConfig], inputs: set[str]) -> None:
        self._gpio = gpio
        self._roles = roles
        self._inputs = inputs
        self._watched: list[int] = []
        self._released = False

    def _cfg(self, role: str) -> LineConfig:
        if self._released:
            raise DriverError("RPi.GPIO request released")
        try:
            return self._roles[role]
        except KeyError:
            raise DriverError(f"no line for {role!r}") from None

    def set_value(self, role: str, value: bool) -> None:
        cfg = self._cfg(role)
        try:
            self._gpio.output(cfg.line, value != cfg.active_low)
        except (RuntimeError, ValueError) as exc:
            raise DriverError(f"cannot set {role}: {exc}") from exc

    def get_value(self, role: str) -> bool:
        cfg = self._cfg(role)
        try:
            return bool(self._gpio.input(cfg.line)) != cfg.active_low
        except (RuntimeError, ValueError) as exc:
            raise DriverError(f"cannot read {role}: {exc}") from exc

    def watch(self, on_edge: EdgeCallback) -> None:
        loop = asyncio.get_running_loop()
        for role in self._inputs:
            cfg = self._roles[role]

            def changed(channel: int, role: str = role, cfg: LineConfig = cfg) -> None:
                # RPi.GPIO's own thread: read the level here, deliver on the loop.
                value = bool(self._gpio.input(channel)) != cfg.active_low
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(on_edge, role, value)

            kwargs: dict[str, Any] = {"callback": changed}
            if cfg.debounce_ms > 0:
                kwargs["bouncetime"] = max(1, round(cfg.debounce_ms))
            try:
                self._gpio.add_event_detect(cfg.line, self._gpio.BOTH, **kwargs)
            except RuntimeError as exc:
                raise DriverError(f"cannot watch {role}: {exc}") from exc
            self._watched.append(int(cfg.line))

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for line in self._watched:
            self._gpio.remove_event_detect(line)
        self._gpio.cleanup([cfg.line for cfg in self._roles.values()])


# --- option reading -----------------------------------------------------------------------------


class OptionReader:
    """Typed access to a driver's options, errors naming the full key."""

    def __init__(self, options: Mapping[str, Any], prefix: str = "") -> None:
        self._options = options
        self._prefix = prefix

    def key(self, name: str) -> str:
        """The full dotted key of option `name`."""
        return f"{self._prefix}{name}"

    def only(self, *names: str) -> None:
        """Raise DriverOptionError for any option not in `names`."""
        for name in self._options:
            if name not in names:
                raise DriverOptionError(self.key(str(name)), f"unknown option (known: {names})")

    def section(self, name: str) -> OptionReader:
        """A reader of the mapping at `name` (empty if absent); raises DriverOptionError."""
        value = self._options.get(name, {})
        if not isinstance(value, Mapping):
            raise DriverOptionError(self.key(name), "expected a mapping")
        return OptionReader(value, f"{self.key(name)}.")

    def raw(self, name: str) -> Any:
        """The option's value as given, None if absent."""
        return self._options.get(name)

    def text(self, name: str, default: str) -> str:
        """A non-empty string; raises DriverOptionError."""
        value = self._options.get(name, default)
        if not isinstance(value, str) or not value:
            raise DriverOptionError(self.key(name), f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        """One of `allowed`; raises DriverOptionError."""
        value = self._options.get(name, default)
        if value not in allowed:
            raise DriverOptionError(self.key(name), f"expected one of {allowed}, got {value!r}")
        return str(value)

    def flag(self, name: str, default: bool) -> bool:
        """A boolean; raises DriverOptionError."""
        value = self._options.get(name, default)
        if not isinstance(value, bool):
            raise DriverOptionError(self.key(name), f"expected true or false, got {value!r}")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """An integer within the bounds; raises DriverOptionError."""
        value = self._options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DriverOptionError(self.key(name), f"expected an integer, got {value!r}")
        self._bounds(name, value, minimum, maximum)
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        """A number within the bounds; raises DriverOptionError."""
        value = self._options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise DriverOptionError(self.key(name), f"expected a number, got {value!r}")
        self._bounds(name, value, minimum, maximum)
        return float(value)

    def _bounds(
        self, name: str, value: float, minimum: float | None, maximum: float | None
    ) -> None:
        if minimum is not None and value < minimum:
            raise DriverOptionError(self.key(name), f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise DriverOptionError(self.key(name), f"must be <= {maximum}, got {value}")
