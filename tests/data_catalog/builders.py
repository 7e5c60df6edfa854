"""Tiny stores in the real FV3GFS layouts, written to tmp_path for reader and validation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
import yaml

FMS_X = {"cartesian_axis": "X", "long_name": "T-cell longitude", "units": "degrees_E"}
FMS_Y = {"cartesian_axis": "Y", "long_name": "T-cell latitude", "units": "degrees_N"}
PRATE_ATTRS = {"units": "kg/m**2/s", "long_name": "bucket surface precipitation rate", "cell_methods": "time: point"}


def fortran_dataset(values: dict[str, np.ndarray], coarse: bool = False, hours: np.ndarray | None = None,
                    noise: float = 3.6e-9) -> xr.Dataset:
    """A Fortran-diagnostic dataset: ``(tile, time, grid_yt[_coarse], grid_xt[_coarse])``, Julian hours, no tile coord."""
    sfx = "_coarse" if coarse else ""
    first = next(iter(values.values()))
    _, nt, ny, nx = first.shape
    hours = np.arange(nt) * 3.0 + 3.0 if hours is None else hours
    coords = {
        "time": ("time", hours + noise, {"units": "hours since 2016-08-05", "calendar": "JULIAN",
                                          "calendar_type": "JULIAN", "cartesian_axis": "T"}),
        f"grid_yt{sfx}": (f"grid_yt{sfx}", np.arange(1.0, ny + 1), FMS_Y),
        f"grid_xt{sfx}": (f"grid_xt{sfx}", np.arange(1.0, nx + 1), FMS_X),
    }
    data = {k: (("tile", "time", f"grid_yt{sfx}", f"grid_xt{sfx}"), v.astype(np.float32),
                dict(PRATE_ATTRS) if "PRAT" in k else {"units": "K"}) for k, v in values.items()}
    return xr.Dataset(data, coords=coords)


def write(ds: xr.Dataset, path: Path) -> Path:
    """Decoded times must not be re-encoded: time stays the raw float hours it is."""
    ds.to_zarr(path, zarr_format=3, consolidated=True, mode="w")
    return path


def member_pair(root: Path, n: int = 4, factor: int = 2, nt: int = 6, seed: int = 0) -> dict[str, Path]:
    """A fine PRATEsfc store and a coarse PRATEsfc_coarse + TMPsfc_coarse store (block means, equal areas)."""
    rng = np.random.default_rng(seed)
    fine = rng.gamma(0.5, 2e-5, size=(6, nt, n * factor, n * factor)).astype(np.float32)
    coarse = fine.reshape(6, nt, n, factor, n, factor).mean(axis=(3, 5))
    tmp = 280 + rng.normal(size=coarse.shape)
    root.mkdir(parents=True, exist_ok=True)
    return {
        "fine": write(fortran_dataset({"PRATEsfc": fine}), root / "fine.zarr"),
        "coarse": write(fortran_dataset({"PRATEsfc_coarse": coarse, "TMPsfc_coarse": tmp}, coarse=True),
                        root / "coarse.zarr"),
    }


def catalog_file(root: Path, stores: dict[str, Path], n: int = 4, factor: int = 2, **extra) -> Path:
    doc = {
        "name": "test",
        "resolution": {"coarse": n, "fine": n * factor},
        "predictors": ["PRATEsfc_coarse", "TMPsfc_coarse"],
        "members": {"0001": {"fine": {"urlpath": str(stores["fine"])},
                             "coarse": {"urlpath": str(stores["coarse"])}}},
        **extra,
    }
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
