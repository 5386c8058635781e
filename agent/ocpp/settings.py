"""Checks of the install config's `settings:` against the chosen OCPP version's keys.

The config loader calls this so that `cpagent check-config` reports a misspelt key or an
invalid value with its line, instead of the adapter refusing it at start-up.
"""

from __future__ import annotations

from agent.ocpp.v16 import config_keys as v16_keys


def setting_problem(ocpp_version: str, name: str, value: str) -> str | None:
    """What is wrong with an initial configuration value, or None if it is fine."""
    if ocpp_version != "1.6":
        return None  # other versions check their own device model (not yet here)
    key = v16_keys.BY_NAME.get(name)
    if key is None:
        return "not an OCPP 1.6 configuration key this agent supports"
    if key.readonly:
        return "read-only: the agent sets it itself"
    if v16_keys.normalise(key, value) is None:
        return f"invalid value {value!r} for a {key.kind.value} key"
    return None
