"""Drivers by name: a lazy registry plus an entry-point group for third-party drivers.

A config names a driver per role (`board`, `meter`, `lock`, `reader`, `power_module`,
`isolation_monitor`); the composition root asks this registry for a factory and calls it
with the driver's options. Built-in drivers are listed as "module:attribute" strings and
imported only when chosen, so a laptop without RPi.GPIO or python-can never imports them
(the python-can pattern: a dict of lazy imports plus an entry-point group).

A board vendor adds a driver without touching the agent by declaring an entry point in
the `cpagent.drivers` group named `<role>.<name>`:

    [project.entry-points."cpagent.drivers"]
    "board.acme_v2" = "acme_cpagent.board:AcmeBoardSupport.from_options"

The factory's contract is `factory(options, context) -> driver` (see `DriverFactory`); it
validates its options and raises `DriverOptionError(key, message)` for a bad one.
The simulated drivers (`sim`) are not here: they need the simulator's plant, which the
composition root builds (drivers must not import the simulator).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "cpagent.drivers"

ROLES = ("board", "meter", "lock", "reader", "power_module", "isolation_monitor", "indicator")

#: Built-in drivers: (role, name) -> "module:attribute", and the extra that installs
#: the library it needs.
BUILTIN: dict[tuple[str, str], tuple[str, str | None]] = {
    ("board", "serial_mcu"): ("drivers.serial_mcu:SerialMcuBoardSupport.from_options", "serial"),
    ("lock", "serial_mcu"): ("drivers.serial_mcu:SerialMcuConnectorLock.from_options", "serial"),
    ("meter", "modbus"): ("drivers.modbus_meter:ModbusPowerMeter.from_options", "modbus"),
    ("board", "gpio"): ("drivers.gpio_board:GpioBoardSupport.from_options", "gpio"),
    ("lock", "gpio"): ("drivers.gpio_board:GpioConnectorLock.from_options", "gpio"),
    ("indicator", "gpio"): ("drivers.gpio_indicator:GpioLedIndicator.from_options", "gpio"),
    ("reader", "nfc"): ("drivers.nfc_reader:NfcpyTokenReader.from_options", "nfc"),
    ("power_module", "can"): ("drivers.can_power:CanPowerModule.from_options", "can"),
    ("isolation_monitor", "can"): ("drivers.can_power:CanIsolationMonitor.from_options", "can"),
}


class DriverUnavailable(Exception):  # noqa: N818 - reads as a message
    """A config names a driver that is not installed or cannot be imported."""


class DriverOptionError(Exception):
    """A driver's option is missing or invalid."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass
class DriverContext:
    """What a factory may need beyond its options.

    `shared` is one dict per station: drivers that share a physical link (a board and a
    lock on the same MCU serial port) find each other's connection there, keyed as they
    agree (for example `("serial_mcu", "/dev/ttyAMA0")`).
    """

    evse_id: int
    max_current_a: float
    phases: int
    shared: dict[Any, Any] = field(default_factory=dict)


DriverFactory = Callable[[Mapping[str, Any], DriverContext], Any]


def available() -> list[tuple[str, str]]:
    """Every (role, name) known: built in or from an installed entry point."""
    names = set(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        role, _, name = entry.name.partition(".")
        names.add((role, name))
    return sorted(names)


def factory(role: str, name: str) -> DriverFactory:
    """The factory for a driver; raises DriverUnavailable with what to install."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == f"{role}.{name}":
            loaded: DriverFactory = entry.load()
            return loaded
    if (role, name) not in BUILTIN:
        known = ", ".join(n for r, n in available() if r == role) or "none"
        raise DriverUnavailable(f"no {role} driver named '{name}' (available: sim, {known})")
    target, extra = BUILTIN[(role, name)]
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: pip install 'cpagent[{extra}]'" if extra else ""
        raise DriverUnavailable(f"{role} driver '{name}' cannot be loaded ({exc}){hint}") from exc
    for part in attribute.split("."):
        obj = getattr(obj, part)
    result: DriverFactory = obj
    return result
