"""Contract of TokenReader (drivers/interfaces.py), run over every implementation."""

from __future__ import annotations

from drivers.interfaces import TokenReader
from drivers.types import TokenRead
from tests.contract.conftest import EventRecorder, ReaderHarness


async def test_reader_implements_the_protocol(reader_harness: ReaderHarness) -> None:
    assert isinstance(reader_harness.reader, TokenReader)


async def test_a_tap_is_delivered_once(reader_harness: ReaderHarness) -> None:
    recorder: EventRecorder[TokenRead] = EventRecorder()
    await reader_harness.reader.start(recorder)
    await reader_harness.present("04A1B2C3")
    await reader_harness.present("04A1B2C3")  # the card is still on the reader
    await reader_harness.present("04FFFFFF")  # a barrier: any duplicate precedes it
    other = await recorder.wait_for(TokenRead("04FFFFFF"))
    assert [read.id_token for read in recorder.events[:other]] == ["04A1B2C3"]


async def test_a_stopped_reader_delivers_nothing(reader_harness: ReaderHarness) -> None:
    reader = reader_harness.reader
    first: EventRecorder[TokenRead] = EventRecorder()
    await reader.start(first)
    await reader.stop()
    await reader_harness.present("04DEAD00")
    second: EventRecorder[TokenRead] = EventRecorder()
    await reader.start(second)
    await reader_harness.present("04BEEF00")
    await second.wait_for(TokenRead("04BEEF00"))
    assert first.events == []
    assert second.events == [TokenRead("04BEEF00")]
