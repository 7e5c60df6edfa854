"""Pooled distributions from streaming histograms: quantiles, PE, EMD against scipy, exceedances, wet
days and dry spells on Julian time; dask = numpy and nothing computed while building."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from diag_helpers import field, julian_times, no_compute
from downscale.diagnostics import distribution as dist
from downscale.diagnostics.histogram import DEFAULT_BINS, LogBins, density, histogram, regional_histograms
from downscale.diagnostics.weights import regional_weights
from downscale.evaluation.regions import get_regions

REL_BIN = 10 ** (9 / DEFAULT_BINS.bins) - 1      # relative width of a default bin (0.26 %)


def _precip(rng, shape, dry=0.4):
    x = rng.gamma(0.5, 3e-5, size=shape)
    x[rng.random(shape) < dry] = 0.0
    return x


def test_histogram_quantiles_match_exact_quantiles_within_a_bin(rng):
    x = field(_precip(rng, (40, 6, 8, 8)))
    qs = (0.5, 0.9, 0.99, 0.999)
    got = dist.histogram_quantiles(histogram(x), qs).values
    exact = np.quantile(x.values, qs, method="inverted_cdf")
    np.testing.assert_allclose(got, exact, rtol=2 * REL_BIN)


def test_extreme_quantiles_up_to_the_pe_quantile_match_numpy_within_a_bin(rng):
    """The PE is read at the 99.999th percentile: 4·10⁶ values put 40 above it, so numpy's exact quantile is
    well defined there, and the histogram's must agree with it to a bin width (with equal weights or none)."""
    values = _precip(rng, (1000, 6, 8, 84), dry=0.3)
    qs = (0.99, 0.999, 0.9999, 0.99999)
    exact = np.quantile(values, qs, method="inverted_cdf")
    assert np.all(np.diff(exact) > 10 * REL_BIN * exact[:-1])           # distinct quantiles, many bins apart
    x = xr.DataArray(values, dims=("time", "tile", "y", "x"))
    for weights in (None, xr.DataArray(np.full((6, 8, 84), 2.5e8), dims=("tile", "y", "x"))):
        got = dist.histogram_quantiles(histogram(x, weights), qs).values
        np.testing.assert_allclose(got, exact, rtol=REL_BIN)


def test_area_weighted_histogram_counts_area(grid8, rng):
    x = field(_precip(rng, (3, 6, 8, 8)))
    h = histogram(x, grid8.area)
    assert float(h.sum()) == pytest.approx(3 * float(grid8.area.sum()), rel=1e-12)
    assert float(h.isel(bin=0)) == pytest.approx(float((grid8.area * (x == 0)).sum()), rel=1e-12)
    dens = density(h)
    assert float((dens * (h.upper - h.lower)).sum()) == pytest.approx(1.0)
    assert np.isnan(density(h, log=True).where(h == 0, drop=True)).all()


def test_pe_and_emd_are_zero_for_a_perfect_forecast_and_c_for_a_shift(grid8, rng):
    truth = field(_precip(rng, (30, 6, 8, 8), dry=0.0))
    ht = histogram(truth, grid8.area)
    assert float(dist.percentile_error(ht, ht)) == 0.0
    assert float(dist.wasserstein_distance(ht, ht)) == 0.0
    c = 4e-6
    hs = histogram(truth + c, grid8.area)
    assert float(dist.wasserstein_distance(hs, ht)) == pytest.approx(c, rel=0.01)
    assert float(dist.percentile_error(hs, ht, 0.999)) == pytest.approx(c, abs=3 * REL_BIN * float(truth.max()))


def test_emd_matches_scipy_weighted_wasserstein(grid8, rng):
    a = field(_precip(rng, (20, 6, 8, 8)))
    b = field(1.3 * _precip(rng, (20, 6, 8, 8), dry=0.2))
    w = grid8.area.broadcast_like(a).transpose(*a.dims).values.ravel()
    expected = stats.wasserstein_distance(a.values.ravel(), b.values.ravel(), w, w)
    got = float(dist.wasserstein_distance(histogram(a, grid8.area), histogram(b, grid8.area)))
    assert got == pytest.approx(expected, rel=0.01)


def test_regional_histograms_and_qq(grid8, rng):
    x = field(_precip(rng, (10, 6, 8, 8)))
    w = regional_weights(grid8.area, grid8.lat, grid8.lon, get_regions(["global", "tropics", "extratropics"]))
    h = regional_histograms(x, w)
    assert list(h.region.values) == ["global", "tropics", "extratropics"]
    np.testing.assert_allclose(h.sel(region="tropics") + h.sel(region="extratropics"), h.sel(region="global"))
    qq = dist.quantile_quantile(h, h)
    xr.testing.assert_equal(qq.forecast, qq.truth)
    with pytest.raises(ValueError, match="different bins"):
        dist.wasserstein_distance(histogram(x, bins=LogBins(bins=100)), histogram(x))


def test_exceedance_frequency_in_mm_per_day(grid8, rng):
    mm_day = rng.exponential(20.0, size=(10, 6, 8, 8))
    x = field(mm_day / 86400.0)
    got = dist.exceedance_frequency(x, grid8.area, (10.0, 50.0))
    a = grid8.area.values
    for t, g in zip((10.0, 50.0), got.values):
        assert g == pytest.approx(float(((mm_day > t) * a).sum() / (a.sum() * 10)), rel=1e-12)
    assert got.threshold.attrs["units"] == "mm/day"


def test_wet_days_and_dry_spells_on_julian_days(grid8):
    days = np.array([0, 5, 5, 0, 0, 0, 2, 0, 0.5, 3], dtype=float)   # mm/day; dry spells: 1, 3, 2 (0, 0.5)
    nt = days.size * 8
    values = np.repeat(days, 8)[:, None, None, None] * np.ones((nt, 6, 8, 8)) / 86400.0
    x = field(values, times=julian_times(nt))
    daily = dist.daily_totals(x)
    assert daily.sizes["time"] == days.size
    np.testing.assert_allclose(daily.isel(tile=0, grid_yt=0, grid_xt=0).values, days)
    freq = dist.wet_day_frequency(daily)
    np.testing.assert_allclose(freq.values, 0.4)
    np.testing.assert_allclose(dist.wet_day_intensity(daily).values, (5 + 5 + 2 + 3) / 4)
    stats_ = dist.wet_day_statistics(daily, grid8.area)
    assert float(stats_.wet_day_frequency) == pytest.approx(0.4)
    assert float(stats_.wet_day_intensity) == pytest.approx(3.75)
    spells = dist.dry_spell_distribution(daily, grid8.area, max_length=2)
    np.testing.assert_allclose(spells.values, [1 / 3, 2 / 3])       # lengths 1 and ≥ 2 (3 and 2)
    spells = dist.dry_spell_distribution(daily, max_length=5)
    np.testing.assert_allclose(spells.values, [1 / 3, 1 / 3, 1 / 3, 0, 0])


def test_dask_gives_the_numpy_result_without_computing(grid8, rng):
    values = _precip(rng, (2, 48, 6, 8, 8))
    ens = field(values, member=True)
    truth = field(_precip(rng, (48, 6, 8, 8)))
    lazy_ens = ens.chunk(time=8, member=1)
    w = regional_weights(grid8.area, grid8.lat, grid8.lon, get_regions(["global", "tropics"]))
    with no_compute():
        h = regional_histograms(lazy_ens, w)
        ht = histogram(truth.chunk(time=16), grid8.area)
        lazy = {"hist": h, "pe": dist.percentile_error(h.sel(region="global"), ht),
                "emd": dist.wasserstein_distance(h.sel(region="global"), ht),
                "q": dist.histogram_quantiles(h),
                "exc": dist.exceedance_frequency(lazy_ens, grid8.area, (1.0, 5.0)),
                "spell": dist.dry_spell_distribution(dist.daily_totals(lazy_ens), grid8.area)}
        assert all(v.chunks is not None for v in lazy.values())
    hn = regional_histograms(ens, w)
    htn = histogram(truth, grid8.area)
    eager = {"hist": hn, "pe": dist.percentile_error(hn.sel(region="global"), htn),
             "emd": dist.wasserstein_distance(hn.sel(region="global"), htn), "q": dist.histogram_quantiles(hn),
             "exc": dist.exceedance_frequency(ens, grid8.area, (1.0, 5.0)),
             "spell": dist.dry_spell_distribution(dist.daily_totals(ens), grid8.area)}
    for k in lazy:
        np.testing.assert_allclose(lazy[k].compute().values, eager[k].values, rtol=1e-9, err_msg=k)
