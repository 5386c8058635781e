"""Persistence for the agent: SQLite journal, outbox and runtime settings."""

from agent.store.sqlite import Store, StoreSchemaError

__all__ = ["Store", "StoreSchemaError"]
