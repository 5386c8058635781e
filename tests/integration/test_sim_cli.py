"""`cpagent sim` verbs (agent/sim_cli.py) against the real local API of a real agent.

Each test runs the agent in-process (AgentRunner, simulated drivers) with the real
ApiServer on 127.0.0.1 port 0 and the test CSMS, and calls the CLI in-process through
`sim_main`, capturing what it prints. `ApiAgent` and `api_agent` are shared with
test_scenarios.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.api.server import ApiServer
from agent.app import AgentRunner
from agent.sim_cli import (
    EXIT_API_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    TOKEN_ENV,
    sim_main,
)
from simulator.csms import Csms
from tests.integration.conftest import make_config

#: Offline-capable, as simulator/scenarios/offline-session.yaml says it needs.
SCENARIO_SETTINGS = {"AllowOfflineTxForUnknownId": True, "MeterValueSampleInterval": 1}


@dataclass
class Run:
    """What one CLI call printed and returned."""

    code: int
    out: str
    err: str


@dataclass
class ApiAgent:
    """A running agent with its local API, and the CSMS it reports to."""

    runner: AgentRunner
    api: ApiServer
    csms: Csms

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.api.url

    async def sim(self, *argv: str) -> Run:
        """Run `cpagent sim --api <url> <argv>` in-process."""
        return await sim(["--api", self.url, *argv])

    def plant(self, evse_id: int = 1) -> Any:
        """The simulated plant of an EVSE of the agent running now."""
        agent = self.runner.agent
        assert agent is not None
        return agent.hardware[evse_id].plant


async def sim(argv: list[str]) -> Run:
    """Run `cpagent sim <argv>` in-process, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = await sim_main(argv, out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())


@asynccontextmanager
async def start_api_agent(
    csms: Csms, store_dir: Path, *, evses: int = 1, api: dict[str, Any] | None = None
) -> AsyncIterator[ApiAgent]:
    """Start an agent and its API, wait for its boot to reach the CSMS, stop both after."""
    config = make_config(
        csms.url,
        store_dir,
        evses=evses,
        settings=SCENARIO_SETTINGS,
        extra={"api": {"enabled": True, "port": 0, **(api or {})}},
    )
    runner = AgentRunner(config)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop), name="agent")
    try:
        await runner.wait_until(lambda: runner.agent is not None)
        server = runner.api  # the runner serves the API its config enables
        assert server is not None
        await csms.wait_for("StatusNotification", where=lambda p: p["connectorId"] == 1)
        yield ApiAgent(runner, server, csms)
    finally:
        stop.set()
        await task


@pytest.fixture
async def api_agent(csms: Csms, tmp_path: Path) -> AsyncIterator[ApiAgent]:
    """One simulated EVSE with the local API, booted and reporting to `csms`."""
    async with start_api_agent(csms, tmp_path) as running:
        yield running


def free_port() -> int:
    """A loopback port nothing listens on (bound to port 0, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- each verb once --------------------------------------------------------------------------


async def test_status_prints_the_station_and_one_row_per_evse(api_agent: ApiAgent) -> None:
    run = await api_agent.sim("status")
    assert run.code == EXIT_OK, run.err
    header, columns, row = run.out.splitlines()
    assert header.startswith("station CP-TEST-1 (OCPP 1.6, simulated), powered, connection:")
    assert "outbox: 0" in header
    assert columns.split()[:4] == ["EVSE", "phase", "status", "pilot"]
    assert row.split()[:6] == ["1", "idle", "Available", "A", "open", "0/0.0"]


async def test_status_json_is_the_api_answer(api_agent: ApiAgent) -> None:
    run = await api_agent.sim("status", "--json")
    station = json.loads(run.out)
    assert station["id"] == "CP-TEST-1"
    assert [evse["status"] for evse in station["evses"]] == ["Available"]


async def test_a_session_driven_verb_by_verb(api_agent: ApiAgent) -> None:
    csms = api_agent.csms
    plug = await api_agent.sim(
        "plug", "1", "--soc", "35", "--battery-wh", "500", "--max-current", "16",
        "--phases", "1", "--target-soc", "90",
    )  # fmt: skip
    assert plug.code == EXIT_OK, plug.err
    assert plug.out.startswith("EVSE 1: Preparing (plugged), pilot B, contactor open")
    assert "EV 35% SoC" in plug.out
    ev = api_agent.plant().ev
    assert (ev.params.battery_wh, ev.params.max_current_a, ev.params.phases) == (500, 16, 1)
    assert ev.params.target_soc_percent == 90

    tap = await api_agent.sim("tap", "1", "04A2B3C4", "--type", "ISO14443")
    assert tap.code == EXIT_OK, tap.err
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == "04A2B3C4"
    await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Charging")

    pause = await api_agent.sim("pause", "1")
    assert "SuspendedEV" in pause.out and "paused" in pause.out
    resume = await api_agent.sim("resume", "1")
    assert resume.out.startswith("EVSE 1: Charging")

    pilot = await api_agent.sim("pilot", "1", "B")
    assert pilot.out.startswith("EVSE 1: SuspendedEV") and "pilot B" in pilot.out
    released = await api_agent.sim("pilot", "1", "none")
    assert released.out.startswith("EVSE 1: Charging") and "pilot C" in released.out

    fault = await api_agent.sim("fault", "1", "rcd_trip", "--detail", "30 mA")
    assert fault.out.startswith("EVSE 1: Faulted") and "faults: rcd_trip" in fault.out
    faulted = await csms.wait_for("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert faulted["errorCode"] == "GroundFailure"
    clear = await api_agent.sim("clear", "1", "rcd_trip")
    assert clear.out.startswith("EVSE 1: Charging") and "faults" not in clear.out

    unplug = await api_agent.sim("unplug", "1")
    assert unplug.code == EXIT_OK
    assert unplug.out.startswith("EVSE 1: Available (idle)")
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"


async def test_network_verbs_drop_hold_and_release_the_connection(api_agent: ApiAgent) -> None:
    csms = api_agent.csms
    drop = await api_agent.sim("network", "drop")
    assert drop.code == EXIT_OK, drop.err
    assert drop.out.startswith("connection: ")
    await csms.wait_for("BootNotification", count=2)  # it came back on its own
    offline = await api_agent.sim("network", "offline", "--seconds", "60")
    assert offline.out.startswith("connection: held_offline, not online")
    await csms.wait_disconnected("CP-TEST-1")
    online = await api_agent.sim("network", "online")
    assert online.code == EXIT_OK, online.err
    await csms.wait_connected("CP-TEST-1")


async def test_power_cut_and_restore(api_agent: ApiAgent) -> None:
    cut = await api_agent.sim("power", "cut")
    assert (cut.code, cut.out) == (EXIT_OK, "power: off\n")
    status = await api_agent.sim("status")
    assert "NO POWER" in status.out and "no EVSEs to show" in status.out
    again = await api_agent.sim("power", "cut")
    assert again.code == EXIT_API_ERROR
    assert "409" in again.err
    restore = await api_agent.sim("power", "restore", "--json")
    assert json.loads(restore.out) == {"powered": True}
    await api_agent.csms.wait_for("BootNotification", count=2)


async def test_messages_prints_the_last_frames(api_agent: ApiAgent) -> None:
    run = await api_agent.sim("messages", "--limit", "1000")
    assert run.code == EXIT_OK, run.err
    lines = run.out.splitlines()
    assert ">> [2," in lines[0] and "BootNotification" in lines[0]
    assert any("<< [3," in line for line in lines)
    raw = json.loads((await api_agent.sim("messages", "--limit", "1", "--json")).out)
    assert len(raw) == 1 and set(raw[0]) >= {"at", "direction", "action", "text"}


class Lines(io.StringIO):
    """A stdout that signals every line written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


async def test_messages_follow_streams_new_frames_until_cancelled(api_agent: ApiAgent) -> None:
    out = Lines()
    follow = asyncio.create_task(
        sim_main(["--api", api_agent.url, "messages", "--limit", "1000", "--follow"], out=out)
    )
    try:
        async with asyncio.timeout(10):
            while "BootNotification" not in out.getvalue():  # the backlog came first
                out.written.clear()
                await out.written.wait()
            assert (await api_agent.sim("plug", "1")).code == EXIT_OK
            while '"Preparing"' not in out.getvalue():
                out.written.clear()
                await out.written.wait()
    finally:
        follow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follow
    lines = out.getvalue().splitlines()
    assert "BootNotification" in lines[0]  # the backlog, oldest first
    assert sum('"Preparing"' in line for line in lines) == 1  # then the stream, no repeats


# -- exit codes ------------------------------------------------------------------------------


async def test_an_api_error_exits_1_with_its_message(api_agent: ApiAgent) -> None:
    run = await api_agent.sim("unplug", "1")
    assert run.code == EXIT_API_ERROR
    assert run.err == "cpagent sim: the API answered 409: no EV is plugged in at EVSE 1\n"
    unknown = await api_agent.sim("plug", "7")
    assert unknown.code == EXIT_API_ERROR and "404" in unknown.err


@pytest.mark.parametrize(
    "argv",
    [
        ["plug"],  # no EVSE
        ["plug", "0"],
        ["pilot", "1", "A"],
        ["fault", "1", "melted"],
        ["network", "drop", "--seconds", "5"],
        ["messages", "--limit", "0"],
        ["--api", "ftp://127.0.0.1:1", "status"],
        ["dance"],
    ],
)
async def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run = await sim(argv)
    assert run.code == EXIT_USAGE
    assert (run.err + capsys.readouterr().err).strip()  # it said what was wrong


async def test_a_scenario_file_with_problems_exits_2_naming_each(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nsteps:\n  - plg: {}\n  - wait: {status: Charing}\n")
    run = await sim(["--api", f"http://127.0.0.1:{free_port()}", "run", str(bad)])
    assert run.code == EXIT_USAGE
    assert f"{bad}:3: steps[0].plg: unknown key 'plg'; did you mean 'plug'?" in run.err
    assert f"{bad}:4: steps[1].wait.status:" in run.err
    assert run.out == ""  # nothing ran


async def test_an_unreachable_api_exits_3_saying_where_it_tried() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = await sim(["--api", url, "status"])
    assert run.code == EXIT_UNREACHABLE
    assert f"cannot reach the API at {url}/api/v1/status: connection refused" in run.err


# -- the token -------------------------------------------------------------------------------


async def test_the_token_comes_from_a_file_or_the_environment(
    csms: Csms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "api.token"
    token_file.write_text("t0ken-for-tests\n")
    async with start_api_agent(csms, tmp_path, api={"token_file": str(token_file)}) as running:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        refused = await running.sim("status")
        assert refused.code == EXIT_API_ERROR and "401" in refused.err
        scenario = tmp_path / "s.yaml"
        scenario.write_text("steps: [{wait: {seconds: 0}}]\n")
        unauthorized_run = await running.sim("run", str(scenario))
        assert unauthorized_run.code == EXIT_API_ERROR and "401" in unauthorized_run.err
        assert (await running.sim("--token-file", str(token_file), "status")).code == EXIT_OK
        assert (await running.sim("status", "--token-file", str(token_file))).code == EXIT_OK
        monkeypatch.setenv(TOKEN_ENV, "t0ken-for-tests")
        assert (await running.sim("status")).code == EXIT_OK
        monkeypatch.setenv(TOKEN_ENV, "wrong")
        assert (await running.sim("status")).code == EXIT_API_ERROR
        missing = await running.sim("--token-file", str(tmp_path / "nope"), "status")
        assert missing.code == EXIT_USAGE and "cannot read the token file" in missing.err
