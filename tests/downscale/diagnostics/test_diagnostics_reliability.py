"""Brier score against properscoring's pointwise Brier score (numpy brute force over thresholds and regions),
reliability on the diagonal for a calibrated ensemble and off it for an over-confident one, the common
probability bins, and dask = numpy without computing."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
import xarray as xr

from diag_helpers import field, no_compute
from downscale.diagnostics import reliability as rel

K = 10


def _weights(grid8) -> xr.DataArray:
    """(region, tile, y, x): every cell, and only the northern cells."""
    area = grid8.area.isel(grid_yt=slice(0, 4), grid_xt=slice(0, 4))
    north = area.where(grid8.lat.isel(grid_yt=slice(0, 4), grid_xt=slice(0, 4)) > 0, 0.0)
    return xr.concat([area, north], dim="region").assign_coords(region=["all", "north"])


def _calibrated(rng: np.random.Generator, n_time: int, member_sd: float) -> tuple[xr.DataArray, xr.DataArray]:
    """Members and truth drawn from the same distribution N(c, 1) around a predictable centre c (exchangeable
    when ``member_sd`` = 1; over-confident below)."""
    centre = rng.normal(0.0, 2.0, size=(n_time, 6, 4, 4))
    truth = centre + rng.normal(size=centre.shape)
    members = centre + member_sd * rng.normal(size=(K,) + centre.shape)
    return field(members, member=True), field(truth)


def _brute_brier(members: np.ndarray | None, point: np.ndarray | None, truth: np.ndarray, u: float,
                 w: np.ndarray) -> float:
    p = (members > u).mean(0) if members is not None else (point > u).astype(float)
    bs = properscoring.brier_score((truth > u).astype(float), p)                     # (p − o)² per cell and time
    weights = np.broadcast_to(w, truth.shape)
    return float(np.sum(weights * bs) / np.sum(weights))


def test_brier_score_matches_a_brute_force(grid8, rng):
    ens, truth = _calibrated(rng, 30, 1.0)
    w = _weights(grid8)
    thresholds = xr.DataArray([[0.5, 2.0], [1.0, 3.0]], dims=("region", "threshold_quantile"),
                              coords={"region": ["all", "north"], "threshold_quantile": [0.9, 0.99]})
    point = ens.mean("member")
    for forecast, members, det in ((ens, ens.values, None), (point, None, point.values)):
        bs = rel.brier_score(rel.exceedance_counts(forecast, truth, thresholds, w))
        assert bs.dims == ("region", "threshold_quantile")
        for r in ("all", "north"):
            for q in (0.9, 0.99):
                u = float(thresholds.sel(region=r, threshold_quantile=q))
                expected = _brute_brier(members, det, truth.values, u, w.sel(region=r).values)
                assert float(bs.sel(region=r, threshold_quantile=q)) == pytest.approx(expected, rel=1e-12)
    assert float(rel.brier_score(rel.exceedance_counts(truth, truth, thresholds, w)).max()) == 0.0


def test_reliability_is_diagonal_when_calibrated_and_not_when_over_confident(grid8, rng):
    area = grid8.area.isel(grid_yt=slice(0, 4), grid_xt=slice(0, 4))
    u = xr.DataArray(1.5)
    for member_sd, calibrated in ((1.0, True), (0.4, False)):
        ens, truth = _calibrated(rng, 300, member_sd)
        curve = rel.reliability_curve(rel.reliability_counts(rel.exceedance_counts(ens, truth, u, area)))
        assert curve.sizes["probability"] == K + 1
        assert float(curve.weight.sum()) == pytest.approx(1.0)
        used = curve.weight > 0.01
        gap = float(abs(curve.frequency - curve.probability).where(used).max())
        # exchangeable members and truth: E[o | k of K above] is k/K shrunk slightly toward the climatology,
        # a few hundredths here; sampling noise about 0.02 per bin
        if calibrated:
            assert gap < 0.1, gap
        else:
            assert gap > 0.15, gap


def test_common_probability_bins():
    counts = xr.DataArray(np.array([[5.0, 1.0], [2.0, 4.0]]), dims=("n_above", "observed"))   # deterministic: K = 1
    moved = rel.reliability_counts(counts, 4)
    np.testing.assert_allclose(moved.probability.values, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(moved.values, [[5, 1], [0, 0], [0, 0], [0, 0], [2, 4]])
    curve = rel.reliability_curve(moved)
    np.testing.assert_allclose(curve.frequency.values[[0, 4]], [1 / 6, 4 / 6])
    assert np.isnan(curve.frequency.values[1:4]).all()
    np.testing.assert_allclose(curve.weight.values, [0.5, 0, 0, 0, 0.5])
    assert float(rel.brier_score(counts)) == pytest.approx((1.0 + 2.0) / 12.0)    # misses / all


def test_dask_gives_the_numpy_result_without_computing(grid8, rng):
    ens, truth = _calibrated(rng, 12, 1.0)
    w = _weights(grid8)
    thresholds = xr.DataArray([1.0, 2.0], dims="region", coords={"region": ["all", "north"]})
    eager = rel.exceedance_counts(ens, truth, thresholds, w)
    with no_compute():
        lazy = rel.exceedance_counts(ens.chunk(member=1, time=4), truth.chunk(time=4), thresholds, w)
        assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, eager.values)
    assert eager.dims == ("region", "n_above", "observed") and eager.sizes["n_above"] == K + 1
    with pytest.raises(ValueError, match="threshold each"):
        rel.exceedance_counts(ens, truth, xr.DataArray(1.0), w)
