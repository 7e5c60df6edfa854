"""Climatology maps on Julian time: seasonal and annual means, bias maps, regional means."""

from __future__ import annotations

import numpy as np
import pytest

from diag_helpers import field, julian_times, no_compute
from downscale.diagnostics import climatology as clim
from downscale.diagnostics.weights import Region, region_weights
from downscale.evaluation.regions import REGIONS, get_region, get_regions


def _monthly_signal(grid, n_days=365):
    nt = n_days * 2                                        # 12-hourly for a year, Julian calendar
    times = julian_times(nt, hours=12.0)
    month = np.array([t.month for t in times], dtype=float)
    values = (month[:, None, None, None] * 1e-5) * np.ones((nt, 6, 8, 8))
    return field(values, times=times)


def test_seasonal_and_annual_means_follow_calendar_months(grid8):
    x = _monthly_signal(grid8)
    seasons = clim.seasonal_mean(x)
    assert list(seasons.season.values) == ["DJF", "MAM", "JJA", "SON"]
    days = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
    for season, months in {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}.items():
        expected = sum(m * days[m] for m in months) / sum(days[m] for m in months) * 1e-5
        np.testing.assert_allclose(seasons.sel(season=season).values, expected, rtol=1e-12)
    annual = clim.annual_mean(x)
    assert list(annual.year.values) == [2017]
    np.testing.assert_allclose(annual.values, sum(m * d for m, d in days.items()) / 365 * 1e-5, rtol=1e-12)


def test_bias_maps_of_a_shift_and_a_scaling(grid8, rng):
    truth = field(rng.gamma(2.0, 2e-5, size=(8, 6, 8, 8)))
    c = 1e-6
    maps = clim.climatology_maps(truth + c, truth)
    np.testing.assert_allclose(maps.bias.values, c, rtol=1e-9)
    scaled = clim.climatology_maps(1.1 * truth, truth)
    np.testing.assert_allclose(scaled.percent_bias.values, 10.0, rtol=1e-9)
    perfect = clim.climatology_maps(truth, truth)
    assert float(abs(perfect.bias).max()) == 0.0 and float(abs(perfect.seasonal_bias).max()) == 0.0
    assert float(clim.relative_bias(1.1 * truth, truth, grid8.area)) == pytest.approx(0.1, rel=1e-9)
    dry = truth * 0.0
    assert np.isnan(clim.percent_bias_map(dry + c, dry)).all()        # no percent bias where it never rains


def test_regional_means_are_area_weighted_means_over_the_region(grid8):
    values = grid8.lat.expand_dims(time=2).transpose("time", "tile", "grid_yt", "grid_xt")
    x = field(values.values * 1.0)
    means = clim.regional_means(x, grid8.area, grid8.lat, grid8.lon, get_regions(["global", "tropics", "extratropics"]))
    assert means.dims == ("time", "region")
    assert abs(float(means.sel(region="global")[0])) < 1e-9                    # symmetric grid
    w = region_weights(grid8.area, grid8.lat, grid8.lon, REGIONS["tropics"])
    assert float(means.sel(region="tropics")[0]) == pytest.approx(float((w * grid8.lat).sum() / w.sum()))
    mask = REGIONS["extratropics"].mask(grid8.lat, grid8.lon)
    assert bool((abs(grid8.lat.where(mask)) >= 23.5).sum() == mask.sum())


def test_region_boxes_select_cells_inside_them():
    from diag_helpers import output_grid
    grid = output_grid(24)
    for name in ("california", "himalayas"):
        r = REGIONS[name]
        mask = r.mask(grid.lat, grid.lon)
        assert int(mask.sum()) > 0
        lat, lon = grid.lat.where(mask), grid.lon.where(mask)
        assert float(lat.min()) >= r.lat_min and float(lat.max()) < r.lat_max
        assert float(lon.min()) >= r.lon_min and float(lon.max()) < r.lon_max
    wrap = Region("greenwich", -10, 10, 350, 10).mask(grid.lat, grid.lon)
    lon = grid.lon.where(wrap)
    assert int(wrap.sum()) > 0 and bool(((lon >= 350) | (lon < 10)).sum() == wrap.sum())
    with pytest.raises(ValueError, match="unknown region"):
        get_region("atlantis")
    with pytest.raises(ValueError, match="contains no cell centre"):
        region_weights(grid.area, grid.lat, grid.lon, Region("speck", 10.0, 10.01, 100.0, 100.01))


def test_climatology_is_lazy_on_dask(grid8):
    x = _monthly_signal(grid8, n_days=60).chunk(time=20)
    with no_compute():
        maps = clim.climatology_maps(x * 1.05, x)
        means = clim.regional_means(x, grid8.area, grid8.lat, grid8.lon, REGIONS.values())
        assert all(v.chunks is not None for v in maps.data_vars.values()) and means.chunks is not None
    np.testing.assert_allclose(maps.percent_bias.compute().values, 5.0, rtol=1e-9)
