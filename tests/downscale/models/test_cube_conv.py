"""Cube-sphere convolution: shapes, no zero padding at seams, the halo's backward, resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_catalog.cubesphere import cell_centre_unit_vectors
from data_catalog.halo import EDGE_CONNECTIVITY, halo_pad
from downscale.models.cube_conv import (
    CubeConv2d,
    _HaloExchange,
    depth_to_space,
    downsample2x,
    space_to_depth,
    upsample2x,
)

N = 8


def per_tile_zero_padded(conv: CubeConv2d, x: torch.Tensor) -> torch.Tensor:
    """The same weights applied tile by tile with zero padding: what a seam-blind network does."""
    frames, c, tiles, h, w = x.shape
    y = F.conv2d(x.transpose(1, 2).reshape(frames * tiles, c, h, w), conv.weight, conv.bias, padding=conv.kernel // 2)
    return y.view(frames, tiles, -1, h, w).transpose(1, 2)


def test_shapes_in_both_geometries():
    conv = CubeConv2d(3, 5, 3)
    assert conv(torch.randn(4, 3, 6, N, N)).shape == (4, 5, 6, N, N)
    conv.geometry = "patch"
    assert conv(torch.randn(4, 3, 10, 14)).shape == (4, 5, 10, 14)
    pointwise = CubeConv2d(3, 2, 1)
    with torch.no_grad():
        pointwise.bias.normal_()
    x = torch.randn(2, 3, 6, N, N)
    assert torch.allclose(pointwise(x), per_tile_zero_padded(pointwise, x), atol=1e-6)   # 1×1: no padding at all
    pointwise.geometry = "patch"
    assert torch.allclose(pointwise(x[:, :, 0]), F.conv2d(x[:, :, 0], pointwise.weight, pointwise.bias), atol=1e-6)


def test_bad_shapes_are_refused_with_the_layout():
    with pytest.raises(ValueError, match=r"cube geometry needs \(N, C, 6, n, n\), got shape \(2, 3, 5, 8, 8\)"):
        CubeConv2d(3, 5)(torch.randn(2, 3, 5, N, N))
    with pytest.raises(ValueError, match=r"patch geometry needs \(N, C, H, W\)"):
        CubeConv2d(3, 5, geometry="patch")(torch.randn(2, 3, 6, N, N))
    with pytest.raises(ValueError, match="odd kernel"):
        CubeConv2d(3, 5, 4)


def test_edge_perturbation_reaches_the_neighbour_tile_and_zero_padding_would_not():
    torch.manual_seed(0)
    conv = CubeConv2d(2, 3, 3)
    x = torch.randn(1, 2, 6, N, N)
    k = 2                                                   # along-edge index of the perturbed cell
    bumped = x.clone()
    bumped[0, :, 0, N - 1, k] += 1.0                        # tile 0 (file 1), on its N edge
    nbr, nbr_edge, reversed_ = EDGE_CONNECTIVITY[0]["N"]
    assert (nbr, nbr_edge, reversed_) == (2, "W", True)    # docs/cube-sphere.md: tile 1 N joins tile 3 W, reversed

    effect = (conv(bumped) - conv(x)).abs().amax(dim=(0, 1))               # (6, n, n)
    seam_row = N - 1 - k                                    # reversed: along index k lands at row n-1-k
    touched = {tuple(ij) for ij in torch.nonzero(effect[2] > 1e-6).tolist()}
    assert touched == {(seam_row - 1, 0), (seam_row, 0), (seam_row + 1, 0)}
    assert effect[[1, 3, 4, 5]].max() == 0                  # no other tile touches that cell

    blind = (per_tile_zero_padded(conv, bumped) - per_tile_zero_padded(conv, x)).abs().amax(dim=(0, 1))
    assert blind[2].max() == 0, "a per-tile zero-padded conv can never see the neighbour: the check above can fail"
    assert torch.allclose(blind[0], effect[0], atol=1e-6)   # inside the perturbed tile both agree


def test_two_layers_carry_the_perturbation_two_cells_across_the_seam():
    torch.manual_seed(1)
    net = torch.nn.Sequential(CubeConv2d(1, 4, 3), torch.nn.SiLU(), CubeConv2d(4, 1, 3))
    x = torch.randn(1, 1, 6, N, N)
    bumped = x.clone()
    bumped[0, 0, 0, :, N - 1] += 1.0                        # tile 0's whole E edge column; E joins tile 1 W
    effect = (net(bumped) - net(x))[0, 0].abs()
    assert effect[1, :, :2].min() > 0                       # columns 0 and 1 of tile 1 all feel it
    assert effect[1, :, 3:].max() == 0                      # beyond two cells: nothing (locality)


def test_constant_field_and_constant_weights_give_a_constant_output_at_every_edge_and_corner():
    conv = CubeConv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    out = conv(torch.ones(2, 1, 6, N, N))
    assert torch.equal(out, torch.full_like(out, 9.0))
    blind = per_tile_zero_padded(conv, torch.ones(2, 1, 6, N, N))
    assert blind[..., 0, 0].max() == 4.0 and blind[..., 0, 3].max() == 6.0   # zero padding leaves edge artefacts
    conv.geometry = "patch"
    patch_out = conv(torch.ones(2, 1, 10, 12))
    assert torch.equal(patch_out, torch.full_like(patch_out, 9.0))          # replicate padding at patch edges


@pytest.mark.parametrize("width", [1, 2])
def test_fast_halo_backward_equals_autograd_through_halo_pad(width):
    torch.manual_seed(width)
    x = torch.randn(2, 3, 6, N, N, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 3, 6, N + 2 * width, N + 2 * width, dtype=torch.float64)
    reference, = torch.autograd.grad(halo_pad(x, width), x, grad_out)
    fast, = torch.autograd.grad(_HaloExchange.apply(x, width), x, grad_out)
    assert torch.allclose(fast, reference, rtol=0, atol=1e-12)
    assert torch.equal(_HaloExchange.apply(x, width), halo_pad(x, width))


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("edges", ["turned", "all"])
def test_seam_mapped_halo_backward_equals_autograd_of_the_plain_ops(width, edges):
    """The halo exchange with seam maps (one autograd Function, backward written by hand) gives the values and
    the gradients, for the input and for each map, of autograd through ``halo_pad`` and ``turn_halo_features``;
    ``gradcheck`` agrees with finite differences in all of them."""
    from downscale.models.cube_conv import cube_halo, turn_halo_features

    torch.manual_seed(width)
    c = 3
    x = torch.randn(2, c, 6, N, N, dtype=torch.float64, requires_grad=True)
    turn_maps = (torch.eye(c).repeat(2, 1, 1) + 0.3 * torch.randn(2, c, c)).double().requires_grad_()
    straight = (torch.eye(c) + 0.3 * torch.randn(c, c)).double().requires_grad_() if edges == "all" else None
    inputs = [x, turn_maps] + ([straight] if straight is not None else [])
    grad_out = torch.randn(2, c, 6, N + 2 * width, N + 2 * width, dtype=torch.float64)
    plain = turn_halo_features(halo_pad(x, width).clone(), turn_maps, width, straight)
    fused = cube_halo(x, width, turn_maps, straight)
    assert torch.equal(fused, plain)
    for fast, reference in zip(torch.autograd.grad(fused, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)):
        assert torch.allclose(fast, reference, rtol=0, atol=1e-12)
        assert fast.abs().sum() > 0

    small = [x.detach()[:1, :2, :, :4, :4]] + [m.detach()[..., :2, :2] for m in inputs[1:]]    # 2 channels, C4
    small = [t.clone().requires_grad_() for t in small]
    assert torch.autograd.gradcheck(lambda *a: cube_halo(a[0], width, a[1], a[2] if len(a) > 2 else None), tuple(small))


def test_cube_conv_gradcheck():
    torch.manual_seed(0)
    conv = CubeConv2d(2, 2, 3).double()
    x = torch.randn(1, 2, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_down_and_upsampling_keep_tiles_and_constants():
    x = torch.randn(3, 2, 6, N, N)
    assert downsample2x(x).shape == (3, 2, 6, N // 2, N // 2)
    assert torch.allclose(downsample2x(x)[..., 0, 0], x[..., :2, :2].mean(dim=(-1, -2)))
    for mode in ("nearest", "bilinear"):
        up = upsample2x(torch.full((1, 2, 6, 4, 4), 3.0), "cube", mode)
        assert up.shape == (1, 2, 6, 8, 8) and torch.allclose(up, torch.full_like(up, 3.0))
    with pytest.raises(ValueError, match="even H and W"):
        downsample2x(torch.randn(1, 1, 6, 5, 5))


def test_bilinear_upsampling_interpolates_across_seams():
    """A smooth global field (the z coordinate of cell centres) upsampled from C8 to C16: the cube-aware
    bilinear upsampling is accurate next to seams too; per-tile clamping (patch mode) is not."""
    coarse = torch.from_numpy(cell_centre_unit_vectors(N)[..., 2]).float()[None]            # (1, 6, 8, 8)
    fine = torch.from_numpy(cell_centre_unit_vectors(2 * N)[..., 2]).float()[None]
    cube_err = (upsample2x(coarse, "cube", "bilinear") - fine).abs()
    clamp_err = (upsample2x(coarse, "patch", "bilinear") - fine).abs()
    edge = np.zeros((2 * N, 2 * N), dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    interior_err = cube_err[..., ~torch.from_numpy(edge)].max()
    assert cube_err[..., torch.from_numpy(edge)].max() < 3 * interior_err
    assert clamp_err[..., torch.from_numpy(edge)].max() > 2 * cube_err[..., torch.from_numpy(edge)].max()


def test_space_to_depth_round_trips_per_tile():
    x = torch.randn(2, 3, 6, N, N)
    folded = space_to_depth(x, 2)
    assert folded.shape == (2, 12, 6, N // 2, N // 2)
    assert torch.equal(folded[:, :4, 5], F.pixel_unshuffle(x[:, :1, 5], 2))      # tiles never mix
    assert torch.equal(depth_to_space(folded, 2), x)


def _index_gradient(field: np.ndarray) -> torch.Tensor:
    """``(6, n, n) → (1, 2, 6, n, n)``: centred differences of ``field`` along each tile's own x and y index
    (one-sided at the tile's edges): a feature pair bound to the tile's grid directions."""
    gx, gy = np.gradient(field, axis=-1), np.gradient(field, axis=-2)
    return torch.tensor(np.stack([gx, gy])[None])


def test_seam_transform_carries_direction_bound_features_across_turned_edges():
    """The gradient of a smooth field along the tile's x and y is a pair of features that means another thing on a
    turned neighbour. With the quarter-turn matrices of the cube's geometry (+90°: the tile's x is the
    neighbour's y, its y the neighbour's −x), the halo cells across the 6 turned edges continue the edge cells'
    gradient as closely as across the 6 straight edges; without them (the identity, where training starts) they
    do not. Straight strips and interiors are never touched."""
    from data_catalog.halo import EDGES, turned_edge
    from downscale.models.cube_conv import cube_halo, turn_halo_features

    n = 16
    v = cell_centre_unit_vectors(n)                                             # (6, n, n, 3)
    field = np.sin(2.0 * v[..., 0] + 1.0) + np.cos(1.5 * v[..., 1] - 0.5 * v[..., 2])
    padded = cube_halo(_index_gradient(field), 1)
    plus = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])                              # neighbour turned +90°
    turned = turn_halo_features(padded.clone(), torch.stack([plus.T, plus]), 1)
    untouched = turn_halo_features(padded.clone(), torch.eye(2).repeat(2, 1, 1), 1)
    assert torch.equal(untouched, padded)

    def strip_jumps(p: torch.Tensor, turned_strips: bool) -> float:
        """Mean |feature in the halo − feature in the edge cell| over the strips of one kind."""
        jumps = []
        for t in range(6):
            for edge in EDGES:
                if bool(turned_edge(t, edge)) != turned_strips:
                    continue
                halo, inner = {"W": (p[0, :, t, 1:-1, 0], p[0, :, t, 1:-1, 1]), "E": (p[0, :, t, 1:-1, -1], p[0, :, t, 1:-1, -2]),
                               "S": (p[0, :, t, 0, 1:-1], p[0, :, t, 1, 1:-1]), "N": (p[0, :, t, -1, 1:-1], p[0, :, t, -2, 1:-1])}[edge]
                jumps.append((halo - inner).abs().mean())
        return float(torch.stack(jumps).mean())

    straight = strip_jumps(padded, turned_strips=False)
    assert strip_jumps(turned, turned_strips=False) == straight               # straight edges: not touched
    assert strip_jumps(turned, turned_strips=True) < 1.5 * straight           # carried across: as smooth as straight
    wrong_sense = turn_halo_features(padded.clone(), torch.stack([plus, plus.T]), 1)
    assert strip_jumps(wrong_sense, turned_strips=True) > 3 * straight        # the turn senses matter
    assert strip_jumps(padded, turned_strips=True) > 3 * straight             # mixed frames: a jump at the seam
    assert torch.equal(turned[..., 1:-1, 1:-1], padded[..., 1:-1, 1:-1])      # interiors unchanged


def test_seam_transform_starts_as_the_plain_convolution_and_learns():
    torch.manual_seed(0)
    plain, gauged = CubeConv2d(3, 4, 3), CubeConv2d(3, 4, 3, seam_transform=True)
    gauged.load_state_dict({**plain.state_dict(), "turn_maps": torch.eye(3).repeat(2, 1, 1)})
    x = torch.randn(2, 3, 6, N, N, requires_grad=True)
    assert torch.allclose(gauged(x), plain(x), atol=1e-6)                      # identity maps: the same layer
    gauged(x).square().sum().backward()
    assert gauged.turn_maps.grad is not None and gauged.turn_maps.grad.abs().sum() > 0
    assert CubeConv2d(3, 4, 1, seam_transform=True).turn_maps is None         # a 1×1 layer takes no halo


def test_straight_edge_map_acts_on_the_straight_strips_only_and_learns():
    """``seam_transform_edges="all"``: the third map multiplies exactly the halo cells taken across the 6 straight
    edges (the positions are checked against the tile connectivity, not against the function's own tables),
    starts as the turned-only layer, and gets a gradient."""
    from data_catalog.halo import EDGES, turned_edge
    from downscale.models.cube_conv import cube_halo, turn_halo_features

    n, w = 6, 1
    x = torch.randn(1, 2, 6, n, n)
    padded = cube_halo(x, w)
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    eye = torch.eye(2).repeat(2, 1, 1)
    out = turn_halo_features(padded.clone(), eye, w, swap)
    expected = padded.clone()
    for t in range(6):
        for edge in EDGES:
            if turned_edge(t, edge) == 0:
                strip = {"W": (slice(w, -w), 0), "E": (slice(w, -w), -1), "S": (0, slice(w, -w)),
                         "N": (-1, slice(w, -w))}[edge]
                expected[0, :, t, strip[0], strip[1]] = expected[0, :, t, strip[0], strip[1]].flip(0)
    assert torch.equal(out, expected)
    assert not torch.equal(out, padded)

    torch.manual_seed(0)
    turned_only = CubeConv2d(2, 3, 3, seam_transform=True)
    every_edge = CubeConv2d(2, 3, 3, seam_transform=True, seam_transform_edges="all")
    every_edge.load_state_dict({**turned_only.state_dict(), "straight_map": torch.eye(2)})
    y = torch.randn(2, 2, 6, N, N)
    assert torch.allclose(every_edge(y), turned_only(y), atol=1e-6)            # identity: the turned-only layer
    every_edge(y).square().sum().backward()
    assert every_edge.straight_map.grad is not None and every_edge.straight_map.grad.abs().sum() > 0
    with torch.no_grad():                                                      # maps away from the identity
        for m in (every_edge.turn_maps, every_edge.straight_map):
            m.add_(0.3 * torch.randn_like(m))
    x = torch.randn(1, 2, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(every_edge.double(), (x,))                # the in-place write differentiates
    with torch.autocast("cpu", dtype=torch.bfloat16):                          # the mixed-precision path runs
        assert every_edge.float()(x.float()).dtype == torch.bfloat16
