"""Contract harness for drivers.nfc_reader, and the fake it runs against: nfcpy's boundary.

`FakeCardField` is a `CardSource` whose frontend behaves as nfcpy's
`ContactlessFrontend.connect(rdwr=..., terminate=...)` does (nfcpy src/nfc/clf/__init__.py):
`terminate()` is checked before each polling round and between presence checks; a found
card goes to `on-connect`; a true answer makes it wait while the card is present and then
call `on-release`, returning its answer when true; an I/O error of the device is caught and
`connect()` returns False. Opening an absent device raises OSError(ENODEV), as
`nfc.ContactlessFrontend(path)` does. The tags (`FakeTag`) carry what nfcpy's tag objects
carry: `identifier` (NFCID1 of a type A card, the PUPI of a type B card, the IDm of a
FeliCa card), `type` ("Type1Tag" .. "Type4Tag") and `product`, plus `idm`/`pmm`/`sys` on
FeliCa (nfc.tag.tt3.Type3Tag).

The field is the world's side too: a card can be tapped (it passes through the field;
`tap()` returns once the reader has seen it come and go, or False if no reader is
listening), placed and later removed, and the reader can be unplugged and plugged in.
These calls block until the reader thread has acted, so async tests run them through
`asyncio.to_thread` and never sleep.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.interfaces import TokenReader
from drivers.nfc_reader import TARGETS, NfcpyTokenReader, NfcReaderOptions

WAIT_S = 5.0


@dataclass(frozen=True)
class FakeTag:
    """A card as nfcpy presents it after activation (an `nfc.tag.Tag`)."""

    identifier: bytes
    type: str = "Type2Tag"
    brty: str = "106A"  # the bitrate and technology nfcpy found it with
    product_name: str | None = None
    idm: bytes | None = None
    pmm: bytes | None = None
    sys: int | None = None
    # nfcpy's Type2Tag checks presence with an unauthenticated READ, which a MIFARE Classic
    # does not answer: nfcpy then takes the card for gone at once and discovers it again.
    answers_presence_check: bool = True

    @property
    def product(self) -> str:
        """nfcpy's `Tag.product`: the product name when known, else the tag type."""
        return self.product_name or self.type


def mifare_classic(uid: str) -> FakeTag:
    """nfcpy has no MIFARE Classic class: it activates one as a plain Type2Tag."""
    return FakeTag(bytes.fromhex(uid), answers_presence_check=False)


def mifare_ultralight(uid: str) -> FakeTag:
    return FakeTag(bytes.fromhex(uid), product_name="Mifare Ultralight (MF01CU1)")


def ntag213(uid: str) -> FakeTag:
    return FakeTag(bytes.fromhex(uid), product_name="NXP NTAG213")


def desfire(uid: str) -> FakeTag:
    """An ISO 14443-4 type A card (SEL_RES bit 6): nfcpy's Type4ATag."""
    return FakeTag(bytes.fromhex(uid), type="Type4Tag")


def iso14443b(pupi: str) -> FakeTag:
    """A type B card: nfcpy's Type4BTag, whose identifier is the PUPI (SENSB_RES[1:5])."""
    return FakeTag(bytes.fromhex(pupi), type="Type4Tag", brty="106B")


def felica(idm: str, pmm: str = "033242824F4993FF", sys: int = 0x0003) -> FakeTag:
    """A FeliCa card: nfcpy's Type3Tag, whose identifier is the IDm."""
    return FakeTag(
        bytes.fromhex(idm),
        type="Type3Tag",
        brty="212F",
        idm=bytes.fromhex(idm),
        pmm=bytes.fromhex(pmm),
        sys=sys,
    )


@dataclass(eq=False)
class _Pass:
    """A tap: the card is in the field until a reader has seen it (or nobody can)."""

    tag: FakeTag
    seen: bool | None = None


class FakeFrontend:
    """An opened fake reader: `connect()` and `close()` as nfcpy's ContactlessFrontend."""

    def __init__(self, field: FakeCardField, path: str) -> None:
        self.path = path
        self._field = field
        self._closed = False

    def connect(self, **options: Any) -> Any:
        """Poll until a card was connected and released, or `terminate()` said stop."""
        if self._closed:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        terminate: Callable[[], bool] = options.get("terminate", lambda: False)
        rdwr = dict(options.get("rdwr") or {})
        rdwr.setdefault("targets", list(TARGETS))
        rdwr.setdefault("on-connect", lambda tag: True)
        rdwr.setdefault("on-release", lambda tag: True)
        rdwr.setdefault("beep-on-connect", True)
        try:
            while not terminate():
                found = self._field._sense(self, rdwr["targets"])
                if found is None:
                    continue
                tag, tap = found
                if rdwr["beep-on-connect"]:
                    self._field._beep()
                if not rdwr["on-connect"](tag):
                    self._field._released(tag, tap)
                    return tag
                while not terminate() and self._field._present(self, tag, tap):
                    pass
                result = rdwr["on-release"](tag)
                self._field._released(tag, tap)
                if result:
                    return result
            return None
        except OSError:  # nfcpy logs an IOError of the device and returns False
            return False

    def close(self) -> None:
        """Release the device (idempotent)."""
        if not self._closed:
            self._closed = True
            self._field._close(self)


class FakeCardField:
    """One reader's device and RF field: the CardSource fake, and the world's actions."""

    def __init__(self, *, round_s: float = 0.002) -> None:
        self.round_s = round_s  # how long one polling round or presence check takes
        self.opened = 0
        self.closed = 0
        self.beeps = 0
        self.presence_checks = 0
        self._cond = threading.Condition()
        self._taps: deque[_Pass] = deque()
        self._held: FakeTag | None = None
        self._current: FakeTag | None = None  # the card the reader is connected to
        self._frontend: FakeFrontend | None = None
        self._unplugged = False

    # --- CardSource ------------------------------------------------------------------------

    def connect(self, path: str) -> FakeFrontend:
        """Open the device; OSError(ENODEV) while unplugged, OSError(EBUSY) if open."""
        with self._cond:
            if self._unplugged:
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            if self._frontend is not None:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            self._frontend = FakeFrontend(self, path)
            self.opened += 1
            self._cond.notify_all()
            return self._frontend

    @property
    def is_open(self) -> bool:
        """Whether a frontend holds the device."""
        return self._frontend is not None

    # --- the world -------------------------------------------------------------------------

    def tap(self, tag: FakeTag, timeout_s: float = WAIT_S) -> bool:
        """Pass `tag` through the field; True once a reader saw it come and go."""
        with self._cond:
            if self._frontend is None or self._unplugged:
                return False
            tap = _Pass(tag)
            self._taps.append(tap)
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: tap.seen is not None, timeout_s):
                raise TimeoutError("no reader took the card")
            return bool(tap.seen)

    def place(self, tag: FakeTag) -> None:
        """Lay `tag` on the reader; it stays until remove()."""
        with self._cond:
            self._held = tag
            self._cond.notify_all()

    def remove(self, timeout_s: float = WAIT_S) -> None:
        """Take the laid card away; returns once the reader has released it."""
        with self._cond:
            tag, self._held = self._held, None
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._current is not tag, timeout_s):
                raise TimeoutError("the reader did not notice the card leave")

    def unplug(self) -> None:
        """Pull the reader: every I/O on the device fails and it cannot be opened."""
        with self._cond:
            self._unplugged = True
            self._cond.notify_all()

    def plug_in(self) -> None:
        """Plug the reader back in."""
        with self._cond:
            self._unplugged = False
            self._cond.notify_all()

    def wait_for_presence_checks(self, count: int, timeout_s: float = WAIT_S) -> None:
        """Return after the reader has checked `count` more times that its card is there."""
        with self._cond:
            target = self.presence_checks + count
            if not self._cond.wait_for(lambda: self.presence_checks >= target, timeout_s):
                raise TimeoutError("the reader is not checking a card's presence")

    # --- the frontend's side (under the nfcpy contract) ------------------------------------

    def _check(self, frontend: FakeFrontend) -> None:
        if self._unplugged or frontend is not self._frontend:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def _sense(
        self, frontend: FakeFrontend, targets: Sequence[str]
    ) -> tuple[FakeTag, _Pass | None] | None:
        with self._cond:
            self._check(frontend)
            if not self._taps and self._held is None:
                self._cond.wait(self.round_s)  # one polling round; a card cuts it short
                self._check(frontend)
            while self._taps:
                tap = self._taps.popleft()
                if tap.tag.brty in targets:
                    self._current = tap.tag
                    return tap.tag, tap
                tap.seen = False  # a technology the reader does not poll
                self._cond.notify_all()
            if self._held is not None and self._held.brty in targets:
                self._current = self._held
                return self._held, None
            return None

    def _present(self, frontend: FakeFrontend, tag: FakeTag, tap: _Pass | None) -> bool:
        with self._cond:
            self._check(frontend)
            self.presence_checks += 1
            self._cond.notify_all()
            if tap is not None or self._held is not tag or not tag.answers_presence_check:
                return False  # a tapped card has already moved on
            self._cond.wait(self.round_s)
            return True

    def _released(self, tag: FakeTag, tap: _Pass | None) -> None:
        with self._cond:
            self._current = None
            if tap is not None:
                tap.seen = True
            self._cond.notify_all()

    def _beep(self) -> None:
        with self._cond:
            self.beeps += 1

    def _close(self, frontend: FakeFrontend) -> None:
        with self._cond:
            if self._frontend is frontend:
                self._frontend = None
                self.closed += 1
                self._current = None
                for tap in self._taps:
                    tap.seen = False
                self._taps.clear()
                self._cond.notify_all()


class FrozenClock:
    """The debouncer's monotonic clock, moved only by the test."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


#: Fast polling for tests: stop() and failures are handled within milliseconds.
FAST = NfcReaderOptions(path="usb:054c:06c3", poll_interval_s=0.005, retry_interval_s=0.01)


class NfcReaderHarness:
    """An NfcpyTokenReader on a FakeCardField; a presented card is tapped."""

    def __init__(self) -> None:
        self.field = FakeCardField()
        self._reader = NfcpyTokenReader(self.field, FAST, monotonic=FrozenClock())

    @property
    def reader(self) -> TokenReader:
        return self._reader

    async def present(self, id_token: str) -> None:
        await asyncio.to_thread(self.field.tap, mifare_classic(id_token))

    async def close(self) -> None:
        await self._reader.stop()


async def nfc_reader() -> NfcReaderHarness:
    return NfcReaderHarness()


READER_HARNESSES: list[Callable[[], Awaitable[NfcReaderHarness]]] = [nfc_reader]
