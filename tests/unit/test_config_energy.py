"""The `energy:` config section (agent/config_energy.py): values, defaults, and every
problem named with its key path and line."""

from __future__ import annotations

from datetime import time

from agent.config import EnergyConfig, parse_config
from tests.unit.config_samples import MINIMAL, problems_of

TWO_EVSES = MINIMAL.replace("evses: [{}]", "evses: [{}, {}]")


def energy(section: str, base: str = TWO_EVSES) -> str:
    """A config text with this `energy:` section (indented by the caller)."""
    return base + "energy:\n" + section


def test_no_energy_section_means_no_energy_management() -> None:
    config = parse_config(MINIMAL)
    assert config.energy == EnergyConfig()
    assert not config.energy.enabled


def test_a_full_section_is_read_with_unquoted_times_as_written() -> None:
    config = parse_config(
        energy(
            "  control_period_s: 2\n"
            "  site_limit_a: 40\n"
            "  site_meter: {driver: modbus, host: 10.0.0.5, map: sdm630}\n"
            "  meter_fallback_a: 0\n"
            "  off_peak:\n"
            "    timezone: Europe/Berlin\n"
            "    evses: [2]\n"
            "    windows:\n"
            "      - {days: [Mon, tuesday], start: 22:00, end: '06:30'}\n"
            "      - {days: weekends, start: '00:00', end: '24:00'}\n"
            "  pv: {evses: [1], min_current: true, start_surplus_w: 2000, stop_surplus_w: 1000}\n"
            "  phase_switching: {three_phases_above_w: 4600, one_phase_below_w: 4000}\n"
        )
    ).energy
    assert config.enabled
    assert (config.control_period_s, config.site_limit_a, config.meter_fallback_a) == (2, 40, 0)
    assert config.site_meter is not None and config.site_meter.driver == "modbus"
    assert dict(config.site_meter.options) == {"host": "10.0.0.5", "map": "sdm630"}
    off_peak = config.off_peak
    assert off_peak is not None and off_peak.evses == (2,)
    first, weekend = off_peak.windows
    assert (first.days, first.start, first.end) == ((0, 1), time(22, 0), time(6, 30))
    assert (weekend.days, weekend.start, weekend.end) == ((5, 6), time(0, 0), time(0, 0))
    assert config.pv is not None and config.pv.evses == (1,) and config.pv.min_current
    assert config.phase_switching.one_phase_below_w == 4000


def test_an_empty_pv_section_is_pv_mode_with_defaults() -> None:
    config = parse_config(energy("  site_meter: {driver: sim}\n  pv:\n")).energy
    assert config.pv is not None and config.pv.evses == () and config.pv.start_delay_s == 60


def test_every_problem_names_its_key_and_line() -> None:
    problems = problems_of(
        energy(
            "  control_period_s: 0\n"  # line 5
            "  site_limit_a: lots\n"
            "  site_meter: {host: 10.0.0.5}\n"
            "  off_peak:\n"
            "    timezone: Mars/Olympus\n"
            "    windows:\n"
            "      - {days: [mon, funday, mon], start: '25:00', end: 6}\n"
            "  pv: {evses: [3], stop_surplus_w: 2000, start_surplus_w: 1000}\n"
            "  phase_switching: {three_phases_above_w: 4000, one_phase_below_w: 4600}\n"
            "  solar: true\n"
        )
    )
    found = {(p.path, p.line) for p in problems}
    assert found == {
        ("energy.control_period_s", 5),
        ("energy.site_limit_a", 6),
        ("energy.site_meter.driver", 7),
        ("energy.off_peak.timezone", 9),
        ("energy.off_peak.windows[0].days[1]", 11),
        ("energy.off_peak.windows[0].days[2]", 11),
        ("energy.off_peak.windows[0].start", 11),
        ("energy.off_peak.windows[0].end", 11),
        ("energy.pv.evses[0]", 12),
        ("energy.pv.stop_surplus_w", 12),
        ("energy.phase_switching.one_phase_below_w", 13),
        ("energy.solar", 14),
    }


def test_pv_mode_needs_a_site_meter() -> None:
    [problem] = problems_of(energy("  pv: {min_current: true}\n"))
    assert (problem.path, problem.line) == ("energy.pv", 5)
    assert "site_meter" in problem.message


def test_days_must_be_a_known_set_or_a_list_of_days() -> None:
    [problem] = problems_of(
        energy(
            "  off_peak:\n"
            "    timezone: UTC\n"
            "    windows: [{days: sometimes, start: '1:00', end: '2:00'}]\n"
        )
    )
    assert problem.path == "energy.off_peak.windows[0].days"
    assert "weekdays" in problem.message
