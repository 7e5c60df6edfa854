"""A catalog whose member stores grow: the first frames of a member now, the rest appended later — how
incremental downscaling is exercised (tests, ``bench/bench_incremental.py``) without a running model.

    >>> growing = GrowingInput(Path("data/catalog.yaml"), Path("/tmp/g"), "0003", frames=60)
    >>> growing.catalog          # a catalog naming the copies; downscale it, then
    >>> growing.append()         # the copies gain the member's remaining frames
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr
import yaml

from data_catalog.zarr_metadata import consolidated_v3


def _plain(ds: xr.Dataset) -> xr.Dataset:
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def absolute_catalog(catalog: Path) -> dict:
    """The catalog document with every ``urlpath`` made absolute (so the copy can live elsewhere)."""
    doc = yaml.safe_load(catalog.read_text())
    for ref in [doc["grid"]["coarse"], doc["grid"]["fine"], doc["static"],
                *[r for m in doc["members"].values() for r in (m["coarse"], m["fine"])]]:
        ref["urlpath"] = str((catalog.parent / ref["urlpath"]).resolve())
    return doc


class GrowingInput:
    """Member ``member`` of ``catalog`` copied into ``folder`` with only its first ``frames`` frames;
    :meth:`append` adds the rest (up to ``total`` frames; default all) to the stores, as a running model
    (or a daily transfer) would."""

    def __init__(self, catalog: Path, folder: Path, member: str, frames: int, total: int | None = None) -> None:
        doc = absolute_catalog(catalog)
        self.full: dict[str, tuple[xr.Dataset, Path]] = {}
        for role in ("coarse", "fine"):
            ref = doc["members"][member][role]
            data = xr.open_zarr(ref["urlpath"], decode_times=False).isel(time=slice(0, total)).load()
            path = folder / f"growing-{role}.zarr"
            with consolidated_v3():
                _plain(data.isel(time=slice(0, frames))).to_zarr(path, mode="w", zarr_format=3, consolidated=True)
            ref["urlpath"] = str(path.resolve())   # the catalog resolves relative paths against its folder
            self.full[role] = (data, path)
        self.frames = frames
        self.catalog = folder / "growing-catalog.yaml"
        self.catalog.write_text(yaml.safe_dump(doc))

    @property
    def total(self) -> int:
        return self.full["coarse"][0].sizes["time"]

    def append(self, frames: int | None = None) -> None:
        """Append the remaining frames (up to ``frames`` in all; default every one) to the coarse and fine stores."""
        end = self.total if frames is None else min(frames, self.total)
        for data, path in self.full.values():
            with consolidated_v3():
                _plain(data.isel(time=slice(self.frames, end))).to_zarr(path, append_dim="time", consolidated=True)
        self.frames = end
