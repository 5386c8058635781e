"""`cpagent demo`: the scripted sessions run end to end against the real local CSMS.

The demo is the README's quick start, so these tests run it as a user would: in-process
(the output a user reads) and as the real console script (the exit code a user gets).
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.app import Agent
from agent.ocpp.rpc import Frame
from simulator.csms import CsmsBehaviour
from simulator.demo import (
    CARD_EVSE_1,
    CARD_EVSE_2,
    STATION_ID,
    LiveView,
    Recorder,
    demo_config,
    run_demo,
)

REPO = Path(__file__).resolve().parents[2]
# Fast enough that the small battery fills within a couple of seconds.
SPEED = 600.0


async def test_demo_plays_both_sessions_and_prints_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await run_demo(speed=SPEED, port=0, plain=True)

    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r'-> StartTransaction \{"connectorId":1,', out), out
    assert re.search(r'-> StartTransaction \{"connectorId":2,', out), out
    assert re.search(r'-> StopTransaction \{.*"reason":"EVDisconnected"', out), out
    assert re.search(r'-> StopTransaction \{.*"reason":"Local"', out), out
    assert '"status":"SuspendedEV"' in out
    assert "-> MeterValues" in out
    summary = out[out.index("\nSummary\n") :]
    assert re.search(r"EVSE 1: .* kWh delivered .*SoC 70 % -> 100 %, stopped: EVDisconnected",
                     summary)  # fmt: skip
    assert re.search(r"EVSE 2: .* kWh delivered .*stopped: Local", summary)
    assert "messages exchanged" in summary
    assert "Demo completed" in summary


async def test_plain_output_has_no_escape_codes_and_masks_the_cards(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await run_demo(speed=SPEED, port=0, plain=False)  # stdout is not a TTY here

    out = capsys.readouterr().out
    assert code == 0, out
    assert "\x1b" not in out
    assert CARD_EVSE_1 not in out and CARD_EVSE_2 not in out
    assert "****B3C4" in out and "****F6A7" in out


def test_cpagent_demo_console_script_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--plain", "--speed", str(SPEED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo completed" in result.stdout


def test_live_view_fits_the_terminal_and_masks_id_tags(tmp_path: Path) -> None:
    config = demo_config(csms_url="ws://127.0.0.1:1/ocpp", store_dir=tmp_path, speed=SPEED)
    agent = Agent(config)
    try:
        view = LiveView(io.StringIO(), Recorder(), agent)
        for n in range(20):
            text = f'[2,"id-{n}","Authorize",{{"idTag":"{CARD_EVSE_1}"}}]'
            view.on_frame(Frame(at=datetime.now(UTC), outgoing=True, text=text, action="Authorize"))
        view.narrate("EVSE 1: " + "a very long story line " * 10)

        lines = view.render(width=60, height=24)
    finally:
        agent.store.close()

    assert len(lines) <= 23  # never taller than the screen: the redraw moves up by lines
    assert all(len(line) <= 60 for line in lines)
    assert STATION_ID in lines[0] and "connection: disconnected" in lines[0]
    assert any(line.startswith("1 ") and "Available" in line for line in lines)
    assert any(line.startswith("2 ") and "Available" in line for line in lines)
    assert any(line.startswith('-> Authorize {"idTag":"****B3C4"}') for line in lines)
    assert not any(CARD_EVSE_1 in line for line in lines)


async def test_demo_says_what_it_expected_and_exits_1_when_the_csms_refuses_the_cards(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = functools.partial(CsmsBehaviour, accepted_tags=set())
    monkeypatch.setattr("simulator.demo.CsmsBehaviour", refusing)

    code = await run_demo(speed=SPEED, port=0, plain=True)

    out = capsys.readouterr().out
    assert code == 1, out
    assert "Demo FAILED: expected card ****" in out and "Accepted, got Invalid" in out
    assert "Summary" not in out
