"""DC power-path monitoring: an isolation fault or a power-module fault faults the EVSE
(the core has no DC session yet, but a fault must still reach the CSMS)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent.config import DriverConfig
from simulator.csms import Csms
from tests.integration.conftest import CP_ID, RunningStation, make_config


async def test_isolation_fault_reports_faulted_ground_failure_and_clears(
    csms: Csms, tmp_path: Path
) -> None:
    config = make_config(csms.url, tmp_path)
    evse = config.evses[0]
    config = replace(
        config,
        evses=(
            replace(evse, power_module=DriverConfig("sim"), isolation_monitor=DriverConfig("sim")),
        ),
    )
    running = RunningStation(config)
    await running.start()
    try:
        await csms.wait_for(
            "StatusNotification", cp_id=CP_ID, where=lambda p: p["connectorId"] == 1
        )
        hardware = running.agent.hardware[1]
        await hardware.isolation_monitor.set_measuring(True)
        hardware.isolation_monitor.set_resistance(10_000)  # below the 100 kOhm alarm
        faulted = await csms.wait_for(
            "StatusNotification", where=lambda p: p["status"] == "Faulted"
        )
        assert faulted["errorCode"] == "GroundFailure"
        hardware.isolation_monitor.set_resistance(5_000_000)
        await csms.wait_for(
            "StatusNotification",
            count=2,
            where=lambda p: p["connectorId"] == 1 and p["status"] == "Available",
        )
        hardware.power_module.over_temperature(True)
        hot = await csms.wait_for(
            "StatusNotification", count=2, where=lambda p: p["status"] == "Faulted"
        )
        assert hot["errorCode"] == "HighTemperature"
    finally:
        await running.stop()
