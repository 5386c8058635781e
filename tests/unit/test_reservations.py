"""Reservations in the core: the pure rules of agent/core/reservations.py, and the
station applying them to simulated EVSEs (agent/core/station.py).

The station rig is built as agent/app.py builds one (Station, Evse over a simulated
Plant), with several EVSEs whose connector types the test picks, a FakeClock and a
FakeAuthorizer. Names carry the OCPP 2.0.1 requirement they pin where one maps (the
rules are version-neutral; 1.6 uses the same ones for connector 0).
"""

# Test names carry the OCPP 2.0.1 requirement ids as the spec writes them (H01_FR_07).
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.events import (
    AuthResult,
    AuthStatus,
    IdToken,
    ReservationEnd,
    ReservationEnded,
    StationEvent,
    StatusChanged,
)
from agent.core.evse import ConnectorSpec, Evse
from agent.core.ports import TxEventKind, TxPoint
from agent.core.reservations import (
    SETTING,
    Reservation,
    ReservationBook,
    ReserveResult,
    can_hold,
    claim,
    needed,
    unmatched,
)
from agent.core.station import Station
from agent.core.status import ConnectorStatus
from agent.store import Store
from drivers.types import BoardCapabilities, FaultCode
from simulator.drivers import SimBoardSupport, SimConnectorLock, SimPowerMeter
from simulator.ev import SimEv
from simulator.plant import Plant
from tests.fakes import FakeAuthorizer, FakeClock, settle, wait_until

S = ConnectorStatus
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
DRIVER = IdToken("DRIVER")
STRANGER = IdToken("STRANGER")


def booking(
    reservation_id: int,
    evse_id: int | None = None,
    *,
    connector_type: str | None = None,
    token: str = DRIVER.value,
    group: str | None = None,
    expires_at: datetime = LATER,
) -> Reservation:
    """A reservation for DRIVER (by default) an hour after T0."""
    return Reservation(
        id=reservation_id,
        id_token=token,
        expires_at=expires_at,
        evse_id=evse_id,
        group_id=group,
        connector_type=connector_type,
    )


# -- the pure rules ---------------------------------------------------------------------------


def test_unbound_reservations_are_matched_beyond_a_greedy_first_choice() -> None:
    """Any-EVSE and CCS2-only reservations over a CCS2 and a Type 2 EVSE: both are held
    (the untyped one must yield the CCS2 EVSE), a second CCS2 one is not."""
    anyone = booking(1, expires_at=T0 + timedelta(minutes=5))  # served first
    ccs = booking(2, connector_type="cCCS2")
    free = {1: {"cCCS2"}, 2: {"cType2"}}
    assert can_hold([anyone, ccs], free)
    assert unmatched([anyone, ccs, booking(3, connector_type="cCCS2")], free) == [
        booking(3, connector_type="cCCS2")
    ]


def test_H01_FR_07_evses_the_unbound_reservations_cannot_spare_are_needed() -> None:
    free = {1: {"cType2"}, 2: {"cType2"}, 3: {"cCCS2"}}
    assert needed([booking(1)], free) == set()
    assert needed([booking(1), booking(2), booking(3)], free) == {1, 2, 3}
    assert needed([booking(1, connector_type="cCCS2")], free) == {3}


def test_claim_lets_the_holder_use_its_reservation_and_others_only_a_spare_evse() -> None:
    mine = booking(1, group="FLEET")
    free = {1: {"cType2"}, 2: {"cType2"}}
    assert claim([mine], free, 1, {"cType2"}, DRIVER, None) == (True, mine)
    fleet = AuthResult(AuthStatus.ACCEPTED, group_id="FLEET")
    assert claim([mine], free, 1, {"cType2"}, IdToken("COLLEAGUE"), fleet) == (True, mine)
    assert claim([mine], free, 1, {"cType2"}, STRANGER, None) == (True, None)  # 2 stays free
    assert claim([mine], {1: {"cType2"}}, 1, {"cType2"}, STRANGER, None) == (False, None)


def test_reservations_keep_their_connector_type_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    try:
        ReservationBook(store).add(booking(4, connector_type="cType1", group="FLEET"))
        assert ReservationBook(store).get(4) == booking(4, connector_type="cType1", group="FLEET")
        # A book written before connector types existed still loads.
        old = [{"id": 5, "id_token": "X", "expires_at": LATER.isoformat(), "evse_id": 1}]
        store.set_setting(SETTING, json.dumps(old))
        assert ReservationBook(store).get(5) == booking(5, 1, token="X")
    finally:
        store.close()


# -- the station ------------------------------------------------------------------------------


@dataclass
class Rig:
    """A started station with simulated EVSEs 1..N and what the test looks at."""

    clock: FakeClock
    store: Store
    station: Station
    plants: dict[int, Plant]
    authorizer: FakeAuthorizer
    events: list[StationEvent] = field(default_factory=list)

    def status(self, evse_id: int) -> ConnectorStatus:
        return self.station.evses[evse_id].status()

    def ended(self) -> list[tuple[int, ReservationEnd]]:
        """(reservation id, reason) of every ReservationEnded, in order."""
        return [
            (e.reservation_id, e.reason) for e in self.events if isinstance(e, ReservationEnded)
        ]

    async def wait_status(self, evse_id: int, status: ConnectorStatus) -> None:
        await wait_until(lambda: self.status(evse_id) == status, f"EVSE {evse_id} {status}")


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    """Build started rigs (`types`: one connector type per EVSE); shut them down after."""
    built: list[Rig] = []

    async def build(types: tuple[str, ...] = ("cType2", "cType2"), **policy: object) -> Rig:
        clock = FakeClock(T0)
        store = Store(":memory:")
        station = Station(clock=clock, journal=store, settings=store)
        for name, value in policy.items():
            setattr(station.policy, name, value)
        authorizer = FakeAuthorizer()
        station.authorizer = authorizer
        plants: dict[int, Plant] = {}
        for evse_id, connector_type in enumerate(types, start=1):
            register = tmp_path / f"register-{len(built)}-{evse_id}.json"
            register.write_text(json.dumps({"energy_import_wh": 1000.0}))
            plant = Plant(monotonic=clock.monotonic, register_path=register)
            plants[evse_id] = plant
            evse = Evse(
                evse_id=evse_id,
                connectors=(ConnectorSpec(1, connector_type, 32, 3),),
                board=SimBoardSupport(plant, BoardCapabilities(max_current_a=32.0, phases=3)),
                meter=SimPowerMeter(plant),
                lock=SimConnectorLock(plant),
                **station.evse_kwargs(),  # type: ignore[arg-type]
            )
            station.add_evse(evse)
        rig = Rig(clock, store, station, plants, authorizer)
        station.subscribe(rig.events.append)
        built.append(rig)
        await station.start()
        for evse_id in plants:
            await rig.wait_status(evse_id, S.AVAILABLE)
        return rig

    yield build
    for rig in built:
        await rig.station.shutdown()
        rig.store.close()
    await settle(5)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leaked, f"tasks leaked: {leaked}"


async def test_H01_FR_04_a_specific_evse_is_reserved_and_only_its_token_starts(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    assert rig.station.reserve(booking(1, 1)) == ReserveResult.ACCEPTED
    await rig.wait_status(1, S.RESERVED)
    assert rig.status(2) == S.AVAILABLE
    assert not rig.station.admits(1, STRANGER, AuthResult(AuthStatus.ACCEPTED))
    assert rig.station.admits(2, STRANGER, AuthResult(AuthStatus.ACCEPTED))
    assert rig.station.admits(1, DRIVER, None)


async def test_H01_connector_type_reservation_holds_an_evse_with_that_type(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(("cType2", "cType1"))
    assert rig.station.reserve(booking(1, connector_type="cCCS2")) == ReserveResult.REJECTED
    assert rig.station.reserve(booking(1, 1, connector_type="cType1")) == ReserveResult.REJECTED
    assert rig.station.reserve(booking(2, connector_type="cType1")) == ReserveResult.ACCEPTED
    # The only Type 1 EVSE is the one it needs: Reserved, closed to others; Type 2 is not.
    await rig.wait_status(2, S.RESERVED)
    assert rig.status(1) == S.AVAILABLE
    assert not rig.station.admits(2, STRANGER, None)
    assert rig.station.admits(1, STRANGER, None)
    # A second Type 1 reservation cannot be held; a specific one of EVSE 2 would break it.
    assert rig.station.reserve(booking(3, connector_type="cType1")) == ReserveResult.OCCUPIED
    assert rig.station.reserve(booking(4, 2)) == ReserveResult.OCCUPIED
    assert rig.station.reserve(booking(5, 1)) == ReserveResult.ACCEPTED


async def test_H01_FR_07_as_many_unbound_reservations_as_free_evses_reserve_them_all(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    assert rig.station.reserve(booking(1)) == ReserveResult.ACCEPTED
    await settle()
    assert (rig.status(1), rig.status(2)) == (S.AVAILABLE, S.AVAILABLE)
    assert rig.station.reserve(booking(2, token="OTHER")) == ReserveResult.ACCEPTED
    await rig.wait_status(1, S.RESERVED)
    await rig.wait_status(2, S.RESERVED)
    assert rig.station.reserve(booking(3)) == ReserveResult.OCCUPIED
    # H02.FR.06: cancelling one frees every EVSE again.
    assert rig.station.cancel_reservation(2)
    await rig.wait_status(1, S.AVAILABLE)
    await rig.wait_status(2, S.AVAILABLE)
    assert rig.ended() == [(2, ReservationEnd.CANCELLED)]


async def test_H01_FR_02_a_known_id_replaces_the_reservation_only_when_accepted(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    rig.station.reserve(booking(7, 1))
    await rig.wait_status(1, S.RESERVED)
    assert rig.station.reserve(booking(7, 2)) == ReserveResult.ACCEPTED  # moves to EVSE 2
    await rig.wait_status(2, S.RESERVED)
    await rig.wait_status(1, S.AVAILABLE)
    rig.plants[1].plug_in(SimEv())
    await rig.wait_status(1, S.PREPARING)
    assert rig.station.reserve(booking(7, 1)) == ReserveResult.OCCUPIED
    assert rig.station.reservations.get(7) == booking(7, 2)  # the refused one changed nothing
    assert rig.ended() == []


async def test_H01_answers_for_an_occupied_faulted_unavailable_or_unknown_evse(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    assert rig.station.reserve(booking(1, 9)) == ReserveResult.REJECTED
    rig.plants[1].plug_in(SimEv())
    await rig.wait_status(1, S.PREPARING)
    assert rig.station.reserve(booking(1, 1)) == ReserveResult.OCCUPIED
    rig.plants[2].raise_fault(FaultCode.OVER_TEMPERATURE)
    await rig.wait_status(2, S.FAULTED)
    assert rig.station.reserve(booking(1, 2)) == ReserveResult.FAULTED
    rig.plants[2].clear_fault(FaultCode.OVER_TEMPERATURE)
    await rig.wait_status(2, S.AVAILABLE)
    rig.station.set_operative(2, False)
    assert rig.station.reserve(booking(1, 2)) == ReserveResult.UNAVAILABLE
    # Any EVSE: the one left is Unavailable, the other occupied.
    assert rig.station.reserve(booking(1)) == ReserveResult.OCCUPIED
    rig.plants[1].unplug()
    await rig.wait_status(1, S.AVAILABLE)
    rig.station.set_operative(1, False)
    assert rig.station.reserve(booking(1)) == ReserveResult.UNAVAILABLE
    assert len(rig.station.reservations) == 0


async def test_H01_a_faulted_evse_removes_its_reservation_after_reporting_faulted(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    rig.station.reserve(booking(3, 1))
    await rig.wait_status(1, S.RESERVED)
    rig.plants[1].raise_fault(FaultCode.OVER_TEMPERATURE)
    await wait_until(lambda: rig.ended() != [], "reservation removed")
    faulted = next(
        i
        for i, e in enumerate(rig.events)
        if isinstance(e, StatusChanged) and e.evse_id == 1 and e.status == S.FAULTED
    )
    removed = next(i for i, e in enumerate(rig.events) if isinstance(e, ReservationEnded))
    assert faulted < removed
    assert rig.ended() == [(3, ReservationEnd.REMOVED)]
    rig.plants[1].clear_fault(FaultCode.OVER_TEMPERATURE)
    await rig.wait_status(1, S.AVAILABLE)  # the reservation does not come back


async def test_H01_an_unbound_reservation_ends_when_no_evse_of_its_type_is_left(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(("cType2", "cType1"))
    rig.station.reserve(booking(1))
    rig.station.reserve(booking(2, connector_type="cType1"))
    rig.station.set_operative(1, False)  # any-EVSE's holder gone: 2 cannot hold both
    await wait_until(lambda: len(rig.ended()) == 1, "one reservation removed")
    # The soonest-expiring are served first; at equal expiry, the lower id.
    assert rig.ended() == [(2, ReservationEnd.REMOVED)]
    assert rig.station.reservations.get(1) is not None


async def test_H04_an_expired_reservation_ends_and_its_evse_is_available_again(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    rig.station.reserve(booking(5, 1, expires_at=T0 + timedelta(minutes=10)))
    await rig.wait_status(1, S.RESERVED)
    rig.clock.advance(599)
    await settle()
    assert rig.ended() == []
    rig.clock.advance(1)
    await rig.wait_status(1, S.AVAILABLE)
    assert rig.ended() == [(5, ReservationEnd.EXPIRED)]


async def test_H03_a_token_of_the_reservations_group_uses_it_and_a_stranger_may_not(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(("cType2",))
    rig.station.reserve(booking(6, 1, token="BOSS", group="FLEET"))
    rig.plants[1].plug_in(SimEv())
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="OTHERS")
    rig.station.present_token(1, STRANGER)
    await wait_until(lambda: rig.authorizer.asked == [STRANGER], "stranger asked")
    await settle()
    assert rig.station.evses[1].tx is None
    rig.authorizer.result = AuthResult(AuthStatus.ACCEPTED, group_id="FLEET")
    rig.station.present_token(1, IdToken("FLEET-DRIVER"))
    await wait_until(lambda: rig.station.evses[1].tx is not None, "transaction started")
    tx = rig.store.last_tx_for_evse(1)
    assert tx is not None and (tx.id_token, tx.reservation_id) == ("FLEET-DRIVER", 6)
    assert rig.ended() == [(6, ReservationEnd.USED)]


async def test_H03_a_token_after_an_ev_connected_start_uses_the_reservation(
    make_rig: MakeRig,
) -> None:
    """TxStartPoint EVConnected: the transaction starts at the plug, the EVSE stays
    Reserved for the car, and the reserved token's event carries the reservation."""
    rig = await make_rig(("cType2",), tx_start_points=frozenset({TxPoint.EV_CONNECTED}))
    rig.station.reserve(booking(8, 1))
    rig.plants[1].plug_in(SimEv())
    evse = rig.station.evses[1]
    await wait_until(lambda: evse.tx is not None, "transaction started by the plug")
    assert evse.reserved and rig.station.reservations.get(8) is not None
    rig.station.present_token(1, DRIVER)
    await wait_until(lambda: rig.ended() != [], "reservation used")
    assert rig.ended() == [(8, ReservationEnd.USED)]
    local_id = evse.tx.local_id  # type: ignore[union-attr]
    await wait_until(lambda: len(rig.store.tx_entries(local_id)) >= 2, "authorized event")
    updates = [e for e in rig.store.tx_entries(local_id) if e.kind == TxEventKind.UPDATED]
    with_token = [e.payload for e in updates if e.payload.get("id_token") == DRIVER.value]
    assert with_token and with_token[0]["reservation_id"] == 8
    assert not evse.reserved
