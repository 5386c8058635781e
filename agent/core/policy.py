"""Runtime behaviour of the EVSEs that the CSMS may tune.

Each OCPP adapter maps its own configuration keys onto this one record (1.6:
StopTransactionOnEVSideDisconnect, MeterValueSampleInterval...; 2.0.1: the TxCtrlr and
SampledDataCtrlr variables), so the core reads neutral names only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.core.ports import TxPoint


@dataclass(slots=True)
class Policy:
    """Runtime behaviour the CSMS may tune (each adapter maps its own keys onto it)."""

    stop_tx_on_ev_disconnect: bool = True
    unlock_on_ev_disconnect: bool = True
    connection_timeout_s: float = 60.0
    sample_interval_s: float = 0.0
    aligned_interval_s: float = 0.0
    #: A change of the offered limit during a transaction larger than this percentage of
    #: the last one told is journalled (2.0.1 ChargingRateChanged, LimitChangeSignificance).
    limit_change_significance_percent: float = 10.0
    #: Tokens of this group may stop any transaction but start none (2.0.1 C16).
    master_pass_group: str | None = None
    #: A transaction starts when one of these holds; OCPP 1.6's rule is PowerPathClosed.
    tx_start_points: frozenset[TxPoint] = field(
        default_factory=lambda: frozenset({TxPoint.POWER_PATH_CLOSED})
    )
    #: A transaction ends when one of these, having held during it, no longer holds.
    tx_stop_points: frozenset[TxPoint] = field(
        default_factory=lambda: frozenset({TxPoint.EV_CONNECTED, TxPoint.AUTHORIZED})
    )
