"""The diagnostics folder: what :func:`downscale.evaluation.evaluate.evaluate` writes and the report reads.

A diagnostics folder holds ``metrics.json`` (the scalars in xarray's ``to_dict`` layout, NaN as null, with the
:class:`~downscale.evaluation.score.CompareConfig` as the ``config`` attribute), ``maps.zarr`` (Zarr v3),
``curves.nc`` (netCDF) — :func:`write_comparison` — and ``evaluation.json`` (which store was scored, when,
with which factor and software version). :func:`read_diagnostics` reads it back.

Example::

    >>> write_comparison(compare(ds, CompareConfig(factor=8)), "diagnostics/")["metrics"]
    >>> read_diagnostics("diagnostics/").scalars.crps_fair
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from downscale.evaluation.score import Comparison

COMPARISON_FILES = ("metrics.json", "maps.zarr", "curves.nc")
EVALUATION_FILE = "evaluation.json"
DIAGNOSTIC_FILES = (*COMPARISON_FILES, EVALUATION_FILE)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_scalars_json(scalars: xr.Dataset, path: str | Path) -> Path:
    """Write the scalar metrics as JSON (xarray's ``to_dict`` layout; NaN → null); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(scalars.to_dict(data="list")), indent=1, allow_nan=False))
    return path


def _clean_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Attributes as str/int/float (others as JSON) and text variables as variable-length strings (object
    dtype: Zarr v3 has a specified encoding for those, not for fixed-width numpy unicode)."""
    ds = ds.copy()
    text = {k: v.astype(object) for k, v in ds.variables.items() if v.dtype.kind == "U"}
    ds = ds.assign_coords({k: v for k, v in text.items() if k in ds.coords})
    ds.attrs = {k: (v if isinstance(v, (str, int, float)) else json.dumps(_plain(v))) for k, v in ds.attrs.items()}
    for v in ds.variables.values():
        v.attrs = {k: (a if isinstance(a, (str, int, float)) else json.dumps(_plain(a))) for k, a in v.attrs.items()}
    return ds


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write maps or curves: netCDF (h5netcdf) if ``path`` ends in ``.nc``, else a Zarr v3 store."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _clean_attrs(ds)
    if path.suffix == ".nc":
        ds.to_netcdf(path, engine="h5netcdf")
    else:
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def write_comparison(result: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """``metrics.json`` (scalars + config), ``maps.zarr`` and ``curves.nc`` (:data:`COMPARISON_FILES`) in
    ``out_dir``.

    Example: ``write_comparison(result, "diagnostics/")["metrics"]``
    """
    out = Path(out_dir)
    scalars = result.scalars.assign_attrs(config=json.dumps(_plain(asdict(result.config))))
    metrics, maps, curves = (out / name for name in COMPARISON_FILES)
    return {"metrics": write_scalars_json(scalars, metrics), "maps": write_dataset(result.maps, maps),
            "curves": write_dataset(result.curves, curves)}


def is_complete(diagnostics_dir: str | Path) -> bool:
    """True if the folder holds every file a diagnostics folder has."""
    d = Path(diagnostics_dir)
    return all((d / name).exists() for name in DIAGNOSTIC_FILES)


@dataclass(frozen=True)
class Diagnostics:
    """A diagnostics folder read back: the Datasets of a :class:`~downscale.evaluation.score.Comparison`
    (``scalars`` with NaN where the JSON has null), the ``CompareConfig`` as a dict and ``evaluation.json``."""

    scalars: xr.Dataset
    maps: xr.Dataset
    curves: xr.Dataset
    config: dict
    evaluation: dict


def _scalars_from_json(doc: dict) -> xr.Dataset:
    """xarray's ``to_dict`` layout back to a Dataset, JSON null → NaN."""
    def values(v: dict) -> np.ndarray:
        data = np.asarray(v["data"], dtype=object)
        try:
            return np.where(data == None, np.nan, data).astype(np.float64)  # noqa: E711 (elementwise)
        except (TypeError, ValueError):
            return np.asarray(v["data"])
    coords = {k: (v["dims"], values(v), v.get("attrs", {})) for k, v in doc["coords"].items()}
    data_vars = {k: (v["dims"], values(v), v.get("attrs", {})) for k, v in doc["data_vars"].items()}
    return xr.Dataset(data_vars, coords=coords, attrs=doc.get("attrs", {}))


def read_diagnostics(diagnostics_dir: str | Path) -> Diagnostics:
    """Read a complete diagnostics folder; ``FileNotFoundError`` naming what is missing otherwise."""
    d = Path(diagnostics_dir)
    missing = [name for name in DIAGNOSTIC_FILES if not (d / name).exists()]
    if missing:
        raise FileNotFoundError(f"diagnostics folder {d} lacks {', '.join(missing)}: run `downscale evaluate` first")
    metrics, maps_path, curves_path = (d / name for name in COMPARISON_FILES)
    scalars = _scalars_from_json(json.loads(metrics.read_text()))
    config = json.loads(scalars.attrs.pop("config", "{}"))
    maps = xr.open_zarr(maps_path, consolidated=False).load()
    curves = xr.open_dataset(curves_path, engine="h5netcdf").load()
    curves.close()
    evaluation = json.loads((d / EVALUATION_FILE).read_text())
    return Diagnostics(scalars, maps, curves, config, evaluation)
