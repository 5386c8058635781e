"""Ports: what the core needs from the world, as Protocols it is handed at construction.

The core does no I/O of its own. Persistence (the transaction journal), the clock and
authorization are injected; agent/store and the OCPP adapters provide them, unit tests
provide fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from drivers.types import TokenType


class Clock(Protocol):
    """Wall-clock time, injected so tests can drive it."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's time."""
        ...


@runtime_checkable
class MonotonicClock(Protocol):
    """A clock that also counts seconds that never jump (a Clock may offer it): the
    simulated plants integrate energy on it, so on a fake clock they run on fake time."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary start, never going back."""
        ...


class SettingsStore(Protocol):
    """Small durable key-value settings (availability, runtime configuration)."""

    def get_setting(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    def set_setting(self, key: str, value: str) -> None:
        """Store a value durably."""
        ...


class TxEventKind(StrEnum):
    """What a journal outbox entry records about a transaction."""

    STARTED = "started"
    UPDATED = "updated"  # a meter sample taken during the transaction
    ENDED = "ended"


class TxPoint(StrEnum):
    """A condition that can start or end a transaction (OCPP 2.0.1 TxStartPoint/TxStopPoint).

    ParkingBayOccupancy and DataSigned need a bay sensor and a signing meter; no driver
    provides either, so they are not offered.
    """

    EV_CONNECTED = "ev_connected"  # a vehicle is connected (pilot not in state A)
    AUTHORIZED = "authorized"  # a token (or the CSMS) authorized charging
    POWER_PATH_CLOSED = "power_path_closed"  # authorized and connected: power may flow
    ENERGY_TRANSFER = "energy_transfer"  # the contactor is closed and the EV draws (C/D)


class TxTrigger(StrEnum):
    """What caused a transaction message (mapped to 2.0.1 triggerReason by its adapter)."""

    AUTHORIZED = "authorized"
    CABLE_PLUGGED_IN = "cable_plugged_in"
    CHARGING_STATE_CHANGED = "charging_state_changed"
    REMOTE_START = "remote_start"
    METER_PERIODIC = "meter_periodic"
    METER_CLOCK = "meter_clock"
    TRIGGER = "trigger"
    CHARGING_RATE_CHANGED = "charging_rate_changed"  # the offered limit moved significantly


class SampleContext(StrEnum):
    """Why a meter sample was taken (mapped to ReadingContext by each adapter)."""

    BEGIN = "begin"
    PERIODIC = "periodic"
    CLOCK = "clock"
    END = "end"
    TRIGGER = "trigger"


class StopReason(StrEnum):
    """Why a transaction ended (mapped to each OCPP version's reason by the adapter)."""

    LOCAL = "local"  # the driver stopped it at the charger (token tap)
    REMOTE = "remote"  # the CSMS asked for it
    EV_DISCONNECTED = "ev_disconnected"
    DE_AUTHORIZED = "de_authorized"
    EMERGENCY_STOP = "emergency_stop"
    HARD_RESET = "hard_reset"
    SOFT_RESET = "soft_reset"
    POWER_LOSS = "power_loss"
    REBOOT = "reboot"  # the agent was shut down on request (SIGTERM)
    UNAVAILABLE = "unavailable"
    UNLOCK = "unlock"  # the CSMS asked to unlock the connector
    FAULT = "fault"
    MASTER_PASS = "master_pass"  # a master pass token stopped it (2.0.1 C16)
    TIMEOUT = "timeout"  # authorized, but no vehicle arrived in time
    STOPPED_BY_EV = "stopped_by_ev"  # the EV stopped drawing (an EnergyTransfer stop point)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One transaction as the journal holds it."""

    local_id: int
    evse_id: int
    connector_id: int
    id_token: str
    token_type: TokenType
    started_at: datetime
    meter_start_wh: float
    last_meter_wh: float
    last_meter_at: datetime
    reservation_id: int | None = None
    csms_tx_id: str | None = None
    stopped_at: datetime | None = None
    meter_stop_wh: float | None = None
    stop_reason: StopReason | None = None
    stop_id_token: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One transaction message waiting for delivery, in global order (`seq`)."""

    seq: int
    tx_local_id: int
    kind: TxEventKind
    payload: Mapping[str, Any]
    created_at: datetime
    attempts: int


class EntryOutline(NamedTuple):
    """What choosing among a transaction's entries looks at, without reading payloads:
    `sampled` says the payload holds a meter sample (its top level has
    `energy_import_wh`, as events.sample_payload writes). A tuple: stores build
    thousands at once."""

    seq: int
    kind: TxEventKind
    created_at: datetime
    sampled: bool


class TransactionJournal(Protocol):
    """Durable record of transactions plus the ordered outbox of their messages.

    Every method that changes a transaction writes the journal row and its outbox
    entry in one SQLite transaction, so a power cut leaves either both or neither. A
    method returns once the change is accepted (readable at once); it becomes durable
    when committed, which may come later (`wait_durable`), and the outbox sends only
    durable entries. A disk that refuses writes never makes a method raise, except
    `begin_transaction` once the journal's backlog is full.
    """

    def begin_transaction(
        self,
        *,
        evse_id: int,
        connector_id: int,
        id_token: str,
        token_type: TokenType,
        started_at: datetime,
        meter_start_wh: float,
        reservation_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TxRecord:
        """Record a new transaction and enqueue its STARTED entry; return the record.

        `id_token` is "" (type NoAuthorization) for a transaction that starts before
        anyone is authorized; `details` are added to the STARTED payload.
        """
        ...

    def record_event(
        self,
        local_id: int,
        *,
        at: datetime,
        payload: Mapping[str, Any],
        id_token: str | None = None,
        token_type: TokenType | None = None,
    ) -> None:
        """Enqueue an UPDATED entry that is not a meter sample (the token learned after
        the start, a cable plugged in, a charging state change); with `id_token`, the
        transaction's token becomes that one."""
        ...

    def record_meter(
        self,
        local_id: int,
        *,
        at: datetime,
        energy_wh: float,
        payload: Mapping[str, Any],
        enqueue: bool,
    ) -> None:
        """Persist the latest meter register; enqueue an UPDATED entry when `enqueue`."""
        ...

    def end_transaction(
        self,
        local_id: int,
        *,
        stopped_at: datetime,
        meter_stop_wh: float,
        reason: StopReason,
        stop_id_token: str | None,
        payload: Mapping[str, Any],
    ) -> TxRecord:
        """Close the transaction and enqueue its ENDED entry; return the closed record."""
        ...

    def open_transactions(self) -> list[TxRecord]:
        """Transactions that have begun and not yet ended, oldest first."""
        ...

    def last_entry_at(self, tx_local_id: int) -> datetime | None:
        """The time of the transaction's latest journal entry (any kind), or None."""
        ...

    @property
    def accepting_new_transactions(self) -> bool:
        """Whether `begin_transaction` would accept a transaction now (False while the
        disk refuses writes and the in-memory backlog is full)."""
        ...

    async def wait_durable(self) -> bool:
        """Return once every write accepted so far is durable (True), or at once while
        the store cannot write (False: the writes wait in memory, charging goes on)."""
        ...
