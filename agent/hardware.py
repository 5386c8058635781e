"""Building an EVSE's drivers from its config: the simulated plant, or the registry.

Part of the composition root: the only code besides agent/app.py that picks concrete
drivers. A `sim` board brings the simulator's plant, which its meter and lock share; a
real meter or reader may stand beside a simulated board (a test bench); every other
driver comes from drivers/registry.py, and a missing one stops the agent before it
starts anything, naming the config key at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, DriverConfig, EvseConfig
from drivers import registry
from drivers.indicator import Indicator
from drivers.interfaces import (
    BoardSupport,
    ConnectorLock,
    IsolationMonitor,
    PowerMeter,
    PowerModule,
    TokenReader,
)
from drivers.registry import DriverContext, DriverOptionError, DriverUnavailable
from drivers.types import BoardCapabilities, FaultEvent, PowerModuleCapabilities


@dataclass
class EvseHardware:
    """The driver instances of one EVSE (and the plant, when simulated)."""

    board: BoardSupport
    meter: PowerMeter
    lock: ConnectorLock | None
    reader: TokenReader | None
    plant: Any = None  # simulator.plant.Plant when simulated
    power_module: PowerModule | None = None
    isolation_monitor: IsolationMonitor | None = None
    indicator: Indicator | None = None

    def drivers(self) -> list[Any]:
        """Every driver instance, each once (a board and a lock may be one object)."""
        seen: list[Any] = []
        for driver in (
            self.board,
            self.meter,
            self.lock,
            self.reader,
            self.power_module,
            self.isolation_monitor,
            self.indicator,
        ):
            if driver is not None and not any(driver is known for known in seen):
                seen.append(driver)
        return seen


def build_hardware(
    config: Config, evse: EvseConfig, store_dir: Path, shared: dict[Any, Any]
) -> EvseHardware:
    """Instantiate the drivers an EVSE's config names.

    `sim` boards come with a simulated plant that the meter and lock share; any other
    driver comes from the registry (drivers/registry.py). Raises DriverUnavailable for a
    driver that is not installed, with the option at fault named.
    """
    context = DriverContext(
        evse_id=evse.id,
        max_current_a=max(c.max_current_a for c in evse.connectors),
        phases=max(c.phases for c in evse.connectors),
        shared=shared,
    )

    def make(role: str, driver: DriverConfig | None) -> Any:
        if driver is None:
            return None
        where = f"evses[{evse.id - 1}].{role}"
        if driver.driver == "sim":
            return _simulated_driver(role, driver, where)
        try:
            return registry.factory(role, driver.driver)(driver.options, context)
        except DriverOptionError as exc:
            raise DriverUnavailable(f"{where}.{exc.key}: {exc.message}") from exc
        except DriverUnavailable as exc:
            raise DriverUnavailable(f"{where}.driver: {exc}") from exc

    if evse.board.driver == "sim":
        hardware = _simulated_hardware(config, evse, store_dir)
        # A simulated power path may still use a real meter or reader (a test bench).
        if evse.meter.driver != "sim":
            hardware.meter = make("meter", evse.meter)
        if evse.reader is not None and evse.reader.driver != "sim":
            hardware.reader = make("reader", evse.reader)
        if evse.lock is not None and evse.lock.driver != "sim":
            raise DriverUnavailable(
                f"evses[{evse.id - 1}].lock.driver: a 'sim' board has a 'sim' lock"
            )
    else:
        hardware = EvseHardware(
            board=make("board", evse.board),
            meter=make("meter", evse.meter),
            lock=make("lock", evse.lock),
            reader=make("reader", evse.reader),
        )
    hardware.power_module = make("power_module", evse.power_module)
    hardware.isolation_monitor = make("isolation_monitor", evse.isolation_monitor)
    hardware.indicator = make("indicator", evse.indicator)
    return hardware


def _simulated_driver(role: str, driver: DriverConfig, where: str) -> Any:
    """A simulated driver that needs no plant: reader, DC power module, IMD."""
    if driver.options:
        raise DriverUnavailable(f"{where}: the 'sim' {role} takes no options")
    if role == "reader":
        from simulator.drivers import SimTokenReader

        return SimTokenReader()
    if role == "power_module":
        from simulator.drivers_dc import SimPowerModule

        return SimPowerModule(
            PowerModuleCapabilities(max_voltage_v=1000, max_current_a=200, max_power_w=150_000)
        )
    if role == "isolation_monitor":
        from simulator.drivers_dc import SimIsolationMonitor

        return SimIsolationMonitor()
    if role == "indicator":
        from simulator.indicator import SimIndicator

        return SimIndicator()
    raise DriverUnavailable(f"{where}.driver: a 'sim' {role} needs a 'sim' board")


def isolation_to_board(event: Any, sink: Callable[[Any], None]) -> None:
    """Hand an isolation monitor's faults to the EVSE; readings are not board events."""
    if isinstance(event, FaultEvent):
        sink(event)


def _simulated_hardware(config: Config, evse: EvseConfig, store_dir: Path) -> EvseHardware:
    from simulator.drivers import SimBoardSupport, SimConnectorLock, SimPowerMeter, SimTokenReader
    from simulator.plant import Plant

    register = store_dir / f"{config.station.id}-evse{evse.id}-register.json"
    plant = Plant(time_scale=config.simulator.time_scale, register_path=register)
    capabilities = BoardCapabilities(
        max_current_a=max(c.max_current_a for c in evse.connectors),
        phases=max(c.phases for c in evse.connectors),
    )
    return EvseHardware(
        board=SimBoardSupport(plant, capabilities),
        meter=SimPowerMeter(plant),
        lock=SimConnectorLock(plant) if evse.lock is not None else None,
        reader=SimTokenReader() if evse.reader is not None else None,
        plant=plant,
    )
