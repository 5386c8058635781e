"""The core's neutral vocabulary towards the adapters: tokens, authorization, events.

Adapters (OCPP 1.6, 2.0.1, the local API, the demo view) listen to `StationEvent`s and
call the station's commands; none of these types mention an OCPP version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from agent.core.ports import SampleContext
from agent.core.status import ConnectorStatus, SessionPhase
from drivers.types import FaultCode, MeterSample, TokenType


@dataclass(frozen=True, slots=True)
class OcspRequest:
    """How to check one certificate of a contract chain with OCSP (ISO 15118-2)."""

    hash_algorithm: str  # "SHA256", "SHA384" or "SHA512"
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    responder_url: str


@dataclass(frozen=True, slots=True)
class ContractProof:
    """Plug & Charge: what an ISO 15118 stack hands over with the EV's eMAID.

    The seam for a future ISO 15118 driver: it presents the EV's contract as an IdToken
    of type eMAID carrying this proof, through `Station.present_token` like a card. Either
    the contract certificate chain (PEM) or the OCSP data of its certificates, as the
    CSMS is to validate it (OCPP 2.0.1 C07: AuthorizeRequest certificate /
    iso15118CertificateHashData).
    """

    certificate_pem: str | None = None
    ocsp: tuple[OcspRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class IdToken:
    """An identifier presented to start or stop charging.

    `contract`: the proof an EV gave with an eMAID over ISO 15118 (Plug & Charge); the
    adapter forwards it to the CSMS, which validates it (2.0.1 C07).
    """

    value: str
    type: TokenType = TokenType.ISO14443
    contract: ContractProof | None = field(default=None, compare=False)


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


class TokenHandling(StrEnum):
    """What an EVSE does with a token presented at it (announced before it acts)."""

    CHECKING = "checking"  # an authorization starts (to start, or to stop by group)
    ENDING = "ending"  # the session's own token: it stops or its authorization ends
    CONCURRENT = "concurrent"  # another token during a transaction: refused at once
    BUSY = "busy"  # a check of another token is in flight: ignored
    RESERVED = "reserved"  # reserved for another token, no group to ask about: refused
    DROPPED = "dropped"  # the EVSE cannot start a session now (faulted, Inoperative)


@dataclass(frozen=True, slots=True)
class TokenPresented:
    """A token reached an EVSE (reader, Plug & Charge identity) and how it is handled."""

    evse_id: int
    token: IdToken
    handling: TokenHandling


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


@dataclass(frozen=True, slots=True)
class StorageFault:
    """The station's store cannot persist what it is given (disk full, read-only), or
    can again (`active` False).

    Charging goes on: the journal keeps what it could not write in memory, in order, and
    writes it once the disk accepts writes; `accepting_new` turns False when that backlog
    is full (no new transaction can start). `detail` is the store's error text.
    """

    active: bool
    detail: str
    accepting_new: bool
    at: datetime
    evse_id: None = None  # station-wide (every station event names its EVSE, or None)


StationEvent = (
    StatusChanged
    | TxMessageQueued
    | MeterValuesSampled
    | AuthorizationOutcome
    | TokenPresented
    | PhaseChanged
    | ReservationEnded
    | StorageFault
)


#: The key a journal payload holding a meter sample has at its top level (sample_payload).
SAMPLE_KEY: Final = "energy_import_wh"


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
