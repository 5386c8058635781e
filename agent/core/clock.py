"""The real clock: UTC wall time and asyncio sleeps (tests inject a fake)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC; sleeps on the running event loop."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds that never jump (time.monotonic)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` (at least zero)."""
        await asyncio.sleep(max(0.0, seconds))
