"""No seams in time: a block of L >= T frames is sampled as one state, fusing overlapping T-frame
windows at every denoiser call (MultiDiffusion, Bar-Tal et al. 2023).

The network denoises clips of exactly T frames, ``(B, T, C, …)`` (``…`` = ``6, H, W`` on the cube, ``H, W``
on a patch; treated generically). The block state is ``x (B, L, C, …)``. At each denoiser call the
windows starting at :func:`window_starts` (``0, stride, 2·stride, …``, the last ending at L) are denoised
and averaged per frame with a taper weight ``w`` (:func:`window_weights`)::

    D(x; σ)_t = Σ_s w_{t−s}·D_s(x[:, s:s+T]; σ)_{t−s} / Σ_s w_{t−s}     (over windows s with s <= t < s + T)

so neighbouring windows agree on the frames they share and the sample has no jump where they meet.
``stride == T`` gives independent windows (the STVD paper's setting); ``stride < T`` overlaps them at the
cost of :func:`count_window_evaluations` window evaluations per call instead of ``⌈L/T⌉``. In the tests' toy
(T = 5, frames coupled only within a window) the mean step across joins is ~3× the step inside windows at
stride T, ~1.2–1.5× at stride T − 1 (one shared frame), and within 10 % at stride 2.

Callback (:data:`WindowDenoiser`), one network call per window::

    denoise_window(x_window (B, T, C, …), sigma (B,), start: int) -> (B, T, C, …)

``x_window = x[:, start:start + T]`` in the block's dtype, ``sigma`` the block's; the callback slices its
conditioning the same way (``cond[:, start:start + T]``). Memory is set by B (members per call), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from downscale.models.edm import Denoiser

Taper = Literal["flat", "triangular"]
#: ``(x_window (B, T, …), sigma (B,), start)`` → the denoised window ``(B, T, …)``; see the module docstring.
WindowDenoiser = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def window_starts(length: int, frames: int, stride: int) -> list[int]:
    """First frames of the T-frame windows over ``length`` frames: ``0, stride, 2·stride, …`` plus
    ``length − frames`` if needed, so the last window ends exactly at ``length``."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got frames={frames}")
    if length < frames:
        raise ValueError(f"length must be >= frames (a block holds at least one window), got length={length}, "
                         f"frames={frames}")
    if not 1 <= stride <= frames:
        raise ValueError(f"need 1 <= stride <= frames (stride > frames leaves frames unseen), got stride={stride}, "
                         f"frames={frames}")
    starts = list(range(0, length - frames + 1, stride))
    return starts if starts[-1] == length - frames else [*starts, length - frames]


def count_window_evaluations(length: int, frames: int, stride: int) -> int:
    """Window evaluations per fused denoiser call (multiply by the sampler's NFE for a sample's cost)."""
    return len(window_starts(length, frames, stride))


def window_weights(frames: int, taper: Taper) -> torch.Tensor:
    """Per-frame weight of a window, ``(frames,)`` float64, > 0 everywhere so every frame counts:
    ``flat`` = 1, ``triangular`` = ``min(k + 1, frames − k)`` (1, 2, …, peak, …, 2, 1)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got frames={frames}")
    k = torch.arange(frames, dtype=torch.float64)
    if taper == "flat":
        return torch.ones_like(k)
    if taper == "triangular":
        return torch.minimum(k + 1, frames - k)
    raise ValueError(f"taper must be 'flat' or 'triangular', got {taper!r}")


def _fusion_weights(length: int, frames: int, starts: list[int], taper: Taper) -> torch.Tensor:
    """Normalized weight of frame ``k`` of window ``starts[w]``, ``(W, frames)`` float64: ``w_k / Σ_s w_{t−s}``
    at block frame ``t = starts[w] + k``, so each frame's weights sum to 1 over the windows holding it (the
    starts cover every frame)."""
    weights = window_weights(frames, taper)
    total = torch.zeros(length, dtype=torch.float64)
    for s in starts:
        total[s:s + frames] += weights
    return torch.stack([weights / total[s:s + frames] for s in starts])


def _denoise_window(denoise_window: WindowDenoiser, x: torch.Tensor, sigma: torch.Tensor, start: int,
                    frames: int) -> torch.Tensor:
    """``D_s (B, T, …)`` of the window at ``start``, checked to have the window's shape."""
    x_window = x[:, start:start + frames]
    out = denoise_window(x_window, sigma, start)
    if out.shape != x_window.shape:
        raise ValueError(f"denoise_window returned {tuple(out.shape)} for the window {tuple(x_window.shape)} "
                         f"at start {start}")
    return out


def fuse_windows(window_fn: Callable[[int], torch.Tensor], length: int, frames: int, stride: int,
                 taper: Taper = "triangular") -> torch.Tensor:
    """``Σ_w weight·window_fn(s_w)`` placed at frames ``s_w … s_w + T − 1`` of a ``(B, length, …)`` result, for the
    starts of :func:`window_starts`; ``window_fn(start)`` returns ``(B, T, …)``. Each frame's weights sum to 1."""
    starts = window_starts(length, frames, stride)
    fused = None
    for s, w in zip(starts, _fusion_weights(length, frames, starts, taper), strict=True):
        out = window_fn(s)
        if fused is None:
            fused = out.new_zeros(out.shape[0], length, *out.shape[2:])
        fused[:, s:s + frames] += w.to(out).view(1, frames, *[1] * (out.ndim - 2)) * out
    return fused


def fused_denoiser(denoise_window: WindowDenoiser, length: int, frames: int, stride: int,
                   taper: Taper = "triangular") -> Denoiser:
    """The block denoiser ``D(x (B, length, …), sigma (B,)) → (B, length, …)`` fusing the T-frame windows at
    :func:`window_starts` with ``taper`` weights; ``denoise_window`` as in the module docstring. The output has
    the dtype of ``x``."""
    window_starts(length, frames, stride)  # a bad geometry fails here, not at the first call

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != length:
            raise ValueError(f"x must be (B, {length}, C, …), got {tuple(x.shape)}")
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be ({x.shape[0]},), got {tuple(sigma.shape)}")
        return fuse_windows(lambda s: _denoise_window(denoise_window, x, sigma, s, frames).to(x.dtype),
                            length, frames, stride, taper)

    return denoise
