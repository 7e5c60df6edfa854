"""The report's tables as plain data (:class:`Table` of :class:`Cell`), built from the scalar metrics.

Values are shown in readable units (precipitation in mm/day, fractions in %). The validation targets
(:data:`downscale.evaluation.targets.TARGETS`) are checked each on its source; checked cells are marked
``pass`` or ``miss``. Every source but the truth is a column, extra ensembles included.

Example::

    >>> table = summary_table(diagnostics.scalars)
    >>> [c.status for c in table.rows[1]]      # fair CRPS ratio row: label, units, target, ensemble, …
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from downscale.evaluation.targets import TARGETS, target_source
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


#: Rows of the summary table: (scalar, label). Fractions (units "1") of these are shown in %.
FAIR_CRPS = "fair CRPS (K−1 estimator, estimates an infinite ensemble)"
STANDARD_CRPS = "standard CRPS (this K-member ensemble)"
SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("crps_fair", FAIR_CRPS),
    ("crps_fair_ratio", "fair CRPS / best baseline"),
    ("crps_standard", STANDARD_CRPS),
    ("crps_standard_ratio", "standard CRPS / best baseline"),
    ("mae", "MAE of the ensemble mean"),
    ("rmse", "RMSE of the ensemble mean"),
    ("pe", "PE: |Δ 99.999th percentile|"),
    ("pe_ratio", "PE / best baseline"),
    ("pe_q999", "PE at the 99.9th percentile"),
    ("pe_q9999", "PE at the 99.99th percentile"),
    ("brier_q99", "Brier score: rate above the truth's 99th percentile"),
    ("brier_q99_ratio", "Brier score (99th) / best baseline"),
    ("brier_q999", "Brier score: rate above the truth's 99.9th percentile"),
    ("brier_q999_ratio", "Brier score (99.9th) / best baseline"),
    ("emd", "EMD (Wasserstein-1)"),
    ("emd_ratio", "EMD / best baseline"),
    ("sae", "SAE (spatial autocorrelation error)"),
    ("sae_ratio", "SAE / best baseline"),
    ("spread_skill", "spread–skill ratio"),
    ("relative_bias", "relative bias of the area-weighted mean"),
    ("seam_ratio", "seam ratio (tile-edge / nearest coarse-cell-edge jumps)"),
    ("seam_ratio_vs_truth", "seam ratio / the truth's"),
    ("coarse_imprint", "coarse-cell imprint (coarse-cell-edge / mid-cell jumps)"),
    ("coarse_imprint_vs_truth", "coarse-cell imprint / the truth's"),
    ("fine_power_log_ratio", "fine-scale power k ≥ n/4, ln ratio to the truth (per tile)"),
    ("fine_power_log_ratio_sphere", "fine-scale power, ln ratio to the truth (sphere)"),
    ("mass_relative_error", "mass consistency: relative error of coarse block sums"),
    ("join_ratio", "window-join ratio (jumps at video-window joins / elsewhere)"),
)
PERCENT = ("relative_bias", "mass_relative_error")
#: The summary row telling whether each source's extreme quantiles lie inside the truth's bootstrap interval.
INSIDE_TAGS, INSIDE_LABEL = ("q999", "q9999"), "q99.9 / q99.99 inside the truth's 95 % interval"


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
            if target and s == target_source(scalars, target) and math.isfinite(v):
                status = "pass" if target.check(v) else "miss"
            row.append(Cell(fmt(v * factor), status))
        rows.append(row)
    if all(f"{t}_in_truth_interval" in scalars for t in INSIDE_TAGS):
        rows.append([Cell(INSIDE_LABEL, title=", ".join(f"{t}_in_truth_interval" for t in INSIDE_TAGS)), Cell(""),
                     Cell("")] + [Cell(" / ".join(_inside(scalars, t, s) for t in INSIDE_TAGS)) for s in sources])
    return Table("table-summary", "Headline metrics over the globe (area-weighted). Ratios are to the best "
                 "deterministic baseline (lower is better); targets are checked on the ensemble (the area-mean "
                 "bias on the raw ensemble: the corrected one's is zero by construction): pass / miss. "
                 f"CRPS: the {FAIR_CRPS} and the {STANDARD_CRPS}; for a deterministic source both are its MAE. "
                 "Inside the truth's interval: the source's pooled quantile lies in the day-block bootstrap 95 % "
                 "interval of the truth's (n/s: the truth has fewer than 10 expected values above it).",
                 ["metric", "units", "target", *sources], rows)


def _inside(scalars: xr.Dataset, tag: str, source: str) -> str:
    """``yes`` / ``no`` for ``{tag}_in_truth_interval``, ``n/s`` appended where the truth does not support it."""
    text = "yes" if _value(scalars, f"{tag}_in_truth_interval", source) == 1 else "no"
    support = f"supported_{tag}"
    if support in scalars and "truth" in scalars.source and _value(scalars, support, "truth") != 1:
        text += " (n/s)"
    return text


def targets_table(scalars: xr.Dataset) -> Table:
    """One row per target: its source's value and pass/miss (a missing or NaN value is not a pass)."""
    rows = []
    labels = dict(SUMMARY_ROWS)
    for var, target in TARGETS.items():
        source = target_source(scalars, target)
        v = _value(scalars, var, source) if var in scalars else math.nan
        factor, units = _display(scalars, var) if var in scalars else (1.0, "")
        status = ("pass" if target.check(v) else "miss") if math.isfinite(v) else "miss"
        label = labels.get(var, var) + ("" if source == "ensemble" else f" ({source})")
        rows.append([Cell(label), Cell(target.text), Cell(fmt(v * factor) + (f" {units}" if units
                     not in ("", "1") else "")), Cell(status, status)])
    return Table("table-targets", "Validation targets (global region), each on the source it names (default: "
                 "the mass-corrected ensemble).", ["target metric", "target", "value", "result"], rows)


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
    shown = "dimensionless" if units == "1" else f"in {units}"
    return Table(f"table-region-{var}", f"{label} by region, {shown}.{note}", ["region", *sources], rows)


def _interval(values: xr.DataArray, factor: float) -> str:
    """``value [lower, upper]`` of a ``stat`` array, scaled."""
    v = {str(k): float(values.sel(stat=k)) * factor for k in ("value", "lower", "upper")}
    return f"{fmt(v['value'])} [{fmt(v['lower'])}, {fmt(v['upper'])}]"


def extreme_quantile_table(curves: xr.Dataset, truth: str = "truth") -> Table:
    """Per region and extreme quantile: the truth's quantile with its day-block bootstrap 95 % interval and
    standard error, and each source's PE with its paired interval, in mm/day; ``n/s`` marks a quantile the
    truth or the source does not support (fewer than 10 expected values above it)."""
    value, pe, ok = curves.extreme_quantile_value, curves.extreme_pe, curves.extreme_supported
    factor, units = to_display(1.0, value.attrs.get("units", "kg m-2 s-1"))
    sources = [s for s in scored_sources(curves) if s in pe.source]
    rows, unsupported = [], []
    for region in value.region.values:
        for q in value.extreme_quantile.values:
            at = {"region": region, "extreme_quantile": q}
            t = value.sel(source=truth, **at)
            t_ok = bool(ok.sel(source=truth, **at))
            row = [Cell(str(region)), Cell(f"{100 * float(q):.6g}"),
                   Cell(_interval(t, factor) + f" ± {fmt(float(t.sel(stat='se')) * factor, 2)}"
                        + ("" if t_ok else " (n/s)"))]
            for s in sources:
                both = t_ok and bool(ok.sel(source=s, **at))
                row.append(Cell(_interval(pe.sel(source=s, **at), factor) + ("" if both else " (n/s)")))
            rows.append(row)
            if not t_ok:
                unsupported.append(f"{region} {100 * float(q):.6g}")
    n_boot = value.attrs.get("n_boot", "?")
    note = (f" Not supported by the truth's sample: {', '.join(unsupported)}; there the numbers rest on fewer "
            "than 10 values and say little." if unsupported else "")
    return Table("table-extreme-quantiles", f"Extreme quantiles (percentile) of the pooled area-weighted rate, in "
                 f"{units}: the truth's value [95 % interval] ± standard error, and each source's PE = |Δ quantile| "
                 f"[95 % interval]. Intervals: bootstrap over whole days ({n_boot} resamples, the same days for "
                 "every source, so the PE interval is that of the paired difference). n/s: not supported, fewer "
                 f"than 10 expected values above the quantile.{note}",
                 ["region", "percentile", f"truth ({units})", *[f"PE {s}" for s in sources]], rows)


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
