"""systemd integration: sd_notify over a real AF_UNIX datagram socket, a real `cpagent run`
process reporting READY, STATUS, WATCHDOG and STOPPING, and the unit file's syntax."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.systemd import SystemdNotifier
from simulator.csms import Csms
from tests.integration.conftest import CP_ID

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "cpagent.service"


class NotifyListener:
    """The systemd side of sd_notify: a bound datagram socket collecting assignments."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.assignments: list[str] = []

    async def wait_for(
        self, predicate: Callable[[str], bool], *, count: int = 1, timeout_s: float = 20.0
    ) -> str:
        """The count-th assignment matching `predicate`, reading datagrams as needed."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    matching = [a for a in self.assignments if predicate(a)]
                    if len(matching) >= count:
                        return matching[count - 1]
                    data = await loop.sock_recv(self.sock, 65536)
                    self.assignments.extend(data.decode().split("\n"))
        except TimeoutError:
            raise TimeoutError(f"not received; got {self.assignments}") from None


@contextlib.contextmanager
def notify_listener(address: str) -> Iterator[NotifyListener]:
    """Bind a non-blocking AF_UNIX SOCK_DGRAM socket at `address` ('\\0...' = abstract)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.setblocking(False)
        yield NotifyListener(sock, address)


@contextlib.contextmanager
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, or a short temporary directory when tmp_path would overflow sun_path."""
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="cpagent-sd-") as short:
        yield Path(short)


# -- the notifier ----------------------------------------------------------------------------


async def test_notifier_sends_each_message_to_an_abstract_socket() -> None:
    name = f"cpagent-test-{uuid.uuid4().hex}"
    with notify_listener("\0" + name) as listener:
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.status("CSMS connected\nsecond line")
        notifier.watchdog()
        notifier.stopping()
        await listener.wait_for(lambda a: a == "STOPPING=1", timeout_s=5)
    assert notifier.enabled
    assert listener.assignments == [
        "READY=1",
        "STATUS=CSMS connected second line",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


async def test_notifier_sends_to_a_socket_path(tmp_path: Path) -> None:
    with socket_dir(tmp_path) as directory:
        path = str(directory / "notify.sock")
        with notify_listener(path) as listener:
            sent = SystemdNotifier(path).notify("READY=1", "STATUS=up")
            await listener.wait_for(lambda a: a == "STATUS=up", timeout_s=5)
    assert sent
    assert listener.assignments == ["READY=1", "STATUS=up"]


@pytest.mark.parametrize(
    "environ",
    [{}, {"WATCHDOG_USEC": "1000000"}, {"NOTIFY_SOCKET": "vsock:2:1234"}],
    ids=["no-variables", "watchdog-without-socket", "unsupported-address"],
)
async def test_notifier_without_a_usable_notify_socket_is_a_no_op(
    environ: dict[str, str],
) -> None:
    notifier = SystemdNotifier.from_environment(environ)
    checks: list[bool] = []

    def alive() -> bool:
        checks.append(True)
        return True

    notifier.ready()
    notifier.status("anything")
    notifier.watchdog()
    notifier.stopping()
    await notifier.run_watchdog(alive)  # returns at once
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval_s() is None
    assert checks == []


def test_watchdog_period_is_half_of_watchdog_usec() -> None:
    notifier = SystemdNotifier("@x", watchdog_usec="30000000", watchdog_pid=str(os.getpid()))
    assert notifier.watchdog_timeout_s() == 30.0
    assert notifier.watchdog_interval_s() == 15.0


@pytest.mark.parametrize("usec", ["", "0", "soon"])
def test_watchdog_is_off_without_a_valid_positive_watchdog_usec(usec: str) -> None:
    assert SystemdNotifier("@x", watchdog_usec=usec).watchdog_interval_s() is None


def test_watchdog_meant_for_another_pid_is_disabled() -> None:
    other_pid = str(os.getpid() + 1)
    notifier = SystemdNotifier("@x", watchdog_usec="1000000", watchdog_pid=other_pid)
    assert notifier.watchdog_interval_s() is None


def test_send_failure_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="agent.systemd"):
        results = [notifier.notify("READY=1"), notifier.notify("WATCHDOG=1")]
        notifier.status("still fine")
    assert results == [False, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


async def test_watchdog_pings_only_while_the_agent_is_alive() -> None:
    name = f"cpagent-test-{uuid.uuid4().hex}"
    health = iter([True, False, False, True, True])
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            raise asyncio.CancelledError  # end the loop after five periods

    def alive() -> bool:
        healthy = next(health)
        if len(sleeps) == 2:
            raise RuntimeError("health check broke")  # counts as unhealthy
        return healthy

    with notify_listener("\0" + name) as listener:
        notifier = SystemdNotifier("@" + name, watchdog_usec="1000000")
        with pytest.raises(asyncio.CancelledError):
            await notifier.run_watchdog(alive, sleep=fake_sleep)
        await listener.wait_for(lambda a: a == "WATCHDOG=1", count=3, timeout_s=5)
    # periods 1, 4 and 5 were healthy; 2 said no, 3 raised
    assert listener.assignments == ["WATCHDOG=1"] * 3
    assert sleeps == [0.5] * 5


# -- a real `cpagent run` under a simulated systemd -------------------------------------------


def _write_config(path: Path, csms_url: str, store: Path) -> None:
    document = {
        "station": {"id": CP_ID, "vendor": "cpagent", "model": "test"},
        "csms": {"url": csms_url, "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5}},
        "evses": [{"connectors": [{"type": "cType2"}]}],
        "store": {"path": str(store)},
        "simulator": {"time_scale": 60, "auto_plug": True},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(document))


async def test_cpagent_run_reports_ready_status_watchdog_and_stopping_to_systemd(
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.yaml"
    stderr_path = tmp_path / "stderr.txt"
    with socket_dir(tmp_path) as directory, notify_listener(str(directory / "n.sock")) as sd:
        async with Csms() as csms:
            _write_config(config, csms.url, tmp_path / "agent.db")
            env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
            env.update(NOTIFY_SOCKET=sd.address, WATCHDOG_USEC="1000000")
            with stderr_path.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent", "run", "--config", str(config),
                    cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                )  # fmt: skip
            try:
                await sd.wait_for(lambda a: a == "READY=1")
                connected = await sd.wait_for(lambda a: a.startswith("STATUS=CSMS connected;"))
                await csms.call(CP_ID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "T"})
                await csms.wait_for("StartTransaction", timeout_s=20)
                charging = await sd.wait_for(lambda a: a.endswith("; 1 open transaction"))
                ready_at = sd.assignments.index("READY=1")
                pings_before_ready = sd.assignments[:ready_at].count("WATCHDOG=1")
                await sd.wait_for(lambda a: a == "WATCHDOG=1", count=pings_before_ready + 3)

                process.send_signal(signal.SIGTERM)
                await sd.wait_for(lambda a: a == "STOPPING=1")
                returncode = await asyncio.wait_for(process.wait(), 20)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            stop = await csms.wait_for("StopTransaction")

    log = stderr_path.read_text()
    assert returncode == 0, log
    assert connected == "STATUS=CSMS connected; 0 open transactions"
    assert charging == "STATUS=CSMS connected; 1 open transaction"
    pings_after_ready = sd.assignments[ready_at:].count("WATCHDOG=1")
    assert pings_after_ready >= 3
    assert sd.assignments.count("READY=1") == 1
    assert stop["reason"] == "Reboot"  # the graceful stop TimeoutStopSec leaves room for


# -- the unit file ---------------------------------------------------------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_file_runs_the_agent_as_a_notify_service_with_watchdog() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/usr/bin/env cpagent run --config /etc/cpagent/agent.yaml"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "2"
    assert service["WatchdogSec"] == "30"
    assert service["TimeoutStopSec"] == "15"
    assert service["RestartPreventExitStatus"] == "2"  # cli.py: 2 = configuration problem
    assert service["User"] == "cpagent"
    assert service["DynamicUser"] == "no"
    assert service["StateDirectory"] == "cpagent"
    assert service["ReadWritePaths"] == "/var/lib/cpagent"
    # /usr/bin/env finds the virtualenv of deploy/README.md first
    assert "Environment=PATH=/opt/cpagent/bin:/usr/local/bin:/usr/bin:/bin" in (
        UNIT.read_text().splitlines()
    )
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[hardening] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert int(service["LimitNOFILE"]) >= 4096
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_file_has_no_trailing_comments() -> None:
    # systemd would take "value  # why" as part of the value
    settings = [line for line in UNIT.read_text().splitlines() if line and line[0] not in "#;["]
    assert settings
    assert [line for line in settings if "#" in line] == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_passes_systemd_analyze_verify() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


def test_install_script_is_valid_posix_shell() -> None:
    result = subprocess.run(
        ["sh", "-n", str(ROOT / "deploy" / "install.sh")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
