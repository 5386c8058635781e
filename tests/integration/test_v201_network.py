"""OCPP 2.0.1 network connection profiles end to end: SetNetworkProfile (B09) answered and
persisted per slot, and the fallback over NetworkConfigurationPriority (B10), with the
real agent against test CSMSs speaking ocpp2.0.1 over real websockets on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.csms import Csms
from tests.integration.conftest import CP_ID
from tests.integration.v201_station import (
    RunningStation201,
    set_values,
    start_station,
    value_of,
    variable,
)

CP = CP_ID
Start = Callable[..., Awaitable[RunningStation201]]
NETWORK = "OCPPCommCtrlr"


def profile(url: str, **changes: Any) -> dict[str, Any]:
    """A NetworkConnectionProfileType for `url` (security profile 1), with changes."""
    return {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 30,
        "securityProfile": 1,
        "ocppInterface": "Wired0",
        **changes,
    }


async def set_profile(csms: Csms, slot: int, data: dict[str, Any]) -> dict[str, Any]:
    """SetNetworkProfile; the response."""
    return await csms.call(
        CP, "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data}
    )


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningStation201]]]:
    """Start 2.0.1 stations against a given CSMS (start_station kwargs); stopped after."""
    started: list[RunningStation201] = []

    async def factory(csms: Csms, **kwargs: Any) -> RunningStation201:
        running = await start_station(csms, tmp_path, **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        await running.stop()


async def booted(csms: Csms, start: Start, **kw: Any) -> RunningStation201:
    """A station accepted by `csms`, its status snapshot arrived."""
    running = await start(csms, **kw)
    await csms.wait_for("StatusNotification")
    return running


async def test_b09_accepted_profile_is_stored_in_its_slot_across_a_restart(
    csms201: Csms, start: Start
) -> None:
    """B09: a valid profile for a free slot is Accepted and kept after a reboot."""
    running = await booted(csms201, start)
    data = profile("ws://csms.example:9000/ocpp", messageTimeout=20)
    assert await set_profile(csms201, 2, data) == {"status": "Accepted"}
    await running.restart()
    await csms201.wait_for("BootNotification", count=2)
    network = running.agent.network
    assert network is not None
    assert network.profile(2) == data and network.profile(3) is None


REJECTED = [
    ("slot not in the valuesList", 4, {}, "InvalidConfSlot"),
    ("slot of the connection in use", 1, {}, "InvalidConfSlot"),
    ("not OCPP 2.0", 2, {"ocppVersion": "OCPP16"}, "UnsupportedParam"),
    ("SOAP", 2, {"ocppTransport": "SOAP"}, "UnsupportedParam"),
    (
        "client certificates",
        2,
        {"securityProfile": 3, "ocppCsmsUrl": "wss://x/o"},
        "UnsupportedParam",
    ),
    ("no security", 2, {"securityProfile": 0}, "NoSecurityDowngrade"),
    ("profile 2 needs TLS", 2, {"securityProfile": 2}, "InvalidURL"),
    ("profile 1 is plain ws", 2, {"ocppCsmsUrl": "wss://csms.example/ocpp"}, "InvalidURL"),
    ("not a websocket URL", 2, {"ocppCsmsUrl": "http://csms.example/ocpp"}, "InvalidURL"),
]


@pytest.mark.parametrize(
    ("slot", "changes", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
async def test_b09_profiles_the_station_cannot_use_are_rejected_and_not_stored(
    csms201: Csms,
    start: Start,
    slot: int,
    changes: dict[str, Any],
    reason: str,
) -> None:
    running = await booted(csms201, start)
    answer = await set_profile(csms201, slot, profile("ws://csms.example/ocpp", **changes))
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == reason
    network = running.agent.network
    assert network is not None and network.profile(slot) is None


async def test_b09_fr_02_a_profile_below_the_current_security_profile_is_rejected(
    csms201: Csms, start: Start
) -> None:
    """B09.FR.02: with SecurityProfile 2, a security profile 1 profile is refused, a
    profile 2 one accepted."""
    await booted(csms201, start, install_settings={"SecurityCtrlr/SecurityProfile": "2"})
    lower = await set_profile(csms201, 2, profile("ws://csms.example/ocpp"))
    assert (lower["status"], lower["statusInfo"]["reasonCode"]) == (
        "Rejected",
        "NoSecurityDowngrade",
    )
    same = profile("wss://csms.example/ocpp", securityProfile=2)
    assert await set_profile(csms201, 2, same) == {"status": "Accepted"}


async def test_network_configuration_priority_takes_effect_after_a_reboot(
    csms201: Csms, start: Start
) -> None:
    """The priority change is RebootRequired: persisted at once, followed from the next
    start; a slot outside the valuesList is Rejected."""
    running = await booted(csms201, start)
    assert await set_values(
        csms201,
        variable(NETWORK, "NetworkConfigurationPriority", value="2,1"),
        variable(NETWORK, "NetworkConfigurationPriority", value="1,7"),
    ) == ["RebootRequired", "Rejected"]
    network = running.agent.network
    assert network is not None and network.priority == (1,)
    await running.restart()
    await csms201.wait_for("BootNotification", count=2)
    assert await value_of(csms201, NETWORK, "NetworkConfigurationPriority") == "2,1"
    network = running.agent.network
    assert network is not None and network.priority == (2, 1)
    assert network.active_slot == 1  # slot 2 has no profile: skipped


async def test_b10_falls_back_to_the_next_profile_when_the_first_cannot_be_reached(
    start: Start,
) -> None:
    """B10: slot 1 (the config's CSMS) is gone, slot 2 was set by SetNetworkProfile;
    with priority "1,2" and one attempt per profile, the station boots at slot 2's CSMS."""
    settings = {
        f"{NETWORK}/NetworkConfigurationPriority": "1,2",
        f"{NETWORK}/NetworkProfileConnectionAttempts": "1",
    }
    async with Csms(subprotocols=("ocpp2.0.1",)) as fallback:
        async with Csms(subprotocols=("ocpp2.0.1",)) as first:
            running = await booted(first, start, settings=settings)
            assert await set_profile(first, 2, profile(fallback.url)) == {"status": "Accepted"}
            await running.stop()
        # `first` is closed now: its port refuses connections.
        await running.start()
        boot = await fallback.wait_for("BootNotification")
        assert boot["reason"] == "PowerUp"
        agent = running.agent
        network = agent.network
        assert network is not None and network.active_slot == 2
        assert agent.supervisor.failed_attempts >= 1  # slot 1 was tried first
        assert agent.supervisor.url == fallback.url + "/" + CP
