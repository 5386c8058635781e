"""OCPP 2.0.1 device model catalogue: what a variable definition is, and this station's.

Responsible for: the types of the device model (component and variable keys, data types,
attribute types, mutability) and the catalogue of components and variables this agent
reports, as data. Names, data types and required variables follow OCPP 2.0.1 Part 2
Appendices ("Standardized components and variables"); enumerations match the official
JSON schemas (`DataEnumType`, `AttributeEnumType`, `MutabilityEnumType`).
`station_variables()` builds the catalogue for one station as built: its EVSEs, their
connectors, and the controller components. Definitions are immutable, so stations built
alike share one catalogue (a fleet of thousands builds it once).

Must not: hold live values, read or write the store, validate values or know the wire
(device_model.py and reports.py do that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from agent.ocpp.v201.metering import (
    CURRENT_IMPORT,
    CURRENT_OFFERED,
    ENERGY_IMPORT,
    POWER_IMPORT,
    SOC,
    SUPPORTED_MEASURANDS,
)


class DataType(StrEnum):
    """OCPP 2.0.1 DataEnumType: how a variable's value is written."""

    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATE_TIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"


LIST_TYPES = frozenset({DataType.OPTION_LIST, DataType.SEQUENCE_LIST, DataType.MEMBER_LIST})


class Attribute(StrEnum):
    """OCPP 2.0.1 AttributeEnumType: which value of a variable."""

    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class Mutability(StrEnum):
    """OCPP 2.0.1 MutabilityEnumType: who may read and write an attribute."""

    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


@dataclass(frozen=True, slots=True)
class ComponentKey:
    """A component: name, optional instance, optional EVSE and connector it belongs to."""

    name: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None


@dataclass(frozen=True, slots=True)
class VariableKey:
    """A variable of a component: name and optional instance."""

    name: str
    instance: str | None = None


ReadWrite: Mapping[Attribute, Mutability] = MappingProxyType(
    {Attribute.ACTUAL: Mutability.READ_WRITE}
)
ReadOnly: Mapping[Attribute, Mutability] = MappingProxyType(
    {Attribute.ACTUAL: Mutability.READ_ONLY}
)
WriteOnly: Mapping[Attribute, Mutability] = MappingProxyType(
    {Attribute.ACTUAL: Mutability.WRITE_ONLY}
)


@dataclass(frozen=True, slots=True, eq=False)
class VariableDef:
    """One variable of one component: its attributes, characteristics and default.

    `mutability` lists the attribute types the variable has, each with its mutability.
    `default` is the Actual default (a str) or one per attribute (a mapping); an
    attribute without a default is unset and reads as "" (OCPP 2.0.1 B06.FR.13).
    For string and list types `min_limit`/`max_limit` bound the length of the value,
    for integer and decimal its number (Part 2, VariableCharacteristicsType).
    `constant` values come from the catalogue or the install config only, never from
    the station at runtime; `persistent` ones survive a reboot (they are stored).
    """

    component: ComponentKey
    variable: VariableKey
    data_type: DataType
    mutability: Mapping[Attribute, Mutability] = field(default_factory=lambda: ReadWrite)
    default: str | Mapping[Attribute, str] = ""
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: tuple[str, ...] | None = None
    reboot_required: bool = False
    persistent: bool = True
    supports_monitoring: bool = False
    constant: bool = False

    def __post_init__(self) -> None:
        """Reject a definition that cannot be answered; raises ValueError."""
        if not self.mutability:
            raise ValueError(f"{self.variable.name}: a variable needs at least one attribute")
        if (self.data_type in LIST_TYPES) != (self.values_list is not None):
            raise ValueError(f"{self.variable.name}: valuesList goes with list types only")
        if isinstance(self.default, Mapping) and not set(self.default) <= set(self.mutability):
            raise ValueError(f"{self.variable.name}: a default for an attribute it lacks")

    def default_for(self, attribute: Attribute) -> str:
        """The default of one attribute ("" when unset)."""
        if isinstance(self.default, str):
            return self.default if attribute == Attribute.ACTUAL else ""
        return self.default.get(attribute, "")


#: ConnectorEnumType of the 2.0.1 schemas (ConnectorType variable values).
CONNECTOR_TYPES: tuple[str, ...] = (
    "cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2", "s309-1P-16A", "s309-1P-32A",
    "s309-3P-16A", "s309-3P-32A", "sBS1361", "sCEE-7-7", "sType2", "sType3", "Other1PhMax16A",
    "Other1PhOver16A", "Other3Ph", "Pan", "wInductive", "wResonant", "Undetermined", "Unknown",
)  # fmt: skip
#: ConnectorStatusEnumType: the values of every AvailabilityState variable.
AVAILABILITY_STATES: tuple[str, ...] = (
    "Available",
    "Occupied",
    "Reserved",
    "Unavailable",
    "Faulted",
)
#: MeasurandEnumType values this agent can sample (2.0.1 has no Temperature measurand).
MEASURANDS: tuple[str, ...] = SUPPORTED_MEASURANDS
#: TxStartStopPointEnumType: the members of TxStartPoint and TxStopPoint.
TX_POINTS: tuple[str, ...] = (
    "EVConnected",
    "Authorized",
    "PowerPathClosed",
    "EnergyTransfer",
)
#: ClockCtrlr.TimeSource members (Part 2 appendix).
TIME_SOURCES: tuple[str, ...] = (
    "Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork", "RadioTimeTransmitter",
)  # fmt: skip

DEFAULT_EVSE_MAX_POWER_W = 22080.0  # 3 phases x 230 V x 32 A
REPORTING_VALUE_SIZE = 2500  # GetVariableResult.attributeValue / VariableAttribute.value maxLength
CONFIGURATION_VALUE_SIZE = 1000  # SetVariableData.attributeValue maxLength
ITEMS_PER_MESSAGE = 64
MAX_CHARGING_PROFILES = 64  # SmartChargingCtrlr.Entries(ChargingProfiles) maxLimit
BYTES_PER_MESSAGE = 65536


def _mutability(ro: bool, wo: bool = False) -> Mapping[Attribute, Mutability]:
    """Actual only: read-only, write-only or read-write."""
    return ReadOnly if ro else WriteOnly if wo else ReadWrite


def _int(
    component: ComponentKey,
    name: str,
    default: int,
    *,
    instance: str | None = None,
    unit: str | None = None,
    minimum: int | None = 0,
    maximum: int | None = None,
    ro: bool = False,
    reboot: bool = False,
    persistent: bool = True,
    constant: bool = False,
) -> VariableDef:
    """An integer variable (Actual only)."""
    return VariableDef(
        component, VariableKey(name, instance), DataType.INTEGER, _mutability(ro), str(default),
        unit, minimum, maximum, None, reboot, persistent, constant=constant,
    )  # fmt: skip


def _bool(
    component: ComponentKey, name: str, value: bool, *, ro: bool = False, runtime: bool = False
) -> VariableDef:
    """A boolean; a read-only one is constant unless the adapter mirrors it (`runtime`)."""
    default = "true" if value else "false"
    return VariableDef(
        component, VariableKey(name), DataType.BOOLEAN, _mutability(ro), default,
        persistent=not runtime, constant=ro and not runtime,
    )  # fmt: skip


def _text(
    component: ComponentKey,
    name: str,
    default: str = "",
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    ro: bool = False,
    wo: bool = False,
    constant: bool = False,
    reboot: bool = False,
) -> VariableDef:
    """A string variable, its length bounded by min_length/max_length."""
    return VariableDef(
        component, VariableKey(name), DataType.STRING, _mutability(ro, wo), default,
        None, min_length, max_length, None, reboot, constant=constant,
    )  # fmt: skip


def _list(
    component: ComponentKey,
    name: str,
    data_type: DataType,
    default: str,
    values: tuple[str, ...],
    *,
    ro: bool = False,
    runtime: bool = False,
) -> VariableDef:
    """An OptionList, MemberList or SequenceList over `values`."""
    return VariableDef(
        component, VariableKey(name), data_type, _mutability(ro), default, values_list=values,
        persistent=not runtime, constant=ro and not runtime,
    )  # fmt: skip


def _seconds(
    component: ComponentKey,
    name: str,
    default: int,
    *,
    minimum: int = 0,
    instance: str | None = None,
    reboot: bool = False,
) -> VariableDef:
    """A read-write integer number of seconds."""
    return _int(
        component, name, default, instance=instance, unit="s", minimum=minimum, reboot=reboot
    )


def _availability(component: ComponentKey, supply_phases: int) -> list[VariableDef]:
    """The variables every physical component (station, EVSE, connector) reports."""
    return [
        # Runtime state the adapter mirrors from the core; the core persists availability.
        _list(
            component,
            "AvailabilityState",
            DataType.OPTION_LIST,
            "Available",
            AVAILABILITY_STATES,
            ro=True,
            runtime=True,
        ),
        _bool(component, "Available", True, ro=True),
        _int(component, "SupplyPhases", supply_phases, maximum=3, ro=True, constant=True),
    ]


def _station(vendor_name: str, model: str, supply_phases: int) -> list[VariableDef]:
    """ChargingStation: identity and availability of the whole station."""
    station = ComponentKey("ChargingStation")
    return [
        *_availability(station, supply_phases),
        _text(station, "Model", model, max_length=50, ro=True, constant=True),
        _text(station, "VendorName", vendor_name, max_length=50, ro=True, constant=True),
        # GetReport criterion Problem (B08.FR.10); set by the adapter on a fault.
        _bool(station, "Problem", False, ro=True, runtime=True),
    ]


def _evse(evse_id: int, max_power_w: float, supply_phases: int) -> list[VariableDef]:
    """EVSE: availability and power of one EVSE."""
    evse = ComponentKey("EVSE", evse_id=evse_id)
    # Power: maxLimit is required (Part 2 appendix); the Actual value is the live power.
    power = VariableDef(
        evse, VariableKey("Power"), DataType.DECIMAL, ReadOnly, "0", "W", 0, max_power_w,
        persistent=False,
    )  # fmt: skip
    return [
        *_availability(evse, supply_phases),
        power,
        _bool(evse, "Problem", False, ro=True, runtime=True),
    ]


def _connector(
    evse_id: int, connector_id: int, connector_type: str, supply_phases: int
) -> list[VariableDef]:
    """Connector: its type and availability."""
    connector = ComponentKey("Connector", evse_id=evse_id, connector_id=connector_id)
    return [
        *_availability(connector, supply_phases),
        _text(connector, "ConnectorType", connector_type, ro=True, constant=True),
    ]


def _ocpp_comm(all_cabled: bool) -> list[VariableDef]:
    """OCPPCommCtrlr: heartbeat, message retries, network profiles, websocket pings."""
    comm = ComponentKey("OCPPCommCtrlr")
    return [
        _seconds(comm, "HeartbeatInterval", 300, minimum=1),
        # Set by the network connection profile (install config), not by SetVariables.
        _int(comm, "MessageTimeout", 30, instance="Default", unit="s", minimum=1, ro=True),
        _int(comm, "MessageAttempts", 3, instance="TransactionEvent", minimum=1),
        _seconds(comm, "MessageAttemptInterval", 30, instance="TransactionEvent"),
        # The websocket ping interval is fixed when a connection opens (as in 1.6).
        _seconds(comm, "WebSocketPingInterval", 30, reboot=True),
        _int(comm, "ResetRetries", 1),
        # Only fixed cables: nothing to unlock, so ReadOnly false (Part 2 appendix).
        _bool(comm, "UnlockOnEVSideDisconnect", not all_cabled, ro=all_cabled),
        # Network connection profiles (B09/B10, agent/ocpp/v201/network.py): slot 1 is the
        # install config's CSMS unless SetNetworkProfile stored another; the valuesList
        # is the slots SetNetworkProfile accepts. The priority applies after a reboot.
        VariableDef(
            comm,
            VariableKey("NetworkConfigurationPriority"),
            DataType.SEQUENCE_LIST,
            default="1",
            values_list=("1", "2", "3"),
            reboot_required=True,
        ),
        _int(comm, "NetworkProfileConnectionAttempts", 3, minimum=1),
        # Not acted on yet (offline threshold, reconnect back-off and file transfer come
        # with later issues); answered and persisted honestly.
        _seconds(comm, "OfflineThreshold", 60),
        _seconds(comm, "RetryBackOffWaitMinimum", 10),
        _seconds(comm, "RetryBackOffRandomRange", 10),
        _int(comm, "RetryBackOffRepeatTimes", 5),
        _list(
            comm,
            "FileTransferProtocols",
            DataType.MEMBER_LIST,
            "HTTP,HTTPS",
            ("FTP", "FTPS", "HTTP", "HTTPS", "SFTP"),
            ro=True,
        ),
    ]


def _tx() -> list[VariableDef]:
    """TxCtrlr: when transactions start and stop, and what ends them."""
    tx = ComponentKey("TxCtrlr")
    return [
        _seconds(tx, "EVConnectionTimeOut", 60, minimum=1),
        _bool(tx, "StopTxOnEVSideDisconnect", True),
        _bool(tx, "StopTxOnInvalidId", True),
        # ParkingBayOccupancy and DataSigned need a bay sensor and a signing meter that
        # no driver provides: they are not in the valuesList, so setting them is Rejected.
        _list(tx, "TxStartPoint", DataType.MEMBER_LIST, "PowerPathClosed", TX_POINTS),
        _list(tx, "TxStopPoint", DataType.MEMBER_LIST, "EVConnected,Authorized", TX_POINTS),
        _bool(tx, "TxBeforeAcceptedEnabled", False),
        _int(tx, "MaxEnergyOnInvalidId", 0, unit="Wh"),
    ]


def _metering() -> list[VariableDef]:
    """SampledDataCtrlr and AlignedDataCtrlr: what the meter reports and how often."""
    sampled = ComponentKey("SampledDataCtrlr")
    aligned = ComponentKey("AlignedDataCtrlr")
    energy = ENERGY_IMPORT
    updated = ",".join((ENERGY_IMPORT, POWER_IMPORT, CURRENT_IMPORT, CURRENT_OFFERED, SOC))

    def measurands(component: ComponentKey, name: str, default: str) -> VariableDef:
        return _list(component, name, DataType.MEMBER_LIST, default, SUPPORTED_MEASURANDS)

    return [
        _bool(sampled, "Available", True, ro=True),
        _bool(sampled, "Enabled", True),
        measurands(sampled, "TxStartedMeasurands", energy),
        measurands(sampled, "TxUpdatedMeasurands", updated),  # SoC only when the EV tells
        _seconds(sampled, "TxUpdatedInterval", 60),
        measurands(sampled, "TxEndedMeasurands", energy),
        _seconds(sampled, "TxEndedInterval", 0),
        _bool(aligned, "Available", True, ro=True),
        _bool(aligned, "Enabled", True),
        measurands(aligned, "Measurands", energy),
        _seconds(aligned, "Interval", 0),  # 0: no clock-aligned data
        measurands(aligned, "TxEndedMeasurands", energy),
        _seconds(aligned, "TxEndedInterval", 0),
    ]


def _auth() -> list[VariableDef]:
    """AuthCtrlr and AuthCacheCtrlr: how id tokens are authorized and cached.

    Acted on by agent/ocpp/v201/auth.py. Storage counts 160 B an entry (auth.ENTRY_BYTES),
    so the cache's Storage maxLimit sets how many tokens it holds (1000).
    """
    auth = ComponentKey("AuthCtrlr")
    cache = ComponentKey("AuthCacheCtrlr")
    return [
        # false: every token is accepted without asking anyone.
        _bool(auth, "Enabled", True),
        _bool(auth, "AuthorizeRemoteStart", False),
        _bool(auth, "LocalAuthorizeOffline", True),
        _bool(auth, "LocalPreAuthorize", False),
        _bool(auth, "OfflineTxForUnknownIdEnabled", False),
        # AdditionalInfoItemsPerMessage is left out: the agent sends no additionalInfo.
        _text(auth, "MasterPassGroupId", max_length=36),  # "" = no master pass (C16)
        _bool(auth, "DisableRemoteAuthorization", False),  # C14
        _bool(cache, "Available", True, ro=True),
        _bool(cache, "Enabled", True),
        _int(cache, "Storage", 0, unit="B", maximum=1000 * 160, ro=True, persistent=False),
        # Seconds an entry lives since its last use (C10.FR.08).
        _seconds(cache, "LifeTime", 86400, minimum=1),
        # No custom policy: a CSMS asking for one is Rejected (InvalidValue).
        _list(cache, "Policy", DataType.OPTION_LIST, "LRU", ("LRU", "LFU", "FIFO")),
        _bool(cache, "DisablePostAuthorize", False),
    ]


def _device_data() -> list[VariableDef]:
    """DeviceDataCtrlr: the size limits of device model requests and values."""
    data = ComponentKey("DeviceDataCtrlr")

    def limit(
        name: str, value: int, instance: str | None = None, unit: str | None = None
    ) -> VariableDef:
        return _int(
            data, name, value, instance=instance, unit=unit, minimum=1, ro=True, constant=True
        )

    out: list[VariableDef] = []
    for instance in ("GetReport", "GetVariables", "SetVariables"):
        out.append(limit("ItemsPerMessage", ITEMS_PER_MESSAGE, instance))
        out.append(limit("BytesPerMessage", BYTES_PER_MESSAGE, instance, "B"))
    return [
        *out,
        limit("ConfigurationValueSize", CONFIGURATION_VALUE_SIZE),
        limit("ReportingValueSize", REPORTING_VALUE_SIZE),
        limit("ValueSize", REPORTING_VALUE_SIZE),
    ]


def _security() -> list[VariableDef]:
    """SecurityCtrlr: identity, security profile and credentials."""
    security = ComponentKey("SecurityCtrlr")
    return [
        # 0 (no security) is the plain ws:// legacy an install without credentials uses.
        _int(security, "SecurityProfile", 1, maximum=3, ro=True),
        _text(security, "Identity", max_length=48, ro=True),
        # A00: 16..40 characters. WriteOnly: never read back over OCPP (B06.FR.09,
        # B07.FR.03); a new password is used from the next connection.
        _text(security, "BasicAuthPassword", min_length=16, max_length=40, wo=True, reboot=True),
        _int(security, "CertificateEntries", 0, ro=True, persistent=False),
        # Not acted on yet: certificate signing comes with the security issue.
        _text(security, "OrganizationName", max_length=50),
        _int(security, "CertSigningRepeatTimes", 3),
        _seconds(security, "CertSigningWaitMinimum", 60, minimum=1),
    ]


def _clock() -> list[VariableDef]:
    """ClockCtrlr: the station's time and where it comes from."""
    clock = ComponentKey("ClockCtrlr")
    # DateTime is live: read from the clock DeviceModel is given, at each request.
    date_time = VariableDef(
        clock, VariableKey("DateTime"), DataType.DATE_TIME, ReadOnly, persistent=False
    )
    return [
        date_time,
        # Not acted on yet: the agent trusts the OS clock (NTP on a networked board).
        _list(clock, "TimeSource", DataType.SEQUENCE_LIST, "NTP", TIME_SOURCES),
    ]


def _later_features() -> list[VariableDef]:
    """LocalAuthListCtrlr and ReservationCtrlr."""
    local = ComponentKey("LocalAuthListCtrlr")
    reservation = ComponentKey("ReservationCtrlr")
    return [
        # LocalAuthListCtrlr (acted on by agent/ocpp/v201/auth.py): up to 10,000 tokens,
        # sent 250 at a time (about 200 B for an entry with group and expiry: 64 KiB);
        # Storage counts 160 B an entry (auth.ENTRY_BYTES).
        _bool(local, "Available", True, ro=True),
        _bool(local, "Enabled", True),
        _int(local, "Entries", 0, maximum=10_000, ro=True, persistent=False),
        _int(local, "ItemsPerMessage", 250, minimum=1, ro=True, constant=True),
        _int(local, "BytesPerMessage", BYTES_PER_MESSAGE, unit="B", ro=True, constant=True),
        _int(local, "Storage", 0, unit="B", maximum=10_000 * 160, ro=True, persistent=False),
        _bool(local, "DisablePostAuthorize", False),
        # ReservationCtrlr (acted on by agent/ocpp/v201/reservations.py): H01.FR.01 refuses
        # every ReserveNow while not Available and Enabled; H01.FR.18/19 a reservation
        # without evseId while NonEvseSpecific is false (an installer may set it).
        _bool(reservation, "Available", True, ro=True),
        _bool(reservation, "Enabled", True),
        _bool(reservation, "NonEvseSpecific", True, ro=True),
    ]


def _smart_charging(phase_switching: bool) -> list[VariableDef]:
    """SmartChargingCtrlr: what profiles this station takes (acted on by
    agent/ocpp/v201/smart_charging.py and charging_limits.py).

    Entries(ChargingProfiles) is the installed count, live; its maxLimit how many may be
    installed. ProfileStackLevel, PeriodsPerSchedule and RateUnit bound what
    SetChargingProfile accepts (an installer may narrow RateUnit to "A" or "W").
    ExternalControlSignalsEnabled is true and read-only: the core always follows the
    local energy management. Phases3to1: a board can switch phases during a transaction;
    ACPhaseSwitchingSupported (choosing the phase, phaseToUse) no board can.
    """
    smart = ComponentKey("SmartChargingCtrlr")
    return [
        _bool(smart, "Available", True, ro=True),
        _bool(smart, "Enabled", True),
        _int(
            smart,
            "Entries",
            0,
            instance="ChargingProfiles",
            maximum=MAX_CHARGING_PROFILES,
            ro=True,
            persistent=False,
        ),
        VariableDef(
            smart,
            VariableKey("LimitChangeSignificance"),
            DataType.DECIMAL,
            ReadWrite,
            "10",
            "Percent",
            0,
            100,
        ),
        _int(smart, "PeriodsPerSchedule", 24, minimum=1, ro=True, constant=True),
        _int(smart, "ProfileStackLevel", 8, ro=True, constant=True),
        _list(smart, "RateUnit", DataType.MEMBER_LIST, "A,W", ("A", "W"), ro=True),
        _bool(smart, "ExternalControlSignalsEnabled", True, ro=True),
        _bool(smart, "NotifyChargingLimitWithSchedules", False),
        _bool(smart, "Phases3to1", phase_switching, ro=True),
        _bool(smart, "ACPhaseSwitchingSupported", False, ro=True),
    ]


def station_variables(
    evses: Sequence[tuple[int, Sequence[tuple[int, str]]]],
    *,
    vendor_name: str = "cpagent",
    model: str = "cpagent",
    supply_phases: int = 3,
    evse_max_power_w: Mapping[int, float] | None = None,
    phase_switching: bool = False,
) -> list[VariableDef]:
    """The catalogue of a station with `evses` = [(evse_id, [(connector_id, type)])];
    `phase_switching`: a board can switch between 3 and 1 phases.

    Stations built alike get the same (immutable) definitions. Raises ValueError for no
    EVSE, an EVSE without connectors, a duplicate or non-positive id, or a connector type
    that is not a ConnectorEnumType value.
    """
    built = tuple((evse_id, tuple(connectors)) for evse_id, connectors in evses)
    powers = tuple(sorted((evse_max_power_w or {}).items()))
    return list(
        _station_variables(built, vendor_name, model, supply_phases, powers, phase_switching)
    )


@lru_cache(maxsize=16)
def _station_variables(
    evses: tuple[tuple[int, tuple[tuple[int, str], ...]], ...],
    vendor_name: str,
    model: str,
    supply_phases: int,
    evse_max_power_w: tuple[tuple[int, float], ...],
    phase_switching: bool,
) -> tuple[VariableDef, ...]:
    """station_variables() over hashable arguments, built once per distinct station."""
    if not evses:
        raise ValueError("a station needs at least one EVSE")
    powers = dict(evse_max_power_w)
    out = _station(vendor_name, model, supply_phases)
    seen: set[int] = set()
    connector_types: list[str] = []
    for evse_id, connectors in evses:
        if evse_id < 1 or evse_id in seen:
            raise ValueError(f"EVSE id {evse_id}: ids are unique and start at 1")
        if not connectors:
            raise ValueError(f"EVSE {evse_id} has no connector")
        seen.add(evse_id)
        out += _evse(evse_id, powers.get(evse_id, DEFAULT_EVSE_MAX_POWER_W), supply_phases)
        ids: set[int] = set()
        for connector_id, connector_type in connectors:
            if connector_id < 1 or connector_id in ids:
                raise ValueError(f"EVSE {evse_id} connector {connector_id}: ids unique, from 1")
            if connector_type not in CONNECTOR_TYPES:
                raise ValueError(f"connector type {connector_type!r} is not a ConnectorEnumType")
            ids.add(connector_id)
            connector_types.append(connector_type)
            out += _connector(evse_id, connector_id, connector_type, supply_phases)
    all_cabled = all(kind.startswith("c") for kind in connector_types)
    return (
        *out,
        *_ocpp_comm(all_cabled),
        *_tx(),
        *_metering(),
        *_auth(),
        *_device_data(),
        *_security(),
        *_clock(),
        *_later_features(),
        *_smart_charging(phase_switching),
    )
