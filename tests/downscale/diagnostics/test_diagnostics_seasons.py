"""Seasons, dry spells, day-block bootstrap, the climatology table and POT return levels, against values worked
out by hand."""

from __future__ import annotations

import cftime
import numpy as np
import pytest
import xarray as xr
from scipy import stats

from downscale.diagnostics import extremes, seasons
from downscale.diagnostics.dims import OUTPUT
from downscale.evaluation.climate import PERIODS, climate_scalars, member_prediction_interval


def _days(*dates: tuple[int, int, int]) -> xr.DataArray:
    return xr.DataArray(np.array([cftime.DatetimeJulian(*d) for d in dates]), dims="time")


def test_season_assignment_puts_december_in_the_next_years_winter():
    t = _days((2016, 12, 1), (2016, 12, 31), (2017, 1, 15), (2017, 2, 28), (2017, 3, 1), (2017, 6, 1),
              (2017, 8, 31), (2017, 9, 1), (2017, 11, 30), (2017, 12, 1))
    assert seasons.season_index(t).tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 3, 0]
    assert seasons.season_year(t).tolist() == [2017, 2017, 2017, 2017, 2017, 2017, 2017, 2017, 2017, 2018]


def test_season_days_marks_absent_seasons():
    t0 = cftime.DatetimeJulian(2017, 8, 5)
    three_hourly = xr.DataArray([t0 + np.timedelta64(3 * i, "h").item() for i in range(8 * 20)], dims="time")
    assert seasons.season_days(three_hourly).values.tolist() == [0, 0, 20, 0]       # 5–24 August: JJA only
    winter = xr.DataArray([cftime.DatetimeJulian(2016, 12, 30) + np.timedelta64(i, "D").item() for i in range(5)],
                          dims="time")
    assert seasons.season_days(winter).values.tolist() == [5, 0, 0, 0]              # across the turn of the year


def test_seasonal_means_skip_absent_seasons():
    out = seasons.seasonal_means(np.array([[1.0, 3.0, 5.0]]), np.array([0, 0, 2]))
    np.testing.assert_allclose(out[0, [0, 2]], [2.0, 5.0])
    assert np.isnan(out[0, [1, 3]]).all()


def test_spell_lengths():
    starts, lengths = seasons.spell_lengths(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool))
    assert starts.tolist() == [0, 3, 6] and lengths.tolist() == [2, 1, 3]
    assert [a.tolist() for a in seasons.spell_lengths(np.zeros(4, bool))] == [[], []]


def test_dry_spells_belong_to_the_season_of_their_first_day():
    # one cell, 25 Feb – 10 Mar 2017 (Julian: 28 days in February): dry 25 Feb – 3 Mar (7 days), wet 4 Mar,
    # dry 5–6 Mar (2 days), wet 7 Mar, dry 8–10 Mar (3 days, cut by the record's end)
    days = [cftime.DatetimeJulian(2017, 2, 25) + np.timedelta64(i, "D").item() for i in range(14)]
    totals = np.array([0.0] * 7 + [5.0] + [0.2, 0.0] + [3.0] + [0.0] * 3)
    daily = xr.DataArray(totals[:, None], dims=("time", "cell"), coords={"time": days})
    counts = seasons.seasonal_dry_spells(daily, max_length=5)
    assert counts.sel(season="DJF").values.tolist() == [0, 0, 0, 0, 1]              # 7 days, in the ≥ 5 bin
    assert counts.sel(season="MAM").values.tolist() == [0, 1, 1, 0, 0]
    assert counts.sel(season=["JJA", "SON"]).sum() == 0
    mean = seasons.mean_spell_length(counts)
    assert float(mean.sel(season="MAM")) == 2.5 and np.isnan(float(mean.sel(season="JJA")))


def test_dry_spells_stream_like_numpy():
    rng = np.random.default_rng(0)
    days = [cftime.DatetimeJulian(2017, 1, 1) + np.timedelta64(i, "D").item() for i in range(120)]
    daily = xr.DataArray(rng.gamma(0.5, 4.0, size=(120, 6, 4)), dims=("time", "a", "b"), coords={"time": days})
    w = xr.DataArray(rng.random((2, 6, 4)), dims=("region", "a", "b"), coords={"region": ["x", "y"]})
    eager = seasons.seasonal_dry_spells(daily, w)
    lazy = seasons.seasonal_dry_spells(daily.chunk(time=10, a=3), w)
    np.testing.assert_allclose(lazy.values, eager.values)
    assert eager.dims == ("region", "season", "spell_length")


def test_block_bootstrap_draws_runs_of_consecutive_days():
    idx = seasons.block_bootstrap_days(20, 5, 50, seed=1)
    assert idx.shape == (50, 20) and idx.min() >= 0 and idx.max() < 20
    steps = np.diff(idx.reshape(50, 4, 5), axis=-1) % 20
    assert (steps == 1).all()                                                       # inside a block: day after day


def _parts(truth: np.ndarray, source: np.ndarray | None, members: np.ndarray | None, days: list) -> xr.Dataset:
    """Computed climate parts of one region: daily means and wet fractions, no dry spells."""
    coords = {"time": days, "climate_region": ["global"]}
    spells = xr.DataArray(np.zeros((1, 4, 3)), dims=("climate_region", "season", "spell_length"),
                          coords={"climate_region": ["global"], "season": list(seasons.SEASONS),
                                  "spell_length": [1, 2, 3]})
    if members is not None:
        data = xr.DataArray(members[..., None], dims=("member", "time", "climate_region"), coords=coords)
    else:
        data = xr.DataArray((truth if source is None else source)[:, None], dims=("time", "climate_region"),
                            coords=coords)
    return xr.Dataset({"daily_mean": data, "daily_wet": data * 0 + 0.5, "dry_spells": spells})


def test_climate_table_bias_percent_bias_and_spread():
    days = [cftime.DatetimeJulian(2017, 2, 20) + np.timedelta64(i, "D").item() for i in range(20)]  # DJF 9, MAM 11
    truth = np.full(20, 2.0)
    members = np.stack([np.full(20, v) for v in (1.5, 2.2, 2.4, 2.9)])              # mean 2.25, range holds 2.0
    parts = {"truth": _parts(truth, None, None, days), "wet": _parts(truth, truth * 1.25, None, days),
             "ensemble": _parts(truth, None, members, days)}
    out = climate_scalars(parts, "truth", OUTPUT, n_boot=50)
    assert out.period.values.tolist() == list(PERIODS)
    assert out.period_days.values.tolist() == [20, 9, 11, 0, 0]
    g = out.sel(climate_region="global")
    assert float(g.clim_percent_bias.sel(source="wet", period="annual")) == pytest.approx(25.0)
    assert float(g.clim_bias.sel(source="wet", period="DJF")) == pytest.approx(0.5)
    assert float(g.clim_bias_significant.sel(source="wet", period="annual")) == 1      # constant: interval 0.5 … 0.5
    assert float(g.clim_bias.sel(source="ensemble", period="MAM")) == pytest.approx(0.25)
    assert float(g.clim_within_spread.sel(source="ensemble", period="annual")) == 1
    assert np.isnan(g.clim_within_spread.sel(source="wet", period="annual"))         # not an ensemble
    assert np.isnan(g.clim_mean.sel(period="JJA")).all()                             # absent season
    assert float(g.clim_bias.sel(source="truth", period="annual")) == 0


def test_one_more_member_lies_in_the_members_prediction_interval_95_percent_of_the_time():
    """Truth and 4 members exchangeable (independent draws in each of 4000 regions): the truth lies inside the
    members' prediction interval in 95 % of them (binomial sd 0.34 %); the members' min–max holds it in 60 %."""
    draws = np.random.default_rng(0).normal(3.0, 0.2, size=(5, 4000))
    lower, upper = member_prediction_interval(draws[1:])
    assert 0.94 <= np.mean((draws[0] >= lower) & (draws[0] <= upper)) <= 0.96
    in_range = np.mean((draws[0] >= draws[1:].min(0)) & (draws[0] <= draws[1:].max(0)))
    assert abs(in_range - 0.6) < 0.03
    same = np.full((4, 3), 2.5)                                         # members that agree exactly
    lower, upper = member_prediction_interval(same)
    assert np.all(lower < 2.5) and np.all(upper > 2.5) and np.all(upper - lower < 1e-5)


def test_day_block_return_levels_recover_a_known_gpd():
    shape, scale, u, n_days, n_series = 0.1, 5.0, 10.0, 3650, 1                      # 10 years of one series
    rng = np.random.default_rng(3)
    days = np.sort(rng.choice(n_days, size=400, replace=False))                      # 40 exceedances a year
    values = u + stats.genpareto(shape, scale=scale).rvs(size=400, random_state=rng)
    periods = (10.0, 50.0)
    rl = extremes.day_block_return_levels(values, days, n_days, u, n_series * 10.0, periods, n_boot=100)
    exact = extremes.return_level(u, shape, scale, 40.0, periods)
    np.testing.assert_allclose(rl.return_level.values, exact, rtol=0.15)
    assert (rl.lower.values < exact).all() and (rl.upper.values > exact).all()
    assert "day-block" in rl.attrs["method"]
