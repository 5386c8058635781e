"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

# --- simulator.csms: the `csms` fixture -----------------------------------------------------
from simulator.csms import Csms


@pytest.fixture
async def csms() -> AsyncIterator[Csms]:
    """A started OCPP 1.6J CSMS on 127.0.0.1 (port 0), stopped after the test."""
    async with Csms() as server:
        yield server


# --- end simulator.csms ---------------------------------------------------------------------
