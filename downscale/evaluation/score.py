"""Score the ensemble (and any extra ensemble: ``ensemble_raw``, ``ensemble_qm``), every deterministic
baseline, the coarse input and the truth itself against the truth. Streams over the truth first (its
histograms: the thresholds of the Brier scores and of the GPD fits), then one ``dask.compute`` of every
metric of every source, then one pass that keeps only the regional daily totals above the truth's tail
threshold for the GPD fits.

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
from dataclasses import dataclass, field

import dask
import dask.array
import numpy as np
import xarray as xr

from downscale.diagnostics import (climatology, consistency, distribution, extremes, reliability, seasons, skill,
                                   structure, uncertainty)
from downscale.diagnostics.dims import OUTPUT, Dims
from downscale.diagnostics.histogram import DEFAULT_BINS, LogBins, regional_histograms
from downscale.diagnostics.sources import COARSE_SPATIAL_DIMS, Grid, Source, coarse_input, gather_sources
from downscale.diagnostics.weights import regional_weights, weighted_mean, weighted_sum
from downscale.evaluation import climate
from downscale.evaluation.regions import CASE_STUDIES, DEFAULT_REGIONS, get_region, get_regions

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
    variable: str = "PRATEsfc"
    truth: str = "PRATEsfc_truth"
    coarse: str | None = "PRATEsfc_coarse"
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


def _point(src: Source, dims: Dims) -> xr.DataArray:
    """The point forecast of a source: the ensemble mean, or the source itself."""
    return src.data.mean(dims.member) if src.ensemble else src.data


def _source_metrics(src: Source, truth: xr.DataArray, grid: Grid, w_reg: xr.DataArray, cfg: CompareConfig,
                    coarse: xr.DataArray | None, truth_hist: xr.DataArray):
    """Lazy scalars, maps and curves of one source."""
    d, x = cfg.dims, src.data
    point = _point(src, d)
    hist = regional_histograms(x, w_reg, cfg.bins)
    crps_fair, crps_standard = (skill.crps_fair_and_standard(x, truth, d.member) if src.ensemble
                                else (abs(x - truth),) * 2)
    daily = distribution.daily_totals(x, d.time)
    s = {
        "mse": skill.mse(point, truth, w_reg, list(point.dims)),
        "mae": skill.mae(point, truth, w_reg, list(point.dims)),
        "bias": skill.bias(point, truth, w_reg, list(point.dims)),
        "relative_bias": skill.bias(point, truth, w_reg, list(point.dims))
        / weighted_mean(truth, w_reg, list(truth.dims)),
        "mse_member": skill.mse(x, truth, w_reg, list(x.dims)),
        "mae_member": skill.mae(x, truth, w_reg, list(x.dims)),
        "crps_fair": weighted_mean(crps_fair, w_reg, list(crps_fair.dims)),
        "crps_standard": weighted_mean(crps_standard, w_reg, list(crps_standard.dims)),
        "pe": distribution.percentile_error(hist, truth_hist, cfg.pe_quantile),
        "emd": distribution.wasserstein_distance(hist, truth_hist),
        "sae": structure.spatial_autocorrelation_error(x, truth, d.spatial),
        **consistency.seam_statistics(x, d.spatial, cfg.factor)[["seam_ratio", "coarse_imprint"]].data_vars,
        "exceedance_frequency": distribution.exceedance_frequency(x, grid.area, cfg.thresholds_mm_day),
        **distribution.wet_day_statistics(daily, grid.area).data_vars,
    }
    s["spread_skill"] = (skill.spread_skill_ratio(x, truth, w_reg, d.member, list(truth.dims)) if src.ensemble
                         and x.sizes[d.member] > 1 else xr.full_like(s["mse"], np.nan))
    if coarse is not None:
        mass = consistency.mass_consistency(x, coarse, grid.area, cfg.factor, d.spatial, cfg.coarse_spatial_dims)
        s["mass_relative_error"], s["mass_bias"] = mass["relative_error"], mass["mass_bias"]
    if cfg.window_joins:
        s["join_ratio"] = consistency.window_join_statistics(x, grid.area, cfg.window_joins, d.time)["join_ratio"]
    clim = climatology.climatology_maps(point, truth, d.time)
    maps = {k: clim[k] for k in ("mean", "bias", "percent_bias", "seasonal_mean", "seasonal_bias",
                                 "seasonal_percent_bias")}
    maps["crps_fair"] = crps_fair.mean(d.time)
    wet = distribution.wet_day_frequency(daily, time_dim=d.time)
    maps["wet_day_frequency"] = wet.mean(d.member) if src.ensemble else wet
    curves = {
        "histogram": hist,
        "quantile_value": distribution.histogram_quantiles(hist, cfg.quantiles),
        "power_spectrum": structure.power_spectrum(x, d.spatial),
        "sphere_power_spectrum": structure.sphere_power_spectrum(x, grid.lat, grid.lon, grid.area, d.spatial,
                                                                 time_dim=d.time, member_dim=d.member),
        "autocorrelation": structure.temporal_autocorrelation(x, grid.area, cfg.lags_hours, d.time),
        "diurnal_cycle": structure.diurnal_cycle(x, grid.area, grid.lon, time_dim=d.time),
        "dry_spell_frequency": distribution.dry_spell_distribution(daily, grid.area, max_length=cfg.max_spell_days,
                                                                   time_dim=d.time),
    }
    return s, maps, curves


def _extreme_metrics(src: Source, truth: xr.DataArray, w_reg: xr.DataArray, thresholds: xr.DataArray,
                     n_members: int, cfg: CompareConfig) -> dict[str, xr.DataArray]:
    """Lazy inputs of the extreme-quantile bootstrap (daily histograms, values pooled) and the Brier
    scores and reliability counts of one source (``thresholds (region, threshold_quantile)``, numbers)."""
    d, x = cfg.dims, src.data
    counts = reliability.exceedance_counts(x, truth, thresholds, w_reg, d.member)
    return {"daily_histogram": uncertainty.daily_histograms(x, w_reg, cfg.extreme_bins, d.time),
            "n_values": weighted_sum(x.notnull(), (w_reg > 0).astype(np.float64), list(x.dims)),
            "brier": reliability.brier_score(counts),
            "reliability_counts": reliability.reliability_counts(counts, n_members)}


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


def _return_levels(sources: list[Source], grid: Grid, truth_hist_daily: xr.DataArray, cfg: CompareConfig) -> xr.Dataset:
    """GPD return levels of regional daily totals per source; one compute for all exceedances."""
    d = cfg.dims
    regs = list(cfg.return_level_regions)
    # the daily histogram is binned in kg m-2 s-1 (the LogBins range); thresholds back in mm/day
    thresholds = distribution.SECONDS_PER_DAY * distribution.histogram_quantiles(
        truth_hist_daily, [cfg.tail_quantile]).squeeze("quantile").values
    lazy, meta = [], []
    for src in sources:
        daily = distribution.daily_totals(src.data, d.time)
        years = extremes.record_years(daily[d.time])
        n_members = src.data.sizes.get(d.member, 1)
        n_days = daily.sizes[d.time]
        shape = [1] * daily.ndim
        shape[daily.get_axis_num(d.time)] = n_days
        for i, r in enumerate(regs):
            mask = get_region(r).mask(grid.lat, grid.lon)
            u = float(thresholds[i])
            data = daily.where(mask).data
            day = np.arange(n_days).reshape(shape)
            day_chunks = tuple(c if n > 1 else (1,) for c, n in zip(data.chunks, shape)) \
                if isinstance(data, dask.array.Array) else None
            day = (dask.array.broadcast_to(dask.array.from_array(day, chunks=day_chunks), data.shape,
                                           chunks=data.chunks)
                   if isinstance(data, dask.array.Array) else np.broadcast_to(day, data.shape))
            above = data > u
            lazy.append((data[above], day[above]))
            meta.append((src.name, r, u, int(mask.sum()) * n_members * years, n_days))
    values = dask.compute(*lazy)
    blocks = {}
    for (name, r, u, series_years, n_days), (exc, day) in zip(meta, values):
        exc = np.asarray(exc)
        try:
            rl = extremes.day_block_return_levels(exc, np.asarray(day), n_days, u, series_years, cfg.return_periods,
                                                  n_boot=cfg.n_boot, seed=cfg.seed)
        except ValueError:      # fewer than 10 values above the truth's threshold (e.g. a smooth baseline)
            rl = xr.Dataset({k: ("return_period", np.full(len(cfg.return_periods), np.nan))
                             for k in ("return_level", "lower", "upper")},
                            coords={"return_period": list(cfg.return_periods)})
        rl["n_exceedances"] = exc.size
        blocks.setdefault(name, []).append(rl.drop_attrs())
    per_source = [xr.concat(blocks[s.name], dim="tail_region").assign_coords(tail_region=regs) for s in sources]
    out = xr.concat(per_source, dim="source").assign_coords(source=[s.name for s in sources])
    return out.rename({k: f"return_{k}" if k != "return_level" else k for k in out.data_vars}).assign_attrs(
        units="mm/day", method="GPD peaks over the truth's regional daily quantile; day-block bootstrap 90 % CI",
        tail_quantile=cfg.tail_quantile)


def compare(ds: xr.Dataset, config: CompareConfig, land_fraction: xr.DataArray | None = None) -> Comparison:
    """Every metric for every source of the output store ``ds`` (module docstring). Computes. ``land_fraction``
    (0..1 on the fine cells) adds the land and ocean rows of the climatology (:mod:`~downscale.evaluation.climate`).

    Example: ``compare(xr.open_zarr("outputs.zarr"), CompareConfig(factor=8)).scalars.crps_fair``
    """
    d = config.dims
    sources, grid = gather_sources(ds, config.factor, config.variable, config.truth, config.coarse,
                                   config.baselines, d, config.coarse_spatial_dims, config.ensembles)
    truth = next(s.data for s in sources if s.kind == "truth")
    coarse = coarse_input(ds, config.coarse)
    w_reg = regional_weights(grid.area, grid.lat, grid.lon, get_regions(config.regions))
    truth_hist = regional_histograms(truth, w_reg, config.bins)
    truth_hist_daily = None                      # of the regional daily totals (in kg m-2 s-1), for GPD thresholds
    if config.return_level_regions:
        daily_w = regional_weights(grid.area, grid.lat, grid.lon, get_regions(config.return_level_regions))
        truth_hist_daily = regional_histograms(distribution.daily_totals(truth, d.time)
                                               / distribution.SECONDS_PER_DAY, daily_w, config.bins)
    truth_hist, truth_hist_daily = dask.compute(truth_hist, truth_hist_daily)     # the truth first: thresholds
    thresholds = distribution.histogram_quantiles(truth_hist, config.brier_quantiles).rename(
        quantile="threshold_quantile")
    n_members = max(s.data.sizes[d.member] for s in sources if s.ensemble)
    scal, maps, curves, ext, clim = {}, {}, {}, {}, {}
    clim_w = climate.climate_weights(grid, land_fraction)
    for src in sources:
        scal[src.name], maps[src.name], curves[src.name] = _source_metrics(src, truth, grid, w_reg, config, coarse,
                                                                           truth_hist)
        maps[src.name]["annual_max_daily"] = climate.annual_max_daily(src, d)
        ext[src.name] = _extreme_metrics(src, truth, w_reg, thresholds, n_members, config)
        clim[src.name] = climate.climate_parts(src, clim_w, d)
    ens = next(s.data for s in sources if s.name == "ensemble")       # the main one
    rank = skill.rank_histogram(ens, truth, grid.area, d.member)
    scalars, maps_ds, curves_ds, rank, ext_ds, clim = dask.compute(
        _stack(scal), _stack(maps), _stack(curves), rank, _stack(ext), clim)
    truth_name = next(s.name for s in sources if s.kind == "truth")
    scalars = scalars.merge(climate.climate_scalars({k: xr.Dataset(v) for k, v in clim.items()}, truth_name, d,
                                                    config.n_boot, config.seed))
    maps_ds = maps_ds.assign_coords(season_days=seasons.season_days(truth[d.time]))
    curves_ds["rank_histogram"] = rank
    extreme_scalars, extreme_curves = _finish_extremes(ext_ds, thresholds, config)
    curves_ds = curves_ds.merge(extreme_curves, combine_attrs="override")
    for k, v in extreme_scalars.items():
        scalars[k] = v
    if truth_hist_daily is not None:
        curves_ds = curves_ds.merge(_return_levels(sources, grid, truth_hist_daily, config))
    scalars["rmse"] = np.sqrt(scalars["mse"])
    for k, units in SCALAR_UNITS.items():
        if k in scalars:
            scalars[k].attrs["units"] = units
    baselines = [s.name for s in sources if s.kind == "baseline"] or [s.name for s in sources if s.kind == "coarse"]
    scalars = _add_ratios(scalars, baselines)
    scalars = _add_vs_truth(scalars, curves_ds, truth.sizes[d.x])
    kinds = xr.DataArray([s.kind for s in sources], dims="source", coords={"source": [s.name for s in sources]})
    scalars, maps_ds, curves_ds = (x.assign_coords(source_kind=kinds) for x in (scalars, maps_ds, curves_ds))
    for ds_ in (scalars, maps_ds, curves_ds):
        ds_.attrs.update(factor=config.factor, truth=config.truth, ensemble=config.variable,
                         note="precipitation in kg m-2 s-1 unless a variable's units say otherwise")
    return Comparison(scalars, maps_ds, curves_ds, config)
