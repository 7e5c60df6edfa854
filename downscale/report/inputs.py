"""What the report reads from the inference output store: its grid corners and provenance attributes.
The diagnostics folder is read with :func:`downscale.evaluation.results.read_diagnostics`. The report is
reproducible from that folder plus the store's ``lonb, latb (tile, grid_y, grid_x)`` corners and global
attributes.

Example::

    >>> store = read_store_info("outputs.zarr")
    >>> store.lonb.shape                     # (6, n + 1, n + 1), degrees east
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from downscale.evaluation.evaluate import open_output_store


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
