"""A Modbus energy meter to test against: a real pymodbus server, plus an RTU null modem.

`ModbusMeterPeer` serves the registers of one `MeterMap` (drivers/meter_maps.py) from a
small load model: per-phase currents and voltages from a `load` callable (a constant load,
a simulated plant's power path, or a whole site's grid connection: `site_load`), power =
V * I * PF, energy integrated over the peer's clock at every read. It answers as a meter
of that model would: only the addresses of the map's table (reads into unknown addresses
get "illegal data address"), at most the map's `max_read_registers` per request ("illegal
data value"), only from the map's register table (input or holding).

Faults are injected at the wire, where a real meter fails:

* `unplug()` / `plug_in()`: the server goes away (TCP listener and connections closed,
  or the serial port released) and comes back on the same address;
* `silent`: requests arrive but nothing is answered (meter without supply behind a
  gateway, a broken RS-485 receive pair);
* `exception_code`: every read is answered with this Modbus exception (0x04: server
  device failure, 0x0B: gateway target failed to respond);
* `garble`: every answer is corrupted on the wire (RTU: the CRC no longer matches;
  TCP: the MBAP protocol id is not 0), so the client discards it.

`PtyNullModem` joins two pseudo-terminals with a relay on the event loop: the peer opens
one end with pymodbus's own serial server, the driver the other, both through pyserial,
as on a real RS-485 adapter. `cut()` drops every byte in both directions (a cable cut).

It must not: import the agent, start tasks of its own (pymodbus's server owns its
connection handlers; the null modem uses loop readers), or be imported by drivers/.
Run it standalone for people (`python -m simulator.modbus_meter_peer --map sdm630`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

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
from simulator.drivers import SiteLoad

log = logging.getLogger(__name__)

_FUNCTION_KIND = {0x03: RegisterKind.HOLDING, 0x04: RegisterKind.INPUT}


@dataclass(frozen=True, slots=True)
class Electrical:
    """What the meter sees on its terminals at one instant."""

    current_a: tuple[float, float, float]
    voltage_v: tuple[float, float, float] = (230.0, 230.0, 230.0)
    frequency_hz: float = 50.0
    power_factor: float = 1.0

    @property
    def phase_power_w(self) -> tuple[float, float, float]:
        """Active power per phase (negative: energy flows back to the grid)."""
        p = [v * i * self.power_factor for v, i in zip(self.voltage_v, self.current_a, strict=True)]
        return (p[0], p[1], p[2])


def constant_load(
    current_a: tuple[float, float, float] = (16.0, 16.0, 16.0),
    voltage_v: tuple[float, float, float] = (230.0, 230.0, 230.0),
) -> Callable[[], Electrical]:
    """A load that draws the same currents at the same voltages forever."""
    state = Electrical(current_a, voltage_v)
    return lambda: state


def site_load(site: SiteLoad, power_factor: float = 1.0) -> Callable[[], Electrical]:
    """The load at a simulated site's grid connection point (base load + the EVSEs'
    plants - PV), for a peer that is the site's grid meter; export is a negative current."""

    def now() -> Electrical:
        voltage = site.voltage_v
        return Electrical(site.currents_a(), (voltage, voltage, voltage), 50.0, power_factor)

    return now


class ModbusMeterPeer:
    """A pymodbus server that is one energy meter of the model `meter_map` describes."""

    def __init__(
        self,
        meter_map: MeterMap,
        *,
        unit: int = 1,
        load: Callable[[], Electrical] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        energy_import_wh: float = 0.0,
        energy_export_wh: float = 0.0,
    ) -> None:
        """A stopped meter at address `unit` with these register contents."""
        self.meter_map = meter_map
        self.unit = unit
        self.load = load or constant_load()
        self.energy_import_wh = energy_import_wh
        self.energy_export_wh = energy_export_wh
        self.silent = False
        self.garble = False
        self.exception_code: int | None = None
        #: Every read request that reached the meter, in order (answered or not).
        self.requests: list[ReadBlock] = []
        self._monotonic = monotonic
        self._last_s = monotonic()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._serve: Callable[[], ModbusTcpServer | ModbusSerialServer] | None = None
        self._framer = FramerType.SOCKET

    # -- the load model -------------------------------------------------------------

    def advance(self) -> None:
        """Integrate the energy registers up to now."""
        now_s = self._monotonic()
        elapsed_s, self._last_s = max(0.0, now_s - self._last_s), now_s
        power_w = sum(self.load().phase_power_w)
        if power_w >= 0:
            self.energy_import_wh += power_w * elapsed_s / 3600.0
        else:
            self.energy_export_wh += -power_w * elapsed_s / 3600.0

    def quantities(self) -> dict[Quantity, float]:
        """What the meter measures now, in the units of `Quantity`."""
        self.advance()
        state = self.load()
        values = {
            Quantity.ENERGY_IMPORT_WH: self.energy_import_wh,
            Quantity.ENERGY_EXPORT_WH: self.energy_export_wh,
            Quantity.POWER_W: sum(state.phase_power_w),
            Quantity.FREQUENCY_HZ: state.frequency_hz,
        }
        for names, numbers in (
            (PHASE_CURRENTS, state.current_a),
            (PHASE_VOLTAGES, state.voltage_v),
            (PHASE_POWERS, state.phase_power_w),
        ):
            values.update(zip(names, numbers, strict=True))
        return values

    # -- the register image ------------------------------------------------------------

    def _table(self, kind: RegisterKind) -> list[SimData]:
        """The addresses the meter answers for in one table (zeros until read)."""
        specs = sorted(
            (s for s in self.meter_map.registers.values() if s.kind is kind),
            key=lambda s: s.address,
        )
        if not specs:
            return [SimData(0, datatype=DataType.INVALID)]
        table: list[SimData] = []
        end = specs[0].address
        for spec in specs:
            gap = spec.address - end
            if 0 < gap <= self.meter_map.max_gap_registers:
                # Documented registers the maps do not use: the meter answers for them.
                table.append(SimData(end, values=[0] * gap, datatype=DataType.REGISTERS))
            table.append(
                SimData(spec.address, values=[0] * spec.word_count, datatype=DataType.REGISTERS)
            )
            end = spec.end
        return table

    def _device(self) -> SimDevice:
        no_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            self.unit,
            simdata=(
                no_bits,
                list(no_bits),
                self._table(RegisterKind.HOLDING),
                self._table(RegisterKind.INPUT),
            ),
            action=self._on_access,
        )

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before answering: refresh the registers or refuse."""
        kind = _FUNCTION_KIND.get(function_code)
        if kind is None or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        self.requests.append(ReadBlock(kind, address, count))
        if self.exception_code is not None:
            return ExcCodes(self.exception_code)
        if count > self.meter_map.max_read_registers:
            return ExcCodes.ILLEGAL_VALUE
        values = self.quantities()
        for quantity, spec in self.meter_map.registers.items():
            if spec.kind is kind:
                offset = spec.address - start_address
                registers[offset : offset + spec.word_count] = spec.encode(values[quantity])
        return None

    def _on_packet(self, sending: bool, packet: bytes) -> bytes:
        """pymodbus's trace hook on the raw bytes: where the wire faults happen."""
        if not sending:
            return packet
        if self.silent:
            return b""
        if self.garble and packet:
            data = bytearray(packet)
            if self._framer is FramerType.RTU:
                data[-1] ^= 0xFF  # the CRC's high byte: the frame fails its check
            elif len(data) >= 4:
                data[2:4] = b"\xff\xff"  # MBAP protocol id must be 0
            return bytes(data)
        return packet

    # -- serving ---------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether the meter is plugged in (its server is up)."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port served (after `serve_tcp`); raises RuntimeError otherwise."""
        server = self._server
        if server is None or self._framer is not FramerType.SOCKET:
            raise RuntimeError("not serving Modbus TCP")
        sockets = getattr(server.transport, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve Modbus TCP on host:port (0: a free port); return the port."""
        self._framer = FramerType.SOCKET
        self._serve = lambda: ModbusTcpServer(
            self._device(), address=(host, port), trace_packet=self._on_packet
        )
        await self.plug_in()
        bound = self.port
        # Come back on the same port after an unplug.
        self._serve = lambda: ModbusTcpServer(
            self._device(), address=(host, bound), trace_packet=self._on_packet
        )
        return bound

    async def serve_rtu(
        self, device: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Serve Modbus RTU on the serial `device` (a tty path or pyserial URL)."""
        self._framer = FramerType.RTU
        self._serve = lambda: ModbusSerialServer(
            self._device(),
            framer=FramerType.RTU,
            port=device,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            trace_packet=self._on_packet,
        )
        await self.plug_in()

    async def plug_in(self) -> None:
        """Start answering again where the meter was served; raises RuntimeError if it
        was never served or the address cannot be taken."""
        if self._server is not None:
            return
        if self._serve is None:
            raise RuntimeError("call serve_tcp() or serve_rtu() first")
        self.advance()
        server = self._serve()
        await server.serve_forever(background=True)
        self._server = server

    async def unplug(self) -> None:
        """Take the meter off the bus: the server and its connections go away."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Stop serving for good."""
        await self.unplug()
        self._serve = None

    async def __aenter__(self) -> ModbusMeterPeer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class PtyNullModem:
    """Two pseudo-terminals joined back to back: a serial cable on one machine."""

    def __init__(self) -> None:
        """Open both ends and start relaying on the running loop."""
        self._loop = asyncio.get_running_loop()
        self.connected = True
        self._fds: list[int] = []
        masters: list[int] = []
        paths: list[str] = []
        for _ in range(2):
            master, slave = os.openpty()
            # Raw from the start, so nothing is echoed before pyserial opens the end; our
            # own slave descriptor stays open so the master never reads EIO in between.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._fds += [master, slave]
            masters.append(master)
            paths.append(os.ttyname(slave))
        self._masters = (masters[0], masters[1])
        self.meter_path, self.client_path = paths[0], paths[1]
        self._loop.add_reader(masters[0], self._relay, masters[0], masters[1])
        self._loop.add_reader(masters[1], self._relay, masters[1], masters[0])

    def _relay(self, source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            log.exception("null modem: read failed")
            return
        if data and self.connected:
            with contextlib.suppress(BlockingIOError):
                os.write(target, data)

    def cut(self) -> None:
        """Cut the cable: every byte from now on is lost."""
        self.connected = False

    def mend(self) -> None:
        """Join the cable again."""
        self.connected = True

    def close(self) -> None:
        """Stop relaying and close every descriptor (idempotent)."""
        for master in self._masters:
            self._loop.remove_reader(master)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


async def _main(args: argparse.Namespace) -> None:
    peer = ModbusMeterPeer(MAPS[args.map], unit=args.unit)
    if args.serial:
        await peer.serve_rtu(args.serial, baudrate=args.baudrate)
        print(f"{args.map} unit {args.unit} on {args.serial} (RTU {args.baudrate} 8N1)")
    else:
        port = await peer.serve_tcp(args.host, args.port)
        print(f"{args.map} unit {args.unit} on {args.host}:{port} (Modbus TCP)")
    try:
        await asyncio.Event().wait()
    finally:
        await peer.close()


def main(argv: list[str] | None = None) -> int:
    """Serve one simulated meter until interrupted."""
    parser = argparse.ArgumentParser(description="A simulated Modbus energy meter.")
    parser.add_argument("--map", choices=sorted(MAPS), default="sdm630")
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--serial", help="serve RTU on this serial device instead of TCP")
    parser.add_argument("--baudrate", type=int, default=9600)
    args: Any = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
