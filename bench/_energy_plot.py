"""The plot of bench/energy_day.py: limit against current over a simulated day, as a PNG.

matplotlib is an optional dependency (the `bench` extra); it is imported only when a plot
is drawn, with the Agg backend (no display). Nothing here measures or judges anything:
it draws the series and figures energy_day.py hands it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from energy_day import Series

INSTALL_HINT = "pip install -e '.[bench]' (or: pip install 'matplotlib>=3.8')"
EVSE_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown")
#: Legends right of the plots (a phases axis on the right needs the room: 1.07).
LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.07, 1.0), "fontsize": 8}


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib is not installed: {INSTALL_HINT}"
    return None


def draw_scenario(series: Series, figures: dict[str, Any], path: Path) -> None:
    """Draw the site (limit, capacity, grid current, base load, PV surplus) above each
    EVSE (allocated limit, measured current, phases) to `path`; raises ImportError
    without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    adherence = figures["adherence"]
    limit = adherence["site_limit_a"]
    t = series.t
    zone = t[0].tzinfo if t else None
    figure, (site_ax, evse_ax) = plt.subplots(
        2, 1, figsize=(15, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]},
        layout="constrained",
    )  # fmt: skip
    figure.suptitle(figures["title"], fontsize=12)

    # The site: what the grid connection carried against its limit.
    _shade(site_ax, t, series.window, "tab:green", "off-peak window", alpha=0.08)
    if any(s > 0 for s in series.surplus_a):
        site_ax.fill_between(t, series.surplus_a, step="post", color="gold", alpha=0.45,
                             label="PV surplus (PV - base load)")  # fmt: skip
    site_ax.step(t, series.base_a, where="post", color="grey", lw=1, label="base load")
    site_ax.step(t, _nan(series.capacity_a), where="post", color="tab:cyan", lw=1.2,
                 label="EVSEs' capacity\n(site limit - other loads)")  # fmt: skip
    site_ax.step(t, series.grid_a, where="post", color="black", lw=1.3,
                 label="grid current,\nmost loaded phase")  # fmt: skip
    if any(s > 0 for s in series.surplus_a):
        site_ax.step(t, series.net_a, where="post", color="tab:green", lw=0.9,
                     label="grid power net over\nthe phases (< 0: export)")  # fmt: skip
        site_ax.axhline(0, color="grey", lw=0.6)
    site_ax.axhline(limit, color="red", ls="--", lw=1.3, label=f"site limit {limit:g} A")
    site_ax.set_ylabel("A per phase")
    site_ax.set_title(
        f"max excess {adherence['max_excess_a']:.1f} A, longest span above "
        f"{adherence['longest_above_s']:.0f} s (control period "
        f"{adherence['control_period_s']:g} s), {adherence['samples_above']} of "
        f"{adherence['samples']} period samples above",
        fontsize=9,
    )
    site_ax.legend(**LEGEND)
    site_ax.grid(alpha=0.3)

    # Each EVSE: the limit the agent allocated against what its EV drew.
    switching = [i for i in series.evse_a if figures["evses"][str(i)]["phase_switches"]]
    phases_ax = evse_ax.twinx() if switching else None
    for index, evse_id in enumerate(sorted(series.evse_a)):
        colour = EVSE_COLOURS[index % len(EVSE_COLOURS)]
        energy = figures["evses"][str(evse_id)]["energy_kwh"]
        _shade(evse_ax, t, series.boosted[evse_id], colour, f"EVSE {evse_id} boosted",
               alpha=0.12)  # fmt: skip
        evse_ax.step(t, _nan(series.evse_limit_a[evse_id]), where="post", color=colour,
                     ls="--", lw=1, label=f"EVSE {evse_id} limit")  # fmt: skip
        evse_ax.step(t, series.evse_a[evse_id], where="post", color=colour, lw=1.4,
                     label=f"EVSE {evse_id} current ({energy:.1f} kWh)")  # fmt: skip
        if phases_ax is not None and evse_id in switching:
            phases_ax.step(t, series.evse_phases[evse_id], where="post", color=colour,
                           lw=0.8, alpha=0.6, label=f"EVSE {evse_id} phases")  # fmt: skip
    evse_ax.set_ylabel("A per phase")
    evse_ax.set_ylim(bottom=0)
    handles, labels = evse_ax.get_legend_handles_labels()
    more_handles: list[Any] = []
    more_labels: list[str] = []
    if phases_ax is not None:
        phases_ax.set_ylim(0, 6)
        phases_ax.set_yticks([1, 3])
        phases_ax.set_ylabel("phases drawn")
        more_handles, more_labels = phases_ax.get_legend_handles_labels()
    evse_ax.legend(handles + more_handles, labels + more_labels, **LEGEND)
    evse_ax.grid(alpha=0.3)
    formatter = mdates.DateFormatter("%H:%M", tz=zone)  # type: ignore[no-untyped-call]
    evse_ax.xaxis.set_major_formatter(formatter)
    evse_ax.set_xlabel(f"local time ({zone})")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _nan(values: list[float | None]) -> list[float]:
    """None (no limit, no EV) as NaN: a gap in the line."""
    return [float("nan") if v is None else v for v in values]


def _shade(ax: Any, t: list[Any], flags: list[bool], colour: str, label: str, alpha: float) -> None:
    """Shade each stretch where `flags` holds (labelled once)."""
    start = None
    labelled = False
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            end = t[min(index, len(t) - 1)]
            ax.axvspan(t[start], end, color=colour, alpha=alpha,
                       label=None if labelled else label)  # fmt: skip
            labelled = True
            start = None
