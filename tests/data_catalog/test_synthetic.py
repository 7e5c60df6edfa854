"""The synthetic FV3GFS generator: real store layout, exact coarse-graining, reproducibility, and
precipitation that behaves like weather (measured on the ``tests`` preset: C8 -> C32, 2 members, 4 days)."""

from __future__ import annotations

import json

import cftime
import numpy as np
import pytest
import xarray as xr
import zarr

from data_catalog.catalog import Catalog
from data_catalog.coarsen import coarse_grain
from data_catalog.cubesphere import cube_sphere_grid
from data_catalog.member_reader import open_member
from data_catalog.schema import EARTH_RADIUS, SECONDS_PER_DAY
from data_catalog.synthetic import SyntheticConfig, generate_synthetic, preset
from data_catalog.synthetic import statistics as st
from data_catalog.synthetic.card import measure_card, render
from data_catalog.synthetic.gradient import SurfaceGradient
from data_catalog.synthetic.solar import SOLAR_CONSTANT, day_of_year
from data_catalog.synthetic.weather import WeatherModel

PREDICTORS = ("PRATEsfc_coarse", "CPRATsfc_coarse", "TMPsfc_coarse", "UGRD10m_coarse", "VGRD10m_coarse",
              "DSWRFtoa_coarse")


@pytest.fixture(scope="module")
def config() -> SyntheticConfig:
    return preset("tests")


@pytest.fixture(scope="module")
def layout(config, tmp_path_factory):
    return generate_synthetic(config, tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def fine(layout) -> xr.Dataset:
    return xr.open_zarr(layout.fine("0001"), decode_times=False).load()


@pytest.fixture(scope="module")
def coarse(layout) -> xr.Dataset:
    return xr.open_zarr(layout.coarse("0001"), decode_times=False).load()


def precipitation_mm_day(layout, members=("0001", "0002")) -> np.ndarray:
    """Fine PRATEsfc of the members, (member · time, tile, y, x) in mm/day."""
    arrays = [xr.open_zarr(layout.fine(m), decode_times=False).PRATEsfc.transpose("time", "tile", ...).values
              for m in members]
    return np.concatenate(arrays) * SECONDS_PER_DAY


# -- layout and schema -----------------------------------------------------------------------------------------
def test_fine_store_has_the_layout_of_the_real_fortran_diagnostics(fine, c48_dir, config):
    real = xr.open_dataset(c48_dir / "plot_1_plot_cube_fortran_diagnostic.nc", engine="h5netcdf", decode_times=False)
    assert fine.PRATEsfc.dims == real.LHTFLsfc.dims == ("tile", "time", "grid_yt", "grid_xt")
    assert "tile" not in fine.coords and "tile" not in real.coords
    assert fine.PRATEsfc.dtype == np.float32
    assert fine.PRATEsfc.attrs == {"cell_methods": "time: point", "long_name": "bucket surface precipitation rate",
                                   "units": "kg/m**2/s"}
    for name in ("grid_xt", "grid_yt", "grid_x", "grid_y"):
        assert fine[name].attrs == real[name].attrs, name
        assert fine[name].dtype == np.float64
    np.testing.assert_array_equal(fine.grid_xt.values, np.arange(1.0, config.fine_n + 1))
    np.testing.assert_array_equal(fine.grid_x.values, np.arange(1.0, config.fine_n + 2))
    for name in ("lon", "lat", "lonb", "latb"):
        assert fine[name].dims == real[name].dims, name
        assert fine[name].attrs == real[name].attrs, name
        assert fine[name].dtype == real[name].dtype
    assert set(real.time.attrs) <= set(fine.time.attrs)
    assert fine.time.attrs["calendar"] == real.time.attrs["calendar"] == "JULIAN"
    assert fine.time.attrs["units"] == "hours since 2016-08-05" == real.time.attrs["units"]
    assert fine.PRATEsfc.encoding["chunks"] == (6, config.time_chunk, config.fine_n, config.fine_n)


def test_stores_are_consolidated_zarr_v3(layout):
    for path in layout.stores():
        group = zarr.open_group(path, mode="r")
        assert group.metadata.zarr_format == 3, path
        assert json.loads((path / "zarr.json").read_text()).get("consolidated_metadata"), path


def test_coarse_store_holds_the_six_predictors_with_coarse_grid(coarse, config):
    for name in PREDICTORS:
        assert coarse[name].dims == ("tile", "time", "grid_yt_coarse", "grid_xt_coarse"), name
        assert coarse[name].dtype == np.float32
        assert coarse[name].sizes["grid_xt_coarse"] == config.coarse_n
    assert coarse.PRATEsfc_coarse.attrs["units"] == "kg/m**2/s"
    for name in ("lon_coarse", "lat_coarse", "area_coarse"):
        assert coarse[name].dims == ("tile", "grid_yt_coarse", "grid_xt_coarse")
    assert coarse.lonb_coarse.dims == ("tile", "grid_y_coarse", "grid_x_coarse")
    assert coarse.grid_xt_coarse.attrs["cartesian_axis"] == "X" and "tile" not in coarse.coords


def test_time_is_julian_interval_midpoints_with_float_noise(layout, fine, config):
    raw = fine.time.values
    expected = 3.0 * np.arange(config.n_times) + 1.5
    assert np.any(raw != expected) and np.max(np.abs(raw - expected)) < 1e-8   # real files carry ~1e-9 h noise
    decoded = xr.open_zarr(layout.fine("0001")).indexes["time"]
    assert isinstance(decoded[0], cftime.DatetimeJulian)
    assert decoded[0] - cftime.DatetimeJulian(2016, 8, 5) < np.timedelta64(5401, "s")


def test_static_and_grid_stores(layout, config):
    static = xr.open_zarr(layout.static)
    assert static.zsurf.dims == ("tile", "grid_yt", "grid_xt") and static.zsurf.attrs["units"] == "m"
    z = static.zsurf.values
    assert z.min() >= 0 and 4000 < z.max() < 7000                     # a Himalaya-like range
    grid = xr.open_zarr(layout.grid("fine"))
    ref = cube_sphere_grid(config.fine_n)
    np.testing.assert_array_equal(grid.area.values, ref.area.values)
    assert grid.lonb.dims == ("tile", "grid_y", "grid_x") and grid.lat.dtype == np.float64


def test_the_project_reader_opens_it_through_a_catalog(layout, config):
    catalog = Catalog.model_validate(layout.catalog_document("tests")).resolved(layout.root)
    member = open_member(catalog, "0002")
    assert member.fine.PRATEsfc.dims == ("time", "tile", "y", "x")
    assert member.fine.sizes["time"] == config.n_times
    assert tuple(member.coarse.data_vars) == PREDICTORS and not member.derived


# -- consistency of coarse and fine -----------------------------------------------------------------------------
def test_coarse_precipitation_is_the_area_weighted_block_mean(fine, coarse, config):
    area = xr.DataArray(cube_sphere_grid(config.fine_n).area.values, dims=("tile", "y", "x"))
    field = fine.PRATEsfc.rename(grid_yt="y", grid_xt="x")
    expected = coarse_grain(field, area, config.factor).values
    np.testing.assert_allclose(coarse.PRATEsfc_coarse.values, expected, rtol=2e-7, atol=1e-12)
    conv, total = coarse.CPRATsfc_coarse.values, coarse.PRATEsfc_coarse.values
    assert conv.min() >= 0 and np.all(conv <= total * (1 + 1e-6) + 1e-12)
    assert 0.2 < conv.mean() / total.mean() < 0.9


def test_toa_shortwave_follows_solar_geometry(coarse, layout, config):
    """At any instant the sunlit hemisphere receives S·πR²: the global mean of the TOA flux is S/4."""
    area = cube_sphere_grid(config.coarse_n).area.values
    sw = coarse.DSWRFtoa_coarse.transpose("time", ...).values
    global_mean = (sw * area).sum(axis=(1, 2, 3)) / area.sum()
    times = xr.open_zarr(layout.fine("0001")).indexes["time"]
    expected = SOLAR_CONSTANT / 4 * (1 + 0.033 * np.cos(2 * np.pi * np.array([day_of_year(t) for t in times]) / 365.25))
    np.testing.assert_allclose(global_mean, expected, rtol=2e-3)
    assert sw.min() == 0 and sw.max() < SOLAR_CONSTANT * 1.04


def test_temperature_is_plausible(coarse, config):
    t = coarse.TMPsfc_coarse.values
    lat = cube_sphere_grid(config.coarse_n).lat.values
    assert 200 < t.min() and t.max() < 320
    assert t.mean(axis=1)[np.abs(lat) < 15].mean() > t.mean(axis=1)[np.abs(lat) > 65].mean() + 20


# -- reproducibility -------------------------------------------------------------------------------------------------
def test_same_seed_same_data_members_differ(layout, fine, tmp_path):
    """A shorter run of the same seed reproduces the first records bit for bit (every time is computed
    alone); the two members share topography but not weather; another seed gives other weather."""
    again = generate_synthetic(preset("tests", members=("0001",), n_times=8), tmp_path / "again")
    first = xr.open_zarr(again.fine("0001"), decode_times=False).PRATEsfc.values
    np.testing.assert_array_equal(first, fine.PRATEsfc.values[:, :8])
    other_member = xr.open_zarr(layout.fine("0002"), decode_times=False).PRATEsfc.values[:, :8]
    assert abs(np.corrcoef(first.ravel(), other_member.ravel())[0, 1]) < 0.5
    np.testing.assert_array_equal(xr.open_zarr(again.static).zsurf.values, xr.open_zarr(layout.static).zsurf.values)
    reseeded = generate_synthetic(preset("tests", members=("0001",), n_times=8, seed=1), tmp_path / "seed1")
    assert not np.array_equal(xr.open_zarr(reseeded.fine("0001")).PRATEsfc.values, first)


# -- weather-like statistics ---------------------------------------------------------------------------------------
def test_intermittent_with_a_heavy_tail(layout):
    p = precipitation_mm_day(layout)
    assert p.min() == 0.0                                            # exactly >= 0 without the noise flag
    assert 0.2 < st.wet_fraction(p) < 0.5
    mean, p9999 = p.mean(), np.percentile(p, 99.99)
    assert 1.0 < mean < 5.0
    assert p9999 > 30 * mean
    assert np.isfinite(p).all() and p.max() < 2000.0


def test_negative_numerics_only_on_request(tmp_path):
    lay = generate_synthetic(preset("tests", members=("0001",), n_times=8, negative_noise=True), tmp_path)
    p = xr.open_zarr(lay.fine("0001")).PRATEsfc.values
    negative = p[p < 0]
    assert negative.size > 0 and np.all(negative == np.float32(-1e-13))


def test_precipitation_persists_three_hours(layout):
    p = precipitation_mm_day(layout, ("0001",))
    assert st.lag_autocorrelation(p) > 0.4
    c = xr.open_zarr(layout.coarse("0001"), decode_times=False).PRATEsfc_coarse.transpose("time", ...).values
    residual = p - np.repeat(np.repeat(c * SECONDS_PER_DAY, 4, axis=-2), 4, axis=-1)
    assert st.lag_autocorrelation(residual) > 0.2                   # the sub-coarse texture lives for hours


def test_coarse_field_leaves_fine_variance_unexplained(layout, config):
    p = precipitation_mm_day(layout)
    c = np.concatenate([xr.open_zarr(layout.coarse(m), decode_times=False).PRATEsfc_coarse.transpose("time", ...).values
                        for m in ("0001", "0002")]) * SECONDS_PER_DAY
    area = cube_sphere_grid(config.fine_n).area.values
    assert st.unexplained_fraction(p, c, area) > 0.25


def test_upslope_wetter_than_downslope(layout, config):
    p = precipitation_mm_day(layout)
    zsurf = xr.open_zarr(layout.static).zsurf.values.astype(np.float64)
    grad_z = SurfaceGradient(config.fine_n)(zsurf) / EARTH_RADIUS
    winds = [np.concatenate([xr.open_zarr(layout.coarse(m), decode_times=False)[f"{c}GRD10m_coarse"]
                             .transpose("time", ...).values for m in ("0001", "0002")]) for c in "UV"]
    u, v = (np.repeat(np.repeat(w, config.factor, axis=-2), config.factor, axis=-1) for w in winds)
    w = st.upslope_winds(u, v, grad_z, config.fine_n)
    high = np.broadcast_to(zsurf > 500.0, w.shape)
    up, down = p[high & (w > 0.01)], p[high & (w < -0.01)]
    assert up.size > 100 and down.size > 100
    assert up.mean() > 1.5 * down.mean()
    assert st.wet_fraction(up) > st.wet_fraction(down)


def test_systems_drift_with_the_wind(layout, config):
    """Storm-track patterns move east with the westerlies, tropical ones west with the trades (10 days of
    one member computed directly: the 4 stored days are too few for the slow tropical clusters)."""
    grid = cube_sphere_grid(config.fine_n)
    lat, lon = grid.lat.values, grid.lon.values
    stored = [precipitation_mm_day(layout, (m,)) for m in config.members]
    south = st.zonal_pattern_speed(stored, lat, lon, (-60.0, -40.0), 4, 3.0)
    u = np.concatenate([xr.open_zarr(layout.coarse(m), decode_times=False).UGRD10m_coarse.values
                        for m in config.members], axis=1)
    clat = cube_sphere_grid(config.coarse_n).lat.values
    westerlies = u.mean(axis=1)[(clat >= -60) & (clat < -40)].mean()
    assert westerlies > 2.0 and 0.5 * westerlies < south < 3.0 * westerlies
    model = WeatherModel(config.model_copy(update={"n_times": 80}), "0001")
    p = model.chunk(range(80))["PRATEsfc"].transpose(1, 0, 2, 3) * SECONDS_PER_DAY
    assert -15.0 < st.zonal_pattern_speed(p, lat, lon, (-5.0, 20.0), 8, 3.0) < -2.0


def test_no_seams_at_tile_edges(layout):
    p = np.log1p(precipitation_mm_day(layout, ("0001",)))
    ratio = st.seam_ratio(p)
    assert 0.85 < ratio < 1.2
    broken = p.copy()
    broken[:, 1] = np.roll(broken[:, 1], 3, axis=-1)               # the measure does see a misplaced tile
    assert st.seam_ratio(broken) > ratio + 0.2
    assert 0.85 < st.seam_ratio(xr.open_zarr(layout.static).zsurf.values) < 1.2


# -- the root as a whole ----------------------------------------------------------------------------------------------
def test_refuses_to_overwrite_a_complete_root(tmp_path):
    config = preset("tests", members=("0001",), n_times=8)
    generate_synthetic(config, tmp_path)
    (tmp_path / "catalog.yaml").write_text("kept")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        generate_synthetic(config, tmp_path)
    generate_synthetic(config.model_copy(update={"seed": 5}), tmp_path, overwrite=True)
    assert json.loads((tmp_path / "synthetic.json").read_text())["config"]["seed"] == 5
    assert (tmp_path / "catalog.yaml").read_text() == "kept"


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path):
    config = preset("tests", members=("0001",), n_times=8)
    layout = generate_synthetic(config, tmp_path)
    (tmp_path / "synthetic.json").unlink()                          # as if killed before the marker
    stale = layout.fine("0001").with_name("sfc_8xdaily_ave.zarr.tmp-dead")
    stale.mkdir()
    generate_synthetic(config, tmp_path)                            # resumes instead of refusing
    assert not stale.exists() and layout.marker.exists()


def test_config_validation():
    assert SyntheticConfig(days=2).n_times == 16
    with pytest.raises(ValueError, match="either 'days' or 'n_times'"):
        SyntheticConfig(days=2, n_times=16)
    with pytest.raises(ValueError, match="ISO date"):
        SyntheticConfig(start="5 Aug 2016")
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        preset("huge")
    assert preset("full").fine_n == 384 and len(preset("full").members) == 11
    assert preset("demo").factor == 8


def test_card_measures(layout):
    _, config, stats = measure_card("tests", layout.root)
    assert config.name == "tests"
    assert stats["coarse_equals_block_mean_max_abs_kg_m2_s"] < 1e-9
    assert stats["orographic"]["upslope_mean_mm_day"] > stats["orographic"]["downslope_mean_mm_day"]
    assert f"wet fraction (> 0.1 mm/day)          {stats['wet_fraction']:.3f}" in render(stats)
