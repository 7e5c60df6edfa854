"""Cube-sphere geometry against the real FV3GFS C48 grid files (run with -s to see the measured errors)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.cubesphere import (
    cell_centre_unit_vectors,
    corner_unit_vectors,
    cube_sphere_grid,
    grid_angle_from_east,
    lat_lon_to_unit_vectors,
    local_east_north,
)
from data_catalog.schema import CORNER_DIMS, EARTH_RADIUS, STATIC_DIMS

TOL_DEG = 1e-4
POLE = 90.0 - 1e-6  # longitude is undefined at a pole (the real files write 350° there, we write 0°)


def _open(path) -> xr.Dataset:
    return xr.open_dataset(path, engine="h5netcdf").load()


def _lon_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 360.0
    return np.minimum(d, 360.0 - d)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Great-circle angle between unit vectors (robust for tiny angles)."""
    return np.rad2deg(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.einsum("...k,...k->...", u, v)))


@pytest.fixture(scope="module")
def c48() -> xr.Dataset:
    return cube_sphere_grid(48)


def _compare_positions(ours_lat, ours_lon, ref_lat, ref_lon, label: str) -> dict[str, float]:
    ref_lat, ref_lon = ref_lat.astype(np.float64), ref_lon.astype(np.float64)
    away_from_poles = np.abs(ref_lat) < POLE
    errors = {
        "lat": float(np.abs(ours_lat - ref_lat).max()),
        "lon": float(_lon_error(ours_lon, ref_lon)[away_from_poles].max()),
        "angle": float(_angle_deg(lat_lon_to_unit_vectors(ours_lat, ours_lon),
                                  lat_lon_to_unit_vectors(ref_lat, ref_lon)).max()),
    }
    print(f"\n{label}: max |dlat| {errors['lat']:.2e} deg, max |dlon| {errors['lon']:.2e} deg "
          f"({(~away_from_poles).sum()} pole points left out), max distance {errors['angle']:.2e} deg")
    return errors


def test_centres_and_corners_match_real_c48_grid(c48, c48_dir):
    ref = _open(c48_dir / "grid.nc")
    centres = _compare_positions(c48.lat.values, c48.lon.values, ref.lat.values, ref.lon.values, "grid.nc centres")
    corners = _compare_positions(c48.latb.values, c48.lonb.values, ref.latb.values, ref.lonb.values,
                                 "grid.nc corners")
    for errors in (centres, corners):
        assert max(errors.values()) <= TOL_DEG, errors
    assert (np.abs(ref.latb.values) >= POLE).sum() == 2  # only the two pole corners were left out of lon


def test_centres_and_corners_match_real_fortran_diagnostic(c48, c48_dir):
    ref = _open(c48_dir / "plot_1_plot_cube_fortran_diagnostic.nc")
    assert ref.lat.dims == ("tile", "grid_yt", "grid_xt")
    centres = _compare_positions(c48.lat.values, c48.lon.values, ref.lat.values, ref.lon.values,
                                 "sfc_dt_atmos centres")
    corners = _compare_positions(c48.latb.values, c48.lonb.values, ref.latb.values, ref.lonb.values,
                                 "sfc_dt_atmos corners")
    for errors in (centres, corners):
        assert max(errors.values()) <= TOL_DEG, errors


def test_areas_match_real_c48_and_sum_to_sphere(c48, c48_dir):
    ref = _open(c48_dir / "grid.nc").area.values.astype(np.float64)
    rel = np.abs(c48.area.values / ref - 1.0)
    total_rel = abs(float(c48.area.sum()) / (4 * np.pi * EARTH_RADIUS**2) - 1.0)
    print(f"\narea: max relative error vs grid.nc {rel.max():.2e}; total vs 4 pi R^2 {total_rel:.1e}; "
          f"range {c48.area.min().item() / 1e6:.0f}-{c48.area.max().item() / 1e6:.0f} km2")
    assert rel.max() <= 1e-4
    assert total_rel <= 1e-10


@pytest.mark.parametrize("n", [1, 2, 7, 96])
def test_any_resolution_tiles_the_sphere(n):
    grid = cube_sphere_grid(n, radius=1.0)
    assert abs(float(grid.area.sum()) - 4 * np.pi) <= 1e-10 * 4 * np.pi
    assert (grid.area.values > 0).all()
    assert grid.lat.shape == (6, n, n) and grid.latb.shape == (6, n + 1, n + 1)
    assert ((grid.lon.values >= 0) & (grid.lon.values < 360)).all()
    assert ((grid.lonb.values >= 0) & (grid.lonb.values < 360)).all()
    # Neighbouring tiles share their edge nodes: each of the 8 cube corners appears on exactly 3 tiles.
    p = corner_unit_vectors(n)
    cube_corners = p[:, [0, 0, -1, -1], [0, -1, 0, -1]].reshape(-1, 3)
    _, counts = np.unique(np.round(cube_corners, 12), axis=0, return_counts=True)
    assert sorted(counts) == [3] * 8


def test_internal_form_dims_dtype_coords_attrs(c48):
    assert set(c48.data_vars) == {"lat", "lon", "latb", "lonb", "area"}
    for name in ("lat", "lon", "area"):
        assert c48[name].dims == STATIC_DIMS and c48[name].dtype == np.float64
    for name in ("latb", "lonb"):
        assert c48[name].dims == CORNER_DIMS and c48[name].dtype == np.float64
    assert c48.tile.values.tolist() == [0, 1, 2, 3, 4, 5]
    assert c48.lat.attrs["units"] == "degrees_north" and c48.lonb.attrs["units"] == "degrees_east"
    assert c48.area.attrs["units"] == "m2"


def test_schema_frames_tile_one_corner_and_first_centre(c48):
    """docs/cube-sphere.md: tile 1 (0-based 0) corner (y=0, x=0) at (305°E, −35.26°), first centre (305.78°E, −34.89°)."""
    assert c48.lonb.values[0, 0, 0] == pytest.approx(305.0, abs=1e-9)
    assert c48.latb.values[0, 0, 0] == pytest.approx(-np.rad2deg(np.arcsin(1 / np.sqrt(3))), abs=1e-9)
    assert c48.lon.values[0, 0, 0] == pytest.approx(305.78, abs=5e-3)
    assert c48.lat.values[0, 0, 0] == pytest.approx(-34.89, abs=5e-3)


def test_grid_angle_agrees_with_finite_differences_of_centres():
    n = 48
    theta = grid_angle_from_east(n)
    p = cell_centre_unit_vectors(n)
    east, north = local_east_north(p)
    step = p[:, :, 2:] - p[:, :, :-2]                       # centred difference along +x
    inner = (slice(None), slice(None), slice(1, -1))
    fd = np.arctan2(np.einsum("...k,...k->...", step, north[inner]),
                    np.einsum("...k,...k->...", step, east[inner]))
    diff = np.rad2deg(np.angle(np.exp(1j * (fd - theta[inner]))))
    print(f"\ngrid angle vs finite differences: max {np.abs(diff).max():.2e} deg")
    assert np.abs(diff).max() < 0.5
    # +x runs east on tiles 1, 2 near the equator and south on tiles 4, 5 (1-based), per the frames table.
    assert np.abs(np.rad2deg(theta[3:5]) + 90.0).max() < 1e-9
    assert np.abs(np.rad2deg(theta[0:2, n // 2 - 1: n // 2 + 1])).max() < 1.0


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_resolution_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="positive integer C-N"):
        cube_sphere_grid(bad)
