"""Annual and seasonal climatology of every source against the truth, by region, with intervals: the part of
the evaluation a climate scientist reads for a year or more of downscaled output.

Per source, region (:data:`CLIMATE_REGIONS`: global, land, ocean — when a land fraction is given — and the two
case studies) and period (:data:`PERIODS`: the whole record, ``annual``, and DJF/MAM/JJA/SON), all in one
streaming pass over blocks of days that keeps only regional daily series and dry-spell counts
(:mod:`~downscale.evaluation.block_scores`):

* ``clim_mean`` (mm/day): area mean of the period mean (an ensemble: of its mean); ``clim_bias`` (source −
  truth) and ``clim_percent_bias`` (%);
* ``clim_bias_lower`` / ``clim_bias_upper``: 95 % day-block bootstrap interval of the bias (5-day circular blocks
  of the paired daily series, :func:`~downscale.diagnostics.seasons.block_bootstrap_days`) and
  ``clim_bias_significant`` (1 where 0 lies outside it) — how much a period mean moves with the weather;
* ``clim_member_lower`` / ``clim_member_upper`` (ensembles of K ≥ 2): the 95 % prediction interval of one more
  member's period mean, m̄ ± t_{K−1}(0.975) · s · √(1 + 1/K) from the members' period means (mean m̄, standard
  deviation s; :func:`member_prediction_interval`), and ``clim_within_spread`` = 1 where the truth's mean lies
  inside it: the bias is then within the ensemble's own sampling spread (the truth could be one more member),
  as HiRO-ACE judges time-mean bias against internal variability. (The members' min–max would hold one more
  exchangeable member only (K − 1)/(K + 1) of the time: 60 % with 4 members.);
* ``clim_wet_day_frequency`` (days over 1 mm), ``clim_mean_dry_spell`` (days) and ``clim_long_dry_spells``
  (share of dry spells of ≥ 10 days; spells belong to the season of their first day).

``period_days`` (period) says how many days of each period the record holds: 0 marks an absent season (its
values are NaN), fewer than ~90 a partial one. The annual-maximum daily precipitation map
(``annual_max_daily``, mean over the record's calendar years and over members) goes to the maps.

Example::

    >>> parts = {"truth": xr.Dataset({"daily_mean": …, "daily_wet": …, "dry_spells": …}), …}   # per source
    >>> climate_scalars(parts, "truth", dims, n_boot=200)["clim_bias"].sel(period="JJA")
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from downscale.diagnostics import seasons
from downscale.diagnostics.dims import Dims
from downscale.diagnostics.sources import Grid
from downscale.diagnostics.weights import check_area
from downscale.evaluation.regions import CASE_STUDIES, get_region

CLIMATE_REGIONS = ("global", "land", "ocean", *CASE_STUDIES)
PERIODS = ("annual", *seasons.SEASONS)
REGION_DIM, PERIOD_DIM = "climate_region", "period"
#: A cell is land where its land fraction is at least this.
LAND_THRESHOLD = 0.5
BLOCK_DAYS = 5
LONG_SPELL_DAYS = 10
MAX_SPELL_DAYS = 60
_LEVEL = 0.95
#: Relative resolution of the stored float32 fields: differences of period means below it are not a bias.
FLOAT32_RESOLUTION = 1e-6


def climate_weights(grid: Grid, land_fraction: xr.DataArray | None = None) -> xr.DataArray:
    """Area weights ``(climate_region, tile, y, x)`` in m²: global, land and ocean (only with ``land_fraction``
    on the grid's cells, 0..1), and the case studies."""
    area = check_area(grid.area)
    masks = {"global": xr.ones_like(area, dtype=bool)}
    if land_fraction is not None:
        land = land_fraction.reset_coords(drop=True).transpose(*area.dims).values >= LAND_THRESHOLD
        masks["land"] = xr.zeros_like(area, dtype=bool).copy(data=land)
        masks["ocean"] = ~masks["land"]
    for r in CASE_STUDIES:
        masks[r] = get_region(r).mask(grid.lat.load(), grid.lon.load())
    w = xr.concat([area.where(m, 0.0).reset_coords(drop=True) for m in masks.values()], dim=REGION_DIM)
    return w.assign_coords({REGION_DIM: list(masks)}).rename("climate_weights")


def _periods(season: np.ndarray) -> list[np.ndarray]:
    """Boolean day masks of :data:`PERIODS`."""
    return [np.ones(season.shape, bool), *(season == s for s in range(len(seasons.SEASONS)))]


def _bias_interval(diff: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95 % day-block bootstrap interval of the mean of ``diff (day, region)``."""
    index = seasons.block_bootstrap_days(diff.shape[0], BLOCK_DAYS, n_boot, seed)
    means = diff[index].mean(axis=1)                                   # (n_boot, region)
    return tuple(np.quantile(means, [(1 - _LEVEL) / 2, (1 + _LEVEL) / 2], axis=0))


def member_prediction_interval(means: np.ndarray, level: float = _LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Prediction interval ``(lower, upper)`` of one more member's value from ``means (K, …)`` (K ≥ 2 members'
    values, e.g. period means in mm/day): m̄ ± t_{K−1}((1 + level)/2) · s · √(1 + 1/K), at least
    ± :data:`FLOAT32_RESOLUTION` · |m̄| wide (members that agree to the store's precision)."""
    k = means.shape[0]
    centre, s = means.mean(0), means.std(0, ddof=1)
    half = stats.t.ppf((1 + level) / 2, k - 1) * s * np.sqrt(1 + 1 / k)
    half = np.maximum(half, FLOAT32_RESOLUTION * np.abs(centre))
    return centre - half, centre + half


def _source_rows(part: xr.Dataset, truth: np.ndarray, masks: list[np.ndarray], member: str, time: str, n_boot: int,
                 seed: int) -> dict[str, np.ndarray]:
    """(region, period) arrays of one computed source (module docstring)."""
    series = part.daily_mean.transpose(*((member,) if member in part.dims else ()), time, REGION_DIM).values
    wet = part.daily_wet.transpose(*((member,) if member in part.dims else ()), time, REGION_DIM).values
    members = series if series.ndim == 3 else series[None]
    point, wet_point = members.mean(0), (wet if wet.ndim == 2 else wet.mean(0))
    n_reg = point.shape[1]
    out = {k: np.full((n_reg, len(PERIODS)), np.nan) for k in (
        "clim_mean", "clim_bias", "clim_percent_bias", "clim_bias_lower", "clim_bias_upper", "clim_bias_significant",
        "clim_member_lower", "clim_member_upper", "clim_within_spread", "clim_wet_day_frequency")}
    for p, days in enumerate(masks):
        if not days.any():
            continue
        mean, truth_mean = point[days].mean(0), truth[days].mean(0)
        lower, upper = _bias_interval(point[days] - truth[days], n_boot, seed)
        out["clim_mean"][:, p], out["clim_bias"][:, p] = mean, mean - truth_mean
        with np.errstate(divide="ignore", invalid="ignore"):
            out["clim_percent_bias"][:, p] = np.where(truth_mean > 0, 100.0 * (mean - truth_mean) / truth_mean, np.nan)
        out["clim_bias_lower"][:, p], out["clim_bias_upper"][:, p] = lower, upper
        out["clim_bias_significant"][:, p] = (lower > 0) | (upper < 0)
        out["clim_wet_day_frequency"][:, p] = wet_point[days].mean(0)
        if series.ndim == 3 and members.shape[0] > 1:
            lo, hi = member_prediction_interval(members[:, days].mean(1))
            out["clim_member_lower"][:, p], out["clim_member_upper"][:, p] = lo, hi
            out["clim_within_spread"][:, p] = (truth_mean >= lo) & (truth_mean <= hi)
    return out


def _spell_rows(counts: xr.DataArray) -> dict[str, np.ndarray]:
    """Mean dry-spell length and share of long spells (region, period) from (region, season, length) counts."""
    counts = counts.transpose(REGION_DIM, "season", "spell_length")
    per_season = [counts.isel(season=s, drop=True) for s in range(len(seasons.SEASONS))]
    per_period = xr.concat([counts.sum("season"), *per_season], dim=PERIOD_DIM)
    per_period = per_period.transpose(REGION_DIM, PERIOD_DIM, "spell_length")
    total = per_period.sum("spell_length")
    long = per_period.sel(spell_length=slice(LONG_SPELL_DAYS, None)).sum("spell_length")
    return {"clim_mean_dry_spell": seasons.mean_spell_length(per_period).values,
            "clim_long_dry_spells": (long / total.where(total > 0)).values}


_UNITS = {"clim_mean": "mm/day", "clim_bias": "mm/day", "clim_percent_bias": "%", "clim_bias_lower": "mm/day",
          "clim_bias_upper": "mm/day", "clim_bias_significant": "1", "clim_member_lower": "mm/day",
          "clim_member_upper": "mm/day", "clim_within_spread": "1", "clim_wet_day_frequency": "1",
          "clim_mean_dry_spell": "days", "clim_long_dry_spells": "1"}


def climate_scalars(parts: dict[str, xr.Dataset], truth: str, dims: Dims, n_boot: int = 200,
                    seed: int = 0) -> xr.Dataset:
    """The climatology table (module docstring) of each source's regional series — ``daily_mean`` (mm/day) and
    ``daily_wet`` (wet fraction) on ``([member,] time, climate_region)``, ``dry_spells`` (climate_region, season,
    spell_length) counts, per source (``truth``: the truth's key): variables on ``(source, climate_region,
    period)`` with ``period_days`` (period)."""
    ref = parts[truth].daily_mean
    season = seasons.season_index(ref[dims.time])
    masks = _periods(season)
    truth_series = ref.transpose(dims.time, REGION_DIM).values
    rows = {}
    for name, part in parts.items():
        rows[name] = {**_source_rows(part, truth_series, masks, dims.member, dims.time, n_boot, seed),
                      **_spell_rows(part.dry_spells)}
    coords = {"source": list(parts), REGION_DIM: ref[REGION_DIM].values, PERIOD_DIM: list(PERIODS),
              "period_days": (PERIOD_DIM, [int(m.sum()) for m in masks], {"units": "days"})}
    data = {k: (("source", REGION_DIM, PERIOD_DIM), np.stack([rows[s][k] for s in parts]), {"units": u})
            for k, u in _UNITS.items()}
    return xr.Dataset(data, coords=coords)
