"""OCPP 2.0.1 composite schedules (K08), external limits (K12/K13) and the
SmartChargingCtrlr variables end to end: the real agent against the test CSMS.

The composite tests follow the OCTT test cases TC_K_39 to TC_K_47 (with the 2025
errata's schedules for TC_K_40/41); a period boundary is placed two seconds ahead and
the PWM change awaited through the station's meter values, never slept for. Local
limits are set on the core's smart-charging loop as the energy management does.
"""

# Test names carry the OCTT test case ids and OCPP 2.0.1 requirement ids as written.
# ruff: noqa: N802

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from simulator.csms import Csms
from tests.integration.v201_profiles import (
    FAST_METER,
    Start,
    at,
    close_to,
    composite,
    offering,
    periods_of,
    profile,
    set_profile,
)
from tests.integration.v201_station import (
    get_values,
    set_values,
    start_transaction,
    value_of,
    variable,
)

# -- K08 GetCompositeSchedule -----------------------------------------------------------------


async def test_TC_K_39_composite_without_profiles_is_the_station_maximum(
    start: Start, csms201: Csms
) -> None:
    running = await start()
    before = datetime.now(UTC)
    answer = await composite(csms201, 0, 300)
    assert answer["status"] == "Accepted"
    schedule = answer["schedule"]
    assert schedule["evseId"] == 0 and schedule["duration"] == 300
    start_at = datetime.fromisoformat(schedule["scheduleStart"].replace("Z", "+00:00"))
    assert abs((start_at - before).total_seconds()) < 2
    hardware_a = running.agent.station.evses[1].hardware_max_a
    assert periods_of(answer) == [(0, hardware_a)]


async def test_TC_K_40_composite_of_stacked_tx_default_profiles(
    start: Start, csms201: Csms
) -> None:
    await start()
    begun = at()
    window: dict[str, Any] = {"validFrom": at(-5), "validTo": at(401)}
    await set_profile(
        csms201,
        1,
        profile(1, (0, 6.0), (100, 8.0), (200, 10.0), start=begun, duration=400, **window),
    )
    await set_profile(
        csms201, 1, profile(2, (0, 7.0), (100, 9.0), stack=1, start=begun, duration=150, **window)
    )
    answer = await composite(csms201, 1, 350, "A")
    assert answer["schedule"]["duration"] == 350
    expected = [(0, 7.0), (100, 9.0), (150, 8.0), (200, 10.0)]
    assert close_to(periods_of(answer), expected), periods_of(answer)


@pytest.mark.parametrize(("unit", "multiplier"), [("A", 1), ("W", 690)])
async def test_TC_K_41_composite_combines_purposes_in_amperes_and_watts(
    start: Start, csms201: Csms, unit: str, multiplier: int
) -> None:
    running = await start()
    local_id = await start_transaction(running, csms201)
    begun = at()
    window: dict[str, Any] = {"validFrom": at(-5), "validTo": at(401)}
    station_max = profile(
        1,
        (0, 10.0 * multiplier),
        purpose="ChargingStationMaxProfile",
        unit=unit,
        start=begun,
        duration=86_400,
    )
    tx_default = profile(
        2,
        *[(s, v * multiplier) for s, v in [(0, 6), (60, 10), (120, 8), (180, 15), (260, 8)]],
        unit=unit,
        start=begun,
        duration=300,
        **window,
    )
    tx = profile(
        3,
        *[(s, v * multiplier) for s, v in [(0, 8), (50, 11), (140, 16), (200, 6), (240, 12)]],
        purpose="TxProfile",
        unit=unit,
        start=begun,
        duration=260,
        transactionId=running.adapter.transactions.transaction_id(local_id),
        **window,
    )
    for evse_id, wire in ((0, station_max), (1, tx_default), (1, tx)):
        assert (await set_profile(csms201, evse_id, wire))["status"] == "Accepted"
    answer = await composite(csms201, 1, 400, unit)
    assert answer["schedule"]["chargingRateUnit"] == unit
    expected = [(0, 8), (50, 10), (200, 6), (240, 10), (260, 8), (300, 10)]
    scaled = [(s, float(v * multiplier)) for s, v in expected]
    assert close_to(periods_of(answer), scaled), periods_of(answer)


async def test_TC_K_42_unsupported_rate_unit_is_rejected(start: Start, csms201: Csms) -> None:
    running = await start(settings={"SmartChargingCtrlr/RateUnit": "A"})
    answer = await composite(csms201, 1, 60, "W")
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "UnsupportedRateUnit"
    # K01.FR.26: a profile in the unit the station does not take.
    answer = await set_profile(csms201, 1, profile(1, (0, 6900.0), unit="W"))
    assert answer["statusInfo"]["reasonCode"] == "UnsupportedRateUnit"
    assert running.agent.profiles.count() == 0


async def test_TC_K_47_composite_of_an_unknown_evse_is_rejected(
    start: Start, csms201: Csms
) -> None:
    await start()
    answer = await composite(csms201, 5, 60)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"


async def test_K08_period_boundary_is_applied_on_time(start: Start, csms201: Csms) -> None:
    running = await start(settings=FAST_METER)
    await start_transaction(running, csms201)
    plant = running.agent.hardware[1].plant
    boundary = time.monotonic() + 2.0
    await set_profile(csms201, 1, profile(8, (0, 16.0), (2, 8.0), start=at()))
    await running.agent.wait_until(lambda: abs(plant.offered_current_a - 16.0) < 0.1)
    await running.agent.wait_until(lambda: abs(plant.offered_current_a - 8.0) < 0.1)
    late_s = time.monotonic() - boundary
    assert -1.0 <= late_s < 1.5, late_s  # whole-second resolution, and the meter tick


# -- K12/K13 external limits, SmartChargingCtrlr ----------------------------------------------


async def test_K12_K13_local_limits_are_reported_as_external_limits(
    start: Start, csms201: Csms
) -> None:
    running = await start(
        settings={**FAST_METER, "SmartChargingCtrlr/LimitChangeSignificance": "10"}
    )
    await start_transaction(running, csms201)
    smart = running.agent.station.smart
    limits = running.adapter.smart_charging.limits

    smart.set_evse_cap("pv", 1, 10.0)
    first = await csms201.wait_for("NotifyChargingLimit")
    assert first == {"chargingLimit": {"chargingLimitSource": "EMS"}, "evseId": 1}
    await csms201.wait_for("TransactionEvent", where=offering(10.0))
    smart.set_evse_cap("pv", 1, 9.5)  # 5 %: not significant
    assert limits.pending() == []
    assert await set_values(
        csms201, variable("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", value="true")
    ) == ["Accepted"]
    smart.set_evse_cap("pv", 1, 6.0)
    second = await csms201.wait_for("NotifyChargingLimit", count=2)
    (schedule,) = second["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 6.0, "numberPhases": 3}
    ]
    assert [p["evseId"] for p in csms201.calls("NotifyChargingLimit")] == [1, 1]

    smart.set_evse_cap("pv", 1, None)
    cleared = await csms201.wait_for("ClearedChargingLimit")
    assert cleared == {"chargingLimitSource": "EMS", "evseId": 1}


async def test_smart_charging_ctrlr_variables(start: Start, csms201: Csms) -> None:
    await start()
    items = [
        variable("SmartChargingCtrlr", name, instance=instance)
        for name, instance in [
            ("Available", None),
            ("Enabled", None),
            ("Entries", "ChargingProfiles"),
            ("LimitChangeSignificance", None),
            ("PeriodsPerSchedule", None),
            ("ProfileStackLevel", None),
            ("RateUnit", None),
            ("ExternalControlSignalsEnabled", None),
            ("NotifyChargingLimitWithSchedules", None),
            ("Phases3to1", None),
        ]
    ]
    values = [r["attributeValue"] for r in await get_values(csms201, *items)]
    assert values == ["true", "true", "0", "10", "24", "8", "A,W", "true", "false", "false"]
    statuses = await set_values(
        csms201,
        variable("SmartChargingCtrlr", "ProfileStackLevel", value="20"),
        variable("SmartChargingCtrlr", "ExternalControlSignalsEnabled", value="false"),
        variable("SmartChargingCtrlr", "LimitChangeSignificance", value="2.5"),
    )
    assert statuses == ["Rejected", "Rejected", "Accepted"]
    await set_profile(csms201, 1, profile(1, (0, 10.0)))
    assert (
        await value_of(csms201, "SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == "1"
    )
