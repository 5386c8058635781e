"""The NFC/RFID reader on nfcpy: card UIDs in, normalised id tokens out.

Responsible for one contactless reader that nfcpy drives (docs/nfc-reader.md lists them):
opening it, polling for ISO 14443 A/B and FeliCa cards, turning each card's UID into the
id token format the installation uses (`UidFormat`), and debouncing repeated reads
(`TapDebouncer`) so that one presentation of a card is one `TokenRead`.

The nfcpy API is blocking, so the driver runs `ContactlessFrontend.connect()` in a thread
of its own; reads and faults reach the event loop through `loop.call_soon_threadsafe`.
Everything nfcpy-facing sits behind a small seam (`CardSource`: `connect(path)` returns a
frontend with nfcpy's `connect(rdwr=..., terminate=...)` and `close()`): `NfcpyCardSource`
opens `nfc.ContactlessFrontend(path)`; the tests put a fake shaped like nfcpy's frontend
and tag objects in its place (tests/contract/harness_nfc_reader.py).

How nfcpy's reader loop is used (nfcpy `ContactlessFrontend.connect`, "Reader/Writer
Options"): `on-connect` returns True, so nfcpy waits until the card has left the field
and then calls `on-release`; a card left on the reader is therefore one tap until it is
removed. `iterations` is 1 and the `terminate` callback waits up to `poll_interval_s` on
the stop event: that paces the polling and lets `stop()` end the thread at once instead
of after nfcpy's default 5 x 0.5 s sense cycle. nfcpy swallows an I/O error of the device
(an unplugged USB reader) and returns False from `connect()`; the driver then reports
READER_FAILURE, closes the device and reopens it every `retry_interval_s`; the fault
clears once a reopened device has completed a polling round.

The TokenReader Protocol has no fault sink: `start()` takes an optional second sink for
FaultEvents (READER_FAILURE); without one, failures are only logged.

It must not decide what a token means (authorisation is the core's) and knows no OCPP.
nfcpy is imported only by `NfcpyCardSource.connect`, so this module imports without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from drivers.interfaces import DriverError, TokenSink
from drivers.registry import DriverContext, DriverOptionError, DriverUnavailable
from drivers.types import FaultCode, FaultEvent, TokenRead, TokenType

log = logging.getLogger(__name__)

FaultSink = Callable[[FaultEvent], None]

#: nfcpy's bitrate/technology strings for the cards an EV charger reads: ISO 14443 A
#: (MIFARE, NTAG, DESFire), ISO 14443 B and FeliCa (nfcpy's own default set).
TARGETS = ("106A", "106B", "212F")
UID_LENGTHS = (4, 7, 10)
SEPARATORS = ("", ":")

_PATH = re.compile(
    r"usb(:[0-9A-Fa-f]{3,4}){0,2}"  # usb[:vendor[:product]] or usb[:bus[:device]]
    r"|(tty|com):[^:\s]+(:[A-Za-z0-9_]+)?"  # tty:USB0:pn532, com:3:arygon
    r"|udp(:[^:\s]*)?(:\d+)?"  # nfcpy's UDP test transport
)


# --- the nfcpy boundary ---------------------------------------------------------------------


class NfcTag(Protocol):
    """What the driver reads of an nfcpy tag (`nfc.tag.Tag`)."""

    @property
    def identifier(self) -> bytes:
        """The UID (NFCID1 for type A, PUPI for type B, IDm for FeliCa), as sent."""
        ...

    @property
    def type(self) -> str:
        """nfcpy's tag type: "Type1Tag" .. "Type4Tag"."""
        ...


class CardFrontend(Protocol):
    """An opened reader: the part of `nfc.ContactlessFrontend` the driver uses."""

    def connect(self, **options: Any) -> Any:
        """Poll and activate cards as nfcpy's `connect(rdwr=..., terminate=...)` does."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


class CardSource(Protocol):
    """Opens readers by nfcpy path ("usb", "usb:054c:06c3", "tty:USB0:pn532", ...)."""

    def connect(self, path: str) -> CardFrontend:
        """Open the reader at `path`; raises OSError when there is none or it is busy."""
        ...


class NfcpyCardSource:
    """The real CardSource: nfcpy's ContactlessFrontend (needs `cpagent[nfc]`)."""

    def connect(self, path: str) -> CardFrontend:
        """Open the reader at `path`; raises OSError (nfcpy: ENODEV, EACCES, EBUSY)."""
        import nfc  # the optional extra: imported only when a real reader is opened

        frontend: CardFrontend = nfc.ContactlessFrontend(path)
        return frontend


# --- UID normalisation and debouncing ---------------------------------------------------------


class HexCase(StrEnum):
    """Letter case of the hex digits in a token."""

    UPPER = "upper"
    LOWER = "lower"


class ByteOrder(StrEnum):
    """msb: the UID's bytes in the order the card sends them (UID0 first); lsb: reversed."""

    MSB = "msb"
    LSB = "lsb"


@dataclass(frozen=True, slots=True)
class UidFormat:
    """How a UID becomes an id token (docs/nfc-reader.md has the table of examples).

    1. `length` (None: keep) shorter than the UID truncates it to its first bytes as sent
       (UID0 .. UID(n-1));
    2. `byte_order` lsb reverses the bytes;
    3. `length` longer than the UID pads it with zero bytes in front ("000000" + UID);
    4. every byte becomes two hex digits in `case`, joined by `separator`.
    """

    case: HexCase = HexCase.UPPER
    byte_order: ByteOrder = ByteOrder.MSB
    length: int | None = None
    separator: str = ""

    def apply(self, uid: bytes) -> str:
        """The id token for `uid` (bytes as the card sent them); raises ValueError if empty."""
        if not uid:
            raise ValueError("empty UID")
        data = uid[: self.length] if self.length is not None else uid
        if self.byte_order is ByteOrder.LSB:
            data = data[::-1]
        if self.length is not None and len(data) < self.length:
            data = bytes(self.length - len(data)) + data
        text = self.separator.join(f"{octet:02x}" for octet in data)
        return text.upper() if self.case is HexCase.UPPER else text


class TapDebouncer:
    """Decides which card arrivals are new taps; the reader thread owns it.

    A card is "seen" from its arrival until it leaves the field. The same UID arriving
    again less than `debounce_s` after it was last seen is the same tap (a card bouncing at
    the edge of the field, or held a moment too long); a different UID is a new tap. Each
    UID has its own window, so two cards in a wallet that the anticollision picks in turn
    do not make a stream of taps.
    """

    def __init__(self, debounce_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        """A debouncer with no card seen; raises ValueError for a negative window."""
        if not (math.isfinite(debounce_s) and debounce_s >= 0.0):
            raise ValueError(f"debounce_s must be >= 0, got {debounce_s}")
        self._debounce_s = debounce_s
        self._monotonic = monotonic
        self._last_seen_s: dict[bytes, float] = {}

    def arrived(self, uid: bytes) -> bool:
        """Record that `uid` entered the field; return whether this is a new tap."""
        now_s = self._monotonic()
        self._last_seen_s = {
            seen: at_s
            for seen, at_s in self._last_seen_s.items()
            if now_s - at_s < self._debounce_s
        }
        repeat = uid in self._last_seen_s
        self._last_seen_s[uid] = now_s
        return not repeat

    def left(self, uid: bytes) -> None:
        """Record that `uid` left the field: its window runs from now."""
        self._last_seen_s[uid] = self._monotonic()


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NfcReaderOptions:
    """The validated options of one reader (`reader: {driver: nfc, ...}`).

    path              nfcpy device path (default "usb": the first supported USB reader)
    uid_format        {case: upper|lower, byte_order: msb|lsb, length: keep|4|7|10,
                       separator: "" | ":"}
    debounce_s        the same card again within this is the same tap (default 2.0)
    targets           technologies polled: any of 106A, 106B, 212F (default all)
    beep              let the reader beep/flash on a card, if it can (default true)
    poll_interval_s   pause between polling rounds; also bounds how long stop() takes (0.1)
    retry_interval_s  pause before reopening a failed reader (default 2.0)
    """

    path: str = "usb"
    uid_format: UidFormat = UidFormat()
    debounce_s: float = 2.0
    targets: tuple[str, ...] = TARGETS
    beep: bool = True
    poll_interval_s: float = 0.1
    retry_interval_s: float = 2.0

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> NfcReaderOptions:
        """Validate a config's options; raises DriverOptionError naming the bad key."""
        _only(options, "", _OPTION_KEYS)
        path = options.get("path", "usb")
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise DriverOptionError(
                "path",
                f"expected an nfcpy path (usb, usb:054c:06c3, tty:USB0:pn532, ...), got {path!r}",
            )
        targets = options.get("targets", list(TARGETS))
        if (
            not isinstance(targets, list | tuple)
            or not targets
            or any(t not in TARGETS for t in targets)
            or len(set(targets)) != len(targets)
        ):
            raise DriverOptionError(
                "targets", f"expected a list of distinct {', '.join(TARGETS)}, got {targets!r}"
            )
        beep = options.get("beep", True)
        if not isinstance(beep, bool):
            raise DriverOptionError("beep", f"expected true or false, got {beep!r}")
        return cls(
            path=path,
            uid_format=_parse_uid_format(options.get("uid_format", {})),
            debounce_s=_seconds(options, "debounce_s", 2.0, 0.0, 60.0),
            targets=tuple(targets),
            beep=beep,
            poll_interval_s=_seconds(options, "poll_interval_s", 0.1, 0.001, 5.0),
            retry_interval_s=_seconds(options, "retry_interval_s", 2.0, 0.001, 300.0),
        )


_OPTION_KEYS = (
    "path",
    "uid_format",
    "debounce_s",
    "targets",
    "beep",
    "poll_interval_s",
    "retry_interval_s",
)


def _only(options: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    for key in options:
        if key not in known:
            raise DriverOptionError(f"{prefix}{key}", f"unknown option (known: {', '.join(known)})")


def _seconds(
    options: Mapping[str, Any], key: str, default: float, low: float, high: float
) -> float:
    value = options.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and low <= value <= high)
    ):
        raise DriverOptionError(key, f"must be seconds in [{low}, {high}], got {value!r}")
    return float(value)


def _parse_uid_format(value: Any) -> UidFormat:
    if not isinstance(value, Mapping):
        raise DriverOptionError("uid_format", f"expected a mapping, got {value!r}")
    _only(value, "uid_format.", ("case", "byte_order", "length", "separator"))
    case = value.get("case", "upper")
    if case not in tuple(HexCase):
        raise DriverOptionError("uid_format.case", f"expected upper or lower, got {case!r}")
    order = value.get("byte_order", "msb")
    if order not in tuple(ByteOrder):
        raise DriverOptionError("uid_format.byte_order", f"expected msb or lsb, got {order!r}")
    length = value.get("length", "keep")
    if length != "keep" and (isinstance(length, bool) or length not in UID_LENGTHS):
        raise DriverOptionError("uid_format.length", f"expected keep, 4, 7 or 10, got {length!r}")
    separator = value.get("separator", "")
    if separator not in SEPARATORS:
        raise DriverOptionError("uid_format.separator", f'expected "" or ":", got {separator!r}')
    return UidFormat(
        case=HexCase(case),
        byte_order=ByteOrder(order),
        length=None if length == "keep" else int(length),
        separator=str(separator),
    )


# --- the driver ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    """One start() .. stop(): the thread, its stop event and where its results go."""

    loop: asyncio.AbstractEventLoop
    sink: TokenSink
    faults: FaultSink | None
    first_attempt: asyncio.Future[None]  # resolved once the device was opened (or failed)
    finished: asyncio.Future[None]  # resolved when the thread is about to end
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    rounds: int = 0  # polling rounds of the device opened last (thread-owned)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class NfcpyTokenReader:
    """TokenReader on an nfcpy reader: one `TokenRead` per tap, READER_FAILURE on failure."""

    #: How long start() waits for the device to open, and stop() for the thread to end.
    OPEN_TIMEOUT_S = 5.0
    STOP_TIMEOUT_S = 5.0

    def __init__(
        self,
        source: CardSource,
        options: NfcReaderOptions | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """A stopped reader that opens `options.path` through `source` when started."""
        self._source = source
        self._options = options or NfcReaderOptions()
        self._format = self._options.uid_format
        self._debouncer = TapDebouncer(self._options.debounce_s, monotonic)
        self._session: _Session | None = None
        self._fault_active = False  # written by the reader thread only

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        context: DriverContext,
        *,
        source: CardSource | None = None,
    ) -> NfcpyTokenReader:
        """Build from a config's options; raises DriverOptionError, or DriverUnavailable
        when nfcpy is not installed."""
        parsed = NfcReaderOptions.parse(options)
        if source is None:
            if importlib.util.find_spec("nfc") is None:
                raise DriverUnavailable(
                    "reader driver 'nfc' needs nfcpy; install it with: pip install 'cpagent[nfc]'"
                )
            source = NfcpyCardSource()
        return cls(source, parsed)

    @property
    def options(self) -> NfcReaderOptions:
        """The options this reader runs with."""
        return self._options

    @property
    def source(self) -> CardSource:
        """Where the reader's device comes from."""
        return self._source

    @property
    def started(self) -> bool:
        """Whether the reader is reporting taps."""
        return self._session is not None

    @property
    def fault_active(self) -> bool:
        """Whether READER_FAILURE is raised (the device is missing or stopped answering)."""
        return self._fault_active

    async def start(self, sink: TokenSink, faults: FaultSink | None = None) -> None:
        """Open the reader and report taps to `sink` and READER_FAILURE to `faults`.

        Returns once the device is open, or its first opening failed (then READER_FAILURE
        is reported and the thread keeps retrying). Raises DriverError when already started.
        """
        if self._session is not None:
            raise DriverError("NFC reader already started")
        loop = asyncio.get_running_loop()
        session = _Session(
            loop, sink, faults, first_attempt=loop.create_future(), finished=loop.create_future()
        )
        session.thread = threading.Thread(
            target=self._run, args=(session,), name=f"nfc-reader:{self._options.path}", daemon=True
        )
        self._session = session
        session.thread.start()
        try:
            async with asyncio.timeout(self.OPEN_TIMEOUT_S):
                await asyncio.shield(session.first_attempt)
        except TimeoutError:
            log.warning(
                "NFC reader %s is still opening; taps count once it is open", self._options.path
            )

    async def stop(self) -> None:
        """Stop reading, close the device and end the thread (idempotent)."""
        session, self._session = self._session, None
        if session is None or session.thread is None:
            return
        session.stop.set()
        try:
            async with asyncio.timeout(self.STOP_TIMEOUT_S):
                await asyncio.shield(session.finished)
        except TimeoutError:
            log.error(
                "NFC reader %s: the thread did not end within %.1f s (stuck in nfcpy?)",
                self._options.path,
                self.STOP_TIMEOUT_S,
            )
            return
        session.thread.join()  # it has left _run; this returns at once

    # --- on the event loop ------------------------------------------------------------------

    def _deliver(self, session: _Session, read: TokenRead) -> None:
        if self._session is session:  # nothing reaches the sink once stop() has begun
            session.sink(read)

    def _deliver_fault(self, session: _Session, event: FaultEvent) -> None:
        if self._session is session and session.faults is not None:
            session.faults(event)

    # --- on the reader thread -----------------------------------------------------------------

    def _call_soon(self, session: _Session, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            session.loop.call_soon_threadsafe(callback, *args)

    def _run(self, session: _Session) -> None:
        """The thread: open the reader, poll cards, reopen after a failure, until stopped."""
        try:
            while not session.stop.is_set():
                frontend = self._open(session)
                if frontend is not None:
                    try:
                        self._poll(session, frontend)
                    finally:
                        self._close(frontend)
                if not session.stop.is_set():  # a failure: do not spin on a broken device
                    session.stop.wait(self._options.retry_interval_s)
        except Exception as exc:  # a bug must not end the thread silently
            log.exception("NFC reader %s: the reader thread failed", self._options.path)
            self._set_fault(session, True, f"reader thread failed: {exc!r}")
        finally:
            self._call_soon(session, _resolve, session.first_attempt)
            self._call_soon(session, _resolve, session.finished)

    def _open(self, session: _Session) -> CardFrontend | None:
        try:
            frontend = self._source.connect(self._options.path)
        except Exception as exc:  # OSError from nfcpy; anything else means no reader too
            self._set_fault(session, True, f"cannot open the reader at {self._options.path}: {exc}")
            return None
        finally:
            self._call_soon(session, _resolve, session.first_attempt)
        session.rounds = 0
        log.info("NFC reader %s open", self._options.path)
        return frontend

    def _close(self, frontend: CardFrontend) -> None:
        try:
            frontend.close()
        except Exception:
            log.exception("NFC reader %s: closing the device failed", self._options.path)

    def _poll(self, session: _Session, frontend: CardFrontend) -> None:
        """Run nfcpy's reader loop until stopped; return on a device failure (reported)."""

        def on_connect(tag: NfcTag) -> bool:
            self._arrived(session, tag)
            return True  # nfcpy waits for the card to leave: a card left on it is one tap

        def on_release(tag: NfcTag) -> bool:
            with contextlib.suppress(Exception):
                self._debouncer.left(bytes(tag.identifier))
            return True

        def terminate() -> bool:
            session.rounds += 1
            if session.rounds >= 2:  # the reopened device has completed a polling round
                self._set_fault(session, False)
            return session.stop.wait(self._options.poll_interval_s)

        rdwr = {
            "targets": list(self._options.targets),
            "on-connect": on_connect,
            "on-release": on_release,
            "beep-on-connect": self._options.beep,
            "iterations": 1,  # pacing and stop are terminate()'s (see the module docstring)
            "interval": self._options.poll_interval_s,
        }
        while not session.stop.is_set():
            try:
                result = frontend.connect(rdwr=rdwr, terminate=terminate)
            except Exception as exc:
                self._set_fault(session, True, f"reader failed: {exc!r}")
                return
            if result is False:  # nfcpy caught an IOError: the device is gone or broken
                self._set_fault(session, True, "the reader stopped answering (I/O error)")
                return

    def _arrived(self, session: _Session, tag: NfcTag) -> None:
        try:
            uid = bytes(tag.identifier)
            kind = str(tag.type)
        except Exception:
            log.exception("NFC reader %s: unreadable tag object", self._options.path)
            return
        if not uid:
            log.warning("NFC reader %s: a %s without a UID, ignored", self._options.path, kind)
            return
        if not self._debouncer.arrived(uid):
            return
        # The UID is an id token: log its kind and size, never the value.
        log.info("NFC reader %s: %s with a %d-byte UID", self._options.path, kind, len(uid))
        # nfcpy reads ISO 14443 A/B and FeliCa only; OCPP has no FeliCa token type, and
        # ISO14443 is the type CSMSs expect for a card UID (docs/nfc-reader.md).
        read = TokenRead(self._format.apply(uid), TokenType.ISO14443)
        self._call_soon(session, self._deliver, session, read)

    def _set_fault(self, session: _Session, active: bool, detail: str = "") -> None:
        if active == self._fault_active:
            return
        self._fault_active = active
        if active:
            log.error("NFC reader %s: %s", self._options.path, detail)
        else:
            log.info("NFC reader %s is back", self._options.path)
        event = FaultEvent(FaultCode.READER_FAILURE, active, detail)
        self._call_soon(session, self._deliver_fault, session, event)
