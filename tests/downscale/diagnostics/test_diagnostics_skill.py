"""Skill scores: zero for a perfect forecast, the shift for a shifted one, fair CRPS against a brute-force
formula and properscoring, calibration (rank histogram, spread–skill), and dask = numpy without computing."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
import xarray as xr

from diag_helpers import field, no_compute
from downscale.diagnostics import skill
from downscale.diagnostics.weights import weighted_mean


def _gamma(rng, shape):
    return rng.gamma(0.6, 2e-5, size=shape)


def test_perfect_forecast_scores_zero_and_shifted_forecast_scores_its_shift(grid8, rng):
    truth = field(_gamma(rng, (5, 6, 8, 8)))
    area = grid8.area
    for f in (skill.mse, skill.mae, skill.bias):
        assert float(f(truth, truth, area)) == 0.0
    ens = truth.expand_dims(member=3)
    assert float(weighted_mean(skill.crps_ensemble(ens, truth, fair=True), area)) == pytest.approx(0.0, abs=1e-20)
    c = 3e-6
    shifted = truth + c
    assert float(skill.mae(shifted, truth, area)) == pytest.approx(c, rel=1e-9)
    assert float(skill.bias(shifted, truth, area)) == pytest.approx(c, rel=1e-9)
    assert float(skill.mse(shifted, truth, area)) == pytest.approx(c * c, rel=1e-9)
    assert float(skill.rmse(shifted, truth, area)) == pytest.approx(c, rel=1e-9)
    single = shifted.expand_dims(member=1)   # CRPS of a one-member ensemble is its MAE
    for fair in (True, False):
        crps = weighted_mean(skill.crps_ensemble(single, truth, fair=fair), area)
        assert float(crps) == pytest.approx(c, rel=1e-9)


def test_weighted_mean_weights_by_area(grid8):
    x = xr.zeros_like(grid8.area) + (grid8.lat > 0)
    expected = float((grid8.area * (grid8.lat > 0)).sum() / grid8.area.sum())
    assert float(weighted_mean(x, grid8.area)) == pytest.approx(expected, rel=1e-12)


def test_fair_crps_matches_brute_force_and_properscoring_relation(rng):
    k = 6
    ens = _gamma(rng, (k, 4, 6, 3, 3))
    y = _gamma(rng, (4, 6, 3, 3))
    e = field(ens, member=True)
    t = field(y)
    got = skill.crps_ensemble(e, t, fair=True).transpose("time", "tile", "grid_yt", "grid_xt").values
    pair = np.abs(ens[:, None] - ens[None]).sum((0, 1))                      # Σ_k Σ_l |x_k − x_l|
    brute = np.abs(ens - y).mean(0) - pair / (2 * k * (k - 1))
    np.testing.assert_allclose(got, brute, rtol=1e-10, atol=1e-22)
    ordinary = properscoring.crps_ensemble(y, np.moveaxis(ens, 0, -1))        # the non-fair CRPS
    np.testing.assert_allclose(skill.crps_ensemble(e, t, fair=False).values, ordinary, rtol=1e-10, atol=1e-22)
    # fair = properscoring − spread correction Σ_k Σ_l |x_k − x_l| / (2 K² (K − 1))
    np.testing.assert_allclose(got, ordinary - pair / (2 * k * k * (k - 1)), rtol=1e-9, atol=1e-22)


def test_fair_and_standard_crps_against_properscoring_and_the_fair_formula(rng):
    k = 5
    ens = _gamma(rng, (k, 3, 6, 3, 3))
    y = _gamma(rng, (3, 6, 3, 3))
    fair, standard = skill.crps_fair_and_standard(field(ens, member=True), field(y))
    expected_standard = properscoring.crps_ensemble(y, np.moveaxis(ens, 0, -1))     # the standard estimator
    pair = sum(np.abs(ens[i] - ens[j]) for i in range(k) for j in range(k))          # brute force Σ_k Σ_l
    expected_fair = np.abs(ens - y).mean(0) - pair / (2 * k * (k - 1))
    np.testing.assert_allclose(standard.values, expected_standard, rtol=1e-10, atol=1e-22)
    np.testing.assert_allclose(fair.values, expected_fair, rtol=1e-10, atol=1e-22)
    assert np.all(fair.values <= standard.values)
    one = field(ens[:1], member=True)                    # one member: both are its absolute error
    for crps in skill.crps_fair_and_standard(one, field(y)):
        np.testing.assert_allclose(crps.values, np.abs(ens[0] - y), rtol=1e-12)
    lazy = skill.crps_fair_and_standard(field(ens, member=True).chunk(member=1, time=1), field(y).chunk(time=1))
    np.testing.assert_allclose(lazy[0].values, expected_fair, rtol=1e-10, atol=1e-22)


def _ensemble_and_truth(rng, k, n_time, member_sd, truth_sd=1.0):
    centre = rng.normal(size=(n_time, 6, 4, 4))            # a predictable part shared by members and truth
    truth = centre + truth_sd * rng.normal(size=centre.shape)
    members = centre + member_sd * rng.normal(size=(k,) + centre.shape)
    return field(members, member=True), field(truth)


def test_rank_histogram_is_flat_when_calibrated_and_u_shaped_when_under_dispersive(grid8, rng):
    k = 9
    ens, truth = _ensemble_and_truth(rng, k, 60, 1.0)
    area = xr.ones_like(grid8.area.isel(grid_yt=slice(0, 4), grid_xt=slice(0, 4)))
    flat = skill.rank_histogram(ens, truth, area)
    assert flat.sizes["rank"] == k + 1 and float(flat.sum()) == pytest.approx(1.0)
    n = truth.size                                          # 5760 samples: binomial sd of a bin ~ 0.0039
    sd = np.sqrt((1 / (k + 1)) * (1 - 1 / (k + 1)) / n)
    assert np.all(np.abs(flat.values - 1 / (k + 1)) < 4.5 * sd)
    narrow, truth2 = _ensemble_and_truth(rng, k, 60, 0.3)
    u = skill.rank_histogram(narrow, truth2, area).values
    assert u[0] > 2.5 / (k + 1) and u[-1] > 2.5 / (k + 1) and u[k // 2] < 0.5 / (k + 1)


def test_rank_histogram_shares_ties_evenly():
    truth = field(np.zeros((1, 6, 2, 2)))
    ens = field(np.zeros((3, 1, 6, 2, 2)), member=True)    # all tied: rank 0..3 equally likely
    np.testing.assert_allclose(skill.rank_histogram(ens, truth).values, 0.25)


def test_spread_skill_ratio_is_one_when_calibrated_and_low_when_under_dispersive(grid8, rng):
    area = xr.ones_like(grid8.area.isel(grid_yt=slice(0, 4), grid_xt=slice(0, 4)))
    ens, truth = _ensemble_and_truth(rng, 5, 80, 1.0)
    assert float(skill.spread_skill_ratio(ens, truth, area)) == pytest.approx(1.0, abs=0.04)
    ens, truth = _ensemble_and_truth(rng, 5, 80, 0.3)
    assert float(skill.spread_skill_ratio(ens, truth, area)) < 0.4
    with pytest.raises(ValueError, match="at least 2 members"):
        skill.spread_skill_ratio(ens.isel(member=[0]), truth, area)


def test_dask_input_gives_the_numpy_result_without_computing(grid8, rng):
    ens = field(_gamma(rng, (4, 16, 6, 8, 8)), member=True)
    truth = field(_gamma(rng, (16, 6, 8, 8)))
    lazy_ens, lazy_truth = ens.chunk(time=4, member=1), truth.chunk(time=4)
    area = grid8.area
    with no_compute():
        lazy = {
            "mse": skill.mse(lazy_ens.mean("member"), lazy_truth, area),
            "mae": skill.mae(lazy_ens, lazy_truth, area),
            "crps": weighted_mean(skill.crps_ensemble(lazy_ens, lazy_truth, fair=True), area),
            "ssr": skill.spread_skill_ratio(lazy_ens, lazy_truth, area),
            "rank": skill.rank_histogram(lazy_ens, lazy_truth, area),
        }
        assert all(v.chunks is not None for v in lazy.values())
    eager = {
        "mse": skill.mse(ens.mean("member"), truth, area),
        "mae": skill.mae(ens, truth, area),
        "crps": weighted_mean(skill.crps_ensemble(ens, truth, fair=True), area),
        "ssr": skill.spread_skill_ratio(ens, truth, area),
        "rank": skill.rank_histogram(ens, truth, area),
    }
    for k in lazy:
        np.testing.assert_allclose(lazy[k].compute().values, eager[k].values, rtol=1e-10)


def test_mismatched_dims_give_a_clear_error(grid8):
    a = field(np.zeros((2, 6, 8, 8)))
    b = a.rename(grid_xt="x")
    with pytest.raises(ValueError, match="lacks the truth's dims"):
        skill.mae(b, a, grid8.area)
    with pytest.raises(ValueError, match="member"):
        skill.crps_ensemble(a, a, fair=True)
