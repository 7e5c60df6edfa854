"""End to end: a tiny ensemble-shaped output store in tmp_path, every metric for every source, the writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import properscoring
import pytest
import xarray as xr

from data_catalog.coarsen import coarse_grain
from diag_helpers import julian_times, output_grid, smooth_unit_vector_field
from downscale.evaluation.results import write_comparison
from downscale.evaluation.score import CompareConfig, compare

N, FACTOR, NT, K = 16, 2, 8 * 12, 3      # C16 from C8, 12 days 3-hourly, 3 members
SHIFT = 2e-6                             # kg m-2 s-1: the "deterministic" baseline is truth + SHIFT
WINDOW = 5                               # frames per generated window: joins at 5, 10, …
SHRINK = 0.3                             # the narrow ensemble's deviations from the mean, × the truth's


def _draws(rng, pattern: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Values from the truth's distribution at each cell: pattern × Gamma(0.6, 3e-5), 30 % of them dry."""
    x = pattern * rng.gamma(0.6, 3e-5, size=shape)
    x[rng.random(shape) < 0.3] = 0.0
    return x.astype(np.float32)


def _output_store(root: Path) -> Path:
    rng = np.random.default_rng(5)
    grid = output_grid(N)
    pattern = 1.0 + 0.8 * smooth_unit_vector_field(N)
    truth = _draws(rng, pattern, (NT, 6, N, N))
    fine_dims = ("time", "tile", "grid_yt", "grid_xt")
    t = xr.DataArray(truth, dims=fine_dims)
    coarse = coarse_grain(t.rename(grid_yt="y", grid_xt="x"), grid.area.rename(grid_yt="y", grid_xt="x"), FACTOR)
    coarse = coarse.rename(y="grid_yt_coarse", x="grid_xt_coarse")
    members = truth[None] * rng.lognormal(0.0, 0.5, size=(K,) + truth.shape).astype(np.float32)
    # an extra ensemble far better than any baseline: were it taken for one, every ratio would change
    raw = truth[None] * rng.lognormal(0.0, 0.02, size=(K,) + truth.shape).astype(np.float32)
    # exchangeable with the truth (independent draws from its distribution): calibrated, spread–skill ≈ 1
    calibrated = _draws(rng, pattern, (K,) + truth.shape)
    # the distribution's mean plus SHRINK × a draw's deviation, one draw per window (± 2 % per frame):
    # under-dispersed (spread–skill ≈ SHRINK · √((K+1)/(1 + SHRINK²·K)) … ≈ 0.34) and jumping at every join
    mean = 0.7 * 0.6 * 3e-5 * pattern
    per_window = _draws(rng, pattern, (K, -(-NT // WINDOW), 6, N, N)).repeat(WINDOW, axis=1)[:, :NT]
    narrow = ((mean + SHRINK * (per_window - mean)) * rng.lognormal(0.0, 0.02, size=per_window.shape)).astype(
        np.float32)
    attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}
    ds = xr.Dataset(
        {"PRATEsfc": (("member",) + fine_dims, members, attrs),
         "PRATEsfc_ensemble_raw": (("member",) + fine_dims, raw, attrs),
         "PRATEsfc_ensemble_calibrated": (("member",) + fine_dims, calibrated, attrs),
         "PRATEsfc_ensemble_narrow": (("member",) + fine_dims, narrow, attrs),
         "PRATEsfc_deterministic": (fine_dims, truth + np.float32(SHIFT), attrs),
         "PRATEsfc_bilinear": (fine_dims, np.repeat(np.repeat(coarse.values, FACTOR, -2), FACTOR, -1) * 1.05, attrs),
         "PRATEsfc_truth": (fine_dims, truth, attrs),
         "PRATEsfc_coarse": (("time", "tile", "grid_yt_coarse", "grid_xt_coarse"), coarse.values, attrs),
         "lat": grid.lat.variable, "lon": grid.lon.variable, "area": grid.area.variable},
        coords={"time": julian_times(NT), "member": np.arange(1, K + 1),
                "grid_yt": np.arange(1.0, N + 1), "grid_xt": np.arange(1.0, N + 1)},
    )
    path = root / "outputs.zarr"
    ds.chunk(time=48, member=1).to_zarr(path, zarr_format=3, mode="w", consolidated=False)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return _output_store(tmp_path_factory.mktemp("compare"))


@pytest.fixture(scope="module")
def comparison(store):
    ds = xr.open_zarr(store, consolidated=False)
    assert ds["PRATEsfc"].chunks is not None
    cfg = CompareConfig(factor=FACTOR, regions=("global", "tropics"), thresholds_mm_day=(10.0, 50.0),
                        lags_hours=(3, 12), return_level_regions=("tropics",), tail_quantile=0.9, n_boot=10,
                        window_joins=tuple(range(WINDOW, NT, WINDOW)))
    return compare(ds, cfg)


def test_sources_and_sanity_row(comparison):
    s = comparison.scalars
    assert list(s.source.values) == ["ensemble", "ensemble_calibrated", "ensemble_narrow", "ensemble_raw", "bilinear",
                                     "deterministic", "coarse", "truth"]
    assert list(s.source_kind.values) == ["ensemble"] * 4 + ["baseline", "baseline", "coarse", "truth"]
    assert list(comparison.curves.source_kind.values) == list(s.source_kind.values)
    truth = s.sel(source="truth", region="global")
    for m in ("mse", "mae", "bias", "crps_fair", "crps_standard", "pe", "emd", "mse_member", "pe_q999",
              "pe_q999_upper", "brier_q99", "brier_q999"):
        assert float(truth[m]) == 0.0, m
    assert float(s.sae.sel(source="truth")) == 0.0
    assert float(s.mass_relative_error.sel(source="truth")) < 1e-6       # the coarse input is the truth's block mean
    assert float(s.mass_relative_error.sel(source="coarse")) < 1e-6
    assert float(s.mass_bias.sel(source="bilinear")) == pytest.approx(0.05, rel=1e-4)


def test_shifted_baseline_scores_its_shift(comparison):
    det = comparison.scalars.sel(source="deterministic", region="global")
    assert float(det.mae) == pytest.approx(SHIFT, rel=1e-4)
    assert float(det.bias) == pytest.approx(SHIFT, rel=1e-4)
    assert float(det.rmse) == pytest.approx(SHIFT, rel=1e-4)
    assert comparison.scalars.mse.attrs["units"] == "(kg m-2 s-1)2"
    assert float(det.crps_fair) == pytest.approx(SHIFT, rel=1e-4)     # a deterministic CRPS is its MAE
    assert float(det.crps_standard) == float(det.crps_fair)
    assert float(det.emd) == pytest.approx(SHIFT, rel=0.02)
    assert float(det.mae_ratio) == 1.0                                # it is the best baseline by MAE
    assert np.isnan(float(det.spread_skill))


def test_spread_skill_is_one_when_calibrated_and_low_when_under_dispersed(comparison):
    """Members exchangeable with the truth give ≈ 1 in every region; members SHRINK × as far from the mean as
    the truth give the predicted ratio √((K+1)/K · SHRINK² / (SHRINK²/K + 1)) ≈ 0.34 (the jitter aside)."""
    ssr = comparison.scalars.spread_skill
    np.testing.assert_allclose(ssr.sel(source="ensemble_calibrated").values, 1.0, atol=0.05)
    expected = np.sqrt((K + 1) / K * SHRINK**2 / (SHRINK**2 / K + 1))
    np.testing.assert_allclose(ssr.sel(source="ensemble_narrow").values, expected, rtol=0.1)
    assert float(ssr.sel(source="ensemble_narrow", region="global")) < 0.5


def test_join_ratio_flags_jumps_at_window_joins_only(comparison):
    """Frames drawn independently jump as much at a join as elsewhere (≈ 1); members held over each window and
    redrawn at its join jump there only."""
    join = comparison.scalars.join_ratio
    for source in ("truth", "ensemble_calibrated", "deterministic"):
        assert float(join.sel(source=source)) == pytest.approx(1.0, abs=0.05), source
    assert float(join.sel(source="ensemble_narrow")) > 5.0


def test_ensemble_scores(comparison):
    ens = comparison.scalars.sel(source="ensemble")
    assert np.all(ens.crps_fair.values < ens.crps_standard.values)   # fair < standard when members differ
    assert np.all(ens.crps_standard.values < ens.mae_member.values)  # CRPS ≤ mean member MAE
    rank = comparison.curves.rank_histogram
    assert rank.sizes["rank"] == K + 1 and float(rank.sum()) == pytest.approx(1.0)
    exc = comparison.scalars.exceedance_frequency
    assert exc.dims == ("source", "threshold") and np.all(np.diff(exc.values, axis=1) <= 0)


def test_maps_and_curves(comparison):
    maps, curves = comparison.maps, comparison.curves
    assert maps.bias.dims == ("source", "tile", "grid_yt", "grid_xt")
    assert maps.seasonal_mean.dims[:2] == ("source", "season")
    np.testing.assert_allclose(maps.bias.sel(source="deterministic").values, SHIFT, rtol=1e-3)
    assert float(abs(maps.bias.sel(source="truth")).max()) == 0.0
    assert curves.histogram.dims == ("source", "region", "bin")
    assert curves.power_spectrum.dims == ("source", "wavenumber")
    assert curves.autocorrelation.dims == ("source", "lag")
    assert curves.diurnal_cycle.sizes["local_solar_hour"] == 8
    rl = curves.return_level.sel(tail_region="tropics")
    assert rl.dims == ("source", "return_period") and np.isfinite(rl.sel(source="truth")).all()
    assert int(curves.return_n_exceedances.sel(source="truth", tail_region="tropics")) >= 10
    assert bool((curves.return_lower <= curves.return_level).all() & (curves.return_level <= curves.return_upper).all())


def test_writers_round_trip(comparison, tmp_path):
    paths = write_comparison(comparison, tmp_path / "diag")
    doc = json.loads(paths["metrics"].read_text())
    assert doc["data_vars"]["mae"]["dims"] == ["source", "region"]
    assert json.loads(doc["attrs"]["config"])["factor"] == FACTOR
    maps = xr.open_zarr(paths["maps"], consolidated=False)
    np.testing.assert_allclose(maps.bias.values, comparison.maps.bias.values)
    curves = xr.open_dataset(paths["curves"], engine="h5netcdf")
    np.testing.assert_allclose(curves.histogram.values, comparison.curves.histogram.values)
    assert curves.extreme_supported.dtype == bool and list(curves.source_kind.values)[1] == "ensemble"
    assert doc["data_vars"]["q999_in_truth_interval"]["data"][-1] == [True, True]       # the truth's row
    assert doc["data_vars"]["truth_q999_lower"]["dims"] == ["region"]
    assert doc["coords"]["source_kind"]["data"][1] == "ensemble"


def test_bad_store_gives_a_clear_error(tmp_path):
    ds = xr.Dataset({"PRATEsfc_truth": (("time",), np.zeros(3))})
    with pytest.raises(ValueError, match="no ensemble variable 'PRATEsfc'"):
        compare(ds, CompareConfig(factor=2))
    with pytest.raises(ValueError, match="positive integer"):
        CompareConfig(factor=0)


def test_both_crps_estimators_match_properscoring_and_the_fair_formula(comparison, store):
    ds = xr.open_zarr(store, consolidated=False).load()
    members, truth = ds.PRATEsfc.values.astype(np.float64), ds.PRATEsfc_truth.values.astype(np.float64)
    w = ds.area.values[None] * np.ones_like(truth)
    standard = properscoring.crps_ensemble(truth, np.moveaxis(members, 0, -1))        # the standard estimator
    pair = np.abs(members[:, None] - members[None]).sum((0, 1))
    fair = np.abs(members - truth).mean(0) - pair / (2 * K * (K - 1))
    got = comparison.scalars.sel(source="ensemble", region="global")
    assert float(got.crps_standard) == pytest.approx(np.sum(w * standard) / np.sum(w), rel=1e-5)
    assert float(got.crps_fair) == pytest.approx(np.sum(w * fair) / np.sum(w), rel=1e-5)
    maps = comparison.maps.crps_fair.sel(source="ensemble").transpose("tile", "grid_yt", "grid_xt").values
    np.testing.assert_allclose(maps, fair.mean(0), rtol=1e-5)


def test_ratios_ignore_the_extra_ensemble(comparison):
    s = comparison.scalars.sel(region="global")
    raw = s.sel(source="ensemble_raw")
    assert float(raw.crps_fair) < float(s.crps_fair.sel(source=["bilinear", "deterministic"]).min())
    for m in ("crps_fair", "crps_standard", "mae", "pe_q999", "brier_q99"):
        best = float(s[m].sel(source=["bilinear", "deterministic"]).min())
        assert float(s[f"{m}_ratio"].sel(source="ensemble")) == pytest.approx(float(s[m].sel(source="ensemble")) / best)
    assert float(raw.spread_skill) > 1.5        # scored as an ensemble: members spread around a truth at their centre
    assert "rank_histogram" in comparison.curves and comparison.curves.rank_histogram.sizes["rank"] == K + 1


def test_extreme_quantiles_and_their_support(comparison):
    c, s = comparison.curves, comparison.scalars
    v = c.extreme_quantile_value
    assert v.dims == ("source", "region", "extreme_quantile", "stat")
    assert list(v.stat.values) == ["value", "lower", "upper", "se"]
    truth = v.sel(source="truth", region="global")
    assert bool((truth.sel(stat="lower") <= truth.sel(stat="value")).all())
    assert bool((truth.sel(stat="value") <= truth.sel(stat="upper")).all())
    pe = c.extreme_pe.sel(source="truth")
    assert float(abs(pe).max()) == 0.0                                 # paired: the truth against itself
    n_cells = {"global": 6 * N * N, "tropics": int((output_grid(N).lat.__abs__() < 23.5).sum())}
    for region, cells in n_cells.items():
        for source, k in (("truth", 1), ("ensemble", K)):
            n = cells * NT * k
            assert float(c.extreme_n_values.sel(source=source, region=region)) == n
            expected = [(1 - q) * n >= 10 for q in (0.999, 0.9999, 0.99999)]
            assert list(c.extreme_supported.sel(source=source, region=region).values) == expected
    g = s.sel(region="global")
    assert float(g.truth_q999_lower) == float(truth.sel(extreme_quantile=0.999, stat="lower"))
    inside = (g.q999 >= g.truth_q999_lower) & (g.q999 <= g.truth_q999_upper)
    assert list(g.q999_in_truth_interval.values) == list(inside.values)
    assert bool(g.q999_in_truth_interval.sel(source="truth"))


def test_brier_thresholds_and_reliability(comparison, store):
    ds = xr.open_zarr(store, consolidated=False).load()
    thr = comparison.curves.brier_threshold.sel(region="global")
    area = ds.area.values
    for q in (0.99, 0.999):
        above = (ds.PRATEsfc_truth.values > float(thr.sel(threshold_quantile=q))) * area
        assert above.sum() / (area.sum() * NT) == pytest.approx(1 - q, rel=0.05)   # the truth's quantile
    rel = comparison.curves.reliability_weight
    assert rel.dims == ("source", "region", "threshold_quantile", "probability") and rel.sizes["probability"] == K + 1
    np.testing.assert_allclose(rel.sum("probability").values, 1.0)
    det = rel.sel(source="deterministic")                               # p ∈ {0, 1} only
    assert float(det.isel(probability=slice(1, K)).sum()) == 0.0


def test_structure_scalars_against_the_truth(comparison, store):
    s, curves = comparison.scalars, comparison.curves
    truth = s.sel(source="truth")
    assert float(truth.seam_ratio_vs_truth) == 1.0 and float(truth.coarse_imprint_vs_truth) == 1.0
    assert float(truth.fine_power_log_ratio) == 0.0 and float(truth.fine_power_log_ratio_sphere) == 0.0
    det = s.sel(source="deterministic")             # truth + a constant: the same jumps and spectra (float32 aside)
    for k in ("seam_ratio_vs_truth", "coarse_imprint_vs_truth"):
        assert float(det[k]) == pytest.approx(1.0, abs=1e-3), k
    for k in ("fine_power_log_ratio", "fine_power_log_ratio_sphere"):
        assert float(det[k]) == pytest.approx(0.0, abs=1e-3), k
    blocky = s.sel(source="bilinear")               # here the coarse field repeated: flat inside coarse cells
    assert np.isnan(float(blocky.coarse_imprint)) and float(blocky.fine_power_log_ratio_sphere) < -1.0
    assert float(blocky.fine_power_log_ratio) < -1.0
    ens = s.sel(source="ensemble")                  # truth × independent lognormal noise: more fine power
    assert float(ens.fine_power_log_ratio) > 0.0 and float(ens.fine_power_log_ratio_sphere) > 0.0
    spec = curves.sphere_power_spectrum
    assert spec.dims == ("source", "total_wavenumber") and spec.sizes["total_wavenumber"] == int(np.sqrt(6 * N * N))
    # Parseval on the truth's 40 frames, evenly spread over the record
    y = xr.open_zarr(store, consolidated=False).PRATEsfc_truth.values.astype(np.float64)
    picks = np.unique(np.round(np.linspace(0, NT - 1, 40)).astype(int))
    w = (output_grid(N).area.values / output_grid(N).area.values.sum()).ravel()
    flat = y[picks].reshape(len(picks), -1)
    variance = (((flat - (flat @ w)[:, None]) ** 2) @ w).mean()
    assert float(spec.sel(source="truth").sum()) == pytest.approx(variance, rel=0.06)
