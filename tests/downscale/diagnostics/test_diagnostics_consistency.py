"""Consistency: seams look like the interior for smooth cube fields (synthetic and real) and not for per-tile
offsets; window joins; mass consistency against the coarse input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.coarsen import coarse_grain
from diag_helpers import field, no_compute, output_grid, smooth_unit_vector_field
from downscale.diagnostics import consistency


def test_smooth_field_has_seam_ratio_near_one_and_per_tile_offsets_do_not():
    smooth = smooth_unit_vector_field(48)        # seam/interior step ratio 0.91 at C48 (0.90 at C24)
    stats = consistency.seam_statistics(field(smooth[None]))
    assert float(stats.seam_ratio) == pytest.approx(1.0, abs=0.15)
    offset = smooth + 0.5 * np.arange(6)[:, None, None]
    assert float(consistency.seam_statistics(field(offset[None])).seam_ratio) > 5.0


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
        lazy = {"seam": consistency.seam_statistics(lf).seam_ratio,
                "join": consistency.window_join_statistics(lf, area, [3]).join_ratio,
                "mass": consistency.mass_consistency(lf, coarse.chunk(time=2), area, factor).relative_error}
        assert all(v.chunks is not None for v in lazy.values())
    eager = {"seam": consistency.seam_statistics(fine).seam_ratio,
             "join": consistency.window_join_statistics(fine, area, [3]).join_ratio,
             "mass": consistency.mass_consistency(fine, coarse, area, factor).relative_error}
    for k in lazy:
        np.testing.assert_allclose(float(lazy[k].compute()), float(eager[k]), rtol=1e-9, err_msg=k)
