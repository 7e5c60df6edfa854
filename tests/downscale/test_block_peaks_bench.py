"""bench/block_peaks.py on fields whose answer is known: a wetter copy and a smoothed copy of the truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[2]
F, NC, T = 4, 4, 12


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("block_peaks_bench", REPO / "bench" / "block_peaks.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def store_like(truth: np.ndarray, raw: np.ndarray, corrected: np.ndarray) -> xr.Dataset:
    fine = ("time", "tile", "grid_yt", "grid_xt")
    area = xr.DataArray(np.ones((6, NC * F, NC * F)), dims=fine[1:])
    coarse = truth.reshape(T, 6, NC, F, NC, F).mean(axis=(3, 5))
    return xr.Dataset({"PRATEsfc_truth": (fine, truth), "PRATEsfc_ensemble_raw": (("member", *fine), raw),
                       "PRATEsfc": (("member", *fine), corrected),
                       "PRATEsfc_coarse": (("time", "tile", "grid_yt_coarse", "grid_xt_coarse"), coarse),
                       "area": area},
                      coords={"grid_yt": np.arange(1.0, NC * F + 1), "grid_xt": np.arange(1.0, NC * F + 1),
                              "grid_yt_coarse": np.arange(1.0, NC + 1), "grid_xt_coarse": np.arange(1.0, NC + 1)})


def test_a_wetter_copy_keeps_the_shape_and_a_smoothed_one_loses_its_peaks(bench):
    rng = np.random.default_rng(0)
    truth = rng.lognormal(0.0, 1.5, size=(T, 6, NC * F, NC * F))
    blocks = truth.reshape(T, 6, NC, F, NC, F)
    smooth = (0.5 * blocks + 0.5 * blocks.mean(axis=(3, 5), keepdims=True)).reshape(truth.shape)
    table = bench.peak_table(store_like(truth, np.stack([1.1 * truth, 1.1 * truth]), np.stack([smooth, smooth])))
    for q in ("q50", "q90", "q99"):
        assert table["ensemble_raw"][f"peak/mean {q}"] == pytest.approx(table["truth"][f"peak/mean {q}"])
        assert table["ensemble_raw"][f"peak/coarse {q}"] == pytest.approx(1.1 * table["truth"][f"peak/coarse {q}"])
    assert table["ensemble_raw"]["mean/coarse, heavy"] == pytest.approx(1.1)
    assert table["truth"]["mean/coarse, heavy"] == pytest.approx(1.0)
    # members smoothed halfway to their block mean: peak ÷ mean becomes (r + 1) / 2, the block mass stays
    for q in ("q50", "q90", "q99"):
        assert table["ensemble"][f"peak/mean {q}"] == pytest.approx(0.5 * table["truth"][f"peak/mean {q}"] + 0.5)
    assert table["ensemble"]["mean/coarse, heavy"] == pytest.approx(1.0)
    assert table["truth"]["tail blocks per member"] >= 1
    assert table["ensemble"]["tail blocks per member"] < table["truth"]["tail blocks per member"]


def test_a_store_without_raw_members_is_refused_by_name(bench):
    ones = np.ones((T, 6, NC * F, NC * F))
    ds = store_like(ones, ones[None], ones[None]).drop_vars("PRATEsfc_ensemble_raw")
    with pytest.raises(ValueError, match="lacks PRATEsfc_ensemble_raw"):
        bench.peak_table(ds)
