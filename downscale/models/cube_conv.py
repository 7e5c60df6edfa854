"""Convolution, pooling and upsampling on the cube sphere, with no zero padding at a tile seam.

Two geometries share the same weights:

``cube``   ``x (N, C, 6, H, W)``: the six tiles of one frame travel together (N may fold batch and
           time). A k×k convolution first halo-exchanges ``w = k // 2`` cells from the neighbouring
           tiles (:func:`data_catalog.halo.halo_pad`, turned and reversed as the connectivity table says),
           then convolves each tile with ``padding=0`` (one ``conv3d`` with a (1, k, k) kernel, so no
           transposes): ``(N, C, 6, H+2w, W+2w) → (N, C', 6, H, W)``.
``patch``  ``x (N, C, H, W)``: face patches that already carry a data margin (halo) from the data
           layer. Convolutions pad their edges with ``replicate`` (or ``reflect``); those edges are not
           seams, and the margin is cropped off before the loss.

Down/upsampling acts per tile and keeps the cube structure: 2× average pooling needs no neighbours;
upsampling is nearest, or bilinear (``align_corners=False``) computed on a 1-cell halo so that it
interpolates across seams too. Values are whatever the caller feeds (normalized, unitless).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_catalog.halo import halo_index_maps, halo_pad, strip_positions_by_turn
from data_catalog.schema import N_TILES
from downscale.models.config import Geometry, SeamEdges

SPATIAL_DIMS = {"cube": 3, "patch": 2}   #: trailing dims of one frame: (6, H, W) or (H, W)


class _HaloExchange(torch.autograd.Function):
    """:func:`data_catalog.halo.halo_pad`, then (with seam maps) :func:`turn_halo_features`, with a backward
    pass written as its adjoint.

    Forward is ``halo_pad`` itself, and then, given ``turn_maps`` (and ``straight_map``), the halo strips of each
    kind multiplied by their ``C × C`` map in place. Backward:
    ``grad_x = grad[interior] + Σ_strips Mᵀ·grad[strip] scattered to its source cells + ½·grad[corner]
    scattered to each of its two candidates`` (M the strip's map, the identity for a strip without one) and
    ``grad_M = Σ grad[strip]·x[source]ᵀ`` over the strips of M's kind, using the halo's own index maps
    (:func:`data_catalog.halo.halo_index_maps`, strips ordered by kind). Autograd through ``halo_pad``'s
    in-place copies clones the whole padded gradient once per copy, and through the maps' gather and write
    once more each; this adjoint touches it once. ``test_cube_conv`` checks it against autograd of
    ``halo_pad`` and ``turn_halo_features``, and with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, width: int, turn_maps: torch.Tensor | None = None,  # type: ignore[override]
                straight_map: torch.Tensor | None = None) -> torch.Tensor:
        ctx.width, ctx.n = width, int(x.shape[-1])
        maps = () if turn_maps is None else (turn_maps,) if straight_map is None else (turn_maps, straight_map)
        ctx.save_for_backward(*((x, *maps) if maps else ()))      # x only for the maps' gradient
        with torch.no_grad():
            padded = halo_pad(x, width)
            return padded if turn_maps is None else turn_halo_features(padded, turn_maps, width, straight_map)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        w, n = ctx.width, ctx.n
        x, *saved = ctx.saved_tensors or (None,)
        maps = [saved[0][0], saved[0][1], *saved[1:]] if saved else []     # one C × C map per kind of strip
        strips = _adjoint_maps(n, w, str(grad.device))
        lead = grad.shape[:-3]
        grad_flat = grad.reshape(*lead, -1)
        g = grad_flat.index_select(-1, strips.positions)                    # (…, C, L): every strip, by kind
        grads_of_maps = []
        if maps:
            mapped = sum(strips.sizes[:len(maps)])
            parts = g[..., :mapped].split(strips.sizes[:len(maps)], dim=-1)
            before = x.reshape(*lead, -1).index_select(-1, strips.sources[:mapped]).split(strips.sizes[:len(maps)], -1)
            grads_of_maps = [torch.einsum("...cl,...dl->cd", gp.to(m.dtype), xp.to(m.dtype))
                             for m, gp, xp in zip(maps, parts, before)]
            g = torch.cat([torch.matmul(m.to(gp.dtype).T, gp) for m, gp in zip(maps, parts)] + [g[..., mapped:]], -1)
        if not ctx.needs_input_grad[0]:                                     # data in: only the maps learn
            return None, None, *_stacked(grads_of_maps)
        grad_x = grad[..., w:-w, w:-w].contiguous()
        grad_x_flat = grad_x.view(*lead, N_TILES * n * n)
        grad_x_flat.index_add_(-1, strips.sources, g.to(grad_x.dtype))
        corner = 0.5 * grad_flat.index_select(-1, strips.corner_positions)
        grad_x_flat.index_add_(-1, strips.corner_sources[0], corner).index_add_(-1, strips.corner_sources[1], corner)
        return grad_x, None, *_stacked(grads_of_maps)


def _stacked(grads_of_maps: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The per-kind map gradients as those of ``(turn_maps (2, C, C), straight_map (C, C))``, None where absent."""
    turn = torch.stack(grads_of_maps[:2]) if grads_of_maps else None
    return turn, grads_of_maps[2] if len(grads_of_maps) > 2 else None


class _StripMaps(NamedTuple):
    """Index maps of the halo's adjoint: every edge-strip cell ordered by kind (−90°, +90°, straight;
    :func:`data_catalog.halo.strip_positions_by_turn`) with its source, and the corner cells' two candidates."""

    positions: torch.Tensor        #: (L,) padded positions of the strip cells, by kind
    sources: torch.Tensor          #: (L,) their sources on the neighbouring tiles
    sizes: list[int]               #: cells per kind: −90°, +90°, straight
    corner_positions: torch.Tensor
    corner_sources: tuple[torch.Tensor, torch.Tensor]


@lru_cache(maxsize=64)
def _adjoint_maps(n: int, width: int, device: str) -> _StripMaps:
    m = halo_index_maps(n, width)
    by_kind = strip_positions_by_turn(n, width)
    positions = np.concatenate(by_kind)
    as_tensor = lambda a: torch.tensor(a, device=device)  # noqa: E731
    return _StripMaps(as_tensor(positions), as_tensor(m.source[positions]), [len(a) for a in by_kind],
                      as_tensor(m.corner_positions), (as_tensor(m.corner_sources[0]), as_tensor(m.corner_sources[1])))


def cube_halo(x: torch.Tensor, width: int, turn_maps: torch.Tensor | None = None,
              straight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``(..., 6, n, n) → (..., 6, n + 2w, n + 2w)``: the real halo exchange, with a fast backward; given
    ``turn_maps`` ``(2, C, C)`` (and ``straight_map`` ``(C, C)``), the halo strips are mapped as
    :func:`turn_halo_features` says."""
    tensors = [t for t in (x, turn_maps, straight_map) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _HaloExchange.apply(x, width, turn_maps, straight_map)
    padded = halo_pad(x, width)
    return padded if turn_maps is None else turn_halo_features(padded, turn_maps, width, straight_map)


def check_frame_shape(x: torch.Tensor, geometry: Geometry, what: str = "input") -> None:
    """Raise if ``x`` is not ``(N, C, 6, n, n)`` (cube) or ``(N, C, H, W)`` (patch)."""
    if geometry == "cube":
        if x.ndim != 5 or x.shape[2] != N_TILES or x.shape[3] != x.shape[4]:
            raise ValueError(f"{what}: cube geometry needs (N, C, {N_TILES}, n, n), got shape {tuple(x.shape)}")
    elif geometry == "patch":
        if x.ndim != 4:
            raise ValueError(f"{what}: patch geometry needs (N, C, H, W), got shape {tuple(x.shape)}")
    else:
        raise ValueError(f"{what}: geometry must be 'cube' or 'patch', got {geometry!r}")


class CubeConv2d(nn.Module):
    """A k×k convolution (odd k, stride 1) that sees across tile seams in ``cube`` geometry.

    Shapes: cube ``(N, C_in, 6, H, W) → (N, C_out, 6, H, W)``; patch ``(N, C_in, H, W) → (N, C_out, H, W)``.
    ``init_scale`` multiplies the Xavier-uniform initial weights (small for the last layer of a residual
    branch, as in EDM's DDPM++); biases start at zero.

    ``seam_transform`` (cube geometry, k > 1): the halo cells taken from a neighbour whose grid is turned by a
    quarter turn (the cube's 6 turned edges, :func:`data_catalog.halo.turned_edge`) are first multiplied by a
    learned ``C_in × C_in`` matrix, one per turn sense (−90°, +90°), both starting at the identity. A learned
    feature that is bound to the grid's directions (a gradient along x, say) means another thing on a turned
    neighbour; the matrices let the network carry its features across such an edge as a gauge transform would
    (Cohen et al. 2019, "Gauge equivariant convolutional networks"), instead of mixing two frames. Straight
    edges and corner blocks are left as they are, unless ``seam_transform_edges="all"``: then a third learned
    matrix (``straight_map``, also starting at the identity) maps the halo cells taken across the 6 straight
    edges. There the frames agree, but the cells along every tile edge are the grid's smallest and most skewed,
    so the features that cross an edge need not mean what they mean inside a tile.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, bias: bool = True,
                 geometry: Geometry = "cube", patch_padding: str = "replicate", init_scale: float = 1.0,
                 seam_transform: bool = False, seam_transform_edges: SeamEdges = "turned") -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"CubeConv2d needs an odd kernel >= 1, got {kernel}")
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.geometry: Geometry = geometry
        self.patch_padding = patch_padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        nn.init.xavier_uniform_(self.weight)
        with torch.no_grad():
            self.weight.mul_(init_scale)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        mapped = seam_transform and kernel > 1
        self.turn_maps = (nn.Parameter(torch.eye(in_channels).repeat(2, 1, 1)) if mapped
                          else None)                          # (2, C_in, C_in): the −90° and the +90° turn
        self.straight_map = (nn.Parameter(torch.eye(in_channels)) if mapped and seam_transform_edges == "all"
                             else None)                       # (C_in, C_in)

    @property
    def halo_width(self) -> int:
        return self.kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_frame_shape(x, self.geometry, "CubeConv2d")
        w = self.halo_width
        if self.kernel == 1:                                              # pointwise: no neighbours needed
            n, c = x.shape[:2]
            y = torch.matmul(self.weight[:, :, 0, 0], x.reshape(n, c, -1))
            y = y if self.bias is None else y + self.bias[:, None]
            return y.view(n, self.out_channels, *x.shape[2:])
        if self.geometry == "patch":
            if w:
                x = F.pad(x, (w, w, w, w), mode=self.patch_padding)
            return F.conv2d(x, self.weight, self.bias)
        if w:
            x = cube_halo(x, w, self.turn_maps, self.straight_map)         # (N, C, 6, H+2w, W+2w)
        # A (1, k, k) kernel over (tile, y, x) = the same 2-D convolution on every tile, padding=0.
        return F.conv3d(x, self.weight.unsqueeze(2), self.bias)

    def extra_repr(self) -> str:
        turn = ("" if self.turn_maps is None else
                ", seam_transform" + (" (all edges)" if self.straight_map is not None else ""))
        return f"{self.in_channels}, {self.out_channels}, kernel={self.kernel}, geometry={self.geometry}{turn}"


def turn_halo_features(padded: torch.Tensor, turn_maps: torch.Tensor, width: int,
                       straight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, C, 6, P, P) → (N, C, 6, P, P)``: the halo strips from turned neighbours (−90°, +90°: the first two
    arrays of :func:`data_catalog.halo.strip_positions_by_turn`) multiplied by ``turn_maps[0]`` and
    ``turn_maps[1]`` (each ``C × C``) over channels, and with ``straight_map`` (``C × C``) the strips from straight
    neighbours by it; every other cell unchanged. In place: ``padded`` (a fresh halo) is written and returned.
    :func:`cube_halo` runs it inside the halo exchange, whose backward is written by hand."""
    n_batch, c = padded.shape[:2]
    maps = [turn_maps[0], turn_maps[1]] + ([] if straight_map is None else [straight_map])
    strips = _adjoint_maps(padded.shape[-1] - 2 * width, width, str(padded.device))
    sizes = strips.sizes[:len(maps)]
    written = strips.positions[:sum(sizes)]
    flat = padded.reshape(n_batch, c, -1)
    before = flat.index_select(-1, written).split(sizes, dim=-1)
    mapped = torch.cat([torch.matmul(m.to(flat.dtype), s) for m, s in zip(maps, before)], dim=-1)
    return flat.index_copy_(-1, written, mapped.to(flat.dtype)).view(padded.shape)    # autocast: matmul's dtype


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2× average pooling over the last two dims, per tile: ``(..., H, W) → (..., H/2, W/2)``."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"downsample2x needs even H and W, got shape {tuple(x.shape)}")
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), 2)
    return y.view(*lead, *y.shape[-2:])


def upsample2x(x: torch.Tensor, geometry: Geometry, mode: str = "nearest") -> torch.Tensor:
    """2× upsampling per tile: ``(..., H, W) → (..., 2H, 2W)``.

    ``nearest`` needs no neighbours. ``bilinear`` (``align_corners=False``) in cube geometry pads a
    1-cell halo first, so cells next to a seam interpolate towards the neighbouring tile, then crops the
    2 cells the halo became; in patch geometry it clamps at the edges (= replicate).
    """
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    if mode == "nearest":
        y = F.interpolate(x.reshape(-1, 1, h, w), scale_factor=2, mode="nearest")
        return y.view(*lead, 2 * h, 2 * w)
    if mode != "bilinear":
        raise ValueError(f"upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
    if geometry == "cube":
        padded = cube_halo(x, 1)
        y = F.interpolate(padded.reshape(-1, 1, h + 2, w + 2), scale_factor=2, mode="bilinear", align_corners=False)
        return y[..., 2:-2, 2:-2].reshape(*lead, 2 * h, 2 * w)
    y = F.interpolate(x.reshape(-1, 1, h, w), scale_factor=2, mode="bilinear", align_corners=False)
    return y.view(*lead, 2 * h, 2 * w)


def space_to_depth(x: torch.Tensor, s: int) -> torch.Tensor:
    """Per tile, fold s×s cells into channels (``pixel_unshuffle`` order, channel = c·s² + i·s + j):
    ``(N, C, *T, H, W) → (N, C·s², *T, H/s, W/s)`` with T = (6,) in cube and () in patch geometry."""
    if s == 1:
        return x
    n, c, *tiles, h, w = x.shape
    y = x.reshape(n, c, *tiles, h // s, s, w // s, s)
    k = len(tiles)                                            # dims: n, c, tiles…, h', i, w', j
    y = y.permute(0, 1, 3 + k, 5 + k, *range(2, 2 + k), 2 + k, 4 + k)
    return y.reshape(n, c * s * s, *tiles, h // s, w // s)


def depth_to_space(x: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of :func:`space_to_depth`: ``(N, C·s², *T, h, w) → (N, C, *T, h·s, w·s)``."""
    if s == 1:
        return x
    n, cs2, *tiles, h, w = x.shape
    k = len(tiles)
    y = x.reshape(n, cs2 // (s * s), s, s, *tiles, h, w)     # dims: n, c, i, j, tiles…, h, w
    y = y.permute(0, 1, *range(4, 4 + k), 4 + k, 2, 5 + k, 3)
    return y.reshape(n, cs2 // (s * s), *tiles, h * s, w * s)


def group_norm_groups(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """Number of GroupNorm groups: up to 32, at least 4 channels each, dividing ``channels``."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    return math.gcd(groups, channels) if channels % groups else groups
