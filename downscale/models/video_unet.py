"""A spatio-temporal (video) UNet on the cube sphere.

``VideoUNet(x, c_noise=None)``: ``x (B, T, C_in, 6, H, W) → (B, T, C_out, 6, H, W)`` in cube geometry,
``(B, T, C_in, H, W) → (B, T, C_out, H, W)`` in patch geometry. Values are normalized, unitless.

Layout (ADM/DDPM++-style UNet, Dhariwal & Nichol 2021; Karras et al. 2022 Sec. 5):

* spatial path per frame: residual blocks of 3×3 :class:`~downscale.models.cube_conv.CubeConv2d`
  (halo exchange at tile seams), 2× average pooling down and nearest/bilinear upsampling up, skip
  connections between encoder and decoder; ``channel_mult`` sets the channels of each level;
* temporal mixing after each residual block at ``temporal_levels``. The default is **temporal
  attention** over the T frames at every cell (Ho et al. 2022 "Video Diffusion Models", the factorized
  space-time UNet STVD builds on): it relates any two frames of the clip in one layer, whatever T, at a
  cost of only T² per cell, and is placed at the coarser levels where cells are few. A temporal 1-D
  convolution (``temporal_mixing="conv"``) is the cheaper local alternative;
* spatial self-attention over all cells of a frame (all six tiles at once) at ``attention_levels``;
* with a space-to-depth stem, an optional full-resolution head (``full_res_channels``): the last features
  unfolded to full resolution and joined with the unfolded output, one 3×3 convolution of them (starting at
  zero) added to that output. The folded output alone gives each of the s² positions of a block its own weights,
  so two neighbours on either side of a block edge come from different weights and different half-resolution
  cells; the head can smooth or sharpen that edge like any other;
* optional noise conditioning: ``c_noise (B,)`` → sinusoidal embedding → MLP → adaptive scale/shift in
  every residual block (the diffusion denoiser F of EDM). Without it (``noise_conditioning=False``)
  the same backbone is the deterministic downscaler.

Activation checkpointing (``config.activation_checkpointing``) recomputes each block in the backward
pass (``torch.utils.checkpoint``, ``use_reentrant=False``): same outputs and gradients, less memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from downscale.models.blocks import (
    INIT_SMALL,
    GroupNorm,
    NoiseEmbedding,
    ResBlock,
    SpatialAttention,
    TemporalAttention,
    TemporalConv,
)
from downscale.models.config import Geometry, NetworkConfig
from downscale.models.cube_conv import (
    SPATIAL_DIMS,
    CubeConv2d,
    depth_to_space,
    downsample2x,
    space_to_depth,
    upsample2x,
)


class VideoUNet(nn.Module):
    """The video UNet of the module docstring; build with ``VideoUNet(config, in_channels, out_channels,
    noise_conditioning)``."""

    def __init__(self, config: NetworkConfig, in_channels: int, out_channels: int,
                 noise_conditioning: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"VideoUNet needs in_channels and out_channels >= 1, got {in_channels}, {out_channels}")
        self.config = config
        self.in_channels, self.out_channels = in_channels, out_channels
        self.noise_conditioning = noise_conditioning
        self._geometry: Geometry = config.geometry
        conv = dict(geometry=config.geometry, patch_padding=config.patch_padding, seam_transform=config.seam_transform,
                    seam_transform_edges=config.seam_transform_edges)
        emb = config.emb_channels if noise_conditioning else None
        noise_channels = max(2, config.base_channels - config.base_channels % 2)    # sinusoids come in pairs
        self.noise_embedding = NoiseEmbedding(noise_channels, config.emb_channels) if noise_conditioning else None

        def unit(level: int, cin: int, cout: int) -> nn.ModuleList:
            """A residual block, then (per config) spatial attention and temporal mixing."""
            blocks: list[nn.Module] = [ResBlock(cin, cout, emb, dropout=config.dropout, **conv)]
            if level in config.attention_levels:
                blocks.append(SpatialAttention(cout, config.channels_per_head))
            if config.has_temporal_mixing(level):
                blocks.append(TemporalAttention(cout, config.channels_per_head, config.frames)
                              if config.temporal_mixing == "attention" else TemporalConv(cout, config.temporal_kernel))
            return nn.ModuleList(blocks)

        channels = config.level_channels
        s2 = config.space_to_depth**2
        # With a space-to-depth stem the input layer is a linear embedding of each s×s patch (1×1 conv, as
        # ViT patchify); the 3×3 convolutions that follow mix neighbouring patches.
        self.input_conv = CubeConv2d(in_channels * s2, channels[0], 1 if s2 > 1 else 3, **conv)
        skips = [channels[0]]
        self.encoder = nn.ModuleList()
        cout = channels[0]
        for level, c in enumerate(channels):
            units = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                units.append(unit(level, cout, c))
                cout = c
                skips.append(c)
            self.encoder.append(units)
            if level < config.num_levels - 1:
                skips.append(c)                               # the downsampled map is a skip too
        lowest = config.num_levels - 1
        self.middle = nn.ModuleList([unit(lowest, cout, cout),
                                     nn.ModuleList([ResBlock(cout, cout, emb, dropout=config.dropout, **conv)])])
        self.decoder = nn.ModuleList()
        for level in reversed(range(config.num_levels)):
            units = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                units.append(unit(level, cout + skips.pop(), channels[level]))
                cout = channels[level]
            self.decoder.append(units)
        self.output_norm = GroupNorm(cout)
        self.output_conv = CubeConv2d(cout, out_channels * s2, 3, init_scale=INIT_SMALL, **conv)
        # The full-resolution head (config.full_res_channels): unfolded features + the output → 3×3 conv, added.
        self.full_res_proj = self.full_res_conv = None
        if config.full_res_channels:
            self.full_res_proj = CubeConv2d(cout, config.full_res_channels * s2, 1, **conv)
            self.full_res_conv = CubeConv2d(config.full_res_channels + out_channels, out_channels, 3, init_scale=0.0,
                                            **conv)

    # -- geometry ---------------------------------------------------------------------------------------
    @property
    def geometry(self) -> Geometry:
        """``"cube"`` or ``"patch"``; settable (the weights do not depend on it)."""
        return self._geometry

    @geometry.setter
    def geometry(self, value: Geometry) -> None:
        if value not in SPATIAL_DIMS:
            raise ValueError(f"geometry must be 'cube' or 'patch', got {value!r}")
        self._geometry = value
        for m in self.modules():
            if isinstance(m, CubeConv2d):
                m.geometry = value

    # -- forward ----------------------------------------------------------------------------------------
    def _run(self, block: nn.Module, x: torch.Tensor, emb: torch.Tensor | None, frames: int) -> torch.Tensor:
        if self.config.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, emb, frames, use_reentrant=False)
        return block(x, emb, frames)

    def _check_input(self, x: torch.Tensor, c_noise: torch.Tensor | None) -> None:
        spatial = SPATIAL_DIMS[self._geometry]
        layout = "(B, T, C, 6, H, W)" if self._geometry == "cube" else "(B, T, C, H, W)"
        if x.ndim != 3 + spatial:
            raise ValueError(f"VideoUNet ({self._geometry} geometry) needs {layout}, got shape {tuple(x.shape)}")
        if x.shape[2] != self.in_channels:
            raise ValueError(f"VideoUNet was built for {self.in_channels} input channels, got {x.shape[2]} "
                             f"(shape {tuple(x.shape)})")
        if self._geometry == "cube" and x.shape[3] != 6:
            raise ValueError(f"VideoUNet cube geometry needs 6 tiles at dim 3, got shape {tuple(x.shape)}")
        self.config.model_copy(update={"geometry": self._geometry}).check_spatial_shape(x.shape[-2], x.shape[-1])
        if self.noise_conditioning and (c_noise is None or c_noise.shape != (x.shape[0],)):
            got = None if c_noise is None else tuple(c_noise.shape)
            raise ValueError(f"noise-conditioned VideoUNet needs c_noise of shape ({x.shape[0]},), got {got}")
        if not self.noise_conditioning and c_noise is not None:
            raise ValueError("this VideoUNet has no noise conditioning (deterministic): pass c_noise=None")

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, T, C_in, *S)``, ``c_noise (B,)`` or None → ``(B, T, C_out, *S)``."""
        self._check_input(x, c_noise)
        batch, frames = x.shape[:2]
        spatial = x.shape[3:]
        h = x.reshape(batch * frames, self.in_channels, *spatial)
        emb = None
        if self.noise_embedding is not None:
            emb = self.noise_embedding(c_noise).repeat_interleave(frames, dim=0)     # (B·T, E)

        h = self.input_conv(space_to_depth(h, self.config.space_to_depth))
        skips = [h]
        for level, units in enumerate(self.encoder):
            for blocks in units:
                for block in blocks:
                    h = self._run(block, h, emb, frames)
                skips.append(h)
            if level < len(self.encoder) - 1:
                h = downsample2x(h)
                skips.append(h)
        for blocks in self.middle:
            for block in blocks:
                h = self._run(block, h, emb, frames)
        for i, units in enumerate(self.decoder):
            for blocks in units:
                h = torch.cat([h, skips.pop()], dim=1)
                for block in blocks:
                    h = self._run(block, h, emb, frames)
            if i < len(self.decoder) - 1:
                h = upsample2x(h, self._geometry, self.config.upsample)
        features = F.silu(self.output_norm(h))
        h = depth_to_space(self.output_conv(features), self.config.space_to_depth)
        if self.full_res_conv is not None:
            unfolded = F.silu(depth_to_space(self.full_res_proj(features), self.config.space_to_depth))
            h = h + self.full_res_conv(torch.cat([unfolded, h], dim=1))
        return h.reshape(batch, frames, self.out_channels, *spatial)
