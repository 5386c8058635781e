"""OCPP 2.0.1 block K profiles end to end: the real agent against the test CSMS.

SetChargingProfile (K01), GetChargingProfiles/ReportChargingProfiles (K09),
ClearChargingProfile (K10), the TxProfile of RequestStartTransaction (K05) and the
SmartChargingCtrlr switch. Each test names the OCTT test case it follows where its
content is known (TC_K_xx, the Charging Station test cases of the 2.0.1 test case
document), otherwise the requirement it pins (K01.FR.xx, K05). It asserts what a user
would check: the answers and reports the CSMS received, the PWM the board was given and
the current the simulated EV draws, what the station keeps installed.

Times are real (the agent runs on the system clock); changes are awaited through the
station's own meter values, never slept for.
"""

# Test names carry the OCTT test case ids and OCPP 2.0.1 requirement ids as written.
# ruff: noqa: N802

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import OCPPError

from agent.core.iec61851 import duty_percent_for_current
from simulator.csms import Csms
from tests.integration.v201_profiles import (
    CP,
    FAST_METER,
    Start,
    at,
    close_to,
    composite,
    get_profiles,
    offered,
    offering,
    periods_of,
    profile,
    pwm_log,
    reported_ids,
    set_profile,
)
from tests.integration.v201_station import (
    RunningStation201,
    is_status,
    make_config_201,
    set_values,
    start_transaction,
    value_of,
    variable,
)

# -- K01 SetChargingProfile, K09 GetChargingProfiles ----------------------------------------


async def test_TC_K_01_tx_default_profile_on_an_evse_is_reported_and_sets_the_first_pwm(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    wire = profile(1, (0, 10.0), validFrom=at(-60), validTo=at(3600))
    assert await set_profile(csms201, 1, wire) == {"status": "Accepted"}

    (report,) = await get_profiles(csms201, 7, chargingProfileId=[1])
    assert report["requestId"] == 7 and report["tbc"] is False
    assert report["evseId"] == 1 and report["chargingLimitSource"] == "CSO"
    assert report["chargingProfile"] == [wire]  # as set, the schedule's own id included

    duties = pwm_log(running)
    await start_transaction(running, csms201)
    await running.agent.wait_until(lambda: bool(duties))
    assert duties[0] == duty_percent_for_current(10.0)  # the limit from the first PWM
    event = await csms201.wait_for("TransactionEvent", where=offering(10.0))
    assert offered(event, "Power.Offered") == 10.0 * 230 * 3
    plant = running.agent.hardware[1].plant
    await running.agent.wait_until(lambda: max(plant.current_a) > 0)
    assert max(plant.current_a) == pytest.approx(10.0, abs=0.1)  # the EV follows the PWM


async def test_TC_K_02_tx_profile_without_ongoing_transaction_is_rejected(
    start: Start, csms201: Csms
) -> None:
    await start()
    tx_profile = profile(1, (0, 7.0), purpose="TxProfile", kind="Relative")
    answer = await set_profile(csms201, 1, {**tx_profile, "transactionId": "no-such-tx"})
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "TxNotFound"
    # K01.FR.03: a TxProfile names its transaction.
    answer = await set_profile(csms201, 1, tx_profile)
    assert answer["statusInfo"]["reasonCode"] == "MissingParam"
    assert await get_profiles(csms201, 1) == []


async def test_TC_K_03_charging_station_max_profile_limits_the_station(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    wire = profile(3, (0, 12.0), purpose="ChargingStationMaxProfile")
    assert (await set_profile(csms201, 0, wire))["status"] == "Accepted"
    assert periods_of(await composite(csms201, 0, 60)) == [(0, 12.0)]
    assert periods_of(await composite(csms201, 1, 60)) == [(0, 12.0)]
    await start_transaction(running, csms201)
    event = await csms201.wait_for("TransactionEvent", where=lambda e: bool(offered(e)))
    assert 6.0 <= (offered(event) or 0.0) <= 12.0
    # K01.FR.03: only on EVSE 0.
    not_on_0 = profile(4, (0, 8.0), purpose="ChargingStationMaxProfile")
    answer = await set_profile(csms201, 1, not_on_0)
    assert answer["statusInfo"]["reasonCode"] == "InvalidValue"


async def test_TC_K_03_a_lone_ev_gets_the_whole_station_maximum(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    await set_profile(csms201, 0, profile(3, (0, 12.0), purpose="ChargingStationMaxProfile"))
    await start_transaction(running, csms201)
    await csms201.wait_for("TransactionEvent", where=offering(12.0))


async def test_TC_K_04_a_profile_with_the_same_id_replaces_the_installed_one(
    start: Start, csms201: Csms
) -> None:
    running = await start()
    await set_profile(csms201, 1, profile(4, (0, 10.0)))
    replacement = profile(4, (0, 14.0), stack=1)
    assert (await set_profile(csms201, 1, replacement))["status"] == "Accepted"
    (report,) = await get_profiles(csms201, 2)
    assert report["chargingProfile"] == [replacement]
    assert (
        await value_of(csms201, "SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == "1"
    )
    assert running.agent.profiles.count() == 1


async def test_TC_K_05_to_TC_K_08_clear_charging_profile(start: Start, csms201: Csms) -> None:
    running = await start()
    await set_profile(csms201, 1, profile(1, (0, 10.0), stack=0))
    await set_profile(csms201, 1, profile(2, (0, 11.0), stack=1))
    await set_profile(csms201, 0, profile(3, (0, 20.0), purpose="ChargingStationMaxProfile"))

    async def clear(**payload: Any) -> str:
        answer = await csms201.call(CP, "ClearChargingProfile", payload)
        status: str = answer["status"]
        return status

    # TC_K_05: by id.
    assert await clear(chargingProfileId=1) == "Accepted"
    assert reported_ids(await get_profiles(csms201, 1)) == {0: [3], 1: [2]}
    # TC_K_06: by stackLevel and purpose (K10.FR.03: with an id, criteria do not count).
    criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}
    assert await clear(chargingProfileCriteria=criteria) == "Accepted"
    # TC_K_07: criteria nothing matches.
    assert await clear(chargingProfileCriteria=criteria) == "Unknown"
    assert await clear(chargingProfileId=99) == "Unknown"
    assert reported_ids(await get_profiles(csms201, 2)) == {0: [3]}
    assert await clear(chargingProfileCriteria={"evseId": 0}) == "Accepted"
    # TC_K_08: nothing installed at all.
    assert await clear() == "Unknown"
    assert running.agent.profiles.count() == 0


async def test_TC_K_09_clearing_the_tx_default_profile_lifts_the_limit_of_the_transaction(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    await set_profile(csms201, 1, profile(1, (0, 8.0)))
    await start_transaction(running, csms201)
    await csms201.wait_for("TransactionEvent", where=offering(8.0))
    hardware_a = running.agent.station.evses[1].hardware_max_a
    answer = await csms201.call(CP, "ClearChargingProfile", {"chargingProfileId": 1})
    assert answer["status"] == "Accepted"
    await csms201.wait_for("TransactionEvent", where=offering(hardware_a))
    plant = running.agent.hardware[1].plant
    assert plant.duty_percent == duty_percent_for_current(hardware_a)


async def test_TC_K_10_tx_default_profile_on_evse_0_limits_every_evse(
    start: Start, csms201: Csms
) -> None:
    await start(evses=2)
    assert (await set_profile(csms201, 0, profile(10, (0, 9.0))))["status"] == "Accepted"
    for evse_id in (1, 2):
        assert periods_of(await composite(csms201, evse_id, 60)) == [(0, 9.0)]
    assert periods_of(await composite(csms201, 0, 60)) == [(0, 18.0)]  # the grid connection
    assert reported_ids(await get_profiles(csms201, 3)) == {0: [10]}
    # K01.FR.52: no TxDefaultProfile on an EVSE at the stack level of the one on EVSE 0.
    answer = await set_profile(csms201, 2, profile(11, (0, 7.0)))
    assert answer["statusInfo"]["reasonCode"] == "DuplicateProfile"


async def test_TC_K_13_profiles_survive_a_reboot(start: Start, csms201: Csms) -> None:
    running = await start()
    wire = profile(13, (0, 10.0), (60, 12.5), duration=300)
    await set_profile(csms201, 1, wire)
    await running.restart()
    await csms201.wait_for("BootNotification", count=2)
    await csms201.wait_for("StatusNotification", count=2, where=is_status("Available"))
    (report,) = await get_profiles(csms201, 4, 1)
    assert report["chargingProfile"] == [wire]


async def test_TC_K_15_smart_charging_disabled_answers_not_supported(
    start: Start, csms201: Csms
) -> None:
    running = await start()
    assert await set_values(csms201, variable("SmartChargingCtrlr", "Enabled", value="false")) == [
        "Accepted"
    ]
    with pytest.raises(OCPPError) as raised:
        await set_profile(csms201, 1, profile(1, (0, 10.0)))
    assert raised.value.code == "NotSupported"  # K01.FR.29
    assert running.agent.profiles.count() == 0


async def test_TC_K_19_recurring_daily_profile_repeats_from_its_start(
    start: Start, csms201: Csms
) -> None:
    await start()
    begun = at(-86_400 - 30)  # yesterday, 30 s ago in today's recurrence
    wire = profile(19, (0, 8.0), (60, 12.0), kind="Recurring", start=begun, recurrencyKind="Daily")
    assert (await set_profile(csms201, 1, wire))["status"] == "Accepted"
    assert close_to(periods_of(await composite(csms201, 1, 120)), [(0, 8.0), (30, 12.0)])


async def test_TC_K_29_to_TC_K_36_get_charging_profiles_by_criteria(
    start: Start, csms201: Csms
) -> None:
    running = await start()
    await set_profile(csms201, 0, profile(1, (0, 30.0), purpose="ChargingStationMaxProfile"))
    await set_profile(csms201, 0, profile(2, (0, 20.0), stack=0))
    await set_profile(csms201, 1, profile(3, (0, 16.0), stack=1))
    local_id = await start_transaction(running, csms201)
    transaction_id = running.adapter.transactions.transaction_id(local_id)
    tx_wire = profile(4, (0, 10.0), purpose="TxProfile", kind="Relative", stack=2)
    tx_wire["transactionId"] = transaction_id
    assert (await set_profile(csms201, 1, tx_wire))["status"] == "Accepted"

    cases: list[tuple[str, dict[str, Any], dict[int, list[int]]]] = [
        ("TC_K_29 evseId 0", {"evse_id": 0}, {0: [1, 2]}),
        ("TC_K_30 evseId > 0", {"evse_id": 1}, {1: [3, 4]}),
        ("TC_K_31 no evseId", {}, {0: [1, 2], 1: [3, 4]}),
        ("TC_K_32 chargingProfileId", {"chargingProfileId": [3, 1]}, {0: [1], 1: [3]}),
        ("TC_K_33 + stackLevel", {"evse_id": 1, "stackLevel": 1}, {1: [3]}),
        ("TC_K_34 + source", {"evse_id": 1, "chargingLimitSource": ["CSO"]}, {1: [3, 4]}),
        ("TC_K_34 other source", {"evse_id": 1, "chargingLimitSource": ["EMS", "SO"]}, {}),
        ("TC_K_35 + purpose", {"evse_id": 1, "chargingProfilePurpose": "TxProfile"}, {1: [4]}),
        (
            "TC_K_36 + purpose + stackLevel",
            {"evse_id": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1},
            {1: [3]},
        ),
    ]
    for request_id, (case, query, expected) in enumerate(cases, start=10):
        evse_id = query.pop("evse_id", None)
        reports = await get_profiles(csms201, request_id, evse_id, **query)
        assert reported_ids(reports) == expected, case
        assert [r["tbc"] for r in reports] == [True] * (len(reports) - 1) + [False] * bool(reports)
    (report,) = await get_profiles(csms201, 99, 1, chargingProfileId=[4])
    assert report["chargingProfile"] == [tx_wire]  # the station's own transactionId


# -- K05 RequestStartTransaction with a TxProfile ---------------------------------------------


async def test_TC_K_37_remote_start_profile_limits_the_transaction_from_its_first_pwm(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    duties = pwm_log(running)
    tx_wire = profile(37, (0, 8.0), purpose="TxProfile", kind="Relative")
    answer = await csms201.call(
        CP,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": "K37", "type": "ISO14443"},
            "remoteStartId": 37,
            "evseId": 1,
            "chargingProfile": tx_wire,
        },
    )
    assert answer["status"] == "Accepted"
    running.plug()
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    await running.agent.wait_until(lambda: bool(duties))
    assert duties[0] == duty_percent_for_current(8.0)
    await csms201.wait_for("TransactionEvent", where=offering(8.0))
    (report,) = await get_profiles(csms201, 5, 1, chargingProfilePurpose="TxProfile")
    transaction_id = started["transactionInfo"]["transactionId"]
    assert report["chargingProfile"] == [{**tx_wire, "transactionId": transaction_id}]


async def test_K05_remote_start_with_a_profile_that_is_not_a_plain_tx_profile_is_rejected(
    start: Start, csms201: Csms
) -> None:
    running = await start()
    token = {"idToken": "K05", "type": "ISO14443"}
    refused = [
        profile(1, (0, 8.0)),  # a TxDefaultProfile
        {**profile(2, (0, 8.0), purpose="TxProfile", kind="Relative"), "transactionId": "x"},
        profile(3, (0, 8.0), (0, 6.0), purpose="TxProfile", kind="Relative"),  # out of order
    ]
    for remote_start_id, wire in enumerate(refused, start=1):
        answer = await csms201.call(
            CP,
            "RequestStartTransaction",
            {
                "idToken": token,
                "remoteStartId": remote_start_id,
                "evseId": 1,
                "chargingProfile": wire,
            },
        )
        assert answer["status"] == "Rejected", wire
    evse = running.agent.station.evses[1]
    assert evse.state.name == "IDLE" and evse.tx is None
    assert running.agent.station.smart.held_profile(1) is None


async def test_K05_profile_of_a_refused_remote_start_is_forgotten(
    start: Start, csms201: Csms
) -> None:
    csms201.behaviour.accepted_tags = set()
    csms201.behaviour.tag_status_otherwise = "Invalid"
    running = await start(settings={"AuthCtrlr/AuthorizeRemoteStart": "true"})
    smart = running.agent.station.smart
    answer = await csms201.call(
        CP,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": "NOPE", "type": "ISO14443"},
            "remoteStartId": 9,
            "evseId": 1,
            "chargingProfile": profile(9, (0, 8.0), purpose="TxProfile", kind="Relative"),
        },
    )
    assert answer["status"] == "Accepted"
    await csms201.wait_for("Authorize")
    await running.agent.wait_until(lambda: smart.held_profile(1) is None)


async def test_K05_remote_start_profile_goes_on_the_transaction_the_cable_began(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings={**FAST_METER, "TxCtrlr/TxStartPoint": "EVConnected"})
    running.plug()
    started = await csms201.wait_for(
        "TransactionEvent", where=lambda e: e["eventType"] == "Started"
    )
    transaction_id = started["transactionInfo"]["transactionId"]
    answer = await csms201.call(
        CP,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": "K05", "type": "ISO14443"},
            "remoteStartId": 5,
            "evseId": 1,
            "chargingProfile": profile(5, (0, 9.0), purpose="TxProfile", kind="Relative"),
        },
    )
    assert answer == {"status": "Accepted", "transactionId": transaction_id}
    (report,) = await get_profiles(csms201, 6, 1)
    assert report["chargingProfile"][0]["transactionId"] == transaction_id
    await csms201.wait_for("TransactionEvent", where=offering(9.0))


async def test_K05_disabled_smart_charging_ignores_the_remote_start_profile(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings={"SmartChargingCtrlr/Enabled": "false"})
    answer = await csms201.call(
        CP,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": "K38", "type": "ISO14443"},
            "remoteStartId": 38,
            "evseId": 1,
            "chargingProfile": profile(38, (0, 8.0), purpose="TxProfile", kind="Relative"),
        },
    )
    assert answer["status"] == "Accepted"
    assert running.agent.station.smart.held_profile(1) is None


# -- TxProfile with a transaction, boundaries, bad profiles --------------------------------


async def test_TC_K_60_tx_profile_on_the_ongoing_transaction_limits_the_ev(
    start: Start, csms201: Csms
) -> None:
    running = await start(settings=FAST_METER)
    local_id = await start_transaction(running, csms201)
    transaction_id = running.adapter.transactions.transaction_id(local_id)
    plant = running.agent.hardware[1].plant
    await running.agent.wait_until(lambda: max(plant.current_a) > 10.0)
    tx_wire = profile(60, (0, 6.0), purpose="TxProfile", kind="Relative")
    answer = await set_profile(csms201, 1, {**tx_wire, "transactionId": transaction_id})
    assert answer == {"status": "Accepted"}
    await csms201.wait_for("TransactionEvent", where=offering(6.0))
    await running.agent.wait_until(lambda: max(plant.current_a) <= 6.1)
    # K01.FR.33: a transaction that does not run on that EVSE.
    answer = await set_profile(csms201, 1, {**tx_wire, "id": 61, "transactionId": "other-1"})
    assert answer["statusInfo"]["reasonCode"] == "TxNotFound"


@pytest.mark.parametrize(
    ("case", "wire", "reason_code"),
    [
        ("periods out of order", profile(1, (0, 8.0), (60, 6.0), (30, 7.0)), "InvalidSchedule"),
        ("first period not at 0", profile(1, (5, 8.0)), "InvalidSchedule"),
        ("unsupported unit", profile(1, (0, 2000.0), unit="W"), "UnsupportedRateUnit"),
        ("too many periods", profile(1, *[(i, 6.0) for i in range(25)]), "InvalidSchedule"),
        ("stack level above the maximum", profile(1, (0, 8.0), stack=9), "InvalidStackLevel"),
        (
            "validTo before validFrom",
            profile(1, (0, 8.0), validFrom=at(60), validTo=at(30)),
            "InvalidProfile",
        ),
        (
            "two schedules",
            {
                **profile(1, (0, 8.0)),
                "chargingSchedule": 2 * profile(1, (0, 8.0))["chargingSchedule"],
            },
            "TooManyElements",
        ),
        ("phaseToUse", profile(1, (0, 8.0)), "InvalidSchedule"),
        (
            "external constraints",
            profile(1, (0, 8.0), purpose="ChargingStationExternalConstraints"),
            "InvalidValue",
        ),
        ("unknown EVSE", profile(1, (0, 8.0)), "UnknownEvse"),
    ],
)
async def test_K01_bad_profile_is_rejected_with_its_reason_and_nothing_installed(
    start: Start, csms201: Csms, case: str, wire: dict[str, Any], reason_code: str
) -> None:
    running = await start(settings={"SmartChargingCtrlr/RateUnit": "A"} if "unit" in case else {})
    period = wire["chargingSchedule"][0]["chargingSchedulePeriod"][0]
    if case == "phaseToUse":
        period.update(numberPhases=1, phaseToUse=2)
    evse_id = 7 if case == "unknown EVSE" else 1
    answer = await set_profile(csms201, evse_id, wire)
    assert answer["status"] == "Rejected", case
    assert answer["statusInfo"]["reasonCode"] == reason_code, answer
    assert await get_profiles(csms201, 1) == []
    assert running.agent.profiles.count() == 0
    assert running.agent.station.smart.limits[1].reason == "hardware"


async def test_K01_FR_45_more_phases_than_the_evse_has_are_rejected(
    csms201: Csms, tmp_path: Path
) -> None:
    config = make_config_201(csms201.url, tmp_path)
    single = tuple(
        replace(evse, connectors=tuple(replace(c, phases=1) for c in evse.connectors))
        for evse in config.evses
    )
    running = RunningStation201(replace(config, evses=single))
    await running.start()
    try:
        await csms201.wait_for("StatusNotification", where=is_status("Available"))
        wire = profile(1, (0, 8.0))
        wire["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 3
        answer = await set_profile(csms201, 1, wire)
        assert answer["statusInfo"]["reasonCode"] == "InvalidSchedule"
        assert running.agent.profiles.count() == 0
    finally:
        await running.stop()
