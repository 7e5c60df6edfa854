"""Structure and calibration figures: pure functions (curves Dataset) → matplotlib Figure.

Radial power spectra per tile (log–log, in (mm/day)²), the area-weighted temporal autocorrelation,
the diurnal cycle in local solar time, and the ensemble's rank histogram (flat when calibrated).

Example::

    >>> fig = spectrum_figure(diags.curves, source_colors(diags.curves.source.values))
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from downscale.report.style import MM_DAY, SECONDS_PER_DAY, new_figure, source_style, tidy_log_axis


def _lines(curves: xr.Dataset, var: str, dim: str, colors: dict[str, str], scale: float = 1.0, *,
           marker: str | None = None, positive_only: bool = False) -> tuple[Figure, object]:
    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for s in curves.source.values:
        da = curves[var].sel(source=s)
        x, y = da[dim].values, da.values * scale
        if positive_only:
            keep = (x > 0) & (y > 0)
            x, y = x[keep], y[keep]
        ax.plot(x, y, marker=marker, markersize=3, **source_style(str(s), colors))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


def spectrum_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Radial power spectrum per tile (mean over tiles and times), log–log; wavenumber 0 (the mean) left out."""
    fig, ax = _lines(curves, "power_spectrum", "wavenumber", colors, SECONDS_PER_DAY**2, positive_only=True)
    ax.set(xscale="log", yscale="log", title="spatial power spectrum", xlabel="wavenumber (cycles per tile width)",
           ylabel=f"power (({MM_DAY})²)")
    tidy_log_axis(ax.xaxis)
    tidy_log_axis(ax.yaxis)
    return fig


def autocorrelation_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Area-weighted temporal autocorrelation of the precipitation rate against lag."""
    fig, ax = _lines(curves, "autocorrelation", "lag", colors, marker="o")
    ax.set(title="temporal autocorrelation", xlabel="lag (hours)", ylabel="autocorrelation (1)")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    return fig


def diurnal_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Area-weighted mean rate per local solar hour."""
    fig, ax = _lines(curves, "diurnal_cycle", "local_solar_hour", colors, SECONDS_PER_DAY, marker="o")
    ax.set(title="diurnal cycle", xlabel="local solar hour (h)", ylabel=f"mean precipitation ({MM_DAY})",
           xlim=(0, 24), xticks=range(0, 25, 3))
    return fig


def rank_histogram_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Area-weighted frequency of the truth's rank among the members, with the flat (calibrated) line."""
    rank = curves.rank_histogram
    k = rank.sizes["rank"]
    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    ax.bar(rank["rank"].values, rank.values, color=colors.get("ensemble", "tab:blue"), width=0.8,
           label="ensemble")
    ax.axhline(1.0 / k, color="black", linestyle="--", linewidth=1.2, label=f"flat: 1/{k}")
    ax.set(title=f"rank histogram ({k - 1} members)", xlabel="rank of the truth among the members",
           ylabel="frequency (area-weighted)", xticks=np.arange(k))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
