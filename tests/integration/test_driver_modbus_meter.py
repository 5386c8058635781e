"""The Modbus meter driver against a real pymodbus server, alone and inside the agent.

The meter's far end is simulator.modbus_meter_peer: Modbus TCP on 127.0.0.1, or Modbus RTU
through a pty null modem. Faults are injected there (server unplugged, exception
responses, garbled RTU frames, a cut cable) and the tests assert what a user sees: the
reading, the error, and through the agent what the CSMS receives (StatusNotification
Faulted/PowerMeterFailure, then Available or Charging again) and what the contactor did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from drivers import registry
from drivers.interfaces import DriverError
from drivers.meter_maps import MAPS, PHASE_POWERS
from drivers.modbus_meter import ModbusPowerMeter
from drivers.registry import DriverContext, DriverOptionError
from simulator.csms import Csms
from simulator.ev import EvParameters, SimEv
from simulator.modbus_meter_peer import Electrical, ModbusMeterPeer, PtyNullModem
from tests.integration.conftest import CP_ID, make_config

TIMEOUT_S = 0.2
LOAD = Electrical(current_a=(10.0, 12.0, 14.0), voltage_v=(230.0, 231.0, 229.0), frequency_hz=49.9)


def _context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=32.0, phases=3)


def _meter(options: dict[str, Any], context: DriverContext | None = None) -> ModbusPowerMeter:
    """Built as the agent builds it: the registry's factory for `meter: {driver: modbus}`."""
    meter = registry.factory("meter", "modbus")(options, context or _context())
    assert isinstance(meter, ModbusPowerMeter)
    return meter


@asynccontextmanager
async def _tcp_meter(
    map_name: str = "sdm630", **peer_args: Any
) -> AsyncIterator[tuple[ModbusPowerMeter, ModbusMeterPeer]]:
    async with ModbusMeterPeer(MAPS[map_name], **peer_args) as peer:
        port = await peer.serve_tcp()
        meter = _meter(
            {
                "host": "127.0.0.1",
                "port": port,
                "map": map_name,
                "timeout_s": TIMEOUT_S,
                "retries": 0,
            }
        )
        try:
            yield meter, peer
        finally:
            await meter.close()


@asynccontextmanager
async def _rtu_meter(
    map_name: str = "sdm630", **peer_args: Any
) -> AsyncIterator[tuple[ModbusPowerMeter, ModbusMeterPeer, PtyNullModem]]:
    modem = PtyNullModem()
    try:
        async with ModbusMeterPeer(MAPS[map_name], **peer_args) as peer:
            await peer.serve_rtu(modem.meter_path, baudrate=38400)
            meter = _meter(
                {
                    "transport": "rtu",
                    "port": modem.client_path,
                    "baudrate": 38400,
                    "map": map_name,
                    "timeout_s": TIMEOUT_S,
                    "retries": 0,
                }
            )
            try:
                yield meter, peer, modem
            finally:
                await meter.close()
    finally:
        modem.close()


# -- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"host": "10.0.0.5"}, "map"),
        ({"host": "10.0.0.5", "map": "sdm999"}, "map"),
        ({"host": "10.0.0.5", "map": "sdm630", "adress": 1}, "adress"),
        ({"transport": "tcp", "map": "sdm630"}, "host"),
        ({"transport": "rtu", "map": "sdm630"}, "port"),
        ({"transport": "udp", "map": "sdm630"}, "transport"),
        ({"host": "10.0.0.5", "port": 70000, "map": "sdm630"}, "port"),
        ({"host": "10.0.0.5", "map": "sdm630", "baudrate": 9600}, "baudrate"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "parity": "X"}, "parity"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "stopbits": 3}, "stopbits"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "unit": 0}, "unit"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "unit": True}, "unit"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "timeout_s": 0}, "timeout_s"),
        ({"port": "/dev/ttyUSB0", "map": "sdm630", "retries": -1}, "retries"),
    ],
)
def test_a_bad_option_is_refused_naming_its_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(DriverOptionError) as raised:
        _meter(options)
    assert raised.value.key == key


def test_rtu_is_chosen_without_a_host_and_has_the_documented_defaults() -> None:
    meter = _meter({"port": "/dev/ttyUSB0", "map": "abb_b23"})
    assert meter.link.name == "modbus rtu /dev/ttyUSB0"
    assert (meter.unit, meter.meter_map.name) == (1, "abb_b23")
    assert (meter.link.timeout_s, meter.link.retries) == (1.0, 1)


def test_meters_on_one_serial_port_share_one_link_and_must_agree_on_its_settings() -> None:
    context = _context()
    first = _meter({"port": "/dev/ttyUSB0", "unit": 1, "map": "sdm630"}, context)
    second = _meter({"port": "/dev/ttyUSB0", "unit": 2, "map": "em340"}, context)
    assert first.link is second.link
    with pytest.raises(DriverOptionError) as raised:
        _meter({"port": "/dev/ttyUSB0", "unit": 3, "map": "sdm630", "baudrate": 19200}, context)
    assert raised.value.key == "baudrate"


# -- the driver against the peer --------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@pytest.mark.parametrize("map_name", sorted(MAPS))
async def test_every_map_reads_the_same_physical_quantities(map_name: str, transport: str) -> None:
    peer_args = {"load": lambda: LOAD, "energy_import_wh": 123_456.7, "energy_export_wh": 890.0}
    async with (
        _tcp_meter(map_name, **peer_args)
        if transport == "tcp"
        else _rtu_meter(map_name, **peer_args)
    ) as (meter, peer, *_):
        sample = await meter.read()
        quantities = await meter.read_quantities()
    resolution_wh = {"abb_b23": 10.0, "abb_b24": 10.0, "em340": 100.0}.get(map_name, 0.1)
    assert sample.energy_import_wh == pytest.approx(123_456.7, abs=resolution_wh)
    assert sample.energy_export_wh == pytest.approx(890.0, abs=resolution_wh)
    assert sample.current_a == pytest.approx((10.0, 12.0, 14.0))
    assert sample.voltage_v == pytest.approx((230.0, 231.0, 229.0))
    assert sample.power_w == pytest.approx(230.0 * 10 + 231.0 * 12 + 229.0 * 14)
    assert sample.frequency_hz == pytest.approx(49.9)
    per_phase_w = [quantities[q] for q in PHASE_POWERS]
    assert per_phase_w == pytest.approx([2300.0, 2772.0, 3206.0])
    # One reading costs exactly the planned requests, each within the meter's limit.
    assert peer.requests == list(meter.reads) * 2
    assert all(b.count <= meter.meter_map.max_read_registers for b in peer.requests)


async def test_an_exception_response_raises_driver_error_naming_the_code() -> None:
    async with _tcp_meter() as (meter, peer):
        peer.exception_code = 0x04
        with pytest.raises(DriverError, match=r"exception 4 \(server device failure\)"):
            await meter.read()
        peer.exception_code = None
        assert (await meter.read()).voltage_v == (230.0, 230.0, 230.0)


async def test_a_meter_at_another_unit_address_is_not_taken_for_ours() -> None:
    async with ModbusMeterPeer(MAPS["sdm630"], unit=5) as peer:
        port = await peer.serve_tcp()
        meter = _meter({"host": "127.0.0.1", "port": port, "map": "sdm630", "unit": 6})
        try:
            with pytest.raises(DriverError):
                await meter.read()
        finally:
            await meter.close()


async def test_garbled_rtu_frames_raise_driver_error_until_the_line_is_clean() -> None:
    async with _rtu_meter(energy_import_wh=5_000.0) as (meter, peer, _modem):
        peer.garble = True
        with pytest.raises(DriverError, match="did not answer"):
            await meter.read()
        peer.garble = False
        assert (await meter.read()).energy_import_wh >= 5_000.0


async def test_a_cut_rtu_cable_raises_driver_error_and_reading_resumes_when_mended() -> None:
    async with _rtu_meter(energy_import_wh=5_000.0) as (meter, _peer, modem):
        modem.cut()
        with pytest.raises(DriverError):
            await meter.read()
        modem.mend()
        assert (await meter.read()).energy_import_wh >= 5_000.0


async def test_the_meter_reconnects_by_itself_when_its_tcp_server_comes_back() -> None:
    async with _tcp_meter(energy_import_wh=42_000.0) as (meter, peer):
        await meter.read()
        await peer.unplug()
        with pytest.raises(DriverError):
            await meter.read()
        with pytest.raises(DriverError):
            await meter.read()  # still gone: a fresh connection is refused
        await peer.plug_in()
        assert (await meter.read()).energy_import_wh >= 42_000.0
        assert meter.link.connected


# -- through the agent ----------------------------------------------------------------------


@asynccontextmanager
async def _agent_with_meter(
    csms: Csms,
    tmp_path: Path,
    settings: dict[str, Any],
    peer: ModbusMeterPeer,
    connect: Callable[[Agent], Awaitable[ModbusPowerMeter]],
) -> AsyncIterator[Agent]:
    """An agent on a simulated board whose EVSE 1 reads a Modbus meter (served by `peer`).

    agent/app.py builds real meters only with a real board, so the meter is swapped in
    before run(): the wiring the composition root would do. Everything is closed after.
    """
    try:
        agent = Agent(make_config(csms.url, tmp_path, settings=settings))
        meter = await connect(agent)
        agent.hardware[1].meter = meter
        agent.station.evses[1].meter = meter
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop), name="agent")
        try:
            yield agent
        finally:
            stop.set()
            await task
            await meter.close()
    finally:
        await peer.close()


def _status(status: str, error_code: str = "NoError") -> Callable[[dict[str, Any]], bool]:
    return lambda p: (
        p["connectorId"] == 1
        and (p["status"], p["errorCode"])
        == (
            status,
            error_code,
        )
    )


async def test_unplugged_meter_faults_a_charging_evse_and_it_charges_again_when_back(
    csms: Csms, tmp_path: Path
) -> None:
    peer = ModbusMeterPeer(MAPS["abb_b23"], energy_import_wh=2_000_000.0)

    async def connect(agent: Agent) -> ModbusPowerMeter:
        plant = agent.hardware[1].plant
        # The meter measures the simulated power path: current flows only while the
        # plant's contactor is closed.
        peer.load = lambda: Electrical(plant.current_a, plant.voltage_v)
        port = await peer.serve_tcp()
        options = {"host": "127.0.0.1", "port": port, "map": "abb_b23", "timeout_s": TIMEOUT_S}
        return _meter(options)

    settings = {"MeterValueSampleInterval": 1}
    async with _agent_with_meter(csms, tmp_path, settings, peer, connect) as agent:
        plant = agent.hardware[1].plant
        await csms.wait_for("StatusNotification", where=_status("Available"))
        plant.plug_in(SimEv(EvParameters()))
        await csms.wait_for("StatusNotification", where=_status("Preparing"))
        await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "MODBUS"})
        start = await csms.wait_for("StartTransaction")
        await csms.wait_for("StatusNotification", where=_status("Charging"))
        assert start["meterStart"] == 2_000_000
        assert plant.contactor_closed

        await peer.unplug()
        await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerMeterFailure"))
        assert not plant.contactor_closed

        await peer.plug_in()
        await csms.wait_for("StatusNotification", where=_status("Charging"), count=2)
        assert plant.contactor_closed
        sampled = await csms.wait_for(
            "MeterValues",
            where=lambda p: float(p["meterValue"][0]["sampledValue"][0]["value"]) > 2_000_000,
        )
        assert sampled["transactionId"] == 1  # the CSMS's id for the transaction started above


async def test_meter_exception_responses_fault_an_idle_evse_until_it_answers_again(
    csms: Csms, tmp_path: Path
) -> None:
    peer = ModbusMeterPeer(MAPS["em340"], load=lambda: LOAD, energy_import_wh=765_400.0)

    async def connect(_agent: Agent) -> ModbusPowerMeter:
        port = await peer.serve_tcp()
        options = {"host": "127.0.0.1", "port": port, "map": "em340", "timeout_s": TIMEOUT_S}
        return _meter(options)

    settings = {
        "ClockAlignedDataInterval": 1,
        "MeterValuesAlignedData": "Energy.Active.Import.Register,Voltage,Frequency",
    }
    async with _agent_with_meter(csms, tmp_path, settings, peer, connect):
        await csms.wait_for("StatusNotification", where=_status("Available"))
        aligned = await csms.wait_for("MeterValues")
        values = {
            (v["measurand"], v.get("phase")): float(v["value"])
            for v in aligned["meterValue"][0]["sampledValue"]
        }
        assert values[("Energy.Active.Import.Register", None)] == 765_400.0
        assert values[("Voltage", "L2-N")] == 231.0
        assert values[("Frequency", None)] == 49.9

        peer.exception_code = 0x04
        await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerMeterFailure"))
        peer.exception_code = None
        await csms.wait_for("StatusNotification", where=_status("Available"), count=2)


async def test_garbled_rtu_frames_fault_an_idle_evse_until_the_line_is_clean(
    csms: Csms, tmp_path: Path
) -> None:
    modem = PtyNullModem()
    peer = ModbusMeterPeer(MAPS["sdm630"], load=lambda: LOAD, energy_import_wh=1_000.0)

    async def connect(_agent: Agent) -> ModbusPowerMeter:
        await peer.serve_rtu(modem.meter_path)
        options = {"port": modem.client_path, "map": "sdm630", "timeout_s": TIMEOUT_S}
        return _meter(options)

    try:
        settings = {"ClockAlignedDataInterval": 1}
        async with _agent_with_meter(csms, tmp_path, settings, peer, connect):
            await csms.wait_for("MeterValues")
            peer.garble = True
            await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerMeterFailure"))
            peer.garble = False
            await csms.wait_for("StatusNotification", where=_status("Available"), count=2)
    finally:
        modem.close()
