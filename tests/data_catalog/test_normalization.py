"""Normalization: log1p(P/ε) then standardization; exact inverses on numpy, torch and xarray; dask stats."""

from __future__ import annotations

import dask.array
import numpy as np
import pytest
import torch
import xarray as xr

from data_catalog.normalization import PRECIPITATION_EPSILON, NormalizationStats, VariableStats, compute_stats


def _precip(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    wet = rng.random(shape) < 0.4
    return np.where(wet, rng.gamma(0.6, 3e-5, shape), 0.0)


def _field(values: np.ndarray, chunks: int = 3, units: str = "kg m-2 s-1") -> xr.DataArray:
    return xr.DataArray(dask.array.from_array(values, chunks=(chunks, -1, -1, -1)),
                        dims=("time", "tile", "y", "x"), attrs={"units": units})


def test_epsilon_is_one_millimetre_per_day():
    assert PRECIPITATION_EPSILON * 86400 == pytest.approx(1.0)


def test_stats_pool_pieces_like_numpy_on_everything():
    rng = np.random.default_rng(0)
    a, b = _precip(rng, (7, 6, 4, 4)), _precip(rng, (4, 6, 4, 4))
    t1, t2 = 280 + 5 * rng.normal(size=(7, 6, 2, 2)), 270 + rng.normal(size=(4, 6, 2, 2))
    zsurf = xr.DataArray(rng.gamma(1.0, 500.0, (6, 4, 4)), dims=("tile", "y", "x"), attrs={"units": "m"})
    stats = compute_stats({"PRATEsfc": [_field(a), _field(b)], "TMPsfc_coarse": [_field(t1, units="K"),
                                                                                _field(t2, units="K")]},
                          precipitation=["PRATEsfc"], static={"zsurf": zsurf}, identity=["centre_x"])
    z = np.log1p(np.concatenate([a.ravel(), b.ravel()]) / PRECIPITATION_EPSILON)
    assert stats["PRATEsfc"].transform == "log1p"
    assert stats["PRATEsfc"].mean == pytest.approx(z.mean(), rel=1e-12)
    assert stats["PRATEsfc"].std == pytest.approx(z.std(), rel=1e-12)
    assert stats["PRATEsfc"].count == z.size
    t = np.concatenate([t1.ravel(), t2.ravel()])
    assert stats["TMPsfc_coarse"].mean == pytest.approx(t.mean(), rel=1e-12)
    assert stats["TMPsfc_coarse"].std == pytest.approx(t.std(), rel=1e-10)
    assert stats["TMPsfc_coarse"].units == "K" and stats["TMPsfc_coarse"].transform == "identity"
    assert stats["zsurf"].mean == pytest.approx(float(zsurf.mean()), rel=1e-12)
    assert (stats["centre_x"].mean, stats["centre_x"].std) == (0.0, 1.0)
    # Serializable: the JSON round trip gives back the same statistics.
    assert NormalizationStats.from_json(stats.to_json()) == stats


def test_normalized_training_data_has_zero_mean_unit_std():
    rng = np.random.default_rng(1)
    p = _precip(rng, (10, 6, 4, 4))
    stats = compute_stats({"PRATEsfc": [_field(p)]}, precipitation=["PRATEsfc"])
    y = stats.normalize("PRATEsfc", p)
    assert abs(y.mean()) < 1e-10 and y.std() == pytest.approx(1.0, rel=1e-10)


@pytest.fixture
def stats() -> NormalizationStats:
    return NormalizationStats(variables={
        "PRATEsfc": VariableStats(transform="log1p", epsilon=PRECIPITATION_EPSILON, mean=1.3, std=1.7),
        "TMPsfc_coarse": VariableStats(transform="identity", mean=285.0, std=12.0),
    })


@pytest.mark.parametrize("name", ["PRATEsfc", "TMPsfc_coarse"])
def test_denormalize_inverts_normalize_on_numpy_torch_xarray(stats, name):
    rng = np.random.default_rng(2)
    x = _precip(rng, (3, 6, 4, 4)) if name == "PRATEsfc" else 250 + 60 * rng.random((3, 6, 4, 4))
    back = stats.denormalize(name, stats.normalize(name, x))
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-18)
    xt = torch.from_numpy(x)
    yt = stats.normalize(name, xt)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float64
    torch.testing.assert_close(stats.denormalize(name, yt), xt, rtol=1e-12, atol=1e-18)
    xa = xr.DataArray(x, dims=("time", "tile", "y", "x"))
    ya = stats.normalize(name, xa)
    assert isinstance(ya, xr.DataArray) and ya.dims == xa.dims
    xr.testing.assert_allclose(stats.denormalize(name, ya), xa, rtol=1e-12, atol=1e-18)
    # float32 stays float32 and inverts to float precision.
    x32 = torch.from_numpy(x.astype(np.float32))
    y32 = stats.normalize(name, x32)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(stats.denormalize(name, y32), x32, rtol=2e-6, atol=1e-11)


def test_in_place_normalize_matches(stats):
    x = _precip(np.random.default_rng(3), (2, 6, 4, 4)).astype(np.float32)
    expected = stats.normalize("PRATEsfc", x.astype(np.float64))
    y = stats.normalize_("PRATEsfc", x.copy())
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_dry_cells_map_to_the_same_value_and_order_is_kept(stats):
    x = np.array([0.0, 1e-9, PRECIPITATION_EPSILON, 1e-4, 1e-2])
    y = stats.normalize("PRATEsfc", x)
    assert y[0] == pytest.approx(-1.3 / 1.7)
    assert np.all(np.diff(y) > 0)


def test_bad_stats_are_refused():
    with pytest.raises(ValueError, match="epsilon"):
        VariableStats(transform="log1p", mean=0.0, std=1.0)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        VariableStats(transform="log1p", epsilon=-1.0, mean=0.0, std=1.0)
    with pytest.raises(KeyError, match="no normalization statistics for 'CPRATsfc_coarse'"):
        NormalizationStats(variables={})["CPRATsfc_coarse"]


def test_constant_field_gets_unit_std():
    stats = compute_stats({"DSWRFtoa_coarse": [_field(np.full((4, 6, 2, 2), 340.0), units="W/m**2")]},
                          precipitation=[])
    assert stats["DSWRFtoa_coarse"].std == 1.0
    assert np.all(stats.normalize("DSWRFtoa_coarse", np.full(3, 340.0)) == 0.0)
