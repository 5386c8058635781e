"""Crash safety of agent.store: kill -9 a writer and check every acknowledged write.

A child process writes transactions through `Store` as fast as it can. The store
commits on its writer thread, so a write is acknowledged once it is durable: the child
collects the lines of its writes and prints them after `flush()` returned True (every
few writes, so several commit together). The test kills it with SIGKILL at different
points, reopens the database, and checks that every acknowledged write is there, that
no transaction row exists without its outbox entry (and vice versa), and that SQLite's
integrity check passes. SIGKILL tests process death; power loss is covered by
`synchronous=FULL`, which this test cannot simulate.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from agent.core.ports import TxEventKind
from agent.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_RUN_S = 8.0  # the child stops by itself after this, killed or not

CHILD = """
import sys, time
from datetime import UTC, datetime, timedelta
from agent.core.ports import StopReason
from agent.store import Store
from drivers.types import TokenType

path, run_s, round_no = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + run_s
t0 = datetime(2024, 1, 1, tzinfo=UTC)
store = Store(path)
print("open", flush=True)
n = 0
unacked = []


def ack(line):
    # Acknowledge `line` (with the writes before it) once they are durable.
    unacked.append(line)
    if len(unacked) > n % 4:  # 1 to 4 writes per flush
        if not store.flush():
            raise SystemExit("flush failed")
        for acked in unacked:
            print(acked)
        sys.stdout.flush()
        unacked.clear()


while time.monotonic() < deadline:
    tx = store.begin_transaction(
        evse_id=1 + n % 2, connector_id=1, id_token=f"R{round_no}-{n}",
        token_type=TokenType.ISO14443, started_at=t0, meter_start_wh=0.0,
    )
    ack(f"begin {tx.local_id}")
    for step in range(1, 6):
        energy_wh = float(step * 10)
        store.record_meter(
            tx.local_id, at=t0 + timedelta(seconds=step), energy_wh=energy_wh,
            payload={"energy_wh": energy_wh}, enqueue=True,
        )
        ack(f"meter {tx.local_id} {energy_wh}")
    store.set_setting(f"round{round_no}", str(n))
    ack(f"setting round{round_no} {n}")
    if n % 2 == 0:
        store.end_transaction(
            tx.local_id, stopped_at=t0 + timedelta(minutes=1), meter_stop_wh=60.0,
            reason=StopReason.LOCAL, stop_id_token=None, payload={"energy_wh": 60.0},
        )
        ack(f"end {tx.local_id}")
    n += 1
print("done", flush=True)
"""


def _run_and_kill(db: Path, round_no: int, kill_after_lines: int) -> list[str]:
    """Run the writer, SIGKILL it after `kill_after_lines` acks; return every ack line."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(CHILD_RUN_S), str(round_no)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines: list[str] = []
        while len(lines) < kill_after_lines:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # acks already in the pipe when the child died
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert len(lines) >= kill_after_lines, f"child ended early: {lines[-3:]} {stderr}"
    lines.extend(rest.splitlines(keepends=True))
    assert "done\n" not in lines, "child finished before it was killed; nothing was tested"
    # A line without its newline may be a half-written ack: not counted.
    return [line.rstrip("\n") for line in lines if line.endswith("\n")]


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    begun: set[int] = set()
    ended: set[int] = set()
    acked_meters: dict[int, set[float]] = defaultdict(set)
    acked_settings: dict[str, int] = {}
    # Several rounds on the same file: each child also proves a killed DB reopens.
    for round_no, kill_after in enumerate((25, 64, 141)):
        for line in _run_and_kill(db, round_no, kill_after):
            word, *args = line.split()
            if word == "begin":
                begun.add(int(args[0]))
            elif word == "meter":
                acked_meters[int(args[0])].add(float(args[1]))
            elif word == "setting":
                acked_settings[args[0]] = int(args[1])
            elif word == "end":
                ended.add(int(args[0]))

    assert begun and acked_meters and ended

    check = sqlite3.connect(db)
    try:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        all_ids = [row[0] for row in check.execute("SELECT local_id FROM transactions")]
    finally:
        check.close()

    with Store(db) as store:
        assert begun <= set(all_ids)
        for local_id, energies in acked_meters.items():
            updated = {
                e.payload["energy_wh"]
                for e in store.tx_entries(local_id)
                if e.kind is TxEventKind.UPDATED
            }
            assert energies <= updated, f"tx {local_id}: acked meters lost"
        for local_id in ended:
            tx = store.get_transaction(local_id)
            assert tx.stopped_at is not None and tx.meter_stop_wh == 60.0
        for key, value in acked_settings.items():
            stored = store.get_setting(key)
            assert stored is not None and int(stored) >= value

        # Atomicity: journal row and outbox entries agree for every transaction,
        # acknowledged or not (a crash leaves both or neither).
        open_ids = {tx.local_id for tx in store.open_transactions()}
        for local_id in all_ids:
            tx = store.get_transaction(local_id)
            entries = store.tx_entries(local_id)
            kinds = [e.kind for e in entries]
            assert kinds[0] is TxEventKind.STARTED and kinds.count(TxEventKind.STARTED) == 1
            updates = [e.payload["energy_wh"] for e in entries if e.kind is TxEventKind.UPDATED]
            if tx.stopped_at is None:
                assert local_id in open_ids
                assert TxEventKind.ENDED not in kinds
                assert tx.last_meter_wh == max(updates, default=0.0)
            else:
                assert kinds[-1] is TxEventKind.ENDED
                assert kinds.count(TxEventKind.ENDED) == 1
        seqs = [e.seq for local_id in sorted(all_ids) for e in store.tx_entries(local_id)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert store.pending_count() == len(seqs)
