"""Persistence for the agent: the transaction journal, its outbox and runtime settings.

`open_store(path)` picks the backend: `Store` (SQLite, sqlite.py) for a file, and for
`:memory:` (SQLite's private in-memory database: tests use it as the production
backend); `MemoryStore` (memory.py: plain Python objects) for `MEMORY_PATH`, which only
fleet mode asks for. Both satisfy interface.AgentStore.
"""

from __future__ import annotations

import os
from typing import Final

from agent.store.interface import AgentStore, TableHost
from agent.store.memory import MemoryStore
from agent.store.retention import FLEET_RETENTION, Retention
from agent.store.sqlite import Store, StoreBacklogFull, StoreHealth, StoreSchemaError

__all__ = [
    "MEMORY_PATH",
    "AgentStore",
    "MemoryStore",
    "Retention",
    "Store",
    "StoreBacklogFull",
    "StoreHealth",
    "StoreSchemaError",
    "TableHost",
    "is_in_memory",
    "open_store",
]

#: The store path of fleet mode's plain-Python store (memory.py); not a file name.
MEMORY_PATH: Final = "memory:"
#: SQLite's private in-memory database (the SQLite backend, nothing on disk).
_SQLITE_MEMORY: Final = ":memory:"


def is_in_memory(path: str | os.PathLike[str]) -> bool:
    """Whether a store at `path` keeps nothing on disk (MEMORY_PATH or `:memory:`)."""
    return os.fspath(path) in (MEMORY_PATH, _SQLITE_MEMORY)


def open_store(path: str | os.PathLike[str]) -> AgentStore:
    """The store for a config's `store.path`: a MemoryStore keeping only what a message
    needs (FLEET_RETENTION) for MEMORY_PATH, else a Store (SQLite) at `path`.

    Raises what Store() raises (StoreSchemaError, sqlite3.Error).
    """
    if os.fspath(path) == MEMORY_PATH:
        return MemoryStore(retention=FLEET_RETENTION)
    return Store(path)
