"""A real `cpagent run` process for the reliability suites: spawn, kill -9, stop.

`AgentProcess` writes one YAML config (simulated EVSE, the local API on 127.0.0.1 port 0,
a store file that outlives each process), starts `python -m agent run` with it, reads
the API's address from the agent's log, and hands an `ApiClient` to drive the simulated
EV and card exactly as `cpagent sim` would. The log is kept (the last lines) so a
failing test can show what the agent said.

It must not: reach into the agent's memory (only its API, its CSMS and, once it has
stopped, its store), or wait by sleeping (the API line and the process exit are awaited).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from simulator.api_client import ApiClient
from tests.integration.conftest import CP_ID

REPO_ROOT = Path(__file__).resolve().parents[2]
_API_LINE = re.compile(r"local API listening on (http://\S+)")

#: Install settings per version: samples every second, retries after one second.
SETTINGS: dict[str, dict[str, Any]] = {
    "1.6": {
        "MeterValueSampleInterval": 1,
        "TransactionMessageRetryInterval": 1,
        "HeartbeatInterval": 300,
    },
    "2.0.1": {
        "SampledDataCtrlr/TxUpdatedInterval": 1,
        "OCPPCommCtrlr/MessageAttemptInterval(TransactionEvent)": 1,
        "OCPPCommCtrlr/HeartbeatInterval": 300,
    },
}


def write_config(
    path: Path, *, version: str, csms_url: str, store: Path, settings: dict[str, Any] | None = None
) -> None:
    """Write an agent config for one simulated EVSE speaking `version` to `csms_url`."""
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {
            "url": csms_url,
            "ocpp_version": version,
            "response_timeout_s": 5,
            "reconnect": {"initial_backoff_s": 0.05, "max_backoff_s": 0.3},
        },
        "evses": [{"connectors": [{"type": "cType2"}], "reader": {"driver": "sim"}}],
        "store": {"path": str(store)},
        "simulator": {"time_scale": 60},
        "api": {"enabled": True, "port": 0},
        "settings": {**SETTINGS[version], **(settings or {})},
        # INFO: the API announces its address; frames stay out of the log.
        "logging": {"level": "INFO", "message_log": False},
    }
    path.write_text(yaml.safe_dump(document))


class AgentProcess:
    """One `cpagent run` process; `start()` returns once its local API answers."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log: deque[str] = deque(maxlen=200)
        self.api_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The process id; raises RuntimeError before start()."""
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal)."""
        return None if self._process is None else self._process.returncode

    async def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the agent and wait for its API; raises TimeoutError or RuntimeError (it
        exited), with its last log lines."""
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(self.config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT, env=env,
        )  # fmt: skip
        announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_log(announced), name="agent-log")
        try:
            async with asyncio.timeout(timeout_s):
                self.api_url = await announced
        except TimeoutError:
            await self.kill()
            raise TimeoutError(f"the agent's API did not come up:\n{self.tail()}") from None

    async def _read_log(self, announced: asyncio.Future[str]) -> None:
        """Keep the log's last lines (draining the pipe); resolve `announced` with the URL."""
        if self._process is None or self._process.stderr is None:
            raise RuntimeError("not started")
        async for raw in self._process.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            self.log.append(line)
            match = _API_LINE.search(line)
            if match and not announced.done():
                announced.set_result(match.group(1))
        if not announced.done():
            announced.set_exception(RuntimeError(f"the agent exited:\n{self.tail()}"))

    def api(self) -> ApiClient:
        """A client of this agent's local API (close it, or use `async with`)."""
        return ApiClient(self.api_url, timeout_s=10.0)

    def tail(self, lines: int = 40) -> str:
        """The agent's last log lines."""
        return "\n".join(list(self.log)[-lines:])

    async def wait_exit(self) -> int:
        """Return the exit status once the process has exited; RuntimeError before start()."""
        if self._process is None:
            raise RuntimeError("not started")
        return await self._process.wait()

    async def kill(self) -> None:
        """SIGKILL the process (a power cut as far as it can tell) and reap it."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
        await self._reap()

    async def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (a clean shutdown) and wait; return the exit status (killed if stuck)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout_s)
            except TimeoutError:
                await self.kill()
        await self._reap()
        return self.returncode if self.returncode is not None else -1

    async def _reap(self) -> None:
        if self._process is not None:
            await self._process.wait()
        if self._reader is not None:
            with contextlib.suppress(RuntimeError):
                await self._reader
            self._reader = None
