"""Charging sessions held to one standard over OCPP 1.6J and 2.0.1.

Each test runs on both versions (a station and a CSMS of that version) and judges a
version-neutral ledger built from what the CSMS answered: 1.6 StartTransaction,
MeterValues and StopTransaction, 2.0.1 TransactionEvent Started, Updated and Ended,
folded into one `Session` per transaction (token, meter start and stop, registers, stop
reason, message times). What a user checks is the same whatever the wire: one start with
the token, one stop with the reason, energy never decreasing, nothing twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.types import FaultCode
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID, RunningStation, until
from tests.integration.v201_station import make_config_201
from tests.reliability.ledger import Session, assert_one_session, sessions_of

CP = CP_ID
SUBPROTOCOLS = {"1.6": ("ocpp1.6",), "2.0.1": ("ocpp2.0.1",)}

#: Install settings by version: meter samples every second, and (offline=True) a
#: transaction may start offline for an unknown token.
SAMPLES = {
    "1.6": {"MeterValueSampleInterval": 1},
    "2.0.1": {"SampledDataCtrlr/TxUpdatedInterval": 1},
}
OFFLINE = {
    "1.6": {"AllowOfflineTxForUnknownId": True, "LocalAuthorizeOffline": True},
    "2.0.1": {
        "AuthCtrlr/OfflineTxForUnknownIdEnabled": True,
        "AuthCtrlr/LocalAuthorizeOffline": True,
    },
}


# -- the version-neutral ledger lives in tests/reliability/ledger.py -------------------------


@dataclass
class Side:
    """A station and a CSMS of one version, and the version's words for the same acts."""

    version: str
    csms: Csms
    running: RunningStation

    def sessions(self, csms: Csms | None = None) -> list[Session]:
        """The transactions the CSMS (default: this side's) answered, in start order."""
        return sessions_of(self.version, csms or self.csms)

    def statuses(self, csms: Csms | None = None) -> list[str]:
        """The statuses of connector 1 the CSMS received, in order."""
        key = "status" if self.version == "1.6" else "connectorStatus"
        return [
            p[key] for p in (csms or self.csms).calls("StatusNotification") if p["connectorId"] == 1
        ]

    def unanswered(self, csms: Csms | None = None) -> int:
        """How many transaction messages the CSMS received but did not answer."""
        actions = {"StartTransaction", "MeterValues", "StopTransaction", "TransactionEvent"}
        return sum(r.action in actions and not r.answered for r in (csms or self.csms).received)

    async def remote_start(self, token: str) -> str:
        """Ask for a transaction on EVSE 1 for `token`; the station's answer status."""
        if self.version == "1.6":
            payload: dict[str, Any] = {"connectorId": 1, "idTag": token}
            answer = await self.csms.call(CP, "RemoteStartTransaction", payload)
        else:
            payload = {"idToken": {"idToken": token, "type": "Central"}, "remoteStartId": 1}
            answer = await self.csms.call(CP, "RequestStartTransaction", {**payload, "evseId": 1})
        status: str = answer["status"]
        return status

    async def remote_stop(self, key: str) -> str:
        """Ask the station to stop transaction `key`; its answer status."""
        if self.version == "1.6":
            answer = await self.csms.call(CP, "RemoteStopTransaction", {"transactionId": int(key)})
        else:
            answer = await self.csms.call(CP, "RequestStopTransaction", {"transactionId": key})
        status: str = answer["status"]
        return status

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
        """Await a condition on what the CSMS received (re-checked on every frame)."""
        await until(self.running.agent, predicate, timeout_s)


# -- fixtures ---------------------------------------------------------------------------------

StartSide = Callable[..., Awaitable[Side]]


@pytest.fixture(params=["1.6", "2.0.1"])
async def side(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StartSide]:
    """Start a CSMS and a station of one version (both versions in turn); `offline=True`
    lets it start transactions offline for unknown tokens. Everything is stopped after."""
    version: str = request.param
    started: list[RunningStation] = []
    async with Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS[version]) as csms:

        async def factory(*, offline: bool = False) -> Side:
            settings = {**SAMPLES[version], **(OFFLINE[version] if offline else {})}
            config = make_config_201(csms.url, tmp_path, settings=settings, ocpp_version=version)
            running = RunningStation(config)
            await running.start()
            started.append(running)
            await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
            assert csms.version(CP) == version
            return Side(version, csms, running)

        try:
            yield factory
        finally:
            for running in started:
                await running.stop()


# -- the sessions -----------------------------------------------------------------------------


async def test_plug_tap_charge_unplug_is_one_session_stopped_by_the_ev_disconnecting(
    side: StartSide,
) -> None:
    """1.6 sections 4.8/4.10 / 2.0.1 E01-E02: one start with the token, samples while charging,
    one stop with reason EVDisconnected, and meter stop above meter start."""
    s = await side()
    s.running.plug()
    s.running.tap("CARD-A")
    await s.until(lambda: any(len(x.registers) >= 2 for x in s.sessions()))
    assert s.running.agent.hardware[1].plant.contactor_closed
    s.running.unplug()
    await s.until(lambda: any("stop" in x.kinds for x in s.sessions()))

    session = assert_one_session(s.sessions())
    assert session.token == "CARD-A"
    assert session.stop_reason == "EVDisconnected"
    assert session.meter_stop_wh is not None and session.meter_start_wh is not None
    assert session.meter_stop_wh > session.meter_start_wh  # it charged
    assert not s.running.agent.hardware[1].plant.contactor_closed
    assert s.unanswered() == 0


async def test_the_same_card_tapped_again_stops_the_session_locally(side: StartSide) -> None:
    """1.6 section 4.10 / 2.0.1 E07: the driver's second tap ends it: reason Local, the
    card named at the stop, the contactor open while the car is still plugged in."""
    s = await side()
    s.running.tap("CARD-B")
    s.running.plug()
    await s.until(lambda: bool(s.sessions()))
    await s.until(lambda: s.running.agent.hardware[1].plant.contactor_closed)
    s.running.tap("CARD-B")
    await s.until(lambda: any("stop" in x.kinds for x in s.sessions()))

    session = assert_one_session(s.sessions())
    assert session.token == "CARD-B"
    assert session.stop_reason == "Local"
    assert session.stop_token == "CARD-B"
    assert not s.running.agent.hardware[1].plant.contactor_closed
    assert s.running.agent.hardware[1].plant.ev is not None  # still plugged in


async def test_remote_start_then_plug_in_then_remote_stop(side: StartSide) -> None:
    """1.6 sections 5.11/5.12 / 2.0.1 F02/F03: one transaction with the remote token,
    stopped with reason Remote by the CSMS naming it."""
    s = await side()
    assert await s.remote_start("APP-USER") == "Accepted"
    s.running.plug()
    await s.until(lambda: bool(s.sessions()))
    await s.until(lambda: s.running.agent.hardware[1].plant.contactor_closed)
    (running,) = s.sessions()
    assert await s.remote_stop(running.key) == "Accepted"
    await s.until(lambda: any("stop" in x.kinds for x in s.sessions()))

    session = assert_one_session(s.sessions())
    assert session.token == "APP-USER"
    assert session.stop_reason == "Remote"
    assert await s.remote_stop(running.key) == "Rejected"  # it is over
    assert not s.running.agent.hardware[1].plant.contactor_closed


async def test_offline_session_is_delivered_once_in_order_on_reconnect(side: StartSide) -> None:
    """1.6 queued transaction messages / 2.0.1 E04/E12: a whole session while the CSMS
    is down reaches it once it is back: in order, each message once, nothing left queued."""
    s = await side(offline=True)
    agent = s.running.agent
    port = s.csms.port
    await s.csms.stop()
    await until(agent, lambda: not agent.adapter.online)
    s.running.plug()
    s.running.tap("OFFLINE-CARD")
    await until(agent, lambda: agent.station.evses[1].tx is not None)
    local_id = agent.station.evses[1].tx.local_id  # type: ignore[union-attr]
    await until(agent, lambda: len(agent.store.tx_entries(local_id)) >= 5)
    s.running.unplug()
    await until(agent, lambda: agent.station.evses[1].tx is None)

    async with Csms(CsmsBehaviour(), port=port, subprotocols=SUBPROTOCOLS[s.version]) as back:
        await s.until(lambda: any("stop" in x.kinds for x in s.sessions(back)))
        await until(agent, lambda: agent.store.pending_count() == 0)
        session = assert_one_session(s.sessions(back))
        assert s.unanswered(back) == 0
    assert session.token == "OFFLINE-CARD"
    assert session.stop_reason == "EVDisconnected"
    assert len(session.registers) >= 2  # the samples taken offline, not only start and stop
    if s.version == "2.0.1":
        assert all(session.offline)  # E04: each event says it happened offline


async def test_fault_mid_session_opens_the_contactor_and_reports_faulted(
    side: StartSide,
) -> None:
    """1.6 section 4.9 / 2.0.1 G01 with IEC 61851-1: a residual current trip mid-session
    opens the contactor and the connector is reported Faulted; once cleared the
    session charges on, and it ends as one whole transaction."""
    s = await side()
    s.running.plug()
    s.running.tap("CARD-F")
    plant = s.running.agent.hardware[1].plant
    await s.until(lambda: bool(s.sessions()) and plant.contactor_closed)
    plant.raise_fault(FaultCode.RCD_TRIP, "30 mA residual current")
    await s.until(lambda: "Faulted" in s.statuses())
    assert not plant.contactor_closed
    assert s.running.agent.station.evses[1].tx is not None  # the transaction goes on
    plant.clear_fault(FaultCode.RCD_TRIP)
    await s.until(lambda: plant.contactor_closed)
    await s.until(lambda: s.statuses()[-1] != "Faulted")
    s.running.unplug()
    await s.until(lambda: any("stop" in x.kinds for x in s.sessions()))

    session = assert_one_session(s.sessions())
    assert session.token == "CARD-F"
    assert session.stop_reason == "EVDisconnected"
