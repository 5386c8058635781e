"""Energy meters over Modbus RTU and Modbus TCP (pymodbus), driven by register maps.

Responsible for one thing: turning a `read()` into the fewest Modbus read requests the
meter's map allows (drivers/meter_maps.py), and the answers into a `MeterSample` in Wh,
W, A, V and Hz. Which meter it is, where each value lives and how it is encoded is data
(`MeterMap`); this module holds no per-model code.

Design notes:

* Failure is an exception, never a made-up value. A timeout, a garbled frame (bad CRC
  on RTU: pymodbus drops it and the request times out), a Modbus exception response, a
  short answer or a link that cannot be opened all raise `DriverError`. The core turns
  that into the METER_LOST fault and clears it on the next good reading
  (agent/core/evse.py `read_meter`); the driver keeps no fault state of its own.
* Reconnection is lazy and transparent. After any failed request the connection is
  closed; the next read opens a fresh one (a new TCP socket, or the serial port opened
  again, which also discards a late answer that would otherwise be taken for the reply
  to the next request on RTU, where frames carry no transaction id). pymodbus's own
  background reconnect is off (`reconnect_delay=0`): this driver starts no tasks.
* One link per physical bus. Several meters on one RS-485 port (or behind one Modbus TCP
  gateway) share a `ModbusLink` found in `DriverContext.shared` under
  `("modbus", "rtu", device)` / `("modbus", "tcp", host, port)`; the link runs one request
  at a time. The meter knows nothing of EVSEs, so the same driver serves as a site meter.
* pymodbus's async clients run on the event loop, so no thread is needed; clients are
  created at the first read, inside the running loop, never in `from_options`.

It must not: interpret readings (no plausibility filters beyond "a reading has an import
energy"), retry beyond the configured `retries`, or import anything from agent/.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from drivers.interfaces import DriverError
from drivers.meter_maps import (
    MAPS,
    PHASE_CURRENTS,
    PHASE_POWERS,
    PHASE_VOLTAGES,
    MeterMap,
    Quantity,
    ReadBlock,
    RegisterKind,
)
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import MeterSample

log = logging.getLogger(__name__)

DEFAULT_TCP_PORT = 502
DEFAULT_BAUDRATE = 9600
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 1

#: Names of the Modbus exception codes (Modbus Application Protocol V1.1b3, section 7).
EXCEPTION_NAMES: Mapping[int, str] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}

_OPTIONS = (
    "transport",
    "host",
    "port",
    "baudrate",
    "parity",
    "stopbits",
    "unit",
    "map",
    "timeout_s",
    "retries",
)


@dataclass(frozen=True, slots=True)
class TcpLinkSettings:
    """A Modbus TCP server (a meter with Ethernet, or an RTU gateway)."""

    host: str
    port: int = DEFAULT_TCP_PORT


@dataclass(frozen=True, slots=True)
class RtuLinkSettings:
    """A serial port with Modbus RTU (8 data bits)."""

    device: str  # a device path or a pyserial URL
    baudrate: int = DEFAULT_BAUDRATE
    parity: str = "N"
    stopbits: int = 1


LinkSettings = TcpLinkSettings | RtuLinkSettings


@dataclass(frozen=True, slots=True)
class ModbusMeterOptions:
    """The validated options of one Modbus meter (`meter: {driver: modbus, ...}`).

    transport  tcp | rtu (default: tcp when `host` is given, else rtu)
    host       tcp: host name or IP; port: TCP port (default 502)
    port       rtu: the serial device (or a pyserial URL); baudrate (9600), parity
               N | E | O (N), stopbits 1 | 2 (1); always 8 data bits
    unit       the meter's Modbus address (default 1; rtu 1..247, tcp 0..255)
    map        sdm630 | sdm72 | abb_b23 | abb_b24 | em340 (drivers/meter_maps.py)
    timeout_s  per request (default 1.0); retries: more tries per request (default 1)
    """

    link: LinkSettings
    unit: int
    meter_map: MeterMap
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ModbusMeterOptions:
        """Validate a config's options; raises DriverOptionError naming the bad key."""
        for key in options:
            if key not in _OPTIONS:
                raise DriverOptionError(key, f"unknown option (known: {', '.join(_OPTIONS)})")
        transport = options.get("transport", "tcp" if "host" in options else "rtu")
        if transport not in ("tcp", "rtu"):
            raise DriverOptionError("transport", f"must be 'tcp' or 'rtu', got {transport!r}")
        name = options.get("map")
        if name is None:
            raise DriverOptionError("map", f"required (one of: {', '.join(MAPS)})")
        if not isinstance(name, str) or name not in MAPS:
            raise DriverOptionError("map", f"unknown map {name!r} (one of: {', '.join(MAPS)})")
        link: LinkSettings
        if transport == "tcp":
            for key in ("baudrate", "parity", "stopbits"):
                if key in options:
                    raise DriverOptionError(key, "only for transport 'rtu'")
            host = options.get("host")
            if not isinstance(host, str) or not host:
                raise DriverOptionError("host", "required for transport 'tcp' (a host name or IP)")
            link = TcpLinkSettings(host, _integer(options, "port", DEFAULT_TCP_PORT, 1, 65535))
            unit = _integer(options, "unit", 1, 0, 255)
        else:
            if "host" in options:
                raise DriverOptionError("host", "only for transport 'tcp'")
            device = options.get("port")
            if not isinstance(device, str) or not device:
                raise DriverOptionError("port", "required for transport 'rtu' (a serial device)")
            parity = options.get("parity", "N")
            if not isinstance(parity, str) or parity.upper() not in ("N", "E", "O"):
                raise DriverOptionError("parity", f"must be N, E or O, got {parity!r}")
            stopbits = _integer(options, "stopbits", 1, 1, 2)
            baudrate = _integer(options, "baudrate", DEFAULT_BAUDRATE, 300, 921600)
            link = RtuLinkSettings(device, baudrate, parity.upper(), stopbits)
            unit = _integer(options, "unit", 1, 1, 247)  # RTU addresses (0 is broadcast)
        timeout_s = options.get("timeout_s", DEFAULT_TIMEOUT_S)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not (math.isfinite(timeout_s) and 0.0 < timeout_s <= 60.0)
        ):
            raise DriverOptionError("timeout_s", f"must be a number in (0, 60], got {timeout_s!r}")
        retries = _integer(options, "retries", DEFAULT_RETRIES, 0, 10)
        return cls(link, unit, MAPS[name], float(timeout_s), retries)


def _integer(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DriverOptionError(key, f"must be an integer in {low}..{high}, got {value!r}")
    return value


def _describe(settings: LinkSettings) -> str:
    if isinstance(settings, TcpLinkSettings):
        return f"modbus tcp {settings.host}:{settings.port}"
    return f"modbus rtu {settings.device}"


def _shared_key(settings: LinkSettings) -> tuple[str, ...]:
    if isinstance(settings, TcpLinkSettings):
        return ("modbus", "tcp", settings.host, str(settings.port))
    return ("modbus", "rtu", settings.device)


class ModbusLink:
    """One Modbus connection (a TCP socket or an RTU serial port), opened on demand.

    Runs one request at a time; after a failed request the connection is closed and the
    next request opens a new one.
    """

    def __init__(self, settings: LinkSettings, *, timeout_s: float, retries: int) -> None:
        """A closed link; nothing is opened before the first `read_registers`."""
        self.settings = settings
        self.timeout_s = timeout_s
        self.retries = retries
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()
        self._users = 0

    @property
    def name(self) -> str:
        """The link as a log and error message names it."""
        return _describe(self.settings)

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._client is not None and self._client.connected

    def attach(self) -> None:
        """Count one more meter using this link."""
        self._users += 1

    def detach(self) -> None:
        """One meter stopped using this link; close it when none is left."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.close()

    def close(self) -> None:
        """Close the connection now (the next request opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        settings = self.settings
        if isinstance(settings, TcpLinkSettings):
            return AsyncModbusTcpClient(
                settings.host,
                port=settings.port,
                name=self.name,
                timeout=self.timeout_s,
                retries=self.retries,
                reconnect_delay=0,  # we reconnect on the next read, not in the background
            )
        return AsyncModbusSerialClient(
            settings.device,
            baudrate=settings.baudrate,
            bytesize=8,
            parity=settings.parity,
            stopbits=settings.stopbits,
            name=self.name,
            timeout=self.timeout_s,
            retries=self.retries,
            reconnect_delay=0,
        )

    async def _open(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        client = self._client
        if client is not None and client.connected:
            return client
        self.close()
        client = self._new_client()
        if not await client.connect():
            client.close()
            raise DriverError(f"{self.name}: cannot connect")
        log.info("%s: connected", self.name)
        self._client = client
        return client

    async def read_registers(self, block: ReadBlock, unit: int) -> list[int]:
        """The words of `block` from device `unit`.

        Raises DriverError for no connection, no (valid) answer in time, an exception
        response or an answer of the wrong length.
        """
        async with self._lock:
            client = await self._open()
            try:
                if block.kind is RegisterKind.INPUT:
                    response = await client.read_input_registers(
                        block.address, count=block.count, device_id=unit
                    )
                else:
                    response = await client.read_holding_registers(
                        block.address, count=block.count, device_id=unit
                    )
            except (ModbusException, OSError, TimeoutError) as exc:
                self.close()
                raise DriverError(
                    f"{self.name}: unit {unit} did not answer a read of {block.count} "
                    f"{block.kind} registers at {block.address:#06x}: {exc}"
                ) from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise DriverError(
                f"{self.name}: unit {unit} answered exception {code} "
                f"({EXCEPTION_NAMES.get(code, 'unknown')}) to a read of {block.count} "
                f"{block.kind} registers at {block.address:#06x}"
            )
        registers = list(response.registers)
        if len(registers) != block.count:
            raise DriverError(
                f"{self.name}: unit {unit} answered {len(registers)} registers "
                f"for a read of {block.count} at {block.address:#06x}"
            )
        return registers


class ModbusPowerMeter:
    """PowerMeter for a DIN-rail meter on Modbus RTU or TCP, chosen by register map."""

    def __init__(self, *, link: ModbusLink, unit: int, meter_map: MeterMap) -> None:
        """A meter at address `unit` on `link`, read through `meter_map`."""
        self._link = link
        self._unit = unit
        self._map = meter_map
        self._plan = meter_map.plan_reads()
        self._closed = False
        link.attach()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> ModbusPowerMeter:
        """Build from a config's options, sharing the link of meters on the same bus.

        Raises DriverOptionError for a bad option, or for settings that disagree with
        another meter's on the same port.
        """
        parsed = ModbusMeterOptions.parse(options)
        key = _shared_key(parsed.link)
        link = context.shared.get(key)
        if isinstance(link, ModbusLink):
            pairs: list[tuple[str, object, object]] = [
                ("timeout_s", parsed.timeout_s, link.timeout_s),
                ("retries", parsed.retries, link.retries),
            ]
            if isinstance(parsed.link, RtuLinkSettings):
                pairs += [
                    (option, getattr(parsed.link, option), getattr(link.settings, option))
                    for option in ("baudrate", "parity", "stopbits")
                ]
            for option, mine, theirs in pairs:
                if mine != theirs:
                    raise DriverOptionError(
                        option, f"differs from another meter's on {link.name} ({theirs})"
                    )
        else:
            link = ModbusLink(parsed.link, timeout_s=parsed.timeout_s, retries=parsed.retries)
            context.shared[key] = link
        return cls(link=link, unit=parsed.unit, meter_map=parsed.meter_map)

    @property
    def meter_map(self) -> MeterMap:
        """The register map this meter is read through."""
        return self._map

    @property
    def unit(self) -> int:
        """The meter's Modbus address."""
        return self._unit

    @property
    def link(self) -> ModbusLink:
        """The connection this meter is read over (shared with meters on the same bus)."""
        return self._link

    @property
    def reads(self) -> Sequence[ReadBlock]:
        """The requests one reading takes."""
        return self._plan

    async def read_quantities(self) -> dict[Quantity, float]:
        """Every quantity the meter has a value for now (more than a MeterSample holds).

        Raises DriverError when the meter does not answer or the answer cannot be decoded.
        """
        if self._closed:
            raise DriverError(f"{self._link.name}: meter {self._unit} is closed")
        answers = [
            (block, await self._link.read_registers(block, self._unit)) for block in self._plan
        ]
        try:
            return self._map.decode(answers)
        except ValueError as exc:
            raise DriverError(f"{self._link.name}: unit {self._unit}: {exc}") from exc

    async def read(self) -> MeterSample:
        """Return a fresh reading; raises DriverError when the meter does not answer."""
        values = await self.read_quantities()
        energy_import_wh = values.get(Quantity.ENERGY_IMPORT_WH)
        if energy_import_wh is None or energy_import_wh < 0.0:
            raise DriverError(
                f"{self._link.name}: unit {self._unit} reports no valid import energy "
                f"({energy_import_wh})"
            )
        power_w = values.get(Quantity.POWER_W)
        if power_w is None:
            power_w = sum(values.get(q, 0.0) for q in PHASE_POWERS)
        current_a = tuple(values.get(q, 0.0) for q in PHASE_CURRENTS)
        voltage_v = tuple(values.get(q, 0.0) for q in PHASE_VOLTAGES)
        return MeterSample(
            energy_import_wh=energy_import_wh,
            power_w=power_w,
            current_a=(current_a[0], current_a[1], current_a[2]),
            voltage_v=(voltage_v[0], voltage_v[1], voltage_v[2]),
            energy_export_wh=values.get(Quantity.ENERGY_EXPORT_WH, 0.0),
            frequency_hz=values.get(Quantity.FREQUENCY_HZ),
        )

    async def close(self) -> None:
        """Stop using the link (closed when no other meter uses it); idempotent."""
        if not self._closed:
            self._closed = True
            self._link.detach()
