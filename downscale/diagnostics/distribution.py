"""Distributions of precipitation: tail quantiles, Q–Q, the STVD PE and EMD, exceedances, wet days and
dry spells. Pooled statistics are read off streaming histograms (:mod:`downscale.diagnostics.histogram`).

* Quantile q of a histogram: the bin where the cumulative count reaches q · total, interpolated linearly
  inside it (error ≤ one bin width, 0.26 % of the value with the default bins).
* PE (STVD paper) = |Q_f(0.99999) − Q_y(0.99999)|, in kg m-2 s-1.
* EMD (STVD paper) = Wasserstein-1 distance of the pooled distributions, W₁ = ∫ |F(v) − G(v)| dv, in
  kg m-2 s-1. Inside a bin both CDFs are linear (uniform density), so the integral is exact for
  histograms: per bin w·(|d₀| + |d₁|)/2 if the CDF difference keeps its sign, w·(d₀² + d₁²)/(2(|d₀| + |d₁|))
  if it changes sign. For ``truth + c`` it equals c.
* Exceedance frequency above thresholds in mm/day (default 10, 25, 50, 100, 200): area-weighted fraction
  of values above; 1 kg m-2 s-1 = 86400 mm/day.
* Wet days: daily-mean rate in mm/day (= the daily total in mm) > 1; frequency and intensity (the mean
  daily total on wet days, SDII). Dry spells: runs of consecutive dry days at a cell; the distribution of
  their lengths (spells still running at the ends of the record are counted as they are, i.e. censored).

Example::

    >>> pe = percentile_error(histogram(ens, area), histogram(truth, area))      # 0-d, lazy
    >>> freq = exceedance_frequency(truth, area)                                   # (threshold,)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from downscale.diagnostics.dims import TIME_DIM, require_dims
from downscale.diagnostics.histogram import BIN_DIM, reduce_blocks
from downscale.diagnostics.weights import weighted_mean

SECONDS_PER_DAY = 86400.0
DEFAULT_QUANTILES = (0.9, 0.99, 0.999, 0.9999, 0.99999)
DEFAULT_THRESHOLDS_MM_DAY = (10.0, 25.0, 50.0, 100.0, 200.0)
WET_DAY_MM = 1.0


# --- quantiles, Q–Q, PE, EMD from histograms ------------------------------------------------------

def _quantiles_1d(counts: np.ndarray, lower: np.ndarray, upper: np.ndarray, q: np.ndarray) -> np.ndarray:
    out = np.full(counts.shape[:-1] + q.shape, np.nan)
    for idx in np.ndindex(counts.shape[:-1]):
        c = counts[idx]
        total = c.sum()
        if not total > 0:
            continue
        cdf = np.cumsum(c)
        target = q * total
        i = np.minimum(np.searchsorted(cdf, target, side="left"), c.size - 1)
        below = np.where(i > 0, cdf[i - 1], 0.0)
        frac = np.where(c[i] > 0, (target - below) / np.where(c[i] > 0, c[i], 1.0), 0.0)
        out[idx] = lower[i] + np.clip(frac, 0.0, 1.0) * (upper[i] - lower[i])
    return out


def histogram_quantiles(hist: xr.DataArray, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> xr.DataArray:
    """Quantiles (dim ``quantile``, 0 < q < 1) of the values counted in ``hist`` (any leading dims,
    e.g. ``region``), in kg m-2 s-1; lazy when ``hist`` is.

    Example: ``histogram_quantiles(histogram(truth, area), [0.99, 0.99999])``
    """
    q = np.asarray(quantiles, dtype=np.float64)
    if np.any((q <= 0) | (q >= 1)):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
    out = xr.apply_ufunc(_quantiles_1d, hist, kwargs={"lower": hist["lower"].values, "upper": hist["upper"].values,
                                                       "q": q},
                         input_core_dims=[[BIN_DIM]], output_core_dims=[["quantile"]], dask="parallelized",
                         output_dtypes=[np.float64], dask_gufunc_kwargs={"output_sizes": {"quantile": q.size}})
    return out.assign_coords(quantile=q).rename("quantile_value").assign_attrs(units="kg m-2 s-1")


def quantile_quantile(forecast_hist: xr.DataArray, truth_hist: xr.DataArray,
                      quantiles: Sequence[float] = DEFAULT_QUANTILES) -> xr.Dataset:
    """Q–Q table: ``forecast`` and ``truth`` quantiles (kg m-2 s-1) along dim ``quantile``.

    Example: ``quantile_quantile(histogram(ens, area), histogram(truth, area))``
    """
    return xr.Dataset({"forecast": histogram_quantiles(forecast_hist, quantiles),
                       "truth": histogram_quantiles(truth_hist, quantiles)})


def percentile_error(forecast_hist: xr.DataArray, truth_hist: xr.DataArray, quantile: float = 0.99999) -> xr.DataArray:
    """STVD PE: |Q_forecast − Q_truth| at ``quantile`` (default the 99.999th percentile), kg m-2 s-1.

    Example: ``percentile_error(histogram(ens, area), histogram(truth, area))  # STVD PE``
    """
    f = histogram_quantiles(forecast_hist, [quantile]).squeeze("quantile", drop=True)
    t = histogram_quantiles(truth_hist, [quantile]).squeeze("quantile", drop=True)
    return abs(f - t).rename("percentile_error").assign_attrs(units="kg m-2 s-1", quantile=quantile)


def _check_same_bins(a: xr.DataArray, b: xr.DataArray) -> None:
    if a.sizes[BIN_DIM] != b.sizes[BIN_DIM] or not np.array_equal(a["upper"].values, b["upper"].values):
        raise ValueError("the two histograms were built on different bins: use the same LogBins for both")


def wasserstein_distance(forecast_hist: xr.DataArray, truth_hist: xr.DataArray) -> xr.DataArray:
    """STVD EMD: W₁ = ∫|F − G| dv of the two histogrammed distributions (module docstring), kg m-2 s-1.

    Example: ``wasserstein_distance(histogram(ens, area), histogram(truth, area))  # STVD EMD``
    """
    _check_same_bins(forecast_hist, truth_hist)
    width = (truth_hist["upper"] - truth_hist["lower"]).values
    f = forecast_hist.cumsum(BIN_DIM) / forecast_hist.sum(BIN_DIM)
    g = truth_hist.cumsum(BIN_DIM) / truth_hist.sum(BIN_DIM)
    d1 = f - g                                      # CDF difference at the upper edge of each bin
    d0 = d1.shift({BIN_DIM: 1}, fill_value=0.0)     # … and at its lower edge (0 below the first bin)
    a0, a1 = abs(d0), abs(d1)
    same_sign = d0 * d1 >= 0
    crossing = (d0**2 + d1**2) / (2 * (a0 + a1)).where(a0 + a1 > 0, 1.0)
    per_bin = xr.where(same_sign, 0.5 * (a0 + a1), crossing) * width
    return per_bin.sum(BIN_DIM).rename("emd").assign_attrs(units="kg m-2 s-1")


# --- exceedances -----------------------------------------------------------------------------------

def exceedance_frequency(x: xr.DataArray, weights: xr.DataArray,
                         thresholds_mm_day: Sequence[float] = DEFAULT_THRESHOLDS_MM_DAY,
                         dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted fraction of values of ``x`` (kg m-2 s-1) above each threshold (mm/day), reduced
    over ``dims`` (default: all); dim ``threshold`` with coordinate in mm/day. Lazy on dask.

    Example: ``exceedance_frequency(truth, area, (50.0,))  # fraction above 50 mm/day``
    """
    parts = [weighted_mean((x > t / SECONDS_PER_DAY).where(x.notnull()), weights, dims)
             for t in thresholds_mm_day]
    out = xr.concat(parts, dim=xr.DataArray(list(thresholds_mm_day), dims="threshold", name="threshold",
                                            attrs={"units": "mm/day"}))
    return out.rename("exceedance_frequency").assign_attrs(units="1")


# --- wet days and dry spells -----------------------------------------------------------------------

def daily_totals(x: xr.DataArray, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Daily-mean rate of ``x`` (kg m-2 s-1) in mm/day, i.e. the daily total in mm; works on cftime
    (Julian) time. Days with missing samples are the mean of those present. Lazy on dask.

    Example: ``daily_totals(truth)  # (time: days, …) in mm/day``
    """
    require_dims(x, [time_dim], "daily_totals")
    return (x.resample({time_dim: "1D"}).mean() * SECONDS_PER_DAY).assign_attrs(units="mm/day")


def wet_day_frequency(daily: xr.DataArray, threshold_mm: float = WET_DAY_MM, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Map of the fraction of days with a total above ``threshold_mm`` (``daily`` from :func:`daily_totals`).

    Example: ``wet_day_frequency(daily_totals(truth))  # map, 0..1``
    """
    wet = (daily > threshold_mm).where(daily.notnull())
    return wet.mean(time_dim).rename("wet_day_frequency").assign_attrs(units="1")


def wet_day_intensity(daily: xr.DataArray, threshold_mm: float = WET_DAY_MM, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Map of the mean daily total on wet days (SDII), mm/day; NaN where no day is wet.

    Example: ``wet_day_intensity(daily_totals(truth))  # map, mm/day``
    """
    return daily.where(daily > threshold_mm).mean(time_dim).rename("wet_day_intensity").assign_attrs(units="mm/day")


def wet_day_statistics(daily: xr.DataArray, weights: xr.DataArray, threshold_mm: float = WET_DAY_MM,
                       dims: Sequence[Hashable] | None = None) -> xr.Dataset:
    """Area-weighted wet-day ``frequency`` (1) and pooled ``intensity`` Σ A·P·wet / Σ A·wet (mm/day).

    Example: ``wet_day_statistics(daily_totals(ens), area)``
    """
    wet = (daily > threshold_mm).where(daily.notnull())
    freq = weighted_mean(wet, weights, dims)
    intensity = weighted_mean(daily.where(wet == 1), weights, dims)
    return xr.Dataset({"wet_day_frequency": freq.assign_attrs(units="1"),
                       "wet_day_intensity": intensity.assign_attrs(units="mm/day")})


def _spell_counts(dry: np.ndarray, weights: np.ndarray, max_length: int) -> np.ndarray:
    """(R, max_length) weighted counts of dry-spell lengths 1..max_length (last: ≥ max_length) in a block
    with time last; ``weights (R, …)`` broadcastable to (R, *dry.shape), one count per weight set."""
    lead = dry.shape[:-1]
    w = np.broadcast_to(weights, (weights.shape[0],) + dry.shape)[..., 0].reshape(weights.shape[0], -1)
    run = np.zeros(lead, dtype=np.int64).ravel()
    counts = np.zeros((w.shape[0], max_length), dtype=np.float64)
    flat = dry.reshape(-1, dry.shape[-1]) > 0

    def close(ended: np.ndarray) -> None:
        length = np.minimum(run[ended], max_length) - 1
        for r in range(w.shape[0]):
            np.add.at(counts[r], length, w[r, ended])

    for t in range(flat.shape[-1]):
        d = flat[:, t]
        close(~d & (run > 0))
        run = np.where(d, run + 1, 0)
    close(run > 0)
    return counts


def dry_spell_distribution(daily: xr.DataArray, weights: xr.DataArray | None = None,
                           threshold_mm: float = WET_DAY_MM, max_length: int = 30,
                           time_dim: str = TIME_DIM) -> xr.DataArray:
    """Relative frequency of dry-spell lengths (days with total ≤ ``threshold_mm``), dim ``spell_length``
    = 1..``max_length`` days (the last holds every longer spell), each spell weighted by its cell's
    area; pooled over every other dim. On dask, time is gathered into one chunk per block (other dims
    are re-chunked to ~128 MiB blocks). NaN days count as wet (they break a spell).

    Example: ``dry_spell_distribution(daily_totals(truth), area, max_length=30)``
    """
    require_dims(daily, [time_dim], "dry_spell_distribution")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1 day, got {max_length}")
    order = [d for d in daily.dims if d != time_dim] + [time_dim]
    dry = (daily <= threshold_mm).astype(np.int8).transpose(*order)
    if dry.chunks is not None:
        dry = dry.chunk({d: ("auto" if d != time_dim else -1) for d in dry.dims})
    if weights is not None and any(d not in daily.dims for d in weights.dims):
        raise ValueError(f"dry_spell_distribution: weights dims {weights.dims} must be dims of {daily.dims}")
    counts, _ = reduce_blocks(lambda v, w: _spell_counts(v, w, max_length), dry, weights, max_length)
    out = xr.DataArray(counts[0], dims="spell_length", coords={"spell_length": np.arange(1, max_length + 1)})
    return (out / out.sum()).rename("dry_spell_frequency").assign_attrs(units="1", threshold_mm_day=threshold_mm)
