"""The secrets a config names: read from a file or an environment variable, never inline.

Responsible for reading the value behind a `*_file` key (a file, path relative to the
config file's directory) or a `*_env` key (an environment variable, from the mapping the
caller passes, not from os.environ directly), stripped, and for reporting an unreadable
or empty file, a bad variable name, or an unset or empty variable by its key path and line.
The caller wraps the value in `Secret` (agent/config_model.py).

Must not: put a secret's value into a problem message, a log or a repr; read a variable
or file that the YAML does not name.
"""

from __future__ import annotations

import re

from agent.config_yaml import NodeMap, NodeReader

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_secret(r: NodeReader, m: NodeMap, key: str) -> str | None:
    """Read the secret a `*_file` or `*_env` key names (stripped); None after a problem."""
    return _read_secret_file(r, m, key) if key.endswith("_file") else _read_secret_env(r, m, key)


def _read_secret_file(r: NodeReader, m: NodeMap, key: str) -> str | None:
    where = r.required(m, key)
    file = r.path(m, key)
    if where is None or file is None:
        return None
    path = m.at(key)
    try:
        password = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        r.problem(path, where, f"cannot read '{file}': {exc.strerror}")
        return None
    except UnicodeDecodeError:
        r.problem(path, where, f"'{file}' is not valid UTF-8 text")
        return None
    if not password:
        r.problem(path, where, f"'{file}' is empty")
    return password or None


def _read_secret_env(r: NodeReader, m: NodeMap, key: str) -> str | None:
    where = r.required(m, key)
    name = r.text(m, key, None)
    if where is None or name is None:
        return None
    if not _ENV_NAME.fullmatch(name):
        r.problem(m.at(key), where, f"'{name}' is not an environment variable name")
        return None
    password = r.environ.get(name, "").strip()
    if not password:
        state = "is empty" if name in r.environ else "is not set"
        r.problem(m.at(key), where, f"environment variable '{name}' {state}")
    return password or None
