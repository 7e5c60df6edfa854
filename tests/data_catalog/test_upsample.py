"""Cube-aware upsampling: constants stay constant at tile edges, linear fields are reproduced, mass is kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_catalog.cubesphere import cell_areas, cell_centre_unit_vectors
from data_catalog.halo import halo_pad
from data_catalog.upsample import block_mean, upsample_coarse


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor", [2, 3, 8])
def test_constant_stays_constant_including_tile_edges(mode, factor):
    x = torch.full((2, 6, 5, 5), 3.25, dtype=torch.float64)
    y = upsample_coarse(x, factor, mode)
    assert y.shape == (2, 6, 5 * factor, 5 * factor)
    torch.testing.assert_close(y, torch.full_like(y, 3.25), rtol=0, atol=1e-14)


def test_nearest_repeats_each_coarse_cell():
    x = torch.arange(6 * 3 * 3, dtype=torch.float32).reshape(6, 3, 3)
    y = upsample_coarse(x, 4, "nearest")
    assert torch.equal(y[2, 4:8, 8:12], torch.full((4, 4), float(x[2, 1, 2])))


def test_linear_in_index_is_reproduced_in_the_interior():
    n, f = 6, 4
    j, i = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    tiles = torch.arange(6, dtype=torch.float64)[:, None, None]
    x = 0.5 + 2.0 * j - 0.75 * i + 10 * tiles  # linear in the tile's index space, different on each tile
    y = upsample_coarse(x, f, "bilinear")
    u = (torch.arange(n * f, dtype=torch.float64) + 0.5) / f - 0.5  # fine centres in coarse index units
    expected = 0.5 + 2.0 * u[:, None] - 0.75 * u[None, :] + 10 * tiles
    inside = (u >= 0) & (u <= n - 1)  # fine cells whose bilinear stencil lies on the tile itself
    torch.testing.assert_close(y[:, inside][:, :, inside], expected[:, inside][:, :, inside], rtol=0, atol=1e-12)


def test_bilinear_uses_the_neighbour_tiles_at_edges_not_a_clamp():
    n, f = 8, 2
    smooth = torch.from_numpy(cell_centre_unit_vectors(n)[..., 0])  # x of each cell centre: smooth on the sphere
    y = upsample_coarse(smooth, f, "bilinear")
    fine = torch.from_numpy(cell_centre_unit_vectors(n * f)[..., 0])
    err = (y - fine).abs()
    # The edge rows are as good as the interior (a clamp or zero padding would be far worse there).
    assert err[..., 0, :].max() < 3 * err[..., 2:-2, 2:-2].max() + 1e-3
    # Fine row 0 sits at u = -1/4: 3/4 of the tile's coarse row 0 and 1/4 of the halo row beyond the edge;
    # odd fine columns 2k + 1 sit at u = k + 1/4.
    padded = halo_pad(smooth, 1)
    rows = 0.75 * padded[:, 1, 1:-1] + 0.25 * padded[:, 0, 1:-1]
    torch.testing.assert_close(y[:, 0, 1::2][:, : n - 1], 0.75 * rows[:, :-1] + 0.25 * rows[:, 1:],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_mass_corrected_block_means_equal_the_coarse_values(weighted):
    rng = np.random.default_rng(0)
    n, f = 5, 4
    x = torch.from_numpy(rng.gamma(0.5, 1e-5, size=(3, 6, n, n)))
    x[0, 2, 1:3, 1:3] = 0.0  # dry blocks stay dry
    area = torch.from_numpy(cell_areas(n * f)) if weighted else None
    y = upsample_coarse(x, f, "bilinear", mass_correct=True, fine_area=area)
    assert (y >= 0).all()
    torch.testing.assert_close(block_mean(y, f, area), x, rtol=1e-12, atol=1e-20)
    assert torch.all(y[0, 2, 4:12, 4:12] == 0)
    signed = torch.from_numpy(rng.normal(size=(6, n, n)))
    z = upsample_coarse(signed, f, "bilinear", mass_correct=True, correction="additive", fine_area=area)
    torch.testing.assert_close(block_mean(z, f, area), signed, rtol=0, atol=1e-12)
    # Without correction, bilinear block means differ from the coarse values.
    assert not torch.allclose(block_mean(upsample_coarse(x, f, "bilinear"), f, area), x, rtol=1e-6, atol=0)


def test_gradients_flow_and_bad_input_is_refused():
    x = torch.rand(6, 4, 4, requires_grad=True)
    upsample_coarse(x, 2, "bilinear").sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="tile, y, x last"):
        upsample_coarse(torch.rand(5, 4, 4), 2)
    with pytest.raises(ValueError, match="positive integer"):
        upsample_coarse(torch.rand(6, 4, 4), 0)
    with pytest.raises(ValueError, match="unknown upsampling mode"):
        upsample_coarse(torch.rand(6, 4, 4), 2, "bicubic")


def test_bounded_mass_correction_keeps_the_mass_and_creates_no_spike():
    """A block sampled nearly dry under a wet coarse cell: the unbounded ratio turns its one wet cell into a spike
    of f² times the coarse mean; bounded at R, the block mean is still exact and no value exceeds R·y + x."""
    from data_catalog.upsample import block_mean, correct_block_means, repeat_blocks

    f, R = 4, 2.0
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 6, 8, 8, generator=gen, dtype=torch.float64)
    y[0, 0, :4, :4] = 0.0
    y[0, 0, 1, 2] = 1e-3                                      # one wet cell in a nearly dry block
    x = torch.rand(3, 6, 2, 2, generator=gen, dtype=torch.float64) + 0.5
    area = torch.rand(6, 8, 8, generator=gen, dtype=torch.float64) + 0.5
    unbounded = correct_block_means(y, x, f, area)
    bounded = correct_block_means(y, x, f, area, max_ratio=R)
    for out in (unbounded, bounded):
        torch.testing.assert_close(block_mean(out, f, area), x, rtol=1e-12, atol=1e-12)
    assert unbounded[0, 0, 1, 2] > 5 * x[0, 0, 0, 0]          # the spike
    assert bool((bounded <= R * y + repeat_blocks(x, f) + 1e-12).all())
    assert bounded[0, 0, 1, 2] < 1.1 * x[0, 0, 0, 0]
    small = torch.ones(1, 6, 4, 4, dtype=torch.float64)      # ratios ≤ R: the plain multiplicative correction
    torch.testing.assert_close(correct_block_means(small, torch.full((1, 6, 1, 1), 1.5, dtype=torch.float64), 4,
                                                   max_ratio=R), 1.5 * small)
    with pytest.raises(ValueError, match="max_ratio"):
        correct_block_means(y, x, f, max_ratio=0.5)
