"""Coarse-graining on the real C48 grid: the area integral is conserved, lazily and in parallel with dask."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from data_catalog.coarsen import block_sum, coarse_grain


@pytest.fixture(scope="module")
def area(c48_dir) -> xr.DataArray:
    return xr.open_dataset(c48_dir / "grid.nc", engine="h5netcdf").area.load().astype(np.float64).drop_vars(
        ["y", "x"])


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_area_integral_is_conserved_to_float_precision(area, factor):
    rng = np.random.default_rng(factor)
    values = rng.gamma(0.5, 3e-5, size=(7, *area.shape))            # heavy-tailed, like precipitation
    field = xr.DataArray(values, dims=("time", *area.dims)).chunk({"time": 2})
    with dask.config.set(scheduler="threads", num_workers=2):
        coarse = coarse_grain(field, area, factor)
        assert isinstance(coarse.data, dask.array.Array) and coarse.data.npartitions == 4   # lazy, one task per chunk
        coarse, coarse_area = coarse.compute(), block_sum(area, factor)
    fine_integral = (field * area).sum(("tile", "y", "x")).values
    coarse_integral = (coarse * coarse_area).sum(("tile", "y", "x")).values
    np.testing.assert_allclose(coarse_integral, fine_integral, rtol=1e-13)
    assert coarse.shape == (7, 6, 48 // factor, 48 // factor)
    np.testing.assert_array_equal(coarse.values, coarse_grain(field.compute(), area, factor).values)


def test_a_factor_that_does_not_divide_the_tile_is_refused(area):
    field = xr.DataArray(np.zeros((1, *area.shape)), dims=("time", *area.dims), name="PRATEsfc")
    with pytest.raises(ValueError, match="PRATEsfc: size 48 of dim 'y' is not a multiple of the factor 5"):
        coarse_grain(field, area, 5)
