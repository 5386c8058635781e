"""Reconnect policy: exponential backoff with jitter, bounded; targets tried in turn."""

from __future__ import annotations

import pytest

from agent.ocpp.connection import Backoff, Target, TargetCursor


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


# -- which target next (OCPP 2.0.1 B10) ---------------------------------------------------

TARGETS = [Target(f"ws://csms-{n}.example/ocpp", name=f"slot {n}") for n in (1, 2, 3)]


def tried(cursor: TargetCursor, failures: int, attempts: int) -> list[str]:
    """The names of the targets tried by `failures` failed attempts in a row."""
    names = []
    for _ in range(failures):
        names.append(cursor.pick(TARGETS).name)
        cursor.failed(len(TARGETS), attempts)
    return names


def test_each_target_gets_its_attempts_then_the_next_wrapping_around() -> None:
    assert tried(TargetCursor(), 7, attempts=2) == [
        "slot 1", "slot 1", "slot 2", "slot 2", "slot 3", "slot 3", "slot 1",
    ]  # fmt: skip


def test_a_connection_starts_the_count_of_failures_at_that_target_again() -> None:
    cursor = TargetCursor()
    assert tried(cursor, 2, attempts=3) == ["slot 1", "slot 1"]
    cursor.connected()  # then the connection dropped: three more tries before moving on
    assert tried(cursor, 4, attempts=3) == ["slot 1", "slot 1", "slot 1", "slot 2"]


def test_a_shorter_target_list_keeps_the_cursor_in_range() -> None:
    cursor = TargetCursor()
    tried(cursor, 2, attempts=1)  # now at slot 3
    assert cursor.pick(TARGETS[:2]).name == "slot 1"


def test_no_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CSMS target"):
        TargetCursor().pick([])


def test_credentials_never_appear_in_a_target_repr() -> None:
    target = Target("ws://csms.example/ocpp", basic_auth=("CP-1", "s3cr3t"))
    assert "s3cr3t" not in repr(target)
