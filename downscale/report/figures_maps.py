"""Map figures of the report: pure functions (maps Dataset + cell corners) → matplotlib Figure.

Every cube-sphere field is drawn tile by tile from its corner coordinates with
:func:`downscale.plots.globe.plot_cube` (antimeridian-safe) under Natural Earth coastlines (drawn as one
line collection). Means use one log colour scale in mm/day shared by all panels of a figure (cells under
0.1 mm/day are left blank); biases a diverging, symmetric scale (brown = too dry, green = too wet).

Example::

    >>> fig = annual_mean_maps(diags.maps, store.lonb, store.latb)
    >>> fig.savefig("annual.png")                                        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from downscale.evaluation.regions import get_region
from downscale.plots.globe import add_coastlines, plot_cube, zoom
from downscale.report.style import LABELS, MM_DAY, SECONDS_PER_DAY, log_ticks, panel_grid

DRY_MM_DAY = 0.1
PANEL = (4.2, 2.3)          # inches per globe panel
SMALL_PANEL = (3.0, 1.9)    # seasonal rows: one panel per source
ZOOM_PANEL = (3.6, 3.0)
BIAS_CMAP = "BrBG"
MEAN_CMAP = "YlGnBu"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above ``value``."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    k = math.floor(math.log10(value))
    return next(m * 10.0**k for m in (1, 2, 5, 10) if m * 10.0**k >= value * (1 - 1e-9))


def map_sources(maps: xr.Dataset) -> list[str]:
    """Sources in map order: truth first, then the ensemble, baselines and coarse input as stored."""
    names = [str(s) for s in maps.source.values]
    return (["truth"] if "truth" in names else []) + [s for s in names if s != "truth"]


def present_seasons(maps: xr.Dataset) -> list[str]:
    """Seasons with data in the truth's ``seasonal_mean`` (a short record holds only some)."""
    seasonal = maps["seasonal_mean"].sel(source="truth")
    return [str(s) for s in maps.season.values if bool(np.isfinite(seasonal.sel(season=s)).any())]


def mean_norm(maps: xr.Dataset) -> LogNorm:
    """Log scale in mm/day from 0.1 to a rounded 99.5th percentile of every source's mean map."""
    values = maps["mean"].values * SECONDS_PER_DAY
    finite = values[np.isfinite(values)]
    top = np.percentile(finite, 99.5) if finite.size else 1.0
    return LogNorm(vmin=DRY_MM_DAY, vmax=max(_nice_ceiling(top), 10 * DRY_MM_DAY))


def _symmetric_norm(values: np.ndarray, cap: float | None = None) -> Normalize:
    finite = np.abs(values[np.isfinite(values)])
    v = _nice_ceiling(np.percentile(finite, 98)) if finite.size else 1.0
    v = min(v, cap) if cap else v
    return Normalize(vmin=-v, vmax=v)


def _style_axes(ax, title: str, region: str | None = None) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_facecolor("0.93")
    ax.tick_params(labelsize=7)
    if region is None:
        ax.set_xticks(range(0, 361, 60))
        ax.set_yticks(range(-90, 91, 45))
    else:
        zoom(ax, region)
    ax.set_xlabel("longitude (°E)", fontsize=8)
    ax.set_ylabel("latitude (°N)", fontsize=8)


def _panels(panels: Sequence[tuple[str, np.ndarray]], lonb: np.ndarray, latb: np.ndarray, *, norm: Normalize,
            cmap: str, label: str, ncols: int = 3, mask_below: float | None = None, extend: str = "both",
            region: str | None = None, panel: tuple[float, float] = PANEL) -> Figure:
    """One map per (title, values (6, n, n)) with a shared colour bar."""
    fig, axes = panel_grid(len(panels), ncols, panel, margin=(1.0, 0.4))
    mesh = None
    for ax, (title, values) in zip(axes, panels, strict=True):
        mesh = plot_cube(ax, lonb, latb, values, norm=norm, cmap=cmap, mask_below=mask_below)[0]
        add_coastlines(ax)
        _style_axes(ax, title, region)
        if region is not None:
            _metric_box(ax, region)
    bar = fig.colorbar(mesh, ax=list(axes), label=label, extend=extend, shrink=0.9, pad=0.01)
    if isinstance(norm, LogNorm):
        ticks = log_ticks(norm.vmin, norm.vmax)
        bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
        bar.minorticks_off()
    return fig


def _metric_box(ax, region: str) -> None:
    """Outline the box the regional metrics average over (the zoom window is that box with a margin)."""
    r = get_region(region)
    ax.add_patch(Rectangle((r.lon_min, r.lat_min), r.lon_max - r.lon_min, r.lat_max - r.lat_min, fill=False,
                           edgecolor="red", linewidth=1.6, linestyle="--"))


def _label(source: str, what: str = "") -> str:
    return f"{LABELS.get(source, source)}{what}"


def annual_mean_maps(maps: xr.Dataset, lonb: np.ndarray, latb: np.ndarray) -> Figure:
    """Whole-period mean precipitation of the truth and every source (mm/day, log scale)."""
    panels = [(_label(s), maps["mean"].sel(source=s).values * SECONDS_PER_DAY) for s in map_sources(maps)]
    return _panels(panels, lonb, latb, norm=mean_norm(maps), cmap=MEAN_CMAP, label=f"mean precipitation ({MM_DAY})",
                   mask_below=DRY_MM_DAY, extend="max")


def bias_maps(maps: xr.Dataset, lonb: np.ndarray, latb: np.ndarray, percent: bool = False) -> Figure:
    """Whole-period bias against the truth of every source: mm/day, or % of the truth's mean (NaN where
    the truth's mean is under 0.1 mm/day)."""
    var, scale, units = ("percent_bias", 1.0, "%") if percent else ("bias", SECONDS_PER_DAY, MM_DAY)
    sources = [s for s in map_sources(maps) if s != "truth"]
    panels = [(_label(s, " − truth"), maps[var].sel(source=s).values * scale) for s in sources]
    norm = _symmetric_norm(np.stack([p[1] for p in panels]), cap=100.0 if percent else None)
    label = f"{'percent ' if percent else ''}bias ({units})"
    return _panels(panels, lonb, latb, norm=norm, cmap=BIAS_CMAP, label=label)


def seasonal_maps(maps: xr.Dataset, lonb: np.ndarray, latb: np.ndarray, bias: bool = False) -> Figure:
    """Seasonal means (rows: the seasons present; columns: truth and sources), or their biases."""
    seasons = present_seasons(maps)
    sources = [s for s in map_sources(maps) if not (bias and s == "truth")]
    var = "seasonal_bias" if bias else "seasonal_mean"
    panels = [(f"{season}: {_label(s, ' − truth' if bias else '')}",
               maps[var].sel(source=s, season=season).values * SECONDS_PER_DAY) for season in seasons for s in sources]
    if bias:
        norm, cmap, label, kw = (_symmetric_norm(np.stack([p[1] for p in panels])), BIAS_CMAP,
                                 f"bias ({MM_DAY})", {})
    else:
        norm, cmap, label, kw = (mean_norm(maps), MEAN_CMAP, f"mean ({MM_DAY})",
                                 {"mask_below": DRY_MM_DAY, "extend": "max"})
    return _panels(panels, lonb, latb, norm=norm, cmap=cmap, label=label, ncols=len(sources), panel=SMALL_PANEL,
                   **kw)


def zoom_maps(maps: xr.Dataset, lonb: np.ndarray, latb: np.ndarray, region: str) -> Figure:
    """Whole-period means of every source over the zoom window of a region of
    :data:`downscale.evaluation.regions.REGIONS` (:func:`downscale.plots.globe.zoom_window`), with the
    region's box dashed."""
    panels = [(_label(s), maps["mean"].sel(source=s).values * SECONDS_PER_DAY) for s in map_sources(maps)]
    return _panels(panels, lonb, latb, norm=mean_norm(maps), cmap=MEAN_CMAP,
                   label=f"mean precipitation ({MM_DAY})", mask_below=DRY_MM_DAY, extend="max", region=region,
                   panel=ZOOM_PANEL)


def annual_max_maps(maps: xr.Dataset, lonb: np.ndarray, latb: np.ndarray) -> Figure:
    """Annual maximum of daily precipitation (mm/day; mean over the record's years and an ensemble's members) of
    the truth and every source, on one log scale from 1 mm/day to a rounded 99.5th percentile."""
    panels = [(_label(s), maps["annual_max_daily"].sel(source=s).values) for s in map_sources(maps)]
    values = np.stack([p[1] for p in panels])
    top = _nice_ceiling(float(np.nanpercentile(values, 99.5))) if np.isfinite(values).any() else 10.0
    norm = LogNorm(vmin=1.0, vmax=max(top, 2.0))
    return _panels(panels, lonb, latb, norm=norm, cmap=MEAN_CMAP, label=f"annual maximum of daily precipitation "
                   f"({MM_DAY})", mask_below=1.0, extend="max")
