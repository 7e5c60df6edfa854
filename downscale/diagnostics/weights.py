"""Area weights and regions on the cube sphere.

Every metric is area-weighted with the cube's cell ``area (tile, y, x)`` in m² (docs/cube-sphere.md: C48 cells
range 23.5k–53.3k km², a ratio of 2.3, so an unweighted mean over-counts the cube corners). A region is
the area weight with every cell outside it set to zero, so one code path serves the globe and any box:

    ⟨f⟩_R = Σ_{i ∈ R} A_i f_i / Σ_{i ∈ R} A_i

A :class:`Region` is a latitude band, optionally cut to a longitude box; the named regions that are scored
live in :mod:`downscale.evaluation.regions` (one definition each).

Example::

    >>> w = region_weights(grid.area, grid.lat, grid.lon, Region("box", 32.0, 42.0, 235.0, 246.0))
    >>> weighted_mean(precip, w, ("tile", "y", "x"))          # (time,) regional mean, lazy on dask
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from data_catalog.cubesphere import checked_cell_area


@dataclass(frozen=True)
class Region:
    """A latitude band (``abs_lat``: by |lat|) optionally cut to a longitude box; lon bounds on [0, 360),
    ``lon_min > lon_max`` wraps through 0°E. Bounds are inclusive below, exclusive above."""

    name: str
    lat_min: float = -90.0
    lat_max: float = 90.0
    lon_min: float = 0.0
    lon_max: float = 360.0
    abs_lat: bool = False

    def mask(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        """Boolean ``(tile, y, x)`` mask of the cells whose centre lies in the region."""
        la = np.abs(lat) if self.abs_lat else lat
        inside = (la >= self.lat_min) & ((la < self.lat_max) | (self.lat_max >= 90.0))
        lo = lon % 360.0
        if self.lon_min <= self.lon_max:
            inside &= (lo >= self.lon_min) & ((lo < self.lon_max) | (self.lon_max >= 360.0))
        else:
            inside &= (lo >= self.lon_min) | (lo < self.lon_max)
        return inside.rename(self.name)


def check_area(area: xr.DataArray) -> xr.DataArray:
    """``area`` as float64, loaded (a static field is small), after checking it is finite and positive
    (:func:`data_catalog.cubesphere.checked_cell_area`)."""
    return checked_cell_area(area, f"cell area {area.name!r}")


def region_weights(area: xr.DataArray, lat: xr.DataArray, lon: xr.DataArray, region: Region) -> xr.DataArray:
    """Area weights ``(tile, y, x)`` in m², zero outside ``region``; raises if the region holds no cell.

    Example: ``region_weights(area, lat, lon, REGIONS["himalayas"])``
    """
    w = check_area(area).where(region.mask(lat.load(), lon.load()), 0.0)
    if not float(w.sum()) > 0:
        raise ValueError(f"region {region.name!r} contains no cell centre of this grid")
    return w.rename(f"area_{region.name}")


def regional_weights(area: xr.DataArray, lat: xr.DataArray, lon: xr.DataArray,
                     regions: Iterable[Region]) -> xr.DataArray:
    """:func:`region_weights` of several regions stacked along a new ``region`` dim: ``(region, tile, y, x)``.

    Example: ``weighted_mean(truth, regional_weights(area, lat, lon, REGIONS.values()))  # (region,)``
    """
    regs = list(regions)
    stacked = xr.concat([region_weights(area, lat, lon, r) for r in regs], dim="region")
    return stacked.assign_coords(region=[r.name for r in regs]).rename("area_weights")


def weighted_mean(x: xr.DataArray, weights: xr.DataArray, dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted mean of ``x`` over ``dims`` (default: all dims of ``x``), lazy on dask:

        Σ w·x / Σ w·[x is not NaN]

    ``weights`` spans a subset of ``x``'s dims (typically ``(tile, y, x)``, or ``(region, tile, y, x)``
    to get one mean per region); along the other reduced dims every element counts equally. NaNs in
    ``x`` are skipped (their weight leaves the denominator). The spatial contraction is one ``xr.dot``
    (einsum), so stacked regional weights cost little more than one region. Units: those of ``x``.

    Example: ``weighted_mean(truth, area, ["tile", "grid_yt", "grid_xt"])  # (time,)``
    """
    dims = _check_dims(x, dims, "weighted_mean")
    return _weighted_total(x.fillna(0.0), weights, dims) / _weighted_total(x.notnull(), weights, dims)


def weighted_sum(x: xr.DataArray, weights: xr.DataArray, dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Σ weights · x over ``dims`` (default: all of ``x``'s dims), NaNs counted as 0; lazy on dask."""
    dims = _check_dims(x, dims, "weighted_sum")
    return _weighted_total(x.fillna(0.0), weights, dims)


def _weighted_total(x: xr.DataArray, weights: xr.DataArray, dims: list[Hashable]) -> xr.DataArray:
    """Σ over ``dims`` of weights · x: an einsum over the weighted dims, a plain sum over the others."""
    contracted = [d for d in dims if d in weights.dims]
    rest = [d for d in dims if d not in weights.dims]
    total = xr.dot(x, weights, dim=contracted) if contracted else x * weights
    return total.sum(rest) if rest else total


def _check_dims(x: xr.DataArray, dims: Sequence[Hashable] | None, what: str) -> list[Hashable]:
    dims = list(x.dims) if dims is None else list(dims)
    missing = [d for d in dims if d not in x.dims]
    if missing:
        raise ValueError(f"{what}: {x.name!r} has no dims {missing} (has {tuple(x.dims)})")
    return dims
