"""The nfcpy reader driver (drivers/nfc_reader.py) at the nfcpy boundary, with a fake device.

The fake (tests/contract/harness_nfc_reader.py) behaves as nfcpy's ContactlessFrontend;
the world's actions (tap, place, remove, unplug) block until the reader thread has acted,
so they run through asyncio.to_thread and the tests await the driver's events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.interfaces import DriverError, TokenReader
from drivers.nfc_reader import (
    ByteOrder,
    HexCase,
    NfcpyCardSource,
    NfcpyTokenReader,
    NfcReaderOptions,
    TapDebouncer,
    UidFormat,
)
from drivers.registry import DriverContext, DriverOptionError, DriverUnavailable
from drivers.types import FaultCode, FaultEvent, TokenRead, TokenType
from tests.contract.conftest import EventRecorder
from tests.contract.harness_nfc_reader import (
    FAST,
    FakeCardField,
    FakeTag,
    FrozenClock,
    desfire,
    felica,
    iso14443b,
    mifare_classic,
    mifare_ultralight,
    ntag213,
)

ROOT = Path(__file__).resolve().parents[2]
FAILED = FaultEvent(FaultCode.READER_FAILURE, True)
RECOVERED = FaultEvent(FaultCode.READER_FAILURE, False)


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nfc-reader:")]


class Rig:
    """A reader on a fake device, with its clock and recorders."""

    def __init__(self, options: NfcReaderOptions = FAST) -> None:
        self.field = FakeCardField()
        self.clock = FrozenClock()
        self.reader = NfcpyTokenReader(self.field, options, monotonic=self.clock)
        self.reads: EventRecorder[TokenRead] = EventRecorder()
        self.faults: EventRecorder[FaultEvent] = EventRecorder()  # details stripped
        self.details: list[str] = []

    def on_fault(self, event: FaultEvent) -> None:
        self.details.append(event.detail)
        self.faults(dataclasses.replace(event, detail=""))

    async def start(self) -> None:
        await self.reader.start(self.reads, self.on_fault)

    async def tap(self, tag: FakeTag) -> bool:
        return await asyncio.to_thread(self.field.tap, tag)

    async def act(self, action: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(action, *args)

    def tokens(self) -> list[str]:
        return [read.id_token for read in self.reads.events]

    def fault_states(self) -> list[bool]:
        return [event.active for event in self.faults.events]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        await made.reader.stop()
    assert _reader_threads() == []
    assert not made.field.is_open


# --- UID normalisation ----------------------------------------------------------------------

SEVEN = "04A1B2C3D4E5F6"  # an NXP 7-byte UID (UID0 = 04, the manufacturer)
TEN = "0102030405060708090A"
IDM = "0101010601B00ADE"  # a FeliCa IDm (8 bytes)


@pytest.mark.parametrize(
    ("uid", "uid_format", "token"),
    [
        ("A1B2C3D4", UidFormat(), "A1B2C3D4"),
        ("a1b2c3d4", UidFormat(case=HexCase.LOWER), "a1b2c3d4"),
        ("A1B2C3D4", UidFormat(byte_order=ByteOrder.LSB), "D4C3B2A1"),
        ("A1B2C3D4", UidFormat(separator=":"), "A1:B2:C3:D4"),
        ("A1B2C3D4", UidFormat(length=7), "000000A1B2C3D4"),
        ("A1B2C3D4", UidFormat(length=7, byte_order=ByteOrder.LSB), "000000D4C3B2A1"),
        ("A1B2C3D4", UidFormat(length=4), "A1B2C3D4"),
        (SEVEN, UidFormat(), SEVEN),
        (SEVEN, UidFormat(byte_order=ByteOrder.LSB), "F6E5D4C3B2A104"),
        (SEVEN, UidFormat(length=4), "04A1B2C3"),
        (SEVEN, UidFormat(length=4, byte_order=ByteOrder.LSB), "C3B2A104"),
        (SEVEN, UidFormat(length=10), "00000004A1B2C3D4E5F6"),
        (SEVEN, UidFormat(case=HexCase.LOWER, separator=":"), "04:a1:b2:c3:d4:e5:f6"),
        (TEN, UidFormat(), TEN),
        (TEN, UidFormat(length=7), "01020304050607"),
        (TEN, UidFormat(byte_order=ByteOrder.LSB), "0A090807060504030201"),
        (IDM, UidFormat(), IDM),
        (IDM, UidFormat(case=HexCase.LOWER, separator=":"), "01:01:01:06:01:b0:0a:de"),
        (IDM, UidFormat(length=10), "00000101010601B00ADE"),
        (IDM, UidFormat(length=7, byte_order=ByteOrder.LSB), "0AB00106010101"),
    ],
)
def test_uid_is_normalised_to_the_configured_format(
    uid: str, uid_format: UidFormat, token: str
) -> None:
    assert uid_format.apply(bytes.fromhex(uid)) == token


def test_an_empty_uid_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        UidFormat().apply(b"")


# --- debouncing (the pure rule) -------------------------------------------------------------


def test_debouncer_counts_the_same_card_within_the_window_as_one_tap() -> None:
    clock = FrozenClock()
    debouncer = TapDebouncer(2.0, clock)
    assert debouncer.arrived(b"\x01")
    debouncer.left(b"\x01")
    clock.now_s = 1.9
    assert not debouncer.arrived(b"\x01")
    assert debouncer.arrived(b"\x02")  # another card is a new tap at once


def test_debouncer_window_runs_from_when_the_card_was_last_seen() -> None:
    clock = FrozenClock()
    debouncer = TapDebouncer(2.0, clock)
    assert debouncer.arrived(b"\x01")
    clock.now_s = 10.0  # held on the reader for ten seconds
    debouncer.left(b"\x01")
    clock.now_s = 11.0
    assert not debouncer.arrived(b"\x01")
    debouncer.left(b"\x01")
    clock.now_s = 13.0  # a bounce at 11 s kept the card seen until then
    assert debouncer.arrived(b"\x01")


# --- cards through the reader ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "token"),
    [
        (mifare_classic("A1B2C3D4"), "A1B2C3D4"),
        (mifare_ultralight(SEVEN), SEVEN),
        (ntag213("04112233445566"), "04112233445566"),
        (desfire("04556677889900"), "04556677889900"),
        (iso14443b("5A6B7C8D"), "5A6B7C8D"),
        (felica(IDM), IDM),
    ],
    ids=["mifare_classic", "ultralight", "ntag213", "desfire", "iso14443b", "felica"],
)
async def test_each_card_technology_is_read_as_an_iso14443_token(
    rig: Rig, tag: FakeTag, token: str
) -> None:
    await rig.start()
    assert await rig.tap(tag)
    await rig.reads.wait_for(TokenRead(token, TokenType.ISO14443))


async def test_configured_format_is_applied_to_a_read() -> None:
    rig = Rig(dataclasses.replace(FAST, uid_format=UidFormat(HexCase.LOWER, ByteOrder.LSB)))
    await rig.start()
    try:
        await rig.tap(mifare_ultralight(SEVEN))
        await rig.reads.wait_for(TokenRead("f6e5d4c3b2a104"))
    finally:
        await rig.reader.stop()


async def test_a_technology_not_polled_is_not_read() -> None:
    rig = Rig(dataclasses.replace(FAST, targets=("106A",)))
    await rig.start()
    try:
        assert not await rig.tap(felica(IDM))
        assert not await rig.tap(iso14443b("5A6B7C8D"))
        await rig.tap(mifare_classic("A1B2C3D4"))
        await rig.reads.wait_for(TokenRead("A1B2C3D4"))
        assert rig.tokens() == ["A1B2C3D4"]
    finally:
        await rig.reader.stop()


async def test_same_card_again_within_debounce_is_one_tap(rig: Rig) -> None:
    await rig.start()
    await rig.tap(mifare_classic("A1B2C3D4"))
    rig.clock.now_s = 1.9
    await rig.tap(mifare_classic("A1B2C3D4"))
    await rig.tap(mifare_classic("0BADCAFE"))  # a different card: a new tap at once
    await rig.reads.wait_for(TokenRead("0BADCAFE"))
    assert rig.tokens() == ["A1B2C3D4", "0BADCAFE"]


async def test_same_card_after_debounce_is_a_new_tap(rig: Rig) -> None:
    await rig.start()
    await rig.tap(mifare_classic("A1B2C3D4"))
    rig.clock.now_s = 2.0
    await rig.tap(mifare_classic("A1B2C3D4"))
    first = await rig.reads.wait_for(TokenRead("A1B2C3D4"))
    await rig.reads.wait_for(TokenRead("A1B2C3D4"), after=first + 1)
    assert rig.tokens() == ["A1B2C3D4", "A1B2C3D4"]


async def test_card_left_on_the_reader_is_one_tap_until_removed(rig: Rig) -> None:
    await rig.start()
    card = mifare_ultralight(SEVEN)
    rig.field.place(card)
    await rig.reads.wait_for(TokenRead(SEVEN))
    rig.clock.now_s = 60.0  # far beyond the debounce window, still on the reader
    await rig.act(rig.field.wait_for_presence_checks, 5)
    await rig.act(rig.field.remove)
    rig.clock.now_s = 61.0  # put back at once: the window runs from the removal
    await rig.tap(card)
    await rig.tap(mifare_classic("0BADCAFE"))
    await rig.reads.wait_for(TokenRead("0BADCAFE"))
    assert rig.tokens() == [SEVEN, "0BADCAFE"]


async def test_classic_card_left_on_the_reader_is_one_tap_though_rediscovered(rig: Rig) -> None:
    await rig.start()
    card = mifare_classic("A1B2C3D4")  # nfcpy loses it after each round and finds it again
    rig.field.place(card)
    await rig.reads.wait_for(TokenRead("A1B2C3D4"))
    for now_s in (1.5, 3.0, 4.5, 6.0):  # each rediscovery keeps the 2 s window open
        rig.clock.now_s = now_s
        await rig.act(rig.field.wait_for_presence_checks, 3)
    await rig.act(rig.field.remove)
    await rig.tap(mifare_classic("0BADCAFE"))
    await rig.reads.wait_for(TokenRead("0BADCAFE"))
    assert rig.tokens() == ["A1B2C3D4", "0BADCAFE"]


async def test_reader_beeps_on_a_card_unless_told_not_to() -> None:
    quiet = Rig(dataclasses.replace(FAST, beep=False))
    loud = Rig()
    for rig in (quiet, loud):
        await rig.start()
        await rig.tap(mifare_classic("A1B2C3D4"))
        await rig.reader.stop()
    assert (quiet.field.beeps, loud.field.beeps) == (0, 1)


# --- start and stop -------------------------------------------------------------------------


async def test_stop_ends_the_thread_promptly_while_it_waits_for_a_card() -> None:
    rig = Rig(dataclasses.replace(FAST, poll_interval_s=5.0))
    await rig.start()
    async with asyncio.timeout(1.0):
        await rig.reader.stop()
    assert _reader_threads() == []
    assert (rig.field.opened, rig.field.closed) == (1, 1)


async def test_stop_ends_the_thread_promptly_while_a_card_is_held(rig: Rig) -> None:
    await rig.start()
    rig.field.place(mifare_classic("A1B2C3D4"))
    await rig.reads.wait_for(TokenRead("A1B2C3D4"))
    async with asyncio.timeout(1.0):
        await rig.reader.stop()
    assert _reader_threads() == []


async def test_stop_ends_the_thread_promptly_while_it_waits_to_reopen() -> None:
    rig = Rig(dataclasses.replace(FAST, retry_interval_s=60.0))
    rig.field.unplug()
    await rig.start()
    await rig.faults.wait_for(FAILED)
    async with asyncio.timeout(1.0):
        await rig.reader.stop()
    assert _reader_threads() == []


async def test_stop_is_idempotent_and_start_twice_is_refused(rig: Rig) -> None:
    await rig.reader.stop()  # never started
    await rig.start()
    with pytest.raises(DriverError):
        await rig.start()
    await rig.reader.stop()
    await rig.reader.stop()
    assert not rig.reader.started


async def test_no_thread_or_device_is_left_after_start_stop_cycles(rig: Rig) -> None:
    for cycle in range(5):
        await rig.start()
        assert len(_reader_threads()) == 1
        await rig.tap(mifare_classic(f"0000000{cycle}"))
        await rig.reader.stop()
        assert _reader_threads() == []
        assert not rig.field.is_open
    assert rig.tokens() == [f"0000000{cycle}" for cycle in range(5)]
    assert rig.field.opened == rig.field.closed == 5


# --- failures -------------------------------------------------------------------------------


async def test_unplugged_reader_is_a_fault_that_clears_when_it_is_back(rig: Rig) -> None:
    await rig.start()
    await rig.tap(mifare_classic("A1B2C3D4"))
    rig.field.unplug()
    await rig.faults.wait_for(FAILED)  # raised even with nobody tapping: polling fails
    assert rig.reader.fault_active
    assert not await rig.tap(mifare_classic("0BADCAFE"))
    rig.field.plug_in()
    await rig.faults.wait_for(RECOVERED)
    assert not rig.reader.fault_active
    await rig.tap(mifare_classic("0BADCAFE"))
    await rig.reads.wait_for(TokenRead("0BADCAFE"))
    assert rig.tokens() == ["A1B2C3D4", "0BADCAFE"]
    assert rig.fault_states() == [True, False]
    assert "stopped answering" in rig.details[0]


async def test_reader_missing_at_start_is_reported_and_found_later(rig: Rig) -> None:
    rig.field.unplug()
    await rig.start()  # a missing reader does not stop the agent from starting
    await rig.faults.wait_for(FAILED)
    assert "cannot open" in rig.details[0]
    rig.field.plug_in()
    await rig.faults.wait_for(RECOVERED)
    await rig.tap(mifare_classic("A1B2C3D4"))
    await rig.reads.wait_for(TokenRead("A1B2C3D4"))


async def test_a_fault_raised_before_a_restart_is_cleared_after_it(rig: Rig) -> None:
    rig.field.unplug()
    await rig.start()
    await rig.faults.wait_for(FAILED)
    await rig.reader.stop()
    rig.field.plug_in()
    rig.faults.events.clear()
    await rig.start()
    await rig.faults.wait_for(RECOVERED)
    assert rig.fault_states() == [False]


async def test_reader_without_nfcpy_reports_a_failure_instead_of_crashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nfc", None)  # `import nfc` raises ImportError
    reader = NfcpyTokenReader(NfcpyCardSource(), FAST)
    faults: list[FaultEvent] = []
    # start() returns after the first opening attempt, whose fault was handed over first.
    reads: EventRecorder[TokenRead] = EventRecorder()
    await reader.start(reads, faults.append)
    try:
        assert reader.fault_active
        assert [(f.code, f.active) for f in faults] == [(FaultCode.READER_FAILURE, True)]
        assert "cannot open the reader at usb:054c:06c3" in faults[0].detail
    finally:
        await reader.stop()


async def test_failures_without_a_fault_sink_are_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.field.unplug()
    await rig.reader.start(rig.reads)
    await rig.reader.stop()
    assert rig.reader.fault_active
    assert "cannot open the reader" in caplog.text


# --- options and the registry ---------------------------------------------------------------


def _context() -> DriverContext:
    return DriverContext(evse_id=1, max_current_a=32.0, phases=3)


def test_options_default_to_the_first_usb_reader_and_plain_uppercase_uids() -> None:
    assert NfcReaderOptions.parse({}) == NfcReaderOptions()
    assert NfcReaderOptions().path == "usb"
    assert NfcReaderOptions().uid_format.apply(b"\x04\xab") == "04AB"


def test_options_are_read_from_the_config() -> None:
    parsed = NfcReaderOptions.parse(
        {
            "path": "tty:USB0:pn532",
            "uid_format": {"case": "lower", "byte_order": "lsb", "length": 7, "separator": ":"},
            "debounce_s": 3,
            "targets": ["106A", "212F"],
            "beep": False,
        }
    )
    assert parsed.path == "tty:USB0:pn532"
    assert parsed.uid_format == UidFormat(HexCase.LOWER, ByteOrder.LSB, 7, ":")
    assert (parsed.debounce_s, parsed.targets, parsed.beep) == (3.0, ("106A", "212F"), False)


@pytest.mark.parametrize(
    "path",
    [
        "usb",
        "usb:054c",
        "usb:054c:06c3",
        "usb:001:023",
        "tty:USB0:pn532",
        "tty:AMA0",
        "com:3:arygon",
        "udp:localhost:54321",
    ],
)
def test_nfcpy_paths_are_accepted(path: str) -> None:
    assert NfcReaderOptions.parse({"path": path}).path == path


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"path": "/dev/ttyUSB0"}, "path"),
        ({"path": ""}, "path"),
        ({"uid_format": "upper"}, "uid_format"),
        ({"uid_format": {"case": "UPPER"}}, "uid_format.case"),
        ({"uid_format": {"byte_order": "big"}}, "uid_format.byte_order"),
        ({"uid_format": {"length": 5}}, "uid_format.length"),
        ({"uid_format": {"length": True}}, "uid_format.length"),
        ({"uid_format": {"separator": "-"}}, "uid_format.separator"),
        ({"uid_format": {"endian": "msb"}}, "uid_format.endian"),
        ({"debounce_s": -1}, "debounce_s"),
        ({"debounce_s": "2"}, "debounce_s"),
        ({"targets": []}, "targets"),
        ({"targets": ["106A", "106A"]}, "targets"),
        ({"targets": ["424F"]}, "targets"),
        ({"beep": "yes"}, "beep"),
        ({"poll_interval_s": 0}, "poll_interval_s"),
        ({"retry_interval_s": float("inf")}, "retry_interval_s"),
        ({"port": "/dev/ttyUSB0"}, "port"),
    ],
)
def test_a_bad_option_is_refused_naming_its_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(DriverOptionError) as caught:
        NfcpyTokenReader.from_options(options, _context(), source=FakeCardField())
    assert caught.value.key == key


def test_from_options_builds_a_reader_on_the_given_source() -> None:
    field = FakeCardField()
    reader = NfcpyTokenReader.from_options({"debounce_s": 0.5}, _context(), source=field)
    assert isinstance(reader, TokenReader)
    assert reader.source is field
    assert reader.options.debounce_s == 0.5


@pytest.mark.skipif(importlib.util.find_spec("nfc") is not None, reason="nfcpy is installed")
def test_from_options_without_nfcpy_says_what_to_install() -> None:
    with pytest.raises(DriverUnavailable, match=r"cpagent\[nfc\]"):
        NfcpyTokenReader.from_options({}, _context())


def test_module_imports_without_nfcpy() -> None:
    code = "import sys; sys.modules['nfc'] = None; import drivers.nfc_reader"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
