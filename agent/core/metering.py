"""Reading one EVSE's meter: the last good reading, METER_LOST, and register freshness.

The meter is the billing source, so two rules live here. A meter that does not answer
is a fault (METER_LOST), cleared by the next good reading, and meanwhile the last good
reading stands in. And a reading taken while the contactor stayed open is the register
for as long as it stays open (no energy can flow), so a transaction can start on it
without waiting for the meter: the tap-to-contactor path never waits on a slow bus.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.interfaces import DriverError, PowerMeter
from drivers.types import MeterSample


class MeterReader:
    """The meter of one EVSE, with the last good reading and whether it is still exact."""

    def __init__(
        self,
        meter: PowerMeter,
        *,
        contactor_closed: Callable[[], bool],
        report_lost: Callable[[bool, str], None],
    ) -> None:
        self.meter = meter
        self.last_sample: MeterSample | None = None
        self._contactor_closed = contactor_closed
        self._report_lost = report_lost
        self._lost = False
        self._exact = False  # last_sample taken with the contactor open, and still open
        self._closes = 0

    async def read(self) -> MeterSample | None:
        """A fresh reading, or the last good one while the meter does not answer."""
        open_throughout = not self._contactor_closed()
        closes = self._closes
        try:
            sample = await self.meter.read()
        except DriverError as exc:
            if not self._lost:
                self._lost = True
                self._report_lost(True, str(exc))
            return self.last_sample
        if self._lost:
            self._lost = False
            self._report_lost(False, "")
        self.last_sample = sample
        self._exact = open_throughout and closes == self._closes
        return sample

    async def register(self) -> MeterSample | None:
        """The register now: the last reading if it is still exact, else a fresh one."""
        if self._exact and self.last_sample is not None:
            return self.last_sample
        return await self.read()

    def contactor_closing(self) -> None:
        """The contactor is about to close: readings taken so far are history."""
        self._exact = False
        self._closes += 1

    def forget_exactness(self) -> None:
        """Treat the last reading as history (tests and diagnostics)."""
        self._exact = False
