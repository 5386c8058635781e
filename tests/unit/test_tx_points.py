"""Transaction start and stop points (OCPP 2.0.1 E01/E06) in the core, with no OCPP.

The pure rules of agent.core.txpoints, table-tested; then the real EVSE (the rig of
tests/unit/conftest.py: Station, Evse, SQLite journal, simulated plant) run with each
start point, asserting what the journal recorded and what the contactor did.
"""

from __future__ import annotations

import pytest

from agent.core.ports import StopReason, TxEventKind, TxPoint, TxTrigger
from agent.core.status import SessionPhase
from agent.core.txpoints import holding, start_trigger, starts, stop_reason
from drivers.types import TokenType
from simulator.ev import SimEv
from tests.fakes import wait_until
from tests.unit.conftest import TAG, Rig, S

EV, AUTH, PATH, ENERGY = (
    TxPoint.EV_CONNECTED,
    TxPoint.AUTHORIZED,
    TxPoint.POWER_PATH_CLOSED,
    TxPoint.ENERGY_TRANSFER,
)

# -- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "connected", "flowing", "expected"),
    [
        (SessionPhase.IDLE, False, False, set()),
        (SessionPhase.PLUGGED, True, False, {EV}),
        (SessionPhase.AUTHORIZED, False, False, {AUTH}),
        (SessionPhase.TRANSACTION, True, False, {EV, AUTH, PATH}),
        (SessionPhase.TRANSACTION, True, True, {EV, AUTH, PATH, ENERGY}),
        (SessionPhase.TRANSACTION, False, False, {AUTH}),  # unplugged, not deauthorized
        (SessionPhase.FINISHING, True, False, {EV}),
    ],
)
def test_conditions_held_in_each_phase(
    phase: SessionPhase, connected: bool, flowing: bool, expected: set[TxPoint]
) -> None:
    assert holding(phase, ev_connected=connected, energy_flowing=flowing) == expected


def test_no_start_in_finishing_even_though_the_car_is_still_connected() -> None:
    assert starts({EV}, SessionPhase.PLUGGED, frozenset({EV}))
    assert not starts({EV}, SessionPhase.FINISHING, frozenset({EV}))


def test_stop_points_are_edges_a_point_never_held_does_not_end_it() -> None:
    """EVConnected start with an Authorized stop: no token yet is no reason to stop."""
    now = frozenset({EV})
    assert stop_reason({AUTH}, SessionPhase.PLUGGED, held=now, now=now) is None
    held = frozenset({EV, AUTH, PATH})
    assert stop_reason({AUTH}, SessionPhase.FINISHING, held, now) == StopReason.DE_AUTHORIZED
    assert (
        stop_reason({ENERGY}, SessionPhase.TRANSACTION, held | {ENERGY}, held)
        == StopReason.STOPPED_BY_EV
    )


def test_back_to_idle_ends_a_transaction_whatever_the_points() -> None:
    assert stop_reason(set(), SessionPhase.IDLE, frozenset({EV}), frozenset()) == (
        StopReason.EV_DISCONNECTED
    )
    assert stop_reason(set(), SessionPhase.IDLE, frozenset({AUTH}), frozenset()) == (
        StopReason.TIMEOUT
    )


def test_the_start_trigger_names_the_point_that_started_it() -> None:
    assert start_trigger({ENERGY}, frozenset({EV, ENERGY}), TxTrigger.AUTHORIZED) == (
        TxTrigger.CHARGING_STATE_CHANGED
    )
    assert start_trigger({EV}, frozenset({EV}), TxTrigger.AUTHORIZED) == (
        TxTrigger.CABLE_PLUGGED_IN
    )
    assert start_trigger({PATH}, frozenset({EV, AUTH, PATH}), TxTrigger.REMOTE_START) == (
        TxTrigger.REMOTE_START
    )


# -- the EVSE ---------------------------------------------------------------------------------


async def test_ev_connected_start_journals_a_token_less_transaction_that_learns_it(
    rig: Rig,
) -> None:
    rig.station.policy.tx_start_points = frozenset({EV})
    rig.plant.plug_in(SimEv())
    await wait_until(lambda: rig.evse.tx is not None, "transaction on plug-in")
    assert (rig.tx().id_token, rig.tx().token_type) == ("", TokenType.NO_AUTHORIZATION)
    assert not rig.plant.contactor_closed  # nobody authorized: no power

    rig.station.present_token(1, TAG)
    await rig.wait_status(S.CHARGING)
    assert rig.tx().id_token == TAG.value
    entries = rig.store.tx_entries(rig.tx().local_id)
    learned = [e for e in entries if e.payload.get("id_token") == TAG.value]
    assert learned[0].kind == TxEventKind.UPDATED
    assert learned[0].payload["trigger"] == TxTrigger.AUTHORIZED


async def test_authorized_start_without_a_car_ends_on_the_connection_timeout(rig: Rig) -> None:
    rig.station.policy.tx_start_points = frozenset({AUTH})
    rig.station.policy.connection_timeout_s = 5
    rig.station.present_token(1, TAG)
    await wait_until(lambda: rig.evse.tx is not None, "transaction on the tap")
    local_id = rig.evse.tx.local_id  # type: ignore[union-attr]
    rig.clock.advance(5)
    await wait_until(lambda: rig.evse.tx is None, "transaction ended")
    assert rig.store.get_transaction(local_id).stop_reason == StopReason.TIMEOUT
    assert rig.phase() == SessionPhase.IDLE


async def test_energy_transfer_start_closes_the_contactor_first(rig: Rig) -> None:
    rig.station.policy.tx_start_points = frozenset({ENERGY})
    await rig.start_charging()
    await wait_until(lambda: rig.evse.tx is not None, "transaction once energy flows")
    started = rig.store.tx_entries(rig.tx().local_id)[0]
    assert started.payload["trigger"] == TxTrigger.CHARGING_STATE_CHANGED


async def test_energy_transfer_stop_ends_it_when_the_ev_stops_drawing(rig: Rig) -> None:
    rig.station.policy.tx_stop_points = frozenset({ENERGY})
    await rig.start_charging()
    local_id = rig.tx().local_id
    rig.plant.ev.pause()  # type: ignore[union-attr]
    await wait_until(lambda: rig.evse.tx is None, "transaction ended")
    assert rig.store.get_transaction(local_id).stop_reason == StopReason.STOPPED_BY_EV


async def test_a_refused_token_suspends_energy_but_keeps_the_transaction(rig: Rig) -> None:
    """StopTxOnInvalidId false, MaxEnergyOnInvalidId 0: SuspendedEVSE, contactor open."""
    await rig.start_charging()
    local_id = rig.tx().local_id
    assert rig.station.suspend_refused(local_id, 0.0)
    await rig.wait_status(S.SUSPENDED_EVSE)
    await wait_until(lambda: not rig.plant.contactor_closed, "contactor open")
    assert rig.evse.tx is not None and rig.evse.tx.local_id == local_id


async def test_a_refused_token_may_draw_its_energy_allowance_first(rig: Rig) -> None:
    """MaxEnergyOnInvalidId: charging goes on until that much energy since the start."""
    await rig.start_charging()
    tx = rig.tx()
    rig.station.suspend_refused(tx.local_id, 1_000_000.0)
    await rig.evse.read_meter()
    assert rig.evse.desired_outputs().contactor_closed
    rig.station.suspend_refused(tx.local_id, 0.5)
    rig.clock.advance(60.0)  # the plant integrates a minute of charging
    await rig.evse.read_meter()
    assert not rig.evse.desired_outputs().offering
