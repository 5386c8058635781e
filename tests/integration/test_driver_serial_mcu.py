"""The serial MCU board end to end: agent + `driver: serial_mcu` + reference MCU + CSMS.

The agent builds its board and lock from YAML through the registry, exactly as on a
charger, and opens the slave side of a pty; the reference MCU (simulator/mcu_emulator.py,
with the pilot interlock, in front of a Plant and a SimEv) is on the master side. Faults
are injected at the MCU; the assertions are on what the CSMS received and what the MCU
did with its contactor and lock.

The meter is the simulator's meter over the MCU's plant, registered for this test only:
the test is about the board.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_config
from drivers import registry
from drivers.interfaces import DriverError
from drivers.registry import DriverContext
from drivers.serial_mcu import SerialMcuBoardSupport
from drivers.serial_mcu_protocol import LockPosition, ResetCause, SelfTest
from drivers.types import (
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
)
from simulator.csms import Csms
from simulator.drivers import SimPowerMeter
from simulator.ev import SimEv
from simulator.mcu_emulator import McuEmulator
from simulator.plant import Plant
from tests.contract.conftest import EVENT_TIMEOUT_S, EventRecorder
from tests.integration.conftest import CP_ID, RunningStation

TEST_METER = "serial_mcu_test_plant"


class McuStation(RunningStation):
    """A RunningStation on a serial MCU board, with the MCU at hand."""

    def __init__(self, config: Any, mcu: McuEmulator) -> None:
        super().__init__(config)
        self.mcu = mcu

    @property
    def board(self) -> SerialMcuBoardSupport:
        board = self.agent.hardware[1].board
        assert isinstance(board, SerialMcuBoardSupport)
        return board

    def plug_ev(self) -> SimEv:
        car = SimEv()
        self.mcu.plant.plug_in(car)
        return car


def _write_config(path: Path, csms_url: str, port: str) -> None:
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "mcu-test"},
        "csms": {
            "url": csms_url,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        },
        "evses": [
            {
                "connectors": [{"type": "sType2", "max_current_a": 32, "phases": 3}],
                "board": {
                    "driver": "serial_mcu",
                    "port": port,
                    "heartbeat_ms": 50,
                    "timeout_ms": 400,
                },
                "meter": {"driver": TEST_METER},
                "lock": {"driver": "serial_mcu"},  # the board's port: one link, shared
                "reader": {"driver": "sim"},
            }
        ],
        "store": {"path": str(path.parent / "agent.db")},
        "settings": {"MeterValueSampleInterval": 0, "HeartbeatInterval": 300},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
async def station(
    csms: Csms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[McuStation]:
    """An agent whose EVSE 1 is a serial MCU board, booted and Available at the CSMS."""
    mcu = McuEmulator(Plant(time_scale=60.0), lock_retry_s=0.1)
    port = await mcu.start()
    real_factory = registry.factory

    def factory(role: str, name: str) -> Callable[[Mapping[str, Any], DriverContext], Any]:
        if (role, name) == ("meter", TEST_METER):
            return lambda _options, _context: SimPowerMeter(mcu.plant)
        return real_factory(role, name)

    monkeypatch.setattr(registry, "factory", factory)
    config_path = tmp_path / "agent.yaml"
    _write_config(config_path, csms.url, port)
    running = McuStation(load_config(config_path), mcu)
    await running.start()
    try:
        await csms.wait_for("StatusNotification", where=_status("Available"))
        yield running
    finally:
        await running.stop()
        await mcu.close()


def _status(status: str, error_code: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def match(payload: dict[str, Any]) -> bool:
        return (
            payload["connectorId"] == 1
            and payload["status"] == status
            and (error_code is None or payload["errorCode"] == error_code)
        )

    return match


def _statuses(csms: Csms) -> list[str]:
    return [p["status"] for p in csms.calls("StatusNotification") if p["connectorId"] == 1]


def _seen(csms: Csms, status: str) -> int:
    """How many StatusNotifications of `status` the CSMS has received so far."""
    return sum(1 for p in csms.calls("StatusNotification") if _status(status)(p))


async def _another(csms: Csms, status: str, seen: int) -> None:
    """Await one more StatusNotification of `status` than `seen`."""
    await csms.wait_for("StatusNotification", where=_status(status), count=seen + 1)


async def _charging(csms: Csms, station: McuStation) -> SimEv:
    car = station.plug_ev()
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=_status("Charging"))
    await station.mcu.wait_until(lambda: station.mcu.contactor_closed)
    assert station.mcu.pilot_mode == "pwm"
    assert station.mcu.lock_position is LockPosition.LOCKED
    return car


async def test_session_charges_through_the_mcu_and_ends_safe_on_unplug(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.plant.unplug()
    stop = await csms.wait_for("StopTransaction")
    await csms.wait_for("StatusNotification", where=_status("Available"), count=2)
    assert stop["reason"] == "EVDisconnected"
    assert not station.mcu.contactor_closed
    assert station.mcu.pilot_mode == "off"
    await station.mcu.wait_until(lambda: station.mcu.lock_position is LockPosition.UNLOCKED)
    assert "Faulted" not in _statuses(csms)


async def test_garbled_frames_both_ways_are_dropped_and_resent_without_a_fault(
    csms: Csms, station: McuStation
) -> None:
    car = await _charging(csms, station)
    station.mcu.garble_next(5)  # the pause report below goes out garbled, then resent
    station.mcu.garble_incoming(3)  # and the agent's acks of it are lost on the way back
    suspended = _seen(csms, "SuspendedEV")
    car.pause()
    await _another(csms, "SuspendedEV", suspended)
    await station.mcu.wait_until(lambda: not station.mcu.contactor_closed)
    assert station.board.link.stats.garbled == 5
    assert station.mcu.rx_errors == 3
    charging = _seen(csms, "Charging")
    car.resume()
    await _another(csms, "Charging", charging)
    assert "Faulted" not in _statuses(csms)
    assert not csms.calls("StopTransaction")


async def test_silent_mcu_is_faulted_internal_error_and_recovers_when_it_talks_again(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.set_silent(True)
    await csms.wait_for("StatusNotification", where=_status("Faulted", "InternalError"))
    # The MCU still hears the agent: the agent's HELLO revokes its permission.
    await station.mcu.wait_until(lambda: not station.mcu.contactor_closed)
    station.mcu.set_silent(False)
    await csms.wait_for("StatusNotification", where=_status("Charging"), count=2)
    await station.mcu.wait_until(lambda: station.mcu.contactor_closed)
    assert not csms.calls("StopTransaction")


async def test_mcu_reset_is_faulted_until_the_agent_has_reinitialised_it(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.reset(ResetCause.WATCHDOG)
    assert not station.mcu.contactor_closed  # a booting MCU grants nothing
    await csms.wait_for("StatusNotification", where=_status("Faulted", "InternalError"))
    await csms.wait_for("StatusNotification", where=_status("Charging"), count=2)
    await station.mcu.wait_until(lambda: station.mcu.contactor_closed)
    assert station.mcu.boots == 2
    assert station.board.link.stats.sessions == 2  # HELLO again after the reset


async def test_rcd_trip_opens_at_once_is_ground_failure_and_clears_on_unplug(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.trip_rcd(dc=True)
    assert not station.mcu.contactor_closed  # the MCU opened by itself, before any agent
    await csms.wait_for("StatusNotification", where=_status("Faulted", "GroundFailure"))
    station.mcu.plant.unplug()  # no re-closing onto the vehicle that tripped
    await csms.wait_for("StopTransaction")
    await csms.wait_for("StatusNotification", where=_status("Available"), count=2)
    assert _statuses(csms)[-1] == "Available"


async def test_welded_contactor_is_power_switch_failure_and_clears_when_it_opens(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.weld_contactor(True)
    await csms.call(CP_ID, "RemoteStopTransaction", {"transactionId": 1})
    await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerSwitchFailure"))
    assert not station.mcu.coil_on  # permission revoked, coil off...
    assert station.mcu.contactor_closed  # ...and the mirror says the contacts stay closed
    finishing = _seen(csms, "Finishing")
    station.mcu.weld_contactor(False)
    await _another(csms, "Finishing", finishing)
    assert _statuses(csms)[-2:] == ["Faulted", "Finishing"]


async def test_jammed_lock_is_connector_lock_failure_and_charging_waits_for_it(
    csms: Csms, station: McuStation
) -> None:
    station.mcu.jam_lock(True)
    station.plug_ev()
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=_status("Faulted", "ConnectorLockFailure"))
    assert not station.mcu.contactor_closed
    assert station.mcu.lock_position is LockPosition.UNLOCKED
    station.mcu.jam_lock(False)  # the MCU retries the motion, and it succeeds
    await csms.wait_for("StatusNotification", where=_status("Charging"))
    await station.mcu.wait_until(
        lambda: station.mcu.contactor_closed and station.mcu.lock_position is LockPosition.LOCKED
    )


async def test_over_temperature_is_high_temperature_and_charging_resumes_when_cool(
    csms: Csms, station: McuStation
) -> None:
    await _charging(csms, station)
    station.mcu.set_temperature(90.0)
    assert not station.mcu.contactor_closed  # tripped by the MCU itself
    await csms.wait_for("StatusNotification", where=_status("Faulted", "HighTemperature"))
    station.mcu.set_temperature(80.0)  # inside the hysteresis: still tripped
    station.mcu.set_temperature(70.0)
    await csms.wait_for("StatusNotification", where=_status("Charging"), count=2)
    await station.mcu.wait_until(lambda: station.mcu.contactor_closed)
    assert station.board.allowed_current_a is not None  # still derating at 70 degC


# --- the driver against the MCU, without the agent -------------------------------------------

LINK = {"heartbeat_ms": 50, "timeout_ms": 400}


class Recorder(EventRecorder[BoardEvent]):
    """The contract suites' recorder, plus awaiting the next fault of any kind."""

    def __init__(self) -> None:
        super().__init__()
        self._new = asyncio.Event()

    def __call__(self, event: BoardEvent) -> None:
        super().__call__(event)
        self._new.set()

    async def next_fault(self, after: int = 0) -> FaultEvent:
        """The first FaultEvent at or after `after`, awaited if needed."""
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                for event in self.events[after:]:
                    if isinstance(event, FaultEvent):
                        return event
                self._new.clear()
                await self._new.wait()


def _context(shared: dict[Any, Any] | None = None) -> DriverContext:
    return DriverContext(
        evse_id=1, max_current_a=32.0, phases=3, shared={} if shared is None else shared
    )


@pytest.fixture
async def mcu() -> AsyncIterator[McuEmulator]:
    """A reference MCU without the pilot interlock, on a pty."""
    emulator = McuEmulator(Plant(), interlock=False)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


@pytest.fixture
async def board(mcu: McuEmulator) -> AsyncIterator[SerialMcuBoardSupport]:
    """A stopped board on `mcu`, stopped again after the test."""
    driver = registry.factory("board", "serial_mcu")({"port": mcu.slave_path, **LINK}, _context())
    assert isinstance(driver, SerialMcuBoardSupport)
    try:
        yield driver
    finally:
        await driver.stop()


@pytest.mark.parametrize(
    ("role", "options", "key"),
    [
        ("board", {}, "port"),
        ("board", {"port": "/dev/ttyX", "heartbeat_ms": 300, "timeout_ms": 500}, "timeout_ms"),
        ("board", {"port": "/dev/ttyX", "baudrate": "fast"}, "baudrate"),
        ("board", {"port": "/dev/ttyX", "heartbeat": 100}, "heartbeat"),
        ("board", {"port": "/dev/ttyX", "contactor_feedback": "yes"}, "contactor_feedback"),
        ("lock", {}, "port"),  # no board on this EVSE to share a port with
        ("lock", {"port": "/dev/ttyX", "lock_timeout_ms": 0}, "lock_timeout_ms"),
    ],
)
def test_a_bad_option_is_refused_naming_its_key(
    role: str, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(registry.DriverOptionError) as refused:
        registry.factory(role, "serial_mcu")(options, _context())
    assert refused.value.key == key


def test_board_and_lock_of_an_evse_share_one_link() -> None:
    shared: dict[Any, Any] = {}
    board = registry.factory("board", "serial_mcu")({"port": "/dev/ttyX"}, _context(shared))
    lock = registry.factory("lock", "serial_mcu")({}, _context(shared))
    assert lock.link is board.link
    with pytest.raises(registry.DriverOptionError, match="another EVSE"):
        registry.factory("board", "serial_mcu")({"port": "/dev/ttyX"}, _context(shared))


async def test_a_silent_mcu_at_start_is_mcu_timeout_until_it_answers(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    mcu.set_silent(True)
    recorder = Recorder()
    await board.start(recorder)
    [silent] = recorder.events  # no pilot state to report: only the fault
    assert isinstance(silent, FaultEvent)
    assert (silent.code, silent.active) == (FaultCode.MCU_TIMEOUT, True)
    mcu.set_silent(False)
    cleared = await recorder.wait_for(FaultEvent(FaultCode.MCU_TIMEOUT, False))
    assert PilotEvent(PilotState.A) in recorder.events[:cleared]


async def test_a_missing_serial_port_is_mcu_timeout_not_a_crash() -> None:
    options = {"port": "/dev/serial-mcu-that-is-not-there", **LINK}
    board = registry.factory("board", "serial_mcu")(options, _context())
    recorder = Recorder()
    await board.start(recorder)
    try:
        [missing] = recorder.events
        assert isinstance(missing, FaultEvent)
        assert (missing.code, missing.active) == (FaultCode.MCU_TIMEOUT, True)
        assert "cannot open serial port" in missing.detail
        with pytest.raises(DriverError):
            await board.pwm_on(50.0)  # nothing can be granted to an MCU not there
        await board.set_contactor(False)  # opening needs nobody's answer
    finally:
        await board.stop()


async def test_an_agent_gone_silent_loses_its_permission_at_the_mcu(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    recorder = Recorder()
    await board.start(recorder)
    await board.pwm_on(50.0)
    await board.set_contactor(True)
    closed = await recorder.wait_for(ContactorEvent(True))
    mcu.set_deaf(True)  # to the MCU, the agent has gone silent
    await mcu.wait_until(lambda: mcu.permission_lapsed)
    assert not mcu.contactor_closed
    assert mcu.pilot_mode == "off"
    # The MCU's acks are lost, so its reports are stuck; its heartbeat says "no session".
    fault = await recorder.next_fault(after=closed)
    assert (fault.code, fault.active) == (FaultCode.MCU_TIMEOUT, True)
    mcu.set_deaf(False)
    await recorder.wait_for(FaultEvent(FaultCode.MCU_TIMEOUT, False), after=closed)
    # Re-initialised: the grants the agent last gave are back in force at the MCU.
    await mcu.wait_until(lambda: mcu.contactor_closed)
    assert mcu.pilot_mode == "pwm"


async def test_a_contactor_that_will_not_close_is_stuck_open(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    recorder = Recorder()
    await board.start(recorder)
    mcu.stick_contactor_open(True)
    await board.set_contactor(True)
    event = await recorder.next_fault()
    assert (event.code, event.active) == (FaultCode.CONTACTOR_STUCK_OPEN, True)
    assert not mcu.coil_on  # latched: the MCU does not keep trying
    assert ContactorEvent(True) not in recorder.events


async def test_the_mcu_clamps_the_duty_to_the_cable_and_reports_its_ampacity(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    mcu.set_cable(20)
    await board.start(Recorder())
    assert board.cable_ampacity_a == 20
    await board.pwm_on(50.0)  # 30 A asked
    assert mcu.plant.offered_current_a == pytest.approx(20.0, abs=0.1)


async def test_rcd_self_test_passes_or_fails_as_the_rcd_does(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    recorder = Recorder()
    await board.start(recorder)
    assert await board.rcd_self_test() is SelfTest.PASSED
    mcu.fail_selftests(True)
    assert await board.rcd_self_test() is SelfTest.FAILED
    event = await recorder.next_fault()
    assert (event.code, event.active) == (FaultCode.RCD_TRIP, True)


async def test_an_unplugged_serial_adapter_is_mcu_timeout(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    recorder = Recorder()
    await board.start(recorder)
    await mcu.close()  # the far end of the line is gone
    event = await recorder.next_fault()
    assert (event.code, event.active) == (FaultCode.MCU_TIMEOUT, True)


async def test_fault_bits_unknown_to_this_version_are_an_internal_error(
    mcu: McuEmulator, board: SerialMcuBoardSupport
) -> None:
    recorder = Recorder()
    await board.start(recorder)
    mcu.set_unknown_fault_bits(1 << 20)
    event = await recorder.next_fault()
    assert (event.code, event.active) == (FaultCode.INTERNAL_ERROR, True)
    assert "0x100000" in event.detail
    mcu.set_unknown_fault_bits(0)
    await recorder.wait_for(FaultEvent(FaultCode.INTERNAL_ERROR, False))
