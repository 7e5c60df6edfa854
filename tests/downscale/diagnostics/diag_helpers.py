"""Small real grids, Julian times and a guard that fails on any dask compute, for the diagnostics tests
(a uniquely named module: test files import it directly)."""

from __future__ import annotations

import contextlib

import cftime
import dask
import numpy as np
import xarray as xr

from data_catalog.cubesphere import cell_centre_unit_vectors, corner_unit_vectors, cube_sphere_grid

OUTPUT_NAMES = {"y": "grid_yt", "x": "grid_xt"}


def output_grid(n: int) -> xr.Dataset:
    """The C-n grid with the output dim names: lat, lon, area on (tile, grid_yt, grid_xt)."""
    return cube_sphere_grid(n)[["lat", "lon", "area"]].rename(OUTPUT_NAMES)


def julian_times(n: int, hours: float = 3.0, start: tuple[int, ...] = (2017, 1, 1)) -> np.ndarray:
    t0 = cftime.DatetimeJulian(*start)
    return np.array([t0 + np.timedelta64(int(i * hours * 3600), "s").item() for i in range(n)])


def field(data: np.ndarray, times: np.ndarray | None = None, member: bool = False, name: str = "PRATEsfc",
          spatial: tuple[str, str, str] = ("tile", "grid_yt", "grid_xt")) -> xr.DataArray:
    """Wrap ``(member?, time, 6, n, n)`` values with a Julian time axis."""
    dims = (("member",) if member else ()) + ("time",) + spatial
    nt = data.shape[1 if member else 0]
    times = julian_times(nt) if times is None else times
    return xr.DataArray(data, dims=dims, coords={"time": times}, name=name, attrs={"units": "kg m-2 s-1"})


def smooth_unit_vector_field(n: int) -> np.ndarray:
    """A smooth function of the 3-D position of each cell centre, (6, n, n)."""
    v = cell_centre_unit_vectors(n)
    return np.sin(2.0 * v[..., 0]) + v[..., 1] * v[..., 2] + 0.5 * v[..., 2] ** 2


def _refuse(*args, **kwargs):
    raise AssertionError("a diagnostic called dask compute while building a lazy result")


@contextlib.contextmanager
def no_compute():
    """Inside, any dask compute raises (checks that a diagnostic only builds a graph)."""
    with dask.config.set(scheduler=_refuse):
        yield


def cube_edge_pairs(n: int) -> np.ndarray:
    """Every pair of cells sharing an edge on the C-n cube, from the geometry alone (two cells are rook
    neighbours iff they share two corners): (12 n², 2) flat indices into (6, n, n), across tiles included."""
    key = np.round(corner_unit_vectors(n) * 1e9).astype(np.int64)              # (6, n + 1, n + 1, 3)
    ids = {}
    corner = np.empty(key.shape[:3], dtype=np.int64)
    for idx in np.ndindex(*key.shape[:3]):
        corner[idx] = ids.setdefault(tuple(key[idx]), len(ids))
    cells = {}
    for t, j, i in np.ndindex(6, n, n):
        c = [corner[t, j, i], corner[t, j, i + 1], corner[t, j + 1, i + 1], corner[t, j + 1, i]]
        for a, b in zip(c, c[1:] + c[:1]):
            cells.setdefault(frozenset((a, b)), []).append((t * n + j) * n + i)
    assert all(len(v) == 2 for v in cells.values())
    return np.array(sorted(cells.values()))
