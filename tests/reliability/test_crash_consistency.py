"""Crash consistency: kill -9 a real `cpagent run` at random moments across many
transactions, restart it each time, and hold the CSMS's ledger to "nothing lost,
nothing duplicated" on OCPP 1.6J and 2.0.1.

One test run is a seeded plan (the seed is printed; set CPAGENT_CHAOS_SEED to replay
it): a number of agent lives, each but the last ended by SIGKILL. Meanwhile a driver
runs transactions one after another through the agent's local API, as a user would
(plug, tap a card, let it charge a few samples, then unplug, tap again or have the CSMS
stop it). Each kill lands at a random moment chosen from three kinds:

- `timer`: anywhere (booting, authorizing, mid-SQLite-commit, between transactions);
- `answer`: right as the CSMS answers a transaction message, so the station may die
  with the answer unread or unpersisted (the window where the spec allows a repeat);
- `in_flight`: while a transaction message waits for an answer the CSMS holds back.

After the last life the agent stops cleanly, and the test checks the ledger
(tests/reliability/ledger.py): each transaction started once and stopped once (a
transaction cut by a kill is stopped with PowerLoss after the restart), registers
monotonic, 2.0.1 seqNo gap-free, no duplicate, at most one rewind per kill, and every
message the store journalled delivered. The fast subset runs in the default suite; the
50-transaction runs are `slow`.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from simulator.api_client import ApiClient
from simulator.csms import Csms, CsmsBehaviour
from tests.integration.conftest import CP_ID
from tests.reliability.agent_process import AgentProcess, write_config
from tests.reliability.chaos_proxy import chaos_seed
from tests.reliability.ledger import TX_ACTIONS_16, TX_ACTIONS_201, Ledger, wire_time

CP = CP_ID
SUBPROTOCOLS = {"1.6": ("ocpp1.6",), "2.0.1": ("ocpp2.0.1",)}
STOP_REASONS = {"EVDisconnected", "Local", "Remote", "PowerLoss"}
STEP_TIMEOUT_S = 20.0  # one step of a transaction (a start, a sample, a stop)


# -- watching the CSMS ------------------------------------------------------------------------


class TxWatch:
    """Cheap questions about one token's transaction, asked of the CSMS on every change."""

    def __init__(self, version: str, csms: Csms) -> None:
        self.version = version
        self.csms = csms
        self.actions = TX_ACTIONS_16 if version == "1.6" else TX_ACTIONS_201

    def ids(self, token: str) -> list[str]:
        """The CSMS's ids of the transaction started for `token` (1.6: one per answered
        StartTransaction, repeats included), oldest first."""
        if self.version == "2.0.1":
            return sorted({
                str(p["transactionInfo"]["transactionId"])
                for p in self._answered("TransactionEvent")
                if p["eventType"] == "Started" and p.get("idToken", {}).get("idToken") == token
            })  # fmt: skip
        unique_ids = {
            r.unique_id
            for r in self.csms.received
            if r.action == "StartTransaction" and r.answered and r.payload["idTag"] == token
        }
        return [str(result["transactionId"]) for result in self._results(unique_ids)]

    def count(self, ids: list[str], kind: str) -> int:
        """How many answered messages of `kind` ("update" or "stop") name one of `ids`."""
        if self.version == "2.0.1":
            event = {"update": "Updated", "stop": "Ended"}[kind]
            return sum(
                p["eventType"] == event and p["transactionInfo"]["transactionId"] in ids
                for p in self._answered("TransactionEvent")
            )
        action = {"update": "MeterValues", "stop": "StopTransaction"}[kind]
        return sum(str(p.get("transactionId")) in ids for p in self._answered(action))

    def answered_tx(self) -> int:
        """How many transaction messages the CSMS has answered."""
        return sum(r.action in self.actions and r.answered for r in self.csms.received)

    def unanswered_tx(self) -> int:
        """How many transaction messages the CSMS received and did not answer."""
        return sum(r.action in self.actions and not r.answered for r in self.csms.received)

    def _answered(self, action: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.csms.received if r.action == action and r.answered]

    def _results(self, unique_ids: set[str]) -> list[dict[str, Any]]:
        results = []
        for direction, text in self.csms.frames(CP):
            if direction == "out" and text.startswith("[3,") and any(u in text for u in unique_ids):
                frame = json.loads(text)
                if frame[1] in unique_ids:
                    results.append(frame[2])
        return results


async def until(csms: Csms, predicate: Callable[[], bool], what: str) -> None:
    """Await a condition on what the CSMS received; fail saying what was awaited."""
    try:
        await csms.wait_until(predicate, STEP_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


# -- one agent life ---------------------------------------------------------------------------


@dataclass
class Plan:
    """The seeded run: how many kills, how many transactions at least."""

    version: str
    kills: int
    transactions: int
    seed: int


@dataclass
class Progress:
    """What the driver has done so far, over every life."""

    tokens: list[str]
    stops: dict[str, str]  # token -> how it was stopped ("killed" if a kill came first)


async def drive(
    api: ApiClient, csms: Csms, watch: TxWatch, rng: random.Random, progress: Progress,
    *, boots_before: int, until_started: int | None,
) -> None:  # fmt: skip
    """Once the station booted, run transactions one after another (until
    `until_started` have started at the CSMS, or forever): plug, tap, a few samples, one
    of three stops, unplug."""

    def booted() -> bool:
        return len(csms.calls("BootNotification")) > boots_before

    def started() -> int:
        return sum(bool(watch.ids(t)) for t in progress.tokens)

    await until(csms, booted, "the boot")
    while until_started is None or started() < until_started:
        await one_transaction(api, csms, watch, rng, progress)


async def one_transaction(
    api: ApiClient, csms: Csms, watch: TxWatch, rng: random.Random, progress: Progress
) -> None:
    """One transaction with a new token: plug and tap (either order), 0-2 samples, a
    stop by unplugging, by the same card or by the CSMS, then the cable out."""
    token = f"CRASH-{len(progress.tokens) + 1:03d}"
    progress.tokens.append(token)
    progress.stops[token] = "killed"
    if rng.random() < 0.5:
        await api.plug(1)
        await api.tap(1, token)
    else:
        await api.tap(1, token)
        await api.plug(1)
    await until(csms, lambda: bool(watch.ids(token)), f"the start of {token}")
    samples = rng.randint(0, 2)
    await until(
        csms, lambda: watch.count(watch.ids(token), "update") >= samples, f"{token} samples"
    )
    how = rng.choice(["unplug", "tap", "remote"])
    if how == "unplug":
        await api.unplug(1)
    elif how == "tap":
        await api.tap(1, token)
    else:
        await remote_stop(csms, watch.version, watch.ids(token)[-1])
    await until(csms, lambda: watch.count(watch.ids(token), "stop") >= 1, f"{token} stop")
    progress.stops[token] = how
    if how != "unplug":
        await api.unplug(1)


async def remote_stop(csms: Csms, version: str, transaction_id: str) -> None:
    """Ask the station to stop a transaction (the answer does not matter: it may be over)."""
    if version == "1.6":
        payload: dict[str, Any] = {"transactionId": int(transaction_id)}
        await csms.call(CP, "RemoteStopTransaction", payload)
    else:
        await csms.call(CP, "RequestStopTransaction", {"transactionId": transaction_id})


async def kill_trigger(csms: Csms, watch: TxWatch, rng: random.Random) -> str:
    """Return at a random moment of this life (what kind it was); the caller kills."""
    kind = rng.choices(["timer", "answer", "in_flight"], weights=[5, 3, 2])[0]
    if kind == "timer":
        # The chaos itself is timed, not a wait for the world: any moment will do.
        await asyncio.sleep(rng.uniform(0.0, 3.0))
    elif kind == "answer":
        target = watch.answered_tx() + rng.randint(1, 6)
        await csms.wait_until(lambda: watch.answered_tx() >= target, timeout_s=120)
    else:
        target = watch.answered_tx() + rng.randint(0, 4)
        await csms.wait_until(lambda: watch.answered_tx() >= target, timeout_s=120)
        held = watch.unanswered_tx()
        for action in watch.actions:
            csms.behaviour.ignore_next[action] = 1
        await csms.wait_until(lambda: watch.unanswered_tx() > held, timeout_s=120)
    return kind


async def run_crash_plan(plan: Plan, tmp_path: Path) -> tuple[Ledger, Progress]:
    """Run the plan against a fresh CSMS and store; return the CSMS's ledger after a
    clean stop (asserting the store's journal matches it) and what the driver did."""
    rng = random.Random(plan.seed)
    config, db = tmp_path / "agent.yaml", tmp_path / "agent.db"
    progress = Progress([], {})
    kinds: list[str] = []
    async with Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS[plan.version]) as csms:
        write_config(config, version=plan.version, csms_url=csms.url, store=db)
        watch = TxWatch(plan.version, csms)
        for life in range(plan.kills + 1):
            agent = AgentProcess(config)
            boots = len(csms.calls("BootNotification"))
            await agent.start()
            try:
                async with agent.api() as api:
                    kind = await run_life(
                        agent, api, csms, watch, rng, progress,
                        boots_before=boots, plan=plan, last=life == plan.kills,
                    )  # fmt: skip
            except BaseException:
                print(f"agent log (life {life}):\n{agent.tail()}")
                await agent.kill()
                raise
            if kind is not None:
                kinds.append(kind)
                csms.behaviour.ignore_next.clear()
                await csms.wait_disconnected(CP)
        ledger = Ledger(plan.version, csms)
    with Store(db) as store:
        ledger.assert_matches_journal(store)
    print(
        f"{plan.version}: {len(ledger.sessions)} transactions, kills {kinds}, "
        f"{ledger.rewinds} rewind(s) with {len(ledger.repeats)} copies, "
        f"{sum(s.stop_reason == 'PowerLoss' for s in ledger.sessions)} PowerLoss stop(s)"
    )
    return ledger, progress


async def run_life(
    agent: AgentProcess, api: ApiClient, csms: Csms, watch: TxWatch, rng: random.Random,
    progress: Progress, *, boots_before: int, plan: Plan, last: bool,
) -> str | None:  # fmt: skip
    """Drive one agent life: killed at a random moment (return how it was chosen), or,
    for the last, run the remaining transactions, let the outbox drain and stop it with
    SIGTERM (return None). Fails if the agent exits by itself or the driver fails."""
    driver = asyncio.create_task(
        drive(api, csms, watch, rng, progress, boots_before=boots_before,
              until_started=plan.transactions if last else None)
    )  # fmt: skip
    exited = asyncio.create_task(agent.wait_exit())
    killer = None if last else asyncio.create_task(kill_trigger(csms, watch, rng))
    tasks = {driver, exited, *([killer] if killer else [])}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            raise AssertionError(f"the agent exited by itself ({agent.returncode})")
        if killer is None or driver.done():
            driver.result()  # a failure of the driver (or of the agent) is raised here
            if killer is not None:
                raise AssertionError("the driver stopped without a kill")
            await drained(api, csms, watch)
            assert await agent.terminate() == 0, "the agent did not stop cleanly"
            return None
        kind = killer.result()
        await agent.kill()
        assert agent.returncode == -signal.SIGKILL
        return kind
    finally:
        for task in tasks:
            task.cancel()
        # After a kill the driver fails (API gone, CSMS call cut): expected, dropped.
        await asyncio.gather(*tasks, return_exceptions=True)


async def drained(api: ApiClient, csms: Csms, watch: TxWatch) -> None:
    """Return once the station's outbox is empty: while its API says messages wait,
    await the CSMS answering one more (every pending entry ends in a message: a
    transaction's last entry is its stop)."""
    while await _one_more_answer(api, csms, watch):
        pass


async def _one_more_answer(api: ApiClient, csms: Csms, watch: TxWatch) -> bool:
    """If the station's outbox is not empty, await the CSMS answering one more message
    and return True; False when it is empty."""
    seen = watch.answered_tx()  # before asking, so an answer in between is not missed
    if not (await api.status())["outbox_pending"]:
        return False
    await until(csms, lambda: watch.answered_tx() > seen, "the outbox to drain")
    return True


#: The pinned bug (test_e12_power_loss_ended_is_not_dated_before_the_events_that_preceded_it):
#: a PowerLoss stop dated at the last meter reading, before later events. Set to False
#: once agent/core/station.py recover_interrupted() is fixed.
KNOWN_POWER_LOSS_TIME_BUG = False


#: The stop reason of a transaction the driver saw through to its stop.
REASON_OF = {"unplug": "EVDisconnected", "tap": "Local", "remote": "Remote"}


def assert_crash_consistent(ledger: Ledger, progress: Progress, plan: Plan) -> None:
    """The ledger's own rules, plus: at most one rewind per kill, every transaction for
    a token the driver used, each token at most once, stop reasons as done (any for a
    transaction a kill cut short). A failure that is only the pinned bug is reported as
    xfail after every other check passed."""
    pinned = _set_aside_known_bug(ledger) if KNOWN_POWER_LOSS_TIME_BUG else []
    sessions = ledger.assert_consistent(max_rewinds=plan.kills)
    assert len(sessions) >= plan.transactions
    tokens = [s.token for s in sessions]
    assert len(set(tokens)) == len(tokens), tokens
    assert all(t is not None and t.startswith("CRASH-") for t in tokens), tokens
    assert {s.stop_reason for s in sessions} <= STOP_REASONS
    for session in sessions:
        how = progress.stops[str(session.token)]
        assert how == "killed" or session.stop_reason == REASON_OF[how], (session.key, how)
    if pinned:
        pytest.xfail(f"known bug: PowerLoss stop dated before earlier events in {pinned}")


def _set_aside_known_bug(ledger: Ledger) -> list[str]:
    """Date each PowerLoss stop that predates its transaction's previous message at that
    message (so the other checks still run); return those transactions."""
    pinned = []
    for session in ledger.sessions:
        if session.stop_reason == "PowerLoss" and len(session.times) > 1:
            before = max(session.times[:-1])
            if session.times[-1] < before:
                session.times[-1] = before
                pinned.append(session.key)
    return pinned


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    version: str, tmp_path: Path
) -> None:
    """The fast subset: 3 kills over at least 4 transactions."""
    plan = Plan(version, kills=3, transactions=4, seed=chaos_seed())
    assert_crash_consistent(*await run_crash_plan(plan, tmp_path), plan)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_kill_9_across_50_transactions_loses_and_duplicates_nothing(
    version: str, tmp_path: Path
) -> None:
    """The long run: 40 kills over at least 50 transactions."""
    plan = Plan(version, kills=40, transactions=50, seed=chaos_seed())
    assert_crash_consistent(*await run_crash_plan(plan, tmp_path), plan)


# -- a fixed bug, kept as a regression test -------------------------------------------


async def test_e12_power_loss_ended_is_not_dated_before_the_events_that_preceded_it(
    tmp_path: Path,
) -> None:
    """2.0.1: after kill -9 the transaction ends (PowerLoss) no earlier than the last
    event the station had sent for it: here the EV suspending, a second after the
    last meter reading (periodic samples off)."""
    config, db = tmp_path / "agent.yaml", tmp_path / "agent.db"
    async with Csms(CsmsBehaviour(), subprotocols=SUBPROTOCOLS["2.0.1"]) as csms:
        settings = {"SampledDataCtrlr/TxUpdatedInterval": 0}
        write_config(config, version="2.0.1", csms_url=csms.url, store=db, settings=settings)
        agent = AgentProcess(config)
        await agent.start()
        try:
            await csms.wait_for("BootNotification", timeout_s=STEP_TIMEOUT_S)
            async with agent.api() as api:
                await api.plug(1)
                await api.tap(1, "CLOCK-CARD")
                charging = lambda e: e["transactionInfo"].get("chargingState") == "Charging"  # noqa: E731
                await csms.wait_for("TransactionEvent", where=charging)
                # Let the wall clock move on: the suspension must come clearly after the
                # last meter reading (the start's) for the order to be visible in ms.
                await asyncio.sleep(1.1)
                await api.pause_ev(1)
                suspended = await csms.wait_for(
                    "TransactionEvent",
                    where=lambda e: e["transactionInfo"].get("chargingState") == "SuspendedEV",
                )
            await agent.kill()
            await csms.wait_disconnected(CP)
            agent = AgentProcess(config)
            await agent.start()
            ended = await csms.wait_for(
                "TransactionEvent", where=lambda e: e["eventType"] == "Ended",
                timeout_s=STEP_TIMEOUT_S,
            )  # fmt: skip
            assert await agent.terminate() == 0
        finally:
            await agent.kill()
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert wire_time(ended["timestamp"]) >= wire_time(suspended["timestamp"])
