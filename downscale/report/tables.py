"""The report's tables as plain data (:class:`Table` of :class:`Cell`), built from the scalar metrics.

Values are shown in readable units (precipitation in mm/day, fractions in %). The validation targets
(:data:`TARGETS`) are checked on the ensemble only — they are what the ensemble must achieve relative to
the best deterministic baseline (``{metric}_ratio`` = metric / that baseline's; lower is better) — and
its cells are marked ``pass`` or ``miss``.

Example::

    >>> table = summary_table(diagnostics.scalars)
    >>> [c.status for c in table.rows[1]]      # CRPS ratio row: label, units, target, ensemble, …
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from downscale.report.style import to_display

SUMMARY_REGION = "global"


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional ``pass``/``miss`` status and tooltip."""

    text: str
    status: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Table:
    """A captioned table: ``header`` names the columns, each row has one :class:`Cell` per column."""

    id: str
    caption: str
    header: list[str]
    rows: list[list[Cell]]

    def to_markdown(self) -> str:
        """The table as GitHub markdown (cells with a status show it, e.g. ``0.74 (pass)``)."""
        def text(c: Cell) -> str:
            return (f"{c.text} ({c.status})" if c.status and c.status != c.text else c.text).replace("|", "\\|")
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(text(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A validation target on one scalar: its text and the check of a value (in the stored units)."""

    text: str
    check: Callable[[float], bool]


TARGETS: dict[str, Target] = {
    "crps_ratio": Target("≤ 0.85", lambda v: v <= 0.85),
    "pe_ratio": Target("≤ 0.5", lambda v: v <= 0.5),
    "emd_ratio": Target("≤ 0.5", lambda v: v <= 0.5),
    "sae_ratio": Target("≤ 0.7", lambda v: v <= 0.7),
    "spread_skill": Target("0.8 – 1.2", lambda v: 0.8 <= v <= 1.2),
    "relative_bias": Target("|·| ≤ 5 %", lambda v: abs(v) <= 0.05),
}

#: Rows of the summary table: (scalar, label). Fractions (units "1") of these are shown in %.
SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("crps", "CRPS"),
    ("crps_ratio", "CRPS / best baseline"),
    ("mae", "MAE of the ensemble mean"),
    ("rmse", "RMSE of the ensemble mean"),
    ("pe", "PE: |Δ 99.999th percentile|"),
    ("pe_ratio", "PE / best baseline"),
    ("emd", "EMD (Wasserstein-1)"),
    ("emd_ratio", "EMD / best baseline"),
    ("sae", "SAE (spatial autocorrelation error)"),
    ("sae_ratio", "SAE / best baseline"),
    ("spread_skill", "spread–skill ratio"),
    ("relative_bias", "relative bias of the area-weighted mean"),
    ("seam_ratio", "seam ratio (tile-edge / interior jumps)"),
    ("mass_relative_error", "mass consistency: relative error of coarse block sums"),
    ("join_ratio", "window-join ratio (jumps at video-window joins / elsewhere)"),
)
PERCENT = ("relative_bias", "mass_relative_error")


def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant figures; NaN as an em dash."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def _value(scalars: xr.Dataset, var: str, source: str, region: str = SUMMARY_REGION) -> float:
    da = scalars[var].sel(source=source)
    if "region" in da.dims:
        da = da.sel(region=region)
    return float(da)


def _display(scalars: xr.Dataset, var: str) -> tuple[float, str]:
    """The factor turning stored values into displayed ones, and the displayed units."""
    units = scalars[var].attrs.get("units", "")
    if var in PERCENT:
        return 100.0, "%"
    factor, shown = to_display(1.0, units)
    return float(factor), ("1" if var.endswith("_ratio") else shown)


def scored_sources(scalars: xr.Dataset) -> list[str]:
    """Every source but the truth (which scores 0 against itself), in the stored order."""
    return [str(s) for s in scalars.source.values if s != "truth"]


def summary_table(scalars: xr.Dataset) -> Table:
    """Headline metrics (global region) per source, with units and the targets checked on the ensemble."""
    sources = scored_sources(scalars)
    rows = []
    for var, label in SUMMARY_ROWS:
        if var not in scalars:
            continue
        factor, units = _display(scalars, var)
        target = TARGETS.get(var)
        row = [Cell(label, title=var), Cell(units), Cell(target.text if target else "")]
        for s in sources:
            v = _value(scalars, var, s)
            status = None
            if target and s == "ensemble" and math.isfinite(v):
                status = "pass" if target.check(v) else "miss"
            row.append(Cell(fmt(v * factor), status))
        rows.append(row)
    return Table("table-summary", "Headline metrics over the globe (area-weighted). Ratios are to the best "
                 "deterministic baseline (lower is better); targets are checked on the ensemble: pass / miss.",
                 ["metric", "units", "target", *sources], rows)


def targets_table(scalars: xr.Dataset) -> Table:
    """One row per target: the ensemble's value and pass/miss (a missing or NaN value is not a pass)."""
    rows = []
    labels = dict(SUMMARY_ROWS)
    for var, target in TARGETS.items():
        v = _value(scalars, var, "ensemble") if var in scalars else math.nan
        factor, units = _display(scalars, var) if var in scalars else (1.0, "")
        status = ("pass" if target.check(v) else "miss") if math.isfinite(v) else "miss"
        rows.append([Cell(labels.get(var, var)), Cell(target.text), Cell(fmt(v * factor) + (f" {units}" if units
                     not in ("", "1") else "")), Cell(status, status)])
    return Table("table-targets", "Validation targets for the ensemble (global region).",
                 ["target metric", "target", "ensemble", "result"], rows)


def regional_table(scalars: xr.Dataset, var: str, label: str) -> Table:
    """``var`` per region (rows) and source (columns), with its ratio to the best baseline when stored."""
    sources = scored_sources(scalars)
    factor, units = _display(scalars, var)
    ratio = f"{var}_ratio" if f"{var}_ratio" in scalars else None
    rows = []
    for region in scalars.region.values:
        row = [Cell(str(region))]
        for s in sources:
            text = fmt(_value(scalars, var, s, str(region)) * factor)
            if ratio:
                text += f" (×{fmt(_value(scalars, ratio, s, str(region)), 2)})"
            row.append(Cell(text))
        rows.append(row)
    note = " In brackets: ratio to the best deterministic baseline." if ratio else ""
    return Table(f"table-region-{var}", f"{label} by region, in {units}.{note}", ["region", *sources], rows)


def exceedance_table(scalars: xr.Dataset) -> Table:
    """Area- and time-weighted frequency of rates above each threshold, in %, with the ratio to the truth's."""
    freq = scalars["exceedance_frequency"]
    truth = freq.sel(source="truth") if "truth" in freq.source else None
    rows = []
    for s in freq.source.values:
        row = [Cell(str(s))]
        for thr in freq.threshold.values:
            v = float(freq.sel(source=s, threshold=thr))
            text = fmt(100.0 * v)
            if truth is not None and s != "truth":
                t = float(truth.sel(threshold=thr))
                text += f" (×{fmt(v / t, 2)})" if t > 0 else ""
            row.append(Cell(text))
        rows.append(row)
    return Table("table-exceedance", "Exceedance frequency: % of area × time with a rate above the threshold; "
                 "in brackets the ratio to the truth's frequency.",
                 ["source", *[f"> {fmt(float(t))} mm/day" for t in freq.threshold.values]], rows)


def wet_day_table(scalars: xr.Dataset) -> Table:
    """Wet-day (daily total > 1 mm) frequency in % and intensity (mean wet-day total) in mm/day."""
    rows = [[Cell(str(s)), Cell(fmt(100.0 * float(scalars.wet_day_frequency.sel(source=s)))),
             Cell(fmt(float(scalars.wet_day_intensity.sel(source=s))))] for s in scalars.source.values]
    return Table("table-wet-days", "Wet days (daily total > 1 mm), area-weighted.",
                 ["source", "wet-day frequency (%)", "wet-day intensity (mm/day)"], rows)


def key_value_table(table_id: str, caption: str, items: Mapping[str, object] | Sequence[tuple[str, object]]) -> Table:
    """A two-column table of names and values (provenance)."""
    pairs = items.items() if isinstance(items, Mapping) else items
    rows = [[Cell(str(k)), Cell(_plain(v))] for k, v in pairs]
    return Table(table_id, caption, ["name", "value"], rows)


def _plain(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, (float, np.floating)):
        return fmt(float(value), 6)
    return "—" if value is None else str(value)
