"""Architecture configuration of the video UNet, with validation and named presets.

A :class:`NetworkConfig` holds what shapes the network itself; the input and output channel counts
come from the data (predictors, static features, target variables) and are passed to ``build()``
separately. Levels are counted from 0 (full resolution); level ``l`` works on tiles of
``H / (s·2**l) × W / (s·2**l)`` cells (s = ``space_to_depth``, normally 1) with ``base_channels * channel_mult[l]``
channels, so the network downsamples ``len(channel_mult) - 1`` times and needs H and W divisible by
:attr:`NetworkConfig.downsampling_factor`.

Presets (:func:`network_preset`):

``tiny``   tests: 8 channels, three levels, T = 3; 6×16×16 tiles run a step in well under a second.
``demo``   CPU demo and skill presets, whole faces (C96: 6×96×96; C64: 6×64×64), T = 5: a 2×2 space-to-depth
           stem (12 input channels × 4 sub-cells = 48 → 16 channels) and four levels (C96: 48, 24, 12, 6;
           temporal attention at the two lowest, spatial attention at the lowest). A 4×4 stem (192 → 16
           channels) was measured to learn nothing below 4 cells: its denoiser error at k ≥ n/4 equalled that of
           doing nothing at every σ, and EDM sampling turns an unlearned scale into white noise of variance
           σ_data² (bench/denoiser_scales.py is the check). A training step (batch 2, both networks) costs
           about 1.2 s at C96 and 0.6 s at C64 on 2 CPU cores.
``paper``  the STVD setup (the STVD paper): 64 base channels, multipliers (1, 1, 2, 2, 3, 4), T = 5;
           C384 tiles shrink to 12×12 at the lowest level.

Example::

    >>> cfg = network_preset("tiny")
    >>> cfg.downsampling_factor
    4
    >>> cfg.check_spatial_shape(16, 16)
    >>> NetworkConfig(channel_mult=(1, 2, 2)).model_copy(update={"frames": 5}).frames
    5
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Geometry = Literal["cube", "patch"]
SeamEdges = Literal["turned", "all"]
TemporalMixing = Literal["attention", "conv", "none"]


class NetworkConfig(BaseModel):
    """Shape of a :class:`~downscale.models.video_unet.VideoUNet` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_channels: int = Field(64, ge=1, description="channels at level 0 (before multipliers)")
    channel_mult: tuple[int, ...] = Field((1, 1, 2, 2, 3, 4), min_length=1,
                                          description="channel multiplier per level; one entry per level")
    num_res_blocks: int = Field(2, ge=1, description="residual blocks per level in the encoder (decoder: +1)")
    attention_levels: tuple[int, ...] = Field(
        (), description="levels with spatial self-attention over all cells of a frame (all six tiles in "
                        "cube geometry); the lowest level is the usual choice")
    temporal_mixing: TemporalMixing = Field("attention", description="how frames exchange information")
    temporal_levels: tuple[int, ...] | None = Field(
        None, description="levels with temporal mixing; None = every level")
    temporal_kernel: int = Field(3, ge=1, description="kernel (frames) of the temporal conv; odd")
    channels_per_head: int = Field(32, ge=1, description="attention heads = channels // channels_per_head (>= 1)")
    emb_mult: int = Field(4, ge=1, description="noise-embedding width = base_channels * emb_mult")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    frames: int = Field(5, ge=1, description="clip length T the network is built for")
    geometry: Geometry = Field("cube", description="'cube': (…, 6, H, W) with halo exchange at tile seams; "
                                                   "'patch': (…, H, W) face patches padded at their edges")
    patch_padding: Literal["replicate", "reflect"] = Field(
        "replicate", description="padding at patch edges in 'patch' geometry (never used at a tile seam)")
    upsample: Literal["nearest", "bilinear"] = "nearest"
    space_to_depth: int = Field(
        1, ge=1, description="pixel-unshuffle stem: fold s×s cells into channels before level 0 and unfold them "
                             "after the last layer (per tile; s = 1: off). A CPU economy, not the paper's choice")
    full_res_channels: int = Field(
        0, ge=0, description="with a space-to-depth stem: a full-resolution output head. The last features are "
                             "unfolded to this many channels per cell, joined with the unfolded output, and a 3×3 "
                             "convolution of them (starting at zero) is added to that output, so that an output "
                             "cell depends on its neighbours across the s×s fold's block edges (0: off)")
    seam_transform: bool = Field(
        False, description="cube geometry: a learned C×C map (one per turn sense, starting at the identity) of the "
                           "features every 3×3 convolution takes across the cube's 6 edges where the neighbour's grid "
                           "is turned by 90° (CubeConv2d)")
    seam_transform_edges: SeamEdges = Field(
        "turned", description="with seam_transform: 'turned' maps the 6 turned edges only; 'all' adds a third learned "
                              "map (from the identity) for the 6 straight edges")
    activation_checkpointing: bool = Field(False, description="recompute each block in backward to save memory")

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def downsampling_factor(self) -> int:
        """H and W must be multiples of this: space_to_depth · 2 ** (number of levels - 1)."""
        return self.space_to_depth * 2 ** (self.num_levels - 1)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def emb_channels(self) -> int:
        return self.base_channels * self.emb_mult

    def has_temporal_mixing(self, level: int) -> bool:
        if self.temporal_mixing == "none" or self.frames == 1:
            return False
        return self.temporal_levels is None or level in self.temporal_levels

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult entries must be >= 1, got {self.channel_mult}")
        levels = range(self.num_levels)
        for name in ("attention_levels", "temporal_levels"):
            value = getattr(self, name) or ()
            bad = [lvl for lvl in value if lvl not in levels]
            if bad:
                raise ValueError(
                    f"{name} {value} names level(s) {bad} but channel_mult {self.channel_mult} has levels "
                    f"0..{self.num_levels - 1}"
                )
        if self.full_res_channels and self.space_to_depth == 1:
            raise ValueError(f"full_res_channels {self.full_res_channels} needs a space-to-depth stem "
                             "(space_to_depth > 1): without one the network already ends at full resolution")
        if self.seam_transform and self.geometry == "patch":
            raise ValueError("seam_transform needs cube geometry: a patch has no tile seam (its margin comes from the "
                             "data layer, already in the patch's own frame), so the maps would never be used")
        if self.seam_transform_edges != "turned" and not self.seam_transform:
            raise ValueError(f"seam_transform_edges {self.seam_transform_edges!r} needs seam_transform: true (it says "
                             "which tile edges the seam transform maps)")
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd (the clip is padded symmetrically), got {self.temporal_kernel}")
        if self.temporal_mixing == "attention" and self.frames > 1 and self.temporal_levels == ():
            raise ValueError("temporal_mixing='attention' with temporal_levels=() mixes nothing: "
                             "use temporal_mixing='none' or name the levels")
        return self

    def check_spatial_shape(self, height: int, width: int) -> None:
        """Raise a ``ValueError`` that says what to change if a tile or patch of ``height × width``
        cells cannot pass through the network."""
        f = self.downsampling_factor
        if height % f or width % f:
            stem = f"space_to_depth {self.space_to_depth} × " if self.space_to_depth > 1 else ""
            raise ValueError(
                f"{self.geometry} size {height}×{width} is not divisible by {stem}2**{self.num_levels - 1} = {f}: "
                f"the network halves H and W {self.num_levels - 1} times (channel_mult {self.channel_mult} has "
                f"{self.num_levels} levels); use sizes that are multiples of {f} or fewer levels"
            )
        if self.geometry == "cube" and height != width:
            raise ValueError(f"cube geometry needs square tiles (6, n, n), got {height}×{width}")
        if self.geometry == "patch" and self.patch_padding == "reflect" and min(height, width) // f < 2:
            raise ValueError(
                f"reflect padding needs at least 2 cells at the lowest level, but a {height}×{width} patch "
                f"shrinks to {height // f}×{width // f}; use larger patches or patch_padding='replicate'"
            )


PRESETS: dict[str, NetworkConfig] = {
    "tiny": NetworkConfig(
        base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,),
        temporal_mixing="attention", temporal_levels=(1, 2), channels_per_head=8, emb_mult=2, frames=3,
    ),
    "demo": NetworkConfig(
        base_channels=16, channel_mult=(1, 2, 2, 2), num_res_blocks=1, attention_levels=(3,), space_to_depth=2,
        temporal_mixing="attention", temporal_levels=(2, 3), channels_per_head=16, emb_mult=4, frames=5,
    ),
    "paper": NetworkConfig(
        base_channels=64, channel_mult=(1, 1, 2, 2, 3, 4), num_res_blocks=2, attention_levels=(5,),
        temporal_mixing="attention", temporal_levels=(2, 3, 4, 5), channels_per_head=64, emb_mult=4,
        dropout=0.1, frames=5,
    ),
}


def network_preset(name: str, **overrides: object) -> NetworkConfig:
    """The named preset (``tiny``, ``demo``, ``paper``), optionally with fields replaced (validated)."""
    if name not in PRESETS:
        raise ValueError(f"unknown network preset {name!r}; choose one of {sorted(PRESETS)}")
    if not overrides:
        return PRESETS[name]
    return NetworkConfig.model_validate({**PRESETS[name].model_dump(), **overrides})
