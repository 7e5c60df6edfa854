"""Heavy-rain loss weights: more of the training loss where the coarse input rains hard.

The loss of a cell is weighted by ``w = (1 + P_c / ε)^γ``, ``P_c ≥ 0`` the coarse precipitation at the cell (the
conditioning's bilinear upsample of the coarse input, kg m-2 s-1), ``ε`` the precipitation offset of the log
transform (kg m-2 s-1; 1 mm/day by default) and ``γ ≥ 0`` the exponent (``train.heavy_rain_weighting``; 0: every
rain rate alike). The weights depend on the input only, never on the fine target, so the denoiser that minimizes
the weighted loss is the same conditional expectation as without them: they move the network's capacity and
gradient towards heavy rain without changing what it is asked to learn (a weight that grew with the *target*
would pull the sampled distribution towards heavy values by construction).

With ``γ = 1`` on the `skill` data the coarse cells above their 99th percentile (≥ 28 mm/day) get 11× the mean
weight and 11 % of the total, instead of 1 %.
"""

from __future__ import annotations

import torch


def heavy_rain_weights(coarse_rate: torch.Tensor, epsilon: float, exponent: float) -> torch.Tensor:
    """``(1 + P_c / ε)^γ`` for coarse precipitation ``coarse_rate`` (kg m-2 s-1, any shape; negatives count as 0),
    float32, same shape. ``epsilon > 0`` in kg m-2 s-1, ``exponent ≥ 0``."""
    if not epsilon > 0:
        raise ValueError(f"heavy-rain weights need a precipitation offset epsilon > 0 kg m-2 s-1, got {epsilon}")
    if not exponent >= 0:
        raise ValueError(f"heavy-rain weight exponent must be ≥ 0, got {exponent}")
    return (1.0 + coarse_rate.float().clamp_min(0.0) / epsilon) ** exponent


def combined_loss_weights(rain: torch.Tensor, area: torch.Tensor | None) -> torch.Tensor:
    """``rain · area`` (area broadcast over the leading dims of ``rain``, or none) divided by its mean: the
    per-cell loss weights of a batch, mean 1, shaped like ``rain``."""
    w = rain if area is None else rain * area.to(rain.dtype).expand_as(rain)
    return w / w.mean()
