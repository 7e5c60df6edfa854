"""A per-cell scale of the residual, from the training split: where the diffusion works (``residual_scale``).

The fine-scale variability of precipitation is far from uniform over the cube: on the synthetic ``skill`` data
the true residual ``y − μ`` of the held-out member has a per-cell std from about 0.26 to 0.79 (normalized
units), larger where rain is heavy and in the large cells near tile centres, and the members' spread fell
shortest (0.92 of the truth's) where it is widest. With ``train.residual_scale: subgrid_rms`` the
diffusion models ``(y − μ) / s`` and a sample is ``μ + s·r̂``
(:class:`~downscale.models.downscaler.VideoDownscaler`), with ``s (6, nf, nf)`` from :func:`subgrid_rms_scale`:

1. per coarse cell ``J``, the RMS over training frames and over ``J``'s ``f × f`` fine cells of the normalized
   target's deviation from its (unweighted) coarse-cell mean — the variability that the coarse input cannot
   give μ. Not from μ itself, which does not exist before training;
2. interpolated to the fine grid by the cube-aware bilinear interpolation
   (:func:`data_catalog.upsample.upsample_coarse`), so ``s`` has no step at coarse-cell or tile edges;
3. floored at :data:`FLOOR` of its area-weighted RMS (a cell that never rains has deviation 0), then scaled so
   that its area-weighted mean square is 1 — the scaled residual keeps the magnitude that ``sigma_data``
   describes.

The map is stored in the model (a buffer saved with checkpoints and bundles), so generation applies the same
``s`` the training used. What it did on ``skill`` (the spread right, the finest scales too strong; off by default):
docs/skill.md, "Tried".
"""

from __future__ import annotations

import numpy as np
import torch

from data_catalog.prepare import PreparedDataset
from data_catalog.schema import TIME
from data_catalog.upsample import block_mean, repeat_blocks, upsample_coarse

#: The smallest scale, as a share of the map's area-weighted RMS before the final scaling.
FLOOR = 0.1
#: Frames read at most (spread evenly over the training frames of all members).
MAX_FRAMES = 2000
#: Frames read at once.
READ_FRAMES = 16


def _training_frames(prepared: PreparedDataset, max_frames: int) -> list[tuple[str, np.ndarray]]:
    frames = prepared.splits.training_frames()
    if not frames:
        raise ValueError(f"{prepared}: the train split has no clips, so there is no residual scale to measure")
    total = sum(len(f) for f in frames.values())
    step = max(1, -(-total // max_frames))
    return [(member, f[::step]) for member, f in sorted(frames.items())]


def subgrid_rms_scale(prepared: PreparedDataset, area_weights: torch.Tensor,
                      max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """The residual scale ``s (6, nf, nf)`` float32 of the module docstring, over at most ``max_frames`` training
    frames (every ``k``-th, ``k`` the smallest that keeps the count within it). ``area_weights (6, nf, nf)``: the
    fine cells' areas in any unit (the caller's :func:`~downscale.training.module.fine_area_weights`, read once)."""
    m = prepared.manifest
    f, nc = m.factor, m.coarse_resolution
    square = torch.zeros(6, nc, nc, dtype=torch.float64)
    count = 0
    for member, frames in _training_frames(prepared, max_frames):
        target = prepared.open_member(member)[m.target]
        for first in range(0, len(frames), READ_FRAMES):
            values = target.isel({TIME: frames[first:first + READ_FRAMES]}).values
            y = torch.from_numpy(np.asarray(prepared.stats.normalize(m.target, values.astype(np.float64))))
            deviation = y - repeat_blocks(block_mean(y, f), f)
            square += block_mean(deviation ** 2, f).sum(dim=0)
            count += y.shape[0]
    coarse_rms = (square / count).sqrt()
    scale = upsample_coarse(coarse_rms, f, "bilinear").clamp_min(0.0)
    area = area_weights.double()
    weights = area / area.sum()

    def rms(x: torch.Tensor) -> float:
        return float((weights * x ** 2).sum().sqrt())

    if rms(scale) == 0:
        raise ValueError(f"{prepared}: the target {m.target!r} has no fine-scale variability in the train split "
                         f"(every coarse cell uniform in every frame), so there is no residual scale to measure")
    scale = scale.clamp_min(FLOOR * rms(scale))
    return (scale / rms(scale)).float()
