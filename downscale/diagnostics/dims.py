"""The axes the diagnostics reduce over: dimension names, the time step of a (cftime) time axis, and
dropping index coordinates so that arrays combine by position.

Every diagnostic takes its dimension names as parameters, so the same function runs on the inference
output (``PRATEsfc (member, time, tile, grid_yt, grid_xt)``, docs/inference.md, "The output store") and on the internal
form of ``data_catalog`` (``(time, tile, y, x)``). The defaults are the output names.

Example::

    >>> INTERNAL.spatial
    ('tile', 'y', 'x')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from downscale.output_names import COARSE_DIMS, FINE_DIMS

#: Spatial dims of the inference output, tile first and x last: (tile, y, x).
SPATIAL_DIMS: tuple[str, str, str] = FINE_DIMS
#: Spatial dims of the coarse fields in the inference output (the input ``PRATEsfc_coarse``, ``area_coarse``).
COARSE_SPATIAL_DIMS: tuple[str, str, str] = COARSE_DIMS
MEMBER_DIM = "member"
TIME_DIM = "time"


@dataclass(frozen=True)
class Dims:
    """Dimension names of one layout: ensemble member, time, and the cube's (tile, y, x)."""

    member: str = MEMBER_DIM
    time: str = TIME_DIM
    tile: str = "tile"
    y: str = "grid_yt"
    x: str = "grid_xt"

    @property
    def spatial(self) -> tuple[str, str, str]:
        """``(tile, y, x)``: the dims a cube-sphere field is laid out on."""
        return (self.tile, self.y, self.x)


#: The inference output layout (docs/inference.md) and the internal layout (data_catalog/schema.py).
OUTPUT = Dims()
INTERNAL = Dims(y="y", x="x")


def require_dims(da: xr.DataArray, dims: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a ``ValueError`` naming ``what`` if ``da`` lacks any of ``dims``."""
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ValueError(f"{what}: {da.name or 'array'!r} lacks dims {missing} (has {tuple(da.dims)})")


def time_step_seconds(time: xr.DataArray) -> float:
    """Sampling step of a regular time axis (cftime or numpy datetimes) in seconds; raises if the axis
    has fewer than 2 times or is not regular (to the second)."""
    if time.size < 2:
        raise ValueError(f"time axis {time.name!r}: need at least 2 times to know the sampling step")
    steps = np.diff(time.values)
    seconds = np.array([s.total_seconds() if hasattr(s, "total_seconds") else s / np.timedelta64(1, "s")
                        for s in steps], dtype=np.float64)
    if not np.all(np.abs(seconds - seconds[0]) < 1.0) or seconds[0] <= 0:
        raise ValueError(f"time axis {time.name!r} is not regularly increasing: steps from {seconds.min()} "
                         f"to {seconds.max()} s")
    return float(seconds[0])


def drop_coords_on(x: xr.DataArray, dims: tuple[str, ...] | list[str]) -> xr.DataArray:
    """``x`` without any coordinate that spans one of ``dims``, so that slices and arrays of different
    grids combine by position (e.g. ``grid_xt`` = 1..N index coordinates, 2-D ``lat``/``lon``)."""
    return x.drop_vars([c for c, v in x.coords.items() if any(d in v.dims for d in dims)])
