"""Smoke test of bench/_fleet_memory.py (where a fleet station's memory goes): it runs a
tiny fleet end to end against the lean CSMS and reports per-station figures. Nothing here
judges a figure (benches print their verdicts; performance is measured, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "_fleet_memory.py"


def test_fleet_memory_bench_reports_rss_heap_and_tasks_per_station(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    args = ["--count", "3", "--settle", "0", "--trace", "--json", str(out)]
    completed = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "target" in completed.stdout
    figures = json.loads(out.read_text())
    assert figures["counts"]["charging"] == 3
    assert figures["python_per_station_kib"] > 0
    tasks = dict(figures["tasks_per_station"])
    assert tasks["Evse._lifecycle_worker"] == 1.0  # one EVSE a station, counted per station
    assert any(name.startswith("agent/") for name, _ in figures["by_repo_file"])
