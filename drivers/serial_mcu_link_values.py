"""The serial MCU link's public values: its settings, session states, grants and counters.

`SerialMcuLink` (drivers/serial_mcu_link.py, which re-exports these names) takes a
`LinkSettings`, reports a `LinkState`, is commanded by `Grant` and counts into
`LinkStats`; the board and lock drivers (drivers/serial_mcu.py) use them too.

Values only: no I/O, no session logic. It must not import the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from drivers.serial_mcu_protocol import DEFAULT_HEARTBEAT_MS, DEFAULT_TIMEOUT_MS


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Where the MCU is and the link's timing (HELLO tells the MCU the same timing)."""

    port: str
    baudrate: int = 115200
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat period in seconds."""
        return self.heartbeat_ms / 1000.0

    @property
    def timeout_s(self) -> float:
        """Silence (or an unacknowledged frame) longer than this loses the session."""
        return self.timeout_ms / 1000.0

    @property
    def retransmit_s(self) -> float:
        """How long to wait for an ack before sending a frame again."""
        return self.heartbeat_s / 2.0


class LinkState(StrEnum):
    """Where the link's session with the MCU stands."""

    CLOSED = "closed"  # port not open
    SYNCING = "syncing"  # HELLO, granted values or the snapshot not yet through
    READY = "ready"
    LOST = "lost"  # silent MCU, MCU reset before re-sync, or an unacknowledged frame


class Grant(IntEnum):
    """The values the agent grants the MCU (re-sent after every HELLO)."""

    CONTACTOR = 0
    PWM = 1
    LOCK = 2


@dataclass
class LinkStats:
    """Counters for diagnostics and tests."""

    frames_in: int = 0
    frames_out: int = 0
    garbled: int = 0
    malformed: int = 0
    duplicates: int = 0
    retransmits: int = 0
    sessions: int = 0
