"""The outbox sender driving an RPC endpoint itself (Pipeline): the next entry is read,
built, validated and serialized while the CSMS answers the current one, and nothing about
what the CSMS receives changes: each entry once, in order, one CALL outstanding at a time
(OCPP-J), an entry sent only after the one before it was answered (or given up), and an
entry marked delivered only once its answer arrived.

A real RpcEndpoint on an in-memory transport; the CSMS at its far end is a task that
answers each CALL (or refuses, or hangs up) and checks that no other CALL was waiting
for an answer when one arrived. Real stores (three ways of committing). Every test runs
over a transport that can only send from a coroutine, and over one that can also send
at once (as the agent's websocket), where a prepared entry leaves from the delivery of
the answer before it (CallInFlight.then_send).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.core.ports import OutboxEntry, TxEventKind
from agent.ocpp.dialects import OCPP16
from agent.ocpp.outbox import NotYet, OutboxCall, OutboxSender, Pipeline, Skip
from agent.ocpp.rpc import RpcEndpoint
from agent.store import Store
from agent.store.overlay import PendingEntry
from agent.store.readahead import ReadAhead
from tests.fakes import FakeClock
from tests.unit.test_outbox_replay import T0, file_states, mode, store, transaction
from tests.unit.test_rpc import MemoryTransport

__all__ = ["mode", "store"]  # the fixtures, shared with test_outbox_replay.py

WAIT_S = 5.0


class RecordingTransport(MemoryTransport):
    """The charge point's end, noting each CALL as it goes on the wire."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def send(self, message: str) -> None:
        self.events.append(f"sent {json.loads(message)[3]['connectorId']}")
        await super().send(message)


class DirectRecordingTransport(RecordingTransport):
    """... that can also send at once, as the agent's websocket (send_now)."""

    def send_now(self, message: str) -> bool:
        if self.closed:
            return False
        self.events.append(f"sent {json.loads(message)[3]['connectorId']} from the answer")
        self.outbox.put_nowait(message)
        return True


@dataclass
class Csms:
    """The far end: answers every CALL of the transport's outbox, in arrival order."""

    transport: MemoryTransport
    received: list[list[Any]] = field(default_factory=list)
    refuse: dict[int, int] = field(default_factory=dict)  # connectorId -> times to refuse
    hang_up_at: int | None = None  # connectorId of the CALL at which to close
    outstanding: str | None = None  # the id of the CALL not answered yet
    events: list[str] = field(default_factory=list)  # what happened on the wire, in order
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    next_transaction_id: int = 100

    async def run(self) -> None:
        while True:
            frame = json.loads(await self.transport.outbox.get())
            assert self.outstanding is None, "a CALL arrived while another was unanswered"
            _, unique_id, action, payload = frame
            self.received.append(frame)
            if payload["connectorId"] == self.hang_up_at:
                self.transport.close()
                return
            self.outstanding = unique_id
            await asyncio.sleep(0)  # the charge point runs meanwhile (one loop turn)
            self.outstanding = None
            if self.refuse.get(payload["connectorId"], 0) > 0:
                self.refuse[payload["connectorId"]] -= 1
                self.events.append(f"refused {payload['connectorId']}")
                self.transport.inbox.put_nowait(json.dumps([4, unique_id, "InternalError", "", {}]))
            else:
                self.events.append(f"answered {payload['connectorId']}")
                self.transport.inbox.put_nowait(json.dumps([3, unique_id, self._answer(action)]))
            self.answered.set()

    def _answer(self, action: str) -> dict[str, Any]:
        if action == "StartTransaction":
            self.next_transaction_id += 1
            status = {"status": "Accepted"}
            return {"idTagInfo": status, "transactionId": self.next_transaction_id}
        return {}


@dataclass
class Messages:
    """The adapter's side: each entry becomes a 1.6 CALL whose connectorId is its seq (so
    the CSMS's log names the entries); a MeterValues needs the transactionId the answer to
    its StartTransaction brings (NotYet before it)."""

    csms: Csms
    skip: set[int] = field(default_factory=set)
    transaction_ids: dict[int, int] = field(default_factory=dict)  # tx local id -> CSMS id
    builds: list[tuple[int, bool]] = field(default_factory=list)  # (seq, ahead)

    def build(self, entry: OutboxEntry, ahead: bool) -> OutboxCall:
        self.builds.append((entry.seq, ahead))
        self.csms.events.append(f"built {entry.seq}{' ahead' if ahead else ''}")
        if entry.seq in self.skip:
            raise Skip
        if entry.kind == TxEventKind.STARTED:
            payload = {"connectorId": entry.seq, "idTag": "TAG", "meterStart": 0}
            payload["timestamp"] = "2025-02-01T06:00:00Z"

            def started(answer: dict[str, Any]) -> None:
                self.transaction_ids[entry.tx_local_id] = answer["transactionId"]

            return OutboxCall("StartTransaction", payload, started)
        transaction_id = self.transaction_ids.get(entry.tx_local_id)
        if transaction_id is None:
            if ahead:
                raise NotYet
            raise Skip  # its start was given up
        value = {"timestamp": "2025-02-01T06:00:00Z", "sampledValue": [{"value": "1"}]}
        payload = {"connectorId": entry.seq, "transactionId": transaction_id}
        return OutboxCall("MeterValues", payload | {"meterValue": [value]})


@dataclass
class Wire:
    transport: MemoryTransport
    endpoint: RpcEndpoint
    csms: Csms
    messages: Messages
    clock: FakeClock

    def sender(self, store: Store, attempts: int = 3) -> OutboxSender:
        return OutboxSender(
            store,
            Pipeline(self.endpoint, self.messages.build),
            clock=self.clock,
            attempts=lambda: attempts,
            retry_interval_s=lambda: 10.0,
        )


@pytest.fixture(params=["send", "send_now"])
async def wire(request: pytest.FixtureRequest) -> AsyncIterator[Wire]:
    events: list[str] = []
    direct = request.param == "send_now"
    transport = DirectRecordingTransport(events) if direct else RecordingTransport(events)
    endpoint = RpcEndpoint(transport, OCPP16, handlers={})
    csms = Csms(transport, events=events)
    tasks = [asyncio.create_task(endpoint.serve()), asyncio.create_task(csms.run())]
    yield Wire(transport, endpoint, csms, Messages(csms), FakeClock(T0))
    transport.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def drain(run: asyncio.Task[None], done: Callable[[], bool], clock: FakeClock) -> None:
    """Wait until `done()`, moving the fake clock past each retry wait."""
    async with asyncio.timeout(WAIT_S):
        while not done():
            if clock.deadlines():
                clock.advance(60)
            await asyncio.sleep(0)  # one loop turn at a time
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


def seqs_received(csms: Csms) -> list[int]:
    return [int(frame[3]["connectorId"]) for frame in csms.received]


async def test_each_entry_is_sent_once_in_order_and_marked_delivered(
    store: Store, wire: Wire
) -> None:
    a = transaction(store, 40)
    b = transaction(store, 40, evse_id=2)
    assert store.flush(10)
    expected = [e.seq for e in store.tx_entries(a.local_id) + store.tx_entries(b.local_id)]
    run = asyncio.create_task(wire.sender(store).run())
    await drain(run, lambda: store.pending_count() == 0, wire.clock)

    assert seqs_received(wire.csms) == expected
    transaction_ids = {frame[3].get("transactionId") for frame in wire.csms.received[1:41]}
    assert transaction_ids == {wire.messages.transaction_ids[a.local_id]}


async def test_the_next_entry_is_built_while_the_csms_answers_and_sent_after_the_answer(
    store: Store, wire: Wire
) -> None:
    transaction(store, 3)
    assert store.flush(10)
    started, first, second, third, ended = (e.seq for e in store.tx_entries(1))
    run = asyncio.create_task(wire.sender(store).run())
    await drain(run, lambda: store.pending_count() == 0, wire.clock)

    # The first MeterValues waits for the start's answer (it needs its transactionId);
    # every later entry is built while the CSMS answers the one before it, and sent from
    # the delivery of that answer where the transport can send at once.
    chained = " from the answer" if isinstance(wire.transport, DirectRecordingTransport) else ""
    assert wire.csms.events == [
        f"built {started}",
        f"sent {started}",
        f"built {first} ahead",  # NotYet: the transactionId is not known
        f"answered {started}",
        f"built {first}",
        f"sent {first}",
        f"built {second} ahead",
        f"answered {first}",
        f"sent {second}{chained}",
        f"built {third} ahead",
        f"answered {second}",
        f"sent {third}{chained}",
        f"built {ended} ahead",
        f"answered {third}",
        f"sent {ended}{chained}",
        f"answered {ended}",
    ]


async def test_a_refused_entry_is_sent_again_before_the_one_prepared_after_it(
    store: Store, wire: Wire
) -> None:
    transaction(store, 3)
    assert store.flush(10)
    started, first, second, third, ended = (e.seq for e in store.tx_entries(1))
    wire.csms.refuse = {first: 2}
    run = asyncio.create_task(wire.sender(store).run())
    await drain(run, lambda: store.pending_count() == 0, wire.clock)

    assert seqs_received(wire.csms) == [started, first, first, first, second, third, ended]
    # The next entry is prepared during each attempt; the one prepared while an attempt
    # was refused is dropped, the one prepared during the answered attempt is sent.
    assert wire.messages.builds.count((second, True)) == 3
    assert wire.messages.builds.count((second, False)) == 0
    assert {e.seq: e.attempts for e in store.tx_entries(1)}[first] == 2


async def test_an_entry_given_up_lets_the_next_one_go(tmp_path: Path, wire: Wire) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        transaction(store, 2)
        assert store.flush(10)
        started, first, second, ended = (e.seq for e in store.tx_entries(1))
        wire.csms.refuse = {first: 5}
        run = asyncio.create_task(wire.sender(store, attempts=2).run())
        await drain(run, lambda: store.pending_count() == 0, wire.clock)
        assert store.flush(10)

        assert seqs_received(wire.csms) == [started, first, first, second, ended]
        assert file_states(path) == {"delivered": 3, "dropped": 1}


async def test_a_skipped_entry_is_marked_without_a_message(store: Store, wire: Wire) -> None:
    transaction(store, 2)
    assert store.flush(10)
    started, first, second, ended = (e.seq for e in store.tx_entries(1))
    wire.messages.skip = {first}
    run = asyncio.create_task(wire.sender(store).run())
    await drain(run, lambda: store.pending_count() == 0, wire.clock)

    assert seqs_received(wire.csms) == [started, second, ended]


async def test_the_entry_answered_before_the_connection_dropped_stays_delivered(
    tmp_path: Path, wire: Wire
) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        transaction(store, 3)
        assert store.flush(10)
        started, first, second, *_ = (e.seq for e in store.tx_entries(1))
        wire.csms.hang_up_at = second  # after first was answered, while second is sent
        await asyncio.wait_for(wire.sender(store).run(), WAIT_S)  # returns: connection lost
        assert store.flush(10)

        assert seqs_received(wire.csms) == [started, first, second]
        assert file_states(path) == {"delivered": 2, "pending": 3}
        assert store.next_pending() == store.tx_entries(1)[2]  # second goes first next time


# -- the read-ahead the pipeline leans on -------------------------------------------------


def _pending(seq: int, state: str = "pending") -> PendingEntry:
    entry = OutboxEntry(seq, 1, TxEventKind.UPDATED, {}, T0, 0)
    return PendingEntry(entry, state, 0, seq - 1)


def test_an_entry_looked_past_while_pending_stays_held_for_its_mark() -> None:
    """The sender asks for the entry after n while n is in flight, then marks n: the
    read-ahead still holds n (no query), and n is still the lowest pending entry."""
    ahead = ReadAhead(lambda row: _pending(row[0]))
    ahead.fill(0, [(seq, seq - 1, _pending(seq)) for seq in (1, 2, 3)])
    following = ahead.next_after(1)
    assert following is not None and following.entry.seq == 2
    assert ahead.get(1) == _pending(1)
    first = ahead.next_after(0)
    assert first is not None and first.entry.seq == 1
    ahead.update(_pending(1, "delivered"))
    ahead.update(_pending(2, "dropped"))
    after_settled = ahead.next_after(0)
    assert after_settled is not None and after_settled.entry.seq == 3
    assert ahead.next_after(3) is None  # the run is used up: the store reads on


def test_rows_read_ahead_are_parsed_one_at_a_time_when_asked_for() -> None:
    """A run is held as read; each entry is parsed when the sender first asks for it (or
    a mark or a position looks it up), once."""
    parsed: list[int] = []

    def load(row: tuple[Any, ...]) -> PendingEntry:
        parsed.append(row[0])
        return _pending(row[0])

    ahead = ReadAhead(load)
    ahead.fill(0, [(seq, seq - 1, (seq, "row as read")) for seq in (1, 2, 3)])
    assert parsed == []
    first = ahead.next_after(0)
    assert first == _pending(1) and parsed == [1]
    assert ahead.get(1) == _pending(1) and parsed == [1]  # parsed once
    ahead.update(_pending(1, "delivered"))
    following = ahead.next_after(0)  # 1 is settled: 2, parsed now
    assert following == _pending(2) and parsed == [1, 2]
    assert ahead.position(1, 3) == 2 and parsed == [1, 2, 3]
