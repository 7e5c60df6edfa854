"""The reader opens every real FV3GFS layout unchanged and standardizes it to one internal form."""

from __future__ import annotations

import logging

import cftime
import dask.array
import numpy as np
import pytest
import xarray as xr
from builders import fortran_dataset, write

from data_catalog.catalog import StoreRef
from data_catalog.errors import DataError
from data_catalog.schema import FIELD_DIMS, STATIC_DIMS
from data_catalog.store_reader import open_store, standardize, standardize_grid


def _open(path, variables=None):
    ref = StoreRef(urlpath=str(path))
    return standardize(open_store(ref), ref.display, variables)


def test_fortran_diagnostic_fixture_opens_as_is(c48_dir):
    ds = _open(c48_dir / "plot_1_plot_cube_fortran_diagnostic.nc", ["LHTFLsfc"])
    da = ds["LHTFLsfc"]
    assert da.dims == FIELD_DIMS
    assert da.dtype == np.float32
    assert isinstance(da.data, dask.array.Array), "the reader must stay lazy"
    assert ds["tile"].values.tolist() == [0, 1, 2, 3, 4, 5]
    times = ds.indexes["time"]
    assert isinstance(times[0], cftime.DatetimeJulian)
    # 4.75 h after 2016-08-05 (float noise in the file) → 04:45:00 exactly.
    assert times[0] == cftime.DatetimeJulian(2016, 8, 5, 4, 45)
    assert all(t.microsecond == 0 for t in times)
    raw = xr.open_dataset(c48_dir / "plot_1_plot_cube_fortran_diagnostic.nc", engine="h5netcdf")
    np.testing.assert_array_equal(da.isel(time=2).values, raw["LHTFLsfc"].isel(time=2).values)


def test_python_diagnostic_fixture_time_first(c48_dir):
    ds = _open(c48_dir / "plot_0_plot_cube_prognostic_ml.nc")
    assert ds["net_heating"].dims == FIELD_DIMS
    assert ds["net_heating"].dtype == np.float32  # float64 in the file
    assert ds.indexes["time"][0].calendar == "julian"


def test_tile_last_fixture_and_its_grid(c48_dir):
    raw = open_store(StoreRef(urlpath=str(c48_dir / "plot_2_plot_cube_prognostic_diags.nc")))
    ds = standardize(raw, "diags", ["h500_time_mean_value", "lat"])
    assert ds["h500_time_mean_value"].dims == STATIC_DIMS
    assert ds["lat"].dims == STATIC_DIMS  # was (y, x, tile) in the file
    np.testing.assert_array_equal(ds["lat"].values, raw["lat"].transpose("tile", "y", "x").values)


def test_grid_fixture(c48_dir):
    grid = standardize_grid(open_store(StoreRef(urlpath=str(c48_dir / "grid.nc"))), "grid", 48)
    assert grid["latb"].dims == ("tile", "yb", "xb")
    assert grid["area"].shape == (6, 48, 48)
    assert float(grid["area"].sum()) == pytest.approx(4 * np.pi * 6.3712e6**2, rel=1e-4)


def test_precipitation_units_in_the_real_python_spelling(c48_dir):
    ds = _open(c48_dir / "plot_4_plot_pcolormesh_cube.nc")  # net_moistening, kg/m^2/s, no time dim
    assert ds["net_moistening"].dims == STATIC_DIMS


@pytest.mark.parametrize("variant", ["tile_1_to_6", "tile_0_to_5", "float64", "time_first", "tile_last", "coarse_names"])
def test_layout_variants_standardize_identically(tmp_path, variant):
    rng = np.random.default_rng(1)
    values = rng.gamma(0.5, 1e-5, size=(6, 4, 8, 8)).astype(np.float32)
    base = fortran_dataset({"PRATEsfc": values})
    ds = base
    if variant == "tile_1_to_6":
        ds = ds.assign_coords(tile=np.arange(1, 7))
    elif variant == "tile_0_to_5":
        ds = ds.assign_coords(tile=np.arange(6))
    elif variant == "float64":
        ds = ds.astype({"PRATEsfc": np.float64})
    elif variant == "time_first":
        ds = ds.transpose("time", "tile", "grid_yt", "grid_xt").rename(grid_yt="y", grid_xt="x")
    elif variant == "tile_last":
        ds = ds.transpose("time", "grid_yt", "grid_xt", "tile")
        ds["PRATEsfc"].attrs["units"] = "kg/m^2/s"
    elif variant == "coarse_names":
        ds = fortran_dataset({"PRATEsfc_coarse": values}, coarse=True)
    name = next(iter(ds.data_vars))
    out = _open(write(ds, tmp_path / f"{variant}.zarr"))[name]
    ref = _open(write(base, tmp_path / "base.zarr"))["PRATEsfc"]
    assert out.dims == FIELD_DIMS and out.dtype == np.float32
    np.testing.assert_array_equal(out.values, ref.values)
    assert list(out.indexes["time"]) == list(ref.indexes["time"])


def test_mm_per_day_is_converted_with_a_warning(tmp_path, caplog):
    values = np.full((6, 2, 4, 4), 86.4, np.float32)  # mm/day
    ds = fortran_dataset({"PRATEsfc": values})
    ds["PRATEsfc"].attrs["units"] = "mm/day"
    with caplog.at_level(logging.WARNING):
        out = _open(write(ds, tmp_path / "mmday.zarr"))["PRATEsfc"]
    np.testing.assert_allclose(out.values, 1e-3, rtol=1e-6)
    assert out.attrs["units"] == "kg m-2 s-1"
    assert "converted from mm/day" in caplog.text


def test_mm_per_hour_is_converted(tmp_path):
    ds = fortran_dataset({"PRATEsfc": np.full((6, 2, 4, 4), 3.6, np.float32)})
    ds["PRATEsfc"].attrs["units"] = "mm/h"
    np.testing.assert_allclose(_open(write(ds, tmp_path / "mmh.zarr"))["PRATEsfc"].values, 1e-3, rtol=1e-6)


@pytest.mark.parametrize("units", ["W/m**2", "K", None])
def test_unknown_precipitation_units_are_rejected(tmp_path, units):
    ds = fortran_dataset({"PRATEsfc": np.zeros((6, 2, 4, 4), np.float32)})
    if units is None:
        del ds["PRATEsfc"].attrs["units"]
    else:
        ds["PRATEsfc"].attrs["units"] = units
    path = write(ds, tmp_path / "bad_units.zarr")
    with pytest.raises(DataError, match=r"bad_units\.zarr'.*variable 'PRATEsfc'.*not a precipitation rate"):
        _open(path)


def test_duplicate_times_are_rejected(tmp_path):
    ds = fortran_dataset({"PRATEsfc": np.zeros((6, 3, 4, 4), np.float32)}, hours=np.array([3.0, 6.0, 6.0]))
    with pytest.raises(DataError, match=r"dup\.zarr'.*variable 'time'.*duplicate time 2016-08-05 06:00:00"):
        _open(write(ds, tmp_path / "dup.zarr"))


def test_unsorted_times_are_rejected(tmp_path):
    ds = fortran_dataset({"PRATEsfc": np.zeros((6, 3, 4, 4), np.float32)}, hours=np.array([3.0, 9.0, 6.0]))
    with pytest.raises(DataError, match=r"unsorted\.zarr'.*variable 'time'.*not sorted"):
        _open(write(ds, tmp_path / "unsorted.zarr"))


def test_tile_count_other_than_six_is_rejected(tmp_path):
    ds = fortran_dataset({"PRATEsfc": np.zeros((6, 2, 4, 4), np.float32)}).isel(tile=slice(0, 5))
    with pytest.raises(DataError, match=r"five\.zarr'.*has 5 tiles along 'tile'; a cube sphere has 6"):
        _open(write(ds, tmp_path / "five.zarr"))


def test_missing_variable_names_what_the_store_holds(tmp_path):
    path = write(fortran_dataset({"PRATEsfc": np.zeros((6, 2, 4, 4), np.float32)}), tmp_path / "s.zarr")
    with pytest.raises(DataError, match=r"s\.zarr'.*variable 'CPRATsfc'.*not found.*holds: PRATEsfc"):
        _open(path, ["CPRATsfc"])


def test_unreachable_store(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.zarr'.*not found"):
        open_store(StoreRef(urlpath=str(tmp_path / "nowhere.zarr")))


def test_empty_store(tmp_path):
    xr.Dataset().to_zarr(tmp_path / "empty.zarr", zarr_format=3, consolidated=True)
    with pytest.raises(DataError, match=r"empty\.zarr'.*empty"):
        open_store(StoreRef(urlpath=str(tmp_path / "empty.zarr")))


def test_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(DataError, match=r"junk\.zarr'.*cannot be opened"):
        open_store(StoreRef(urlpath=str(tmp_path / "junk.zarr")))
