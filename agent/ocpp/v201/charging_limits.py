"""OCPP 2.0.1 external charging limits (K12/K13): NotifyChargingLimit and ClearedChargingLimit.

The station's local energy management (a site limit, a site meter's headroom, off-peak
windows, PV surplus) sets limits on the core's smart-charging loop by named source
(`SmartCharging.set_site_capacity` / `set_evse_cap`). To the CSMS these are external
limits with chargingLimitSource EMS. The loop says, per EVSE, what limits it now and
what decided it (`SmartCharging.limits`, EvseLimit.reason): the hardware, the CSMS's
profiles ("profile", "station") or a local source (any other name).

While a transaction runs on an EVSE whose limit a local source decides, the CSMS is told
with a NotifyChargingLimitRequest (evseId, source EMS, and with
SmartChargingCtrlr.NotifyChargingLimitWithSchedules a one-period schedule of the limit in
A) - again whenever that limit moves by more than SmartChargingCtrlr.LimitChangeSignificance
percent of the value last reported (K12). When a local source no longer decides it, a
ClearedChargingLimitRequest follows (K13). When the transaction ends, nothing is sent:
the limit of an idle EVSE (no session, no share) is nobody's business.

Timing: `run` is the adapter's per-connection task. It re-examines the limits when the
station reports anything (a meter sample, a status, a transaction message) and, where the
loop offers one, at its change hook (`SmartCharging.subscribe`); nothing is polled. What
changed while offline is reported at the first look after the connection is back.

Must not: set or lift limits (the energy management and the loop do), or send before
the registration is accepted (the adapter starts `run` after it).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from agent.core.ports import Clock
from agent.core.station import Station
from agent.core.tasks import Signal
from agent.ocpp.rpc import CallTimeout, RpcEndpoint, RpcError
from agent.ocpp.v201.device_model import DeviceModel, wire_time

log = logging.getLogger(__name__)

LIMIT_CHANGE_SIGNIFICANCE: Final = "SmartChargingCtrlr/LimitChangeSignificance"
WITH_SCHEDULES: Final = "SmartChargingCtrlr/NotifyChargingLimitWithSchedules"
EMS: Final = "EMS"

#: EvseLimit reasons that are not external: the EVSE itself and the CSMS's profiles.
INTERNAL_REASONS: Final = frozenset({"hardware", "profile", "station"})


def significant(reported: float, now: float, percent: float) -> bool:
    """Whether a limit moved from `reported` to `now` by more than `percent` percent."""
    if reported == 0:
        return now != 0
    return abs(now - reported) / reported * 100 > percent


class ExternalLimits:
    """Tells the CSMS about limits the station's own energy management imposes."""

    def __init__(self, *, station: Station, model: DeviceModel, clock: Clock) -> None:
        self.station = station
        self.model = model
        self.clock = clock
        #: Set when there may be something to report (the adapter clears it, reports).
        self.changed = Signal()
        self._reported: dict[int, float] = {}  # EVSE -> external limit the CSMS last heard
        self._schedule_ids = 0
        station.subscribe(lambda _event: self.changed.set())
        station.smart.subscribe(lambda _limits: self.changed.set())  # a change of the limits

    def wake(self) -> None:
        """Look at the limits again soon (something may have changed)."""
        self.changed.set()

    @property
    def reported(self) -> dict[int, float]:
        """The external limit the CSMS last heard of, per EVSE."""
        return dict(self._reported)

    async def report(self, endpoint: RpcEndpoint) -> None:
        """Report what changed since the last report; raises ConnectionLost."""
        for evse_id, action, payload, limit_a in self.pending():
            try:
                await endpoint.call(action, payload)
            except (RpcError, CallTimeout) as exc:
                log.warning("%s for EVSE %s failed: %s", action, evse_id, exc)
                continue
            if limit_a is None:
                self._reported.pop(evse_id, None)
            else:
                self._reported[evse_id] = limit_a

    def pending(self) -> list[tuple[int, str, dict[str, Any], float | None]]:
        """(evse id, action, payload, limit reported or None when cleared) for each EVSE
        whose external limit the CSMS should hear of now."""
        percent = float(self.model.value(LIMIT_CHANGE_SIGNIFICANCE))
        out: list[tuple[int, str, dict[str, Any], float | None]] = []
        for evse_id, limit in sorted(self.station.smart.limits.items()):
            evse = self.station.evses.get(evse_id)
            running = evse is not None and evse.tx is not None
            last = self._reported.get(evse_id)
            if not running:
                self._reported.pop(evse_id, None)  # an ended transaction ends the story
                continue
            if limit.reason not in INTERNAL_REASONS:
                if last is None or significant(last, limit.current_a, percent):
                    phases = limit.phases or (evse.active_phases if evse is not None else 3)
                    payload = self._notify(evse_id, limit.current_a, phases)
                    out.append((evse_id, "NotifyChargingLimit", payload, limit.current_a))
            elif last is not None:
                payload = {"chargingLimitSource": EMS, "evseId": evse_id}
                out.append((evse_id, "ClearedChargingLimit", payload, None))
        return out

    def _notify(self, evse_id: int, limit_a: float, phases: int) -> dict[str, Any]:
        """A NotifyChargingLimitRequest for one EVSE (K12)."""
        payload: dict[str, Any] = {"chargingLimit": {"chargingLimitSource": EMS}, "evseId": evse_id}
        if self.model.bool_value(WITH_SCHEDULES):
            self._schedule_ids += 1
            payload["chargingSchedule"] = [
                {
                    "id": self._schedule_ids,
                    "startSchedule": wire_time(self.clock.now()),
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": round(limit_a, 1), "numberPhases": phases}
                    ],
                }
            ]
        return payload
