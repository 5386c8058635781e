"""Network chaos: a TCP proxy between the station and its CSMS drops, stalls, half-opens
and resets the connection mid-frame while transactions run, on OCPP 1.6J and 2.0.1.

The station is the real agent (in-process, simulated EVSE) pointed at
tests/reliability/chaos_proxy.py, which forwards to the test CSMS and applies a seeded
schedule of faults (the seed is printed; CPAGENT_CHAOS_SEED replays it). A driver runs
transactions one after another at the station, whatever the link is doing: offline
starts are allowed for unknown cards, so a card tapped while the link is down still
starts a transaction that the CSMS must learn about later. Once every fault has fired
and enough transactions are done, the link is left alone, the outbox drains, and the
CSMS's ledger (tests/reliability/ledger.py) must show each transaction started once
and stopped once, registers monotonic, 2.0.1 seqNo gap-free, no duplicate, and no more
rewinds than reconnections plus failed attempts; the store must have nothing left.
The short scenario runs in the default suite; the long one is `slow`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import RunningStation, until
from tests.integration.v201_station import make_config_201
from tests.reliability.chaos_proxy import ChaosProxy, Fault, chaos_seed, schedule
from tests.reliability.ledger import Ledger

SUBPROTOCOLS = {"1.6": ("ocpp1.6",), "2.0.1": ("ocpp2.0.1",)}
RESPONSE_TIMEOUT_S = 2.0
#: Samples every second, retries after a second and (nearly) never given up, offline
#: starts for any card, a websocket ping every 2 s.
SETTINGS: dict[str, dict[str, Any]] = {
    "1.6": {
        "MeterValueSampleInterval": 1,
        "TransactionMessageRetryInterval": 1,
        "TransactionMessageAttempts": 100,
        "AllowOfflineTxForUnknownId": True,
        "LocalAuthorizeOffline": True,
        "WebSocketPingInterval": 2,
    },
    "2.0.1": {
        "SampledDataCtrlr/TxUpdatedInterval": 1,
        "OCPPCommCtrlr/MessageAttemptInterval(TransactionEvent)": 1,
        "OCPPCommCtrlr/MessageAttempts(TransactionEvent)": 100,
        "AuthCtrlr/OfflineTxForUnknownIdEnabled": True,
        "AuthCtrlr/LocalAuthorizeOffline": True,
        "OCPPCommCtrlr/WebSocketPingInterval": 2,
    },
}
STEP_TIMEOUT_S = 60.0  # a transaction step may wait out a stall, a half-open, a reconnect


@dataclass(frozen=True)
class Scenario:
    """How much chaos: transactions at least, faults, and their ranges."""

    transactions: int
    faults: int
    chunks: tuple[int, int]
    stall_s: tuple[float, float]
    half_open_s: tuple[float, float]


SHORT = Scenario(transactions=4, faults=4, chunks=(3, 12), stall_s=(0.3, 2.5),
                 half_open_s=(0.5, 2.0))  # fmt: skip
LONG = Scenario(transactions=30, faults=40, chunks=(5, 40), stall_s=(0.2, 5.0),
                half_open_s=(0.5, 25.0))  # fmt: skip


async def one_transaction(running: RunningStation, rng: random.Random, token: str) -> None:
    """At the station, whatever the link does: plug and tap (either order), 0-2
    samples, a stop by unplugging or by the same card, the cable out."""
    agent = running.agent
    evse = agent.station.evses[1]
    if rng.random() < 0.5:
        running.plug()
        running.tap(token)
    else:
        running.tap(token)
        running.plug()
    await until(agent, lambda: evse.tx is not None, STEP_TIMEOUT_S)
    tx = evse.tx
    assert tx is not None
    samples = rng.randint(0, 2)

    def sampled() -> int:  # periodic meter samples journalled
        return sum("energy_import_wh" in e.payload for e in agent.store.tx_entries(tx.local_id))

    await until(agent, lambda: sampled() >= samples, STEP_TIMEOUT_S)
    if rng.random() < 0.5:
        running.unplug()
        await until(agent, lambda: evse.tx is None, STEP_TIMEOUT_S)
    else:
        running.tap(token)
        await until(agent, lambda: evse.tx is None, STEP_TIMEOUT_S)
        running.unplug()


def failed_attempts(store: Store) -> int:
    """Failed delivery attempts (timeouts, CALLERRORs) over every journalled entry."""
    last = store.last_tx_for_evse(1)
    local_ids = range(1, (last.local_id if last else 0) + 1)
    return sum(e.attempts for local_id in local_ids for e in store.tx_entries(local_id))


async def run_chaos(version: str, scenario: Scenario, seed: int, tmp_path: Path) -> None:
    """Run the scenario; assert the ledger, the store and that every fault fired."""
    rng = random.Random(seed)
    steps = schedule(seed, scenario.faults, chunks=scenario.chunks, stall_s=scenario.stall_s,
                     half_open_s=scenario.half_open_s)  # fmt: skip
    async with (
        Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS[version]) as csms,
        ChaosProxy("127.0.0.1", csms.port, steps) as proxy,
    ):
        config = make_config_201(
            proxy.url(), tmp_path, settings=SETTINGS[version], ocpp_version=version,
            extra={"csms": {"response_timeout_s": RESPONSE_TIMEOUT_S}},
        )  # fmt: skip
        running = RunningStation(config)
        await running.start()
        try:
            agent = running.agent
            count = 0
            while count < scenario.transactions or proxy.pending:
                count += 1
                await one_transaction(running, rng, f"CHAOS-{count:03d}")
            await until(agent, lambda: agent.store.pending_count() == 0, STEP_TIMEOUT_S)
            attempts = failed_attempts(agent.store)
            reconnects = proxy.connections - 1
        finally:
            await running.stop()
        ledger = Ledger(version, csms)
    kinds = [step.fault for _, step in proxy.applied]
    print(f"{version}: {count} transactions, faults {[str(k) for k in kinds]}, "
          f"{reconnects} reconnect(s), {attempts} failed attempt(s), "
          f"{ledger.rewinds} rewind(s) with {len(ledger.repeats)} copies")  # fmt: skip
    assert set(kinds) == set(Fault)  # every kind of fault happened
    sessions = ledger.assert_consistent(max_rewinds=reconnects + attempts)
    assert [s.token for s in sessions] == [f"CHAOS-{n:03d}" for n in range(1, count + 1)]
    assert {s.stop_reason for s in sessions} <= {"EVDisconnected", "Local"}
    with Store(tmp_path / "agent.db") as store:
        ledger.assert_matches_journal(store)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_drops_stalls_half_opens_and_mid_frame_resets_lose_and_duplicate_nothing(
    version: str, tmp_path: Path
) -> None:
    """The short scenario: one fault of each kind over at least 4 transactions."""
    await run_chaos(version, SHORT, chaos_seed(), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_long_chaotic_link_loses_and_duplicates_nothing(
    version: str, tmp_path: Path
) -> None:
    """The long scenario: 40 faults over at least 30 transactions."""
    await run_chaos(version, LONG, chaos_seed(), tmp_path)
