"""One EVSE through whole sessions: station core + SQLite journal + simulated hardware.

Built as agent/app.py builds it (Station, Evse with SimBoardSupport / SimPowerMeter /
SimConnectorLock over a Plant), with no network: a FakeClock drives both the core's wall
time and the plant's monotonic time, a FakeAuthorizer answers tokens. Waiting is always
for an observable condition (`wait_until`), never on wall time. The rig is in
tests/unit/conftest.py; faults and limits are in test_session_faults.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from agent.core.events import (
    AuthorizationOutcome,
    AuthResult,
    AuthStatus,
    IdToken,
    StatusChanged,
    TxMessageQueued,
)
from agent.core.ports import StopReason
from agent.core.status import SessionPhase
from drivers.types import ContactorEvent, PilotEvent, PilotState, TokenType
from simulator.ev import SimEv
from tests.fakes import settle, wait_until
from tests.unit.conftest import (
    DUTY_32_A,
    METER_START_WH,
    OTHER_TAG,
    TAG,
    LifecycleHold,
    Rig,
    RigFactory,
    S,
)

# --- starting ----------------------------------------------------------------------------


async def test_idle_station_reports_available_with_the_pilot_at_12_v(rig: Rig) -> None:
    assert rig.statuses() == [S.AVAILABLE]
    assert rig.plant.duty_percent is None
    assert not rig.plant.contactor_closed


async def test_plug_in_first_then_token_starts_a_journalled_transaction(rig: Rig) -> None:
    await rig.start_charging(plug_first=True)

    assert rig.phase() == SessionPhase.TRANSACTION
    assert rig.authorizer.asked == [TAG]
    (tx,) = rig.store.open_transactions()
    assert (tx.evse_id, tx.connector_id, tx.id_token) == (1, 1, TAG.value)
    assert tx.meter_start_wh == METER_START_WH
    assert tx.started_at == rig.clock.now()
    assert rig.lock.locked


async def test_authorize_first_then_plug_in_starts_a_journalled_transaction(rig: Rig) -> None:
    rig.station.present_token(1, TAG)
    await rig.wait_status(S.PREPARING)
    assert rig.phase() == SessionPhase.AUTHORIZED
    assert rig.plant.duty_percent is None  # no PWM before a car and a transaction

    rig.plant.plug_in(SimEv())
    await wait_until(lambda: rig.plant.contactor_closed, "contactor closed")

    (tx,) = rig.store.open_transactions()
    assert tx.id_token == TAG.value
    assert tx.meter_start_wh == METER_START_WH
    await rig.wait_status(S.CHARGING)


@pytest.mark.parametrize("plug_first", [True, False], ids=["plug-first", "authorize-first"])
async def test_contactor_closes_only_after_the_ev_answers_pwm_with_state_c(
    rig: Rig, plug_first: bool
) -> None:
    await rig.start_charging(plug_first=plug_first)

    assert rig.closes == [(PilotState.C, DUTY_32_A)]
    first_c = rig.plant_events.index(PilotEvent(PilotState.C))
    first_close = rig.plant_events.index(ContactorEvent(closed=True))
    assert first_c < first_close


@pytest.mark.parametrize("plug_first", [True, False], ids=["plug-first", "authorize-first"])
async def test_statuses_are_emitted_in_session_order(rig: Rig, plug_first: bool) -> None:
    await rig.start_charging(plug_first=plug_first)
    rig.plant.unplug()
    await rig.wait_status(S.AVAILABLE)

    # SuspendedEV shows only if the session settles before the EV answers the PWM.
    assert rig.statuses() in (
        [S.AVAILABLE, S.PREPARING, S.CHARGING, S.AVAILABLE],
        [S.AVAILABLE, S.PREPARING, S.SUSPENDED_EV, S.CHARGING, S.AVAILABLE],
    )
    changes = [e for e in rig.events if isinstance(e, StatusChanged)]
    assert all(e.at == rig.clock.now() and e.fault is None for e in changes)


async def test_rejected_token_does_not_start_and_a_valid_one_still_can(rig: Rig) -> None:
    rig.authorizer.result = AuthResult(AuthStatus.INVALID)
    rig.plant.plug_in(SimEv())
    await rig.wait_status(S.PREPARING)

    rig.station.present_token(1, OTHER_TAG)

    def outcomes() -> list[AuthorizationOutcome]:
        return [e for e in rig.events if isinstance(e, AuthorizationOutcome)]

    await wait_until(lambda: len(outcomes()) == 1, "authorization outcome")
    await settle()

    assert outcomes()[0].result.status == AuthStatus.INVALID
    assert rig.phase() == SessionPhase.PLUGGED
    assert rig.evse.status() == S.PREPARING
    assert rig.store.last_tx_for_evse(1) is None
    assert rig.plant.duty_percent is None and not rig.plant.contactor_closed

    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED)
    rig.station.present_token(1, TAG)
    await wait_until(lambda: rig.plant.contactor_closed, "contactor closed")
    assert rig.tx().id_token == TAG.value


async def test_connection_timeout_returns_an_unused_authorization_to_idle(rig: Rig) -> None:
    timeout_s = rig.station.policy.connection_timeout_s
    rig.station.present_token(1, TAG)
    await rig.wait_status(S.PREPARING)
    expiry = rig.clock.now() + timedelta(seconds=timeout_s)
    await wait_until(lambda: expiry in rig.clock.deadlines(), "ConnectionTimeOut armed")

    rig.clock.advance(timeout_s - 0.1)
    await settle()
    assert rig.phase() == SessionPhase.AUTHORIZED
    assert rig.evse.status() == S.PREPARING

    rig.clock.advance(0.1)
    await rig.wait_status(S.AVAILABLE)
    assert rig.phase() == SessionPhase.IDLE
    assert rig.statuses() == [S.AVAILABLE, S.PREPARING, S.AVAILABLE]

    rig.plant.plug_in(SimEv())  # a car arriving now needs a new token
    await rig.wait_status(S.PREPARING)
    await settle()
    assert rig.phase() == SessionPhase.PLUGGED
    assert rig.store.last_tx_for_evse(1) is None
    assert not rig.plant.contactor_closed


# --- stopping ----------------------------------------------------------------------------


async def test_unplug_opens_the_contactor_and_ends_the_transaction_as_ev_disconnected(
    rig: Rig,
) -> None:
    await rig.start_charging()
    rig.clock.advance(60.0)  # one minute at 3 x 230 V x ~32 A

    async with LifecycleHold(rig.evse):
        rig.plant.unplug()
        # The safety path does not wait for the (held) session machine.
        await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")
        assert rig.phase() == SessionPhase.TRANSACTION
    await rig.wait_status(S.AVAILABLE)

    tx = rig.tx()
    assert tx.stop_reason == StopReason.EV_DISCONNECTED
    assert tx.meter_stop_wh is not None
    assert tx.meter_stop_wh >= tx.meter_start_wh
    delivered_wh = 3 * 230.0 * DUTY_32_A * 0.6 * 60.0 / 3600.0
    assert tx.meter_stop_wh - tx.meter_start_wh == pytest.approx(delivered_wh, abs=1.0)
    assert rig.store.open_transactions() == []
    assert rig.phase() == SessionPhase.IDLE
    assert not rig.lock.locked


async def test_same_token_again_stops_locally_and_status_is_finishing_until_unplug(
    rig: Rig,
) -> None:
    await rig.start_charging()

    rig.station.present_token(1, TAG)
    await rig.wait_status(S.FINISHING)
    await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")

    tx = rig.tx()
    assert tx.stop_reason == StopReason.LOCAL
    assert tx.stop_id_token == TAG.value
    assert rig.plant.duty_percent is None
    await settle()
    assert rig.evse.status() == S.FINISHING  # the EV going to B does not end Finishing

    rig.plant.unplug()
    await rig.wait_status(S.AVAILABLE)
    assert rig.statuses()[-3:] == [S.CHARGING, S.FINISHING, S.AVAILABLE]
    assert len(rig.store.open_transactions()) == 0


async def test_another_token_does_not_stop_the_transaction(rig: Rig) -> None:
    await rig.start_charging()
    rig.station.present_token(1, OTHER_TAG)
    await wait_until(
        lambda: any(isinstance(e, AuthorizationOutcome) for e in rig.events), "outcome"
    )
    await settle()
    (outcome,) = [e for e in rig.events if isinstance(e, AuthorizationOutcome)][-1:]
    assert (outcome.token, outcome.result.status) == (OTHER_TAG, AuthStatus.CONCURRENT_TX)
    assert rig.phase() == SessionPhase.TRANSACTION
    assert rig.plant.contactor_closed


# --- availability and recovery -----------------------------------------------------------


async def test_inoperative_during_a_transaction_is_scheduled_and_persisted(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    await rig.start_charging()

    assert rig.station.set_operative(1, False) is False  # Scheduled
    assert rig.store.get_setting("core.availability.1") == "Inoperative"
    await settle()
    assert rig.evse.status() == S.CHARGING
    assert rig.plant.contactor_closed

    rig.plant.unplug()
    await rig.wait_status(S.UNAVAILABLE)
    assert rig.phase() == SessionPhase.IDLE
    assert rig.statuses()[-2:] == [S.CHARGING, S.UNAVAILABLE]
    assert rig.tx().stop_reason == StopReason.EV_DISCONNECTED

    # A new station over the same store (a reboot) comes up Unavailable.
    rebooted = await make_rig(store=rig.store, start=False)
    assert rebooted.evse.operative is False


async def test_inoperative_connector_does_not_start_and_operative_again_does(rig: Rig) -> None:
    assert rig.station.set_operative(1, False) is True
    await rig.wait_status(S.UNAVAILABLE)
    rig.plant.plug_in(SimEv())
    rig.station.present_token(1, TAG)
    await settle()
    assert rig.store.last_tx_for_evse(1) is None
    assert rig.evse.status() == S.UNAVAILABLE

    assert rig.station.set_operative(1, True) is True
    assert rig.store.get_setting("core.availability.1") == "Operative"
    await rig.wait_status(S.PREPARING)


async def test_recovery_closes_an_interrupted_transaction_as_power_loss(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(start=False)
    began = rig.clock.now() - timedelta(hours=1)
    last_read = began + timedelta(minutes=40)
    open_tx = rig.store.begin_transaction(
        evse_id=1,
        connector_id=1,
        id_token="CUT",
        token_type=TokenType.ISO14443,
        started_at=began,
        meter_start_wh=1000.0,
    )
    rig.store.record_meter(
        open_tx.local_id, at=last_read, energy_wh=1500.0, payload={}, enqueue=False
    )

    await rig.station.start()

    closed = rig.store.get_transaction(open_tx.local_id)
    assert closed.stop_reason == StopReason.POWER_LOSS
    assert closed.meter_stop_wh == 1500.0
    assert closed.stopped_at == last_read
    assert rig.store.open_transactions() == []
    assert TxMessageQueued(1, open_tx.local_id) in rig.events
    assert rig.phase() == SessionPhase.IDLE
    assert rig.evse.status() == S.AVAILABLE


async def test_shutdown_during_a_transition_completes_and_leaves_the_hardware_safe(
    rig: Rig,
) -> None:
    rig.plant.plug_in(SimEv())
    await rig.wait_status(S.PREPARING)
    rig.meter.answer = asyncio.Event()  # the transaction start waits for the meter
    # ...when it has no reading taken since the contactor last opened (otherwise that
    # reading is the register and the start does not wait): forget it.
    rig.evse.metering.forget_exactness()
    reads = rig.meter.reads
    rig.station.present_token(1, TAG)
    await wait_until(lambda: rig.meter.reads > reads, "transaction start reading the meter")

    async with asyncio.timeout(5):  # a guard against a hang, not a wait for the world
        await rig.station.shutdown()

    assert not rig.plant.contactor_closed
    assert rig.plant.duty_percent is None
    assert rig.store.open_transactions() == []


async def test_another_card_of_the_same_group_stops_the_transaction(rig: Rig) -> None:
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="FAMILY")
    await rig.start_charging()
    partner = IdToken("PARTNER-CARD", TokenType.ISO14443)
    rig.station.present_token(1, partner)
    await rig.wait_status(S.FINISHING)
    tx = rig.store.get_transaction(1)
    assert tx.stop_reason == StopReason.LOCAL and tx.stop_id_token == "PARTNER-CARD"


async def test_a_master_pass_card_stops_any_transaction_but_starts_none(rig: Rig) -> None:
    """OCPP 2.0.1 C16: a token of MasterPassGroupId stops the running transaction (reason
    master pass) and, tapped at an idle EVSE, does not start one."""
    rig.station.policy.master_pass_group = "STAFF"
    await rig.start_charging()
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="STAFF")
    rig.station.present_token(1, IdToken("SUPERVISOR", TokenType.ISO14443))
    await rig.wait_status(S.FINISHING)
    tx = rig.store.get_transaction(1)
    assert tx.stop_reason == StopReason.MASTER_PASS and tx.stop_id_token == "SUPERVISOR"

    rig.plant.unplug()
    await rig.wait_status(S.AVAILABLE)
    rig.plant.plug_in(SimEv())
    await rig.wait_status(S.PREPARING)
    rig.station.present_token(1, IdToken("SUPERVISOR", TokenType.ISO14443))
    await wait_until(lambda: not rig.evse.authorizing, "the card was checked")
    await settle()
    assert rig.evse.tx is None and rig.phase() == SessionPhase.PLUGGED
    refused = [e for e in rig.events if isinstance(e, AuthorizationOutcome)][-1]
    assert not refused.result.accepted


async def test_a_card_of_another_group_does_not_stop_the_transaction(rig: Rig) -> None:
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="FAMILY")
    await rig.start_charging()
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="NEIGHBOURS")
    rig.station.present_token(1, IdToken("OTHER", TokenType.ISO14443))
    await wait_until(lambda: not rig.evse.authorizing, "the card was checked")
    await settle()
    assert rig.evse.tx is not None and rig.plant.contactor_closed


async def test_the_start_uses_a_reading_taken_with_the_contactor_open(rig: Rig) -> None:
    """With the contactor open since the last reading no energy can have flowed, so the
    transaction starts on that reading without waiting for the meter (tap latency)."""
    rig.plant.plug_in(SimEv())
    await rig.wait_status(S.PREPARING)
    rig.meter.answer = asyncio.Event()  # a meter that would make the start wait
    reads = rig.meter.reads
    rig.station.present_token(1, TAG)
    await rig.wait_status(S.CHARGING)
    assert rig.meter.reads == reads
    assert rig.tx().meter_start_wh == METER_START_WH
    rig.meter.answer.set()
