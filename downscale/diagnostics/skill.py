"""Pointwise skill of deterministic and ensemble precipitation, area-weighted over named dims.

Shapes: a deterministic ``forecast`` and the ``truth`` share dims, e.g. ``(time, tile, grid_yt, grid_xt)``;
an ``ensemble`` has one more, ``member_dim``. ``weights`` is the cell area ``(tile, grid_yt, grid_xt)``
in m² (or a regional weight, :mod:`downscale.diagnostics.weights`). Units are those of the data
(kg m-2 s-1), squared for MSE. Every function is lazy on dask input and computes nothing.

* MSE, RMSE = √MSE (root after averaging), MAE, bias = ⟨f − y⟩.
* CRPS of a K-member ensemble (Gneiting & Raftery 2007; the "fair" form of Ferro 2014):

      CRPS      = 1/K Σ_k |x_k − y|  −  1/(2K²)     Σ_k Σ_l |x_k − x_l|
      CRPS_fair = 1/K Σ_k |x_k − y|  −  1/(2K(K−1)) Σ_k Σ_l |x_k − x_l|

  so ``CRPS_fair = CRPS − Σ_k Σ_l |x_k − x_l| / (2K²(K−1))``. The double sum comes from the sorted
  members x_(1) ≤ … ≤ x_(K): Σ_k Σ_l |x_k − x_l| = 2 Σ_i (2i − K − 1) x_(i). With K = 1 both reduce to
  |x − y|: the CRPS of a deterministic forecast is its MAE.
* Spread–skill ratio (Fortin et al. 2014): ``SSR = √((K+1)/K) · √⟨s²⟩ / √⟨(x̄ − y)²⟩`` with s² the
  unbiased ensemble variance; ≈ 1 for a calibrated ensemble, < 1 under-dispersive.
* Rank histogram (Talagrand): the frequency of the truth's rank 0..K among the members; ties (many
  exact zeros in precipitation) are shared equally among the ranks they span, so the histogram is
  deterministic and flat for a calibrated ensemble even with ties.

Example::

    >>> crps = weighted_mean(crps_ensemble(ens, truth), area)   # fair; fair=False: standard           # scalar, kg m-2 s-1
    >>> ssr = spread_skill_ratio(ens, truth, area)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from downscale.diagnostics.dims import MEMBER_DIM, require_dims
from downscale.diagnostics.weights import weighted_mean, weighted_sum


def _check_pair(forecast: xr.DataArray, truth: xr.DataArray, what: str) -> None:
    missing = [d for d in truth.dims if d not in forecast.dims]
    if missing:
        raise ValueError(f"{what}: forecast {forecast.name!r} lacks the truth's dims {missing} "
                         f"(forecast {tuple(forecast.dims)}, truth {tuple(truth.dims)})")


def mse(forecast: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray,
        dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted mean squared error over ``dims`` (default: every dim of ``forecast``; an ensemble
    then gives the mean single-member MSE). Units: (kg m-2 s-1)².

    Example: ``mse(ens.mean("member"), truth, area)`` is the MSE of the ensemble mean."""
    _check_pair(forecast, truth, "mse")
    return weighted_mean((forecast - truth) ** 2, weights, dims)


def rmse(forecast: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray,
         dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """√ of :func:`mse` (the root is taken after averaging). Units: kg m-2 s-1.

    Example: ``rmse(ens.mean("member"), truth, area)``
    """
    return np.sqrt(mse(forecast, truth, weights, dims))


def mae(forecast: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray,
        dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted mean absolute error over ``dims`` (default: all). Units: kg m-2 s-1.

    Example: ``mae(truth + c, truth, area) == c``."""
    _check_pair(forecast, truth, "mae")
    return weighted_mean(abs(forecast - truth), weights, dims)


def bias(forecast: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray,
         dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted mean of ``forecast − truth`` over ``dims`` (default: all). Units: kg m-2 s-1.

    Example: ``bias(truth + c, truth, area) == c``
    """
    _check_pair(forecast, truth, "bias")
    return weighted_mean(forecast - truth, weights, dims)


def crps_estimators(members: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise ``(fair, standard)`` CRPS (module docstring) of ``members (..., K)`` (members on the last axis)
    against ``truth (...)``, in float64, in the units of the data. The one implementation of both estimators:
    the report (through :func:`crps_fair_and_standard`) and training validation
    (:class:`downscale.evaluation.pooled.PooledScores`) call it. K = 1 gives |x − y| for both.

    Example: ``fair, standard = crps_estimators(np.moveaxis(ens, 0, -1), truth)``
    """
    x = np.asarray(members, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if x.shape[:-1] != y.shape:
        raise ValueError(f"crps_estimators: members {x.shape} (members last) do not fit the truth {y.shape}")
    k = x.shape[-1]
    skill = np.abs(x - y[..., None]).mean(-1)
    if k == 1:
        return skill, skill
    coeff = 2.0 * np.arange(1, k + 1) - k - 1                # Σ_k Σ_l |x_k − x_l| = 2 Σ_i (2i − K − 1) x_(i)
    pair = 2.0 * np.sum(np.sort(x, axis=-1) * coeff, axis=-1)
    return skill - pair / (2.0 * k * (k - 1)), skill - pair / (2.0 * k * k)


def crps_fair_and_standard(ensemble: xr.DataArray, truth: xr.DataArray,
                           member_dim: str = MEMBER_DIM) -> tuple[xr.DataArray, xr.DataArray]:
    """Pointwise ``(fair, standard)`` CRPS of ``ensemble`` against ``truth`` (:func:`crps_estimators`, one sort
    of the members). ``standard`` is the CRPS of this K-member ensemble (its empirical distribution, as
    ``properscoring.crps_ensemble``); ``fair`` estimates the CRPS the ensemble would get with infinitely many
    members. Units: kg m-2 s-1 (float64); both are |x − y| for K = 1. On dask the member dim is gathered into
    one chunk (memory: one chunk × K).

    Example: ``fair, standard = crps_fair_and_standard(ens, truth)``
    """
    require_dims(ensemble, [member_dim], "crps_fair_and_standard")
    _check_pair(ensemble, truth, "crps_fair_and_standard")
    if ensemble.chunks is not None:
        ensemble = ensemble.chunk({member_dim: -1})
    fair, standard = xr.apply_ufunc(crps_estimators, ensemble, truth, input_core_dims=[[member_dim], []],
                                    output_core_dims=[[], []], dask="parallelized",
                                    output_dtypes=[np.float64, np.float64])
    return fair, standard


def crps_ensemble(ensemble: xr.DataArray, truth: xr.DataArray, member_dim: str = MEMBER_DIM,
                  fair: bool = True) -> xr.DataArray:
    """Pointwise CRPS of ``ensemble`` (``member_dim`` + the truth's dims) against ``truth``, one estimator of
    :func:`crps_fair_and_standard`: ``fair`` (default) or the standard one (``fair=False``, as
    ``properscoring.crps_ensemble``). Units: kg m-2 s-1. A single member gives |x − y| in both forms.

    Example: ``weighted_mean(crps_ensemble(ens, truth), area)``."""
    fair_crps, standard_crps = crps_fair_and_standard(ensemble, truth, member_dim)
    return fair_crps if fair else standard_crps


def spread_skill_ratio(ensemble: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray,
                       member_dim: str = MEMBER_DIM, dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """``√((K+1)/K) · √⟨s²⟩ / RMSE(ensemble mean)`` over ``dims`` (default: all of the truth's dims);
    dimensionless, ≈ 1 when members and truth are exchangeable. Needs K ≥ 2.

    Example: ``spread_skill_ratio(ens, truth, area)  # ≈ 1 when calibrated``
    """
    require_dims(ensemble, [member_dim], "spread_skill_ratio")
    k = ensemble.sizes[member_dim]
    if k < 2:
        raise ValueError(f"spread_skill_ratio needs at least 2 members along {member_dim!r}, got {k}")
    dims = list(truth.dims) if dims is None else list(dims)
    spread = weighted_mean(ensemble.var(member_dim, ddof=1), weights, dims)
    skill = weighted_mean((ensemble.mean(member_dim) - truth) ** 2, weights, dims)
    return np.sqrt((k + 1) / k * spread / skill)


def rank_histogram(ensemble: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray | None = None,
                   member_dim: str = MEMBER_DIM, dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Relative frequency of the truth's rank r = 0..K among the K members, dim ``rank``, summing to 1.

    Rank r means r members lie below the truth; a truth tied with e members spreads weight 1/(e+1)
    over ranks n_below .. n_below + e. Counts are area-weighted when ``weights`` is given. Flat
    (1/(K+1) each) for a calibrated ensemble, U-shaped for an under-dispersive one. Reduced over
    ``dims`` (default: all of the truth's dims).

    Example: ``rank_histogram(ens, truth, area)  # (rank: K + 1,)``
    """
    require_dims(ensemble, [member_dim], "rank_histogram")
    _check_pair(ensemble, truth, "rank_histogram")
    k = ensemble.sizes[member_dim]
    below = (ensemble < truth).sum(member_dim)
    ties = (ensemble == truth).sum(member_dim)
    rank = xr.DataArray(np.arange(k + 1), dims="rank", coords={"rank": np.arange(k + 1)})
    dims = list(truth.dims) if dims is None else list(dims)
    share = 1.0 / (ties + 1.0)
    counts = []
    for r in range(k + 1):   # one lazy reduction per rank: no (rank × data) intermediate
        hit = ((below <= r) & (r <= below + ties)) * share
        hit = hit.where(truth.notnull())
        counts.append(weighted_sum(hit, weights, dims) if weights is not None else hit.sum(dims))
    total = xr.concat(counts, dim=rank)
    return (total / total.sum("rank")).rename("rank_histogram")
