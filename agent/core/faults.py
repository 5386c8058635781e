"""Active faults of one EVSE, counted per witness.

A fault code stays active until every source that raised it has cleared it: the board
and the pilot decoder can both see a pilot fault, a DC module and the board can both
report over-temperature, and one of them recovering must not clear what the other still
sees. Advisory faults (a dead card reader) are reported but do not stop energy.
"""

from __future__ import annotations

import logging

from agent.core.status import ADVISORY_FAULTS
from drivers.types import FaultCode

log = logging.getLogger(__name__)


class FaultSet:
    """Fault codes with the sources that hold each of them active."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._sources: dict[FaultCode, set[str]] = {}

    @property
    def active(self) -> frozenset[FaultCode]:
        """Every active code."""
        return frozenset(self._sources)

    @property
    def blocking(self) -> frozenset[FaultCode]:
        """The active codes that stop energy."""
        return self.active - ADVISORY_FAULTS

    @property
    def advisory(self) -> frozenset[FaultCode]:
        """The active codes that are only reported."""
        return self.active & ADVISORY_FAULTS

    def set(self, code: FaultCode, active: bool, *, source: str, detail: str = "") -> bool:
        """Raise or clear `code` for `source`; True if the set of active codes changed."""
        sources = self._sources.get(code, set())
        if active and source not in sources:
            self._sources[code] = sources | {source}
            if not sources:
                log.warning("%s: fault %s (%s) %s", self._owner, code, source, detail)
                return True
        elif not active and source in sources:
            remaining = sources - {source}
            if remaining:
                self._sources[code] = remaining
            else:
                del self._sources[code]
                log.info("%s: fault %s cleared", self._owner, code)
                return True
        return False
