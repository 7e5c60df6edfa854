"""Validation scores (the report's CRPS and tail quantiles, pooled over batches and ranks), the EMA and the
learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import properscoring
import pytest
import torch
import xarray as xr
from torch import nn

from data_catalog.prepare import PreparedDataset
from downscale.dataset_info import DatasetInfo
from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import histogram
from downscale.diagnostics.skill import crps_fair_and_standard
from downscale.diagnostics.weights import weighted_mean
from downscale.evaluation.pooled import PooledScores
from downscale.training.ema import EMA, ema_decay_at
from downscale.training.module import warmup_cosine

DIMS = ("time", "tile", "y", "x")


def _batch(rng, k: int, n_time: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ensemble (k, time, 6, 10, 10), a truth and a point forecast of precipitation-like values."""
    def draw(shape):
        x = rng.gamma(0.3, 3e-5, size=shape)
        x[rng.random(shape) < 0.4] = 0.0
        return x
    truth = draw((n_time, 6, 10, 10))
    return draw((k, *truth.shape)), truth, 0.8 * truth + 1e-6


def test_validation_scores_are_the_reports_statistics_whatever_the_batches():
    """CRPS (both estimators), MAE and pooled quantiles added batch by batch with area weights equal the report's:
    the area-weighted mean of the pointwise CRPS over everything, and quantiles read off its histogram."""
    rng = np.random.default_rng(1)
    ens, truth, point = _batch(rng, 5, 12)
    area = rng.uniform(0.5, 1.5, size=(6, 10, 10))
    scores = PooledScores()
    for part in np.array_split(np.arange(12), [2, 7]):               # uneven batches
        scores.update(ens[:, part], truth[part], area, point=point[part])
    e = xr.DataArray(ens, dims=("member", *DIMS))
    y, w = xr.DataArray(truth, dims=DIMS), xr.DataArray(area, dims=DIMS[1:])
    fair, standard = crps_fair_and_standard(e, y)
    got = scores.results((0.9, 0.999, 0.9999))
    assert got["crps_fair"] == pytest.approx(float(weighted_mean(fair, w)), rel=1e-12)
    assert got["crps_standard"] == pytest.approx(float(weighted_mean(standard, w)), rel=1e-12)
    ordinary = properscoring.crps_ensemble(truth, np.moveaxis(ens, 0, -1))
    assert got["crps_standard"] == pytest.approx(np.sum(area * ordinary) / (12 * area.sum()), rel=1e-10)
    assert got["crps_fair"] < got["crps_standard"]
    assert got["mae_point"] == pytest.approx(float(weighted_mean(abs(0.8 * y + 1e-6 - y), w)), rel=1e-12)
    qs = (0.9, 0.999, 0.9999)
    for which, values in (("ensemble", e), ("truth", y)):
        expected = histogram_quantiles(histogram(values, w), qs).values
        np.testing.assert_allclose(list(scores.quantiles(which, qs).values()), expected, rtol=1e-12)
    unweighted = PooledScores()
    unweighted.update(ens, truth, np.ones((6, 10, 10)))
    assert unweighted.quantiles("truth", (0.999,))[0.999] != pytest.approx(scores.quantiles("truth", (0.999,))[0.999],
                                                                         rel=1e-6)   # the weights count


def test_summed_states_of_ranks_score_their_union():
    """Validation adds each rank's state vector (one all-reduce): the sum scores all the clips together."""
    rng = np.random.default_rng(3)
    ens, truth, point = _batch(rng, 4, 6)
    area = rng.uniform(0.5, 1.5, size=(6, 10, 10))
    whole, ranks = PooledScores(), [PooledScores(), PooledScores()]
    whole.update(ens, truth, area, point=point)
    ranks[0].update(ens[:, :2], truth[:2], area, point=point[:2])
    ranks[1].update(ens[:, 2:], truth[2:], area, point=point[2:])
    merged = PooledScores()
    merged.state = ranks[0].state + ranks[1].state
    for key, value in whole.results().items():
        assert merged.results()[key] == pytest.approx(value, rel=1e-12), key
    assert PooledScores().empty and not merged.empty
    assert math.isnan(PooledScores().results()["crps_fair"])


def test_a_perfect_ensemble_scores_zero_and_scaled_tails_give_their_factor():
    rng = np.random.default_rng(2)
    truth = rng.gamma(0.5, 1e-5, size=(2000, 6, 4, 4))
    perfect = PooledScores()
    perfect.update(np.stack([truth] * 3), truth, np.ones((6, 4, 4)), point=truth)
    r = perfect.results()
    assert (r["crps_fair"], r["crps_standard"], r["mae_point"]) == (0.0, 0.0, 0.0)
    assert r["tail_error"] == pytest.approx(0.0, abs=1e-12)               # 3 × the truth's counts: same quantiles
    doubled = PooledScores()
    doubled.update(2 * truth[None], truth, np.ones((6, 4, 4)))          # every value doubled: every ratio is 2
    ratios = doubled.quantile_ratios()
    assert set(ratios) == {0.999, 0.9999}
    for ratio in ratios.values():
        assert ratio == pytest.approx(2.0, rel=0.01)
    assert doubled.results()["tail_error"] == pytest.approx(1.0, rel=0.01)
    assert {"q999_ratio", "q9999_ratio"} <= set(doubled.results())
    with pytest.raises(ValueError, match="do not match"):
        doubled.update(truth[None, :5], truth, np.ones((6, 4, 4)))


def test_the_residual_std_sees_samples_as_generate_ships_them(tiny_prepared):
    """Values below zero rain (the network's "dry") come back at zero rain, values above it unchanged, outliers
    at the 1 kg m-2 s-1 cap: what the store holds, in normalized units."""
    info = DatasetInfo.from_prepared(PreparedDataset.open(tiny_prepared))
    zero = float(info.normalization.normalize(info.target, 0.0))
    cap = float(info.normalization.normalize(info.target, 1.0))
    y = torch.tensor([zero - 2.0, zero - 1e-3, zero, zero + 0.5, 2.0, cap + 5.0])
    shipped = info.shipped_target(y)
    assert shipped.dtype == torch.float32
    torch.testing.assert_close(shipped, torch.tensor([zero, zero, zero, zero + 0.5, 2.0, cap]), atol=2e-5, rtol=0)
    # the floor shrinks the spread of a draw that straddles zero rain, so the two readings differ
    draws = torch.tensor([zero - 1.0, zero + 1.0])
    assert info.shipped_target(draws).std() < draws.std()


def test_ema_warmup_update_and_swap():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(0, 0.9, warmup=False) == 0.9
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.5, warmup=False)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(4, 2))  # changes the BatchNorm buffers
    ema.update(net)
    w = net.state_dict()
    assert torch.allclose(ema.shadow["0.weight"], start["0.weight"] + 0.5)  # halfway for β = 0.5
    assert torch.equal(ema.shadow["1.running_mean"], w["1.running_mean"])  # buffers copied
    live = net[0].weight.detach().clone()
    with ema.averaged(net):
        assert torch.allclose(net[0].weight, start["0.weight"] + 0.5)
    assert torch.equal(net[0].weight, live)
    restored = EMA(net, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 1 and torch.equal(restored.shadow["0.weight"], ema.shadow["0.weight"])
    with pytest.raises(KeyError, match="does not fit"):
        EMA(nn.Linear(3, 3)).load_state_dict(ema.state_dict())
    # a state saved before a buffer existed loads, the buffer keeps its value; a missing parameter does not
    older = ema.state_dict()
    del older["shadow"]["1.running_var"]
    kept = restored.shadow["1.running_var"].clone()
    restored.load_state_dict(older)
    assert torch.equal(restored.shadow["1.running_var"], kept)
    del older["shadow"]["1.weight"]
    with pytest.raises(KeyError, match=r"missing \['1.weight'\]"):
        restored.load_state_dict(older)


def test_warmup_cosine_schedule():
    f = [warmup_cosine(s, 0, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert warmup_cosine(100, 0, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(55, 0, 100, 10, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    # a second stage starts its own warm-up
    assert warmup_cosine(50, 50, 100, 10, 0.0) == pytest.approx(0.1)
