"""OCPP 2.0.1 network connection profiles: SetNetworkProfile (B09) and fallback (B10).

Responsible for: answering SetNetworkProfile and persisting each accepted profile in the
settings store per configurationSlot; and giving the connection supervisor its targets
in the order of OCPPCommCtrlr.NetworkConfigurationPriority with
OCPPCommCtrlr.NetworkProfileConnectionAttempts failed attempts each before the next
(the supervisor wraps around after the last).

Slot 1 is the install config's CSMS (csms.url, basic auth, TLS) unless the CSMS stored
another profile there. NetworkConfigurationPriority is read once, when the agent starts:
a change is RebootRequired. A slot listed there without a profile is skipped; if no
listed slot has one, the install config's CSMS is the only target. Profiles themselves
are read before every attempt, so one stored meanwhile is used at the next attempt.

SetNetworkProfile rules (this agent's reading of B09, kept simple):
- the slot must be one of NetworkConfigurationPriority's valuesList, and not the slot
  of the connection in use (changing it under our feet): else Rejected (InvalidConfSlot);
- securityProfile must not be lower than SecurityCtrlr.SecurityProfile (B09.FR.02):
  else Rejected (NoSecurityDowngrade); profile 3 (client certificates) is not supported
  and no other value is defined (Rejected, UnsupportedParam);
- the URL must be ws:// for security profile 1 and wss:// for 2 (Rejected, InvalidURL);
- only ocppVersion OCPP20 over JSON: this adapter is the 2.0.1 one (the station offers
  every configured version's subprotocol on every profile all the same); anything else
  is Rejected (UnsupportedParam);
- apn, vpn and ocppInterface are stored but not acted on: the operating system owns
  the network link; messageTimeout is the response timeout on that profile;
- a store failure answers Failed; otherwise Accepted.
A profile stored by the CSMS sends HTTP Basic credentials (the install config's user
name, SecurityCtrlr.BasicAuthPassword if set, else the install config's password) and,
on wss://, the install config's TLS trust. Connecting through it raises
SecurityCtrlr.SecurityProfile to its security profile (never lowers it).

Must not: open connections (the supervisor does), know about 1.6, or change the device
model's characteristics (variables.py holds them).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.core.ports import SettingsStore
from agent.ocpp.connection import Target
from agent.ocpp.rpc import Handler
from agent.ocpp.v201.device_model import DeviceModel, parse_path

log = logging.getLogger(__name__)

PRIORITY = "OCPPCommCtrlr/NetworkConfigurationPriority"
ATTEMPTS = "OCPPCommCtrlr/NetworkProfileConnectionAttempts"
SECURITY_PROFILE = "SecurityCtrlr/SecurityProfile"
BASIC_AUTH_PASSWORD = "SecurityCtrlr/BasicAuthPassword"
PROFILE_KEY = "ocpp201.network_profile.{slot}"  # no "/": never a device model path
INSTALL_SLOT = 1
SUPPORTED_SECURITY_PROFILES = {1: "ws://", 2: "wss://"}


@dataclass(frozen=True, slots=True)
class InstallProfile:
    """The install config's CSMS: slot 1 unless the CSMS stored another profile there."""

    url: str
    username: str
    password: str | None = None
    response_timeout_s: float | None = None


def _refusal(status: str, reason: str, info: str) -> dict[str, Any]:
    """A SetNetworkProfileResponse that is not Accepted, with its reason."""
    return {"status": status, "statusInfo": {"reasonCode": reason, "additionalInfo": info}}


class NetworkProfiles:
    """The station's network connection profiles and the order they are tried in."""

    def __init__(
        self,
        *,
        store: SettingsStore,
        model: DeviceModel,
        install: InstallProfile,
        tls: Callable[[str], ssl.SSLContext | None],
    ) -> None:
        """`tls(url)` gives the TLS context for a wss:// URL (None for ws://)."""
        self._store = store
        self._model = model
        self._install = install
        self._tls = tls
        # RebootRequired: the priority this agent started with is the one it follows.
        self.priority: tuple[int, ...] = tuple(int(s) for s in model.list_value(PRIORITY))
        self.active_slot: int | None = None  # the slot of the last connection made

    # -- wiring ------------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """The CALLs this component answers, by action."""
        return {"SetNetworkProfile": self._on_set_network_profile}

    def targets(self) -> list[Target]:
        """The targets in NetworkConfigurationPriority order (the install config's CSMS
        alone when no listed slot has a profile)."""
        targets = [t for t in (self._target(slot) for slot in self.priority) if t is not None]
        return targets or [self._install_target()]

    def attempts(self) -> int:
        """Failed attempts at one profile before the next is tried (B10)."""
        return max(1, self._model.int_value(ATTEMPTS))

    def on_connected(self, target: Target) -> None:
        """A connection was made through `target`: note its slot, raise the security
        profile to a stored profile's."""
        slot = _slot_of(target)
        self.active_slot = slot
        data = self.profile(slot) if slot is not None else None
        if data is None:
            return
        level = int(data["securityProfile"])
        if level > self._model.int_value(SECURITY_PROFILE):
            component, variable, _ = parse_path(SECURITY_PROFILE)
            self._model.update(component, variable, str(level))

    # -- profiles ----------------------------------------------------------------------

    def profile(self, slot: int) -> dict[str, Any] | None:
        """The connectionData the CSMS stored in `slot`, or None."""
        text = self._store.get_setting(PROFILE_KEY.format(slot=slot))
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("ignoring the unreadable network profile of slot %d", slot)
            return None
        return data if isinstance(data, dict) else None

    def _target(self, slot: int) -> Target | None:
        """The target of one slot, or None when it has no profile."""
        data = self.profile(slot)
        if data is None:
            return self._install_target() if slot == INSTALL_SLOT else None
        url = str(data["ocppCsmsUrl"])
        password = self._model.value(BASIC_AUTH_PASSWORD) or self._install.password
        timeout = data.get("messageTimeout")
        return Target(
            url=url,
            basic_auth=(self._install.username, password) if password else None,
            ssl_context=self._tls(url),
            response_timeout_s=float(timeout) if isinstance(timeout, int) and timeout > 0 else None,
            name=f"slot {slot}",
        )

    def _install_target(self) -> Target:
        """The install config's CSMS as the target of slot 1."""
        install = self._install
        return Target(
            url=install.url,
            basic_auth=(install.username, install.password) if install.password else None,
            ssl_context=self._tls(install.url),
            response_timeout_s=install.response_timeout_s,
            name=f"slot {INSTALL_SLOT}",
        )

    # -- B09 ---------------------------------------------------------------------------

    async def _on_set_network_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """B09: check the profile, store it in its slot; the status says which."""
        slot: int = payload["configurationSlot"]
        data: dict[str, Any] = payload["connectionData"]
        refusal = self._check(slot, data)
        if refusal is not None:
            return refusal
        try:
            self._store.set_setting(PROFILE_KEY.format(slot=slot), json.dumps(data))
        except Exception:
            log.exception("storing the network profile of slot %d failed", slot)
            return _refusal("Failed", "InternalError", "the profile could not be stored")
        log.info("network profile stored in slot %d: %s", slot, data["ocppCsmsUrl"])
        return {"status": "Accepted"}

    def _check(self, slot: int, data: dict[str, Any]) -> dict[str, Any] | None:
        """The Rejected answer a profile deserves, or None if it is acceptable."""
        component, variable, _ = parse_path(PRIORITY)
        definition = self._model.lookup(component, variable)
        slots = definition.values_list if definition is not None else None
        if str(slot) not in (slots or ()):
            listed = ", ".join(slots or ())
            return _refusal("Rejected", "InvalidConfSlot", f"slots are {listed}")
        if slot == self.active_slot:
            return _refusal("Rejected", "InvalidConfSlot", "the slot of the connection in use")
        if data["ocppVersion"] != "OCPP20" or data["ocppTransport"] != "JSON":
            return _refusal("Rejected", "UnsupportedParam", "only OCPP20 over JSON")
        level = data["securityProfile"]
        if level < self._model.int_value(SECURITY_PROFILE):
            return _refusal("Rejected", "NoSecurityDowngrade", "lower than SecurityProfile")
        scheme = SUPPORTED_SECURITY_PROFILES.get(level)
        if scheme is None:
            return _refusal("Rejected", "UnsupportedParam", "security profiles 1 and 2 only")
        url = str(data["ocppCsmsUrl"])
        if not url.startswith(scheme) or not _has_host(url):
            return _refusal("Rejected", "InvalidURL", f"profile {level} needs a {scheme} URL")
        return None


def _has_host(url: str) -> bool:
    """Whether `url` parses with a host (and a valid port, if any)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return False
    return bool(parts.hostname) and not parts.query and not parts.fragment


def _slot_of(target: Target) -> int | None:
    """The slot a target of this module was made for ("slot N")."""
    prefix = "slot "
    if target.name.startswith(prefix) and target.name[len(prefix) :].isdigit():
        return int(target.name[len(prefix) :])
    return None
