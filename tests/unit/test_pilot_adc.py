"""Pilot measurement: MCP300x bytes, conditioning, IEC 61851-1 Table A.4 bands, debouncing."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from drivers.pilot_adc import (
    AdcError,
    Mcp3008AdcChannel,
    MemorySpiDev,
    PilotDebouncer,
    PilotProblem,
    PilotReading,
    PilotScaling,
    SpidevTransport,
    classify_burst,
    classify_level,
)
from drivers.types import PilotState

A, B, C, D, E, F = (PilotState.A, PilotState.B, PilotState.C, PilotState.D, PilotState.E,
                    PilotState.F)  # fmt: skip

# -- the bands (IEC 61851-1 Table A.4, +-1 V) ----------------------------------------------


@pytest.mark.parametrize(
    ("pilot_v", "state"),
    [
        (12.0, A), (11.0, A), (13.0, A),
        (9.0, B), (8.0, B), (10.0, B),
        (6.0, C), (5.0, C), (7.0, C),
        (3.0, D), (2.0, D), (4.0, D),
        (0.0, E), (-1.0, E), (1.0, E),
        (-12.0, F), (-11.0, F), (-13.0, F),
        # between the bands, and beyond them: no state
        (10.5, None), (7.5, None), (4.5, None), (1.5, None), (-6.0, None),
        (13.5, None), (-13.5, None),
    ],
)  # fmt: skip
def test_each_level_falls_in_its_table_a4_band(pilot_v: float, state: PilotState | None) -> None:
    assert classify_level(pilot_v) == state


@pytest.mark.parametrize(
    ("previous", "pilot_v", "state"),
    [
        (B, 10.2, B),  # just above B's band: stays B
        (B, 7.8, B),
        (None, 10.2, None),  # the same level without history is out of band
        (C, 7.2, C),
        (C, 7.3, None),  # beyond the hysteresis
        (A, 10.8, A),
        (B, 11.0, A),  # in A's own band: A, whatever came before
    ],
)
def test_hysteresis_widens_only_the_band_of_the_previous_state(
    previous: PilotState | None, pilot_v: float, state: PilotState | None
) -> None:
    assert classify_level(pilot_v, previous=previous, hysteresis_v=0.25) == state


# -- bursts: high plateau for the state, low plateau for the diode -------------------------


def _pwm_burst(
    high_v: float, low_v: float, high_samples: int = 5, low_samples: int = 27
) -> list[float]:
    return [high_v] * high_samples + [low_v] * low_samples + [(high_v + low_v) / 2]  # an edge


@pytest.mark.parametrize(
    ("samples", "pwm_on", "state", "problem"),
    [
        (_pwm_burst(6.0, -12.0), True, C, None),  # charging, diode present
        (_pwm_burst(9.0, -12.0), True, B, None),
        (_pwm_burst(3.0, -12.0), True, D, None),
        (_pwm_burst(12.0, -12.0), True, A, None),  # PWM with no vehicle
        (_pwm_burst(6.0, -6.0), True, C, PilotProblem.DIODE_MISSING),
        (_pwm_burst(9.0, -9.0), True, B, PilotProblem.DIODE_MISSING),
        ([9.0] * 32, False, B, None),  # constant +12 V: no low plateau to check
        ([0.0] * 32, True, E, None),  # pilot shorted to PE
        ([0.0] * 32, False, E, None),
        ([-12.0] * 32, False, F, None),  # the EVSE drives -12 V
        ([-12.0] * 32, True, None, PilotProblem.NO_HIGH_PLATEAU),  # missed the high part
        (_pwm_burst(4.5, -12.0), True, None, PilotProblem.OUT_OF_BAND),
        ([10.5] * 32, False, None, PilotProblem.OUT_OF_BAND),
    ],
)
def test_burst_classification(
    samples: list[float], pwm_on: bool, state: PilotState | None, problem: PilotProblem | None
) -> None:
    reading = classify_burst(samples, pwm_on=pwm_on)
    assert (reading.state, reading.problem) == (state, problem)
    assert reading.high_v == max(samples) and reading.low_v == min(samples)


def test_an_empty_burst_is_refused() -> None:
    with pytest.raises(ValueError):
        classify_burst([], pwm_on=False)


# -- debouncing -------------------------------------------------------------------------------


def _r(state: PilotState | None, problem: PilotProblem | None = None) -> PilotReading:
    return PilotReading(state, problem, high_v=0.0, low_v=0.0)


OOB = _r(None, PilotProblem.OUT_OF_BAND)


@pytest.mark.parametrize(
    ("count", "feed", "reported"),
    [
        (3, [_r(A), _r(A), _r(A)], [None, None, _r(A)]),
        (3, [_r(A), _r(A), _r(B), _r(A), _r(A)], [None, None, None, None, None]),  # glitch
        (3, [_r(A)] * 3 + [_r(B)] * 3, [None, None, _r(A), None, None, _r(B)]),
        (3, [_r(A)] * 5, [None, None, _r(A), None, None]),  # reported once
        (2, [_r(A)] * 2 + [OOB] * 2 + [_r(A)] * 2, [None, _r(A), None, OOB, None, _r(A)]),
        (1, [_r(C), _r(B)], [_r(C), _r(B)]),
        # the voltages differ between bursts; only state and problem count
        (2, [PilotReading(B, None, 9.1, -12.0), PilotReading(B, None, 8.9, -11.9)],
         [None, PilotReading(B, None, 8.9, -11.9)]),
    ],
)  # fmt: skip
def test_debouncer_reports_after_n_identical_readings(
    count: int, feed: list[PilotReading], reported: list[PilotReading | None]
) -> None:
    debouncer = PilotDebouncer(count)
    assert [debouncer.feed(reading) for reading in feed] == reported


def test_debouncer_needs_at_least_one_reading() -> None:
    with pytest.raises(ValueError):
        PilotDebouncer(0)


# -- the conditioning --------------------------------------------------------------------------


@pytest.mark.parametrize(("pilot_v", "adc_v"), [(-12.0, 0.0), (12.0, 3.3), (0.0, 1.65)])
def test_default_conditioning_maps_plus_minus_12_v_onto_0_to_3v3(
    pilot_v: float, adc_v: float
) -> None:
    scaling = PilotScaling()
    assert scaling.adc_v(pilot_v) == pytest.approx(adc_v)
    assert scaling.pilot_v(adc_v) == pytest.approx(pilot_v)


# -- the MCP3008 over SPI ----------------------------------------------------------------------


class RecordingSpi:
    """Records the bytes sent and answers through a MemorySpiDev."""

    def __init__(self, chip: MemorySpiDev) -> None:
        self.chip = chip
        self.sent: list[list[int]] = []

    def xfer2(self, data: list[int]) -> list[int]:
        self.sent.append(list(data))
        return self.chip.xfer2(data)


@pytest.mark.parametrize("channel", range(8))
def test_mcp3008_is_asked_single_ended_for_its_channel(channel: int) -> None:
    spi = RecordingSpi(MemorySpiDev())
    Mcp3008AdcChannel(spi, channel=channel, vref_v=3.3).read_code()
    assert spi.sent == [[0x01, (0x08 | channel) << 4, 0x00]]


@pytest.mark.parametrize("volts", [0.0, 0.5, 1.65, 2.4, 3.2])
def test_mcp3008_reading_matches_the_input_voltage_within_one_lsb(volts: float) -> None:
    chip = MemorySpiDev(vref_v=3.3)
    chip.set_voltage(5, volts)
    adc = Mcp3008AdcChannel(chip, channel=5, vref_v=3.3)
    assert adc.read_v() == pytest.approx(volts, abs=3.3 / 1024)


def test_mcp3008_clips_at_full_scale_and_masks_the_undriven_bits() -> None:
    chip = MemorySpiDev(vref_v=3.3)
    adc = Mcp3008AdcChannel(chip, channel=0, vref_v=3.3)
    chip.set_voltage(0, 5.0)
    assert adc.read_code() == 1023  # the reply's high bits are ones: masked away
    chip.set_voltage(0, -1.0)
    assert adc.read_code() == 0


def test_a_floating_miso_is_an_adc_error_not_a_full_scale_reading() -> None:
    chip = MemorySpiDev()
    chip.floating = True
    with pytest.raises(AdcError, match="null bit"):
        Mcp3008AdcChannel(chip, channel=0, vref_v=3.3).read_v()


def test_a_bus_error_reaches_the_caller() -> None:
    chip = MemorySpiDev()
    chip.error = OSError(5, "Input/output error")
    with pytest.raises(OSError):
        Mcp3008AdcChannel(chip, channel=0, vref_v=3.3).read_v()


def test_mcp3004_has_four_channels() -> None:
    with pytest.raises(ValueError):
        Mcp3008AdcChannel(MemorySpiDev(), channel=4, vref_v=3.3, channels=4)


def test_spidev_transport_opens_the_device_in_mode_0_once_and_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip = MemorySpiDev()
    chip.set_voltage(2, 1.65)
    opened: list[Any] = []

    class FakeSpiDev:  # spidev.SpiDev as far as the driver uses it
        def __init__(self) -> None:
            self.max_speed_hz, self.mode, self.closed = 0, 3, False
            opened.append(self)

        def open(self, bus: int, device: int) -> None:
            self.where = (bus, device)

        def xfer2(self, data: list[int]) -> list[int]:
            return chip.xfer2(data)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=FakeSpiDev))
    transport = SpidevTransport(0, 1, 500_000)
    adc = Mcp3008AdcChannel(transport, channel=2, vref_v=3.3)
    assert adc.read_v() == pytest.approx(1.65, abs=0.01)
    assert adc.read_v() == pytest.approx(1.65, abs=0.01)
    assert len(opened) == 1
    assert (opened[0].where, opened[0].max_speed_hz, opened[0].mode) == ((0, 1), 500_000, 0)
    transport.close()
    assert opened[0].closed


def test_spidev_missing_is_an_os_error_the_board_can_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "spidev", None)  # import fails as if not installed
    with pytest.raises(OSError, match="spidev is not installed"):
        SpidevTransport(0, 0, 1_000_000).xfer2([1, 0x80, 0])
