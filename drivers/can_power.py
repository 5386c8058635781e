"""DC power modules and an insulation monitor on a CAN bus (python-can).

Responsible for two drivers (docs/can-power-module.md has the frames and their sources):

* `CanPowerModule` (PowerModule): one Infypower REG/CEG-series AC/DC module, CAN protocol
  V1.13. It polls output voltage/current and status every `poll_interval_s` (which also
  keeps the module's own 10 s communication watchdog fed), sends absolute setpoints and
  on/off, and turns the module's fault flags and its silence into FaultEvents.
* `CanIsolationMonitor` (IsolationMonitor): a Bender iso165C-style IMD. It sets the
  device's thresholds, switches measuring on and off, runs the self-test, and turns each
  cyclic IMD_Info into an IsolationReading, and an alarm, a device failure or silence
  into FaultEvent(ISOLATION_FAULT).

Both run on the event loop thread; frames arrive there through `CanLink`
(drivers/can_link.py), which owns the python-can threads. Fault bookkeeping: a driver
keeps the set of active codes with the reasons behind each, and reports only changes, so
a code raised by two causes clears when the last one does.

It must not decide anything: no cable check, no pre-charge, no ISO 15118, no OCPP. It
does not switch a module off by itself on a fault (the core does; the module protects
itself in hardware and switches off after 10 s without messages, per V1.13).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Self

import can

from drivers.can_frames import (
    CONTROLLER_ADDRESS,
    IMC_CHASSIS_FAULT,
    IMC_INSULATION_FAULT,
    IMC_INSULATION_WARNING,
    IMC_SELF_TEST_RUNNING,
    IMC_SYSTEM_FAILURE,
    IMD_INFO_ID,
    IMD_REQUEST_ID,
    IMD_RESPONSE_ID,
    READ_COMMANDS,
    READ_REQUEST,
    SELF_TEST_OVERALL,
    VIFC_OVERALL_SELF_TEST_NOT_RUN,
    FrameError,
    ImdCommand,
    ImdInfo,
    InfyCommand,
    InfyId,
    InfyStatus,
    check_payload,
    decode_capabilities,
    decode_imd_info,
    decode_infy_id,
    decode_status,
    decode_vi,
    encode_imd_request,
    encode_infy_id,
    encode_on_off,
    encode_set_vi,
    fault_causes,
)
from drivers.can_link import (
    BUS_KEYS,
    CanLink,
    Monotonic,
    cancel_task,
    check_keys,
    diff_faults,
    integer_option,
    link_from_options,
    number_option,
    track_task,
)
from drivers.interfaces import DriverError, IsolationEventSink, PowerModuleEventSink
from drivers.registry import DriverContext, DriverOptionError
from drivers.types import (
    FaultCode,
    IsolationReading,
    IsolationSelfTest,
    PowerModuleCapabilities,
    PowerModuleReading,
)

_log = logging.getLogger(__name__)

__all__ = ["CanIsolationMonitor", "CanLink", "CanPowerModule"]


# --- the power module -----------------------------------------------------------------------


class CanPowerModule:
    """PowerModule over one Infypower REG/CEG-series module (CAN protocol V1.13)."""

    OPTIONS = BUS_KEYS | {
        "address",
        "controller_address",
        "max_voltage_v",
        "min_voltage_v",
        "max_current_a",
        "max_power_w",
        "poll_interval_s",
        "timeout_s",
    }

    def __init__(
        self,
        link: CanLink,
        *,
        address: int,
        capabilities: PowerModuleCapabilities,
        controller_address: int = CONTROLLER_ADDRESS,
        poll_interval_s: float = 1.0,
        timeout_s: float = 3.0,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        """Drive the module at `address` on `link`; silent for `timeout_s` is a fault."""
        self._link = link
        self.address = address
        self._capabilities = capabilities
        self._controller = controller_address
        self._poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._monotonic = monotonic
        self._sink: PowerModuleEventSink | None = None
        self._poller: asyncio.Task[None] | None = None
        self._last_answer = 0.0
        self._silent = False
        self._status: InfyStatus | None = None
        self._vi: tuple[float, float] | None = None
        # Answers are matched to requests by order, per command: the k-th answer to 0x03
        # answers the k-th 0x03 request (CAN keeps order and the module answers in turn).
        self._asked: dict[int, int] = {}
        self._answered: dict[int, int] = {}
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        self._active: set[FaultCode] = set()
        self.reported_capabilities: PowerModuleCapabilities | None = None
        self.garbled_frames = 0
        self._garbling = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> Self:
        """Build from a config's options; raises DriverOptionError naming the bad key."""
        check_keys(options, cls.OPTIONS)
        poll_interval_s = number_option(options, "poll_interval_s", 1.0, 0.01, 5.0)
        # The module switches itself off after 10 s without a message (V1.13).
        timeout_s = number_option(options, "timeout_s", 3.0, 0.05, 60.0)
        if timeout_s <= poll_interval_s:
            raise DriverOptionError("timeout_s", "must be longer than poll_interval_s")
        max_voltage_v = number_option(options, "max_voltage_v", None, 1.0, 1500.0)
        capabilities = PowerModuleCapabilities(
            max_voltage_v=max_voltage_v,
            max_current_a=number_option(options, "max_current_a", None, 0.1, 1000.0),
            max_power_w=number_option(options, "max_power_w", None, 1.0, 1_000_000.0),
            min_voltage_v=number_option(options, "min_voltage_v", 0.0, 0.0, max_voltage_v),
        )
        return cls(
            link_from_options(options, context),
            address=integer_option(options, "address", None, 0, 0x3E),  # 0x3F: broadcast
            capabilities=capabilities,
            controller_address=integer_option(
                options, "controller_address", CONTROLLER_ADDRESS, 0, 255
            ),
            poll_interval_s=poll_interval_s,
            timeout_s=timeout_s,
        )

    @property
    def capabilities(self) -> PowerModuleCapabilities:
        """Static limits of this power stage (from the config)."""
        return self._capabilities

    @property
    def started(self) -> bool:
        """Whether faults are being reported to a sink."""
        return self._sink is not None

    async def start(self, sink: PowerModuleEventSink) -> None:
        """Open the bus, switch the output off and begin polling; raises DriverError."""
        if self._sink is not None:
            raise DriverError("power module already started")
        await self._link.attach(self._on_frame)
        # A new sink hears every fault afresh: forget what the previous one was told.
        self._sink, self._active, self._silent = sink, set(), False
        self._status = self._vi = None
        self._asked.clear()
        self._answered.clear()
        self._last_answer = self._monotonic()  # silence is counted from now
        try:
            await self._command(InfyCommand.SET_ON_OFF, encode_on_off(False))
        except DriverError:
            await self.stop()
            raise
        self._poller = asyncio.create_task(self._poll(), name=f"can-module-{self.address}-poll")
        track_task(self._poller, f"polling power module {self.address}")

    async def stop(self) -> None:
        """Switch the output off (best effort), stop polling and release the bus."""
        if self._sink is None:
            return
        try:
            await self._command(InfyCommand.SET_ON_OFF, encode_on_off(False))
        except DriverError as exc:
            _log.warning("power module %s: could not switch off on stop: %s", self.address, exc)
        await cancel_task(self._poller)
        self._poller = None
        await self._link.detach(self._on_frame)
        self._sink = None
        for waiters in self._waiters.values():
            for _, waiter in waiters:  # only reads in flight wait: they get the error
                if not waiter.done():
                    waiter.set_exception(DriverError("power module stopped"))
        self._waiters.clear()

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        """Send the voltage setpoint and current limit; raises DriverError beyond capabilities."""
        caps = self._capabilities
        if not (math.isfinite(voltage_v) and math.isfinite(current_a)):
            raise DriverError(f"setpoint {voltage_v} V, {current_a} A is not a number")
        if not (voltage_v == 0 or caps.min_voltage_v <= voltage_v <= caps.max_voltage_v):
            raise DriverError(
                f"{voltage_v:g} V outside {caps.min_voltage_v:g}-{caps.max_voltage_v:g} V"
            )
        if not 0 <= current_a <= caps.max_current_a:
            raise DriverError(f"{current_a:g} A outside 0-{caps.max_current_a:g} A")
        if voltage_v * current_a > caps.max_power_w * (1 + 1e-9):
            raise DriverError(f"{voltage_v * current_a:g} W above {caps.max_power_w:g} W")
        await self._command(InfyCommand.SET_VI, encode_set_vi(voltage_v, current_a))

    async def set_enabled(self, on: bool) -> None:
        """Switch the DC output on or off."""
        await self._command(InfyCommand.SET_ON_OFF, encode_on_off(on))

    async def read(self) -> PowerModuleReading:
        """Ask for output and status and return the answers; raises DriverError on silence."""
        if self._sink is None:
            raise DriverError("power module not started")
        loop = asyncio.get_running_loop()
        commands: tuple[int, ...] = (InfyCommand.READ_VI, InfyCommand.READ_STATUS)
        waiters: list[tuple[int, tuple[int, asyncio.Future[None]]]] = []
        try:
            for command in commands:
                # Registered before the request leaves, for the answer to this request.
                waiter = (self._asked.get(command, 0) + 1, loop.create_future())
                self._waiters.setdefault(command, []).append(waiter)
                waiters.append((command, waiter))
                await self._command(command, READ_REQUEST)
            async with asyncio.timeout(min(self._timeout_s, 1.0)):
                await asyncio.gather(*(future for _, (_, future) in waiters))
        except TimeoutError:
            for command in commands:  # the answers are lost: count them as such
                self._answered[command] = self._asked.get(command, 0)
            raise DriverError(f"power module {self.address} did not answer") from None
        finally:
            for command, waiter in waiters:
                if waiter in self._waiters.get(command, []):
                    self._waiters[command].remove(waiter)
        if self._vi is None or self._status is None:
            raise DriverError(f"power module {self.address} gave no reading")
        voltage_v, current_a = self._vi
        return PowerModuleReading(
            voltage_v=voltage_v,
            current_a=current_a,
            output_on=self._status.output_on,
            temperature_c=float(self._status.temperature_c),
            flags=self._status.flags,
        )

    async def _command(self, command: int, payload: bytes) -> None:
        ident = InfyId(command, destination=self.address, source=self._controller)
        message = can.Message(
            arbitration_id=encode_infy_id(ident), data=payload, is_extended_id=True
        )
        reading = command in READ_COMMANDS
        if reading:  # counted and queued with no await in between: the order holds
            self._asked[command] = self._asked.get(command, 0) + 1
        try:
            await self._link.send(message)
        except DriverError:
            if reading:
                self._asked[command] -= 1
            raise

    async def _poll(self) -> None:
        first = True
        while True:
            if not self._silent and self._monotonic() - self._last_answer > self._timeout_s:
                self._silent = True
                self._answered.update(self._asked)  # what was not answered never will be
                self._report()
            commands = [InfyCommand.READ_VI, InfyCommand.READ_STATUS]
            if self.reported_capabilities is None:
                commands.append(InfyCommand.READ_CAPABILITIES)
            try:
                for command in commands:
                    await self._command(command, READ_REQUEST)
            except DriverError as exc:
                if first or not self._silent:
                    _log.warning("power module %s: poll failed: %s", self.address, exc)
            first = False
            await asyncio.sleep(self._poll_interval_s)

    def _on_frame(self, msg: can.Message) -> None:
        if not msg.is_extended_id or msg.is_error_frame or msg.is_remote_frame:
            return
        ident = decode_infy_id(msg.arbitration_id)
        if ident.destination != self._controller or ident.source != self.address:
            return
        command = ident.command
        failure: DriverError | None = None
        if ident.error_code:
            failure = DriverError(
                f"power module {self.address} refused command 0x{command:02X}"
                f" (error code {ident.error_code})"
            )
            _log.warning("%s", failure)
        else:
            try:
                if command == InfyCommand.READ_VI:
                    self._vi = decode_vi(msg.data)
                elif command == InfyCommand.READ_STATUS:
                    self._status = decode_status(msg.data)
                elif command == InfyCommand.READ_CAPABILITIES:
                    self._on_capabilities(decode_capabilities(msg.data))
                else:
                    check_payload(msg.data)
            except FrameError as exc:
                self.garbled_frames += 1
                failure = DriverError(f"power module {self.address}: garbled answer: {exc}")
                level = logging.DEBUG if self._garbling else logging.WARNING
                self._garbling = True  # one warning per run of garbled frames
                _log.log(level, "%s", failure)
        if command in READ_COMMANDS:
            self._settle(command, failure)
        if failure is None:
            self._garbling = False
            self._last_answer = self._monotonic()
            self._silent = False
            self._report()

    def _settle(self, command: int, failure: DriverError | None) -> None:
        """Count one answer to `command` and settle the reads that were waiting for it."""
        # An answer nobody asked for (left over from before a restart) is not counted.
        answered = min(self._answered.get(command, 0) + 1, self._asked.get(command, 0))
        self._answered[command] = answered
        for target, waiter in self._waiters.get(command, []):
            if target <= answered and not waiter.done():
                if failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(failure)

    def _on_capabilities(self, reported: PowerModuleCapabilities) -> None:
        self.reported_capabilities = reported
        caps = self._capabilities
        if (
            reported.max_voltage_v < caps.max_voltage_v
            or reported.max_current_a < caps.max_current_a
            or reported.max_power_w < caps.max_power_w
        ):
            _log.warning("power module %s reports less than configured: %s", self.address, reported)

    def _report(self) -> None:
        causes = fault_causes(self._status.flags) if self._status is not None else {}
        if self._silent:
            causes.setdefault(FaultCode.POWER_MODULE_FAULT, []).append(
                f"no answer from module {self.address} for {self._timeout_s:g} s"
            )
        sink = self._sink
        events = diff_faults(self._active, causes)
        self._active = set(causes)
        if sink is not None:
            for event in events:
                sink(event)


# --- the isolation monitor ------------------------------------------------------------------


class CanIsolationMonitor:
    """IsolationMonitor over a Bender iso165C-style IMD (IMD_Request/Response/Info frames)."""

    OPTIONS = BUS_KEYS | {
        "alarm_threshold_ohm",
        "warning_threshold_ohm",
        "timeout_s",
        "self_test_timeout_s",
    }

    def __init__(
        self,
        link: CanLink,
        *,
        alarm_threshold_ohm: float = 100_000.0,
        warning_threshold_ohm: float = 500_000.0,
        timeout_s: float = 3.0,
        self_test_timeout_s: float = 30.0,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        """Monitor the IMD on `link`; no IMD_Info for `timeout_s` is a fault."""
        self._link = link
        self._alarm_ohm = alarm_threshold_ohm
        self._warning_ohm = warning_threshold_ohm
        self._timeout_s = timeout_s
        self._self_test_timeout_s = self_test_timeout_s
        self._monotonic = monotonic
        self._sink: IsolationEventSink | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_info = 0.0
        self._silent = False
        self._info: ImdInfo | None = None
        self._active: set[FaultCode] = set()
        self._self_test_deadline: float | None = None
        self._self_test_seen_running = False
        self.garbled_frames = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: DriverContext) -> Self:
        """Build from a config's options; raises DriverOptionError naming the bad key."""
        check_keys(options, cls.OPTIONS)
        # Settable ranges of the iso165C (foxBMS checks the same): alarm 30 kOhm-1 MOhm,
        # warning 40 kOhm-2 MOhm.
        alarm = number_option(options, "alarm_threshold_ohm", 100_000.0, 30_000.0, 1_000_000.0)
        warning = number_option(options, "warning_threshold_ohm", 500_000.0, 40_000.0, 2_000_000.0)
        if warning < alarm:
            raise DriverOptionError("warning_threshold_ohm", "must not be below the alarm")
        return cls(
            link_from_options(options, context),
            alarm_threshold_ohm=alarm,
            warning_threshold_ohm=warning,
            timeout_s=number_option(options, "timeout_s", 3.0, 0.05, 60.0),
            self_test_timeout_s=number_option(options, "self_test_timeout_s", 30.0, 0.1, 600.0),
        )

    @property
    def alarm_threshold_ohm(self) -> float:
        """The resistance below which the device raises its alarm."""
        return self._alarm_ohm

    async def start(self, sink: IsolationEventSink) -> None:
        """Open the bus, unlock the device and set its thresholds; raises DriverError."""
        if self._sink is not None:
            raise DriverError("isolation monitor already started")
        await self._link.attach(self._on_frame)
        self._sink, self._active, self._silent, self._info = sink, set(), False, None
        self._last_info = self._monotonic()
        try:
            await self._request(ImdCommand.LOCK, 0, 0)  # unlocked, password 0
            await self._request(ImdCommand.SET_ALARM_THRESHOLD, round(self._alarm_ohm / 1000))
            await self._request(ImdCommand.SET_WARNING_THRESHOLD, round(self._warning_ohm / 1000))
        except DriverError:
            await self.stop()
            raise
        self._watchdog = asyncio.create_task(self._watch(), name="can-imd-watchdog")
        track_task(self._watchdog, "watching the isolation monitor")

    async def stop(self) -> None:
        """Stop measuring (best effort), then stop reporting and release the bus."""
        if self._sink is None:
            return
        try:
            await self._request(ImdCommand.MEASUREMENT, 0)
        except DriverError as exc:
            _log.warning("isolation monitor: could not stop measuring: %s", exc)
        await cancel_task(self._watchdog)
        self._watchdog = None
        await self._link.detach(self._on_frame)
        self._sink = None

    async def set_measuring(self, on: bool) -> None:
        """Start or stop recurring insulation measurements."""
        await self._request(ImdCommand.MEASUREMENT, 1 if on else 0)

    async def start_self_test(self) -> None:
        """Ask for the overall self-test; the verdict arrives as an IsolationSelfTest."""
        await self._request(ImdCommand.SELF_TEST, SELF_TEST_OVERALL)
        self._self_test_deadline = self._monotonic() + self._self_test_timeout_s
        self._self_test_seen_running = False

    async def _request(self, command: int, word1: int = 0, word2: int = 0) -> None:
        payload = encode_imd_request(command, word1, word2)
        await self._link.send(
            can.Message(arbitration_id=IMD_REQUEST_ID, data=payload, is_extended_id=False)
        )

    async def _watch(self) -> None:
        period_s = min(self._timeout_s, self._self_test_timeout_s) / 4
        while True:
            await asyncio.sleep(period_s)
            now = self._monotonic()
            if not self._silent and now - self._last_info > self._timeout_s:
                self._silent = True
                self._report()
            if self._self_test_deadline is not None and now > self._self_test_deadline:
                self._finish_self_test(False, "no self-test result in time")

    def _on_frame(self, msg: can.Message) -> None:
        if msg.is_extended_id or msg.is_error_frame or msg.is_remote_frame:
            return
        if msg.arbitration_id == IMD_RESPONSE_ID:
            if msg.data:
                _log.debug("isolation monitor acknowledged command 0x%02X", msg.data[0])
            return
        if msg.arbitration_id != IMD_INFO_ID:
            return
        try:
            info = decode_imd_info(msg.data)
        except FrameError as exc:
            self.garbled_frames += 1
            _log.warning("isolation monitor: garbled IMD_Info dropped: %s", exc)
            return
        self._info = info
        self._last_info = self._monotonic()
        self._silent = False
        self._track_self_test(info)
        if self._sink is not None:
            self._sink(
                IsolationReading(
                    resistance_ohm=info.resistance_kohm * 1000.0,
                    valid=info.valid,
                    warning=bool(info.imc_status & IMC_INSULATION_WARNING),
                )
            )
        self._report()

    def _track_self_test(self, info: ImdInfo) -> None:
        if self._self_test_deadline is None:
            return
        if info.imc_status & IMC_SELF_TEST_RUNNING:
            self._self_test_seen_running = True
        elif self._self_test_seen_running:
            if info.imc_status & IMC_SYSTEM_FAILURE:
                self._finish_self_test(False, "device reports a system failure")
            elif info.vifc_status & VIFC_OVERALL_SELF_TEST_NOT_RUN:
                self._finish_self_test(False, "device reports the self-test as not run")
            else:
                self._finish_self_test(True)

    def _finish_self_test(self, passed: bool, detail: str = "") -> None:
        self._self_test_deadline = None
        self._self_test_seen_running = False
        if self._sink is not None:
            self._sink(IsolationSelfTest(passed, detail))

    def _report(self) -> None:
        reasons: list[str] = []
        info = self._info
        if info is not None:
            ohm = info.resistance_kohm * 1000.0
            if info.imc_status & IMC_INSULATION_FAULT or (info.valid and ohm < self._alarm_ohm):
                reasons.append(
                    f"insulation {ohm:g} ohm below alarm threshold {self._alarm_ohm:g} ohm"
                )
            if info.imc_status & IMC_CHASSIS_FAULT:
                reasons.append("IMD earth (chassis) connection fault")
            if info.imc_status & IMC_SYSTEM_FAILURE:
                reasons.append("IMD device failure")
        if self._silent:
            reasons.append(f"no IMD_Info for {self._timeout_s:g} s")
        causes = {FaultCode.ISOLATION_FAULT: reasons} if reasons else {}
        events = diff_faults(self._active, causes)
        self._active = set(causes)
        if self._sink is not None:
            for event in events:
                self._sink(event)
