"""Validation metrics on torch tensors, in physical units (kg m-2 s-1), summable across batches and ranks.

Shapes: an ensemble is ``(K, ..., 6, H, W)`` (members first), truth and deterministic predictions
``(..., 6, H, W)``.

* CRPS of a K-member ensemble, per point, in both estimators (as the report names them,
  :mod:`downscale.diagnostics.skill`)::

      CRPS_standard = 1/K Σ_k |x_k − y|  −  1/(2 K²)       Σ_k Σ_l |x_k − x_l|   (this K-member ensemble)
      CRPS_fair     = 1/K Σ_k |x_k − y|  −  1/(2 K (K − 1)) Σ_k Σ_l |x_k − x_l|   (estimates K → ∞; Ferro 2014)

  The double sum is computed from the sorted members x_(1) ≤ … ≤ x_(K):
  Σ_k Σ_l |x_k − x_l| = 2 Σ_i (2i − K − 1) x_(i)   (i = 1..K), O(K log K) instead of O(K²) memory.
* Tail quantiles of the pooled values (every point, time and member), **area weighted on the report's bins**
  (:data:`downscale.diagnostics.histogram.DEFAULT_BINS`, read off as the report does,
  :func:`downscale.diagnostics.distribution.histogram_quantiles`): validation's ``q99.99`` is the report's
  statistic, on the validation clips. :class:`TailCounts` adds counts across batches and ranks, so the
  quantiles of a whole validation set cost a few tens of kB.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import BIN_DIM, DEFAULT_BINS, LogBins, weighted_counts


def _pair_sum(ensemble: torch.Tensor) -> torch.Tensor:
    """``Σ_k Σ_l |x_k − x_l|`` over the member dim 0 of ``ensemble (K, *S)`` → ``(*S)``."""
    k = ensemble.shape[0]
    ordered = ensemble.sort(dim=0).values
    rank = torch.arange(1, k + 1, device=ensemble.device, dtype=ensemble.dtype)
    coeff = (2 * rank - k - 1).view(k, *([1] * (ensemble.dim() - 1)))
    return 2 * (coeff * ordered).sum(0)


def _check(ensemble: torch.Tensor, truth: torch.Tensor) -> int:
    if ensemble.shape[1:] != truth.shape:
        raise ValueError(f"ensemble {tuple(ensemble.shape)} and truth {tuple(truth.shape)} do not match")
    return ensemble.shape[0]


def fair_crps(ensemble: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Pointwise fair CRPS: ``ensemble (K, *S)``, ``truth (*S)`` → ``(*S)``; needs K ≥ 2."""
    k = _check(ensemble, truth)
    if k < 2:
        raise ValueError(f"fair CRPS needs at least 2 ensemble members, got {k}")
    skill = (ensemble - truth.unsqueeze(0)).abs().mean(0)
    return skill - _pair_sum(ensemble) / (2 * k * (k - 1))


def standard_crps(ensemble: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Pointwise standard CRPS of the K-member empirical distribution: ``(K, *S)``, ``(*S)`` → ``(*S)``."""
    k = _check(ensemble, truth)
    skill = (ensemble - truth.unsqueeze(0)).abs().mean(0)
    return skill - _pair_sum(ensemble) / (2 * k * k)


class TailCounts:
    """Area-weighted counts of values on the report's log bins, for pooled tail quantiles of many batches."""

    def __init__(self, bins: LogBins = DEFAULT_BINS) -> None:
        self.bins = bins
        self.counts = torch.zeros(bins.size, dtype=torch.float64)

    def update(self, values: torch.Tensor, weights: torch.Tensor) -> None:
        """Add ``values (..., 6, H, W)`` (kg m-2 s-1), each weighted by ``weights`` (broadcast, e.g. cell area)."""
        v = values.detach().double().cpu().numpy()
        w = weights.detach().double().cpu().numpy()          # broadcast inside weighted_counts, not copied
        self.counts = self.counts.cpu() + torch.from_numpy(weighted_counts(v, w[None], self.bins)[0])

    def quantiles(self, quantiles: tuple[float, ...]) -> dict[float, float]:
        """The pooled quantiles (kg m-2 s-1) of everything counted, as the report reads them; NaN when empty."""
        edges = self.bins.edges()
        hist = xr.DataArray(self.counts.cpu().numpy(), dims=[BIN_DIM],
                            coords={"lower": (BIN_DIM, edges[:-1]), "upper": (BIN_DIM, edges[1:])})
        values = histogram_quantiles(hist, quantiles).values
        return {q: float(v) for q, v in zip(quantiles, np.atleast_1d(values), strict=True)}


def tail_ratios(predicted: TailCounts, truth: TailCounts,
                quantiles: tuple[float, ...] = (0.999, 0.9999)) -> dict[float, float]:
    """predicted / true value of each pooled quantile."""
    p, t = predicted.quantiles(quantiles), truth.quantiles(quantiles)
    return {q: p[q] / t[q] if t[q] > 0 else float("nan") for q in quantiles}


def tail_error(ratios: dict[float, float]) -> float:
    """Mean |ratio − 1| over the tail quantiles: 0 for a perfect tail."""
    return sum(abs(r - 1.0) for r in ratios.values()) / len(ratios)
