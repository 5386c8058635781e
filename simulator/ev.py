"""The simulated electric vehicle: battery, state of charge and charge curve.

Responsible for what the car decides on its own side of the cable: how much current it
draws from what the charger offers (never more than its own limit, tapering near full),
whether it wants power at all (its S2 switch, IEC 61851-1 Annex A) and how its state of
charge grows with the energy it absorbs.

It must not know anything about the charger: pilot voltages, PWM decoding, contactors and
time belong to the plant (simulator/plant.py), which tells the car how much energy it got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

# The charge curve: full current below this state of charge, then a linear taper.
TAPER_START_SOC_PERCENT = 80.0
# At 100 % the taper has come down to this fraction of the EV's maximum current.
TAPER_END_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class EvParameters:
    """The static description of a simulated car and its state when it arrives."""

    battery_wh: float = 40000.0
    soc_percent: float = 20.0
    max_current_a: float = 32.0
    phases: int = 3
    target_soc_percent: float = 100.0
    ventilation: bool = False

    def __post_init__(self) -> None:
        """Reject parameters no car could have; raises ValueError."""
        if not (math.isfinite(self.battery_wh) and self.battery_wh > 0):
            raise ValueError(f"battery_wh must be > 0, got {self.battery_wh}")
        if not 0.0 <= self.soc_percent <= 100.0:
            raise ValueError(f"soc_percent must be within 0..100, got {self.soc_percent}")
        if not 0.0 <= self.target_soc_percent <= 100.0:
            raise ValueError(
                f"target_soc_percent must be within 0..100, got {self.target_soc_percent}"
            )
        if not (math.isfinite(self.max_current_a) and self.max_current_a > 0):
            raise ValueError(f"max_current_a must be > 0, got {self.max_current_a}")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {self.phases}")


class EvListener(Protocol):
    """What the car tells the plant it is plugged into about its own decisions."""

    def ev_will_change(self) -> None:
        """Called just before the car changes what it wants (integrate power up to now)."""
        ...

    def ev_changed(self) -> None:
        """Called just after the car changed what it wants (re-evaluate the pilot)."""
        ...


class SimEv:
    """A car: a battery with a state of charge, a charge curve and an S2 switch."""

    def __init__(self, params: EvParameters | None = None) -> None:
        """Create a car in the state `params` describes (defaults: EvParameters())."""
        self._params = params if params is not None else EvParameters()
        self._soc_percent = self._params.soc_percent
        self._paused = False
        self._listener: EvListener | None = None

    @property
    def params(self) -> EvParameters:
        """The static description this car was created from."""
        return self._params

    @property
    def soc_percent(self) -> float:
        """State of charge in percent (0..100)."""
        return self._soc_percent

    @property
    def phases(self) -> int:
        """How many phases the car's on-board charger draws from."""
        return self._params.phases

    @property
    def max_current_a(self) -> float:
        """The most current per phase the car ever draws."""
        return self._params.max_current_a

    @property
    def ventilation(self) -> bool:
        """Whether the car asks for ventilation while charging (state D instead of C)."""
        return self._params.ventilation

    @property
    def paused(self) -> bool:
        """Whether the car itself holds its S2 switch open."""
        return self._paused

    @property
    def wants_power(self) -> bool:
        """Whether the car closes S2: not paused and below its target state of charge."""
        return not self._paused and self._soc_percent < self._params.target_soc_percent

    def bind(self, listener: EvListener | None) -> None:
        """Attach the car to the plant it is plugged into (None detaches it).

        Raises ValueError when the car is already plugged in somewhere else.
        """
        if listener is not None and self._listener is not None and listener is not self._listener:
            raise ValueError("this EV is already plugged into another plant")
        self._listener = listener

    def pause(self) -> None:
        """Open S2: the car stops asking for power (idempotent)."""
        self._set_paused(True)

    def resume(self) -> None:
        """Close S2 again: the car asks for power while below its target (idempotent)."""
        self._set_paused(False)

    def taper_current_a(self) -> float:
        """The most current the charge curve allows at the present state of charge."""
        soc = self._soc_percent
        full_a = self._params.max_current_a
        if soc < TAPER_START_SOC_PERCENT:
            return full_a
        span = 100.0 - TAPER_START_SOC_PERCENT
        progress = min(1.0, (soc - TAPER_START_SOC_PERCENT) / span)
        return full_a * (1.0 - (1.0 - TAPER_END_FRACTION) * progress)

    def charge_current_a(self, offered_a: float) -> float:
        """Current per phase the car draws when `offered_a` is offered (0 if not wanting)."""
        if not self.wants_power or offered_a <= 0.0:
            return 0.0
        return min(offered_a, self._params.max_current_a, self.taper_current_a())

    def absorb(self, energy_wh: float) -> None:
        """Store `energy_wh` in the battery (SoC capped at 100 %); raises ValueError if < 0."""
        if energy_wh < 0.0 or not math.isfinite(energy_wh):
            raise ValueError(f"energy_wh must be finite and >= 0, got {energy_wh}")
        gained_percent = energy_wh / self._params.battery_wh * 100.0
        self._soc_percent = min(100.0, self._soc_percent + gained_percent)

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        if self._listener is not None:
            self._listener.ev_will_change()
        self._paused = paused
        if self._listener is not None:
            self._listener.ev_changed()
