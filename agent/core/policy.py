"""Runtime behaviour of the EVSEs that the CSMS may tune.

Each OCPP adapter maps its own configuration keys onto this one record (1.6:
StopTransactionOnEVSideDisconnect, MeterValueSampleInterval...; 2.0.1: the TxCtrlr and
SampledDataCtrlr variables), so the core reads neutral names only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Policy:
    """Runtime behaviour the CSMS may tune (each adapter maps its own keys onto it)."""

    stop_tx_on_ev_disconnect: bool = True
    unlock_on_ev_disconnect: bool = True
    connection_timeout_s: float = 60.0
    sample_interval_s: float = 0.0
    aligned_interval_s: float = 0.0
