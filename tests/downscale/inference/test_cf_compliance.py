"""The output store passes an independent CF checker (IOOS compliance-checker, CF 1.10, as the store's
``Conventions`` says) once converted to netCDF, and its CF bounds say what they should: 4 counterclockwise
vertices per cell from the FV3 corners, the interval of every 3-hourly mean (stamped at its middle, as FMS
stamps them), a ``coordinates`` attribute on every field — also after the store grew by appended frames.

The store is written by the real writer (:mod:`downscale.inference.store`, :mod:`downscale.inference.growth`):
C8 from C4, 2 members, 12 frames grown to 16, 3-hourly Julian times at 01:30, 04:30, …"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import cf_xarray  # noqa: F401 - registers the .cf accessor
import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr
from compliance_checker.runner import CheckSuite

from data_catalog.cubesphere import cube_sphere_grid, lat_lon_to_unit_vectors
from downscale.inference import growth
from downscale.inference.store import create_store, finalize_store, open_output, pending_items, write_item
from downscale.inference.store_bounds import cell_vertices
from downscale.inference.store_schema import OutputSpec

N, FACTOR, MEMBERS, FRAMES, GROWN_FROM = 8, 2, ("0001", "0002"), 16, 12
TIMES = np.array([cftime.DatetimeJulian(2016, 8, 5, 1, 30) + timedelta(hours=3 * i) for i in range(FRAMES)])
CHECKER = "cf:1.10"
HIGH, MEDIUM, LOW = 3, 2, 1
pytestmark = pytest.mark.filterwarnings("ignore:The ioos_sos checker is deprecated:DeprecationWarning")
#: The grid's own variables: FV3's corner arrays and the CF bounds carry no ``coordinates``.
GRID_OWN = {"latb", "lonb", "lat_bnds", "lon_bnds", "lat_coarse_bnds", "lon_coarse_bnds", "time_bnds"}


def make_spec(times: np.ndarray, **changes) -> OutputSpec:
    return OutputSpec(members=MEMBERS, times=times, grid=cube_sphere_grid(N),
                      coarse_area=cube_sphere_grid(N // FACTOR).area, factor=FACTOR, baselines=("bilinear",),
                      has_truth=True, time_block=8, member_block=1, ensemble_variants=("raw",),
                      attrs={"bundle_id": "bundle-cf"}, **changes)


def write_pending(path: Path, spec: OutputSpec) -> None:
    rng = np.random.default_rng(3)
    nc = N // FACTOR
    for item in pending_items(path, spec):
        t, m = item.frames, item.member_slice(spec)
        nt, nm = t.stop - t.start, m.stop - m.start
        ensemble = rng.gamma(0.5, 1e-4, (nm, nt, 6, N, N)).astype(np.float32)
        shared = {}
        if item.member_block == 0:
            shared = dict(deterministic={"bilinear": rng.gamma(0.5, 1e-4, (nt, 6, N, N)).astype(np.float32)},
                          truth=rng.gamma(0.5, 1e-4, (nt, 6, N, N)).astype(np.float32),
                          coarse=rng.gamma(0.5, 1e-4, (nt, 6, nc, nc)).astype(np.float32))
        write_item(path, spec, item, ensemble, np.arange(nm * nt).reshape(nm, nt), variants={"raw": ensemble},
                   **shared)
    finalize_store(path, spec)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Written for 12 frames, then grown to 16 as ``downscale generate --append`` grows it."""
    path = tmp_path_factory.mktemp("cf") / "out.zarr"
    short, full = make_spec(TIMES[:GROWN_FROM]), make_spec(TIMES)
    create_store(path, short)
    write_pending(path, short)
    assert growth.extend_store(path, full) == FRAMES - GROWN_FROM
    write_pending(path, full)
    return path


def to_netcdf(store: Path, path: Path, faithful: bool) -> Path:
    """The store as netCDF-4. ``faithful``: every float variable keeps the store's ``_FillValue`` (none on the
    grid); else xarray's defaults, as a user's plain ``to_netcdf`` gives (a NaN ``_FillValue`` on every float
    variable that has none)."""
    ds = open_output(store)
    encoding = {k: {"_FillValue": v.encoding.get("_FillValue")} for k, v in ds.variables.items()
                if faithful and v.dtype.kind == "f"}
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path


def cf_findings(path: Path) -> tuple[dict[int, list[str]], dict[str, str]]:
    """The checker's failed checks by priority (3 high = errors, 2 medium = warnings, 1 low), each as
    "section: message", and the checks that raised instead of checking."""
    CheckSuite.load_all_available_checkers()
    suite = CheckSuite()
    dataset = suite.load_dataset(str(path))
    try:
        ((groups, errors),) = suite.run_all(dataset, [CHECKER], skip_checks=[]).values()
    finally:
        dataset.close()
    failed: dict[int, list[str]] = {HIGH: [], MEDIUM: [], LOW: []}
    for result in groups:
        if result.value[1] and result.value[0] < result.value[1]:
            failed[result.weight] += [f"{result.name}: {m}" for m in result.msgs]
    return failed, {name: repr(exc) for name, (exc, _) in errors.items()}


def test_the_cf_checker_reports_no_errors(store, tmp_path):
    """No error (high priority) in a plain export; a faithful one leaves only CF's recommended dimension order
    (T, Z, Y, X with any other dims left of them), which the cube sphere's (time, tile, grid_yt, grid_xt)
    cannot follow: tile, grid_yt and grid_xt are indices, not X/Y coordinates."""
    plain, crashed = cf_findings(to_netcdf(store, tmp_path / "plain.nc", faithful=False))
    assert crashed == {} and plain[HIGH] == []
    faithful, crashed = cf_findings(to_netcdf(store, tmp_path / "faithful.nc", faithful=True))
    assert crashed == {} and faithful[HIGH] == [] and faithful[LOW] == []
    order = "spatio-temporal dimensions are not in the recommended order T, Z, Y, X"
    assert [m for m in faithful[MEDIUM] if order not in m] == []
    assert len(faithful[MEDIUM]) == 5  # PRATEsfc, _ensemble_raw, _bilinear, _truth, _coarse


@pytest.mark.parametrize("variable, attribute, value, message", [
    ("lat", "bounds", None, "is highly recommended for variable lat_bnds"),
    ("PRATEsfc", "coordinates", "member_name lat lon nothere", "references non-existent variable 'nothere'"),
    ("member", "units", None, "must be convertible to canonical units"),
])
def test_the_checker_sees_what_the_store_states(store, tmp_path, variable, attribute, value, message):
    """The checker reads the CF attributes: without them, or with a wrong one, it reports an error."""
    path = to_netcdf(store, tmp_path / "broken.nc", faithful=True)
    with netCDF4.Dataset(path, "a") as nc:
        if value is None:
            nc[variable].delncattr(attribute)
        else:
            nc[variable].setncattr(attribute, value)
    findings, _ = cf_findings(path)
    assert any(message in m for m in findings[HIGH]), findings[HIGH]


def _counterclockwise(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether each cell's vertices ``(..., 4)`` run counterclockwise seen from outside the sphere."""
    v = lat_lon_to_unit_vectors(lat, lon)
    normal = sum(np.cross(v[..., k, :], v[..., (k + 1) % 4, :]) for k in range(4))
    return np.einsum("...i,...i->...", normal, v.sum(axis=-2)) > 0


def test_cell_bounds_are_the_fv3_corners_counterclockwise(store):
    ds = xr.open_zarr(store)
    assert ds.cf.bounds["lat"] == ["lat_bnds"] and ds.cf.bounds["lon_coarse"] == ["lon_coarse_bnds"]
    fine, coarse = cube_sphere_grid(N), cube_sphere_grid(N // FACTOR)
    for suffix, grid, n in (("", fine, N), ("_coarse", coarse, N // FACTOR)):
        lat, lon = ds[f"lat{suffix}_bnds"].values, ds[f"lon{suffix}_bnds"].values
        assert ds[f"lat{suffix}_bnds"].dims == ("tile", f"grid_yt{suffix}", f"grid_xt{suffix}", "nv")
        assert lat.shape == (6, n, n, 4) and _counterclockwise(lat, lon).all()
        # cell (j, i): its first vertex is corner (j, i), its third the opposite corner (j+1, i+1)
        np.testing.assert_allclose(lat[:, :, :, 0], grid.latb.values[:, :-1, :-1], atol=1e-9)
        np.testing.assert_allclose(lat[:, :, :, 2], grid.latb.values[:, 1:, 1:], atol=1e-9)
        np.testing.assert_allclose(lat_lon_to_unit_vectors(lat, lon), lat_lon_to_unit_vectors(
            cell_vertices(grid.latb.values), cell_vertices(grid.lonb.values)), atol=1e-12)
        # the coarse centres are the C4 grid's own: every 2nd fine corner, centred as FV3 centres cells
        np.testing.assert_allclose(lat_lon_to_unit_vectors(ds[f"lat{suffix}"].values, ds[f"lon{suffix}"].values),
                                   lat_lon_to_unit_vectors(grid.lat.values, grid.lon.values), atol=1e-12)


def test_time_bounds_are_the_intervals_of_the_3_hourly_means_and_grew_with_the_store(store):
    """Frame 01:30 is the mean over 00:00–03:00; the bounds tile the period without gaps, the 4 appended frames
    included, and encode exactly (whole minutes since the first interval's start)."""
    ds = open_output(store)
    assert ds.time.attrs["bounds"] == "time_bnds" and ds.PRATEsfc.attrs["cell_methods"] == "time: mean"
    bounds = ds.time_bnds.values
    assert bounds.shape == (FRAMES, 2) and list(ds.time.values) == list(TIMES)
    assert [tuple(b) for b in bounds] == [(t - timedelta(hours=1.5), t + timedelta(hours=1.5)) for t in TIMES]
    assert bounds[0, 0] == cftime.DatetimeJulian(2016, 8, 5) and all(bounds[1:, 0] == bounds[:-1, 1])
    meta = json.loads((store / "time_bnds" / "zarr.json").read_text())
    assert meta["shape"] == [FRAMES, 2] and meta["data_type"] == "int64"
    assert ds.time.encoding["units"].startswith("minutes since 2016-08-05")


def test_every_field_names_its_coordinates(store):
    """Every data variable but the grid's own has ``coordinates`` naming variables on its own dims."""
    ds = xr.open_zarr(store)
    fields = set(map(str, ds.data_vars)) - GRID_OWN
    assert {"PRATEsfc", "PRATEsfc_coarse", "seed", "area", "area_coarse"} <= fields
    stated = {name: json.loads((store / name / "zarr.json").read_text())["attributes"].get("coordinates", "")
              for name in fields}
    for name, coordinates in stated.items():
        names = coordinates.split()
        assert names and all(set(ds[c].dims) <= set(ds[name].dims) for c in names), (name, coordinates)
    assert stated["PRATEsfc"] == "member_name lat lon" and stated["PRATEsfc_coarse"] == "lat_coarse lon_coarse"
    assert ds.member.attrs["standard_name"] == "realization" and list(ds.member_name.values) == list(MEMBERS)


def test_a_single_frame_needs_its_interval():
    with pytest.raises(ValueError, match="frame_seconds is required for a single time"):
        make_spec(TIMES[:1])
    with pytest.raises(ValueError, match="equal to the step of times"):
        make_spec(TIMES, frame_seconds=3600.0)
    single = make_spec(TIMES[:1], frame_seconds=10800.0)
    assert list(single.time_bounds[0]) == [cftime.DatetimeJulian(2016, 8, 5), cftime.DatetimeJulian(2016, 8, 5, 3)]
    assert single.series_fingerprint == make_spec(TIMES).series_fingerprint  # so a one-frame store can grow
