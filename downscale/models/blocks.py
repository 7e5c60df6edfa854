"""Building blocks of the video UNet: noise embedding, residual block, spatial and temporal mixing.

Every block works on frames folded into the batch, ``x (B·T, C, *S)`` with ``S = (6, H, W)`` in cube
geometry and ``S = (H, W)`` in patch geometry, and has the same call ``block(x, emb, frames)`` so the
UNet can checkpoint any of them alike. ``emb (B·T, E)`` is the noise embedding (None in the
deterministic network), ``frames`` = T.

GroupNorm statistics are taken per frame over all of ``S`` (all six tiles together in cube geometry,
so no tile is normalized differently from its neighbours). Attention uses
``softmax(q·kᵀ/√d + bias)·v`` (Vaswani et al. 2017) through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from downscale.models.config import Geometry, SeamEdges
from downscale.models.cube_conv import CubeConv2d, group_norm_groups

#: EDM/DDPM++ scale of a residual sum, keeps the variance of x + F(x) near that of x.
SKIP_SCALE = math.sqrt(0.5)
#: Initial weight scale of the last layer of a residual branch (near-identity blocks at start).
INIT_SMALL = 1e-5


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` with the group count chosen from the channel count (up to 32, ≥ 4 channels each)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(group_norm_groups(channels), channels, eps=eps)


class ChannelLinear(nn.Module):
    """A 1×1 convolution for any trailing dims: ``(N, C_in, *S) → (N, C_out, *S)`` (needs no neighbours)."""

    def __init__(self, in_channels: int, out_channels: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        nn.init.xavier_uniform_(self.weight)
        with torch.no_grad():
            self.weight.mul_(init_scale)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        y = torch.matmul(self.weight, x.reshape(n, c, -1)) + self.bias[:, None]
        return y.view(n, -1, *x.shape[2:])


class NoiseEmbedding(nn.Module):
    """``c_noise (B,) → emb (B, E)``: sinusoids of c_noise at log-spaced frequencies, then a 2-layer MLP.

    ``c_noise = ln(σ)/4`` (EDM Table 1) spans about −1.6 … 1.1 for σ in 0.002 … 80, so frequencies run
    from 1/(2π) to 16/(2π) cycles per unit, enough to resolve that range without aliasing.
    """

    def __init__(self, noise_channels: int, emb_channels: int) -> None:
        super().__init__()
        if noise_channels < 2 or noise_channels % 2:
            raise ValueError(f"noise embedding needs an even number of channels >= 2, got {noise_channels}")
        self.register_buffer("freqs", torch.logspace(0, math.log10(16), noise_channels // 2), persistent=False)
        self.layer0 = nn.Linear(noise_channels, emb_channels)
        self.layer1 = nn.Linear(emb_channels, emb_channels)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        phase = c_noise.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        x = torch.cat([phase.cos(), phase.sin()], dim=1)
        return F.silu(self.layer1(F.silu(self.layer0(x))))


class ResBlock(nn.Module):
    """``x + F(x)`` with F = GN → SiLU → conv3×3 → GN (→ scale/shift from emb) → SiLU → dropout → conv3×3.

    With ``emb_channels`` the second norm is modulated as ``GN(h)·(1 + scale) + shift``,
    ``(scale, shift) = Linear(emb)`` (adaptive scale-shift, "FiLM"; EDM's ADM blocks); without it the
    block is the deterministic one. Channel changes go through a 1×1 skip. Output scaled by √½.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int | None = None, *, dropout: float = 0.0,
                 geometry: Geometry = "cube", patch_padding: str = "replicate", seam_transform: bool = False,
                 seam_transform_edges: SeamEdges = "turned") -> None:
        super().__init__()
        conv = dict(geometry=geometry, patch_padding=patch_padding, seam_transform=seam_transform,
                    seam_transform_edges=seam_transform_edges)
        self.norm0 = GroupNorm(in_channels)
        self.conv0 = CubeConv2d(in_channels, out_channels, 3, **conv)
        self.affine = nn.Linear(emb_channels, 2 * out_channels) if emb_channels else None
        self.norm1 = GroupNorm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = CubeConv2d(out_channels, out_channels, 3, init_scale=INIT_SMALL, **conv)
        self.skip = ChannelLinear(in_channels, out_channels) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, frames: int = 1) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = self.norm1(h)
        if self.affine is not None:
            if emb is None:
                raise ValueError("this ResBlock is noise-conditioned: pass the noise embedding")
            scale, shift = self.affine(emb).view(emb.shape[0], 2, -1, *([1] * (h.ndim - 2))).unbind(1)
            h = torch.addcmul(shift, h, scale + 1)
        h = self.conv1(self.dropout(F.silu(h)))
        skip = self.skip(x) if self.skip is not None else x
        return (skip + h) * SKIP_SCALE


def _heads(channels: int, channels_per_head: int) -> int:
    heads = max(1, channels // channels_per_head)
    while channels % heads:
        heads -= 1
    return heads


class SpatialAttention(nn.Module):
    """Self-attention among all cells of one frame: ``L = 6·H·W`` tokens (cube) or ``H·W`` (patch).

    Cells on different tiles attend to each other directly, so this block is seam-free by construction.
    Cost grows as L², so it belongs at the lowest level(s) only.
    """

    def __init__(self, channels: int, channels_per_head: int) -> None:
        super().__init__()
        self.heads = _heads(channels, channels_per_head)
        self.norm = GroupNorm(channels)
        self.qkv = ChannelLinear(channels, 3 * channels)
        self.proj = ChannelLinear(channels, channels, init_scale=INIT_SMALL)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, frames: int = 1) -> torch.Tensor:
        n, c = x.shape[:2]
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, -1).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)                         # (N, heads, L, d)
        return x + self.proj(a.transpose(-1, -2).reshape(x.shape))


class TemporalAttention(nn.Module):
    """Self-attention over the T frames at each cell (Ho et al. 2022, video diffusion): ``T`` tokens per cell.

    Frame order enters through a learned relative-position bias ``b[h, j − i]`` added to the logits, with
    offsets clamped to ±(frames − 1), so clips of other lengths still run.
    """

    def __init__(self, channels: int, channels_per_head: int, frames: int) -> None:
        super().__init__()
        self.heads = _heads(channels, channels_per_head)
        self.max_offset = max(frames - 1, 0)
        self.norm = GroupNorm(channels)
        self.qkv = ChannelLinear(channels, 3 * channels)
        self.proj = ChannelLinear(channels, channels, init_scale=INIT_SMALL)
        self.relative_bias = nn.Parameter(torch.zeros(self.heads, 2 * self.max_offset + 1))

    def position_bias(self, frames: int) -> torch.Tensor:
        """``(heads, T, T)`` additive logit bias from the frame offset j − i."""
        t = torch.arange(frames, device=self.relative_bias.device)
        offset = (t[None, :] - t[:, None]).clamp(-self.max_offset, self.max_offset) + self.max_offset
        return self.relative_bias[:, offset]

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, frames: int = 1) -> torch.Tensor:
        bt, c = x.shape[:2]
        d = c // self.heads
        # (B, T, heads, d, L) without any permute; T is small, so the T×T logits are formed by broadcasting
        # over the cells L (one vectorized op) rather than by B·L tiny matrix products.
        q, k, v = self.qkv(self.norm(x)).view(bt // frames, frames, 3, self.heads, d, -1).unbind(2)
        logits = (q[:, :, None] * k[:, None, :]).sum(dim=4) / math.sqrt(d)       # (B, T_i, T_j, heads, L)
        bias = self.position_bias(frames).permute(1, 2, 0)[None, :, :, :, None]   # (1, T_i, T_j, heads, 1)
        w = (logits + bias.to(logits.dtype)).softmax(dim=2)
        a = (w[:, :, :, :, None] * v[:, None]).sum(dim=2)                         # (B, T, heads, d, L)
        return x + self.proj(a.reshape(x.shape))


class TemporalConv(nn.Module):
    """``x + W ⋆_t SiLU(GN(x))``: a 1-D convolution over the T frames at each cell, clip ends replicated."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = GroupNorm(channels)
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel))
        nn.init.xavier_uniform_(self.weight)
        with torch.no_grad():
            self.weight.mul_(INIT_SMALL)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, frames: int = 1) -> torch.Tensor:
        bt, c = x.shape[:2]
        h = F.silu(self.norm(x)).reshape(bt // frames, frames, c, -1).permute(0, 3, 2, 1)   # (B, L, C, T)
        lead = h.shape[:2]
        h = h.reshape(-1, c, frames)
        p = self.kernel // 2
        h = F.conv1d(F.pad(h, (p, p), mode="replicate") if p else h, self.weight, self.bias)
        return x + h.view(*lead, c, frames).permute(0, 3, 2, 1).reshape(x.shape)
