"""The network's conditioning input, built on the device from normalized coarse predictors and static fields.

One function shared by training and inference, so the two can never disagree about channel order,
upsampling or broadcasting::

    cond = concat(upsample(coarse, f), static broadcast over T)      (B, T, C_pred + C_static, …)

* ``cube`` geometry: ``coarse (B, T, C, 6, nc, nc)``, ``static (B, S, 6, nf, nf)`` or ``(S, 6, nf, nf)``;
  cube-aware bilinear upsampling across tile seams (:func:`data_catalog.upsample.upsample_coarse`).
* ``patch`` geometry: ``coarse (B, T, C, pc, pc)``, ``static (B, S, P, P)``; plain bilinear inside the
  patch (edges clamped), ``P = pc · f``.

Channel order is the bundle's ``predictors`` then ``static_features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data_catalog.upsample import upsample_coarse
from downscale.models.config import Geometry


def build_conditioning(coarse: torch.Tensor, static: torch.Tensor, factor: int,
                       geometry: Geometry = "cube") -> torch.Tensor:
    """``(B, T, C_pred + C_static, …)`` from normalized ``coarse`` and ``static`` (module docstring)."""
    b, t, c = coarse.shape[:3]
    if geometry == "cube":
        up = upsample_coarse(coarse, factor, "bilinear")
    elif geometry == "patch":
        pc = coarse.shape[-1]
        up = F.interpolate(coarse.reshape(b * t, c, pc, pc), scale_factor=factor, mode="bilinear",
                           align_corners=False).reshape(b, t, c, pc * factor, pc * factor)
    else:
        raise ValueError(f"unknown geometry {geometry!r}: use 'cube' or 'patch'")
    static = static.to(up.dtype)
    if static.ndim == up.ndim - 2:  # one static field set for the whole batch
        static = static.unsqueeze(0).expand(b, *static.shape)
    if static.shape[0] != b or static.shape[2:] != up.shape[3:]:
        raise ValueError(f"static fields {tuple(static.shape)} do not fit the upsampled predictors {tuple(up.shape)}")
    return torch.cat([up, static.unsqueeze(1).expand(-1, t, *static.shape[1:])], dim=2)
