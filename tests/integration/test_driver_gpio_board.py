"""The GPIO board end to end: agent + `driver: gpio` (memory backend) + the test CSMS.

The board and lock are built by the agent from YAML through the registry, exactly as on a
Raspberry Pi, except `backend: memory` and a PWM sysfs tree under tmp_path. The far end
(tests/contract/harness_gpio_board.py) is the cable, the EV, the contactor with its
mirror contact and the RCD module; faults are injected there and the assertions are on
what the CSMS received and what the relay line did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.app import Agent
from agent.config import load_config
from agent.core.status import ConnectorStatus
from drivers import registry
from drivers.registry import DriverContext
from drivers.types import MeterSample
from simulator.csms import Csms
from tests.contract.harness_gpio_board import (
    GpioFarEnd,
    PwmPeer,
    board_options,
    far_end_of,
    lock_options,
    make_pwm_tree,
)
from tests.integration.conftest import CP_ID, RunningStation, until

TEST_METER = ("meter", "gpio_test_static")


class StaticPowerMeter:
    """A meter that always answers (this test is about the board, not metering)."""

    def __init__(self) -> None:
        self.energy_import_wh = 1000.0

    async def read(self) -> MeterSample:
        self.energy_import_wh += 1.0
        return MeterSample(
            energy_import_wh=self.energy_import_wh,
            power_w=7200.0,
            current_a=(32.0, 0.0, 0.0),
            voltage_v=(230.0, 0.0, 0.0),
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> StaticPowerMeter:
        return cls()


class GpioStation(RunningStation):
    """A RunningStation whose far end is attached before the agent starts its board."""

    def __init__(self, config: Any, pwm: PwmPeer) -> None:
        super().__init__(config)
        self.pwm = pwm
        self.far_ends: list[GpioFarEnd] = []

    @property
    def far(self) -> GpioFarEnd:
        return self.far_ends[-1]

    def _on_agent(self, agent: Agent) -> None:
        self.far_ends.append(far_end_of(agent.hardware[1].board, self.pwm))
        super()._on_agent(agent)


def _write_config(path: Path, csms_url: str, pwm_root: Path) -> None:
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "gpio-test"},
        "csms": {
            "url": csms_url,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        },
        "evses": [
            {
                "connectors": [{"type": "sType2", "max_current_a": 32, "phases": 1}],
                "board": {"driver": "gpio", **board_options(pwm_root)},
                "meter": {"driver": TEST_METER[1]},
                "lock": {"driver": "gpio", **lock_options()},
                "reader": {"driver": "sim"},
            }
        ],
        "store": {"path": str(path.parent / "agent.db")},
        "settings": {"MeterValueSampleInterval": 0, "HeartbeatInterval": 300},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
async def gpio_station(
    csms: Csms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GpioStation]:
    """An agent with one GPIO-board EVSE, booted and Available at the CSMS."""
    monkeypatch.setitem(
        registry.BUILTIN,
        TEST_METER,
        (f"{__name__}:StaticPowerMeter.from_options", None),
    )
    pwm_root = tmp_path / "sys-class-pwm"
    pwm = PwmPeer(make_pwm_tree(pwm_root))
    config_path = tmp_path / "agent.yaml"
    _write_config(config_path, csms.url, pwm_root)
    running = GpioStation(load_config(config_path), pwm)
    await running.start()
    try:
        await csms.wait_for(
            "StatusNotification",
            where=lambda p: p["connectorId"] == 1 and p["status"] == "Available",
        )
        yield running
    finally:
        await running.stop()
        pwm.close()


def _status(status: str, error_code: str | None = None) -> Any:
    def match(payload: dict[str, Any]) -> bool:
        return (
            payload["connectorId"] == 1
            and payload["status"] == status
            and (error_code is None or payload["errorCode"] == error_code)
        )

    return match


def _statuses(csms: Csms, only: str | None = None) -> list[str]:
    """Connector 1's statuses as the CSMS received them, in order."""
    return [
        p["status"]
        for p in csms.calls("StatusNotification")
        if p["connectorId"] == 1 and only in (None, p["status"])
    ]


async def _charging(csms: Csms, station: GpioStation) -> GpioFarEnd:
    far = station.far
    far.connect_ev()
    station.tap("CARD")
    await csms.wait_for("StatusNotification", where=_status("Charging"))
    await until(station.agent, lambda: far.contactor_closed)
    assert far.pwm_state()[0] == "pwm"
    assert far.locked  # the socket's lock holds the plug during the transaction
    return far


async def test_rcd_trip_is_ground_failure_opens_the_relay_and_clears_when_reset(
    csms: Csms, gpio_station: GpioStation
) -> None:
    far = await _charging(csms, gpio_station)
    far.trip_rcd()
    await csms.wait_for("StatusNotification", where=_status("Faulted", "GroundFailure"))
    assert not far.relay_level()
    assert not far.contactor_closed
    # The RCD's own latch is reset by hand at the device; its output clears, so does the fault.
    far.trip_rcd(False)
    await csms.wait_for("StatusNotification", count=2, where=_status("Charging"))
    await until(gpio_station.agent, lambda: far.contactor_closed)
    assert len(csms.calls("StartTransaction")) == 1  # the same transaction resumed
    assert not csms.calls("StopTransaction")


async def test_welded_contactor_is_power_switch_failure_and_clears_when_it_opens(
    csms: Csms, gpio_station: GpioStation
) -> None:
    far = await _charging(csms, gpio_station)
    far.weld()
    far.ev_wants_power = False  # the EV pauses: the agent opens the relay, the contacts stay
    await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerSwitchFailure"))
    assert not far.relay_level()  # the driver did command it open
    assert far.contactor_closed  # ...and the mirror contact says it is still closed
    suspended = len(_statuses(csms, "SuspendedEV"))
    far.weld(False)
    await csms.wait_for("StatusNotification", where=_status("SuspendedEV"), count=suspended + 1)
    assert _statuses(csms)[-2:] == ["Faulted", "SuspendedEV"]


async def test_contactor_that_never_closes_stays_faulted_until_a_restart(
    csms: Csms, gpio_station: GpioStation
) -> None:
    far = gpio_station.far
    far.jam_open()
    far.connect_ev()
    gpio_station.tap("CARD")
    await csms.wait_for("StatusNotification", where=_status("Faulted", "PowerSwitchFailure"))
    assert not far.relay_level()
    assert far.contactor_closings == 0
    # Latched: freeing the contactor is not seen without closing it again, which the
    # agent does not do while faulted; not even once the EV has gone.
    far.jam_open(False)
    far.unplug()
    evse = gpio_station.agent.station.evses[1]
    await until(gpio_station.agent, lambda: evse.tx is None)
    assert evse.status() == ConnectorStatus.FAULTED
    assert (await csms.wait_for("StopTransaction"))["reason"] == "EVDisconnected"
    # Restarting the agent (a reboot) restarts the board: a confirmed close, Charging.
    await gpio_station.restart()
    await csms.wait_for("BootNotification", count=2)
    far = gpio_station.far
    far.connect_ev()
    gpio_station.tap("CARD")
    await csms.wait_for("StatusNotification", count=2, where=_status("Charging"))
    await until(gpio_station.agent, lambda: far.contactor_closed)


async def test_pilot_short_is_faulted_with_the_relay_open_and_charging_resumes(
    csms: Csms, gpio_station: GpioStation
) -> None:
    far = await _charging(csms, gpio_station)
    far.short = True  # pilot to PE: state E
    faulted = await csms.wait_for("StatusNotification", where=_status("Faulted"))
    assert faulted["errorCode"] == "OtherError"
    assert not far.relay_level()
    far.short = False
    await csms.wait_for("StatusNotification", count=2, where=_status("Charging"))
    await until(gpio_station.agent, lambda: far.contactor_closed)


async def test_unplug_ends_the_transaction_and_unlocks(
    csms: Csms, gpio_station: GpioStation
) -> None:
    far = await _charging(csms, gpio_station)
    far.unplug()
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"
    await csms.wait_for("StatusNotification", count=2, where=_status("Available"))
    assert not far.contactor_closed
    assert not far.locked
    assert far.pwm_state()[0] == "off"
