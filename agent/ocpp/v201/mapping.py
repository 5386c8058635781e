"""OCPP 2.0.1 mapping tables: the core's vocabulary to and from the 2.0.1 wire.

Responsible for: folding the core's connector status (OCPP 1.6's richer set) into
2.0.1's ConnectorStatusEnumType, the AvailabilityState of an EVSE and of the station,
the stop reasons (ReasonEnumType), the boot reasons, the reservation answers and
updates, the device model variables the core's Policy mirrors, and the catalogue of the
station as built. Every translation is a table or a small pure function here, so the
adapter reads as behaviour.

Must not: send anything, hold state, or import the RPC layer or websockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from agent.core.events import ReservationEnd
from agent.core.policy import Policy
from agent.core.ports import StopReason, TxPoint
from agent.core.reservations import ReserveResult
from agent.core.station import Station
from agent.core.status import ConnectorStatus
from agent.ocpp.v201.metering import NOMINAL_VOLTAGE_V
from agent.ocpp.v201.variables import ComponentKey, VariableDef, VariableKey, station_variables

AVAILABLE: Final = "Available"
OCCUPIED: Final = "Occupied"
RESERVED: Final = "Reserved"
UNAVAILABLE: Final = "Unavailable"
FAULTED: Final = "Faulted"

#: ConnectorStatusEnumType for each derived status (2.0.1 part 2, G01): every state of
#: a connector in use - Preparing, Charging, SuspendedEV/EVSE, Finishing - is Occupied.
CONNECTOR_STATUS: dict[ConnectorStatus, str] = {
    ConnectorStatus.AVAILABLE: AVAILABLE,
    ConnectorStatus.PREPARING: OCCUPIED,
    ConnectorStatus.CHARGING: OCCUPIED,
    ConnectorStatus.SUSPENDED_EV: OCCUPIED,
    ConnectorStatus.SUSPENDED_EVSE: OCCUPIED,
    ConnectorStatus.FINISHING: OCCUPIED,
    ConnectorStatus.RESERVED: RESERVED,
    ConnectorStatus.UNAVAILABLE: UNAVAILABLE,
    ConnectorStatus.FAULTED: FAULTED,
}

#: Which connector status speaks for an EVSE with several connectors: the first found
#: in this order (a connector in use makes the EVSE Occupied even while the others are
#: Unavailable; one Available connector makes an otherwise Unavailable EVSE Available).
_EVSE_PRECEDENCE: tuple[str, ...] = (FAULTED, OCCUPIED, RESERVED, AVAILABLE, UNAVAILABLE)

#: TransactionEventRequest.transactionInfo.stoppedReason (ReasonEnumType) per stop reason.
STOP_REASONS: dict[StopReason, str] = {
    StopReason.LOCAL: "Local",
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.DE_AUTHORIZED: "DeAuthorized",
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    # 2.0.1 has one reset that stops transactions: Reset(Immediate), B12.FR.02.
    StopReason.HARD_RESET: "ImmediateReset",
    StopReason.SOFT_RESET: "ImmediateReset",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.REBOOT: "Reboot",
    StopReason.UNAVAILABLE: "Other",
    StopReason.UNLOCK: "Other",
    StopReason.FAULT: "Other",
    StopReason.MASTER_PASS: "MasterPass",
    StopReason.TIMEOUT: "Timeout",
    StopReason.STOPPED_BY_EV: "StoppedByEV",
    StopReason.OTHER: "Other",
}

#: ReserveNowStatusEnumType for each answer of the core (H01).
RESERVE_RESULTS: dict[ReserveResult, str] = {
    ReserveResult.ACCEPTED: "Accepted",
    ReserveResult.FAULTED: "Faulted",
    ReserveResult.OCCUPIED: "Occupied",
    ReserveResult.REJECTED: "Rejected",
    ReserveResult.UNAVAILABLE: "Unavailable",
}

#: ReservationUpdateStatusEnumType for the ends the CSMS is told of: expiry (H04) and
#: removal with a Faulted or Unavailable EVSE (H01). A used reservation is told by the
#: TransactionEvent carrying its id, a cancelled one by the CancelReservation answer.
RESERVATION_UPDATES: dict[ReservationEnd, str] = {
    ReservationEnd.EXPIRED: "Expired",
    ReservationEnd.REMOVED: "Removed",
}

#: BootReasonEnumType: why the station sends a BootNotificationRequest.
BOOT_REASONS: frozenset[str] = frozenset(
    {
        "ApplicationReset",
        "FirmwareUpdate",
        "LocalReset",
        "PowerUp",
        "RemoteReset",
        "ScheduledReset",
        "Triggered",
        "Unknown",
        "Watchdog",
    }
)

#: The nominal phase voltage used to state an EVSE's maximum power from its current.

# Device model paths the adapter acts on.
HEARTBEAT_INTERVAL = "OCPPCommCtrlr/HeartbeatInterval"
WEBSOCKET_PING_INTERVAL = "OCPPCommCtrlr/WebSocketPingInterval"
OFFLINE_THRESHOLD = "OCPPCommCtrlr/OfflineThreshold"


def connector_status(
    status: ConnectorStatus, *, ev_connected: bool = True, reserved: bool = False
) -> str:
    """The 2.0.1 ConnectorStatus for a derived status.

    The core says Preparing also when a driver was authorized before plugging in; no
    cable is in the connector then, so 2.0.1 still calls it Available (G01: Occupied
    is "a cable plugged in or otherwise in use"). A car plugged into a Reserved EVSE
    before any matching token leaves it Reserved (G01.FR.09, H03 scenario 2).
    """
    if status == ConnectorStatus.PREPARING:
        if not ev_connected:
            return AVAILABLE
        if reserved:
            return RESERVED
    return CONNECTOR_STATUS[status]


def evse_status(connector_statuses: Iterable[str]) -> str:
    """The AvailabilityState of an EVSE from its connectors' 2.0.1 statuses."""
    present = set(connector_statuses)
    for status in _EVSE_PRECEDENCE:
        if status in present:
            return status
    return AVAILABLE


def station_status(evse_statuses: Iterable[str]) -> str:
    """The station's AvailabilityState: Unavailable only when no EVSE can be used."""
    statuses = list(evse_statuses)
    if statuses and all(status == UNAVAILABLE for status in statuses):
        return UNAVAILABLE
    return AVAILABLE


def availability_values(
    evse_id: int, connector_states: Mapping[int, str], evse_states: Mapping[int, str]
) -> list[tuple[ComponentKey, VariableKey, str]]:
    """The AvailabilityState and Problem values to show after an EVSE's statuses changed.

    `connector_states` are its connectors' 2.0.1 statuses by connector id,
    `evse_states` every EVSE's AvailabilityState (this one's included).
    """
    state = VariableKey("AvailabilityState")
    problem = VariableKey("Problem")
    evse = ComponentKey("EVSE", evse_id=evse_id)
    station = ComponentKey("ChargingStation")
    evse_state = evse_states[evse_id]
    values = [
        (ComponentKey("Connector", None, evse_id, connector_id), state, connector_state)
        for connector_id, connector_state in connector_states.items()
    ]
    values += [
        (evse, state, evse_state),
        (evse, problem, _boolean(evse_state == FAULTED)),
        (station, state, station_status(evse_states.values())),
        (station, problem, _boolean(FAULTED in evse_states.values())),
    ]
    return values


def _boolean(value: bool) -> str:
    """A device model boolean."""
    return "true" if value else "false"


#: TxStartPoint/TxStopPoint members (the ones the hardware can tell) as the core's points.
TX_POINTS: dict[str, TxPoint] = {
    "EVConnected": TxPoint.EV_CONNECTED,
    "Authorized": TxPoint.AUTHORIZED,
    "PowerPathClosed": TxPoint.POWER_PATH_CLOSED,
    "EnergyTransfer": TxPoint.ENERGY_TRANSFER,
}


def tx_points(members: str) -> frozenset[TxPoint]:
    """The core's points for a TxStartPoint/TxStopPoint value ("EVConnected,Authorized")."""
    return frozenset(TX_POINTS[m] for m in members.split(",") if m in TX_POINTS)


def apply_policy(policy: Policy, value: Callable[[str], str]) -> None:
    """Copy the device model variables the core acts on into `policy`.

    `value(path)` reads a variable's Actual value. A disabled sampled or aligned data
    controller samples nothing (interval 0), whatever its interval says.
    """
    policy.connection_timeout_s = float(value("TxCtrlr/EVConnectionTimeOut"))
    policy.stop_tx_on_ev_disconnect = value("TxCtrlr/StopTxOnEVSideDisconnect") == "true"
    policy.tx_start_points = tx_points(value("TxCtrlr/TxStartPoint"))
    policy.master_pass_group = value("AuthCtrlr/MasterPassGroupId") or None
    policy.tx_stop_points = tx_points(value("TxCtrlr/TxStopPoint"))
    policy.unlock_on_ev_disconnect = value("OCPPCommCtrlr/UnlockOnEVSideDisconnect") == "true"
    sampled = value("SampledDataCtrlr/Enabled") == "true"
    policy.sample_interval_s = float(value("SampledDataCtrlr/TxUpdatedInterval")) if sampled else 0
    aligned = value("AlignedDataCtrlr/Enabled") == "true"
    policy.aligned_interval_s = float(value("AlignedDataCtrlr/Interval")) if aligned else 0.0
    policy.limit_change_significance_percent = float(
        value("SmartChargingCtrlr/LimitChangeSignificance")
    )


def station_catalogue(station: Station, *, vendor_name: str, model: str) -> list[VariableDef]:
    """The device model catalogue of `station` as built: its EVSEs, connectors, phases,
    power and phase switching. Raises ValueError for a connector type 2.0.1 does not know."""
    evses = []
    powers: dict[int, float] = {}
    phases = 1
    for evse in station.evses.values():
        evses.append((evse.id, [(c.id, c.type) for c in evse.connectors]))
        powers[evse.id] = max(
            c.max_current_a * c.phases * NOMINAL_VOLTAGE_V for c in evse.connectors
        )
        phases = max(phases, *(c.phases for c in evse.connectors))
    return station_variables(
        evses,
        vendor_name=vendor_name,
        model=model,
        supply_phases=phases,
        evse_max_power_w=powers,
        phase_switching=any(e.board.capabilities.can_switch_phases for e in station.evses.values()),
    )
