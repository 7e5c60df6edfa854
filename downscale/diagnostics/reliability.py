"""Heavy-rain probabilities: Brier score and reliability diagram of threshold exceedances.

For a threshold u (in the comparison: the truth's area-weighted pooled 99th and 99.9th percentiles of the
rate, one per region) a K-member ensemble forecasts at each cell and time the exceedance probability

    p = (1/K) Σ_k [x_k > u]          (a deterministic forecast is K = 1: p ∈ {0, 1})

and the outcome is o = [y > u]. Over cells (area weights w, zero outside a region) and times:

* Brier score ``BS = Σ w (p − o)² / Σ w`` (dimensionless; 0 is perfect, lower is better).
* Reliability diagram: for each forecast value p = k/K, the observed frequency ``Σ w o [p = k/K] / Σ w [p = k/K]``
  and the weight ``Σ w [p = k/K] / Σ w`` of that bin. A calibrated forecast lies on the diagonal.

Both are read off one streaming table of area-weighted counts ``W[k, o]`` (:func:`exceedance_counts`; k = the
number of members above u, 0..K, and o = 0, 1), exactly: ``BS = Σ_{k,o} W[k,o] (k/K − o)² / Σ W``. Cells where
the truth or any member is NaN are left out. To put sources of different K on one diagram,
:func:`reliability_counts` moves each k/K to the nearest of K' + 1 common probabilities j/K' (exact when K
divides K'; a deterministic source lands on 0 and 1).

Example::

    >>> w = exceedance_counts(ens, truth, thresholds, regional_weights(area, lat, lon, REGIONS.values()))
    >>> brier_score(w)                                    # (region, threshold_quantile)
    >>> reliability_curve(reliability_counts(w, 8))      # frequency and weight per probability
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downscale.diagnostics.dims import MEMBER_DIM
from downscale.diagnostics.histogram import reduce_blocks

BRIER_QUANTILES: tuple[float, ...] = (0.99, 0.999)
ABOVE_DIM, OBSERVED_DIM, PROBABILITY_DIM = "n_above", "observed", "probability"


def _code_counts(codes: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """(R, size) weighted counts of the integer codes 0..size−1 (NaN codes skipped), one row per weight set."""
    v = np.asarray(codes, dtype=np.float64).ravel()
    ok = np.isfinite(v)
    idx = v[ok].astype(np.int64)
    out = np.empty((weights.shape[0], size))
    for r in range(weights.shape[0]):
        out[r] = np.bincount(idx, weights=np.broadcast_to(weights[r], np.shape(codes)).ravel()[ok], minlength=size)
    return out


def _counts_one(forecast: xr.DataArray, truth: xr.DataArray, valid: xr.DataArray, u: float, weights: xr.DataArray,
                member_dim: str, k: int) -> xr.DataArray:
    above = forecast > u
    hits = above.sum(member_dim) if member_dim in forecast.dims else above.astype(np.int64)
    codes = (hits + (k + 1) * (truth > u)).where(valid)
    counts, _ = reduce_blocks(lambda v, w: _code_counts(v, w, 2 * (k + 1)), codes, weights, 2 * (k + 1))
    return xr.DataArray(counts[0].reshape(2, k + 1), dims=(OBSERVED_DIM, ABOVE_DIM))


def exceedance_counts(forecast: xr.DataArray, truth: xr.DataArray, thresholds: xr.DataArray,
                      weights: xr.DataArray, member_dim: str = MEMBER_DIM) -> xr.DataArray:
    """Area-weighted counts ``W[k, o]`` of (members above the threshold, truth above it) for each threshold:
    ``(*thresholds.dims, n_above = 0..K, observed = 0, 1)``, in the units of ``weights`` (m²) × times.

    ``forecast`` has the truth's dims plus ``member_dim`` (an ensemble) or not (deterministic, K = 1);
    ``thresholds`` (kg m-2 s-1) may have dims of ``weights`` beyond the forecast's (e.g. ``region``: a
    threshold per region, each counted with that region's weights) and others (e.g. ``threshold_quantile``).
    Everything else is pooled. Lazy on dask (one streaming reduction per threshold).

    Example: ``exceedance_counts(ens, truth, xr.DataArray(5e-4), area)  # (n_above, observed)``
    """
    k = forecast.sizes[member_dim] if member_dim in forecast.dims else 1
    missing = [d for d in truth.dims if d not in forecast.dims]
    if missing:
        raise ValueError(f"exceedance_counts: forecast lacks the truth's dims {missing}")
    extra = [d for d in weights.dims if d not in forecast.dims and d not in thresholds.dims]
    if extra:
        raise ValueError(f"exceedance_counts: weights dims {extra} need a threshold each (give thresholds those dims)")
    valid = truth.notnull() & (forecast.notnull().all(member_dim) if member_dim in forecast.dims
                               else forecast.notnull())

    def one(u: float, at: dict[str, int]) -> xr.DataArray:
        w = weights.isel({d: i for d, i in at.items() if d in weights.dims}, drop=True)
        return _counts_one(forecast, truth, valid, u, w, member_dim, k)

    out = _map_thresholds(thresholds, one).assign_coords({ABOVE_DIM: np.arange(k + 1), OBSERVED_DIM: [0, 1]})
    return out.transpose(..., ABOVE_DIM, OBSERVED_DIM).rename("exceedance_counts").assign_attrs(
        n_members=k, long_name="area-weighted counts of (members above, truth above) the threshold")


def _map_thresholds(thresholds: xr.DataArray, fn, at: dict[str, int] | None = None) -> xr.DataArray:
    """``fn(u, {dim: index})`` for every element u of ``thresholds``, stacked back on its dims (and coords)."""
    at = at or {}
    if thresholds.ndim == 0:
        return fn(float(thresholds), at)
    d = thresholds.dims[0]
    parts = [_map_thresholds(thresholds.isel({d: i}, drop=True), fn, {**at, d: i}) for i in range(thresholds.sizes[d])]
    out = xr.concat(parts, dim=d)
    return out.assign_coords({d: thresholds[d].values}) if d in thresholds.coords else out


def brier_score(counts: xr.DataArray) -> xr.DataArray:
    """``BS = Σ W[k,o] (k/K − o)² / Σ W`` from :func:`exceedance_counts` (dimensionless, lower is better).

    Example: ``brier_score(exceedance_counts(ens, truth, u, area))``
    """
    k = counts.sizes[ABOVE_DIM] - 1
    p = xr.DataArray(np.arange(k + 1) / max(k, 1), dims=ABOVE_DIM)
    o = xr.DataArray([0.0, 1.0], dims=OBSERVED_DIM)
    dims = [ABOVE_DIM, OBSERVED_DIM]
    return ((p - o) ** 2 * counts).sum(dims) / counts.sum(dims)


def reliability_counts(counts: xr.DataArray, n_members: int | None = None) -> xr.DataArray:
    """:func:`exceedance_counts` on ``n_members + 1`` common probabilities j/``n_members`` (dim ``probability``):
    each k/K goes to the nearest j/n_members. Default: the counts' own K.

    Example: ``reliability_counts(exceedance_counts(det, truth, u, area), 8)  # mass on p = 0 and 1 only``
    """
    k = counts.sizes[ABOVE_DIM] - 1
    n = k if n_members is None else int(n_members)
    if n < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    target = np.rint(np.arange(k + 1) / max(k, 1) * n).astype(np.int64)
    probability = np.arange(n + 1) / n
    moved = counts.drop_vars(ABOVE_DIM, errors="ignore").assign_coords({PROBABILITY_DIM: (ABOVE_DIM, target)})
    out = moved.groupby(PROBABILITY_DIM).sum(ABOVE_DIM).reindex({PROBABILITY_DIM: np.arange(n + 1)}, fill_value=0.0)
    return out.assign_coords({PROBABILITY_DIM: probability}).rename("reliability_counts")


def reliability_curve(counts: xr.DataArray) -> xr.Dataset:
    """Reliability diagram from :func:`reliability_counts`: ``frequency`` (observed frequency of the event per
    forecast probability; NaN where the bin is empty) and ``weight`` (the bin's share of the area × time).

    Example: ``reliability_curve(reliability_counts(w, 8)).frequency``
    """
    per_bin = counts.sum(OBSERVED_DIM)
    freq = counts.sel({OBSERVED_DIM: 1}, drop=True) / per_bin.where(per_bin > 0)
    return xr.Dataset({"frequency": freq.assign_attrs(units="1", long_name="observed frequency of the event"),
                       "weight": (per_bin / per_bin.sum(PROBABILITY_DIM)).assign_attrs(
                           units="1", long_name="share of the area-weighted cells × times in the bin")})
