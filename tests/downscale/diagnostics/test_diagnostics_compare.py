"""End to end: a tiny ensemble-shaped output store in tmp_path, every metric for every source, the writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from data_catalog.coarsen import coarse_grain
from diag_helpers import julian_times, output_grid, smooth_unit_vector_field
from downscale.diagnostics.compare import CompareConfig, compare, write_comparison

N, FACTOR, NT, K = 16, 2, 8 * 12, 3      # C16 from C8, 12 days 3-hourly, 3 members
SHIFT = 2e-6                             # kg m-2 s-1: the "deterministic" baseline is truth + SHIFT


def _output_store(root: Path) -> Path:
    rng = np.random.default_rng(5)
    grid = output_grid(N)
    pattern = 1.0 + 0.8 * smooth_unit_vector_field(N)
    truth = (pattern[None] * rng.gamma(0.6, 3e-5, size=(NT, 6, N, N))).astype(np.float32)
    truth[rng.random(truth.shape) < 0.3] = 0.0
    fine_dims = ("time", "tile", "grid_yt", "grid_xt")
    t = xr.DataArray(truth, dims=fine_dims)
    coarse = coarse_grain(t.rename(grid_yt="y", grid_xt="x"), grid.area.rename(grid_yt="y", grid_xt="x"), FACTOR)
    coarse = coarse.rename(y="grid_yt_coarse", x="grid_xt_coarse")
    members = truth[None] * rng.lognormal(0.0, 0.5, size=(K,) + truth.shape).astype(np.float32)
    attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}
    ds = xr.Dataset(
        {"PRATEsfc": (("member",) + fine_dims, members, attrs),
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
def comparison(tmp_path_factory):
    path = _output_store(tmp_path_factory.mktemp("compare"))
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["PRATEsfc"].chunks is not None
    cfg = CompareConfig(factor=FACTOR, regions=("global", "tropics"), thresholds_mm_day=(10.0, 50.0),
                        lags_hours=(3, 12), return_level_regions=("tropics",), tail_quantile=0.9, n_boot=10,
                        window_joins=tuple(range(5, NT, 5)))
    return compare(ds, cfg)


def test_sources_and_sanity_row(comparison):
    s = comparison.scalars
    assert list(s.source.values) == ["ensemble", "bilinear", "deterministic", "coarse", "truth"]
    truth = s.sel(source="truth", region="global")
    for m in ("mse", "mae", "bias", "crps", "pe", "emd", "mse_member"):
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
    assert float(det.crps) == pytest.approx(SHIFT, rel=1e-4)       # a deterministic CRPS is its MAE
    assert float(det.emd) == pytest.approx(SHIFT, rel=0.02)
    assert float(det.mae_ratio) == 1.0                                # it is the best baseline by MAE
    assert np.isnan(float(det.spread_skill))


def test_ensemble_scores(comparison):
    ens = comparison.scalars.sel(source="ensemble")
    assert np.all(np.isfinite(ens.spread_skill.values)) and np.all(ens.spread_skill.values > 0)
    assert np.all(ens.crps.values < ens.mae_member.values)           # CRPS ≤ mean member MAE
    rank = comparison.curves.rank_histogram
    assert rank.sizes["rank"] == K + 1 and float(rank.sum()) == pytest.approx(1.0)
    exc = comparison.scalars.exceedance_frequency
    assert exc.dims == ("source", "threshold") and np.all(np.diff(exc.values, axis=1) <= 0)
    assert float(ens.join_ratio) > 0


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


def test_bad_store_gives_a_clear_error(tmp_path):
    ds = xr.Dataset({"PRATEsfc_truth": (("time",), np.zeros(3))})
    with pytest.raises(ValueError, match="no ensemble variable 'PRATEsfc'"):
        compare(ds, CompareConfig(factor=2))
    with pytest.raises(ValueError, match="positive integer"):
        CompareConfig(factor=0)
