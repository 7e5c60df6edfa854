"""Writing the synthetic data in the exact layout of real FV3GFS stores (docs/catalog.md).

Layout under a root directory (:class:`SyntheticLayout`)::

    grid/c{fine_n}.zarr, grid/c{coarse_n}.zarr        lat, lon, area (tile, grid_yt, grid_xt);
                                                      latb, lonb (tile, grid_y, grid_x)
    static/atmos_static.zarr                          zsurf (tile, grid_yt, grid_xt), m
    members/{member}/sfc_8xdaily_ave.zarr             PRATEsfc (tile, time, grid_yt, grid_xt) + lon/lat/lonb/latb
    members/{member}/sfc_8xdaily_ave_coarse.zarr      PRATEsfc_coarse, CPRATsfc_coarse, TMPsfc_coarse, UGRD10m_coarse,
                                                      VGRD10m_coarse, DSWRFtoa_coarse (tile, time, grid_yt_coarse,
                                                      grid_xt_coarse) + lon_coarse, …, area_coarse
    synthetic.json                                    the config; written last: its presence marks a complete root

Fortran-diagnostic conventions copied from the real files: tile-first dims and no tile coordinate,
``grid_xt``/``grid_yt`` = 1..N as float64 with FMS attributes (``degrees_E``, ``cartesian_axis``),
time as float ``hours since START`` with ``calendar: JULIAN`` and ~1e-9 h of float noise, float32
fields with FMS attributes, Zarr v3 with consolidated metadata. Every store is written under a
temporary name and renamed into place when complete. Coarse fields are the area-weighted block means
(:func:`data_catalog.coarsen.coarse_grain`) of the fine fields, exactly.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
import zarr

from data_catalog.coarsen import coarse_grain
from data_catalog.cubesphere import cube_sphere_grid
from data_catalog.schema import N_TILES
from data_catalog.synthetic.config import STEP_HOURS, SyntheticConfig
from data_catalog.synthetic.weather import FINE_FIELDS, WeatherModel, geography
from data_catalog.zarr_metadata import consolidated_v3

MARKER = "synthetic.json"
FMS_X = {"cartesian_axis": "X", "long_name": "T-cell longitude", "units": "degrees_E"}
FMS_Y = {"cartesian_axis": "Y", "long_name": "T-cell latitude", "units": "degrees_N"}
FMS_XB = {"cartesian_axis": "X", "long_name": "cell corner longitude", "units": "degrees_E"}
FMS_YB = {"cartesian_axis": "Y", "long_name": "cell corner latitude", "units": "degrees_N"}
POINT = {"cell_methods": "time: point"}

#: FMS attributes of the fields (name in the coarse store → attributes).
FIELD_ATTRS: dict[str, dict[str, str]] = {
    "PRATEsfc": {**POINT, "long_name": "bucket surface precipitation rate", "units": "kg/m**2/s"},
    "CPRATsfc": {**POINT, "long_name": "averaged surface convective precipitation rate", "units": "kg/m**2/s"},
    "TMPsfc": {**POINT, "long_name": "surface temperature", "units": "K"},
    "UGRD10m": {**POINT, "long_name": "10 meter u wind", "units": "m/s"},
    "VGRD10m": {**POINT, "long_name": "10 meter v wind", "units": "m/s"},
    "DSWRFtoa": {**POINT, "long_name": "top of atmos downward shortwave flux", "units": "W/m**2"},
}
#: Float noise (hours) added to the time values in turn, as real FMS files carry it.
TIME_NOISE_HOURS = (0.0, 3.611111e-9, 0.0, -1.8e-9)


@dataclass(frozen=True)
class SyntheticLayout:
    """Paths of one synthetic dataset under ``root``."""

    root: Path
    fine_n: int
    coarse_n: int
    members: tuple[str, ...]

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def grid(self, which: str) -> Path:
        """``grid/c{N}.zarr`` of the ``fine`` or ``coarse`` grid."""
        return self.root / "grid" / f"c{self.fine_n if which == 'fine' else self.coarse_n}.zarr"

    @property
    def static(self) -> Path:
        return self.root / "static" / "atmos_static.zarr"

    def fine(self, member: str) -> Path:
        return self.root / "members" / member / "sfc_8xdaily_ave.zarr"

    def coarse(self, member: str) -> Path:
        return self.root / "members" / member / "sfc_8xdaily_ave_coarse.zarr"

    def stores(self) -> list[Path]:
        """Every store, in writing order."""
        paths = [self.grid("fine"), self.grid("coarse"), self.static]
        return paths + [p for m in self.members for p in (self.fine(m), self.coarse(m))]

    def catalog_document(self, name: str = "synthetic") -> dict:
        """A native catalog (``data_catalog.catalog``) for this dataset, paths relative to ``root``."""
        rel = lambda p: str(p.relative_to(self.root))  # noqa: E731
        return {
            "name": name,
            "resolution": {"coarse": self.coarse_n, "fine": self.fine_n},
            "precipitation": "PRATEsfc",
            "predictors": [f"{v}_coarse" for v in FINE_FIELDS],
            "topography": "zsurf",
            "static": {"urlpath": rel(self.static)},
            "grid": {"fine": {"urlpath": rel(self.grid("fine"))}, "coarse": {"urlpath": rel(self.grid("coarse"))}},
            "members": {m: {"fine": {"urlpath": rel(self.fine(m))}, "coarse": {"urlpath": rel(self.coarse(m))}}
                        for m in self.members},
        }


def layout_for(config: SyntheticConfig, root: str | Path) -> SyntheticLayout:
    return SyntheticLayout(Path(root), config.fine_n, config.coarse_n, tuple(config.members))


# -- coordinates and grid variables ----------------------------------------------------------------------
def _dims(coarse: bool) -> tuple[str, str, str, str]:
    sfx = "_coarse" if coarse else ""
    return f"grid_yt{sfx}", f"grid_xt{sfx}", f"grid_y{sfx}", f"grid_x{sfx}"


def index_coords(n: int, coarse: bool = False) -> dict[str, tuple]:
    """FMS index coordinates: ``grid_xt = 1..n``, ``grid_x = 1..n+1`` (float64, attrs as in real files)."""
    yt, xt, yb, xb = _dims(coarse)
    centres, corners = np.arange(1.0, n + 1), np.arange(1.0, n + 2)
    return {yt: (yt, centres, FMS_Y), xt: (xt, centres, FMS_X), yb: (yb, corners, FMS_YB), xb: (xb, corners, FMS_XB)}


def grid_variables(n: int, coarse: bool = False, dtype: type = np.float32, area: bool = False) -> dict[str, tuple]:
    """``lon, lat (tile, grid_yt, grid_xt)``, ``lonb, latb (tile, grid_y, grid_x)`` (+ ``area``), FMS attrs,
    named with ``_coarse`` when ``coarse``."""
    grid = cube_sphere_grid(n)
    yt, xt, yb, xb = _dims(coarse)
    sfx = "_coarse" if coarse else ""
    lon_attrs = {**POINT, "long_name": "longitude", "units": "degrees_E"}
    lat_attrs = {**POINT, "long_name": "latitude", "units": "degrees_N"}
    out = {
        f"lon{sfx}": (("tile", yt, xt), grid.lon.values.astype(dtype), lon_attrs),
        f"lat{sfx}": (("tile", yt, xt), grid.lat.values.astype(dtype), lat_attrs),
        f"lonb{sfx}": (("tile", yb, xb), grid.lonb.values.astype(dtype), lon_attrs),
        f"latb{sfx}": (("tile", yb, xb), grid.latb.values.astype(dtype), lat_attrs),
    }
    if area:
        out[f"area{sfx}"] = (("tile", yt, xt), grid.area.values.astype(dtype),
                             {**POINT, "long_name": "cell area", "units": "m**2"})
    return out


def time_coordinate(config: SyntheticConfig) -> tuple:
    """Interval mid-points in ``hours since START`` (Julian), with FMS float noise."""
    i = np.arange(config.n_times)
    hours = STEP_HOURS * (i + 0.5) + np.take(TIME_NOISE_HOURS, i % len(TIME_NOISE_HOURS))
    attrs = {"calendar_type": "JULIAN", "cartesian_axis": "T", "long_name": "time",
             "units": config.time_units, "calendar": "JULIAN"}
    return ("time", hours, attrs)


def _global_attrs(config: SyntheticConfig, filename: str) -> dict:
    return {
        "filename": filename, "grid_tile": "N/A", "grid_type": "regular", "title": "synthetic FV3GFS",
        "source": "data_catalog.synthetic (synthetic weather, not model output)",
        "synthetic_config": config.model_dump_json(exclude={"workers"}),
        "synthetic_fingerprint": config.fingerprint(),
    }


# -- templates of the time-varying stores -----------------------------------------------------------------
def _template(config: SyntheticConfig, coarse: bool, filename: str) -> xr.Dataset:
    n = config.coarse_n if coarse else config.fine_n
    yt, xt, _, _ = _dims(coarse)
    shape, chunks = (N_TILES, config.n_times, n, n), (N_TILES, config.time_chunk, n, n)
    names = [f"{v}_coarse" for v in FINE_FIELDS] if coarse else ["PRATEsfc"]
    data = {name: (("tile", "time", yt, xt), dsa.zeros(shape, chunks=chunks, dtype=np.float32),
                   FIELD_ATTRS[name.removesuffix("_coarse")]) for name in names}
    coords = {"time": time_coordinate(config), **index_coords(n, coarse)}
    return xr.Dataset({**data, **grid_variables(n, coarse, area=coarse)}, coords=coords,
                      attrs=_global_attrs(config, filename))


def _write_template(ds: xr.Dataset, path: Path) -> None:
    with consolidated_v3():
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True, compute=False)


@lru_cache(maxsize=2)
def _fine_area(n: int) -> xr.DataArray:
    return xr.DataArray(cube_sphere_grid(n).area.values, dims=("tile", "y", "x"))


def coarse_fields(fine: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Area-weighted block means of fine fields ``(tile, time, y, x)``: the coarse predictors."""
    n = next(iter(fine.values())).shape[-1]
    area = _fine_area(n)
    return {f"{name}_coarse": coarse_grain(xr.DataArray(values, dims=("tile", "time", "y", "x")), area,
                                           factor).values for name, values in fine.items()}


def write_chunk(model: WeatherModel, chunk: int, fine_path: str, coarse_path: str) -> int:
    """Generate records ``[chunk · time_chunk, …)`` of ``model``'s member and write them into both stores."""
    cfg = model.config
    start = chunk * cfg.time_chunk
    indices = range(start, min(start + cfg.time_chunk, cfg.n_times))
    fine = model.chunk(indices)
    window = slice(indices.start, indices.stop)
    zarr.open_group(fine_path, mode="r+")["PRATEsfc"][:, window] = fine["PRATEsfc"]
    group = zarr.open_group(coarse_path, mode="r+")
    for name, values in coarse_fields(fine, cfg.factor).items():
        group[name][:, window] = values
    return len(indices)


# -- static stores ------------------------------------------------------------------------------------------
def _grid_dataset(config: SyntheticConfig, n: int) -> xr.Dataset:
    variables = grid_variables(n, dtype=np.float64, area=True)
    return xr.Dataset(variables, coords=index_coords(n),
                      attrs={**_global_attrs(config, f"c{n}.zarr"), "grid": f"C{n}"})


def _static_dataset(config: SyntheticConfig) -> xr.Dataset:
    n = config.fine_n
    z = geography(n).zsurf.reshape(N_TILES, n, n).astype(np.float32)
    yt, xt, _, _ = _dims(False)
    variables = {"zsurf": (("tile", yt, xt), z, {**POINT, "long_name": "surface height", "units": "m"}),
                 **grid_variables(n)}
    return xr.Dataset(variables, coords=index_coords(n), attrs=_global_attrs(config, "atmos_static.nc"))


# -- atomic placement -----------------------------------------------------------------------------------------
def _temporary(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _place(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _store_fingerprint(path: Path) -> str | None:
    try:
        return zarr.open_group(path, mode="r").attrs.get("synthetic_fingerprint")
    except Exception:  # noqa: BLE001 - anything unreadable is simply not reusable
        return None


def write_stores(config: SyntheticConfig, layout: SyntheticLayout) -> dict[str, float]:
    """Write every store of ``layout`` that is not already there with this config's fingerprint.
    Returns wall times (s) of the static stores and of the time-varying ones."""
    fp = config.fingerprint()
    reuse = lambda p: p.exists() and _store_fingerprint(p) == fp  # noqa: E731
    for tmp in layout.root.glob("**/*.zarr.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    statics = {layout.grid("fine"): lambda: _grid_dataset(config, config.fine_n),
               layout.grid("coarse"): lambda: _grid_dataset(config, config.coarse_n),
               layout.static: lambda: _static_dataset(config)}
    for path, build in statics.items():
        if not reuse(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary(path)
            with consolidated_v3():
                build().to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
            _place(tmp, path)
    t1 = time.perf_counter()

    pending: list[tuple[Path, Path, Path, Path]] = []
    tasks = []
    n_chunks = -(-config.n_times // config.time_chunk)
    for member in config.members:
        fine, coarse = layout.fine(member), layout.coarse(member)
        if reuse(fine) and reuse(coarse):
            continue
        fine.parent.mkdir(parents=True, exist_ok=True)
        fine_tmp, coarse_tmp = _temporary(fine), _temporary(coarse)
        _write_template(_template(config, False, "sfc_8xdaily_ave.nc"), fine_tmp)
        _write_template(_template(config, True, "sfc_8xdaily_ave_coarse.nc"), coarse_tmp)
        pending.append((fine_tmp, fine, coarse_tmp, coarse))
        model = WeatherModel(config, member)
        tasks += [dask.delayed(write_chunk, pure=False)(model, c, str(fine_tmp), str(coarse_tmp))
                  for c in range(n_chunks)]
    if tasks:   # numpy and scipy.ndimage release the GIL: threads share the models without copies
        dask.compute(*tasks, scheduler="threads" if config.workers > 1 else "synchronous",
                     num_workers=config.workers)
    for fine_tmp, fine, coarse_tmp, coarse in pending:
        _place(fine_tmp, fine)
        _place(coarse_tmp, coarse)
    return {"static_s": t1 - t0, "members_s": time.perf_counter() - t1}


def write_marker(config: SyntheticConfig, layout: SyntheticLayout, timings: dict[str, float]) -> None:
    doc = {"config": json.loads(config.model_dump_json()), "fingerprint": config.fingerprint(),
           "timings_s": timings, "catalog": layout.catalog_document(config.name)}
    tmp = layout.marker.with_name(layout.marker.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.rename(layout.marker)
