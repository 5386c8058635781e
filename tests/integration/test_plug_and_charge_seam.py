"""The Plug & Charge seam: an EV's contract presented like a card, validated by the CSMS.

No ISO 15118 stack exists yet. These tests play its part: when the EV is plugged in,
the stack hands the core an IdToken of type eMAID carrying the contract's proof
(`ContractProof`), through `Station.present_token` as a reader would. Asserted: what
the CSMS receives in the 2.0.1 AuthorizeRequest (C07: the certificate or its OCSP data),
that charging starts only on a contract the CSMS validated, and that the transaction
carries the eMAID.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.events import AuthorizationOutcome, ContractProof, IdToken, OcspRequest
from agent.core.status import SessionPhase
from drivers.types import TokenType
from simulator.csms import Csms, CsmsBehaviour
from tests.fakes import settle, wait_until
from tests.integration.v201_station import RunningStation201, is_status, start_station

EMAID = "DEABC1234567890"
OCSP = OcspRequest(
    hash_algorithm="SHA256",
    issuer_name_hash="a" * 64,
    issuer_key_hash="b" * 64,
    serial_number="0123456789",
    responder_url="http://ocsp.example.test",
)


@pytest.fixture
async def csms201() -> AsyncIterator[Csms]:
    async with Csms(CsmsBehaviour(), subprotocols=("ocpp2.0.1",)) as server:
        yield server


@pytest.fixture
async def running(csms201: Csms, tmp_path: Path) -> AsyncIterator[RunningStation201]:
    station = await start_station(csms201, tmp_path)
    await csms201.wait_for("StatusNotification", where=is_status("Available"))
    yield station
    await station.stop()


def present_contract(running: RunningStation201, proof: ContractProof) -> list[Any]:
    """Plug the EV in and present its contract as an ISO 15118 stack would."""
    outcomes: list[Any] = []
    running.agent.station.subscribe(
        lambda e: outcomes.append(e) if isinstance(e, AuthorizationOutcome) else None
    )
    running.plug()
    running.agent.station.present_token(1, IdToken(EMAID, TokenType.EMAID, contract=proof))
    return outcomes


async def test_c07_contract_ocsp_data_goes_to_the_csms_and_a_valid_contract_charges(
    csms201: Csms, running: RunningStation201
) -> None:
    present_contract(running, ContractProof(ocsp=(OCSP,)))
    authorize = await csms201.wait_for("Authorize")
    assert authorize["idToken"] == {"idToken": EMAID, "type": "eMAID"}
    assert authorize["iso15118CertificateHashData"] == [
        {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "a" * 64,
            "issuerKeyHash": "b" * 64,
            "serialNumber": "0123456789",
            "responderURL": "http://ocsp.example.test",
        }
    ]
    assert "certificate" not in authorize
    await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["transactionInfo"].get("chargingState") == "Charging"
    )
    with_token = [e for e in csms201.calls("TransactionEvent") if "idToken" in e]
    assert with_token[0]["idToken"] == {"idToken": EMAID, "type": "eMAID"}
    assert running.agent.hardware[1].plant.contactor_closed


async def test_c07_the_contract_certificate_chain_is_sent_when_that_is_what_the_ev_gave(
    csms201: Csms, running: RunningStation201
) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    present_contract(running, ContractProof(certificate_pem=pem))
    authorize = await csms201.wait_for("Authorize")
    assert authorize["certificate"] == pem
    assert "iso15118CertificateHashData" not in authorize


@pytest.mark.parametrize("status", ["CertificateRevoked", "ContractCancelled", "CertChainError"])
async def test_c07_a_contract_the_csms_cannot_validate_does_not_charge(
    csms201: Csms, running: RunningStation201, status: str
) -> None:
    csms201.behaviour.contract_status = status
    outcomes = present_contract(running, ContractProof(ocsp=(OCSP,)))
    await csms201.wait_for("Authorize")
    await wait_until(lambda: bool(outcomes), "the verdict", max_yields=2000)
    assert not outcomes[0].result.accepted
    await settle(50)
    evse = running.agent.station.evses[1]
    assert evse.state == SessionPhase.PLUGGED
    assert csms201.calls("TransactionEvent") == []
    assert not running.agent.hardware[1].plant.contactor_closed
