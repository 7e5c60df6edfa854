"""Return levels of extreme precipitation with confidence intervals: GPD peaks over a threshold.

Why peaks-over-threshold (GPD) and not annual maxima (GEV): the FV3GFS runs are 13 months long (one
year after spin-up), so each cell has a single annual maximum — a GEV fit per cell is impossible and a
pooled one would rest on a few hundred correlated maxima. All values above a high threshold ``u`` carry
far more information about the tail. Above ``u`` the excesses follow a generalized Pareto distribution
(Pickands–Balkema–de Haan), with shape ξ and scale σ fitted by maximum likelihood
(``scipy.stats.genpareto.fit`` with location 0). With λ exceedances per series-year, the level exceeded
on average once every T years is

    x_T = u + σ/ξ · ((λT)^ξ − 1)        (ξ ≠ 0),        x_T = u + σ · log(λT)        (ξ = 0)

defined for λT > 1. Pooled data: with several series (cells of a region, members), λ counts
exceedances per series and year, so x_T is the T-year level *at one cell*, assuming the pooled cells
share one tail (choose a homogeneous region).

Confidence intervals by **parametric bootstrap** (chosen over profile likelihood because it also carries
the uncertainty of the rate λ and of return levels as a joint function of ξ, σ, λ, without a 1-D profile
per return period): draw N* ~ Poisson(N) excesses from the fitted GPD, refit, recompute x_T with
λ* = N*/(series · years); the interval is the percentile interval of the bootstrap levels.

Caveat: 3-hourly values and neighbouring cells are dependent, which the parametric bootstrap ignores, so
its intervals are too narrow for pooled cells. :func:`day_block_return_levels` (what the evaluation uses)
redraws whole blocks of days instead — every cell's exceedances of a drawn day together — and so keeps that
dependence; use daily totals (:func:`distribution.daily_totals`) over a region.

Example::

    >>> daily = daily_totals(truth.where(california_mask))                    # mm/day
    >>> rl = gpd_return_levels(daily, threshold=30.0, return_periods=(2, 10, 50))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import stats

from downscale.diagnostics.dims import TIME_DIM, require_dims, time_step_seconds
from downscale.diagnostics.seasons import block_bootstrap_days

DAYS_PER_YEAR = 365.25
DEFAULT_RETURN_PERIODS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


@dataclass(frozen=True)
class GPDFit:
    """A fitted tail: threshold ``u`` (units of the data), ``shape`` ξ, ``scale`` σ (units of the data),
    ``n_exceedances`` N and ``rate`` λ (exceedances per series per year)."""

    threshold: float
    shape: float
    scale: float
    n_exceedances: int
    rate: float

    def return_level(self, return_periods: Sequence[float] | np.ndarray) -> np.ndarray:
        """x_T of each return period T (years); NaN where λT ≤ 1 (inside the threshold's range)."""
        return return_level(self.threshold, self.shape, self.scale, self.rate, return_periods)


def return_level(threshold: float, shape: float, scale: float, rate: float,
                 return_periods: Sequence[float] | np.ndarray) -> np.ndarray:
    """GPD return level x_T = u + σ/ξ((λT)^ξ − 1) (σ log(λT) for ξ → 0), NaN where λT ≤ 1.

    Example: ``return_level(u=30.0, shape=0.1, scale=10.0, rate=18.0, return_periods=[10.0])``
    """
    m = rate * np.asarray(return_periods, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_m = np.log(m)
        if abs(shape) < 1e-9:
            level = scale * log_m
        else:
            level = scale / shape * np.expm1(shape * log_m)
    return np.where(m > 1, threshold + level, np.nan)


def fit_gpd(exceedances: np.ndarray, threshold: float, n_series_years: float) -> GPDFit:
    """Maximum-likelihood GPD fit to the values above ``threshold`` (1-D, units of the data);
    ``n_series_years`` = (number of pooled series) × (record length in years) sets λ = N / it.

    Example: ``fit_gpd(exceedances(daily, 30.0), 30.0, n_series_years=n_cells * 1.0)``
    """
    exc = np.asarray(exceedances, dtype=np.float64)
    exc = exc[np.isfinite(exc)]
    if exc.size < 10:
        raise ValueError(f"GPD fit needs at least 10 values above the threshold {threshold}, got {exc.size}: "
                         "lower the threshold or pool more data")
    if np.any(exc <= threshold):
        raise ValueError(f"fit_gpd: every value must exceed the threshold {threshold}")
    if not n_series_years > 0:
        raise ValueError(f"n_series_years must be > 0, got {n_series_years}")
    shape, _, scale = stats.genpareto.fit(exc - threshold, floc=0.0)
    return GPDFit(float(threshold), float(shape), float(scale), int(exc.size), exc.size / n_series_years)


def bootstrap_return_levels(fit: GPDFit, return_periods: Sequence[float], n_boot: int = 200,
                            seed: int = 0) -> np.ndarray:
    """Parametric-bootstrap return levels, shape ``(n_boot, len(return_periods))`` (module docstring)."""
    rng = np.random.default_rng(seed)
    dist = stats.genpareto(fit.shape, loc=0.0, scale=fit.scale)
    series_years = fit.n_exceedances / fit.rate
    out = np.full((n_boot, len(return_periods)), np.nan)
    for b in range(n_boot):
        n = max(int(rng.poisson(fit.n_exceedances)), 10)
        excess = dist.rvs(size=n, random_state=rng)
        shape, _, scale = stats.genpareto.fit(excess, fit.shape, floc=0.0, scale=fit.scale)  # start at the fit
        out[b] = return_level(fit.threshold, shape, scale, n / series_years, return_periods)
    return out


def return_levels(fit: GPDFit, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS,
                  confidence: float = 0.9, n_boot: int = 200, seed: int = 0) -> xr.Dataset:
    """``return_level``, ``lower``, ``upper`` (units of the data) along dim ``return_period`` (years),
    with a ``confidence`` percentile interval from :func:`bootstrap_return_levels`; fit in the attrs.

    Example: ``return_levels(fit, (2, 10, 50), confidence=0.9)``
    """
    boot = bootstrap_return_levels(fit, np.asarray(return_periods, dtype=np.float64), n_boot, seed)
    return summarize_levels(fit, return_periods, boot, confidence,
                            "GPD peaks over threshold, MLE; parametric bootstrap percentile CI")


def summarize_levels(fit: GPDFit, return_periods: Sequence[float], boot: np.ndarray, confidence: float,
                     method: str) -> xr.Dataset:
    """The fit's return levels with the ``confidence`` percentile interval of bootstrap levels
    ``boot (n_boot, len(return_periods))``; ``method`` names how they were drawn (attrs)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    periods = np.asarray(return_periods, dtype=np.float64)
    alpha = (1 - confidence) / 2
    with np.errstate(invalid="ignore"):
        lower, upper = np.nanquantile(boot, [alpha, 1 - alpha], axis=0) if np.isfinite(boot).any() \
            else (np.full(periods.shape, np.nan),) * 2
    coords = {"return_period": ("return_period", periods, {"units": "years"})}
    attrs = {"method": method, "threshold": fit.threshold, "shape": fit.shape, "scale": fit.scale,
             "n_exceedances": fit.n_exceedances, "rate_per_series_year": fit.rate,
             "confidence": confidence, "n_boot": boot.shape[0]}
    return xr.Dataset({"return_level": ("return_period", fit.return_level(periods)),
                       "lower": ("return_period", lower), "upper": ("return_period", upper)},
                      coords=coords, attrs=attrs)


def day_block_return_levels(values: np.ndarray, days: np.ndarray, n_days: int, threshold: float,
                            n_series_years: float, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS,
                            block_days: int = 5, confidence: float = 0.9, n_boot: int = 200,
                            seed: int = 0) -> xr.Dataset:
    """GPD return levels of the exceedances ``values`` (1-D, above ``threshold``) pooled over a region's
    series, with a **day-block bootstrap** interval: the record's ``n_days`` days are redrawn in circular
    blocks of ``block_days`` (:func:`~downscale.diagnostics.seasons.block_bootstrap_days`), each
    exceedance kept as often as its day (``days``, index 0..n_days−1) is drawn, and the GPD refitted with
    λ* = N* / ``n_series_years``. Unlike the parametric bootstrap this keeps the dependence of neighbouring
    cells and consecutive days (a storm's cells are drawn together), so the interval is not too narrow.
    Raises ``ValueError`` with fewer than 10 exceedances.

    Example: ``day_block_return_levels(v, d, 365, 30.0, n_cells * 1.0, (2, 10))``
    """
    values, days = np.asarray(values, dtype=np.float64), np.asarray(days, dtype=np.int64)
    fit = fit_gpd(values, threshold, n_series_years)
    periods = np.asarray(return_periods, dtype=np.float64)
    boot = np.full((n_boot, periods.size), np.nan)
    for b, drawn in enumerate(block_bootstrap_days(n_days, block_days, n_boot, seed)):
        sample = np.repeat(values, np.bincount(drawn, minlength=n_days)[days])
        if sample.size < 10:
            continue
        shape, _, scale = stats.genpareto.fit(sample - threshold, fit.shape, floc=0.0, scale=fit.scale)
        boot[b] = return_level(threshold, shape, scale, sample.size / n_series_years, periods)
    return summarize_levels(fit, periods, boot, confidence,
                            f"GPD peaks over threshold, MLE; day-block bootstrap ({block_days}-day blocks) "
                            "percentile CI")


def record_years(time: xr.DataArray) -> float:
    """Length of a regularly sampled record in years: n · Δt / 365.25 d (cftime or numpy times)."""
    return time.size * time_step_seconds(time) / (DAYS_PER_YEAR * 86400.0)


def exceedances(x: xr.DataArray, threshold: float) -> np.ndarray:
    """The values of ``x`` above ``threshold`` as a 1-D numpy array. **Computes**: on dask, one streaming
    pass that keeps only the exceedances (so choose ``threshold`` high enough for them to fit in memory)."""
    data = x.data
    selected = data[data > threshold]
    return np.asarray(selected.compute() if hasattr(selected, "compute") else selected)


def gpd_return_levels(x: xr.DataArray, threshold: float,
                      return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS, time_dim: str = TIME_DIM,
                      confidence: float = 0.9, n_boot: int = 200, seed: int = 0) -> xr.Dataset:
    """Return levels of ``x`` (any dims; every non-time element a series, e.g. cells × members) from a GPD
    fit to its values above ``threshold`` (units of ``x``), with bootstrap confidence intervals.
    Cells masked with NaN (outside a region) do not count as series. Computes the exceedances.

    Example: ``gpd_return_levels(daily_totals(truth).where(mask), threshold=30.0)``
    """
    require_dims(x, [time_dim], "gpd_return_levels")
    years = record_years(x[time_dim])
    n_series = int(x.notnull().any(time_dim).sum().compute())
    fit = fit_gpd(exceedances(x, threshold), threshold, n_series * years)
    out = return_levels(fit, return_periods, confidence, n_boot, seed)
    return out.assign_attrs(record_years=years, n_series=n_series, units=x.attrs.get("units", ""))
