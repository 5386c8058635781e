"""The direction of the arrows (DESIGN.md "One picture"), checked on the source with `ast`.

- agent/core does no I/O and knows no protocol: it never imports `ocpp`, `websockets`,
  hardware libraries, the store, the app or the simulator.
- drivers/ never imports the agent or the simulator.
- simulator modules that promise "must not import the agent" keep that promise (and so
  do the simulator modules they import); the rest of the simulator uses only the core's
  vocabulary (events, status, ports), never its machinery.
- No OCPP version switch (`if version == ...`) inside agent/core.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "agent" / "core"

#: Modules agent/core must not import (a listed name also forbids its submodules).
CORE_FORBIDDEN = (
    "ocpp",
    "websockets",
    "serial",
    "can",
    "nfc",
    "nfcpy",
    "RPi",
    "pymodbus",
    "sqlite3",
    "socket",
    "subprocess",
    "asyncio.subprocess",
    "agent.ocpp",
    "agent.store",
    "agent.app",
    "agent.cli",
    "agent.api",
    "agent.config",
    "agent.config_model",
    "agent.config_secrets",
    "agent.config_yaml",
    "agent.indicators",
    "agent.sim_cli",
    "agent.systemd",
    "simulator",
)
CORE_FORBIDDEN_CALLS = ("create_subprocess_exec", "create_subprocess_shell", "open_connection")
#: An identifier that names a protocol version, or a string literal that is one.
VERSION_NAME = re.compile(r"(?i)ocpp|version|^v?16j?$|^v?201$")
VERSION_TEXT = re.compile(r"(?i)ocpp|^v?1\.6j?$|^v?2\.0(\.1)?$|^v?16$|^v?201$")


def version_switch(node: ast.AST) -> str | None:
    """The source of `node` if it compares or matches against a protocol version."""
    subject = node.subject if isinstance(node, ast.Match) else node
    for part in ast.walk(subject):
        name = part.attr if isinstance(part, ast.Attribute) else getattr(part, "id", None)
        if isinstance(name, str) and VERSION_NAME.search(name):
            return ast.unparse(subject)
        text = part.value if isinstance(part, ast.Constant) else None
        if isinstance(text, str) and VERSION_TEXT.search(text.strip()):
            return ast.unparse(subject)
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` imports (relative imports resolved against `module`).

    `from x import y` counts as importing both `x` and `x.y` (y may be a submodule);
    `importlib.import_module("x")` and `__import__("x")` with a literal name count too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def violations(imported: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {
        name for name in imported for bad in forbidden if name == bad or name.startswith(bad + ".")
    }


def python_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


CORE_FILES = python_files(CORE)


def test_the_walk_finds_the_core_modules() -> None:
    names = {module_name(p) for p in CORE_FILES}
    assert {"agent.core.evse", "agent.core.station", "agent.core.status"} <= names


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import ocpp.v16", "ocpp.v16"),
        ("from websockets.asyncio.client import connect", "websockets.asyncio.client"),
        ("from agent.ocpp.v16 import mapping", "agent.ocpp.v16"),
        ("from ..ocpp import rpc", "agent.ocpp"),
        ("from ..store import Store", "agent.store"),
        ("from asyncio import subprocess", "asyncio.subprocess"),
        ("import importlib\nimportlib.import_module('serial')", "serial"),
        ("import sqlite3", "sqlite3"),
    ],
)
def test_the_checker_catches_a_forbidden_import(source: str, bad: str) -> None:
    found = violations(imported_modules(source, "agent.core.example"), CORE_FORBIDDEN)
    assert bad in found


def test_the_checker_allows_the_core_s_own_dependencies() -> None:
    source = (
        "import asyncio\nfrom . import status\nfrom agent.core.ports import Clock\n"
        "from drivers.types import PilotState\nfrom transitions import Machine"
    )
    assert violations(imported_modules(source, "agent.core.example"), CORE_FORBIDDEN) == set()


@pytest.mark.parametrize("path", CORE_FILES, ids=module_name)
def test_core_imports_no_protocol_io_or_outer_layer(path: Path) -> None:
    imported = imported_modules(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.stem == "__init__"
    )
    assert violations(imported, CORE_FORBIDDEN) == set()


@pytest.mark.parametrize("path", CORE_FILES, ids=module_name)
def test_core_opens_no_subprocess_or_connection(path: Path) -> None:
    calls = {
        node.attr
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
    }
    assert calls.isdisjoint(CORE_FORBIDDEN_CALLS)


@pytest.mark.parametrize("path", CORE_FILES, ids=module_name)
def test_core_has_no_ocpp_version_switch(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare | ast.Match):
            assert version_switch(node) is None, f"line {node.lineno}: {version_switch(node)}"
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            # STYLE: the OCPP version only in a package path, never in a core type.
            assert not re.search(r"(?i)ocpp|v16|v201", node.name), f"line {node.lineno}"


@pytest.mark.parametrize(
    "source",
    [
        "if ocpp_version == '1.6': pass",
        "if self.version >= 2: pass",
        "if proto in ('1.6', '2.0.1'): pass",
        "match dialect.ocpp:\n    case _: pass",
    ],
)
def test_the_checker_catches_a_version_switch(source: str) -> None:
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Compare | ast.Match))
    assert version_switch(node) is not None


@pytest.mark.parametrize("source", ["if duty == 2.0: pass", "if phase == 'idle': pass"])
def test_the_checker_lets_ordinary_comparisons_pass(source: str) -> None:
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Compare))
    assert version_switch(node) is None


@pytest.mark.parametrize("path", python_files(ROOT / "drivers"), ids=module_name)
def test_drivers_import_neither_the_agent_nor_the_simulator(path: Path) -> None:
    imported = imported_modules(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.stem == "__init__"
    )
    assert violations(imported, ("agent", "simulator")) == set()


def simulator_driver_side() -> list[Path]:
    """Simulator modules that promise "must not import the agent", plus what they import."""
    sources = {
        module_name(path): path.read_text(encoding="utf-8")
        for path in python_files(ROOT / "simulator")
    }
    todo = [
        name
        for name, source in sources.items()
        if "must not import the agent" in (ast.get_docstring(ast.parse(source)) or "")
    ]
    side: set[str] = set()
    while todo:
        name = todo.pop()
        if name in side:
            continue
        side.add(name)
        todo.extend(m for m in imported_modules(sources[name], name) if m in sources)
    return sorted(ROOT / (name.replace(".", "/") + ".py") for name in side)


SIM_DRIVER_FILES = simulator_driver_side()
#: What the simulator may use of the core: its published vocabulary, not its machinery.
CORE_VOCABULARY = ("agent.core.events", "agent.core.status", "agent.core.ports")


def test_the_simulator_s_driver_side_is_found() -> None:
    names = {module_name(p) for p in SIM_DRIVER_FILES}
    assert {"simulator.plant", "simulator.drivers", "simulator.ev"} <= names


@pytest.mark.parametrize("path", SIM_DRIVER_FILES, ids=module_name)
def test_simulator_driver_side_does_not_import_the_agent(path: Path) -> None:
    imported = imported_modules(path.read_text(encoding="utf-8"), module_name(path))
    assert violations(imported, ("agent",)) == set()


@pytest.mark.parametrize("path", python_files(ROOT / "simulator"), ids=module_name)
def test_simulator_uses_only_the_core_s_vocabulary(path: Path) -> None:
    imported = imported_modules(path.read_text(encoding="utf-8"), module_name(path))
    core = violations(imported, ("agent.core",)) - {"agent.core"}
    assert {m for m in core if not m.startswith(CORE_VOCABULARY)} == set()
