"""Persistence for the agent: SQLite journal, outbox and runtime settings."""

from agent.store.sqlite import Store, StoreBacklogFull, StoreHealth, StoreSchemaError

__all__ = ["Store", "StoreBacklogFull", "StoreHealth", "StoreSchemaError"]
