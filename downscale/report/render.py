"""Render the validation report (one offline HTML file) from a diagnostics folder and its output store.

Everything shown is read back from ``metrics.json``, ``maps.zarr``, ``curves.nc`` and ``evaluation.json``
(:func:`downscale.evaluation.results.read_diagnostics`); from the output store only its cell corners (for the
maps) and global attributes (provenance) are read, so the report is reproducible from the folder. Nothing is
scored here (:mod:`downscale.evaluation`).

Example::

    >>> render_report("diagnostics/", "outputs.zarr", "report.html")
    PosixPath('report.html')
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.figure import Figure

from downscale.evaluation.regions import CASE_STUDIES
from downscale.evaluation.results import EVALUATION_FILE, Diagnostics, read_diagnostics
from downscale.report import climate_tables as ct
from downscale.report import figures_distribution as fd
from downscale.report import figures_maps as fm
from downscale.report import figures_structure as fs
from downscale.report import tables
from downscale.report.html import FigureBlock, Section, render_document
from downscale.report.inputs import StoreInfo, read_store_info
from downscale.report.style import png_base64, source_colors
from downscale.version import __version__


def _figure(name: str, title: str, caption: str, build: Callable[[], Figure]) -> FigureBlock:
    return FigureBlock(name, title, caption, png_base64(build()))


def _check_grid(diags: Diagnostics, store: StoreInfo, diagnostics_dir: Path) -> None:
    n = diags.maps.sizes["grid_yt"], diags.maps.sizes["grid_xt"]
    corners = store.lonb.shape
    if corners != (diags.maps.sizes["tile"], n[0] + 1, n[1] + 1):
        raise ValueError(f"diagnostics {diagnostics_dir} hold maps of {n[0]}×{n[1]} cells per tile but output store "
                         f"{store.path} has corners {corners}: render with the store that was evaluated")


def _summary_section(diags: Diagnostics) -> Section:
    targets = tables.targets_table(diags.scalars)
    met = sum(row[-1].status == "pass" for row in targets.rows)
    ev = diags.evaluation
    first, last = ev.get("period", ["?", "?"])
    judged = (f"This report judges {ct.years_judged(diags.scalars):.2f} years of one held-out member, downscaled "
              f"with {ev.get('n_members', '?')} ensemble members. " if ct.has_climatology(diags.scalars) else "")
    intro = (f"{judged}Ensemble of {ev.get('n_members', '?')} members scored against the truth over "
             f"{first} – {last} ({ev.get('n_times', '?')} times), "
             f"beside the deterministic baselines and the coarse input (factor {ev.get('factor', '?')}). "
             f"The ensemble meets {met} of {len(targets.rows)} targets. Precipitation in mm/day "
             "(1 kg m-2 s-1 = 86400 mm/day).")
    return Section("summary", "Summary", intro, [tables.summary_table(diags.scalars), targets])


def _map_sections(diags: Diagnostics, store: StoreInfo) -> list[Section]:
    maps, lonb, latb = diags.maps, store.lonb, store.latb
    annual = Section("maps", "Annual-mean maps", "Means over the whole evaluated period, drawn per cube tile from "
                     "the cell corners.", [
        _figure("annual-mean", "Mean precipitation", "Whole-period mean of the truth, the ensemble mean, each "
                "baseline and the coarse input; log colour scale in mm/day, cells under 0.1 mm/day blank.",
                lambda: fm.annual_mean_maps(maps, lonb, latb)),
        _figure("annual-bias", "Bias of the mean", "Source mean − truth mean in mm/day (green: too wet, brown: "
                "too dry).", lambda: fm.bias_maps(maps, lonb, latb)),
        _figure("annual-percent-bias", "Percent bias of the mean", "100 · (source − truth) / truth in %, blank "
                "where the truth's mean is under 0.1 mm/day; colour scale capped at ±100 %.",
                lambda: fm.bias_maps(maps, lonb, latb, percent=True)),
    ])
    seasons = fm.present_seasons(maps)
    seasonal = Section("seasonal", "Seasonal maps", (f"Seasons with data: {', '.join(seasons)}." if seasons else
                       "No season has data in this record."), [
        _figure("seasonal-mean", "Seasonal mean precipitation", f"Rows: {', '.join(seasons)}; log scale in mm/day.",
                lambda: fm.seasonal_maps(maps, lonb, latb)),
        _figure("seasonal-bias", "Seasonal bias", f"Rows: {', '.join(seasons)}; source − truth in mm/day.",
                lambda: fm.seasonal_maps(maps, lonb, latb, bias=True)),
    ] if seasons else [])
    zooms = Section("regions", "California and the Himalayas", "Whole-period means zoomed on the two case-study "
                    "regions; the dashed red box is the region the regional metrics average over.", [
        _figure(f"zoom-{r}", f"{r.capitalize()}: mean precipitation", "Log colour scale in mm/day.",
                lambda r=r: fm.zoom_maps(maps, lonb, latb, r)) for r in CASE_STUDIES])
    return [annual, seasonal, zooms, *_climate_sections(diags, store)]


def _climate_sections(diags: Diagnostics, store: StoreInfo) -> list[Section]:
    """Climatology by region and period with intervals, wet days and dry spells per season, annual maxima."""
    scalars, maps = diags.scalars, diags.maps
    if not ct.has_climatology(scalars):
        return []
    periods = ct.present_periods(scalars)
    absent = ", ".join(p for p in ("DJF", "MAM", "JJA", "SON") if p not in periods)
    intro = (f"Area means over {', '.join(map(str, scalars.climate_region.values))} for the whole record and each "
             f"season with data{f' (absent: {absent})' if absent else ''}. A bias is within the "
             "sampling spread (pass) when the truth's mean lies inside the 95 % prediction interval of one more "
             "ensemble member (the truth could be one more member), or, for a deterministic source, when the 95 % day-block "
             "bootstrap interval of its bias (5-day blocks) holds zero; hover a cell for the intervals.")
    climate = Section("climatology", "Annual and seasonal climatology by region", intro,
                      [*(ct.climate_table(scalars, p) for p in periods), ct.wet_dry_table(scalars)])
    items = []
    if "annual_max_daily" in maps:
        items.append(_figure("annual-max-daily", "Annual maximum of daily precipitation", "Largest daily total of "
                             "each calendar year at each cell (mean over years and over an ensemble's members); log "
                             "colour scale in mm/day, cells under 1 mm/day blank. One year holds one maximum per "
                             "cell: the return levels below pool a region's peaks over a threshold instead.",
                             lambda: fm.annual_max_maps(maps, store.lonb, store.latb)))
    maxima = Section("annual-maxima", "Annual maxima", "", items)
    return [climate, maxima]


def _curve_sections(diags: Diagnostics, colors: dict[str, str]) -> list[Section]:
    curves, scalars = diags.curves, diags.scalars
    distributions = Section("distributions", "Distributions", "Area-weighted, pooled over all times (and members "
                            "for the ensemble).", [
        _figure("histogram", "Precipitation-rate distribution", "Density per mm/day on log–log axes, per region; "
                "the dry fraction is in the total but not drawn.", lambda: fd.histogram_figure(curves, colors)),
        _figure("qq", "Quantile–quantile", "Each source's quantiles against the truth's from the 90th to the "
                "99.999th percentile (log axes; dots: the stored quantiles). On the dotted 1:1 line the tail is "
                "right.", lambda: fd.qq_figure(curves, colors)),
        tables.exceedance_table(scalars),
        tables.wet_day_table(scalars),
        _figure("wet-days", "Wet-day frequency and intensity", "Daily totals over 1 mm; dashed: the truth.",
                lambda: fd.wet_day_figure(scalars, colors)),
        _figure("dry-spells", "Dry-spell lengths", "Fraction of dry spells (consecutive days under 1 mm at a cell) "
                "by length; the last point pools the spells of that length or longer; spells at the record's ends are "
                "censored.", lambda: fd.dry_spell_figure(curves, colors)),
    ])
    tail_q = curves.attrs.get("tail_quantile", diags.config.get("tail_quantile", "?"))
    tail_regions = [str(r) for r in curves["tail_region"].values] if "tail_region" in curves.dims else []
    extremes = Section("extremes", "Extremes: return levels", f"Generalized Pareto fits to regional daily totals "
                       f"above the truth's {tail_q} quantile, pooled over the region's cells (and members); "
                       "shading: 90 % interval of a bootstrap over 5-day blocks of days."
                       if tail_regions else "No return-level regions were configured.", [
        _figure(f"return-levels-{r}", f"Return levels, {r}", "Return level (mm/day) against return period (years, "
                "log); sources with fewer than 10 days above the threshold have no fit and are named in the legend.",
                lambda r=r: fd.return_level_figure(curves, colors, r)) for r in tail_regions])
    structure = Section("structure", "Spatial and temporal structure", "", [
        _figure("power-spectrum", "Power spectrum", "Radial spectrum per tile, averaged over tiles and times; "
                "log–log, in (mm/day)².", lambda: fs.spectrum_figure(curves, colors)),
        _figure("autocorrelation", "Temporal autocorrelation", "Area-weighted lag correlation of the rate.",
                lambda: fs.autocorrelation_figure(curves, colors)),
        _figure("diurnal-cycle", "Diurnal cycle", "Area-weighted mean rate in local solar time.",
                lambda: fs.diurnal_figure(curves, colors)),
    ])
    calibration = Section("calibration", "Ensemble calibration", "", [
        _figure("rank-histogram", "Rank histogram", "Frequency of the truth's rank among the members; flat "
                "(dashed) when the ensemble is calibrated, U-shaped when under-dispersed.",
                lambda: fs.rank_histogram_figure(curves, colors)),
    ])
    return [distributions, extremes, _heavy_rain_section(diags, colors), structure, calibration]


def _heavy_rain_section(diags: Diagnostics, colors: dict[str, str]) -> Section:
    """Extreme quantiles with their sampling uncertainty, Brier scores and the reliability diagram."""
    curves, scalars = diags.curves, diags.scalars
    items: list = []
    if "extreme_quantile_value" in curves:
        items.append(tables.extreme_quantile_table(curves))
    for tag, label in (("q99", "99th"), ("q999", "99.9th")):
        if f"brier_{tag}" in scalars:
            items.append(tables.regional_table(scalars, f"brier_{tag}", f"Brier score of the rate exceeding the "
                                               f"truth's regional {label} percentile (lower is better)"))
    if "reliability_frequency" in curves:
        region = "global" if "global" in curves.region.values else str(curves.region.values[0])
        items.append(_figure("reliability", f"Reliability of heavy rain, {region}", "Observed frequency of the rate "
                             "exceeding the truth's percentile against the forecast probability (the fraction of "
                             "members above; 0 or 1 for a deterministic source); marker area: share of the "
                             "cells × times with that probability. On the dotted diagonal the probabilities are "
                             "reliable.", lambda: fd.reliability_figure(curves, colors, region)))
    return Section("heavy-rain", "Heavy rain: tail quantiles and probabilities", "Pooled extreme quantiles with "
                   "their sampling uncertainty (bootstrap over whole days), and the probability of exceeding the "
                   "truth's 99th and 99.9th percentiles (per region) scored by the Brier score "
                   "BS = ⟨(p − o)²⟩, area-weighted.", items)


def _provenance_section(diags: Diagnostics, store: StoreInfo, diagnostics_dir: Path, generated_at: str) -> Section:
    ev = {k: v for k, v in diags.evaluation.items() if k != "store_attrs"}
    report = {"generated_at": generated_at, "software_version": __version__,
              "diagnostics_folder": str(diagnostics_dir), "output_store": store.path}
    items = [tables.key_value_table("table-store-attrs", f"Output store {store.path}: global attributes",
                                    store.attrs),
             tables.key_value_table("table-config", "Comparison configuration (CompareConfig, from metrics.json)",
                                    diags.config),
             tables.key_value_table("table-evaluation", "Evaluation (evaluation.json)", ev),
             tables.key_value_table("table-report", "This report", report)]
    stale = {str(k): str(v) for k, v in store.attrs.items()} != diags.evaluation.get("store_attrs", {})
    intro = ("Warning: the store's attributes differ from those recorded at evaluation time."
             if stale else "Inputs, settings and software of every step.")
    return Section("provenance", "Provenance", intro, items)


def build_sections(diags: Diagnostics, store: StoreInfo, diagnostics_dir: Path, generated_at: str) -> list[Section]:
    """Every section of the report, the summary first."""
    colors = source_colors([str(s) for s in diags.scalars.source.values])
    regional = Section("regional", "Skill by region", "", [
        tables.regional_table(diags.scalars, var, label) for var, label in (
            ("crps_fair", tables.FAIR_CRPS), ("crps_standard", tables.STANDARD_CRPS),
            ("relative_bias", "Relative bias of the area-weighted mean")) if var in diags.scalars])
    return [_summary_section(diags), regional, *_map_sections(diags, store), *_curve_sections(diags, colors),
            _provenance_section(diags, store, diagnostics_dir, generated_at)]


EVALUATION_META = "downscale-evaluation"


def evaluation_id(diagnostics_dir: str | Path) -> str:
    """SHA-256 of the folder's ``evaluation.json`` (it records the store's fingerprint and the settings)."""
    return hashlib.sha256((Path(diagnostics_dir) / EVALUATION_FILE).read_bytes()).hexdigest()


def rendered_from(html_path: str | Path, diagnostics_dir: str | Path) -> bool:
    """True if the report at ``html_path`` was rendered from the diagnostics folder as it is now."""
    try:
        page = Path(html_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return f'<meta name="{EVALUATION_META}" content="{evaluation_id(diagnostics_dir)}">' in page


def render_report(diagnostics_dir: str | Path, output_store: str | Path, html_path: str | Path,
                  overwrite: bool = False) -> Path:
    """Write the report for a diagnostics folder (from ``downscale evaluate``) and its output store to
    ``html_path`` (replaced only with ``overwrite``; written to a temporary file and renamed). Returns the path.

    Example: ``render_report("diagnostics/", "outputs.zarr", "report.html")``
    """
    html_path, diagnostics_dir = Path(html_path), Path(diagnostics_dir)
    if html_path.exists() and not overwrite:
        raise FileExistsError(f"report {html_path} exists: pass --overwrite (overwrite=True) to replace it")
    diags = read_diagnostics(diagnostics_dir)
    store = read_store_info(output_store)
    _check_grid(diags, store, diagnostics_dir)
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections = build_sections(diags, store, diagnostics_dir, generated_at)
    page = render_document("Precipitation downscaling: validation report", sections,
                           f"Output store {store.path} · generated {generated_at} · fv3-downscale {__version__}",
                           meta={EVALUATION_META: evaluation_id(diagnostics_dir)})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, html_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return html_path
