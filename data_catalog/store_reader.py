"""Open real FV3GFS stores lazily and standardize them, once, into the internal form.

Real stores differ (docs/catalog.md): dim order (tile first, time first, tile last), ``grid_xt`` /
``grid_xt_coarse`` / ``x`` names, a tile coordinate of 0..5, 1..6 or none, Julian time with float
noise, ``kg/m**2/s`` or ``kg/m^2/s``, float32 or float64, netCDF or Zarr. :func:`standardize` goes by
names, never positions, and returns dims ``(time, tile, y, x)`` / ``(tile, y, x)`` /
``(tile, yb, xb)``, float32, precipitation in kg m-2 s-1, ``tile`` = 0..5 and ``time`` as cftime
datetimes (the store's calendar, Julian for FV3GFS) rounded to the second. Nothing is loaded: dask
arrays stay dask arrays.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from data_catalog.catalog import StoreRef
from data_catalog.errors import DataError
from data_catalog.read_guard import guarded, zarr_presence
from data_catalog.schema import (
    GRID_VARIABLES,
    N_TILES,
    TILE,
    TIME,
    X,
    X_ALIASES,
    XB,
    XB_ALIASES,
    Y,
    Y_ALIASES,
    YB,
    YB_ALIASES,
)
from data_catalog.units import precipitation_scale

log = logging.getLogger(__name__)

_DIM_ALIASES = {Y: Y_ALIASES, X: X_ALIASES, YB: YB_ALIASES, XB: XB_ALIASES}
_TARGET_ORDER = (TIME, TILE, Y, X, YB, XB)

#: Variables that are precipitation rates (their units are checked and converted).
PRECIPITATION_NAMES = frozenset(
    {"PRATEsfc", "CPRATsfc", "total_precipitation_rate", "precipitation_rate", "PRATEsfc_coarse",
     "CPRATsfc_coarse", "total_precipitation_rate_coarse"}
)


def is_precipitation(name: str, attrs: dict) -> bool:
    """Whether a variable is a precipitation rate, by name or CF standard name."""
    return name in PRECIPITATION_NAMES or attrs.get("standard_name") in (
        "precipitation_flux",
        "convective_precipitation_flux",
    )


#: The fsspec packages that read each remote protocol, and the extra that installs them.
REMOTE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}
CLOUD_EXTRA = "pip install 'fv3-downscale[cloud]'"


def require_filesystem(url: str, store: str) -> None:
    """Raise :class:`DataError` naming ``store`` and the install command when the package that reads
    ``url``'s protocol (``s3://`` → s3fs, ``gs://`` → gcsfs, ``http(s)://`` → aiohttp) is missing."""
    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    package = REMOTE_PACKAGES.get(protocol)
    if package is not None and importlib.util.find_spec(package) is None:
        raise DataError(store, f"reading {protocol}:// stores needs the '{package}' package, which is not "
                        f"installed: {CLOUD_EXTRA}")


def open_store(ref: StoreRef) -> xr.Dataset:
    """Open ``ref`` lazily (dask, one block per stored chunk, times not decoded). netCDF by
    suffix, else Zarr. Every later read of its values that fails raises :class:`DataError` naming the
    store, the variable and the problem (:func:`data_catalog.read_guard.guarded`).

    Raises :class:`DataError` if the store is unreachable, not a dataset, holds no variables, or needs a
    filesystem package that is not installed.
    """
    url = ref.urlpath
    local = url.removeprefix("file://") if "://" not in url or url.startswith("file://") else None
    if local is not None and not Path(local).exists():
        raise DataError(ref.display, "store not found (no such file or directory)")
    require_filesystem(url, ref.display)
    options = None if local else ref.storage_options or None
    netcdf = url.endswith((".nc", ".nc4", ".h5"))
    try:
        if netcdf:
            ds = xr.open_dataset(local or url, engine="h5netcdf", chunks=None, cache=False, decode_times=False)
        else:
            ds = xr.open_zarr(local or url, storage_options=options, consolidated=ref.consolidated,
                              decode_times=False, chunks=None)
    except Exception as err:  # noqa: BLE001 - every backend raises its own type
        reason = ref.scrub(f"{type(err).__name__}: {err}")
        raise DataError(ref.display, f"cannot be opened ({reason})") from None
    if not ds.data_vars:
        raise DataError(ref.display, "store is empty (no data variables)")
    return guarded(ds, ref.display, ref.scrub, None if netcdf else zarr_presence(local or url, options))


def _decode_time(var: xr.DataArray, store: str) -> np.ndarray:
    """cftime datetimes rounded to the second (real FV3GFS times carry float noise)."""
    values = var.values
    if values.dtype.kind in "if":
        units = var.attrs.get("units") or var.encoding.get("units")
        calendar = (var.attrs.get("calendar") or var.encoding.get("calendar") or "standard").lower()
        if not units or " since " not in units:
            raise DataError(store, f"time has no CF units ('<unit> since <date>'), got {units!r}", TIME)
        try:
            dates = cftime.num2date(values, units, calendar, only_use_cftime_datetimes=True)
        except (ValueError, TypeError) as err:
            raise DataError(store, f"time cannot be decoded ({err})", TIME) from None
    elif values.dtype.kind == "M":
        dates = np.array([cftime.DatetimeProlepticGregorian(*t.timetuple()[:6]) for t in
                          var.to_index().to_pydatetime()])
    else:
        dates = values
    return np.array([_round_to_second(d) for d in np.atleast_1d(dates)], dtype=object).reshape(values.shape)


def _round_to_second(d: cftime.datetime) -> cftime.datetime:
    rounded = d.replace(microsecond=0)
    return rounded + dt.timedelta(seconds=1) if d.microsecond >= 500_000 else rounded


def _check_times(times: np.ndarray, store: str) -> None:
    if times.size < 2:
        return
    steps = np.array([(b - a).total_seconds() for a, b in zip(times[:-1], times[1:], strict=True)])
    if np.any(steps == 0):
        i = int(np.argmax(steps == 0))
        raise DataError(store, f"duplicate time {times[i + 1]} (positions {i} and {i + 1})", TIME)
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0))
        raise DataError(store, f"times are not sorted: {times[i + 1]} follows {times[i]} (position {i + 1})", TIME)


def _rename_dims(ds: xr.Dataset, store: str) -> xr.Dataset:
    renames: dict[str, str] = {}
    for target, aliases in _DIM_ALIASES.items():
        present = [a for a in aliases if a in ds.dims]
        if len(present) > 1:
            raise DataError(store, f"has several '{target}' dims {present}: select variables of one resolution")
        if present and present[0] != target:
            renames[present[0]] = target
    ds = ds.rename_dims(renames) if renames else ds
    # The 1-based index coordinates (grid_xt = 1..N although attrs say degrees) carry nothing.
    index_coords = [c for c in ds.coords if c in renames or c in _DIM_ALIASES or c in sum(_DIM_ALIASES.values(), ())]
    return ds.drop_vars(index_coords)


def _standard_tile(ds: xr.Dataset, store: str) -> xr.Dataset:
    if TILE not in ds.dims:
        raise DataError(store, f"has no '{TILE}' dimension (dims {tuple(ds.dims)}); expected 6 cube-sphere tiles")
    n = ds.sizes[TILE]
    if n != N_TILES:
        raise DataError(store, f"has {n} tiles along '{TILE}'; a cube sphere has {N_TILES}")
    if TILE in ds.coords:
        values = np.asarray(ds[TILE].values)
        if np.array_equal(values, np.arange(1, 7)):
            log.debug("store %s: tile coordinate 1..6 mapped to 0..5", store)
        elif not np.array_equal(values, np.arange(6)):
            raise DataError(store, f"tile coordinate {values.tolist()} is neither 0..5 nor 1..6", TILE)
    return ds.assign_coords({TILE: np.arange(N_TILES)})


def _standard_units(da: xr.DataArray, name: str, store: str) -> xr.DataArray:
    if not is_precipitation(name, da.attrs):
        return da
    units = da.attrs.get("units")
    scale = precipitation_scale(units)
    if scale is None:
        raise DataError(
            store,
            f"units {units!r} are not a precipitation rate (expected kg/m**2/s, kg/m^2/s, mm/day or mm/h)",
            name,
        )
    attrs = {**da.attrs, "units": "kg m-2 s-1"}
    if scale != 1.0:
        log.warning("store %s: variable %s converted from %s to kg m-2 s-1 (x %.6g)", store, name, units, scale)
        attrs["units_converted_from"] = units
        da = da * scale
    return da.assign_attrs(attrs)


def standardize(ds: xr.Dataset, store: str, variables: Sequence[str] | None = None) -> xr.Dataset:
    """Bring ``ds`` (as opened, undecoded times) into the internal form; lazy.

    Args:
        ds: a dataset as :func:`open_store` returns it, or any in-memory equivalent.
        store: display name used in errors (no credentials).
        variables: the variables to keep (all data variables if ``None``); each must exist.
    """
    if variables is None:
        variables = list(ds.data_vars)
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        have = ", ".join(sorted(map(str, ds.data_vars))) or "nothing"
        raise DataError(store, f"not found in the store (it holds: {have})", ", ".join(missing))
    ds = ds[list(variables)]
    ds = _rename_dims(ds, store)
    ds = _standard_tile(ds, store)
    if TIME in ds.dims:
        times = _decode_time(ds[TIME], store) if TIME in ds.variables else None
        if times is None:
            raise DataError(store, "has a time dimension without a time coordinate", TIME)
        _check_times(times, store)
        ds = ds.assign_coords({TIME: times})
    elif TIME in ds.coords:
        ds = ds.drop_vars(TIME)  # a scalar time stamp of a time-mean field
    out = {}
    for name in variables:
        da = _standard_units(ds[name], name, store)
        order = [d for d in _TARGET_ORDER if d in da.dims] + [d for d in da.dims if d not in _TARGET_ORDER]
        da = da.transpose(*order)
        if da.dtype != np.float32 and da.dtype.kind == "f":
            da = da.astype(np.float32)
        out[name] = da
    return xr.Dataset(out, attrs={"source_store": store})


def grid_variable_names(ds: xr.Dataset, n: int) -> dict[str, str]:
    """Map internal grid names (``lat``, ``area`` …) to the store's names for a C-``n`` grid.

    Accepts plain and ``_coarse`` names; where both exist, the one whose size matches ``n`` wins.
    """
    found: dict[str, str] = {}
    for name in GRID_VARIABLES:
        for candidate in (name, f"{name}_coarse"):
            if candidate in ds.variables:
                size = max(ds[candidate].shape[-2:])
                expected = n + 1 if name.endswith("b") else n
                if size == expected:
                    found[name] = candidate
                    break
    return found


def standardize_grid(ds: xr.Dataset, store: str, n: int) -> xr.Dataset:
    """``lat, lon, area (tile, y, x)`` and ``latb, lonb (tile, yb, xb)`` of a C-``n`` grid, in float64."""
    names = grid_variable_names(ds, n)
    missing = [v for v in GRID_VARIABLES if v not in names]
    if missing:
        raise DataError(store, f"no C{n} grid variable of this name (or with '_coarse')", ", ".join(missing))
    sub = ds[list(names.values())].rename({v: k for k, v in names.items() if v != k})
    sub = _standard_tile(_rename_dims(sub, store), store)
    order = {k: [d for d in _TARGET_ORDER if d in sub[k].dims] for k in GRID_VARIABLES}
    return xr.Dataset({k: sub[k].transpose(*order[k]).astype(np.float64) for k in GRID_VARIABLES})
