"""Contract harnesses for the serial MCU drivers: the real driver, a pty, the reference MCU.

The far end is simulator/mcu_emulator.py on the master side of `os.openpty()`, in front
of a Plant with a fake clock; the driver opens the slave side with pyserial exactly as it
opens /dev/ttyAMA0 on a charger. Nothing is mocked at the wire.

The board harnesses use an MCU without the pilot interlock: the contract suite checks
that a contactor command is carried out and reported with no car connected, which a
board with the interlock (the default, and what the integration tests use) refuses by
design.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from drivers.registry import DriverContext
from drivers.serial_mcu import SerialMcuBoardSupport, SerialMcuConnectorLock
from simulator.ev import SimEv
from simulator.mcu_emulator import McuEmulator
from simulator.plant import Plant
from tests.contract.conftest import BoardHarness, FakeClock, LockHarness

#: Fast link timing so the suites stay quick (the defaults are 200 / 1000 ms).
LINK_OPTIONS = {"heartbeat_ms": 50, "timeout_ms": 500}


def _context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=32.0, phases=3)


async def _emulator(**kwargs: Any) -> McuEmulator:
    emulator = McuEmulator(Plant(monotonic=FakeClock()), **kwargs)
    await emulator.start()
    return emulator


class SerialMcuBoardHarness:
    def __init__(self, emulator: McuEmulator, board: SerialMcuBoardSupport) -> None:
        self.emulator = emulator
        self._board = board

    @property
    def board(self) -> SerialMcuBoardSupport:
        return self._board

    async def connect_ev(self) -> None:
        self.emulator.plant.plug_in(SimEv())

    async def contactor_closed_at_hardware(self) -> bool:
        return self.emulator.contactor_closed

    async def pilot_mode_at_hardware(self) -> str:
        return self.emulator.pilot_mode

    async def close(self) -> None:
        try:
            await self._board.stop()
        finally:
            await self.emulator.close()


async def _board_harness(**board_options: Any) -> BoardHarness:
    emulator = await _emulator(interlock=False)
    options = {"port": emulator.slave_path, **LINK_OPTIONS, **board_options}
    board = SerialMcuBoardSupport.from_options(options, _context())
    return SerialMcuBoardHarness(emulator, board)


async def serial_mcu_board() -> BoardHarness:
    return await _board_harness()


async def serial_mcu_board_without_feedback() -> BoardHarness:
    return await _board_harness(contactor_feedback=False)


class SerialMcuLockHarness:
    def __init__(self, emulator: McuEmulator, lock: SerialMcuConnectorLock) -> None:
        self.emulator = emulator
        self._lock = lock

    @property
    def lock(self) -> SerialMcuConnectorLock:
        return self._lock

    async def jam(self) -> None:
        self.emulator.jam_lock(True)

    async def close(self) -> None:
        await self.emulator.close()


async def serial_mcu_lock() -> LockHarness:
    emulator = await _emulator(lock_retry_s=60.0)
    options = {"port": emulator.slave_path, **LINK_OPTIONS}
    return SerialMcuLockHarness(emulator, SerialMcuConnectorLock.from_options(options, _context()))


BOARD_HARNESSES: list[Callable[[], Awaitable[BoardHarness]]] = [
    serial_mcu_board,
    serial_mcu_board_without_feedback,
]
LOCK_HARNESSES: list[Callable[[], Awaitable[LockHarness]]] = [serial_mcu_lock]
