"""The core's neutral vocabulary towards the adapters: tokens, authorization, events.

Adapters (OCPP 1.6, 2.0.1, the local API, the demo view) listen to `StationEvent`s and
call the station's commands; none of these types mention an OCPP version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from agent.core.ports import SampleContext
from agent.core.status import ConnectorStatus, SessionPhase
from drivers.types import FaultCode, MeterSample, TokenType


@dataclass(frozen=True, slots=True)
class IdToken:
    """An identifier presented to start or stop charging."""

    value: str
    type: TokenType = TokenType.ISO14443


class AuthStatus(StrEnum):
    """The answer to "may this token charge?"."""

    ACCEPTED = "accepted"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    INVALID = "invalid"
    CONCURRENT_TX = "concurrent_tx"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """An authorization decision, wherever it came from."""

    status: AuthStatus
    group_id: str | None = None
    expires_at: datetime | None = None

    @property
    def accepted(self) -> bool:
        """Whether charging may start."""
        return self.status == AuthStatus.ACCEPTED


class Authorizer(Protocol):
    """Decides whether a token may charge (the adapter: CSMS, local list, offline rules)."""

    async def authorize(self, token: IdToken) -> AuthResult:
        """Return the decision for `token`; never raises for network trouble."""
        ...


class UnlockResult(StrEnum):
    """Outcome of an unlock request."""

    UNLOCKED = "unlocked"
    FAILED = "failed"
    NOT_SUPPORTED = "not_supported"


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A connector's derived status changed."""

    evse_id: int
    connector_id: int
    status: ConnectorStatus
    fault: FaultCode | None
    at: datetime


@dataclass(frozen=True, slots=True)
class TxMessageQueued:
    """A transaction message was written to the journal's outbox."""

    evse_id: int
    tx_local_id: int


@dataclass(frozen=True, slots=True)
class MeterValuesSampled:
    """A meter sample outside any transaction (clock-aligned or triggered)."""

    evse_id: int
    connector_id: int
    sample: MeterSample
    context: SampleContext
    at: datetime
    offered_current_a: float


@dataclass(frozen=True, slots=True)
class AuthorizationOutcome:
    """Feedback for the person at the charger: a token was accepted or refused."""

    evse_id: int
    token: IdToken
    result: AuthResult


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """The session machine of an EVSE changed state."""

    evse_id: int
    phase: SessionPhase


class ReservationEnd(StrEnum):
    """Why a reservation ended."""

    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REMOVED = "removed"  # the EVSE became Unavailable or Faulted


@dataclass(frozen=True, slots=True)
class ReservationEnded:
    """A reservation ended (OCPP 2.0.1 reports expiry and removal to the CSMS)."""

    reservation_id: int
    evse_id: int | None
    reason: ReservationEnd


StationEvent = (
    StatusChanged
    | TxMessageQueued
    | MeterValuesSampled
    | AuthorizationOutcome
    | PhaseChanged
    | ReservationEnded
)


def sample_payload(
    sample: MeterSample, context: SampleContext, at: datetime, offered_current_a: float
) -> Mapping[str, Any]:
    """A meter sample as the journal stores it (JSON-friendly, version-neutral)."""
    return {
        "at": at.isoformat(),
        "context": context.value,
        "offered_current_a": offered_current_a,
        "energy_import_wh": sample.energy_import_wh,
        "energy_export_wh": sample.energy_export_wh,
        "power_w": sample.power_w,
        "current_a": list(sample.current_a),
        "voltage_v": list(sample.voltage_v),
        "frequency_hz": sample.frequency_hz,
        "soc_percent": sample.soc_percent,
        "temperature_c": sample.temperature_c,
    }


def sample_from_payload(payload: Mapping[str, Any]) -> MeterSample:
    """The MeterSample back from a journal payload written by sample_payload()."""
    return MeterSample(
        energy_import_wh=float(payload["energy_import_wh"]),
        energy_export_wh=float(payload.get("energy_export_wh") or 0.0),
        power_w=float(payload["power_w"]),
        current_a=_triple(payload["current_a"]),
        voltage_v=_triple(payload["voltage_v"]),
        frequency_hz=payload.get("frequency_hz"),
        soc_percent=payload.get("soc_percent"),
        temperature_c=payload.get("temperature_c"),
    )


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)
