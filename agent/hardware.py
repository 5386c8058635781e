"""Building an EVSE's drivers from its config (the simulated plant, or the registry), and
the site meter of `energy.site_meter`.

Part of the composition root: the only code besides agent/app.py that picks concrete
drivers. A `sim` board brings the simulator's plant, which its meter and lock share; a
real meter or reader may stand beside a simulated board (a test bench); every other
driver comes from drivers/registry.py, and a missing one stops the agent before it
starts anything, naming the config key at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, DriverConfig, EvseConfig
from agent.store import is_in_memory
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
    config: Config,
    evse: EvseConfig,
    store_dir: Path,
    shared: dict[Any, Any],
    monotonic: Callable[[], float] = time.monotonic,
) -> EvseHardware:
    """Instantiate the drivers an EVSE's config names.

    `sim` boards come with a simulated plant that the meter and lock share, integrating
    on `monotonic` (the agent's clock, so a fake clock drives it too); any other
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
        hardware = _simulated_hardware(config, evse, store_dir, monotonic)
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


def _simulated_hardware(
    config: Config, evse: EvseConfig, store_dir: Path, monotonic: Callable[[], float]
) -> EvseHardware:
    from simulator.drivers import SimBoardSupport, SimConnectorLock, SimPowerMeter, SimTokenReader
    from simulator.plant import Plant

    # An in-memory store (fleet mode) keeps nothing across runs: neither does the register.
    register = (
        None
        if is_in_memory(config.store.path)
        else store_dir / f"{config.station.id}-evse{evse.id}-register.json"
    )
    plant = Plant(
        monotonic=monotonic, time_scale=config.simulator.time_scale, register_path=register
    )
    unknown = sorted(set(evse.board.options) - {"can_switch_phases"})
    if unknown:
        raise DriverUnavailable(
            f"evses[{evse.id - 1}].board.{unknown[0]}: unknown option of the 'sim' board "
            "(known: can_switch_phases)"
        )
    can_switch = evse.board.options.get("can_switch_phases", False)
    if not isinstance(can_switch, bool):
        raise DriverUnavailable(
            f"evses[{evse.id - 1}].board.can_switch_phases: expected true or false"
        )
    capabilities = BoardCapabilities(
        max_current_a=max(c.max_current_a for c in evse.connectors),
        phases=max(c.phases for c in evse.connectors),
        can_switch_phases=can_switch,
    )
    return EvseHardware(
        board=SimBoardSupport(plant, capabilities),
        meter=SimPowerMeter(plant),
        lock=SimConnectorLock(plant) if evse.lock is not None else None,
        reader=SimTokenReader() if evse.reader is not None else None,
        plant=plant,
    )


def build_site_meter(
    config: Config, shared: dict[Any, Any], hardware: Mapping[int, EvseHardware]
) -> PowerMeter | None:
    """The meter at the grid connection point that `energy.site_meter` names, if any.

    `sim` measures the simulated site (a base load, every simulated EVSE's plant and a
    PV inverter: options `base_load_a`, a number or [L1, L2, L3], and `pv_w`); any other
    driver is a PowerMeter from the registry, sharing links with the EVSE meters (one
    RS-485 bus). Raises DriverUnavailable naming the option at fault.
    """
    site = config.energy.site_meter
    if site is None:
        return None
    where = "energy.site_meter"
    if site.driver == "sim":
        return _simulated_site_meter(config, site, hardware)
    context = DriverContext(evse_id=0, max_current_a=0.0, phases=3, shared=shared)
    try:
        meter: PowerMeter = registry.factory("meter", site.driver)(site.options, context)
    except DriverOptionError as exc:
        raise DriverUnavailable(f"{where}.{exc.key}: {exc.message}") from exc
    except DriverUnavailable as exc:
        raise DriverUnavailable(f"{where}.driver: {exc}") from exc
    return meter


def _simulated_site_meter(
    config: Config, site: DriverConfig, hardware: Mapping[int, EvseHardware]
) -> PowerMeter:
    from simulator.drivers import SimSiteMeter, SiteLoad

    where = "energy.site_meter"
    unknown = sorted(set(site.options) - {"base_load_a", "pv_w"})
    if unknown:
        raise DriverUnavailable(
            f"{where}.{unknown[0]}: unknown option of the 'sim' site meter "
            "(known: base_load_a, pv_w)"
        )
    base = site.options.get("base_load_a", 0.0)
    if _is_number(base):
        base = (base, base, base)
    if not (isinstance(base, tuple) and len(base) == 3 and all(_is_number(b) for b in base)):
        raise DriverUnavailable(f"{where}.base_load_a: expected a number or [L1, L2, L3] in A")
    pv_w = site.options.get("pv_w", 0.0)
    if not _is_number(pv_w) or pv_w < 0:
        raise DriverUnavailable(f"{where}.pv_w: expected a number >= 0 (W)")
    plants = [h.plant for h in hardware.values() if h.plant is not None]
    load = SiteLoad(
        plants, base_load_a=(float(base[0]), float(base[1]), float(base[2])), pv_w=float(pv_w)
    )
    return SimSiteMeter(load, time_scale=config.simulator.time_scale)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
