"""The composition root: the only place that picks concrete drivers and the OCPP adapter.

`Agent` builds one running agent from a Config: store, drivers (simulated or real),
station core, OCPP adapter and connection supervisor. `run_agent` runs agents in a loop
so that a Reset restarts the whole agent in-process, exactly as a reboot would: the
store is closed and reopened, interrupted work is recovered from the journal, and the
charge point boots again.

The OCPP version: an agent speaks one, chosen here and nowhere else - the version the
CSMS last negotiated (persisted in the store's settings) if the config still offers it,
else the config's first preference. The supervisor offers every configured version; when
the CSMS chooses another than the running adapter's, the choice is persisted and the
agent ends with Outcome.VERSION_CHANGED, so the next agent boots with the right adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from agent import __version__
from agent.config import Config
from agent.core.clock import SystemClock
from agent.core.evse import ConnectorSpec, Evse
from agent.core.ports import Clock, MonotonicClock, StopReason
from agent.core.station import Station
from agent.core.tasks import Signal, TaskSet, flag_waiter
from agent.energy import EnergyManager
from agent.hardware import EvseHardware, build_hardware, build_site_meter, isolation_to_board
from agent.indicators import Feedback
from agent.ocpp.connection import Backoff, ConnectionState, ConnectionSupervisor, Target
from agent.ocpp.dialects import OCPP16, OCPP201, Dialect
from agent.ocpp.rpc import Frame, Handler, RpcEndpoint
from agent.ocpp.v16.adapter import Ocpp16Adapter
from agent.ocpp.v201.adapter import Ocpp201Adapter
from agent.ocpp.v201.network import InstallProfile, NetworkProfiles
from agent.store import open_store
from agent.store.auth import AuthCache, LocalAuthList
from agent.store.profiles import ProfileStore
from drivers.registry import DriverUnavailable as DriverUnavailable
from drivers.types import TokenRead

if TYPE_CHECKING:
    from agent.api import ApiServer

log = logging.getLogger(__name__)
frames_log = logging.getLogger("cpagent.frames")

#: How long a shutdown waits for the StopTransactions it caused to be delivered.
GRACEFUL_DRAIN_S = 5.0
#: Settings key of the OCPP version the CSMS last negotiated.
VERSION_SETTING = "ocpp.negotiated_version"
DIALECTS: dict[str, Dialect] = {d.version: d for d in (OCPP16, OCPP201)}

_ID_FIELDS = re.compile(r'("(?:idTag|parentIdTag|idToken)"\s*:\s*")([^"]*)(")')


def mask_tokens(text: str) -> str:
    """Hide all but the last 4 characters of every id tag in a frame (for logs)."""
    return _ID_FIELDS.sub(lambda m: m[1] + "*" * max(0, len(m[2]) - 4) + m[2][-4:] + m[3], text)


class Outcome(StrEnum):
    """Why an agent run ended."""

    STOPPED = "stopped"
    SOFT_RESET = "soft_reset"
    HARD_RESET = "hard_reset"
    POWER_CUT = "power_cut"  # simulated: everything stops at once, nothing graceful
    VERSION_CHANGED = "version_changed"  # the CSMS chose another OCPP version: restart


class OcppAdapter(Protocol):
    """What the agent, the API and the views use of an adapter, whatever its version."""

    @property
    def dialect(self) -> Dialect:
        """The OCPP-J dialect the adapter speaks."""
        ...

    @property
    def online(self) -> bool:
        """Connected and accepted by the CSMS."""
        ...

    on_change: list[Callable[[], None]]

    def handlers(self) -> dict[str, Handler]:
        """The CALLs the adapter answers, by action."""
        ...

    def run_session(self, endpoint: RpcEndpoint) -> Coroutine[Any, Any, None]:
        """Speak OCPP over one connection until it ends."""
        ...

    def ping_interval_s(self) -> float | None:
        """The websocket ping interval for the next connection (None: off)."""
        ...

    async def shutdown(self) -> None:
        """Cancel the adapter's own background tasks."""
        ...


class _Wiring(NamedTuple):
    """An adapter and how the supervisor reaches the CSMS for it."""

    adapter: OcppAdapter
    targets: Callable[[], Sequence[Target]]
    attempts_per_target: Callable[[], int]


#: The flag `Agent.run` and `run_agent` wait on: a fleet shares one among thousands of
#: agents, and a Signal (agent/core/tasks.py) wakes them without a task each.
StopFlag = Signal


@dataclass
class MessageLog:
    """The last OCPP frames in and out, for status views and the local API."""

    frames: deque[Frame] = field(default_factory=lambda: deque(maxlen=1000))
    listeners: list[Callable[[Frame], None]] = field(default_factory=list)
    log_frames: bool = True
    mask: bool = True

    def __call__(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.log_frames and frames_log.isEnabledFor(logging.INFO):
            text = mask_tokens(frame.text) if self.mask else frame.text
            frames_log.info("%s %s", ">>" if frame.outgoing else "<<", text)
        for listener in list(self.listeners):
            listener(frame)


class Agent:
    """One running agent built from a config."""

    def __init__(
        self, config: Config, *, clock: Clock | None = None, previous: Outcome | None = None
    ) -> None:
        """`previous` is how the agent before this one ended (None: the process started),
        which gives the boot reason."""
        self.config = config
        self.clock = clock or SystemClock()
        self.previous = previous
        # Drivers first: a driver that is missing or misconfigured stops us before the
        # store is created or anything is started.
        store_dir = Path(config.store.path).parent
        clock = self.clock
        monotonic = clock.monotonic if isinstance(clock, MonotonicClock) else time.monotonic
        shared: dict[Any, Any] = {}
        self.hardware: dict[int, EvseHardware] = {
            evse.id: build_hardware(config, evse, store_dir, shared, monotonic)
            for evse in config.evses
        }
        self.site_meter = build_site_meter(config, shared, self.hardware)
        self.store = open_store(config.store.path)  # MEMORY_PATH: fleet mode's MemoryStore
        self.messages = MessageLog(
            log_frames=config.logging.message_log, mask=config.logging.mask_id_tokens
        )
        self.profiles = ProfileStore(self.store)
        self.station = Station(
            clock=self.clock, journal=self.store, settings=self.store, profiles=self.profiles
        )
        self.feedback = Feedback(
            {i: h.indicator for i, h in self.hardware.items() if h.indicator is not None},
            self.clock,
        )
        self.station.subscribe(self.feedback.on_event)
        self.local_list = LocalAuthList(self.store)
        self.auth_cache = AuthCache(self.store, clock=self.clock)
        for evse_config in config.evses:
            hardware = self.hardware[evse_config.id]
            connectors = tuple(
                ConnectorSpec(c.id, c.type, c.max_current_a, c.phases)
                for c in evse_config.connectors
            )
            self.station.add_evse(
                Evse(
                    evse_id=evse_config.id,
                    connectors=connectors,
                    board=hardware.board,
                    meter=hardware.meter,
                    lock=hardware.lock,
                    **self.station.evse_kwargs(),  # type: ignore[arg-type]
                )
            )
        #: Local energy management (site limit, site meter, off-peak, PV), when configured.
        self.energy = (
            EnergyManager(
                config.energy, station=self.station, clock=self.clock, site_meter=self.site_meter
            )
            if config.energy.enabled
            else None
        )
        self._outcome: asyncio.Future[Outcome] | None = None
        self.ocpp_version = self._choose_version()
        self.network: NetworkProfiles | None = None  # 2.0.1 network connection profiles
        builders = {"1.6": self._wire_16, "2.0.1": self._wire_201}
        wiring = builders[self.ocpp_version]()
        self.adapter: OcppAdapter = wiring.adapter
        csms = config.csms
        self.supervisor = ConnectionSupervisor(
            targets=wiring.targets,
            charge_point_id=config.station.id,
            dialect=self.adapter.dialect,
            offered=[DIALECTS[version] for version in csms.ocpp_versions],
            attempts_per_target=wiring.attempts_per_target,
            handlers=self.adapter.handlers(),
            session=self.adapter.run_session,
            backoff=Backoff(
                csms.reconnect.initial_backoff_s,
                csms.reconnect.max_backoff_s,
                csms.reconnect.jitter,
            ),
            response_timeout_s=csms.response_timeout_s,
            ping_interval_s=self.adapter.ping_interval_s,
            on_frame=self.messages,
            on_state=lambda _state: self._notify(),
            on_connected=self._on_connected,
        )
        self._tasks = TaskSet("agent")
        self._changed = Signal()
        self.station.subscribe(lambda _event: self._notify())
        self.messages.listeners.append(lambda _frame: self._notify())
        self.adapter.on_change.append(self._notify)

    def _notify(self) -> None:
        self._changed.set()

    # -- the OCPP version and its adapter ----------------------------------------------

    def _choose_version(self) -> str:
        """The version last negotiated, if still offered; else the first preference."""
        offered = self.config.csms.ocpp_versions
        stored = self.store.get_setting(VERSION_SETTING)
        return stored if stored in offered else offered[0]

    def _on_connected(self, target: Target, dialect: Dialect) -> None:
        """Persist the version the CSMS chose; restart if it is not ours."""
        if self.network is not None:
            self.network.on_connected(target)
        if self.store.get_setting(VERSION_SETTING) != dialect.version:
            self.store.set_setting(VERSION_SETTING, dialect.version)
        if dialect.version != self.ocpp_version:
            log.info("restarting with OCPP %s (was %s)", dialect.version, self.ocpp_version)
            self._end(Outcome.VERSION_CHANGED)

    def _install_target(self) -> Target:
        """The install config's CSMS endpoint."""
        csms = self.config.csms
        return Target(
            url=csms.url,
            basic_auth=(csms.basic_auth.username, csms.basic_auth.password.reveal())
            if csms.basic_auth
            else None,
            ssl_context=self._tls(csms.url),
            name="config",
        )

    def _wire_16(self) -> _Wiring:
        """OCPP 1.6: one target, the config's."""
        adapter = Ocpp16Adapter(
            station=self.station,
            store=self.store,
            clock=self.clock,
            boot_payload=self._boot_payload(),
            install_settings=self.config.settings_for("1.6"),
            request_reset=self._on_reset,
            local_list=self.local_list,
            auth_cache=self.auth_cache,
        )
        target = self._install_target()
        return _Wiring(adapter, lambda: [target], lambda: 1)

    def _wire_201(self) -> _Wiring:
        """OCPP 2.0.1: the network profiles give the targets (B09/B10)."""
        station = self.config.station
        charging_station = {"model": station.model, "vendorName": station.vendor}
        if station.serial_number:
            charging_station["serialNumber"] = station.serial_number
        if station.firmware_version:
            charging_station["firmwareVersion"] = station.firmware_version
        after_reset = self.previous in (Outcome.SOFT_RESET, Outcome.HARD_RESET)
        adapter = Ocpp201Adapter(
            station=self.station,
            store=self.store,
            clock=self.clock,
            charging_station=charging_station,
            install_settings=self.config.settings_for("2.0.1"),
            request_reset=self._on_reset,
            boot_reason="RemoteReset" if after_reset else "PowerUp",
            local_list=self.local_list,
            auth_cache=self.auth_cache,
        )
        csms = self.config.csms
        auth = csms.basic_auth
        network = NetworkProfiles(
            store=self.store,
            model=adapter.model,
            install=InstallProfile(
                url=csms.url,
                username=auth.username if auth else station.id,
                password=auth.password.reveal() if auth else None,
            ),
            tls=self._tls,
        )
        adapter.add_handlers(network.handlers())
        self.network = network
        return _Wiring(adapter, network.targets, network.attempts)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Return once `predicate()` holds, re-checking whenever the agent's state changes:
        a station event, an OCPP frame, the connection, the outbox. Raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _boot_payload(self) -> dict[str, str]:
        station = self.config.station
        payload = {
            "chargePointVendor": station.vendor,
            "chargePointModel": station.model,
            "firmwareVersion": station.firmware_version or f"cpagent-{__version__}",
        }
        if station.serial_number:
            payload["chargePointSerialNumber"] = station.serial_number
        return payload

    def _tls(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for `url`: the config's trust for wss://, None for ws://."""
        if not url.startswith("wss://"):
            return None
        tls = self.config.csms.tls
        cafile = str(tls.ca_file) if tls and tls.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _on_reset(self, hard: bool) -> None:
        self._end(Outcome.HARD_RESET if hard else Outcome.SOFT_RESET)

    def power_cut(self) -> None:
        """Simulate a power cut: stop at once, transactions left open in the journal."""
        self._end(Outcome.POWER_CUT)

    def _end(self, outcome: Outcome) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    @property
    def ending(self) -> Outcome | None:
        """Why this agent is ending or ended (None while it runs on, and after a stop)."""
        done = self._outcome is not None and self._outcome.done()
        return self._outcome.result() if self._outcome is not None and done else None

    @property
    def connection_state(self) -> ConnectionState:
        """The CSMS connection's state."""
        return self.supervisor.state

    def tap(self, evse_id: int, id_token: str) -> None:
        """Present a token at an EVSE (its simulated reader, or straight to the station)."""
        reader = self.hardware[evse_id].reader
        tap = getattr(reader, "tap", None)
        if tap is None or not tap(id_token):
            from agent.core.events import IdToken

            self.station.present_token(evse_id, IdToken(id_token))

    async def run(self, stop: asyncio.Event | Signal | None = None) -> Outcome:
        """Run until `stop` is set or a Reset asks for a restart; leave everything safe."""
        self._outcome = asyncio.get_running_loop().create_future()
        try:
            # A full disk or a read-only store: reported, retried, charging goes on.
            self.store.subscribe_health(self._on_store_health)
            self._tasks.spawn(self.store.retry_forever(self.clock), name="store-retry")
            await self.local_list.purge_stale()  # rows of a list update a crash cut short
            await self.station.start()
            if self.energy is not None:
                await self.energy.start()
            await self.feedback.start()
            for evse_id, hardware in self.hardware.items():
                if hardware.reader is not None:
                    await hardware.reader.start(
                        self._reader_sink(evse_id),
                        self.station.evses[evse_id].fault_sink("reader"),
                    )
                # DC power-path faults fault the EVSE like any board fault (the core has
                # no DC session yet: the drivers are started for their monitoring).
                evse = self.station.evses[evse_id]
                if hardware.power_module is not None:
                    await hardware.power_module.start(evse.fault_sink("power_module"))
                if hardware.isolation_monitor is not None:
                    await hardware.isolation_monitor.start(
                        functools.partial(
                            isolation_to_board, sink=evse.fault_sink("isolation_monitor")
                        )
                    )
                if hardware.plant is not None:
                    if self.config.simulator.auto_plug:
                        hardware.plant.plug_in(self._default_ev())
                    self._tasks.spawn(hardware.plant.run(), name=f"plant-{evse_id}")
            self._tasks.spawn(self.supervisor.run(), name="connection")
            waiters: list[asyncio.Future[Any]] = [self._outcome]
            if stop is not None:
                waiters.append(flag_waiter(stop))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters[1:]:
                waiter.cancel()
            outcome = self._outcome.result() if self._outcome.done() else Outcome.STOPPED
            if outcome == Outcome.STOPPED:
                await self._graceful_stop()
            return outcome
        finally:
            await self._close()

    def _on_store_health(self) -> None:
        """The store started or stopped persisting: a StorageFault for the adapters."""
        from agent.core.events import StorageFault

        health = self.store.health
        self.station.emit(
            StorageFault(
                active=not health.writable,
                detail=health.error or "",
                accepting_new=health.accepting_new,
                at=self.clock.now(),
            )
        )

    async def _graceful_stop(self) -> None:
        """On SIGTERM: stop transactions (reason Reboot) and give the outbox a moment."""
        if not self.station.transaction_running():
            return
        await self.station.stop_all(StopReason.REBOOT)
        with contextlib.suppress(TimeoutError):  # what is left goes out after the restart
            await self.wait_until(
                lambda: not self.store.pending_count() or not self.adapter.online,
                timeout_s=GRACEFUL_DRAIN_S,
            )

    def _default_ev(self) -> Any:
        from simulator.ev import EvParameters, SimEv

        ev = self.config.simulator.ev
        return SimEv(
            EvParameters(
                battery_wh=ev.battery_wh,
                soc_percent=ev.soc_percent,
                max_current_a=ev.max_current_a,
                phases=ev.phases,
                target_soc_percent=ev.target_soc_percent,
            )
        )

    def _reader_sink(self, evse_id: int) -> Callable[[TokenRead], None]:
        from agent.core.events import IdToken

        def sink(read: TokenRead) -> None:
            self.station.present_token(evse_id, IdToken(read.id_token, read.token_type))

        return sink

    async def _close(self) -> None:
        if self.energy is not None:
            await self.energy.stop()
        await self._tasks.cancel_all()
        await self.feedback.stop()
        await self.adapter.shutdown()
        for hardware in self.hardware.values():
            for driver in (hardware.reader, hardware.power_module, hardware.isolation_monitor):
                if driver is not None:
                    await driver.stop()
        await self.station.shutdown()  # leaves every board safe: contactor open, pilot +12 V
        site_meter: list[Any] = [self.site_meter] if self.site_meter is not None else []
        for driver in [*site_meter, *(d for h in self.hardware.values() for d in h.drivers())]:
            close = getattr(driver, "close", None)  # links (serial, Modbus, CAN) to release
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing driver %r failed", driver)
        self.store.close()


class AgentRunner:
    """Runs one agent after another over the same store: after a Reset, and around a
    simulated power cut (the agent stays down until `power_restore()`)."""

    def __init__(self, config: Config, *, on_agent: Callable[[Agent], None] | None = None) -> None:
        self.config = config
        self.agent: Agent | None = None
        self.api: ApiServer | None = None  # the local API, when the config enables it
        self.powered = True
        self._on_agent = on_agent
        self._restore = Signal()
        #: Called whenever `agent` or `powered` changes.
        self.on_change: list[Callable[[], None]] = []
        self._changed = Signal()

    def _notify(self) -> None:
        self._changed.set()
        for callback in list(self.on_change):
            callback()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Return once `predicate()` holds, re-checked when the agent or the power changes.
        Raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def run(self, stop: asyncio.Event | Signal | None = None) -> None:
        """Run until `stop` is set (serving the local API, when enabled, throughout)."""
        stop = stop or Signal()
        if self.config.api.enabled:
            from agent.api import ApiServer  # aiohttp is imported only when the API is on

            self.api = ApiServer(self, self.config.api)
            await self.api.start()
        try:
            await self._run_agents(stop)
        finally:
            if self.api is not None:
                await self.api.stop()

    async def _run_agents(self, stop: asyncio.Event | Signal) -> None:
        previous: Outcome | None = None  # what the next agent boots after
        while True:
            agent = Agent(self.config, previous=previous)
            self.agent = agent
            if self._on_agent is not None:
                self._on_agent(agent)
            self._notify()
            outcome = await agent.run(stop)
            if outcome == Outcome.STOPPED:
                return
            if outcome != Outcome.VERSION_CHANGED:  # a version change keeps the reason
                previous = outcome
            if outcome == Outcome.POWER_CUT:
                self.powered = False
                self._notify()
                log.warning("simulated power cut: the agent is down until power returns")
                self._restore.clear()
                restored = flag_waiter(self._restore)
                stopped = flag_waiter(stop)
                await asyncio.wait({restored, stopped}, return_when=asyncio.FIRST_COMPLETED)
                restored.cancel()
                stopped.cancel()
                if stop.is_set():
                    return
                self.powered = True  # announced with the new agent, below
            log.info("restarting after %s", outcome)

    def power_cut(self) -> bool:
        """Cut the (simulated) power now; False if it is already off."""
        if not self.powered or self.agent is None:
            return False
        self.agent.power_cut()
        return True

    def power_restore(self) -> bool:
        """Power comes back: a new agent starts over the same store; False if it was on."""
        if self.powered:
            return False
        self._restore.set()
        return True


async def run_agent(
    config: Config,
    *,
    stop: asyncio.Event | Signal | None = None,
    on_agent: Callable[[Agent], None] | None = None,
) -> None:
    """Run the agent until `stop`, restarting it in-process after each Reset."""
    await AgentRunner(config, on_agent=on_agent).run(stop)
