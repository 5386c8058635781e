"""The CSMS's ledger of transactions, whatever the OCPP version, and what it must show.

Built from what a test CSMS (simulator/csms.py) answered: OCPP 1.6 StartTransaction,
MeterValues (with a transactionId) and StopTransaction, OCPP 2.0.1 TransactionEvent
Started / Updated / Ended, folded into one `Session` per transaction. The 1.6
transactionId of a start is read from the CSMS's own CALLRESULT frame, not guessed.

Repeats: what the spec lets a station send twice, and what it does not
---------------------------------------------------------------------
Transaction messages are delivered at least once: OCPP 1.6 section 4.7 (they are queued
and sent again until the Central System has answered them) and OCPP 2.0.1 E12/E13 (queued
while offline, resent after a CALLERROR or when no answer came within the message
timeout). A message the CSMS answered, whose answer the station never learned (the
answer lost in a cut, late after a timeout, or received but not yet persisted when the
station was killed) is therefore sent again: no protocol closes that window, and the
spec gives the CSMS what it needs to recognise the copy:

- 2.0.1: `seqNo` numbers the events of a transaction so the CSMS can tell what it
  already has; a repeated (transactionId, seqNo) with the same content is a copy.
- 1.6: a re-sent StartTransaction carries the same connectorId, idTag, meterStart and
  timestamp; a CSMS answers it as the start it already has (this ledger models that
  CSMS: the copy's transactionId becomes an alias of the first one, as the station
  uses whichever id it persisted).

So the ledger accepts *repeats* the way an at-least-once, in-order channel produces
them: after an interruption the station may go back (a *rewind*) and send again, in
the same order, the messages from some point on whose delivery it had not yet recorded
durably, then carry on. A copy must equal its original byte for byte (1.6: with its
transactionId read through the start's alias). Everything else that arrives twice is a
bug: a rewind that breaks off for a new message before it repeated everything after its
starting point (something was skipped, or sent twice out of order), or in 2.0.1 the
same (transactionId, seqNo) with another content. Tests bound the number of rewinds by
their causes (kills, reconnects, failed attempts).

After removing repeats, `Ledger.assert_consistent` holds the station to: each
transaction started once and stopped once (start first, stop last; every start has its
stop), 2.0.1 seqNo 0, 1, 2... without a gap, registers and message times never going
back, every sample between meter start and meter stop. `assert_matches_journal`
compares with the station's own store: every journalled message reached the CSMS, none
is still queued.

This module only reads: it never talks to the station or changes the CSMS.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.core.ports import TxEventKind
from agent.store import Store
from simulator.csms import Csms, Received

ENERGY = "Energy.Active.Import.Register"
TX_ACTIONS_16 = ("StartTransaction", "MeterValues", "StopTransaction")
TX_ACTIONS_201 = ("TransactionEvent",)
_CALLRESULT = 3


@dataclass
class Session:
    """One transaction as the CSMS saw it, whatever the version (repeats removed)."""

    key: str  # the CSMS's name for it: 1.6 transactionId, 2.0.1 transactionInfo.transactionId
    token: str | None = None
    meter_start_wh: float | None = None
    meter_stop_wh: float | None = None
    stop_reason: str | None = None
    stop_token: str | None = None
    registers: list[float] = field(default_factory=list)  # running samples, in order
    kinds: list[str] = field(default_factory=list)  # "start" / "update" / "stop", in order
    times: list[datetime] = field(default_factory=list)  # of each message, in order
    messages: list[str] = field(default_factory=list)  # each message's payload, as JSON
    offline: list[bool] = field(default_factory=list)  # 2.0.1's flag (always False in 1.6)
    seq_nos: list[int] = field(default_factory=list)  # 2.0.1 only
    aliases: list[str] = field(default_factory=list)  # 1.6: ids given to repeated starts
    repeats: int = 0  # copies of its messages the CSMS answered again (see module doc)


@dataclass(frozen=True)
class TxMessage:
    """One transaction message the CSMS answered, in arrival order."""

    index: int
    action: str
    payload: dict[str, Any]
    text: str  # the payload as canonical JSON: equal texts are the same message
    result: dict[str, Any]  # the CSMS's CALLRESULT payload


def wire_time(text: str) -> datetime:
    """A timestamp from the wire as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def registers_of(meter_values: list[dict[str, Any]], contexts: tuple[str, ...] = ()) -> list[float]:
    """The energy registers of meter values (of the given contexts, if any), in order."""
    return [
        float(v["value"])
        for mv in meter_values
        for v in mv["sampledValue"]
        if v.get("measurand", ENERGY) == ENERGY and (not contexts or v.get("context") in contexts)
    ]


def _answers(csms: Csms, cp_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The CALLRESULT payload the CSMS sent for each unique id (its raw frames)."""
    answers: dict[str, dict[str, Any]] = {}
    for cp_id in cp_ids:
        for direction, text in csms.frames(cp_id):
            if direction != "out":
                continue
            try:
                frame = json.loads(text)
            except ValueError:
                continue
            if isinstance(frame, list) and len(frame) == 3 and frame[0] == _CALLRESULT:
                answers[str(frame[1])] = frame[2]
    return answers


class Ledger:
    """What one CSMS answered of one station's transactions, folded per transaction."""

    def __init__(self, version: str, csms: Csms) -> None:
        if version not in ("1.6", "2.0.1"):
            raise ValueError(f"unknown OCPP version {version!r}")
        self.version = version
        actions = TX_ACTIONS_16 if version == "1.6" else TX_ACTIONS_201
        received = [
            r
            for r in csms.received
            if r.action in actions and (r.action != "MeterValues" or "transactionId" in r.payload)
        ]  # 1.6 clock-aligned MeterValues outside a transaction are not transaction messages
        self.unanswered = sum(not r.answered for r in received)
        answered = [r for r in received if r.answered]
        answers = _answers(csms, {r.charge_point_id for r in answered})
        self.messages = [self._message(i, r, answers) for i, r in enumerate(answered)]
        self.repeats: list[TxMessage] = []  # copies the spec lets the station send
        self.rewinds = 0  # how many times the station went back and sent copies
        # (the message a rewind still had to repeat, the new one sent instead): bugs
        self.out_of_order: list[tuple[TxMessage, TxMessage]] = []
        self.conflicts: list[tuple[TxMessage, TxMessage]] = []  # 2.0.1 seqNo reused
        self._sessions: dict[str, Session] = {}
        self._alias: dict[str, str] = {}
        self._fold()

    @staticmethod
    def _message(index: int, received: Received, answers: dict[str, dict[str, Any]]) -> TxMessage:
        payload = received.payload
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return TxMessage(index, received.action, payload, text, answers.get(received.unique_id, {}))

    # -- folding -------------------------------------------------------------------------

    def _fold(self) -> None:
        """Fold the answered messages into sessions, telling copies from new messages."""
        distinct: list[tuple[str, TxMessage]] = []  # (normalised text, first delivery)
        position: dict[str, int] = {}  # normalised text -> index in distinct
        by_seq: dict[tuple[str, int], TxMessage] = {}  # 2.0.1 (transactionId, seqNo)
        cursor: int | None = None  # replaying: the index the next copy must match
        for message in self.messages:
            text = self._normal(message)
            if cursor is not None and text == distinct[cursor][0]:
                self._repeat(message, distinct[cursor][1])
                cursor = cursor + 1 if cursor + 1 < len(distinct) else None
                continue
            if text in position:  # the station went back: a rewind starts here
                self.rewinds += 1
                self._repeat(message, distinct[position[text]][1])
                cursor = position[text] + 1 if position[text] + 1 < len(distinct) else None
                continue
            if cursor is not None:  # a rewind broke off: what it skipped came twice out of order
                self.out_of_order.append((distinct[cursor][1], message))
                cursor = None
            position[text] = len(distinct)
            distinct.append((text, message))
            if self.version == "2.0.1":
                seq_key = (message.payload["transactionInfo"]["transactionId"],
                           message.payload["seqNo"])  # fmt: skip
                if seq_key in by_seq:
                    self.conflicts.append((by_seq[seq_key], message))
                by_seq.setdefault(seq_key, message)
                self._fold_201(message)
            else:
                self._fold_16(message)

    def _normal(self, message: TxMessage) -> str:
        """The message's text with a 1.6 transactionId replaced by the transaction's first
        id, as a CSMS that recognised a repeated start would have had it."""
        if self.version == "1.6" and "transactionId" in message.payload:
            tx_id = self._key_16(str(message.payload["transactionId"]))
            payload = {**message.payload, "transactionId": tx_id}
            return json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return message.text

    def _repeat(self, copy: TxMessage, original: TxMessage) -> None:
        """Count a copy on its session; a 1.6 start copy's new id is an alias."""
        self.repeats.append(copy)
        if self.version == "1.6" and copy.action == "StartTransaction":
            key = self._key_16(str(original.result.get("transactionId")))
            alias = str(copy.result.get("transactionId"))
            if alias != key:
                self._alias[alias] = key
                self._session(key).aliases.append(alias)
            self._session(key).repeats += 1
            return
        self._session(self._key_of(copy)).repeats += 1

    def _key_of(self, message: TxMessage) -> str:
        if self.version == "2.0.1":
            key: str = message.payload["transactionInfo"]["transactionId"]
            return key
        if message.action == "StartTransaction":
            return self._key_16(str(message.result.get("transactionId")))
        return self._key_16(str(message.payload.get("transactionId")))

    def _key_16(self, transaction_id: str) -> str:
        return self._alias.get(transaction_id, transaction_id)

    def _session(self, key: str) -> Session:
        return self._sessions.setdefault(key, Session(key))

    @staticmethod
    def _note(session: Session, kind: str, message: TxMessage, at: str) -> None:
        session.kinds.append(kind)
        session.times.append(wire_time(at))
        session.messages.append(message.text)
        session.offline.append(message.payload.get("offline") is True)

    def _fold_16(self, message: TxMessage) -> None:
        p = message.payload
        session = self._session(self._key_of(message))
        if message.action == "StartTransaction":
            session.token, session.meter_start_wh = p["idTag"], float(p["meterStart"])
            self._note(session, "start", message, p["timestamp"])
        elif message.action == "MeterValues":
            session.registers += registers_of(p["meterValue"])
            self._note(session, "update", message, p["meterValue"][0]["timestamp"])
        else:
            session.stop_reason = p.get("reason", "Local")  # 1.6: Local if absent
            session.meter_stop_wh = float(p["meterStop"])
            session.stop_token = p.get("idTag")
            self._note(session, "stop", message, p["timestamp"])

    def _fold_201(self, message: TxMessage) -> None:
        p = message.payload
        session = self._session(self._key_of(message))
        token = p.get("idToken", {}).get("idToken")
        meter_values = p.get("meterValue", [])
        if p["eventType"] == "Started":
            session.token = token
            begin = registers_of(meter_values, ("Transaction.Begin",))
            session.meter_start_wh = begin[0] if begin else None
            self._note(session, "start", message, p["timestamp"])
        elif p["eventType"] == "Updated":
            session.token = session.token or token
            session.registers += registers_of(meter_values)
            self._note(session, "update", message, p["timestamp"])
        else:
            session.stop_reason = p["transactionInfo"].get("stoppedReason", "Local")
            end = registers_of(meter_values, ("Transaction.End",)) or registers_of(meter_values)
            session.meter_stop_wh = end[-1] if end else None
            session.stop_token = token
            self._note(session, "stop", message, p["timestamp"])
        session.seq_nos.append(p["seqNo"])

    # -- what it shows -------------------------------------------------------------------

    @property
    def sessions(self) -> list[Session]:
        """The transactions, in the order their first message arrived (orphans too)."""
        return list(self._sessions.values())

    def session_of(self, transaction_id: str) -> Session:
        """The transaction the CSMS knows by this id (1.6 aliases resolved); KeyError."""
        return self._sessions[self._key_16(transaction_id)]

    def tokens(self) -> list[str | None]:
        """The token of each transaction, in start order."""
        return [s.token for s in self.sessions]

    def assert_consistent(self, *, max_rewinds: int | None = None) -> list[Session]:
        """Assert nothing duplicated, nothing lost, every transaction whole; return them.

        `max_rewinds` bounds the rewinds by what may cause them (see module doc)."""
        assert not self.out_of_order, "delivered twice, out of order: " + "; ".join(
            f"#{b.index} {b.action} {b.text} came while #{a.index} {a.text} was not yet repeated"
            for a, b in self.out_of_order
        )
        assert not self.conflicts, "seqNo reused with other content: " + "; ".join(
            f"#{a.index} {a.text} / #{b.index} {b.text}" for a, b in self.conflicts
        )
        if max_rewinds is not None:
            assert self.rewinds <= max_rewinds, (
                f"the station went back {self.rewinds} times for at most {max_rewinds} "
                "causes; copies: " + "; ".join(f"#{m.index} {m.action}" for m in self.repeats)
            )
        for session in self.sessions:
            assert_whole(session)
        return self.sessions

    def assert_matches_journal(self, store: Store, evse_ids: Iterable[int] = (1,)) -> None:
        """Assert every message the store journalled reached the CSMS, once, and that none
        is still queued (read the store once the station has stopped)."""
        assert store.pending_count() == 0, f"{store.pending_count()} message(s) still queued"
        lasts = [store.last_tx_for_evse(evse_id) for evse_id in evse_ids]
        local_ids = range(1, max((tx.local_id for tx in lasts if tx), default=0) + 1)
        journalled = 0
        for local_id in local_ids:
            tx = store.get_transaction(local_id)
            entries = store.tx_entries(local_id)
            if self.version == "2.0.1":
                matching = [s for s in self.sessions if s.key.rsplit("-", 1)[-1] == str(local_id)]
                expected = len(entries)
            else:
                assert tx.csms_tx_id is not None, f"transaction {local_id} has no CSMS id"
                matching = [self.session_of(tx.csms_tx_id)]
                expected = sum(  # 1.6 sends nothing for entries without a meter sample
                    e.kind != TxEventKind.UPDATED or "energy_import_wh" in e.payload
                    for e in entries
                )
            assert len(matching) == 1, f"transaction {local_id}: {len(matching)} at the CSMS"
            assert len(matching[0].kinds) == expected, (
                f"transaction {local_id}: {expected} journalled, "
                f"{len(matching[0].kinds)} at the CSMS ({matching[0].kinds})"
            )
            journalled += 1
        assert journalled == len(self.sessions), (
            f"{journalled} journalled transactions, {len(self.sessions)} at the CSMS"
        )


def assert_whole(session: Session) -> Session:
    """One transaction whole and once: start first, stop last, one each, no message
    twice, 2.0.1 seqNo 0..n, times and registers never going back, samples between
    meter start and stop."""
    where = f"transaction {session.key}: "
    assert session.kinds and session.kinds[0] == "start", where + f"no start {session.kinds}"
    assert session.kinds[-1] == "stop", where + f"no stop {session.kinds}"
    assert session.kinds.count("start") == 1, where + f"started twice {session.kinds}"
    assert session.kinds.count("stop") == 1, where + f"stopped twice {session.kinds}"
    assert len(set(session.messages)) == len(session.messages), where + "a message came twice"
    assert session.times == sorted(session.times), (
        where
        + "times go back: "
        + ", ".join(
            f"{kind} {at.isoformat()}"
            for kind, at in zip(session.kinds, session.times, strict=True)
        )
    )
    assert session.registers == sorted(session.registers), where + f"{session.registers}"
    if session.seq_nos:  # 2.0.1: seqNo 0, 1, 2... in arrival order
        assert session.seq_nos == list(range(len(session.seq_nos))), where + f"{session.seq_nos}"
    assert session.meter_start_wh is not None and session.meter_stop_wh is not None, where
    assert session.meter_stop_wh >= session.meter_start_wh, where + "meter stop below start"
    for register in session.registers:  # + 1: 1.6 meterStop is whole Wh
        assert session.meter_start_wh <= register <= session.meter_stop_wh + 1, (
            where + f"sample {register} outside [{session.meter_start_wh}, {session.meter_stop_wh}]"
        )
    return session


def sessions_of(version: str, csms: Csms) -> list[Session]:
    """The transactions one CSMS answered, in start order."""
    return Ledger(version, csms).sessions


def assert_one_session(sessions: list[Session]) -> Session:
    """Exactly one transaction, whole, and no message of it answered twice."""
    assert len(sessions) == 1, [s.key for s in sessions]
    (session,) = sessions
    assert session.repeats == 0, f"{session.repeats} message(s) answered twice"
    return assert_whole(session)
