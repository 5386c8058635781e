"""Reconnect policy: exponential backoff with jitter, bounded."""

from __future__ import annotations

import pytest

from agent.ocpp.connection import Backoff


@pytest.mark.parametrize(
    ("failures", "expected_s"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)]
)
def test_backoff_doubles_up_to_the_cap_without_jitter(failures: int, expected_s: float) -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.0)
    assert backoff.delay_s(failures) == expected_s


def test_jitter_only_shortens_the_wait_by_at_most_its_fraction() -> None:
    backoff = Backoff(initial_s=2.0, max_s=60.0, jitter=0.5)
    assert backoff.delay_s(3, rand=lambda: 0.0) == 8.0
    assert backoff.delay_s(3, rand=lambda: 1.0) == 4.0
    assert backoff.delay_s(30, rand=lambda: 0.999) > 30.0
