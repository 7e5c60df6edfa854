"""What one block of whole days adds to the running totals of :func:`~downscale.evaluation.score.compare`.

A block is the store's frames ``start … stop`` loaded into memory, preceded by ``lead`` frames of the previous
block (the lag pairs of the temporal autocorrelation and the first step of a window join reach back into them;
nothing else reads them). Every statistic goes into :class:`~downscale.evaluation.blocks.Totals` under
``"{source}/{name}"`` in a form that blocks add up to exactly:

* frame-weighted means (weight: the block's frames): the skill scores, exceedance frequencies, seam and mass
  step means, power spectra, the rank histogram, the record-mean and CRPS maps; per season (weight: the
  season's frames) the seasonal maps; day-weighted (weight: days) the wet-day frequencies;
* sums: histograms, autocorrelation and diurnal sums, Brier/reliability counts, extreme-value histograms per
  bootstrap block of days (:attr:`BlockContext.day_group`);
* maxima: each calendar year's maximum daily map;
* per-day series (the climatology's regional daily means) and the values above the return-level thresholds with
  their day, kept in order;
* dry spells in a :class:`~downscale.diagnostics.seasons.DrySpellCounter` per source, which carries the spell
  open at a block's end into the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from downscale.diagnostics import distribution, reliability, seasons, skill, structure, uncertainty
from downscale.diagnostics.consistency import mass_consistency, seam_statistics, window_join_steps
from downscale.diagnostics.histogram import regional_histograms
from downscale.diagnostics.sources import Grid, Source, coarse_input, gather_sources
from downscale.diagnostics.weights import weighted_mean, weighted_sum
from downscale.evaluation.blocks import Totals
from downscale.evaluation.climate import MAX_SPELL_DAYS, REGION_DIM

#: Most blocks of days the extreme-quantile bootstrap resamples: records of up to this many days resample
#: single days; longer ones blocks of ⌈days / this⌉ consecutive days (also keeping day-to-day persistence).
MAX_BOOTSTRAP_BLOCKS = 73


@dataclass
class BlockContext:
    """What every block needs to know of the whole record (``compare`` builds it before the first block)."""

    config: object                 # CompareConfig (not imported: score imports this module)
    grid: Grid
    w_reg: xr.DataArray            # (region, tile, y, x) m²
    clim_w: xr.DataArray           # (climate_region, tile, y, x) m²
    thresholds: xr.DataArray       # (region, threshold_quantile) kg m-2 s-1, the truth's
    tail_thresholds: dict[str, float]   # return-level region → the truth's daily threshold, mm/day
    day_starts: np.ndarray         # the record's calendar days (their starts)
    day_group: np.ndarray          # bootstrap block of each day
    n_members: int
    sphere_frames: np.ndarray      # the record's frames of the sphere spectrum (at most DEFAULT_MAX_FRAMES)
    years: np.ndarray              # the record's calendar years
    tail_masks: dict[str, xr.DataArray]  # return-level region → its cells (tile, y, x), bool
    counters: dict[str, seasons.DrySpellCounter] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.day_group.max()) + 1


def bootstrap_groups(n_days: int) -> np.ndarray:
    """The bootstrap block (0, 1, …) of each of ``n_days`` days: single days up to
    :data:`MAX_BOOTSTRAP_BLOCKS` days, else consecutive runs of ⌈n_days / MAX_BOOTSTRAP_BLOCKS⌉ days."""
    length = max(1, -(-n_days // MAX_BOOTSTRAP_BLOCKS))
    return np.arange(n_days) // length


def _day_index(daily_time: xr.DataArray, ctx: BlockContext) -> np.ndarray:
    return np.searchsorted(ctx.day_starts, np.asarray(daily_time.values))


def _grouped(day_hist: xr.DataArray, groups: np.ndarray, n_groups: int) -> xr.DataArray:
    """Per-day histograms ``(day, …)`` summed into the record's bootstrap blocks ``(day: n_groups, …)``."""
    out = np.zeros((n_groups,) + day_hist.shape[1:])
    np.add.at(out, groups, day_hist.values)
    return xr.DataArray(out, dims=day_hist.dims, coords={k: v for k, v in day_hist.coords.items()
                                                         if uncertainty.DAY_DIM not in v.dims})


def _sphere_frames(x: xr.DataArray, start: int, ctx: BlockContext) -> xr.DataArray | None:
    """The block's frames among the record's :attr:`BlockContext.sphere_frames` (an ensemble's members taken in
    turn: the k-th frame of the record uses member k mod K), on ``time``; None if it holds none."""
    d = ctx.config.dims
    k = np.flatnonzero((ctx.sphere_frames >= start) & (ctx.sphere_frames < start + x.sizes[d.time]))
    if not k.size:
        return None
    local = ctx.sphere_frames[k] - start
    if d.member not in x.dims:
        return x.isel({d.time: local})
    members = k % x.sizes[d.member]
    return xr.concat([x.isel({d.time: i, d.member: m}) for i, m in zip(local, members)], dim=d.time,
                     coords="minimal", compat="override")


def _scores(t: Totals, key: str, src: Source, x: xr.DataArray, truth: xr.DataArray, ctx: BlockContext,
            n: int, start: int) -> None:
    """Skill, distribution and structure scores of the block's own frames ``x`` (frame-weighted or summed)."""
    cfg, d = ctx.config, ctx.config.dims
    point = x.mean(d.member) if src.ensemble else x
    dims = list(x.dims)
    pdims = list(point.dims)
    fair, standard = skill.crps_fair_and_standard(x, truth, d.member) if src.ensemble else (abs(x - truth),) * 2
    for name, value in (("mse", skill.mse(point, truth, ctx.w_reg, pdims)),
                        ("mae", skill.mae(point, truth, ctx.w_reg, pdims)),
                        ("bias", skill.bias(point, truth, ctx.w_reg, pdims)),
                        ("mse_member", skill.mse(x, truth, ctx.w_reg, dims)),
                        ("mae_member", skill.mae(x, truth, ctx.w_reg, dims)),
                        ("crps_fair", weighted_mean(fair, ctx.w_reg, list(fair.dims))),
                        ("crps_standard", weighted_mean(standard, ctx.w_reg, list(standard.dims))),
                        ("mean", weighted_mean(point, ctx.w_reg, pdims)),
                        ("exceedance_frequency", distribution.exceedance_frequency(x, ctx.grid.area,
                                                                                   cfg.thresholds_mm_day)),
                        ("power_spectrum", structure.power_spectrum(x, d.spatial)),
                        ("map_mean", point.mean(d.time)),
                        ("map_crps_fair", fair.mean(d.time))):
        t.mean(f"{key}/{name}", value, n)
    picked = _sphere_frames(x, start, ctx)
    if picked is not None:
        t.mean(f"{key}/sphere_power_spectrum", structure.sphere_power_spectrum(
            picked, ctx.grid.lat, ctx.grid.lon, ctx.grid.area, d.spatial, max_frames=None, time_dim=d.time,
            member_dim=d.member), picked.sizes[d.time])
    if src.ensemble and x.sizes[d.member] > 1:
        t.mean(f"{key}/spread", weighted_mean(x.var(d.member, ddof=1), ctx.w_reg, pdims), n)
    seam = seam_statistics(x, d.spatial, cfg.factor)
    for name in ("seam_mean_abs_step", "interior_mean_abs_step", "coarse_edge_mean_abs_step", "mid_cell_mean_abs_step"):
        t.mean(f"{key}/{name}", seam[name], n)
    diff = abs(structure.morans_i(x, d.spatial) - structure.morans_i(truth, d.spatial))
    t.mean(f"{key}/sae", diff.mean(skipna=True), float(diff.count()))
    t.add(f"{key}/histogram", regional_histograms(x, ctx.w_reg, cfg.bins))
    t.add(f"{key}/diurnal", structure.diurnal_sums(x, ctx.grid.area, ctx.grid.lon, time_dim=d.time))
    season = x[d.time].dt.season
    counts = xr.DataArray([int((season == s).sum()) for s in seasons.SEASONS], dims="season",
                          coords={"season": list(seasons.SEASONS)})
    seasonal = point.groupby(season.rename("season")).mean(d.time).reindex(season=list(seasons.SEASONS))
    t.mean(f"{key}/map_seasonal_mean", seasonal, counts)


def _consistency(t: Totals, key: str, block: xr.Dataset, x_all: xr.DataArray, lead: int, start: int,
                 ctx: BlockContext, n: int) -> None:
    """Mass against the coarse input, window joins and the autocorrelation sums (the last two reach into the
    ``lead`` frames before the block)."""
    cfg, d = ctx.config, ctx.config.dims
    x = x_all.isel({d.time: slice(lead, None)})
    coarse = coarse_input(block, cfg.coarse)
    if coarse is not None:
        mass = mass_consistency(x, coarse.isel({d.time: slice(lead, None)}), ctx.grid.area, cfg.factor, d.spatial,
                                cfg.coarse_spatial_dims)
        for name in ("mean_abs_error", "mean_abs_coarse", "mean_error", "mean_coarse"):
            t.mean(f"{key}/mass_{name}", mass[name], n)
    if cfg.window_joins:
        steps = window_join_steps(x_all, ctx.grid.area, cfg.window_joins, offset=start - lead, first=start,
                                  time_dim=d.time)
        for name, (mean, count) in steps.items():
            if count:
                t.mean(f"{key}/{name}_step", mean, count)
    t.add(f"{key}/autocorrelation", structure.autocorrelation_sums(x_all, cfg.lags_hours, d.time, lead))


def _daily_scores(t: Totals, key: str, src: Source, x: xr.DataArray, ctx: BlockContext) -> None:
    """Wet days, dry spells, the climatology's daily series, annual maxima and the return-level exceedances."""
    d = ctx.config.dims
    daily = distribution.daily_totals(x, d.time)
    n_days = daily.sizes[d.time]
    wet = distribution.wet_day_statistics(daily, ctx.grid.area)
    t.mean(f"{key}/wet_day_frequency", wet["wet_day_frequency"], n_days)
    t.mean(f"{key}/wet_day_intensity", wet["wet_day_intensity"], float(wet["wet_day_frequency"]) * n_days)
    wet_map = distribution.wet_day_frequency(daily, time_dim=d.time)
    t.mean(f"{key}/map_wet_day_frequency", wet_map.mean(d.member) if src.ensemble else wet_map, n_days)
    wet_cells = (daily > seasons.WET_DAY_MM).where(daily.notnull())
    spatial = list(d.spatial)
    t.append(f"{key}/daily_mean", weighted_mean(daily, ctx.clim_w, spatial))
    t.append(f"{key}/daily_wet", weighted_mean(wet_cells, ctx.clim_w, spatial))
    order = [dim for dim in daily.dims if dim != d.time] + [d.time]
    if key not in ctx.counters:
        ctx.counters[key] = seasons.DrySpellCounter(ctx.clim_w.transpose(REGION_DIM, *d.spatial).values,
                                                    max_length=MAX_SPELL_DAYS)
    ctx.counters[key].add((daily <= seasons.WET_DAY_MM).transpose(*order).values, seasons.season_index(daily[d.time]))
    for year, days in daily.groupby(daily[d.time].dt.year):
        t.maximum(f"{key}/annual_max/{year}", days.max(d.time))
    day = _day_index(daily[d.time], ctx)
    shape = [1] * daily.ndim
    shape[daily.get_axis_num(d.time)] = n_days
    for region, u in ctx.tail_thresholds.items():
        data = daily.where(ctx.tail_masks[region]).values
        above = data > u
        t.append(f"{key}/tail/{region}", (data[above], np.broadcast_to(day.reshape(shape), data.shape)[above]))


def _extremes(t: Totals, key: str, x: xr.DataArray, truth: xr.DataArray, ctx: BlockContext) -> None:
    """Histograms per bootstrap block of days, values pooled, and the Brier/reliability counts."""
    cfg, d = ctx.config, ctx.config.dims
    day_hist = uncertainty.daily_histograms(x, ctx.w_reg, cfg.extreme_bins, d.time)
    groups = ctx.day_group[_day_index(day_hist[uncertainty.DAY_DIM], ctx)]
    t.add(f"{key}/day_histogram", _grouped(day_hist, groups, ctx.n_groups))
    t.add(f"{key}/n_values", weighted_sum(x.notnull(), (ctx.w_reg > 0).astype(np.float64), list(x.dims)))
    t.add(f"{key}/exceedance_counts", reliability.exceedance_counts(x, truth, ctx.thresholds, ctx.w_reg, d.member))


def score_block(t: Totals, block: xr.Dataset, lead: int, start: int, ctx: BlockContext) -> None:
    """Add the block ``block`` (loaded; its first ``lead`` frames belong to the previous block, its own frames
    start at the record's frame ``start``) to the totals ``t``."""
    cfg, d = ctx.config, ctx.config.dims
    sources, _ = gather_sources(block, cfg.factor, cfg.variable, cfg.truth, cfg.coarse, cfg.baselines, d,
                                cfg.coarse_spatial_dims, cfg.ensembles)
    sources = [Source(s.name, s.data.astype(np.float64), s.kind) for s in sources]   # sums in float64
    own = {s.name: s.data.isel({d.time: slice(lead, None)}) for s in sources}
    truth = next(own[s.name] for s in sources if s.kind == "truth")
    n = truth.sizes[d.time]
    for src in sources:
        x = own[src.name]
        _scores(t, src.name, src, x, truth, ctx, n, start)
        _consistency(t, src.name, block, src.data, lead, start, ctx, n)
        _daily_scores(t, src.name, src, x, ctx)
        _extremes(t, src.name, x, truth, ctx)
    ens = own["ensemble"]
    t.mean("rank_histogram", skill.rank_histogram(ens, truth, ctx.grid.area, d.member), n)

