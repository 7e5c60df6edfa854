"""Spatial and temporal structure: spectra peak at a sinusoid's wavenumber, SAE, autocorrelation of an
AR(1) process, the diurnal cycle by local solar time; dask = numpy without computing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from diag_helpers import field, julian_times, no_compute, output_grid, smooth_unit_vector_field
from downscale.diagnostics import structure


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
