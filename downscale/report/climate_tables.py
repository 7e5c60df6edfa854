"""The report's climatology tables: area means by region and period with their bias and intervals, and wet days
and dry spells per season — rendered from the ``clim_*`` scalars of :mod:`downscale.evaluation.climate`.

A cell of :func:`climate_table` reads ``2.87 (+4.1 %)``: the source's area mean (mm/day) and its bias in % of the
truth's. It is marked ``pass`` when the bias is within the sampling spread — for an ensemble, the truth's mean
lies inside the 95 % prediction interval of one more member's mean; for a deterministic source, the day-block bootstrap interval of the
bias holds 0 — and ``miss`` otherwise; the tooltip gives the intervals.

Example::

    >>> climate_table(diags.scalars, "JJA").to_markdown()
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from downscale.report.tables import Cell, Table, fmt

PERIOD_LABELS = {"annual": "whole record", "DJF": "DJF", "MAM": "MAM", "JJA": "JJA", "SON": "SON"}


def has_climatology(scalars: xr.Dataset) -> bool:
    return "clim_mean" in scalars


def present_periods(scalars: xr.Dataset) -> list[str]:
    """The periods with at least one day in the record (absent seasons are left out)."""
    return [str(p) for p, n in zip(scalars.period.values, scalars.period_days.values, strict=True) if n > 0]


def years_judged(scalars: xr.Dataset) -> float:
    """Length of the evaluated record in years (days / 365.25)."""
    return float(scalars.period_days.sel(period="annual")) / 365.25


def _ordered_sources(scalars: xr.Dataset) -> list[str]:
    names = [str(s) for s in scalars.source.values]
    return (["truth"] if "truth" in names else []) + [s for s in names if s != "truth"]


def _cell(scalars: xr.Dataset, source: str, region: str, period: str) -> Cell:
    v = {k: float(scalars[k].sel(source=source, climate_region=region, period=period))
         for k in ("clim_mean", "clim_percent_bias", "clim_bias", "clim_bias_lower", "clim_bias_upper",
                   "clim_member_lower", "clim_member_upper", "clim_within_spread", "clim_bias_significant")}
    if source == "truth":
        return Cell(fmt(v["clim_mean"]))
    pct = v["clim_percent_bias"]
    text = f"{fmt(v['clim_mean'])} ({pct:+.1f} %)" if math.isfinite(pct) else fmt(v["clim_mean"])
    title = (f"bias {fmt(v['clim_bias'])} mm/day, 95 % day-block interval {fmt(v['clim_bias_lower'])} … "
             f"{fmt(v['clim_bias_upper'])}")
    if math.isfinite(v["clim_within_spread"]):
        title += f"; one more member, 95 %: {fmt(v['clim_member_lower'])} … {fmt(v['clim_member_upper'])} mm/day"
        ok = v["clim_within_spread"] == 1
    elif math.isfinite(v["clim_bias_significant"]):
        ok = v["clim_bias_significant"] == 0
    else:
        return Cell(text, None, title)
    return Cell(text, "pass" if ok else "miss", title)


def climate_table(scalars: xr.Dataset, period: str) -> Table:
    """Area means (mm/day) and percent bias of every source by region over ``period``; bias within the
    sampling spread marked ``pass`` (module docstring)."""
    regions = [str(r) for r in scalars.climate_region.values]
    days = int(scalars.period_days.sel(period=period))
    rows = [[Cell(s), *(_cell(scalars, s, r, period) for r in regions)] for s in _ordered_sources(scalars)]
    return Table(f"table-climate-{period.lower()}",
                 f"Area-mean precipitation, {PERIOD_LABELS[period]} ({days} days), mm/day (bias in % of the truth; "
                 "pass: within the sampling spread)", ["source", *regions], rows)


def wet_dry_table(scalars: xr.Dataset, region: str = "global") -> Table:
    """Per period: wet-day frequency (%), mean dry-spell length (days) and the share of dry spells of ≥ 10
    days (%) of every source over ``region``."""
    periods = present_periods(scalars)

    def cell(source: str, period: str) -> Cell:
        sel = {"source": source, "climate_region": region, "period": period}
        wet, spell, long = (float(scalars[k].sel(sel)) for k in (
            "clim_wet_day_frequency", "clim_mean_dry_spell", "clim_long_dry_spells"))
        return Cell(f"{100 * wet:.1f} % · {fmt(spell)} d · {100 * long:.1f} %" if np.isfinite(wet) else "—")

    rows = [[Cell(s), *(cell(s, p) for p in periods)] for s in _ordered_sources(scalars)]
    return Table("table-wet-dry-seasons", f"Wet days and dry spells, {region}: wet-day frequency (days over 1 mm) · "
                 "mean dry-spell length · share of dry spells of 10 days or more (a spell belongs to the season of "
                 "its first day)", ["source", *(PERIOD_LABELS[p] for p in periods)], rows)
