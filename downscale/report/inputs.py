"""What the report reads: the inference output store (its grid corners and provenance attributes) and a
diagnostics folder written by :func:`downscale.report.evaluate.evaluate`.

A diagnostics folder holds ``metrics.json`` (scalars + the ``CompareConfig`` as the ``config`` attribute),
``maps.zarr``, ``curves.nc`` (:func:`downscale.diagnostics.compare.write_comparison`) and
``evaluation.json`` (which store was scored, when, with which factor and software version). The report is
reproducible from that folder plus the store's ``lonb, latb (tile, grid_y, grid_x)`` corners and global
attributes.

Example::

    >>> diags = read_diagnostics("diagnostics/")
    >>> store = read_store_info("outputs.zarr")
    >>> store.lonb.shape                     # (6, n + 1, n + 1), degrees east
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from downscale.inference.store import COMPLETE, STATUS

COMPARISON_FILES = ("metrics.json", "maps.zarr", "curves.nc")
EVALUATION_FILE = "evaluation.json"
DIAGNOSTIC_FILES = (*COMPARISON_FILES, EVALUATION_FILE)


def _is_url(path: str | Path) -> bool:
    return "://" in str(path)


def open_output_store(path: str | Path) -> xr.Dataset:
    """Open an output store lazily with ``xr.open_zarr`` (consolidated metadata if it has it).

    Raises ``FileNotFoundError`` naming the store if a local path does not exist, and ``ValueError`` for a
    store that ``downscale generate`` has not finished (its unwritten frames are NaN, not results).
    """
    if not _is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"output store {path} not found")
    with warnings.catch_warnings():     # a store without consolidated metadata opens all the same
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            ds = xr.open_zarr(path)
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"output store {path} is not a readable Zarr store: {err}") from err
    status = ds.attrs.get(STATUS)
    if status is not None and status != COMPLETE:
        raise ValueError(f"output store {path} is {status}: finish it first (rerun the same `downscale generate`, "
                         f"which writes only the missing work items)")
    return ds


def is_complete(diagnostics_dir: str | Path) -> bool:
    """True if the folder holds every file a diagnostics folder has."""
    d = Path(diagnostics_dir)
    return all((d / name).exists() for name in DIAGNOSTIC_FILES)


@dataclass(frozen=True)
class Diagnostics:
    """A diagnostics folder read back: the Datasets of a :class:`~downscale.diagnostics.compare.Comparison`
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
    doc = json.loads((d / "metrics.json").read_text())
    scalars = _scalars_from_json(doc)
    config = json.loads(scalars.attrs.pop("config", "{}"))
    maps = xr.open_zarr(d / "maps.zarr", consolidated=False).load()
    curves = xr.open_dataset(d / "curves.nc", engine="h5netcdf").load()
    curves.close()
    evaluation = json.loads((d / EVALUATION_FILE).read_text())
    return Diagnostics(scalars, maps, curves, config, evaluation)


@dataclass(frozen=True)
class StoreInfo:
    """The parts of an output store the report draws with: cell corners ``lonb, latb (6, n + 1, n + 1)`` in
    degrees and the global attributes (provenance)."""

    path: str
    attrs: dict
    lonb: np.ndarray
    latb: np.ndarray


def read_store_info(output_store: str | Path, tile_dim: str = "tile") -> StoreInfo:
    """Corners and global attributes of an output store; ``ValueError`` naming the store if the corners are
    missing or not ``(tile, n + 1, n + 1)``."""
    ds = open_output_store(output_store)
    corners = []
    for name in ("lonb", "latb"):
        if name not in ds.variables:
            raise ValueError(f"output store {output_store}: no cell-corner variable {name!r} "
                             f"(tile, grid_y, grid_x); the report's maps are drawn from the corners")
        v = ds[name]
        if tile_dim not in v.dims or v.ndim != 3:
            raise ValueError(f"output store {output_store}: {name!r} has dims {v.dims}, expected "
                             f"({tile_dim}, grid_y, grid_x)")
        corners.append(np.asarray(v.transpose(tile_dim, ...).values, dtype=np.float64))
    if corners[0].shape != corners[1].shape or corners[0].shape[1] != corners[0].shape[2]:
        raise ValueError(f"output store {output_store}: corner shapes {corners[0].shape} / {corners[1].shape} "
                         "are not (6, n + 1, n + 1)")
    return StoreInfo(str(output_store), dict(ds.attrs), corners[0], corners[1])
