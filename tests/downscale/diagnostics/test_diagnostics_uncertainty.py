"""Day-block bootstrap of extreme quantiles: coverage of a known quantile, shrinking with more days, whole days
as blocks, paired errors, the supported-quantile rule, and dask = numpy without computing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from diag_helpers import field, julian_times, no_compute
from downscale.diagnostics import uncertainty as unc

SCALE = 1e-4                   # kg m-2 s-1 (8.64 mm/day): exponential rates, Q(q) = −SCALE · ln(1 − q)
Q = 0.999
CELLS = (6, 8, 8)             # 3072 values a day at 8 frames a day


def _exact(q: float) -> float:
    return -SCALE * np.log1p(-q)


def _ones() -> xr.DataArray:
    return xr.DataArray(np.ones(CELLS), dims=("tile", "grid_yt", "grid_xt"))


def _bootstrap(sources: dict[str, xr.DataArray], n_boot: int = 200, seed: int = 0, quantiles=(Q,)) -> xr.Dataset:
    """Daily histograms of every source (equal weights: the plain quantile) bootstrapped together."""
    hists = xr.concat([unc.daily_histograms(x, _ones()) for x in sources.values()], dim="source")
    n = xr.DataArray([float(x.size) for x in sources.values()], dims="source")
    names = {"source": list(sources)}
    return unc.bootstrap_extremes(hists.assign_coords(names), n.assign_coords(names), quantiles, "truth",
                                  n_boot=n_boot, seed=seed)


def _exponential(rng: np.random.Generator, days: int, per_day: int = 8) -> xr.DataArray:
    return field(rng.exponential(SCALE, size=(days * per_day, *CELLS)), julian_times(days * per_day, 24 / per_day))


def _interval(days: int, seed: int) -> tuple[float, float, float]:
    x = _exponential(np.random.default_rng(seed), days)
    v = _bootstrap({"truth": x}, seed=seed).extreme_quantile_value.sel(source="truth", extreme_quantile=Q)
    assert float(v.sel(stat="se")) > 0
    return float(v.sel(stat="lower")), float(v.sel(stat="value")), float(v.sel(stat="upper"))


def test_interval_covers_the_true_quantile_and_shrinks_with_more_days():
    short = [_interval(15, seed) for seed in range(20)]                 # 46 values above q99.9 per sample
    covered = sum(lower <= _exact(Q) <= upper for lower, _, upper in short)
    assert covered >= 16, covered              # a 95 % interval: about 19 of 20; 16 is 2.7 sd below that
    assert all(lower < value < upper for lower, value, upper in short)
    long = [_interval(60, seed) for seed in range(5)]
    ratio = np.mean([u - lo for lo, _, u in long]) / np.mean([u - lo for lo, _, u in short[:5]])
    assert ratio == pytest.approx(0.5, abs=0.15)                         # ∝ 1/√days: 4x the days, half the width


def test_whole_days_are_the_blocks():
    """A field constant within each day has exactly the interval of its one-frame-per-day field: resampling
    single frames instead would make the first one narrower."""
    rng = np.random.default_rng(3)
    days = 25
    daily = rng.exponential(SCALE, size=(days, *CELLS))
    per_day = field(daily, julian_times(days, 24.0))
    repeated = field(np.repeat(daily, 8, axis=0), julian_times(8 * days, 3.0))
    a = _bootstrap({"truth": per_day}, seed=7).extreme_quantile_value.sel(source="truth", extreme_quantile=Q)
    b = _bootstrap({"truth": repeated}, seed=7).extreme_quantile_value.sel(source="truth", extreme_quantile=Q)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)
    assert float(a.sel(stat="upper") - a.sel(stat="lower")) > 0


def test_errors_are_paired():
    x = _exponential(np.random.default_rng(5), 30)
    boot = _bootstrap({"same": x, "double": 2 * x, "truth": x}, seed=1)
    same = boot.extreme_pe.sel(source="same", extreme_quantile=Q)
    np.testing.assert_array_equal(same.values, 0.0)                     # PE 0 with a zero-width interval
    np.testing.assert_array_equal(boot.extreme_quantile_difference.sel(source="same").values, 0.0)
    # 2x: Q_b(2x) − Q_b(x) = Q_b(x) on every resample, so the difference has the truth's interval and standard
    # error, not √2 times them as independent resamples would give (up to the bins: Q_b is read to ~0.2 % of Q,
    # a few % of its standard error here)
    d = boot.extreme_quantile_difference.sel(source="double", extreme_quantile=Q)
    t = boot.extreme_quantile_value.sel(source="truth", extreme_quantile=Q)
    for stat, rel in (("value", 0.01), ("lower", 0.01), ("upper", 0.01), ("se", 0.1)):
        assert float(d.sel(stat=stat)) == pytest.approx(float(t.sel(stat=stat)), rel=rel), stat
    pe = boot.extreme_pe.sel(source="double", extreme_quantile=Q)
    assert float(pe.sel(stat="value")) == pytest.approx(float(d.sel(stat="value")))


def test_supported_quantile_rule_and_scalars():
    np.testing.assert_array_equal(unc.supported(xr.DataArray(1e4), [0.99, 0.999, 0.9999]).values, [True, True, False])
    x = _exponential(np.random.default_rng(2), 3)                      # 9216 values: 9.2 above q99.9
    boot = _bootstrap({"ensemble": 1.5 * x, "truth": x}, n_boot=50, quantiles=(0.99, 0.999, 0.9999))
    np.testing.assert_array_equal(boot.extreme_supported.sel(source="truth").values, [True, False, False])
    s = unc.extreme_scalars(boot)
    assert {"q99", "pe_q999_upper", "truth_q9999_lower", "q99_in_truth_interval", "supported_q999"} <= set(s)
    assert s["truth_q99_lower"].dims == () and s["pe_q99"].dims == ("source",)
    assert bool(s["q99_in_truth_interval"].sel(source="truth"))
    assert not bool(s["q99_in_truth_interval"].sel(source="ensemble"))  # 1.5x is far outside
    assert float(s["pe_q99"].sel(source="ensemble")) == pytest.approx(0.5 * float(s["q99"].sel(source="truth")),
                                                                      rel=0.02)


def test_quantile_below_the_floor_is_bounded_and_tags():
    x = field(np.zeros((16, *CELLS)))
    v = _bootstrap({"truth": x, "drizzle": x + 1e-7}, n_boot=5)
    floor = unc.EXTREME_BINS.floor                                      # 0.0864 mm/day: only bounded below it
    assert (v.extreme_quantile_value >= 0).all() and (v.extreme_quantile_value < floor).all()
    assert (v.extreme_pe < floor).all()
    assert [unc.quantile_tag(q) for q in (0.99, 0.999, 0.99999)] == ["q99", "q999", "q99999"]
    with pytest.raises(ValueError):
        unc.quantile_tag(1.0)


def test_daily_histograms_on_dask_without_computing(rng):
    x = _exponential(rng, 6)
    w = xr.concat([_ones(), _ones().where(_ones().tile < 3, 0.0)], dim="region").assign_coords(region=["a", "b"])
    eager = unc.daily_histograms(x, w)
    with no_compute():
        lazy = unc.daily_histograms(x.chunk(time=5), w)
        assert lazy.chunks is not None
    assert eager.dims == ("day", "region", "bin") and eager.sizes["day"] == 6
    np.testing.assert_allclose(lazy.values, eager.values)
    np.testing.assert_allclose(eager.sum("day").sel(region="a").sum(), x.size)           # every value counted once
