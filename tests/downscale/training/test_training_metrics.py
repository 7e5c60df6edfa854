"""Validation metrics (fair CRPS, tail quantiles), the EMA and the learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import properscoring
import pytest
import torch
import xarray as xr
from torch import nn

from downscale.training.ema import EMA, ema_decay_at
from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import histogram
from downscale.training.metrics import TailCounts, fair_crps, standard_crps, tail_error, tail_ratios
from downscale.training.module import warmup_cosine


def test_fair_crps_matches_the_pairwise_definition_and_properscoring():
    rng = np.random.default_rng(0)
    k = 7
    ens = rng.gamma(0.6, 2e-5, size=(k, 3, 6, 4, 4))
    y = rng.gamma(0.6, 2e-5, size=(3, 6, 4, 4))
    got = fair_crps(torch.from_numpy(ens), torch.from_numpy(y)).numpy()
    pairwise = np.abs(ens[:, None] - ens[None]).sum((0, 1))
    expected = np.abs(ens - y).mean(0) - pairwise / (2 * k * (k - 1))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-20)
    # properscoring gives the ordinary (not fair) CRPS: fair = ordinary − spread term · 1/(K−1) correction
    ordinary = properscoring.crps_ensemble(y, np.moveaxis(ens, 0, -1))
    np.testing.assert_allclose(got, ordinary - pairwise / (2 * k * k) / (k - 1), rtol=1e-8, atol=1e-20)
    standard = standard_crps(torch.from_numpy(ens), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(standard, ordinary, rtol=1e-8, atol=1e-20)


def test_fair_crps_of_a_perfect_deterministic_ensemble_is_zero_and_needs_two_members():
    y = torch.rand(5, 6, 2, 2)
    assert torch.allclose(fair_crps(y.expand(4, *y.shape), y), torch.zeros_like(y), atol=1e-7)
    with pytest.raises(ValueError, match="at least 2"):
        fair_crps(y[None], y)


def test_validation_tail_quantiles_are_the_reports_statistic():
    """Counts added batch by batch with area weights give the quantiles the report reads off its histogram."""
    rng = np.random.default_rng(1)
    values = rng.gamma(0.3, 3e-5, size=(8, 6, 10, 10))
    values[rng.random(values.shape) < 0.4] = 0.0
    area = rng.uniform(0.5, 1.5, size=(6, 10, 10))
    counts = TailCounts()
    for part in np.array_split(values, 3):
        counts.update(torch.from_numpy(part).float(), torch.from_numpy(area))
    report = histogram(xr.DataArray(values.astype(np.float32), dims=["time", "tile", "y", "x"]),
                       xr.DataArray(area, dims=["tile", "y", "x"]))
    expected = histogram_quantiles(report, [0.9, 0.999, 0.9999]).values
    got = counts.quantiles((0.9, 0.999, 0.9999))
    np.testing.assert_allclose(list(got.values()), expected, rtol=1e-9)
    unweighted = TailCounts()
    unweighted.update(torch.from_numpy(values).float(), torch.ones(6, 10, 10, dtype=torch.float64))
    assert unweighted.quantiles((0.999,))[0.999] != pytest.approx(got[0.999], rel=1e-6)  # the weights count


def test_tail_ratios_and_error():
    truth, pred = TailCounts(), TailCounts()
    x = torch.from_numpy(np.random.default_rng(2).gamma(0.5, 1e-5, size=(2000, 6, 4, 4)))
    w = torch.ones(6, 4, 4, dtype=torch.float64)
    truth.update(x, w)
    pred.update(2 * x, w)  # every value doubled: every quantile ratio is 2
    ratios = tail_ratios(pred, truth)
    assert set(ratios) == {0.999, 0.9999}
    for r in ratios.values():
        assert r == pytest.approx(2.0, rel=0.01)
    assert tail_error(ratios) == pytest.approx(1.0, rel=0.01)


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


def test_warmup_cosine_schedule():
    f = [warmup_cosine(s, 0, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert warmup_cosine(100, 0, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(55, 0, 100, 10, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    # a second stage starts its own warm-up
    assert warmup_cosine(50, 50, 100, 10, 0.0) == pytest.approx(0.1)
