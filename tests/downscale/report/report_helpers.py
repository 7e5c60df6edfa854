"""A tiny ensemble-shaped inference output store for the report tests (a uniquely named module: test
files import it directly): C16 from C8, 12 days 3-hourly, 3 members, an extra ensemble (``ensemble_raw``), two
baselines, truth, coarse input, cell corners and provenance attributes."""

from __future__ import annotations

import json
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from data_catalog.coarsen import coarse_grain
from data_catalog.cubesphere import cell_centre_unit_vectors, cube_sphere_grid

N, FACTOR, NT, K = 16, 2, 8 * 12, 3
PROVENANCE = {
    "model_bundle_id": "bundle-test-0001",
    "sampler": "edm-heun",
    "num_steps": 18,
    "seeds": "[11, 12, 13]",
    "inputs": "coarse=c8-test.zarr",
    "software_version": "0.1.0-test",
}


def _times(n: int) -> np.ndarray:
    t0 = cftime.DatetimeJulian(2017, 1, 1)
    return np.array([t0 + np.timedelta64(i * 3 * 3600, "s").item() for i in range(n)])


def write_output_store(path: Path, *, with_factor: bool = True) -> Path:
    """Write the store to ``path`` (Zarr v3) and return it."""
    rng = np.random.default_rng(7)
    grid = cube_sphere_grid(N)
    v = cell_centre_unit_vectors(N)
    pattern = 1.2 + np.sin(2.0 * v[..., 0]) + v[..., 1] * v[..., 2]
    truth = (np.clip(pattern, 0.1, None)[None] * rng.gamma(0.6, 3e-5, size=(NT, 6, N, N))).astype(np.float32)
    truth[rng.random(truth.shape) < 0.3] = 0.0
    coarse = coarse_grain(xr.DataArray(truth, dims=("time", "tile", "y", "x")),
                          grid.area.drop_vars("tile"), FACTOR).values
    members = truth[None] * rng.lognormal(0.0, 0.5, size=(K,) + truth.shape).astype(np.float32)
    raw = members * np.float32(1.1)
    attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}
    fine = ("time", "tile", "grid_yt", "grid_xt")
    corners = ("tile", "grid_y", "grid_x")
    global_attrs = {**PROVENANCE, "window_joins": json.dumps(list(range(8, NT, 8)))}
    if with_factor:
        global_attrs["factor"] = FACTOR
    ds = xr.Dataset(
        {"PRATEsfc": (("member",) + fine, members, attrs),
         "PRATEsfc_ensemble_raw": (("member",) + fine, raw, attrs),
         "PRATEsfc_deterministic": (fine, truth * np.float32(0.9) + np.float32(2e-6), attrs),
         "PRATEsfc_bilinear": (fine, np.repeat(np.repeat(coarse, FACTOR, -2), FACTOR, -1) * 1.05, attrs),
         "PRATEsfc_truth": (fine, truth, attrs),
         "PRATEsfc_coarse": (("time", "tile", "grid_yt_coarse", "grid_xt_coarse"), coarse, attrs),
         "lat": (fine[1:], grid.lat.values, grid.lat.attrs), "lon": (fine[1:], grid.lon.values, grid.lon.attrs),
         "latb": (corners, grid.latb.values, grid.latb.attrs), "lonb": (corners, grid.lonb.values, grid.lonb.attrs),
         "area": (fine[1:], grid.area.values, grid.area.attrs)},
        coords={"time": _times(NT), "member": np.arange(1, K + 1),
                "grid_yt": np.arange(1.0, N + 1), "grid_xt": np.arange(1.0, N + 1)},
        attrs=global_attrs,
    )
    ds.chunk(time=48, member=1).to_zarr(path, zarr_format=3, mode="w", consolidated=False)
    return path
