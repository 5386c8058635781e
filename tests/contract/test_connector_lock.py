"""Contract of ConnectorLock (drivers/interfaces.py), run over every implementation."""

from __future__ import annotations

from drivers.interfaces import ConnectorLock
from tests.contract.conftest import LockHarness


async def test_lock_implements_the_protocol(lock_harness: LockHarness) -> None:
    assert isinstance(lock_harness.lock, ConnectorLock)


async def test_free_lock_confirms_each_command(lock_harness: LockHarness) -> None:
    lock = lock_harness.lock
    assert await lock.set_locked(True)
    assert await lock.set_locked(True)  # idempotent: locking a locked pin is confirmed
    assert await lock.set_locked(False)
    assert await lock.set_locked(False)


async def test_jammed_lock_reports_that_it_did_not_move(lock_harness: LockHarness) -> None:
    await lock_harness.jam()
    assert not await lock_harness.lock.set_locked(True)
