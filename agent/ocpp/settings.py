"""Checks of the install config's `settings:` against the keys of the version they are for.

The config loader calls this so that `cpagent check-config` reports a misspelt key or an
invalid value with its line, instead of the adapter refusing it at start-up. OCPP 1.6
keys are checked against the 1.6 configuration key table; OCPP 2.0.1 device model paths
against the catalogue `station_variables` builds for the configured EVSEs, through the
device model's own install check (the same code the adapter runs at start-up), so the
two can never disagree.

Must not: hold values, touch the store, or know which versions the config offers (the
loader decides whether a version's key is allowed at all).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from agent.config_model import EvseConfig
from agent.ocpp.v16 import config_keys as v16_keys
from agent.ocpp.v201.device_model import DeviceModel, check_value, parse_path
from agent.ocpp.v201.variables import station_variables

#: (evse id, ((connector id, type, phases), ...)) for each EVSE: what the catalogue needs.
_Layout = tuple[tuple[int, tuple[tuple[int, str, int], ...]], ...]


def setting_problem(
    ocpp_version: str, name: str, value: str, *, evses: Sequence[EvseConfig] = ()
) -> str | None:
    """What is wrong with an initial setting of `ocpp_version`, or None if it is fine.

    A 2.0.1 path is checked against the device model of a station with `evses`; with no
    EVSE (the config's evses are broken and reported already) it is not checked.
    """
    if ocpp_version == "1.6":
        return _problem_16(name, value)
    if ocpp_version == "2.0.1":
        return _problem_201(name, value, _layout(evses))
    return f"OCPP {ocpp_version} has no settings this agent knows"


def _problem_16(name: str, value: str) -> str | None:
    """Check one OCPP 1.6 configuration key and value."""
    key = v16_keys.BY_NAME.get(name)
    if key is None:
        return "not an OCPP 1.6 configuration key this agent supports"
    if key.readonly:
        return "read-only: the agent sets it itself"
    if v16_keys.normalise(key, value) is None:
        return f"invalid value {value!r} for a {key.kind.value} key"
    return None


def _layout(evses: Sequence[EvseConfig]) -> _Layout:
    """The hashable shape of the configured EVSEs."""
    return tuple(
        (evse.id, tuple((c.id, c.type, c.phases) for c in evse.connectors)) for evse in evses
    )


def _problem_201(path: str, value: str, layout: _Layout) -> str | None:
    """Check one device model path and value as DeviceModel checks install values."""
    model = _model(layout)
    if model is None:
        return None
    try:
        component, variable, attribute = parse_path(path)
    except ValueError:
        return "not a device model path: Component[(instance)][@evse[:connector]]/Variable"
    definition = model.lookup(component, variable)
    if definition is None:
        return "not a variable of this station's OCPP 2.0.1 device model"
    if attribute not in definition.mutability:
        return f"the variable has no {attribute.value} attribute"
    canonical, reason = check_value(definition, value)
    if canonical is None:
        return f"invalid value {value!r}: {reason} (the variable is {definition.data_type.value})"
    return None


@functools.lru_cache(maxsize=8)
def _model(layout: _Layout) -> DeviceModel | None:
    """The 2.0.1 device model of a station with this EVSE layout (None if it has none)."""
    if not layout:
        return None
    phases = max(phase for _, connectors in layout for _, _, phase in connectors)
    evses = [(evse_id, [(c, kind) for c, kind, _ in connectors]) for evse_id, connectors in layout]
    try:
        return DeviceModel(_NoStore(), station_variables(evses, supply_phases=phases))
    except ValueError:  # a layout the config loader reports on its own
        return None


class _NoStore:
    """A settings store holding nothing: the check reads no runtime value."""

    def get_setting(self, key: str) -> str | None:
        """Nothing is stored."""
        return None

    def set_setting(self, key: str, value: str) -> None:
        """Never called by the install check."""
