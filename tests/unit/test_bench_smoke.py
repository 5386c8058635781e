"""Smoke tests of the issue 8 benches: each runs end to end with tiny sizes and writes its
figures. Nothing here judges a timing (benches print their verdicts; DESIGN: performance
is measured, never asserted in tests); what is checked is that a bench still runs against
the current agent and reports what it claims to measure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str, tmp_path: Path) -> dict[str, Any]:
    """Run a bench script with --json; its figures (fails on a non-zero exit)."""
    out = tmp_path / "figures.json"
    completed = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "target" in completed.stdout
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def test_throughput_bench_replays_every_queued_message_and_keeps_validation_on(
    tmp_path: Path,
) -> None:
    figures = _run(
        "throughput.py", "--messages", "150", "--calls", "20", "--versions", "1.6",
        "--rounds", "1", tmp_path=tmp_path,
    )  # fmt: skip
    replay = figures["replay"]["1.6"]
    assert replay["messages"] == 150
    assert replay["agent_per_s"] > 0
    # The agent is judged against the ceiling measured before and after its drain.
    before, after = replay["ceiling_before_per_s"], replay["ceiling_after_per_s"]
    assert before > 0 and after > 0
    assert replay["ceiling_per_s"] == (before + after) / 2
    cpu = figures["cpu_per_message"]
    assert cpu["1.6 validation on"] is True and cpu["2.0.1 validation on"] is True
    assert {"1.6 MeterValues", "2.0.1 MeterValues"} <= set(cpu)


def test_recovery_bench_sees_the_queued_message_after_the_csms_comes_back(
    tmp_path: Path,
) -> None:
    figures = _run(
        "recovery.py", "--rounds", "1", "--versions", "1.6",
        "--initial-backoff-s", "0.05", "--max-backoff-s", "0.2", tmp_path=tmp_path,
    )  # fmt: skip
    spans = figures["1.6"]
    assert spans["back -> BootNotification"]["samples"] == 1
    assert spans["back -> first queued msg"]["samples"] == 1


def test_plug_out_bench_times_an_unplug_in_each_condition(tmp_path: Path) -> None:
    figures = _run("plug_out_to_contactor.py", "--samples", "1", tmp_path=tmp_path)
    assert {name: f["samples"] for name, f in figures.items()} == {
        "idle": 1,
        "under OCPP load": 1,
        "10k local lists": 1,
    }


@pytest.mark.slow  # four agent processes start one after the other (about 8 s)
def test_footprint_bench_reads_the_agent_and_the_floor(tmp_path: Path) -> None:
    figures = _run(
        "footprint.py", "--window-s", "0.2", "--settle-s", "0.2", "--versions", "1.6",
        tmp_path=tmp_path,
    )  # fmt: skip
    rows = figures["1.6"]
    assert rows["floor (ocpp library alone)"]["rss_mb"] > 0
    assert rows["idle"]["rss_mb"] > rows["floor (ocpp library alone)"]["rss_mb"] / 2


def test_energy_day_bench_keeps_the_site_limit_and_the_window_over_two_hours(
    tmp_path: Path,
) -> None:
    figures = _run(
        "energy_day.py", "--hours", "2", "--png", str(tmp_path / "png"), tmp_path=tmp_path
    )
    scenarios = figures["scenarios"]
    assert set(scenarios) == {"A", "B"}
    for scenario in scenarios.values():
        assert set(scenario["evses"]) == {"1", "2"}
        adherence = scenario["adherence"]
        assert adherence["samples"] == 2 * 3600 / adherence["control_period_s"]
        assert adherence["longest_above_s"] <= adherence["control_period_s"]
        assert all(target["met"] for target in scenario["targets"].values())
        if figures["matplotlib"]:
            assert Path(scenario["png"]).stat().st_size > 0
    off_peak = scenarios["A"]
    # 17:00-19:00: the boosted car charges, the other waits for the 22:00 window.
    assert off_peak["evses"]["2"]["boosted_kwh"] > 5
    assert off_peak["evses"]["1"]["energy_kwh"] == 0
    assert off_peak["all"]["outside_window_unboosted_kwh"] == 0
    # 07:00-09:00: the home car charges from the surplus from 07:30.
    assert scenarios["B"]["evses"]["1"]["from_pv_kwh"] > 1
