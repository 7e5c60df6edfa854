"""Score the ensemble (and any extra ensemble: ``ensemble_raw``, ``ensemble_qm``), every deterministic
baseline, the coarse input and the truth itself against the truth. The store is read in blocks of whole days
(:func:`~downscale.evaluation.blocks.day_blocks`): a first pass over the truth alone gives the thresholds of
the Brier scores and of the GPD fits; then each block of every source is loaded, scored and reduced to
running totals (:mod:`~downscale.evaluation.block_scores`), and the record's statistics are finished from the
totals. Memory is that of one block; any block size gives the same numbers (docs/metrics.md, "How a store is
read").

For each source (:mod:`downscale.diagnostics.sources`) an ensemble is scored through its mean (MSE, MAE,
bias), its single members (``*_member``) and as a distribution (CRPS, spread–skill, Brier score); a
deterministic source's CRPS (both estimators) is its MAE. Both CRPS estimators of a K-member ensemble are
given (:mod:`downscale.diagnostics.skill`): ``crps_standard`` is the CRPS of this K-member ensemble (what a
user of these K members gets), ``crps_fair`` the K − 1 estimator of the CRPS of an infinite ensemble from the
same model (≤ standard). The rank histogram is the main ensemble's. Distributions pool all members and
times. Extreme quantiles come with a day-block bootstrap (:mod:`downscale.diagnostics.uncertainty`), heavy-rain
probabilities with a Brier score and a reliability diagram (:mod:`downscale.diagnostics.reliability`).
The truth scored against itself is the sanity row: every error metric is 0 there.

Returns a :class:`Comparison` of three Datasets:

* ``scalars``: variables over ``source`` (and ``region``, ``threshold``) — ``mse, rmse, mae, bias,
  relative_bias, crps_fair, crps_standard, mse_member, mae_member, pe, emd, spread_skill`` per region;
  ``sae, seam_ratio, coarse_imprint, mass_relative_error, mass_bias, wet_day_frequency, wet_day_intensity,
  join_ratio``; ``seam_ratio_vs_truth, coarse_imprint_vs_truth, fine_power_log_ratio,
  fine_power_log_ratio_sphere`` (:func:`_add_vs_truth`; docs/metrics-structure.md);
  ``exceedance_frequency`` per threshold; per region, for each extreme quantile tag t (``q999, q9999,
  q99999``; :func:`~downscale.diagnostics.uncertainty.extreme_scalars`): ``t``, ``pe_t``, ``pe_t_lower``,
  ``pe_t_upper``, ``t_in_truth_interval``, ``supported_t`` and, over region only, ``truth_t_lower``,
  ``truth_t_upper``; per region ``brier_q99``, ``brier_q999`` (exceedance of the truth's regional 99th /
  99.9th percentile); and ``{metric}_ratio`` = metric / the best deterministic baseline's for the
  lower-is-better ones (``LOWER_IS_BETTER`` and every ``pe_t``, ``brier_t``). Only sources of kind
  ``baseline`` (else the coarse input) are baselines, never an extra ensemble. The coordinate
  ``source_kind`` (on ``source``, in all three Datasets) says which is which.
* ``maps``: (source[, season], tile, y, x) — ``mean, bias, percent_bias, seasonal_mean, seasonal_bias,
  seasonal_percent_bias, crps_fair, wet_day_frequency, annual_max_daily`` (mm/day); coordinate ``season_days``
  (season): the days of each season in the record (0: absent).
* ``scalars`` also hold the climatology by region and period (``clim_*`` on ``climate_region``, ``period``;
  :mod:`downscale.evaluation.climate`).
* ``curves``: histograms (source, region, bin), quantiles, power spectra (``power_spectrum`` per tile
  by index wavenumber, ``sphere_power_spectrum`` by total wavenumber), temporal autocorrelation,
  diurnal cycle, dry spells, rank histogram, and GPD return levels of regional daily totals with CIs
  (source, tail_region, return_period), fitted above the truth's ``tail_quantile`` (90 % intervals: day-block
  bootstrap); NaN where a source has
  fewer than 10 days above it (``return_n_exceedances`` says how many: a smooth baseline may have none).
  Extreme quantiles (source, region, extreme_quantile, stat = value, lower, upper, se):
  ``extreme_quantile_value``, ``extreme_quantile_difference`` (minus the truth's, paired), ``extreme_pe``,
  with ``extreme_supported`` and ``extreme_n_values``. Reliability (source, region, threshold_quantile,
  probability): ``reliability_frequency``, ``reliability_weight``, and the thresholds ``brier_threshold``
  (region, threshold_quantile) in kg m-2 s-1.

Regions are those of :mod:`downscale.evaluation.regions`, histograms on
:data:`~downscale.diagnostics.histogram.DEFAULT_BINS` (the bins of training validation's tail quantiles too,
:mod:`downscale.evaluation.pooled`). :mod:`downscale.evaluation.results` writes and reads the result.

Example::

    >>> result = compare(xr.open_zarr("outputs.zarr"), CompareConfig(factor=8))
    >>> result.scalars.crps_fair_ratio.sel(source="ensemble", region="global")
    >>> write_comparison(result, "diagnostics/")       # metrics.json, maps.zarr, curves.nc
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from data_catalog.schema import PRECIPITATION
from downscale.diagnostics import (climatology, distribution, extremes, reliability, seasons, structure,
                                   uncertainty)
from downscale.diagnostics.consistency import check_window_joins, mass_ratios
from downscale.diagnostics.dims import COARSE_SPATIAL_DIMS, OUTPUT, Dims, time_step_seconds
from downscale.diagnostics.histogram import DEFAULT_BINS, LogBins, regional_histograms
from downscale.diagnostics.sphere_spectrum import DEFAULT_MAX_FRAMES
from downscale.diagnostics.sources import Grid, Source, gather_sources
from downscale.diagnostics.weights import regional_weights
from downscale.evaluation import climate
from downscale.evaluation.block_scores import BlockContext, bootstrap_groups, score_block
from downscale.evaluation.blocks import Totals, day_blocks
from downscale.evaluation.regions import CASE_STUDIES, DEFAULT_REGIONS, get_region, get_regions
from downscale.output_names import COARSE, TRUTH

LOWER_IS_BETTER = ("mse", "rmse", "mae", "crps_fair", "crps_standard", "mse_member", "mae_member", "pe", "emd", "sae")
#: Per-quantile scalars that are lower-is-better too (``pe_q999``, ``brier_q99`` …; not their bounds).
LOWER_IS_BETTER_PATTERN = re.compile(r"(pe|brier)_q\d+")
#: The quantile of the PE (STVD: the 99.999th percentile of the pooled area-weighted rates).
PE_QUANTILE = 0.99999
_FLUX, _RATIO = "kg m-2 s-1", "1"
SCALAR_UNITS = {
    "mse": f"({_FLUX})2", "mse_member": f"({_FLUX})2", "rmse": _FLUX, "mae": _FLUX, "mae_member": _FLUX,
    "bias": _FLUX, "crps_fair": _FLUX, "crps_standard": _FLUX, "pe": _FLUX, "emd": _FLUX, "wet_day_intensity": "mm/day",
    **{k: _RATIO for k in ("relative_bias", "sae", "seam_ratio", "spread_skill", "mass_relative_error",
                           "mass_bias", "join_ratio", "exceedance_frequency", "wet_day_frequency")},
}


@dataclass(frozen=True)
class CompareConfig:
    """What to compare and how. ``factor`` (fine/coarse ratio) is required: never read off shapes.

    ``ensembles``: extra ensemble variables (None: every ``{variable}_*`` on the member dims).
    ``extreme_quantiles`` are bootstrapped (``n_boot`` day-block resamples from ``seed``, also used for the
    return-level CIs) on ``extreme_bins``; ``brier_quantiles`` are the truth's quantiles that set the Brier
    thresholds."""

    factor: int
    variable: str = PRECIPITATION
    truth: str = TRUTH
    coarse: str | None = COARSE
    baselines: tuple[str, ...] | None = None
    dims: Dims = OUTPUT
    coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS
    regions: tuple[str, ...] = DEFAULT_REGIONS
    quantiles: tuple[float, ...] = distribution.DEFAULT_QUANTILES
    pe_quantile: float = PE_QUANTILE
    thresholds_mm_day: tuple[float, ...] = distribution.DEFAULT_THRESHOLDS_MM_DAY
    lags_hours: tuple[float, ...] = structure.DEFAULT_LAGS_HOURS
    bins: LogBins = DEFAULT_BINS
    window_joins: tuple[int, ...] = ()
    return_level_regions: tuple[str, ...] = CASE_STUDIES
    return_periods: tuple[float, ...] = extremes.DEFAULT_RETURN_PERIODS
    tail_quantile: float = 0.99
    n_boot: int = 200
    max_spell_days: int = 30
    ensembles: tuple[str, ...] | None = None
    extreme_quantiles: tuple[float, ...] = uncertainty.EXTREME_QUANTILES
    extreme_bins: LogBins = uncertainty.EXTREME_BINS
    brier_quantiles: tuple[float, ...] = reliability.BRIER_QUANTILES
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"CompareConfig.factor must be a positive integer, got {self.factor!r}")
        for r in (*self.regions, *self.return_level_regions):
            get_region(r)


@dataclass
class Comparison:
    """The result of :func:`compare`: computed (numpy-backed) Datasets, see the module docstring."""

    scalars: xr.Dataset
    maps: xr.Dataset
    curves: xr.Dataset
    config: CompareConfig = field(repr=False)


def _finish_extremes(ext: xr.Dataset, thresholds: xr.DataArray, cfg: CompareConfig) -> tuple[dict, xr.Dataset]:
    """Computed :func:`_extreme_metrics` of every source → (scalars, curves)."""
    boot = uncertainty.bootstrap_extremes(ext.daily_histogram, ext.n_values, cfg.extreme_quantiles, "truth",
                                          cfg.n_boot, cfg.seed)
    scalars = uncertainty.extreme_scalars(boot)
    for q in thresholds.threshold_quantile.values:
        brier = ext.brier.sel(threshold_quantile=q, drop=True)
        scalars[f"brier_{uncertainty.quantile_tag(float(q))}"] = brier.assign_attrs(
            units="1", long_name=f"Brier score of exceeding the truth's regional {q:g} quantile")
    rel = reliability.reliability_curve(ext.reliability_counts)
    curves = boot.assign(reliability_frequency=rel.frequency, reliability_weight=rel.weight,
                         brier_threshold=thresholds.assign_attrs(units="kg m-2 s-1", long_name="the truth's "
                                                                 "area-weighted pooled quantile per region"))
    return scalars, curves


def _stack(per_source: dict[str, dict[str, xr.DataArray]]) -> xr.Dataset:
    names = list(per_source)
    keys = list(dict.fromkeys(k for v in per_source.values() for k in v))
    out = {}
    for k in keys:
        parts = [per_source[n][k] for n in names if k in per_source[n]]
        have = [n for n in names if k in per_source[n]]
        out[k] = xr.concat(parts, dim="source", coords="minimal", compat="override").assign_coords(source=have)
    return xr.Dataset(out).reindex(source=names)


def _add_ratios(scalars: xr.Dataset, baselines: list[str]) -> xr.Dataset:
    if not baselines:
        return scalars
    for m in [*LOWER_IS_BETTER, *(str(k) for k in scalars.data_vars if LOWER_IS_BETTER_PATTERN.fullmatch(str(k)))]:
        if m in scalars:
            best = scalars[m].sel(source=baselines).min("source")
            scalars[f"{m}_ratio"] = (scalars[m] / best).assign_attrs(
                units="1", long_name=f"{m} / best deterministic baseline's {m}")
    return scalars


def _add_vs_truth(scalars: xr.Dataset, curves: xr.Dataset, n: int) -> xr.Dataset:
    """Structure scalars relative to the truth (per source; the truth's own row is 1 or 0):
    ``seam_ratio_vs_truth``, ``coarse_imprint_vs_truth`` (source ÷ truth) and the fine-scale power
    ``fine_power_log_ratio`` (per-tile spectrum, k ≥ n/4) and ``fine_power_log_ratio_sphere`` (sphere
    spectrum, l ≥ n): ln(band power / the truth's), :func:`~downscale.diagnostics.structure.band_power_ratio`."""
    for k in ("seam_ratio", "coarse_imprint"):
        scalars[k].attrs["units"] = "1"
        scalars[f"{k}_vs_truth"] = (scalars[k] / scalars[k].sel(source="truth", drop=True)).assign_attrs(
            units="1", long_name=f"{k} / the truth's")
    for k, spec, band in (("fine_power_log_ratio", "power_spectrum", structure.fine_band_tile(n)),
                          ("fine_power_log_ratio_sphere", "sphere_power_spectrum", structure.fine_band_sphere(n))):
        truth = curves[spec].sel(source="truth", drop=True)
        scalars[k] = structure.band_power_ratio(curves[spec], truth, *band).assign_attrs(
            long_name=f"ln(power at wavelengths <= 4 fine cells / the truth's), {spec} band {band[0]}..")
    return scalars


def _record_context(ds: xr.Dataset, sources: list[Source], grid: Grid, config: CompareConfig,
                    land_fraction: xr.DataArray | None, blocks: list[slice]) -> tuple[BlockContext, xr.DataArray]:
    """Pass 1 over the truth, block by block: its regional histograms (the Brier thresholds) and those of its
    regional daily totals (the return-level thresholds); returns the blocks' context and the histograms."""
    d = config.dims
    w_reg = regional_weights(grid.area, grid.lat, grid.lon, get_regions(config.regions))
    daily_w = (regional_weights(grid.area, grid.lat, grid.lon, get_regions(config.return_level_regions))
               if config.return_level_regions else None)
    hist = Totals()
    for b in blocks:
        truth = next(s.data for s in sources if s.kind == "truth").isel({d.time: b}).load()
        hist.add("truth", regional_histograms(truth, w_reg, config.bins))
        if daily_w is not None:
            daily = distribution.daily_totals(truth, d.time) / distribution.SECONDS_PER_DAY
            hist.add("daily", regional_histograms(daily, daily_w, config.bins))
    tail = {}
    if daily_w is not None:      # the daily histogram is binned in kg m-2 s-1; thresholds back in mm/day
        u = distribution.SECONDS_PER_DAY * distribution.histogram_quantiles(hist["daily"], [config.tail_quantile])
        tail = dict(zip(config.return_level_regions, (float(v) for v in u.squeeze("quantile").values)))
    thresholds = distribution.histogram_quantiles(hist["truth"], config.brier_quantiles).rename(
        quantile="threshold_quantile")
    days = np.unique(np.asarray(ds[d.time].dt.floor("D").values))
    n = ds.sizes[d.time]
    sphere_frames = np.unique(np.round(np.linspace(0, n - 1, min(n, DEFAULT_MAX_FRAMES))).astype(np.int64))
    context = BlockContext(config, grid, w_reg, climate.climate_weights(grid, land_fraction), thresholds, tail, days,
                           bootstrap_groups(days.size), max(s.data.sizes[d.member] for s in sources if s.ensemble),
                           sphere_frames, np.unique(ds[d.time].dt.year.values),
                           {r: get_region(r).mask(grid.lat, grid.lon) for r in config.return_level_regions})
    return context, hist["truth"]


def _lead_frames(ds: xr.Dataset, config: CompareConfig) -> int:
    """Frames a block reads before its own: the longest autocorrelation lag, 1 for window joins."""
    step = time_step_seconds(ds[config.dims.time]) / 3600.0 if ds.sizes[config.dims.time] > 1 else 1.0
    lags = [int(round(lag / step)) for lag in config.lags_hours]
    return max([*lags, 1 if config.window_joins else 0])


def _source_results(t: Totals, src: Source, ctx: BlockContext, truth_hist: xr.DataArray):
    """Scalars, maps and curves of one source from the record's totals."""
    cfg, d, k = ctx.config, ctx.config.dims, src.name
    hist = t[f"{k}/histogram"]
    s = {name: t[f"{k}/{name}"] for name in ("mse", "mae", "bias", "mse_member", "mae_member", "crps_fair",
                                             "crps_standard")}
    s["relative_bias"] = s["bias"] / t["truth/mean"]
    s["pe"] = distribution.percentile_error(hist, truth_hist, cfg.pe_quantile)
    s["emd"] = distribution.wasserstein_distance(hist, truth_hist)
    s["sae"] = t[f"{k}/sae"]
    seam, near, edge, mid = (t[f"{k}/{n}_mean_abs_step"] for n in ("seam", "interior", "coarse_edge", "mid_cell"))
    s["seam_ratio"], s["coarse_imprint"] = seam / near.where(near > 0), edge / mid.where(mid > 0)
    s["exceedance_frequency"] = t[f"{k}/exceedance_frequency"]
    s["wet_day_frequency"], s["wet_day_intensity"] = t[f"{k}/wet_day_frequency"], t[f"{k}/wet_day_intensity"]
    members = src.data.sizes.get(d.member, 1)
    s["spread_skill"] = (np.sqrt((members + 1) / members * t[f"{k}/spread"] / s["mse"]) if f"{k}/spread" in t
                         else xr.full_like(s["mse"], np.nan))
    if f"{k}/mass_mean_coarse" in t:
        mass = mass_ratios(**{n: t[f"{k}/mass_{n}"] for n in ("mean_abs_error", "mean_abs_coarse", "mean_error",
                                                                 "mean_coarse")})
        s["mass_relative_error"], s["mass_bias"] = mass["relative_error"], mass["mass_bias"]
    if cfg.window_joins:
        s["join_ratio"] = t[f"{k}/join_step"] / t[f"{k}/inside_step"]
    mean, truth_mean = t[f"{k}/map_mean"], t["truth/map_mean"]
    seasonal, truth_seasonal = t[f"{k}/map_seasonal_mean"], t["truth/map_seasonal_mean"]
    maps = {"mean": mean, "bias": climatology.bias_map(mean, truth_mean),
            "percent_bias": climatology.percent_bias_map(mean, truth_mean), "seasonal_mean": seasonal,
            "seasonal_bias": climatology.bias_map(seasonal, truth_seasonal),
            "seasonal_percent_bias": climatology.percent_bias_map(seasonal, truth_seasonal),
            "crps_fair": t[f"{k}/map_crps_fair"], "wet_day_frequency": t[f"{k}/map_wet_day_frequency"]}
    peak = xr.concat([t[f"{k}/annual_max/{y}"] for y in ctx.years], dim="year").mean("year")
    maps["annual_max_daily"] = (peak.mean(d.member) if src.ensemble else peak).assign_attrs(
        units="mm/day", long_name="annual maximum of daily precipitation, mean over years")
    spell_counts = ctx.counters[k].counts()          # (climate_region, season, length)
    spells = spell_counts[list(ctx.clim_w[climate.REGION_DIM].values).index("global")].sum(0)
    spells = np.r_[spells[:cfg.max_spell_days - 1], spells[cfg.max_spell_days - 1:].sum()]
    curves = {
        "histogram": hist,
        "quantile_value": distribution.histogram_quantiles(hist, cfg.quantiles),
        "power_spectrum": t[f"{k}/power_spectrum"],
        "sphere_power_spectrum": t[f"{k}/sphere_power_spectrum"].assign_attrs(frames=ctx.sphere_frames.size),
        "autocorrelation": structure.autocorrelation_from_sums(t[f"{k}/autocorrelation"], ctx.grid.area),
        "diurnal_cycle": structure.diurnal_from_sums(t[f"{k}/diurnal"]),
        "dry_spell_frequency": xr.DataArray(spells / spells.sum(), dims="spell_length", name="dry_spell_frequency",
                                            coords={"spell_length": np.arange(1, cfg.max_spell_days + 1)},
                                            attrs={"units": "1", "threshold_mm_day": seasons.WET_DAY_MM}),
    }
    counts = t[f"{k}/exceedance_counts"]
    ext = {"daily_histogram": t.pop(f"{k}/day_histogram"), "n_values": t[f"{k}/n_values"],
           "brier": reliability.brier_score(counts), "reliability_counts": reliability.reliability_counts(
               counts, ctx.n_members)}
    daily = {"daily_mean": xr.concat(t[f"{k}/daily_mean"], dim=d.time),
             "daily_wet": xr.concat(t[f"{k}/daily_wet"], dim=d.time),
             "dry_spells": xr.DataArray(spell_counts, dims=(climate.REGION_DIM, "season", "spell_length"),
                                        coords={climate.REGION_DIM: ctx.clim_w[climate.REGION_DIM].values,
                                                "season": list(seasons.SEASONS),
                                                "spell_length": np.arange(1, climate.MAX_SPELL_DAYS + 1)})}
    return s, maps, curves, ext, xr.Dataset(daily)


def _return_levels(t: Totals, sources: list[Source], ctx: BlockContext) -> xr.Dataset:
    """GPD return levels of the daily totals of each return-level region's cells, per source, from the
    exceedances the blocks kept."""
    cfg, d = ctx.config, ctx.config.dims
    regs = list(cfg.return_level_regions)
    n_days = ctx.day_starts.size
    years = n_days / extremes.DAYS_PER_YEAR
    blocks = {}
    for src in sources:
        for r in regs:
            pieces = t[f"{src.name}/tail/{r}"]
            exc = np.concatenate([p[0] for p in pieces])
            day = np.concatenate([p[1] for p in pieces])
            u = ctx.tail_thresholds[r]
            n_cells = int(ctx.tail_masks[r].sum())
            try:
                rl = extremes.day_block_return_levels(exc, day, n_days, u, n_cells * src.data.sizes.get(d.member, 1)
                                                      * years, cfg.return_periods, n_boot=cfg.n_boot, seed=cfg.seed)
            except ValueError:      # fewer than 10 values above the truth's threshold (e.g. a smooth baseline)
                rl = xr.Dataset({k: ("return_period", np.full(len(cfg.return_periods), np.nan))
                                 for k in ("return_level", "lower", "upper")},
                                coords={"return_period": list(cfg.return_periods)})
            rl["n_exceedances"] = exc.size
            blocks.setdefault(src.name, []).append(rl.drop_attrs())
    per_source = [xr.concat(blocks[s.name], dim="tail_region").assign_coords(tail_region=regs) for s in sources]
    out = xr.concat(per_source, dim="source").assign_coords(source=[s.name for s in sources])
    return out.rename({k: f"return_{k}" if k != "return_level" else k for k in out.data_vars}).assign_attrs(
        units="mm/day", method="GPD peaks over the truth's regional daily quantile; day-block bootstrap 90 % CI",
        tail_quantile=cfg.tail_quantile)


def compare(ds: xr.Dataset, config: CompareConfig, land_fraction: xr.DataArray | None = None, *,
            max_block_frames: int | None = None, on_block: Callable[[int, int], None] | None = None) -> Comparison:
    """Every metric for every source of the output store ``ds`` (module docstring), reading ``ds`` in blocks of
    whole days of at most ``max_block_frames`` frames (None: one block), each loaded, scored and reduced to
    running totals (:mod:`~downscale.evaluation.block_scores`): memory is that of one block, not of the
    record, and any block size gives the same numbers. ``on_block(done, total)`` is called after each block.
    ``land_fraction`` (0..1 on the fine cells) adds the land and ocean rows of the climatology
    (:mod:`~downscale.evaluation.climate`).

    Example: ``compare(xr.open_zarr("outputs.zarr"), CompareConfig(factor=8), max_block_frames=160).scalars.crps_fair``
    """
    d = config.dims
    sources, grid = gather_sources(ds, config.factor, config.variable, config.truth, config.coarse,
                                   config.baselines, d, config.coarse_spatial_dims, config.ensembles)
    n_frames = ds.sizes[d.time]
    if config.window_joins:
        check_window_joins(config.window_joins, n_frames, d.time)
    blocks = day_blocks(ds[d.time], max_block_frames or n_frames)
    ctx, truth_hist = _record_context(ds, sources, grid, config, land_fraction, blocks)
    lead = _lead_frames(ds, config)
    totals = Totals()
    for i, b in enumerate(blocks):
        before = min(lead, b.start)
        score_block(totals, ds.isel({d.time: slice(b.start - before, b.stop)}).load(), before, b.start, ctx)
        if on_block is not None:
            on_block(i + 1, len(blocks))
    scal, maps, curves, ext, clim = {}, {}, {}, {}, {}
    for src in sources:
        scal[src.name], maps[src.name], curves[src.name], ext[src.name], clim[src.name] = _source_results(
            totals, src, ctx, truth_hist)
    scalars, maps_ds, curves_ds, ext_ds = _stack(scal), _stack(maps), _stack(curves), _stack(ext)
    del ext         # the day histograms (73 bootstrap blocks × regions × bins per source) are held once
    truth_name = next(s.name for s in sources if s.kind == "truth")
    scalars = scalars.merge(climate.climate_scalars(clim, truth_name, d, config.n_boot, config.seed))
    maps_ds = maps_ds.assign_coords(season_days=seasons.season_days(ds[d.time]))
    curves_ds["rank_histogram"] = totals["rank_histogram"]
    extreme_scalars, extreme_curves = _finish_extremes(ext_ds, ctx.thresholds, config)
    curves_ds = curves_ds.merge(extreme_curves, combine_attrs="override")
    for k, v in extreme_scalars.items():
        scalars[k] = v
    if config.return_level_regions:
        curves_ds = curves_ds.merge(_return_levels(totals, sources, ctx))
    scalars["rmse"] = np.sqrt(scalars["mse"])
    for k, units in SCALAR_UNITS.items():
        if k in scalars:
            scalars[k].attrs["units"] = units
    baselines = [s.name for s in sources if s.kind == "baseline"] or [s.name for s in sources if s.kind == "coarse"]
    scalars = _add_ratios(scalars, baselines)
    scalars = _add_vs_truth(scalars, curves_ds, grid.area.sizes[d.x])
    kinds = xr.DataArray([s.kind for s in sources], dims="source", coords={"source": [s.name for s in sources]})
    scalars, maps_ds, curves_ds = (x.assign_coords(source_kind=kinds) for x in (scalars, maps_ds, curves_ds))
    for ds_ in (scalars, maps_ds, curves_ds):
        ds_.attrs.update(factor=config.factor, truth=config.truth, ensemble=config.variable,
                         note="precipitation in kg m-2 s-1 unless a variable's units say otherwise")
    return Comparison(scalars, maps_ds, curves_ds, config)
