"""The `cpagent` command as a user runs it: real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cpagent(
    *args: str, cwd: Path = REPO, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_check_config_accepts_every_shipped_example() -> None:
    for example in sorted((REPO / "config").glob("*.yaml")):
        if "board" in example.name:
            continue  # names a password file that only exists on a real board
        result = cpagent("check-config", str(example))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


def test_check_config_names_key_and_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "station:\n"
        "  id: CP1\n"
        "  vendor: v\n"
        "  model: m\n"
        "csms:\n"
        "  url: http://nowhere\n"
        "evses:\n"
        "  - connectors:\n"
        "      - max_current_a: lots\n"
        "    heartbeat: 5\n"
    )
    result = cpagent("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(f"{bad}:6: csms.url:" in line for line in lines), lines
    assert any(f"{bad}:9: evses[0].connectors[0].max_current_a:" in line for line in lines), lines
    assert any(f"{bad}:10: evses[0].heartbeat:" in line and "unknown key" in line for line in lines)


def test_run_with_a_bad_config_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    store = tmp_path / "agent.db"
    bad.write_text(
        "station: {id: CP1, vendor: v, model: m}\n"
        "csms: {url: 'ws://127.0.0.1:9/ocpp', basic_auth: {password_env: CPAGENT_NO_SUCH_VAR}}\n"
        f"store: {{path: '{store}'}}\n"
        "evses: [{}]\n"
    )
    result = cpagent("run", "--config", str(bad), timeout_s=20)
    assert result.returncode == 2
    assert "csms.basic_auth.password_env" in result.stderr
    assert not store.exists()


def test_unknown_setting_in_config_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "station: {id: CP1, vendor: v, model: m}\n"
        "csms: {url: 'ws://127.0.0.1:9/ocpp'}\n"
        "evses: [{}]\n"
        "settings:\n"
        "  HeartbeatInterval: soon\n"
        "  NoSuchKey: 1\n"
    )
    result = cpagent("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:5: settings.HeartbeatInterval:" in result.stderr
    assert f"{bad}:6: settings.NoSuchKey:" in result.stderr
