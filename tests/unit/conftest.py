"""Fixtures shared by the unit tests: the session rig (one EVSE, whole sessions).

The rig is built as agent/app.py builds a station (Station, Evse with SimBoardSupport /
SimPowerMeter / SimConnectorLock over a Plant), with no network: a FakeClock drives both
the core's wall time and the plant's monotonic time, a FakeAuthorizer answers tokens.
`make_rig` builds rigs and, after the test, shuts them down and fails the test if a task
leaked; `rig` is one started rig. test_session*.py import `Rig`, `LifecycleHold` and the
constants from here. The leak check is the only assertion here: the tests do the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.core.events import IdToken, StationEvent, StatusChanged
from agent.core.evse import ConnectorSpec, Evse
from agent.core.ports import TxRecord
from agent.core.station import Station
from agent.core.status import ConnectorStatus, SessionPhase
from agent.store import Store
from drivers.types import BoardCapabilities, BoardEvent, ContactorEvent, PilotState, TokenType
from simulator.drivers import SimBoardSupport, SimConnectorLock, SimPowerMeter
from simulator.ev import SimEv
from simulator.plant import Plant
from tests.fakes import FakeAuthorizer, FakeClock, SwitchableMeter, settle, wait_until

S = ConnectorStatus
TAG = IdToken("04A2B3C4D5", TokenType.ISO14443)
OTHER_TAG = IdToken("DEADBEEF")
METER_START_WH = 1234.5  # the plant's register when the test begins
DUTY_32_A = 53.33


@dataclass
class Rig:
    """A station with one simulated EVSE, and everything a test looks at."""

    clock: FakeClock
    store: Store
    plant: Plant
    meter: SwitchableMeter
    lock: SimConnectorLock
    authorizer: FakeAuthorizer
    station: Station
    evse: Evse
    events: list[StationEvent] = field(default_factory=list)
    plant_events: list[BoardEvent] = field(default_factory=list)
    closes: list[tuple[PilotState, float | None]] = field(default_factory=list)

    def statuses(self) -> list[ConnectorStatus]:
        """Every StatusChanged of connector 1, in order."""
        return [
            e.status for e in self.events if isinstance(e, StatusChanged) and e.connector_id == 1
        ]

    def phase(self) -> SessionPhase:
        """The session machine's state now."""
        return self.evse.state

    def tx(self) -> TxRecord:
        """The EVSE's latest transaction as the journal holds it."""
        tx = self.store.last_tx_for_evse(1)
        if tx is None:
            raise AssertionError("no transaction in the journal")
        return tx

    async def wait_status(self, status: ConnectorStatus) -> None:
        """Wait until connector 1's published status is `status`."""
        await wait_until(lambda: self.evse.status() == status, f"status {status}")

    async def start_charging(self, *, plug_first: bool = True) -> None:
        """Plug a car in and tap TAG (in either order, each once Preparing shows); wait
        until energy flows."""
        if plug_first:
            self.plant.plug_in(SimEv())
            await self.wait_status(S.PREPARING)
            self.station.present_token(1, TAG)
        else:
            self.station.present_token(1, TAG)
            await self.wait_status(S.PREPARING)
            self.plant.plug_in(SimEv())
        await wait_until(lambda: self.plant.contactor_closed, "contactor closed")
        await self.wait_status(S.CHARGING)

    def _on_plant_event(self, event: BoardEvent) -> None:
        self.plant_events.append(event)
        if isinstance(event, ContactorEvent) and event.closed:
            self.closes.append((self.plant.pilot_state, self.plant.duty_percent))


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Build (and by default start) rigs; shut every one down and check nothing leaked."""
    started: list[Station] = []  # every station built
    stores: list[Store] = []

    async def build(*, store: Store | None = None, start: bool = True) -> Rig:
        clock = FakeClock()
        if store is None:
            store = Store(":memory:")
            stores.append(store)
        register = tmp_path / f"register-{len(stores)}-{len(started)}.json"
        register.write_text(json.dumps({"energy_import_wh": METER_START_WH}))
        plant = Plant(monotonic=clock.monotonic, register_path=register)
        board = SimBoardSupport(plant, BoardCapabilities(max_current_a=32.0, phases=3))
        meter = SwitchableMeter(SimPowerMeter(plant))
        lock = SimConnectorLock(plant)
        station = Station(clock=clock, journal=store, settings=store)
        authorizer = FakeAuthorizer()
        station.authorizer = authorizer
        evse = Evse(
            evse_id=1,
            connectors=(ConnectorSpec(1, "cType2", 32, 3),),
            board=board,
            meter=meter,
            lock=lock,
            **station.evse_kwargs(),  # type: ignore[arg-type]
        )
        station.add_evse(evse)
        rig = Rig(clock, store, plant, meter, lock, authorizer, station, evse)
        station.subscribe(rig.events.append)
        plant.subscribe(rig._on_plant_event)
        started.append(station)  # shutting down a station never started is harmless
        if start:
            await station.start()
        return rig

    yield build
    for station in started:
        await station.shutdown()
    await settle(5)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for store in stores:
        store.close()
    assert not leaked, f"tasks leaked: {leaked}"


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


class LifecycleHold:
    """Holds the EVSE's lifecycle worker busy, as a slow journal or protocol step would."""

    def __init__(self, evse: Evse) -> None:
        self._evse = evse
        self._entered = asyncio.Event()
        self._release = asyncio.Event()
        self._task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> LifecycleHold:
        async def hold() -> None:
            self._entered.set()
            await self._release.wait()

        self._task = asyncio.create_task(self._evse.run_in_lifecycle(hold))
        await wait_until(self._entered.is_set, "lifecycle worker held")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._release.set()
        if self._task is not None:
            await self._task
