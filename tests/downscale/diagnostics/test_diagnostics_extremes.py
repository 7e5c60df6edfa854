"""GPD peaks over threshold: the return level of synthetic GPD tails is recovered within its CI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from diag_helpers import field, julian_times
from downscale.diagnostics import extremes


def test_return_level_formula_matches_the_gpd_quantile():
    u, xi, sigma, rate = 20.0, 0.15, 8.0, 12.0
    periods = np.array([1.0, 10.0, 100.0])
    # x_T is the level whose exceedance probability per exceedance is 1 / (λT)
    expected = u + stats.genpareto(xi, scale=sigma).isf(1.0 / (rate * periods))
    np.testing.assert_allclose(extremes.return_level(u, xi, sigma, rate, periods), expected, rtol=1e-12)
    gumbel = extremes.return_level(u, 0.0, sigma, rate, periods)
    np.testing.assert_allclose(gumbel, u + sigma * np.log(rate * periods))
    assert np.isnan(extremes.return_level(u, xi, sigma, 0.5, [1.0]))[0]   # λT < 1: inside the threshold


def test_gpd_return_level_of_synthetic_daily_data_is_recovered_within_its_ci():
    rng = np.random.default_rng(7)
    u, xi, sigma, p = 30.0, 0.1, 10.0, 0.05           # mm/day; 5 % of days exceed u
    n_days, n_cells = 2 * 365, (6, 4, 4)                 # two years at 96 cells
    shape = (n_days,) + n_cells
    exceed = rng.random(shape) < p
    values = np.where(exceed, u + stats.genpareto(xi, scale=sigma).rvs(size=shape, random_state=rng),
                      rng.uniform(0.0, u, size=shape))
    daily = field(values, times=julian_times(n_days, hours=24.0)).assign_attrs(units="mm/day")
    periods = (1.0, 10.0, 50.0)
    out = extremes.gpd_return_levels(daily, u, periods, confidence=0.95, n_boot=100)
    rate = p * 365.25                                    # exceedances per cell-year
    truth = extremes.return_level(u, xi, sigma, rate, periods)
    assert out.attrs["n_series"] == 96
    assert out.attrs["rate_per_series_year"] == pytest.approx(rate, rel=0.05)
    assert out.attrs["shape"] == pytest.approx(xi, abs=0.06)
    assert np.all(out.lower.values <= truth) and np.all(truth <= out.upper.values)
    width = (out.upper - out.lower).values
    assert np.all(width > 0) and np.all(np.diff(width) > 0)   # wider further into the tail
    assert np.all(width < 0.5 * truth)                          # and informative
    assert "parametric bootstrap" in out.attrs["method"]


def test_too_few_exceedances_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 10 values above"):
        extremes.fit_gpd(np.array([5.0, 6.0]), 4.0, 1.0)
    with pytest.raises(ValueError, match="every value must exceed"):
        extremes.fit_gpd(np.linspace(1, 20, 30), 4.0, 1.0)


def test_exceedances_stream_from_dask():
    rng = np.random.default_rng(3)
    x = field(rng.exponential(1.0, size=(40, 6, 4, 4)))
    got = np.sort(extremes.exceedances(x.chunk(time=10), 3.0))
    np.testing.assert_array_equal(got, np.sort(x.values[x.values > 3.0]))
