"""Consistency: seams look like the interior for smooth cube fields (synthetic and real) and not for per-tile
offsets; the seam ratio and the coarse-cell imprint tell a per-tile offset from per-block offsets, and equal
brute-force sums over explicitly built pairs; window joins; mass consistency against the coarse input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.coarsen import coarse_grain
from data_catalog.halo import EDGE_CONNECTIVITY
from diag_helpers import cube_edge_pairs, field, no_compute, output_grid, smooth_unit_vector_field
from downscale.diagnostics import consistency


def _flat_tile_yx(k: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    return k // (n * n), (k // n) % n, k % n


def test_the_e_and_n_edges_of_the_tiles_are_the_cube_edges_once():
    pairs = {frozenset({(t, e), EDGE_CONNECTIVITY[t][e][:2]}) for t in range(6) for e in ("E", "N")}
    every = {frozenset({(t, e), EDGE_CONNECTIVITY[t][e][:2]}) for t in range(6) for e in ("W", "E", "S", "N")}
    assert len(pairs) == 12 and pairs == every


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_seam_statistics_equal_brute_force_sums_over_explicit_pairs(rng, factor):
    n = 8
    x = rng.gamma(0.5, 1.0, size=(3, 6, n, n))
    pairs = cube_edge_pairs(n)
    flat = x.reshape(3, -1)
    jump = np.abs(flat[:, pairs[:, 0]] - flat[:, pairs[:, 1]])                   # (frames, 12 n²)
    ta, ja, ia = _flat_tile_yx(pairs[:, 0], n)
    tb, jb, ib = _flat_tile_yx(pairs[:, 1], n)
    across = ta != tb
    # the inside pair's lower index along its direction, and that direction's line offset inside a coarse cell
    lo = np.where(ja == jb, np.minimum(ia, ib), np.minimum(ja, jb))
    coarse_edge = ~across & ((lo + 1) % factor == 0)
    near = coarse_edge & ((lo == factor - 1) | (lo == n - factor - 1))
    mid = ~across & (lo % factor == factor // 2 - 1) if factor > 1 else np.zeros_like(across)
    mid_w = np.where((lo < factor) | (lo >= n - factor), 0.5, 1.0) * mid
    stats = consistency.seam_statistics(field(x), factor=factor)
    assert int(across.sum()) == 12 * n
    assert float(stats.seam_mean_abs_step) == pytest.approx(jump[:, across].mean(), rel=1e-12)
    assert float(stats.interior_mean_abs_step) == pytest.approx(jump[:, near].mean(), rel=1e-12)
    assert float(stats.coarse_edge_mean_abs_step) == pytest.approx(jump[:, coarse_edge].mean(), rel=1e-12)
    if factor > 1:
        expected_mid = (jump * mid_w).sum() / (3 * mid_w.sum())
        assert float(stats.mid_cell_mean_abs_step) == pytest.approx(expected_mid, rel=1e-12)
        assert float(stats.coarse_imprint) == pytest.approx(jump[:, coarse_edge].mean() / expected_mid, rel=1e-12)
    else:
        assert np.isnan(float(stats.coarse_imprint))
    assert stats.attrs["factor"] == factor


@pytest.mark.parametrize("n, factor", [(48, 4), (64, 8)])
def test_smooth_field_tile_offsets_and_block_offsets_are_told_apart(rng, n, factor):
    smooth = smooth_unit_vector_field(n)
    base = consistency.seam_statistics(field(smooth[None]), factor=factor)
    # geometry: a smooth field's tile-edge jumps are smaller than f cells in (measured 0.83 and 0.77)
    assert 0.65 < float(base.seam_ratio) < 1.0
    assert float(base.coarse_imprint) == pytest.approx(1.0, abs=0.02)           # measured 1.002, 1.004
    tile_offset = consistency.seam_statistics(field((smooth + 0.5 * np.arange(6)[:, None, None])[None]),
                                              factor=factor)
    assert float(tile_offset.seam_ratio) > 20 * float(base.seam_ratio)
    assert float(tile_offset.coarse_imprint) == pytest.approx(float(base.coarse_imprint), rel=1e-9)  # inside: same
    blocks = np.repeat(np.repeat(rng.normal(0.0, 1.0, size=(8, 6, n // factor, n // factor)), factor, -2), factor, -1)
    block_offset = consistency.seam_statistics(field(smooth + blocks), factor=factor)       # 8 frames
    assert float(block_offset.coarse_imprint) > 20.0                             # measured 45, 60
    assert float(block_offset.mid_cell_mean_abs_step) == pytest.approx(float(base.mid_cell_mean_abs_step), rel=1e-9)
    assert float(block_offset.seam_ratio) == pytest.approx(1.0, abs=0.1)        # 0.96–1.04 over 7 seeds


def test_white_noise_has_seam_ratio_and_imprint_one(rng):
    stats = consistency.seam_statistics(field(rng.normal(size=(40, 6, 32, 32))), factor=4)
    assert float(stats.seam_ratio) == pytest.approx(1.0, abs=0.03)
    assert float(stats.coarse_imprint) == pytest.approx(1.0, abs=0.03)


def test_factor_one_keeps_the_former_seam_ratio_and_bad_factors_are_refused(rng):
    n = 8
    x = rng.normal(size=(2, 6, n, n))
    from data_catalog.halo import halo_pad
    halo = halo_pad(x, 1)
    across = np.concatenate([np.abs(x[..., :, 0] - halo[..., 1:-1, 0]), np.abs(x[..., :, -1] - halo[..., 1:-1, -1]),
                             np.abs(x[..., 0, :] - halo[..., 0, 1:-1]), np.abs(x[..., -1, :] - halo[..., -1, 1:-1])])
    inward = np.concatenate([np.abs(x[..., :, 0] - x[..., :, 1]), np.abs(x[..., :, -1] - x[..., :, -2]),
                             np.abs(x[..., 0, :] - x[..., 1, :]), np.abs(x[..., -1, :] - x[..., -2, :])])
    assert float(consistency.seam_statistics(field(x)).seam_ratio) == pytest.approx(across.mean() / inward.mean(),
                                                                                  rel=1e-12)
    for bad in (3, 0, 2.0):
        with pytest.raises(ValueError, match="factor must be a positive integer dividing"):
            consistency.seam_statistics(field(x), factor=bad)
    assert np.isnan(float(consistency.seam_statistics(field(x), factor=n).seam_ratio))   # one coarse cell: no reference


def test_real_smooth_c48_field_has_seams_like_its_interior(c48_dir):
    ds = xr.open_dataset(c48_dir / "plot_2_plot_cube_prognostic_diags.nc", engine="h5netcdf")
    h500 = ds["h500_time_mean_value"].transpose("tile", "y", "x")
    stats = consistency.seam_statistics(h500, ("tile", "y", "x"))
    assert float(stats.seam_ratio) == pytest.approx(1.0, abs=0.2)
    shuffled = h500.isel(tile=[1, 2, 3, 4, 5, 0])                   # tiles in the wrong places: seams break
    assert float(consistency.seam_statistics(shuffled, ("tile", "y", "x")).seam_ratio) > 3.0


def test_window_joins_with_jumps_stand_out(rng):
    grid = output_grid(4)
    nt, window = 20, 5
    base = np.cumsum(0.1 * rng.normal(size=(nt, 6, 4, 4)), axis=0)
    joins = list(range(window, nt, window))
    smooth = consistency.window_join_statistics(field(base), grid.area, joins)
    assert float(smooth.join_ratio) == pytest.approx(1.0, abs=0.25)
    jumps = base + np.repeat(rng.normal(size=(nt // window, 6, 4, 4)), window, axis=0)
    assert float(consistency.window_join_statistics(field(jumps), grid.area, joins).join_ratio) > 3.0
    with pytest.raises(ValueError, match="window joins"):
        consistency.window_join_statistics(field(base), grid.area, [0, nt])


def _fine_and_coarse(rng, n=4, factor=4, nt=3, members=2):
    fine_grid = output_grid(n * factor)
    fine = field(rng.gamma(0.5, 2e-5, size=(members, nt, 6, n * factor, n * factor)), member=True)
    internal = fine.isel(member=0).rename(grid_yt="y", grid_xt="x")
    coarse = coarse_grain(internal, fine_grid.area.rename(grid_yt="y", grid_xt="x"), factor)
    coarse = coarse.rename(y="grid_yt_coarse", x="grid_xt_coarse")
    return fine, coarse, fine_grid.area, factor


def test_mass_consistency_of_a_coarse_grained_field_is_zero_and_measures_a_scaling(rng):
    fine, coarse, area, factor = _fine_and_coarse(rng)
    member0 = fine.isel(member=[0])
    ok = consistency.mass_consistency(member0, coarse, area, factor)
    assert float(ok.relative_error) == pytest.approx(0.0, abs=1e-6)
    assert float(ok.mass_bias) == pytest.approx(0.0, abs=1e-6)
    wet = consistency.mass_consistency(1.1 * member0, coarse, area, factor)
    assert float(wet.relative_error) == pytest.approx(0.1, rel=1e-5)
    assert float(wet.mass_bias) == pytest.approx(0.1, rel=1e-5)
    other = consistency.mass_consistency(fine, coarse, area, factor)      # member 1 is unrelated
    assert float(other.relative_error) > 0.1
    with pytest.raises(ValueError, match="not factor 3"):
        consistency.mass_consistency(member0, coarse, area, 3)


def test_consistency_is_lazy_on_dask_and_equals_numpy(rng):
    fine, coarse, area, factor = _fine_and_coarse(rng, nt=6)
    lf = fine.chunk(time=2, member=1, grid_yt=8)
    with no_compute():
        lazy = {"seam": consistency.seam_statistics(lf, factor=factor).seam_ratio,
                "imprint": consistency.seam_statistics(lf, factor=factor).coarse_imprint,
                "join": consistency.window_join_statistics(lf, area, [3]).join_ratio,
                "mass": consistency.mass_consistency(lf, coarse.chunk(time=2), area, factor).relative_error}
        assert all(v.chunks is not None for v in lazy.values())
    eager = {"seam": consistency.seam_statistics(fine, factor=factor).seam_ratio,
             "imprint": consistency.seam_statistics(fine, factor=factor).coarse_imprint,
             "join": consistency.window_join_statistics(fine, area, [3]).join_ratio,
             "mass": consistency.mass_consistency(fine, coarse, area, factor).relative_error}
    for k in lazy:
        np.testing.assert_allclose(float(lazy[k].compute()), float(eager[k]), rtol=1e-9, err_msg=k)
