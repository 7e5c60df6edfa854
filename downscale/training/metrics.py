"""Validation metrics on torch tensors, in physical units (kg m-2 s-1), summable across batches and ranks.

Shapes: an ensemble is ``(K, ..., 6, H, W)`` (members first), truth and deterministic predictions
``(..., 6, H, W)``, area weights ``(6, H, W)`` normalized to mean 1 (so a weighted mean over the
sphere is ``mean(w * x)``).

* Fair CRPS of a K-member ensemble (Ferro 2014), per point

      CRPS_fair = 1/K Σ_k |x_k − y|  −  1/(2 K (K − 1)) Σ_k Σ_l |x_k − x_l|

  The double sum is computed from the sorted members x_(1) ≤ … ≤ x_(K):
  Σ_k Σ_l |x_k − x_l| = 2 Σ_i (2i − K − 1) x_(i)   (i = 1..K), O(K log K) instead of O(K²) memory.
* MAE of the deterministic mean μ, area weighted.
* Tail quantiles of pooled values (every point, time and member counted once, unweighted) from a
  fixed log-spaced histogram (:class:`LogHistogram`): counts add across batches and ranks, so the
  99.9th/99.99th percentiles of a whole validation set cost a few kB, whatever its size.
"""

from __future__ import annotations

import math

import torch


def fair_crps(ensemble: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Pointwise fair CRPS: ``ensemble (K, *S)``, ``truth (*S)`` → ``(*S)``; needs K ≥ 2."""
    k = ensemble.shape[0]
    if k < 2:
        raise ValueError(f"fair CRPS needs at least 2 ensemble members, got {k}")
    if ensemble.shape[1:] != truth.shape:
        raise ValueError(f"ensemble {tuple(ensemble.shape)} and truth {tuple(truth.shape)} do not match")
    skill = (ensemble - truth.unsqueeze(0)).abs().mean(0)
    ordered = ensemble.sort(dim=0).values
    rank = torch.arange(1, k + 1, device=ensemble.device, dtype=ensemble.dtype)
    coeff = (2 * rank - k - 1).view(k, *([1] * truth.dim()))
    pair_sum = 2 * (coeff * ordered).sum(0)
    return skill - pair_sum / (2 * k * (k - 1))


def area_weighted_mean(x: torch.Tensor, area_weights: torch.Tensor) -> torch.Tensor:
    """Mean of ``x (..., 6, H, W)`` over everything, each cell weighted by ``area_weights (6, H, W)`` (mean 1)."""
    return (x * area_weights).mean()


class LogHistogram:
    """Counts of non-negative values in log-spaced bins, for quantiles of very large pooled samples.

    Bins: values ≤ ``floor`` go to bin 0 (zeros, drizzle); above it ``bins`` bins equally spaced in
    log10 up to ``ceiling`` (values above land in the last bin). The relative width of a bin is
    ``10**((log10(ceiling) − log10(floor)) / bins) − 1`` (0.5 % for the defaults), which bounds the
    error of a quantile read off the counts by linear interpolation inside its bin.
    """

    def __init__(self, floor: float = 1e-10, ceiling: float = 1e-1, bins: int = 4000,
                 device: torch.device | str = "cpu") -> None:
        if not 0 < floor < ceiling:
            raise ValueError(f"need 0 < floor < ceiling, got {floor}, {ceiling}")
        self.log_floor, self.log_ceiling, self.bins = math.log10(floor), math.log10(ceiling), bins
        self.counts = torch.zeros(bins + 1, dtype=torch.float64, device=device)

    def update(self, values: torch.Tensor) -> None:
        """Add every element of ``values`` (physical units, ≥ 0) to the counts."""
        v = values.detach().reshape(-1).double().clamp_min(0.0)
        pos = (torch.log10(v.clamp_min(1e-300)) - self.log_floor) / (self.log_ceiling - self.log_floor)
        idx = torch.where(v <= 10.0 ** self.log_floor, torch.zeros_like(pos),
                          1 + (pos * self.bins).floor().clamp(0, self.bins - 1))
        self.counts = self.counts.to(v.device)
        self.counts.index_add_(0, idx.long(), torch.ones_like(v))

    def bin_edges(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper value of bins ``index`` (bin 0 spans [0, floor])."""
        step = (self.log_ceiling - self.log_floor) / self.bins
        lo = torch.where(index == 0, torch.zeros_like(index, dtype=torch.float64),
                         10.0 ** (self.log_floor + (index - 1).double() * step))
        hi = torch.where(index == 0, torch.full_like(index, 10.0 ** self.log_floor, dtype=torch.float64),
                         10.0 ** (self.log_floor + index.double() * step))
        return lo, hi

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 < q < 1) of everything counted, interpolated linearly inside its bin."""
        total = float(self.counts.sum())
        if total == 0:
            return float("nan")
        cdf = torch.cumsum(self.counts, 0)
        target = q * total
        i = int(torch.searchsorted(cdf, torch.tensor([target], dtype=cdf.dtype, device=cdf.device)).item())
        i = min(i, self.bins)
        below = float(cdf[i - 1]) if i > 0 else 0.0
        inside = float(self.counts[i])
        frac = 0.0 if inside == 0 else (target - below) / inside
        lo, hi = self.bin_edges(torch.tensor(i, device=cdf.device))
        return float(lo + frac * (hi - lo))


def tail_ratios(predicted: LogHistogram, truth: LogHistogram,
                quantiles: tuple[float, ...] = (0.999, 0.9999)) -> dict[float, float]:
    """predicted / true value of each quantile of the pooled distributions."""
    out = {}
    for q in quantiles:
        t = truth.quantile(q)
        out[q] = predicted.quantile(q) / t if t > 0 else float("nan")
    return out


def tail_error(ratios: dict[float, float]) -> float:
    """Mean |ratio − 1| over the tail quantiles: 0 for a perfect tail."""
    return sum(abs(r - 1.0) for r in ratios.values()) / len(ratios)
