"""Sharing one supply limit between EVSEs: fair shares with a minimum per EVSE.

A pure function. The smart-charging loop (agent/core/smart_charging.py) calls it with the
capacity of the shared supply in amperes per phase (the least of the site limit, the
site meter's headroom and the CSMS's station maximum) and one `Demand` per EVSE; it
returns the current each EVSE may offer.

The rules, in order:

1. Only EVSEs with a session that wants power (`active`) get anything; every other EVSE
   gets 0 until it becomes active (the loop recomputes at once when it does).
2. Each EVSE that gets current gets at least `min_a` (6 A, IEC 61851-1: the least an EV
   can be offered), or nothing: below that it is paused (SuspendedEVSE).
3. When the capacity cannot give `min_a` to every active EVSE, EVSEs already drawing
   (`running`) come first, then the others by when their session began (first come,
   first served); the rest are paused.
4. The capacity left over is shared equally ("water-filling"), each EVSE up to what it
   wants: its cap (`cap_a`: hardware, its own profiles, local caps), or, when its EV
   draws clearly less than it was offered (or nothing: a full car, SuspendedEV), that
   draw plus a margin so it can grow again, and never less than `min_a`.
   What one EVSE cannot use goes to the others.

The sum of the shares never exceeds the capacity (to within float rounding).

This module must not: read a clock, meter or store, or know OCPP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MIN_CURRENT_A",
    "RAMP_MARGIN_A",
    "SELF_LIMITED_MARGIN_A",
    "Demand",
    "allocate",
    "wanted_a",
]

#: The least current an EV can be offered (IEC 61851-1 Table A.8: 6 A at 10 % duty).
MIN_CURRENT_A: Final = 6.0
#: An EV drawing this much less than it was offered is limiting itself.
SELF_LIMITED_MARGIN_A: Final = 1.0
#: Headroom given above a self-limited EV's draw, so that it can ramp up again. Larger
#: than SELF_LIMITED_MARGIN_A: an EV that stays at its own limit keeps being seen as
#: self-limited (no oscillation), one that takes the headroom is offered its full share.
RAMP_MARGIN_A: Final = 2.0


@dataclass(frozen=True, slots=True)
class Demand:
    """One EVSE as the allocator sees it.

    `cap_a`: the most it may get from other limits; `offered_a`: what it offers now;
    `drawing_a`: the highest phase current its EV draws once it had time to follow its
    offer, 0 when it declines the offer (a full car), None while unknown; `since`: an
    ordering key for first come, first served (the session's start as a timestamp).
    """

    evse_id: int
    active: bool
    running: bool
    cap_a: float
    offered_a: float = 0.0
    drawing_a: float | None = None
    since: float = 0.0


def wanted_a(demand: Demand, min_a: float = MIN_CURRENT_A) -> float:
    """What this EVSE could use: its cap, or its self-limited draw plus a margin."""
    want = demand.cap_a
    drawing = demand.drawing_a
    if (
        drawing is not None
        and demand.offered_a >= min_a
        and drawing < demand.offered_a - SELF_LIMITED_MARGIN_A
    ):
        want = min(want, max(min_a, drawing + RAMP_MARGIN_A))
    return want


def allocate(
    capacity_a: float | None, demands: Iterable[Demand], min_a: float = MIN_CURRENT_A
) -> Mapping[int, float]:
    """Each EVSE's share of `capacity_a` (None: no shared limit, each gets its cap)."""
    demands = list(demands)
    shares = {d.evse_id: 0.0 for d in demands}
    eligible = [d for d in demands if d.active and d.cap_a >= min_a]
    if capacity_a is None:
        shares.update({d.evse_id: d.cap_a for d in eligible})
        return shares
    eligible.sort(key=lambda d: (not d.running, d.since, d.evse_id))
    admitted = eligible[: max(0, int((capacity_a + 1e-9) // min_a))]
    if not admitted:
        return shares
    for d in admitted:
        shares[d.evse_id] = min_a
    spare = capacity_a - min_a * len(admitted)
    wants = {d.evse_id: max(min_a, wanted_a(d, min_a)) for d in admitted}
    hungry = [d.evse_id for d in admitted if wants[d.evse_id] > shares[d.evse_id]]
    while spare > 1e-9 and hungry:
        portion = spare / len(hungry)
        still_hungry = []
        for evse_id in hungry:
            grant = min(portion, wants[evse_id] - shares[evse_id])
            shares[evse_id] += grant
            spare -= grant
            if wants[evse_id] - shares[evse_id] > 1e-9:
                still_hungry.append(evse_id)
        if len(still_hungry) == len(hungry):
            break  # everyone took a full portion: the spare is used up
        hungry = still_hungry
    return shares
