"""Deterministic baselines: mass-conserving cube-aware interpolation and quantile mapping fitted on the
training climatology of a real (synthetic ``tests`` preset, C8 → C32) prepared dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
import yaml
import zarr

from data_catalog.catalog import load_catalog
from data_catalog.cubesphere import cell_areas, cell_centre_unit_vectors
from data_catalog.prepare import PrepareConfig, PreparedDataset, prepare_dataset
from data_catalog.synthetic import generate_synthetic, preset
from data_catalog.upsample import block_mean, upsample_coarse
from downscale.diagnostics.consistency import seam_statistics
from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import histogram
from downscale.baselines import (
    FIT_BINS,
    QuantileTable,
    fit_quantile_table,
    interpolate_baseline,
    lazy_interpolation,
    quantile_map,
    quantile_mapping_baseline,
    table_from_histograms,
)

CUBE = ("tile", "y", "x")
NC, FACTOR = 8, 4
CHECK_QUANTILES = (0.9, 0.99, 0.999)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    """Synthetic ``tests`` preset, C8 → C32, 2 days, members 0001 (train) and 0002 (validation), clips of 3."""
    root = tmp_path_factory.mktemp("baselines")
    layout = generate_synthetic(preset("tests", days=2), root / "synthetic")
    catalog = root / "synthetic" / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(layout.catalog_document("tests")))
    config = PrepareConfig(clip_frames=3, splits={"validation_members": ["0002"]})
    return prepare_dataset(load_catalog(catalog), root / "prepared", config)


@pytest.fixture(scope="module")
def table(prepared) -> QuantileTable:
    return fit_quantile_table(prepared)


def _gamma_with_zeros(shape: tuple[int, ...], dry: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.6, 3e-5, size=shape)
    x[rng.random(shape) < dry] = 0.0
    return x


def _hist(values: np.ndarray, area: np.ndarray | None = None) -> xr.DataArray:
    dims = tuple(f"d{k}" for k in range(values.ndim - 3)) + CUBE
    weights = None if area is None else xr.DataArray(area, dims=CUBE)
    return histogram(xr.DataArray(values, dims=dims), weights, FIT_BINS)


def _quantiles(values: np.ndarray, area: np.ndarray) -> np.ndarray:
    return histogram_quantiles(_hist(values, area), CHECK_QUANTILES).values


def _dry_fraction(values: np.ndarray, area: np.ndarray) -> float:
    w = np.broadcast_to(area, values.shape)
    return float((w * (values < FIT_BINS.floor)).sum() / w.sum())


# --- interpolation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_interpolation_reproduces_area_weighted_block_means_and_is_non_negative(dtype, tol):
    coarse = torch.from_numpy(_gamma_with_zeros((2, 3, 6, NC, NC), dry=0.5, seed=0)).to(dtype)
    coarse[0, 0, 1, 2, 3] = -1e-7                       # an unphysical negative: clamped to 0 first
    area = torch.from_numpy(cell_areas(NC * FACTOR))
    fine = interpolate_baseline(coarse, FACTOR, area)
    assert fine.shape == (2, 3, 6, NC * FACTOR, NC * FACTOR) and fine.dtype == dtype
    assert float(fine.min()) >= 0.0
    means = block_mean(fine.double(), FACTOR, area)
    expected = coarse.double().clamp_min(0.0)
    rel = float((means - expected).abs().max() / expected.max())
    assert rel <= tol, f"mass error {rel:.2e} relative to the largest coarse value"
    assert torch.equal(fine[expected.repeat_interleave(FACTOR, -2).repeat_interleave(FACTOR, -1) == 0],
                       torch.zeros(int((expected == 0).sum()) * FACTOR**2, dtype=dtype))


def test_interpolation_of_a_smooth_field_is_close_and_has_no_seams():
    nf = NC * FACTOR
    v = torch.from_numpy(cell_centre_unit_vectors(nf))
    truth = 1e-5 * (1.5 + v[..., 0] + 0.5 * v[..., 1] * v[..., 2] + 0.3 * v[..., 2] ** 2)   # smooth on the sphere
    area = torch.from_numpy(cell_areas(nf))
    coarse = block_mean(truth, FACTOR, area)
    fine = interpolate_baseline(coarse, FACTOR, area)
    error = float((fine - truth).abs().mean() / truth.mean())
    nearest = float((upsample_coarse(coarse, FACTOR, "nearest") - truth).abs().mean() / truth.mean())
    assert error < 3e-3 and error < nearest / 10, (error, nearest)            # measured 0.15 % vs 2.3 %

    def seam_ratio(x: torch.Tensor) -> float:
        return float(seam_statistics(xr.DataArray(x.numpy(), dims=CUBE), CUBE)["seam_ratio"])

    per_tile = F.interpolate(coarse.reshape(6, 1, NC, NC), scale_factor=FACTOR, mode="bilinear").reshape(fine.shape)
    assert seam_ratio(fine) <= 1.2                                             # measured 0.96 (truth 0.95)
    assert abs(seam_ratio(fine) - seam_ratio(truth)) < 0.05
    # without halos the clamped edge rows are flat (inner step ≈ 0): measured ratio ≫ 1 (~1e15)
    assert seam_ratio(per_tile) > 1.2, "the check must catch tiles interpolated without halos"


def test_interpolation_refuses_an_area_of_the_wrong_grid():
    with pytest.raises(ValueError, match=r"fine_area must be \(6, 32, 32\)"):
        interpolate_baseline(torch.zeros(6, NC, NC), FACTOR, torch.ones(6, 16, 16))


# --- the quantile map ------------------------------------------------------------------------------

def test_identity_table_maps_x_to_x():
    knots = tuple(float(v) for v in np.logspace(-8, -3, 50))
    identity = QuantileTable(probabilities=tuple(np.linspace(0.01, 0.99, 50).tolist()), source=knots, target=knots)
    x = torch.from_numpy(np.concatenate([_gamma_with_zeros((6, 8, 8), 0.3, 1).ravel(), [5e-9, 2e-3, 0.05]]))
    torch.testing.assert_close(quantile_map(x, identity), x, rtol=1e-12, atol=0)


def test_a_table_fitted_where_the_target_is_twice_the_source_doubles():
    x = _gamma_with_zeros((20, 6, 8, 8), dry=0.3, seed=2)
    area = cell_areas(8)
    doubling = table_from_histograms(_hist(x, area), _hist(2 * x, area))
    assert doubling.source_dry_fraction == pytest.approx(doubling.target_dry_fraction, abs=1e-12)
    fresh = torch.from_numpy(_gamma_with_zeros((5, 6, 8, 8), dry=0.3, seed=3))
    mapped = quantile_map(fresh, doubling)
    wet = fresh > 1e-7                                # above the lowest knots, where bins hold few values
    ratio = mapped[wet] / fresh[wet]
    assert float((ratio - 2).abs().max()) < 0.02      # measured max 0.3 %: bin width 0.26 % + knot spacing
    assert torch.equal(mapped[fresh == 0], torch.zeros_like(fresh[fresh == 0]))
    above = torch.tensor([1.0, 3.0]) * doubling.source[-1] * 2
    torch.testing.assert_close(quantile_map(above, doubling), above * doubling.top_ratio)


def test_quantile_map_is_monotone_non_negative_and_maps_the_dry_fraction():
    area = cell_areas(8)
    x = _gamma_with_zeros((20, 6, 8, 8), dry=0.2, seed=4)
    truth = np.where(x > np.quantile(x, 0.5), 1.5 * x, 0.0)      # drier (50 %) and wetter than x
    tab = table_from_histograms(_hist(x, area), _hist(truth, area))
    assert tab.source_dry_fraction == pytest.approx(_dry_fraction(x, area))
    assert tab.target_dry_fraction == pytest.approx(_dry_fraction(truth, area))
    grid = torch.cat([torch.zeros(3), torch.logspace(-12, 0, 4000, dtype=torch.float64)])
    mapped = quantile_map(grid, tab)
    assert float(mapped.min()) == 0.0 and bool((mapped.diff() >= 0).all())
    dry = _dry_fraction(quantile_map(torch.from_numpy(x), tab).numpy(), area)
    assert dry == pytest.approx(tab.target_dry_fraction, abs=2e-3), (dry, tab.target_dry_fraction)


def test_table_round_trips_through_json_and_refuses_bad_quantiles(table):
    assert QuantileTable.from_json(table.to_json()) == table
    with pytest.raises(ValueError, match=r"'target' must be non-decreasing.*target\[1\]"):
        QuantileTable(probabilities=(0.1, 0.5, 0.9), source=(0.0, 1e-5, 2e-5), target=(0.0, 3e-5, 2e-5))
    with pytest.raises(ValueError, match="'probabilities' must be strictly increasing"):
        QuantileTable(probabilities=(0.1, 0.1, 0.9), source=(0.0, 1e-5, 2e-5), target=(0.0, 1e-5, 2e-5))
    with pytest.raises(ValueError, match="top 'source' quantile must be > 0"):
        QuantileTable(probabilities=(0.1, 0.9), source=(0.0, 0.0), target=(0.0, 1e-5))


# --- fitting on a prepared dataset -----------------------------------------------------------------

def _training_fields(prepared: PreparedDataset) -> tuple[torch.Tensor, torch.Tensor]:
    (member, frames), = prepared.splits.training_frames().items()
    ds = prepared.open_member(member).isel(time=frames)
    return torch.from_numpy(ds["PRATEsfc_coarse"].values), torch.from_numpy(ds["PRATEsfc"].values)


def test_mapped_training_quantiles_match_the_truth(prepared, table):
    assert table.split == "train" and table.n_values == 16 * 6 * 32 * 32
    area = prepared.open_static()["area"].values
    coarse, truth = _training_fields(prepared)
    area_t = torch.from_numpy(area)
    interpolated = interpolate_baseline(coarse, FACTOR, area_t)
    mapped = quantile_mapping_baseline(coarse, FACTOR, area_t, table)
    torch.testing.assert_close(mapped, quantile_map(interpolated, table), rtol=0, atol=0)
    q_truth = _quantiles(truth.numpy(), area)
    err_interp = np.abs(_quantiles(interpolated.numpy(), area) / q_truth - 1)
    err_mapped = np.abs(_quantiles(mapped.numpy(), area) / q_truth - 1)
    # measured: interpolation 8 %, 28 %, 43 % low/high at 90/99/99.9 %; mapped ≤ 0.07 %
    assert err_mapped.max() < 5e-3, err_mapped
    assert err_interp.max() / err_mapped.max() > 20, (err_interp, err_mapped)
    assert _dry_fraction(mapped.numpy(), area) == pytest.approx(_dry_fraction(truth.numpy(), area), abs=1e-3)
    assert table.source_dry_fraction < 0.3 < 0.5 < table.target_dry_fraction   # interpolation drizzles


def test_fit_streams_one_task_per_store_chunk(prepared):
    ds = prepared.open_member("0001")
    lazy = lazy_interpolation(ds["PRATEsfc_coarse"], FACTOR, prepared.open_static()["area"])
    assert lazy.data.numblocks == (len(ds["PRATEsfc_coarse"].chunks[0]), 1, 1, 1)
    assert lazy.chunks[0] == ds["PRATEsfc_coarse"].chunks[0]


def _copy_with_wild_values(prepared: PreparedDataset, member: str, dest: Path) -> PreparedDataset:
    """A copy of the dataset with 0.05 kg m-2 s-1 (4320 mm/day) at one cell of frame 0 of ``member``."""
    shutil.copytree(prepared.path, dest)
    group = zarr.open_group(dest / "members" / f"{member}.zarr", mode="r+")
    for name in ("PRATEsfc", "PRATEsfc_coarse"):
        group[name][0, 0, 0, 0] = 0.05
    return PreparedDataset.open(dest)


def test_fit_uses_only_the_training_split(prepared, table, tmp_path):
    wild_validation = _copy_with_wild_values(prepared, "0002", tmp_path / "wild-validation")
    assert fit_quantile_table(wild_validation) == table
    assert fit_quantile_table(wild_validation, "validation") != fit_quantile_table(prepared, "validation")
    wild_training = _copy_with_wild_values(prepared, "0001", tmp_path / "wild-training")
    changed = fit_quantile_table(wild_training)
    assert changed.target[-1] > 10 * table.target[-1] and changed.source[-1] > 10 * table.source[-1]


def test_fit_refuses_bad_arguments(prepared):
    with pytest.raises(ValueError, match="unknown split 'training'"):
        fit_quantile_table(prepared, "training")
    with pytest.raises(ValueError, match="split 'test' .* has no clips"):
        fit_quantile_table(prepared, "test")
    with pytest.raises(ValueError, match="'TMPsfc' is not a predictor"):
        fit_quantile_table(prepared, coarse_variable="TMPsfc")
