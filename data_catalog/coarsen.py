"""Area-weighted block mean on the cube sphere (docs/cube-sphere.md, "Coarse-graining").

``coarse = Σ(area · field) / Σ(area)`` over each ``factor × factor`` block of fine cells; blocks never
cross a tile edge, so the operator works per tile and conserves the area integral exactly.
"""

from __future__ import annotations

import xarray as xr

from data_catalog.schema import X, Y


def _check_factor(sizes: dict, factor: int, name: str) -> None:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"coarse-graining factor must be a positive integer, got {factor!r}")
    for dim in (Y, X):
        if dim not in sizes:
            raise ValueError(f"{name}: no '{dim}' dimension to coarse-grain (dims {tuple(sizes)})")
        if sizes[dim] % factor:
            raise ValueError(
                f"{name}: size {sizes[dim]} of dim '{dim}' is not a multiple of the factor {factor}"
            )


def block_sum(da: xr.DataArray, factor: int) -> xr.DataArray:
    """Sum over ``factor × factor`` blocks of ``(…, y, x)``; lazy on dask arrays."""
    _check_factor(dict(da.sizes), factor, da.name or "array")
    return da.coarsen({Y: factor, X: factor}).sum()


def coarse_grain(field: xr.DataArray, area: xr.DataArray, factor: int) -> xr.DataArray:
    """Area-weighted block mean of ``field (…, tile, y, x)`` with fine cell ``area (tile, y, x)`` in m².

    Returns ``(…, tile, y / factor, x / factor)`` with the dtype and attributes of ``field``. Lazy when
    ``field`` is a dask array (one task per input chunk). The area integral is conserved:
    ``Σ coarse · coarse_area == Σ field · area`` with ``coarse_area = block_sum(area)``.
    """
    _check_factor(dict(field.sizes), factor, field.name or "field")
    weighted = block_sum(field * area, factor)
    coarse_area = block_sum(area, factor)
    out = (weighted / coarse_area).astype(field.dtype)
    out.attrs = dict(field.attrs)
    out.name = field.name
    return out
