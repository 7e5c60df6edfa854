"""Spatial and temporal structure: spectra peak at a sinusoid's wavenumber, the sphere spectrum recovers
spherical harmonics and the variance (Parseval) wherever the pattern sits on the cube, band power ratios,
Moran's I over every rook pair of the cube (brute force), SAE, autocorrelation of an AR(1) process, the
diurnal cycle by local solar time; dask = numpy without computing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from scipy.special import sph_harm_y

from data_catalog.cubesphere import cell_centre_unit_vectors, corner_unit_vectors
from diag_helpers import cube_edge_pairs, field, julian_times, no_compute, output_grid, smooth_unit_vector_field
from downscale.diagnostics import sphere_spectrum, structure


def _area_variance(x: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Area-weighted spatial variance of each frame of ``x (frames, 6, n, n)``."""
    w = (area / area.sum()).ravel()
    flat = x.reshape(x.shape[0], -1)
    mean = flat @ w
    return ((flat - mean[:, None]) ** 2) @ w


def _harmonic(l: int, m: int, grid, part: str = "real") -> np.ndarray:
    theta, phi = np.deg2rad(90.0 - grid.lat.values), np.deg2rad(grid.lon.values)
    y = sph_harm_y(l, m, theta, phi)
    return y.real if part == "real" else y.imag


def test_power_spectrum_of_a_sinusoid_peaks_at_its_wavenumber():
    n, k0 = 32, 5
    i = np.arange(n)
    wave = np.sin(2 * np.pi * k0 * i / n)[None, :] * np.ones((n, 1))           # along x
    tiles = np.stack([wave if t % 2 else wave.T for t in range(6)])               # along y on odd tiles
    spec = structure.power_spectrum(field(tiles[None]))
    assert spec.sizes["wavenumber"] == n // 2 + 1
    assert int(spec.argmax("wavenumber")) == k0
    assert float(spec.sel(wavenumber=k0)) > 10 * float(spec.drop_sel(wavenumber=[k0 - 1, k0, k0 + 1]).max())


def test_power_spectrum_sums_to_the_variance_of_white_noise(rng):
    x = field(rng.normal(0.0, 2.0, size=(20, 6, 16, 16)))
    spec = structure.power_spectrum(x)
    # Hann-windowed, Σ|F|²/(N Σw²) ≈ variance; the ring sum drops the corners beyond k = n/2 (~21 % of modes)
    total = float(spec.sum())
    assert 0.65 * 4.0 < total < 1.05 * 4.0
    assert spec.attrs["units"] == "(kg m-2 s-1)2"


def test_sae_is_zero_for_a_perfect_forecast_and_morans_i_sees_structure(rng):
    n = 16
    smooth = smooth_unit_vector_field(n)
    truth = field(np.stack([smooth + 0.05 * rng.normal(size=smooth.shape) for _ in range(4)]))
    assert float(structure.spatial_autocorrelation_error(truth, truth)) == 0.0
    i_smooth = structure.morans_i(truth)
    noise = field(rng.normal(size=(4, 6, n, n)))
    i_noise = structure.morans_i(noise)
    assert float(i_smooth.min()) > 0.8 and abs(float(i_noise.mean())) < 0.05
    sae = structure.spatial_autocorrelation_error(noise.expand_dims(member=2), truth)
    assert float(sae) == pytest.approx(float(abs(i_noise - i_smooth).mean()), rel=1e-12)
    dry = field(np.zeros((1, 6, n, n)))
    assert np.isnan(structure.morans_i(dry)).all()                  # a constant frame has no autocorrelation


def test_morans_i_counts_every_rook_pair_of_the_cube_once(rng):
    n = 8
    x = smooth_unit_vector_field(n)[None] + 0.3 * rng.normal(size=(3, 6, n, n))
    pairs = cube_edge_pairs(n)                                     # from shared corners: 12 n² pairs
    flat = x.reshape(3, -1)
    z = flat - flat.mean(axis=1, keepdims=True)

    def brute(p):
        return flat.shape[1] / len(p) * (z[:, p[:, 0]] * z[:, p[:, 1]]).sum(axis=1) / (z**2).sum(axis=1)

    np.testing.assert_allclose(structure.morans_i(field(x)).values, brute(pairs), rtol=1e-12)
    inside = pairs[pairs[:, 0] // (n * n) == pairs[:, 1] // (n * n)]
    assert len(pairs) == 12 * n * n and len(inside) == 6 * 2 * n * (n - 1)
    np.testing.assert_allclose(structure.morans_i(field(x), across_edges=False).values, brute(inside), rtol=1e-12)
    with pytest.raises(ValueError, match="6 square tiles"):
        structure.morans_i(field(x[:, :, :, :4]))


def test_independent_tiles_lower_morans_i_and_a_smooth_cube_field_does_not(rng):
    n = 16
    i = np.arange(n)
    phases = rng.uniform(0, 2 * np.pi, size=(20, 6, 2))
    # each tile smooth inside, the tiles independent (random phases and signs)
    tiles = (np.sin(2 * np.pi * i[None, None, :, None] / n + phases[..., 0, None, None])
             * np.cos(2 * np.pi * i[None, None, None, :] / n + phases[..., 1, None, None]))
    tiles *= rng.choice([-1.0, 1.0], size=(20, 6, 1, 1))
    both, inside = structure.morans_i(field(tiles)), structure.morans_i(field(tiles), across_edges=False)
    drop = inside - both                                            # the edge pairs (1/n of all) are unrelated
    assert float(drop.min()) > 0.3 / n and float(drop.mean()) > 0.6 / n     # measured 0.52–1.27 / n, mean ≈ 0.9 / n
    smooth = smooth_unit_vector_field(n)[None] + 0.05 * rng.normal(size=(20, 6, n, n))
    both, inside = structure.morans_i(field(smooth)), structure.morans_i(field(smooth), across_edges=False)
    assert float(abs(both - inside).max()) < 0.3 / n   # edge pairs like the others: +0.17–0.19 / n


def test_legendre_recurrence_matches_scipy_orthonormal_harmonics():
    mu = np.array([0.0, 0.1, 0.5, 0.9, 0.999, 1.0])
    theta = np.arccos(mu)
    p_mm = np.full(mu.size, 1.0 / np.sqrt(4.0 * np.pi))
    for m in range(0, 61):
        if m:
            p_mm = np.sqrt((2 * m + 1) / (2 * m)) * np.sqrt(1 - mu**2) * p_mm
        if m in (0, 1, 7, 30, 60):
            rows = sphere_spectrum._legendre_rows(m, 90, mu, p_mm)
            ref = np.stack([(-1) ** m * sph_harm_y(l, m, theta, 0.0).real for l in range(m, 91)])
            np.testing.assert_allclose(rows, ref, atol=1e-12 * max(1.0, np.abs(ref).max()), err_msg=f"m={m}")


def test_sphere_spectrum_recovers_spherical_harmonics_and_the_variance():
    n = 24
    grid = output_grid(n)
    spec_of = {(3, 0, "real"): 1.0, (10, 4, "real"): 0.5, (n, 7, "imag"): 0.8}
    x = sum(c * _harmonic(l, m, grid, part) for (l, m, part), c in spec_of.items())
    spec = structure.sphere_power_spectrum(field(x[None]), grid.lat, grid.lon, grid.area)
    assert spec.dims == ("total_wavenumber",) and spec.attrs["l_max"] == int(np.sqrt(6 * n * n)) - 1 == 57
    for (l, m, _), c in spec_of.items():
        expected = c**2 / (4 * np.pi) * (1.0 if m == 0 else 0.5)   # ∫ Re(Y_lm)² dΩ = ½ for m > 0
        assert float(spec.sel(total_wavenumber=l)) == pytest.approx(expected, rel=2e-3), l
    others = spec.drop_sel(total_wavenumber=[l for l, _, _ in spec_of])
    assert float(others.max()) < 1e-4 * float(spec.sum())
    assert float(spec.sum()) == pytest.approx(float(_area_variance(x[None], grid.area.values)[0]), rel=1e-3)
    wl = spec.wavelength_km.sel(total_wavenumber=n)
    assert float(wl) == pytest.approx(2 * np.pi * 6371.0 / np.sqrt(n * (n + 1)), rel=1e-3)
    assert spec.attrs["units"] == "(kg m-2 s-1)2"


def test_sphere_spectrum_sums_to_the_area_weighted_variance(rng):
    n = 16
    grid = output_grid(n)
    area = grid.area.values
    noise = rng.normal(0.0, 2.0, size=(30, 6, n, n))
    spec = structure.sphere_power_spectrum(field(noise), grid.lat, grid.lon, grid.area, max_frames=None)
    # white noise: (L + 1)²/N · (1 + cv²) of the variance (measured 1.034); nothing windowed away
    assert float(spec.sum()) / _area_variance(noise, area).mean() == pytest.approx(1.0, abs=0.05)
    assert float(spec.sel(total_wavenumber=0)) == pytest.approx(0.0, abs=1e-12)       # the mean is removed
    smooth = smooth_unit_vector_field(n)[None]
    spec = structure.sphere_power_spectrum(field(smooth), grid.lat, grid.lon, grid.area)
    assert float(spec.sum()) == pytest.approx(float(_area_variance(smooth, area)[0]), rel=2e-3)


@pytest.mark.parametrize("axis", ["cube corner", "edge midpoint", "tile centre", "random"])
def test_sphere_spectrum_does_not_see_the_tile_edges(rng, axis):
    """A zonal harmonic P_l(p·a) about any axis a is pure degree l, whether a sits on a cube corner or not."""
    n, l = 16, 9
    grid = output_grid(n)
    corners = corner_unit_vectors(n)
    a = {"cube corner": corners[0, 0, 0], "edge midpoint": corners[0, 0, n // 2],
         "tile centre": corners[2, n // 2, n // 2], "random": rng.normal(size=3)}[axis]
    a = a / np.linalg.norm(a)
    mu = cell_centre_unit_vectors(n) @ a
    x = np.polynomial.legendre.legval(mu, np.eye(l + 1)[l])
    spec = structure.sphere_power_spectrum(field(x[None]), grid.lat, grid.lon, grid.area)
    assert float(spec.sel(total_wavenumber=l)) > 0.999 * float(spec.sum())
    assert float(spec.sum()) == pytest.approx(float(_area_variance(x[None], grid.area.values)[0]), rel=5e-3)


def test_sphere_spectrum_frames_are_spread_times_with_members_in_turn(rng):
    n, nt, k = 8, 12, 3
    grid = output_grid(n)
    base = rng.normal(size=(nt, 6, n, n))
    ens = field(base[None] * np.arange(1.0, k + 1)[:, None, None, None, None], member=True)
    truth = field(base)
    spec_e = structure.sphere_power_spectrum(ens, grid.lat, grid.lon, grid.area, max_frames=5)
    spec_t = structure.sphere_power_spectrum(truth, grid.lat, grid.lon, grid.area, max_frames=5)
    times = [0, 3, 6, 8, 11]                                         # round(linspace(0, 11, 5))
    q = sphere_spectrum.sphere_quadrature(grid.lat.values, grid.lon.values, grid.area.values)
    per_time = sphere_spectrum.sphere_spectra(base[times], q)        # (5, L + 1)
    np.testing.assert_allclose(spec_t.values, per_time.mean(0), rtol=1e-12, atol=1e-20)
    member = np.arange(5) % k                                        # frame f: member f mod K
    np.testing.assert_allclose(spec_e.values, ((member + 1.0)[:, None] ** 2 * per_time).mean(0), rtol=1e-12, atol=1e-20)
    assert spec_e.attrs["frames"] == spec_t.attrs["frames"] == 5
    every = structure.sphere_power_spectrum(ens, grid.lat, grid.lon, grid.area, max_frames=None)
    np.testing.assert_allclose(every.values, (np.arange(1.0, k + 1) ** 2).mean()
                               * sphere_spectrum.sphere_spectra(base, q).mean(0), rtol=1e-12, atol=1e-20)


def test_band_power_ratio_is_the_log_of_the_band_sums():
    k = np.arange(9)
    truth = xr.DataArray(np.linspace(1.0, 2.0, 9), dims="wavenumber", coords={"wavenumber": k})
    fore = truth * xr.where(truth.wavenumber >= 4, 2.0, 0.5)
    np.testing.assert_allclose(float(structure.band_power_ratio(fore, truth, 4)), np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(float(structure.band_power_ratio(fore, truth, 1, 3)), np.log(0.5), rtol=1e-12)
    mixed = float(structure.band_power_ratio(fore, truth, 3, 4))
    expected = np.log((0.5 * truth[3] + 2 * truth[4]) / (truth[3] + truth[4]))
    assert mixed == pytest.approx(float(expected), rel=1e-12)
    sources = xr.concat([fore, truth], dim="source").assign_coords(source=["a", "truth"])
    r = structure.band_power_ratio(sources, sources.sel(source="truth", drop=True), 4)
    assert r.dims == ("source",) and float(r.sel(source="truth")) == 0.0
    sphere = truth.rename(wavenumber="total_wavenumber")
    assert float(structure.band_power_ratio(2 * sphere, sphere, 2)) == pytest.approx(np.log(2.0))
    with pytest.raises(ValueError, match="no wavenumber in"):
        structure.band_power_ratio(fore, truth, 20)
    assert structure.fine_band_tile(64) == (16, 32) and structure.fine_band_tile(48) == (12, 24)
    assert structure.fine_band_sphere(64) == (64, None)


def test_temporal_autocorrelation_of_ar1_is_phi_to_the_lag(rng):
    phi, nt = 0.8, 4000
    x = np.zeros((nt, 6, 2, 2))
    for t in range(1, nt):
        x[t] = phi * x[t - 1] + rng.normal(size=(6, 2, 2))
    grid = output_grid(2)
    r = structure.temporal_autocorrelation(field(x), grid.area, (3, 6, 12))
    np.testing.assert_allclose(r.values, phi ** np.array([1, 2, 4]), atol=0.04)
    with pytest.raises(ValueError, match="not a positive multiple"):
        structure.temporal_autocorrelation(field(x[:10]), grid.area, (4,))


def test_diurnal_cycle_peaks_at_the_local_solar_time_it_was_built_with():
    grid = output_grid(8)
    nt = 8 * 10                                                        # 10 days, 3-hourly
    times = julian_times(nt)
    utc = np.array([t.hour for t in times], dtype=float)
    lst = (utc[:, None, None, None] + grid.lon.values[None] / 15.0) % 24.0
    peak = 15.0                                                        # afternoon convection
    x = field(1.0 + np.cos(2 * np.pi * (lst - peak) / 24.0), times=times)
    cycle = structure.diurnal_cycle(x, grid.area, grid.lon)
    assert cycle.sizes["local_solar_hour"] == 8
    peak_bin = cycle.local_solar_hour[int(cycle.argmax("local_solar_hour"))]
    assert float(peak_bin) == pytest.approx(13.5)                       # the bin [12, 15) holds the 15 h peak
    assert float(cycle.max()) > 1.6 and float(cycle.min()) < 0.4


def test_dask_structure_diagnostics_are_lazy_and_equal_numpy(rng):
    grid = output_grid(8)
    ens = field(rng.gamma(0.5, 2e-5, size=(2, 24, 6, 8, 8)), member=True)
    truth = field(rng.gamma(0.5, 2e-5, size=(24, 6, 8, 8)))
    le, lt = ens.chunk(time=6, member=1, grid_yt=4), truth.chunk(time=6)

    def run(e, t):
        return {"sae": structure.spatial_autocorrelation_error(e, t),
                "spec": structure.power_spectrum(e),
                "sphere": structure.sphere_power_spectrum(e, grid.lat, grid.lon, grid.area, max_frames=7),
                "acf": structure.temporal_autocorrelation(e, grid.area, (3, 9)),
                "diurnal": structure.diurnal_cycle(e, grid.area, grid.lon)}

    with no_compute():
        lazy = run(le, lt)
        assert all(isinstance(v, xr.DataArray) and v.chunks is not None for v in lazy.values())
    eager = run(ens, truth)
    for k in lazy:
        np.testing.assert_allclose(lazy[k].compute().values, eager[k].values, rtol=1e-9, err_msg=k)


def test_structure_runs_on_the_internal_dim_names(rng):
    from downscale.diagnostics.dims import INTERNAL
    out = field(rng.gamma(0.5, 2e-5, size=(4, 6, 8, 8)))
    internal = out.rename(grid_yt="y", grid_xt="x")
    np.testing.assert_array_equal(structure.morans_i(internal, INTERNAL.spatial).values, structure.morans_i(out).values)
    np.testing.assert_array_equal(structure.power_spectrum(internal, INTERNAL.spatial).values,
                                  structure.power_spectrum(out).values)
    with pytest.raises(ValueError, match="lacks dims"):
        structure.power_spectrum(internal)
