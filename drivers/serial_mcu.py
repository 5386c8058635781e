"""Board support and connector lock over a serial MCU (pyserial), protocol version 1.

The MCU owns electrical safety; the agent gives permission (docs/serial-mcu-protocol.md).
`SerialMcuBoardSupport` and `SerialMcuConnectorLock` implement the BoardSupport and
ConnectorLock Protocols on one shared `SerialMcuLink` (drivers/serial_mcu_link.py),
found through `DriverContext.shared`; the lock may omit `port` and use its EVSE's board.

Responsible for turning the MCU's reports into events (changes only, pilot first, then
the contactor, then faults) and the Protocol's commands into granted values. Fault bits
map onto the closed catalogue by `BIT_FAULTS`; a lost or reset MCU is MCU_TIMEOUT until
the link is re-initialised; unknown bits from a newer firmware are INTERNAL_ERROR.

It must not hold IEC 61851 or OCPP logic: whether a fault stops a session, and how it is
reported upstream, is the core's and the adapters' business. It must not import the
agent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from drivers.interfaces import BoardEventSink, DriverError
from drivers.registry import DriverContext, DriverOptionError
from drivers.serial_mcu_link import (
    Grant,
    LinkSettings,
    LinkState,
    SerialMcuLink,
)
from drivers.serial_mcu_protocol import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_TIMEOUT_MS,
    KNOWN_FAULT_BITS,
    NO_CURRENT_LIMIT,
    Contactor,
    FaultBit,
    Faults,
    Lock,
    LockPosition,
    LockResult,
    Mirror,
    MsgType,
    Pilot,
    PilotMode,
    Pp,
    SelfTest,
    SelfTestResult,
    Temperature,
)
from drivers.types import (
    BoardCapabilities,
    BoardEvent,
    ContactorEvent,
    FaultCode,
    FaultEvent,
    PilotEvent,
    PilotState,
)

__all__ = ["BIT_FAULTS", "SerialMcuBoardSupport", "SerialMcuConnectorLock", "SerialMcuLink"]

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_MS = 3000
SELFTEST_TIMEOUT_S = 5.0

#: MCU fault bits -> the catalogue (several bits may share a code).
BIT_FAULTS: tuple[tuple[FaultBit, FaultCode, str], ...] = (
    (FaultBit.RCD_DC_6MA, FaultCode.RCD_TRIP, "RCD tripped: DC residual current >= 6 mA"),
    (FaultBit.RCD_AC_30MA, FaultCode.RCD_TRIP, "RCD tripped: AC residual current >= 30 mA"),
    (FaultBit.RCD_SELFTEST_FAILED, FaultCode.RCD_TRIP, "RCD self-test failed"),
    (FaultBit.CONTACTOR_WELDED, FaultCode.CONTACTOR_WELDED, "mirror closed, coil off"),
    (FaultBit.CONTACTOR_STUCK_OPEN, FaultCode.CONTACTOR_STUCK_OPEN, "mirror open, coil on"),
    (FaultBit.OVER_TEMPERATURE, FaultCode.OVER_TEMPERATURE, "above the trip temperature"),
    (FaultBit.PILOT_FAULT, FaultCode.PILOT_FAULT, "MCU reports a pilot fault"),
    (FaultBit.LOCK_FAILURE, FaultCode.LOCK_FAILURE, "lock did not reach its position"),
    (FaultBit.PERMISSION_LAPSED, FaultCode.MCU_TIMEOUT, "MCU heard nothing from the agent"),
)


LINK_KEYS = frozenset({"port", "baudrate", "heartbeat_ms", "timeout_ms"})


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DriverOptionError(key, f"expected an integer within {low}..{high}, got {value!r}")
    return value


def _link_settings(options: Mapping[str, Any]) -> LinkSettings:
    """Read port, baudrate, heartbeat_ms, timeout_ms; raises DriverOptionError."""
    port = options.get("port")
    if not isinstance(port, str) or not port.strip():
        raise DriverOptionError("port", f"a serial port or pyserial URL is required, got {port!r}")
    heartbeat_ms = _int_option(options, "heartbeat_ms", DEFAULT_HEARTBEAT_MS, 10, 10_000)
    timeout_ms = _int_option(options, "timeout_ms", DEFAULT_TIMEOUT_MS, 20, 60_000)
    if timeout_ms < 2 * heartbeat_ms:
        raise DriverOptionError("timeout_ms", "must be at least twice heartbeat_ms")
    return LinkSettings(
        port=port.strip(),
        baudrate=_int_option(options, "baudrate", 115200, 1200, 4_000_000),
        heartbeat_ms=heartbeat_ms,
        timeout_ms=timeout_ms,
    )


def check_keys(options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in options:
        if key not in allowed:
            raise DriverOptionError(key, f"unknown option (known: {', '.join(sorted(allowed))})")


def shared_link(
    options: Mapping[str, Any], context: DriverContext, *, port_optional: bool
) -> SerialMcuLink:
    """The link for the configured port (or the board's on this EVSE), created once."""
    link_options = {k: v for k, v in options.items() if k in LINK_KEYS}
    if "port" not in link_options and port_optional:
        board_port = context.shared.get(("serial_mcu", "evse", context.evse_id))
        if board_port is None:
            raise DriverOptionError("port", "required: no serial_mcu board on this EVSE to share")
        link_options["port"] = board_port
    settings = _link_settings(link_options)
    key = ("serial_mcu", settings.port)
    link = context.shared.get(key)
    if link is None:
        link = SerialMcuLink(settings)
        context.shared[key] = link
        return link
    existing: LinkSettings = link.settings
    for name in LINK_KEYS - {"port"}:
        if name in options and getattr(settings, name) != getattr(existing, name):
            raise DriverOptionError(name, f"differs from the other driver on {settings.port}")
    result: SerialMcuLink = link
    return result


class SerialMcuBoardSupport:
    """BoardSupport over the serial MCU: pilot, PWM, contactor, and the MCU's faults."""

    OPTIONS = LINK_KEYS | {"contactor_feedback"}

    def __init__(self, link: SerialMcuLink, capabilities: BoardCapabilities) -> None:
        """A stopped board on `link`."""
        self._link = link
        self._capabilities = capabilities
        self._sink: BoardEventSink | None = None
        self._started = False
        self._reported_pilot: PilotState | None = None
        self._reported_contactor: bool | None = None
        self._reported_faults: set[FaultCode] = set()

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], context: DriverContext
    ) -> SerialMcuBoardSupport:
        """Build from the YAML options; raises DriverOptionError."""
        check_keys(options, cls.OPTIONS)
        feedback = options.get("contactor_feedback", True)
        if not isinstance(feedback, bool):
            raise DriverOptionError(
                "contactor_feedback", f"expected true or false, got {feedback!r}"
            )
        link = shared_link(options, context, port_optional=False)
        if link.board_claimed:
            raise DriverOptionError("port", f"{link.settings.port} already drives another EVSE")
        link.board_claimed = True
        context.shared[("serial_mcu", "evse", context.evse_id)] = link.settings.port
        capabilities = BoardCapabilities(
            max_current_a=context.max_current_a,
            phases=context.phases,
            has_contactor_feedback=feedback,
        )
        return cls(link, capabilities)

    @property
    def capabilities(self) -> BoardCapabilities:
        """Static limits of this EVSE's power path."""
        return self._capabilities

    @property
    def link(self) -> SerialMcuLink:
        """The link to the MCU (shared with the lock)."""
        return self._link

    @property
    def cable_ampacity_a(self) -> int | None:
        """The plugged cable's ampacity from PP (None: unknown, none or tethered)."""
        pp = self._link.report(Pp)
        return pp.ampacity_a if pp is not None and pp.ampacity_a not in (0, 0xFF) else None

    @property
    def allowed_current_a(self) -> float | None:
        """The board's temperature derating hint (None: not derating or unknown)."""
        temperature = self._link.report(Temperature)
        if temperature is None or temperature.allowed_current_da == NO_CURRENT_LIMIT:
            return None
        return temperature.allowed_current_da / 10.0

    async def start(self, sink: BoardEventSink) -> None:
        """Open the link, await the MCU's snapshot and report it.

        If the port cannot be opened or the MCU does not answer within timeout_ms, an
        MCU_TIMEOUT fault is reported instead of a pilot state (the pilot follows once
        the MCU answers). Raises DriverError when already started.
        """
        if self._started:
            raise DriverError("board already started")
        await self._link.attach()
        self._started = True
        self._reported_pilot = self._reported_contactor = None
        self._reported_faults = set()
        self._link.add_listener(self._publish)
        settings = self._link.settings
        await self._link.wait_for(
            lambda: self._link.state in (LinkState.READY, LinkState.LOST),
            settings.timeout_s + 2 * settings.heartbeat_s,
        )
        self._sink = sink
        self._publish()

    async def stop(self) -> None:
        """Stop reporting, open the contactor, +12 V on the pilot, release the link."""
        if not self._started:
            return
        self._sink = None
        self._link.remove_listener(self._publish)
        try:
            await self._link.grant(Grant.CONTACTOR, False, safe=True)
            await self._link.grant(Grant.PWM, (PilotMode.OFF, 0), safe=True)
        finally:
            self._started = False
            await self._link.detach()

    async def pwm_on(self, duty_percent: float) -> None:
        """Oscillate the pilot with this duty; raises DriverError (bad duty, MCU lost)."""
        if not (math.isfinite(duty_percent) and 0.0 <= duty_percent <= 100.0):
            raise DriverError(f"duty_percent must be within 0..100, got {duty_percent}")
        await self._link.grant(Grant.PWM, (PilotMode.PWM, round(duty_percent * 10)), safe=False)

    async def pwm_off(self) -> None:
        """Hold the pilot at +12 V; raises DriverError when the MCU does not confirm."""
        await self._link.grant(Grant.PWM, (PilotMode.OFF, 0), safe=True)

    async def pwm_f(self) -> None:
        """Drive the pilot to -12 V; raises DriverError when the MCU does not confirm."""
        await self._link.grant(Grant.PWM, (PilotMode.F, 0), safe=False)

    async def set_contactor(self, closed: bool) -> None:
        """Grant (or revoke) permission to close; the mirror arrives as a ContactorEvent."""
        await self._link.grant(Grant.CONTACTOR, closed, safe=not closed)

    async def rcd_self_test(self) -> SelfTest:
        """Run the RCD self-test at the MCU; raises DriverError without an answer."""
        link = self._link
        before = link.report_counts[MsgType.SELFTEST_RESULT]
        link.request_selftest()
        if not await link.wait_for(
            lambda: link.report_counts[MsgType.SELFTEST_RESULT] > before, SELFTEST_TIMEOUT_S
        ):
            raise DriverError("MCU did not report an RCD self-test result")
        report = link.report(SelfTestResult)
        return SelfTest.FAILED if report is None else report.result

    def _publish(self) -> None:
        """Report what changed since the last report, pilot first."""
        sink = self._sink
        if sink is None:
            return
        link = self._link
        pilot_report = link.report(Pilot)
        if pilot_report is not None:
            pilot = PilotState(pilot_report.state.name)
            if pilot != self._reported_pilot:
                self._reported_pilot = pilot
                self._emit(sink, PilotEvent(pilot))
        contactor = link.report(Contactor)
        if contactor is not None:
            use_mirror = self._capabilities.has_contactor_feedback
            mirror = contactor.mirror
            closed = (
                mirror is Mirror.CLOSED
                if use_mirror and mirror is not Mirror.NOT_FITTED
                else contactor.coil
            )
            if closed != self._reported_contactor:
                self._reported_contactor = closed
                self._emit(sink, ContactorEvent(closed))
        active = self._active_faults()
        for code in FaultCode:
            if (code in active) != (code in self._reported_faults):
                if code in active:
                    self._reported_faults.add(code)
                    self._emit(sink, FaultEvent(code, True, active[code]))
                else:
                    self._reported_faults.discard(code)
                    self._emit(sink, FaultEvent(code, False))

    def _active_faults(self) -> dict[FaultCode, str]:
        details: dict[FaultCode, list[str]] = {}
        faults = self._link.report(Faults)
        bits = faults.bits if faults is not None else 0
        for bit, code, text in BIT_FAULTS:
            if bits & bit:
                details.setdefault(code, []).append(text)
        unknown = bits & ~KNOWN_FAULT_BITS
        if unknown:
            details.setdefault(FaultCode.INTERNAL_ERROR, []).append(
                f"unknown MCU fault bits 0x{unknown:x}"
            )
        if self._link.link_fault is not None:
            details.setdefault(FaultCode.MCU_TIMEOUT, []).append(self._link.link_fault)
        return {code: "; ".join(texts) for code, texts in details.items()}

    @staticmethod
    def _emit(sink: BoardEventSink, event: BoardEvent) -> None:
        try:
            sink(event)
        except Exception:
            log.exception("board event sink failed on %r", event)


class SerialMcuConnectorLock:
    """ConnectorLock driven by the serial MCU (the board's link, or its own port)."""

    OPTIONS = LINK_KEYS | {"lock_timeout_ms"}

    def __init__(self, link: SerialMcuLink, *, lock_timeout_s: float) -> None:
        """A lock on `link` that gives a motion `lock_timeout_s` to report its end."""
        self._link = link
        self._lock_timeout_s = lock_timeout_s

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], context: DriverContext
    ) -> SerialMcuConnectorLock:
        """Build from the YAML options (port defaults to the board's); raises DriverOptionError."""
        check_keys(options, cls.OPTIONS)
        timeout_ms = _int_option(options, "lock_timeout_ms", DEFAULT_LOCK_TIMEOUT_MS, 100, 60_000)
        link = shared_link(options, context, port_optional=True)
        return cls(link, lock_timeout_s=timeout_ms / 1000.0)

    @property
    def link(self) -> SerialMcuLink:
        """The link to the MCU (shared with the board)."""
        return self._link

    async def set_locked(self, locked: bool) -> bool:
        """Drive the lock; True once the MCU reports the position reached, False if the
        motion failed. Raises DriverError when the MCU does not answer."""
        link = self._link
        await link.attach()
        try:
            before = link.report_counts[MsgType.LOCK]
            await link.grant(Grant.LOCK, locked, safe=False)

            def ended() -> bool:
                report = link.report(Lock)
                return (
                    link.report_counts[MsgType.LOCK] > before
                    and report is not None
                    and report.requested == locked
                    and report.result is not LockResult.IN_PROGRESS
                )

            if not await link.wait_for(ended, self._lock_timeout_s):
                raise DriverError("the MCU did not report the end of the lock motion")
            report = link.report(Lock)
            target = LockPosition.LOCKED if locked else LockPosition.UNLOCKED
            return (
                report is not None
                and report.result is LockResult.REACHED
                and report.position is target
            )
        finally:
            await link.detach()
