"""Every bad-input case of a member gets a clear error naming store, variable and problem."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr
from builders import catalog_file, fortran_dataset, member_pair, write

from data_catalog.catalog import load_catalog
from data_catalog.errors import DataError
from data_catalog.member_reader import open_member


def _rewrite(path, **changes):
    """Rewrite a test store with some of its raw (undecoded) variables replaced."""
    ds = xr.open_zarr(path, decode_times=False).load()
    for name, fn in changes.items():
        ds = fn(ds)
    write(ds, path.with_name("tmp.zarr"))
    import shutil

    shutil.rmtree(path)
    path.with_name("tmp.zarr").rename(path)
    return path


def _member(tmp_path, **catalog_extra):
    stores = member_pair(tmp_path)
    return stores, lambda: open_member(load_catalog(catalog_file(tmp_path, stores, **catalog_extra)), "0001")


def test_good_member_opens(tmp_path):
    _, open_ = _member(tmp_path)
    m = open_()
    assert m.fine["PRATEsfc"].shape == (6, 6, 8, 8)
    assert list(m.coarse) == ["PRATEsfc_coarse", "TMPsfc_coarse"]
    assert m.coarse["TMPsfc_coarse"].dims == ("time", "tile", "y", "x")


def test_missing_predictor(tmp_path):
    _, open_ = _member(tmp_path, predictors=["PRATEsfc_coarse", "UGRD10m_coarse"])
    with pytest.raises(DataError, match=r"coarse\.zarr'.*variable 'UGRD10m_coarse'.*not found in member '0001'"):
        open_()


def test_fine_size_not_factor_times_coarse(tmp_path):
    stores, _ = _member(tmp_path)
    path = catalog_file(tmp_path, stores, n=4, factor=3)  # says C12 fine; the store is C8
    with pytest.raises(DataError, match=r"fine\.zarr'.*variable 'PRATEsfc'.*8x8 tiles but the catalog's fine grid is C12"):
        open_member(load_catalog(path), "0001")


def test_factor_mismatch_between_stores(tmp_path):
    stores = member_pair(tmp_path)
    coarse3 = fortran_dataset({"PRATEsfc_coarse": np.zeros((6, 6, 3, 3)), "TMPsfc_coarse": np.zeros((6, 6, 3, 3))},
                              coarse=True)
    write(coarse3, stores["coarse"])
    with pytest.raises(DataError, match=r"coarse\.zarr'.*variable 'PRATEsfc_coarse'.*3x3 tiles but the catalog's coarse grid is C4"):
        open_member(load_catalog(catalog_file(tmp_path, stores)), "0001")


def test_time_axes_do_not_match(tmp_path):
    stores, open_ = _member(tmp_path)
    _rewrite(stores["coarse"], shift=lambda ds: ds.assign_coords(time=ds.time + 3.0))
    with pytest.raises(DataError, match=r"fine\.zarr / .*coarse\.zarr'.*variable 'time'.*time axes do not match: "
                                        r"1 times only in the fine store \(first 2016-08-05 03:00:00\)"):
        open_()


def test_nan_in_precipitation(tmp_path):
    stores, open_ = _member(tmp_path)

    def poison(ds):
        v = ds["PRATEsfc"].values.copy()
        v[2, 3, 1, 1] = np.nan
        v[0, 0, 0, 0] = np.inf
        return ds.assign(PRATEsfc=ds["PRATEsfc"].copy(data=v))

    _rewrite(stores["fine"], poison=poison)
    with pytest.raises(DataError, match=r"fine\.zarr'.*variable 'PRATEsfc'.*2 NaN or infinite values of 2304; "
                                        r"first at index \{'time': 0, 'tile': 0, 'y': 0, 'x': 0\}"):
        open_()


def test_tiny_negatives_are_clipped_and_counted(tmp_path, caplog):
    stores, open_ = _member(tmp_path)

    def numerics(ds):
        v = ds["PRATEsfc"].values.copy()
        v[0, :3, 0, 0] = -1e-12
        return ds.assign(PRATEsfc=ds["PRATEsfc"].copy(data=v))

    _rewrite(stores["fine"], numerics=numerics)
    with caplog.at_level(logging.WARNING):
        m = open_()
    assert float(m.fine["PRATEsfc"].min()) == 0.0
    assert "clipped 3 tiny negative values" in caplog.text
    assert list(m.clipped_negatives.values()) == [3]


def test_large_negative_precipitation(tmp_path):
    stores, open_ = _member(tmp_path)
    _rewrite(stores["fine"], neg=lambda ds: ds.assign(PRATEsfc=ds["PRATEsfc"] - 1e-4))
    with pytest.raises(DataError, match=r"fine\.zarr'.*variable 'PRATEsfc'.*negative precipitation down to -0\.0001"):
        open_()


def test_coarse_only_member_derives_predictors_from_fine(tmp_path):
    stores = member_pair(tmp_path)
    catalog = load_catalog(catalog_file(tmp_path, stores, predictors=["PRATEsfc_coarse"]))
    only_fine = catalog.model_copy(update={"members": {"0001": catalog.members["0001"].model_copy(update={"coarse": []})}})
    m = open_member(only_fine, "0001")
    assert m.derived == ("PRATEsfc_coarse",)
    assert m.coarse["PRATEsfc_coarse"].shape == (6, 6, 4, 4)
    assert "coarse-grained" in m.coarse["PRATEsfc_coarse"].attrs["derived_from"]
