"""Upsampling of coarse cube-sphere fields to the fine grid, on tensors, without seams at tile edges.

:func:`upsample_coarse` maps ``(..., 6, n, n)`` to ``(..., 6, n·f, n·f)`` (torch, any device, differentiable):

* ``nearest``: every fine cell takes the value of the coarse cell that contains it.
* ``bilinear``: cube-aware bilinear interpolation. The coarse field is first padded with a 1-cell halo
  from the neighbouring tiles (:func:`data_catalog.halo.halo_pad`); in the tile's index space coarse
  centre ``J`` sits at ``J`` and fine centre ``j`` at

      u_j = (j + ½) / f − ½,

  so ``u ∈ [−½ + 1/(2f), n − ½ − 1/(2f)]`` lies between padded centres and bilinear weights are taken
  from the halo cells at tile edges — never from zero padding or a clamped border. On the padded grid
  this is exactly ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``
  followed by a crop of ``f`` fine cells on every side.

``mass_correct=True`` then makes each coarse block's (optionally area-weighted) mean of the result equal
the coarse value: ``multiplicative`` (``y ← y · x / ⟨y⟩``, for positive fields such as precipitation;
a block whose mean is 0 takes the coarse value) or ``additive`` (``y ← y + x − ⟨y⟩``, for signed fields).

A multiplicative ratio ``r = x / ⟨y⟩`` has no upper bound: a block sampled nearly dry under a wet coarse cell
turns its one wet fine cell into a spike of up to f² times the coarse mean. With ``max_ratio = R`` the
correction is **bounded**: blocks with ``r ≤ R`` are scaled as before; a block with ``r > R`` is scaled by
``R`` and the rest of the missing mass is spread uniformly over the block::

    y ← y · r                          r ≤ R
    y ← y · R + (x − R·⟨y⟩)            r > R        (so ⟨y⟩ = x still holds exactly)

so no value grows beyond ``R · y + x``: mass stays exact and the correction cannot create a spike.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from data_catalog.halo import halo_pad
from data_catalog.schema import N_TILES

Mode = Literal["nearest", "bilinear"]
Correction = Literal["multiplicative", "additive"]


def _check(x: torch.Tensor, factor: int) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"upsample_coarse takes a torch tensor, got {type(x).__name__}")
    if x.ndim < 3 or x.shape[-3] != N_TILES or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"upsample_coarse needs (..., {N_TILES}, n, n) with tile, y, x last, got {tuple(x.shape)}")
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"upsampling factor must be a positive integer, got {factor!r}")
    return int(x.shape[-1])


def block_mean(y: torch.Tensor, factor: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over ``factor × factor`` blocks of ``(..., 6, N, N)`` → ``(..., 6, N/f, N/f)``; weighted by
    ``weight (6, N, N)`` (e.g. fine cell area) when given."""
    *lead, t, ny, nx = y.shape
    f = factor
    if weight is None:
        return y.reshape(*lead, t, ny // f, f, nx // f, f).mean(dim=(-3, -1))
    w = weight.to(y.dtype)
    num = (y * w).reshape(*lead, t, ny // f, f, nx // f, f).sum(dim=(-3, -1))
    den = w.reshape(t, ny // f, f, nx // f, f).sum(dim=(-3, -1))
    return num / den


def repeat_blocks(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Each cell of ``(..., n, n)`` repeated into a ``factor × factor`` block: ``(..., n·f, n·f)``."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def upsample_coarse(
    x: torch.Tensor,
    factor: int,
    mode: Mode = "bilinear",
    mass_correct: bool = False,
    correction: Correction = "multiplicative",
    fine_area: torch.Tensor | None = None,
) -> torch.Tensor:
    """Upsample coarse tiles ``x (..., 6, n, n)`` by ``factor`` to ``(..., 6, n·factor, n·factor)``.

    Args:
        x: coarse field, tile, y, x last (any leading dims, e.g. batch, time, channel).
        factor: the fine/coarse resolution ratio (from the catalog, never from shapes).
        mode: ``nearest`` or cube-aware ``bilinear`` (module docstring).
        mass_correct: rescale each coarse block so its mean equals the coarse value.
        correction: ``multiplicative`` (positive fields, e.g. precipitation) or ``additive``.
        fine_area: fine cell areas ``(6, n·f, n·f)``; if given, block means are area-weighted.

    Example::

        >>> up = upsample_coarse(torch.rand(2, 5, 6, 48, 48), 8, "bilinear")   # (2, 5, 6, 384, 384)
    """
    n = _check(x, factor)
    f = factor
    if mode == "nearest":
        y = repeat_blocks(x, f)
    elif mode == "bilinear":
        lead = x.shape[:-3]
        padded = halo_pad(x, 1).reshape(-1, 1, n + 2, n + 2)
        y = F.interpolate(padded, scale_factor=f, mode="bilinear", align_corners=False)
        y = y[..., f:-f, f:-f].reshape(*lead, N_TILES, n * f, n * f)
    else:
        raise ValueError(f"unknown upsampling mode {mode!r}: use 'nearest' or 'bilinear'")
    return correct_block_means(y, x, f, fine_area, correction) if mass_correct else y


def correct_block_means(y: torch.Tensor, x: torch.Tensor, factor: int, fine_area: torch.Tensor | None = None,
                        correction: Correction = "multiplicative", max_ratio: float | None = None) -> torch.Tensor:
    """Make each ``factor × factor`` block mean of ``y (..., 6, N, N)`` (area-weighted by ``fine_area (6, N, N)``
    if given) equal ``x (..., 6, N/f, N/f)``: ``multiplicative`` ``y ← y · x / ⟨y⟩`` (a block whose mean is 0
    takes ``x`` uniformly; with ``max_ratio`` R the ratio is bounded by R and the rest of the mass added
    uniformly, module docstring) or ``additive`` ``y ← y + x − ⟨y⟩``. Leading dims of ``x`` broadcast against
    ``y``'s. ``y`` must be ≥ 0 for the multiplicative correction."""
    f = factor
    mean = block_mean(y, f, fine_area)
    x = x.to(mean.dtype).expand_as(mean)
    if correction == "multiplicative":
        if max_ratio is not None and not max_ratio >= 1:
            raise ValueError(f"max_ratio must be >= 1 (or None: unbounded), got {max_ratio}")
        ratio = x / torch.where(mean != 0, mean, torch.ones_like(mean))
        if max_ratio is None:
            scale = torch.where(mean != 0, ratio, torch.zeros_like(ratio))
            extra = torch.where(mean != 0, torch.zeros_like(x), x)
        else:
            bounded = (mean != 0) & (ratio <= max_ratio)
            scale = torch.where(bounded, ratio, torch.full_like(ratio, max_ratio))
            extra = torch.where(bounded, torch.zeros_like(x), (x - max_ratio * mean).clamp_min(0))
        return y * repeat_blocks(scale, f) + repeat_blocks(extra, f)
    if correction == "additive":
        return y + repeat_blocks(x - mean, f)
    raise ValueError(f"unknown mass correction {correction!r}: use 'multiplicative' or 'additive'")
