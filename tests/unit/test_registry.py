"""The driver registry: lazy built-ins, entry points, clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from drivers import registry
from drivers.registry import DriverContext, DriverUnavailable


def test_unknown_driver_names_what_is_available() -> None:
    with pytest.raises(DriverUnavailable) as error:
        registry.factory("board", "nope")
    assert "no board driver named 'nope'" in str(error.value)
    assert "serial_mcu" in str(error.value)


def test_missing_library_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry.BUILTIN,
        ("board", "imaginary"),
        ("drivers.does_not_exist:X.from_options", "imaginary"),
    )
    with pytest.raises(DriverUnavailable) as error:
        registry.factory("board", "imaginary")
    assert "pip install 'cpagent[imaginary]'" in str(error.value)


def test_importing_the_agent_imports_no_hardware_library() -> None:
    """A laptop without RPi.GPIO or python-can runs the agent: nothing imports them early."""
    code = (
        "import sys, agent.app, agent.cli, drivers.registry;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'serial', 'pymodbus', 'can', 'gpiod', 'RPi', 'spidev', 'nfc'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def make_thing(options: Mapping[str, Any], context: DriverContext) -> tuple[str, int]:
    return (str(options["greeting"]), context.evse_id)


def test_entry_point_adds_a_driver_without_touching_the_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = EntryPoint(
        name="board.acme", value=f"{__name__}:make_thing", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [point] if group == point.group else []
    )
    factory = registry.factory("board", "acme")
    context = DriverContext(evse_id=2, max_current_a=32, phases=3)
    assert factory({"greeting": "hi"}, context) == ("hi", 2)
    assert ("board", "acme") in registry.available()


def test_every_driver_the_board_example_names_is_registered() -> None:
    """config/board-example.yaml names real drivers: each resolves to a factory."""
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[2] / "config" / "board-example.yaml"
    document = yaml.safe_load(example.read_text())
    named = [
        (role, entry["driver"])
        for evse in document["evses"]
        for role, entry in evse.items()
        if isinstance(entry, dict) and "driver" in entry
    ]
    assert named
    for role, name in named:
        assert callable(registry.factory(role, name)), (role, name)
