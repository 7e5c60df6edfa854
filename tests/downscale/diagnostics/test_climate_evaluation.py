"""``evaluate`` of a small store spanning two seasons, read a day at a time: the climatology by region and season,
land and ocean from a land fraction, the annual-maximum map and the day-block return levels; and the same
comparison whatever the blocks of days the store is read in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from data_catalog.coarsen import coarse_grain
from diag_helpers import julian_times, output_grid, smooth_unit_vector_field
from downscale.evaluation.evaluate import evaluate
from downscale.evaluation.results import read_diagnostics
from downscale.evaluation.score import CompareConfig, compare

N, FACTOR, DAYS, K = 8, 2, 20, 3
WET = 1.2                                  # the "wet" baseline is the truth × 1.2: +20 % everywhere


def _store(path: Path) -> Path:
    rng = np.random.default_rng(7)
    grid = output_grid(N)
    nt = 8 * DAYS
    pattern = 1.0 + 0.8 * smooth_unit_vector_field(N)
    truth = (pattern * rng.gamma(0.6, 5e-5, size=(nt, 6, N, N))).astype(np.float32)
    fine = ("time", "tile", "grid_yt", "grid_xt")
    coarse = coarse_grain(xr.DataArray(truth, dims=("time", "tile", "y", "x")),
                          grid.area.rename(grid_yt="y", grid_xt="x"), FACTOR)
    members = (truth[None] * rng.lognormal(0.0, 0.3, size=(K,) + truth.shape)).astype(np.float32)
    attrs = {"units": "kg m-2 s-1"}
    ds = xr.Dataset(
        {"PRATEsfc": (("member",) + fine, members, attrs), "PRATEsfc_truth": (fine, truth, attrs),
         "PRATEsfc_wet": (fine, truth * np.float32(WET), attrs),
         "PRATEsfc_coarse": (("time", "tile", "grid_yt_coarse", "grid_xt_coarse"), coarse.values, attrs),
         "lat": grid.lat.variable, "lon": grid.lon.variable, "area": grid.area.variable},
        coords={"time": julian_times(nt, start=(2017, 2, 20)), "member": np.arange(1, K + 1)},
        attrs={"factor": FACTOR})
    ds.chunk(time=40, member=1).to_zarr(path, zarr_format=3, mode="w", consolidated=False)
    return path


@pytest.fixture(scope="module")
def diagnostics(tmp_path_factory):
    root = tmp_path_factory.mktemp("climate")
    store = _store(root / "out.zarr")
    lat = xr.open_zarr(store, consolidated=False).lat.load()
    land = (lat > 0).astype(np.float64)                                   # the northern hemisphere is land
    config = CompareConfig(factor=FACTOR, return_level_regions=("tropics",), tail_quantile=0.9, n_boot=20)
    evaluate(store, root / "diagnostics", config, land_fraction=land, block_bytes=1)   # a day per block
    return read_diagnostics(root / "diagnostics"), store


def test_climatology_by_region_and_season(diagnostics):
    diags, _ = diagnostics
    s = diags.scalars
    assert s.climate_region.values.tolist() == ["global", "land", "ocean", "california", "himalayas"]
    assert s.period_days.values.tolist() == [20, 9, 11, 0, 0]                 # 20 Feb – 11 Mar 2017 (Julian)
    wet = s.clim_percent_bias.sel(source="wet")
    np.testing.assert_allclose(wet.sel(period=["annual", "DJF", "MAM"]).values, 100 * (WET - 1), rtol=1e-4)
    assert np.isnan(s.clim_mean.sel(period=["JJA", "SON"])).all()
    truth = s.clim_mean.sel(source="truth", period="annual")
    weights = diags.maps.season_days                                         # seasonal means weigh by days
    seasonal = s.clim_mean.sel(source="truth", period=["DJF", "MAM"])
    np.testing.assert_allclose(truth, (seasonal * weights.values[:2]).sum("period") / 20, rtol=1e-5)
    spread = s.clim_within_spread.sel(source="ensemble", period=["annual", "DJF", "MAM"])
    assert spread.notnull().all() and np.isnan(s.clim_within_spread.sel(source="wet")).all()
    # every member is the truth × lognormal(0, 0.3) noise, whose mean is e^0.045 = 1.046: each member's global
    # mean lies above the truth's, so the truth is outside the members' range
    assert float(spread.sel(climate_region="global", period="annual")) == 0
    assert (s.clim_wet_day_frequency.sel(period="annual") > 0).all()
    spells = s.clim_mean_dry_spell.sel(source="truth", period="annual", climate_region=["global", "land", "ocean"])
    assert (spells >= 1).all()


def test_annual_max_map_and_return_levels(diagnostics):
    diags, store = diagnostics
    truth = xr.open_zarr(store, consolidated=False).PRATEsfc_truth
    daily = truth.resample(time="1D").mean() * 86400.0
    np.testing.assert_allclose(diags.maps.annual_max_daily.sel(source="truth").values, daily.max("time").values,
                               rtol=1e-5)
    rl = diags.curves.return_level.sel(source="truth")
    assert rl.notnull().any()
    finite = rl.notnull()
    assert finite.sum() >= 3                                                 # periods beyond the threshold's
    lower, upper = diags.curves.return_lower.sel(source="truth"), diags.curves.return_upper.sel(source="truth")
    assert ((lower <= rl) & (rl <= upper)).where(finite, True).all()


@pytest.mark.parametrize("block_frames", [8, 44])     # a day; 5 days (whole days: 40 frames, not 44)
def test_blocks_of_days_give_the_comparison_of_the_whole_record(tmp_path, block_frames):
    """Every statistic — those that reach across block edges too: autocorrelation lags up to 24 h, window
    joins, dry spells, seasons, annual maxima, return levels, the bootstrap — equals the one-block result."""
    ds = xr.open_zarr(_store(tmp_path / "out.zarr"), consolidated=False).load()
    land = (ds.lat > 0).astype(np.float64)
    config = CompareConfig(factor=FACTOR, return_level_regions=("tropics",), tail_quantile=0.9, n_boot=20,
                           window_joins=tuple(range(12, 160, 12)))
    whole, blocked = compare(ds, config, land), compare(ds, config, land, max_block_frames=block_frames)
    for part in ("scalars", "maps", "curves"):
        a, b = getattr(whole, part), getattr(blocked, part)
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            x, y = a[name].values.astype(np.float64), b[name].transpose(*a[name].dims).values.astype(np.float64)
            finite = np.isfinite(x)
            scale = np.abs(x[finite]).max() if finite.any() else 1.0
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-10 * scale + 1e-30, err_msg=f"{part}.{name}")
    assert whole.scalars.join_ratio.notnull().all() and whole.curves.autocorrelation.notnull().all()
