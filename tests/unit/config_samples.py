"""Config texts and helpers shared by the config tests (test_config*.py).

A minimal valid config, a password that must never leak, the shipped example directory,
and helpers to collect the problems of a text or to point example password files at a
temporary file. No tests here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import ConfigError, Problem, parse_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
PASSWORD = "s3cr3t-Passw0rd-value"

MINIMAL = """\
station: {id: CP-1, vendor: ACME, model: M1}
csms: {url: "ws://127.0.0.1:9000/ocpp"}
evses: [{}]
"""


def problems_of(text: str, **kwargs: object) -> list[Problem]:
    """Parse `text`, expecting a ConfigError, and return its problems."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def with_password_file(text: str, tmp_path: Path) -> str:
    """Point every absolute password_file in `text` at a file in tmp_path holding PASSWORD."""
    secret_file = tmp_path / "csms-password"
    secret_file.write_text(f"  {PASSWORD}\n", encoding="utf-8")
    return re.sub(r"password_file: /\S+", f"password_file: {secret_file}", text)
