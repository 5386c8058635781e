"""Feedback to the person at the charger: the indicator states and the `Indicator` contract.

An indicator is whatever answers a tap or shows how the EVSE is doing: an RGB LED, a
character display, a screen, or the simulator's record of what it would show. It renders
one `IndicatorState` at a time and decides nothing: which state to show, and for how
long a transient answer ("accepted", "rejected") stays up, is the core's decision
(agent/core/feedback.py), handed over with each `show()`.

Semantics every implementation must honour:

* `show(state)` displays `state` until the next `show()`; showing the state already
  shown (again without `hold_s`) changes nothing, so a blink pattern is not restarted.
* `show(state, hold_s=s)` displays `state` for at most `s` seconds, then falls back by
  itself to the last state shown without `hold_s` (dark if there was none). The caller
  normally sends the next state when the hold ends; the fallback makes sure a lost
  follow-up never leaves "rejected" blinking forever.
* `start()` takes the hardware and leaves the indicator dark; `stop()` darkens it and
  releases the hardware (idempotent). `show()` before `start()` raises DriverError, and
  an exception from any of them means "could not carry out", as for every driver.

This module is vocabulary only: no I/O, and it must not import the agent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable


class IndicatorState(StrEnum):
    """What the person at the charger should be told."""

    IDLE = "idle"  # ready: plug in or tap a card
    AUTHORIZING = "authorizing"  # a card was tapped, the answer is awaited
    ACCEPTED = "accepted"  # the card was accepted (or a stop/cancel tap was taken)
    REJECTED = "rejected"  # the card was refused, or the EVSE cannot take it now
    CHARGING = "charging"  # a transaction runs (energy flowing or suspended)
    FAULT = "fault"  # the EVSE is faulted
    RESERVED = "reserved"  # reserved for someone else
    UNAVAILABLE = "unavailable"  # taken out of service (Inoperative)


@runtime_checkable
class Indicator(Protocol):
    """An LED, display or other indicator of one EVSE."""

    async def start(self) -> None:
        """Take the hardware and leave the indicator dark; raises DriverError."""
        ...

    async def stop(self) -> None:
        """Darken the indicator and release the hardware (idempotent)."""
        ...

    async def show(self, state: IndicatorState, *, hold_s: float | None = None) -> None:
        """Display `state` until the next call, or at most `hold_s` seconds before falling
        back to the last state shown without a hold; raises DriverError when stopped."""
        ...
