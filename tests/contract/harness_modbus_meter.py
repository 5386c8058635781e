"""Contract harnesses for drivers.modbus_meter: every register map, on both transports.

Each harness runs a real pymodbus server (simulator.modbus_meter_peer) as the meter and
the driver as its client: Modbus TCP on 127.0.0.1 (a free port), and Modbus RTU through
a pty null modem with pymodbus's own serial server on the far end. The load is constant
(16 A on three phases at 230 V) and energy flows when the harness moves the peer's clock.
Silencing the meter unplugs the TCP server, or cuts the RTU cable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from drivers.interfaces import PowerMeter
from drivers.meter_maps import MAPS
from drivers.modbus_meter import ModbusPowerMeter
from drivers.registry import DriverContext
from simulator.modbus_meter_peer import ModbusMeterPeer, PtyNullModem

UNIT = 7
#: Short, so that the silent-meter case costs a tenth of a second.
TIMEOUT_S = 0.1


class _PeerClock:
    """The peer's monotonic clock, moved only by the harness."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class ModbusMeterHarness:
    """A ModbusPowerMeter and the pymodbus server it reads."""

    def __init__(
        self,
        meter: ModbusPowerMeter,
        peer: ModbusMeterPeer,
        clock: _PeerClock,
        modem: PtyNullModem | None,
    ) -> None:
        self._meter = meter
        self.peer = peer
        self._clock = clock
        self._modem = modem

    @property
    def meter(self) -> PowerMeter:
        return self._meter

    async def let_energy_flow(self, seconds: float) -> None:
        self._clock.now_s += seconds

    async def silence_meter(self) -> None:
        if self._modem is not None:
            self._modem.cut()
        else:
            await self.peer.unplug()

    async def close(self) -> None:
        await self._meter.close()
        await self.peer.close()
        if self._modem is not None:
            self._modem.close()


def _context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=32.0, phases=3)


def _harness(map_name: str, transport: str) -> Callable[[], Awaitable[ModbusMeterHarness]]:
    async def factory() -> ModbusMeterHarness:
        clock = _PeerClock()
        peer = ModbusMeterPeer(MAPS[map_name], unit=UNIT, monotonic=clock)
        options: dict[str, object] = {
            "map": map_name,
            "unit": UNIT,
            "timeout_s": TIMEOUT_S,
            "retries": 0,
        }
        modem: PtyNullModem | None = None
        if transport == "tcp":
            port = await peer.serve_tcp("127.0.0.1", 0)
            options |= {"transport": "tcp", "host": "127.0.0.1", "port": port}
        else:
            modem = PtyNullModem()
            # 8N1: a pty takes no parity (pyserial's reconfigure fails with EINVAL).
            await peer.serve_rtu(modem.meter_path, baudrate=19200)
            options |= {"transport": "rtu", "port": modem.client_path, "baudrate": 19200}
        meter = ModbusPowerMeter.from_options(options, _context())
        return ModbusMeterHarness(meter, peer, clock, modem)

    factory.__name__ = factory.__qualname__ = f"modbus_{transport}_{map_name}"
    return factory


METER_HARNESSES = [
    _harness(map_name, transport) for transport in ("tcp", "rtu") for map_name in sorted(MAPS)
]
