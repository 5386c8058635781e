"""Every scenario in simulator/scenarios/ runs green against a real agent, and the CSMS
received what each scenario expected; failing steps fail the run with a reason.

Scenarios run through `cpagent sim run` exactly as from a terminal: in-process through
`sim_main`, and once through the console entry point in a subprocess.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agent.sim_cli import EXIT_API_ERROR, EXIT_OK, EXIT_UNREACHABLE
from simulator.csms import Csms
from simulator.scenario import Scenario, load_scenario
from simulator.scenario_runner import payload_difference
from tests.integration.test_sim_cli import ApiAgent, api_agent, free_port, sim, start_api_agent

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "simulator" / "scenarios").glob("*.yaml"))

__all__ = ["api_agent"]  # the fixture, shared with test_sim_cli.py


async def assert_csms_received(scenario: Scenario, csms: Csms) -> None:
    """The CSMS received every outgoing CALL the scenario's `expect` steps saw go out
    (the API logs a frame as sent; the CSMS records it once it has answered it)."""
    for step in scenario.steps:
        if step.kind != "expect" or step.options["direction"] != "out":
            continue
        wanted = step.options["payload"]
        await csms.wait_for(
            step.value,
            where=lambda payload, wanted=wanted: (
                wanted is None or payload_difference(wanted, payload) is None
            ),
            count=step.options["count"],
            timeout_s=5,
        )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_example_scenario_passes_and_the_csms_got_what_it_expected(
    path: Path, api_agent: ApiAgent
) -> None:
    run = await api_agent.sim("run", str(path))
    assert run.code == EXIT_OK, run.out + run.err
    scenario = load_scenario(path)
    total = len(scenario.steps)
    assert run.out.count(" ... ok (") == total
    assert run.out.splitlines()[-1].startswith(f"PASSED: {scenario.name}: {total}/{total}")
    await assert_csms_received(scenario, api_agent.csms)


async def test_offline_session_delivers_each_transaction_message_once_in_order(
    api_agent: ApiAgent,
) -> None:
    run = await api_agent.sim("run", str(ROOT / "simulator/scenarios/offline-session.yaml"))
    assert run.code == EXIT_OK, run.out
    await api_agent.csms.wait_for("StopTransaction")
    kinds = [
        r.action
        for r in api_agent.csms.received
        if r.action in ("StartTransaction", "MeterValues", "StopTransaction")
    ]
    assert kinds[0] == "StartTransaction" and kinds[-1] == "StopTransaction"
    assert kinds.count("StartTransaction") == kinds.count("StopTransaction") == 1
    assert "MeterValues" in kinds


BROKEN = """\
name: Broken on purpose
timeout_s: 2
steps:
  - expect: {message: StopTransaction, timeout_s: 0.3}
  - plug: {}
  - expect: {message: StatusNotification, payload: {status: Faulted}, timeout_s: 1}
  - plug: {}
  - unplug: {}
"""


async def test_a_run_stops_at_the_first_failing_step_and_says_why(
    api_agent: ApiAgent, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    run = await api_agent.sim("run", str(broken))
    assert run.code == EXIT_API_ERROR
    lines = run.out.splitlines()
    assert lines[1].startswith("[1/5] expect: {message: StopTransaction, timeout_s: 0.3} ... ")
    assert "FAILED: no outgoing StopTransaction within 0.3 s" in lines[1]
    assert not any(line.startswith("[2/5]") for line in lines)
    assert lines[-1].startswith("FAILED: Broken on purpose: step 1 failed, 0/5 ok, 4 not run")
    assert api_agent.plant().ev is None  # nothing after the failure ran


async def test_keep_going_runs_every_step_and_reports_each_failure(
    api_agent: ApiAgent, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    run = await api_agent.sim("run", str(broken), "--keep-going")
    assert run.code == EXIT_API_ERROR
    lines = run.out.splitlines()
    assert lines[2].startswith("[2/5] plug: {} ... ok (")
    assert "FAILED: 1 outgoing StatusNotification arrived, none matching " in lines[3]
    assert 'payload.status: expected "Faulted", got "Preparing"' in lines[3]
    assert "FAILED: the API answered 409: an EV is already plugged in at EVSE 1" in lines[4]
    assert lines[5].startswith("[5/5] unplug: {} ... ok (")
    assert lines[-1].startswith("FAILED: Broken on purpose: step 1, 3, 4 failed, 2/5 ok in")


async def test_the_evse_option_moves_a_scenario_to_another_evse(csms: Csms, tmp_path: Path) -> None:
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        "steps:\n  - plug: {}\n"
        "  - expect: {message: StatusNotification, payload: {connectorId: 2, status: Preparing}}\n"
    )
    async with start_api_agent(csms, tmp_path, evses=2) as running:
        run = await running.sim("run", str(scenario), "--evse", "2")
        assert run.code == EXIT_OK, run.out
        assert running.plant(2).ev is not None and running.plant(1).ev is None


async def test_an_unreachable_api_ends_a_run_with_exit_3() -> None:
    path = ROOT / "simulator/scenarios/normal-session.yaml"
    run = await sim(["--api", f"http://127.0.0.1:{free_port()}", "run", str(path)])
    assert run.code == EXIT_UNREACHABLE
    assert "connection refused" in run.err


async def test_the_console_command_runs_a_scenario(api_agent: ApiAgent) -> None:
    path = ROOT / "simulator/scenarios/fault-mid-session.yaml"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "sim", "--api", api_agent.url, "run", str(path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == EXIT_OK, out.decode() + err.decode()
    assert out.decode().splitlines()[-1].startswith("PASSED: Fault mid-session: ")
    faulted = await api_agent.csms.wait_for(
        "StatusNotification", where=lambda p: p["status"] == "Faulted"
    )
    assert faulted["errorCode"] == "GroundFailure"
