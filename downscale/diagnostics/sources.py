"""The sources a comparison scores, read from an inference output store (docs/inference.md, "The output store").

An output store holds the ensemble ``PRATEsfc (member, time, tile, grid_yt, grid_xt)``, possibly further
ensembles on the same dims (``PRATEsfc_ensemble_raw``: before the mass correction, ``PRATEsfc_ensemble_qm``:
quantile-mapped members; scored as ensembles, never as baselines), deterministic baselines beside it
(``PRATEsfc_bilinear``, ``PRATEsfc_deterministic``, ``PRATEsfc_qm`` … on ``(time, tile, grid_yt, grid_xt)``),
the truth ``PRATEsfc_truth`` and the coarse input ``PRATEsfc_coarse (time, tile, grid_yt_coarse, grid_xt_coarse)``,
with ``lat, lon, area`` on the fine grid.
:func:`gather_sources` returns each as a :class:`Source`; the coarse input is repeated onto the fine
grid (nearest neighbour: each fine cell takes its coarse cell's value, which keeps block means exact).

Example::

    >>> sources, grid = gather_sources(xr.open_zarr("outputs.zarr"), factor=8)
    >>> [s.name for s in sources]
    ['ensemble', 'ensemble_raw', 'bilinear', 'deterministic', 'qm', 'coarse', 'truth']
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as dsa
import numpy as np
import xarray as xr

from data_catalog.schema import PRECIPITATION
from downscale.diagnostics.dims import COARSE_SPATIAL_DIMS, OUTPUT, Dims, drop_coords_on
from downscale.output_names import COARSE, TRUTH


@dataclass(frozen=True)
class Source:
    """One thing to score: ``data`` on the fine grid, with a member dim if ``ensemble``; ``kind`` is
    ``ensemble`` (the main one, named ``ensemble``, or an extra one such as ``ensemble_raw``), ``baseline``,
    ``coarse`` or ``truth``."""

    name: str
    data: xr.DataArray
    kind: str

    @property
    def ensemble(self) -> bool:
        return self.kind == "ensemble"


@dataclass(frozen=True)
class Grid:
    """Static fields of the fine grid, loaded: ``area`` (m²), ``lat``, ``lon`` (degrees), on (tile, y, x)."""

    area: xr.DataArray
    lat: xr.DataArray
    lon: xr.DataArray


def upsample_nearest(coarse: xr.DataArray, factor: int, dims: Dims = OUTPUT,
                     coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS) -> xr.DataArray:
    """Repeat each coarse cell ``factor × factor`` times: ``(…, tile, y_c, x_c)`` → ``(…, tile, y, x)``
    with the fine dim names of ``dims``; lazy on dask.

    Example: ``upsample_nearest(ds.PRATEsfc_coarse, 8)  # (time, tile, grid_yt, grid_xt)``
    """
    _, cy, cx = coarse_spatial_dims
    c = drop_coords_on(coarse, [cy, cx])
    data = c.data
    repeat = dsa.repeat if isinstance(data, dsa.Array) else np.repeat
    for dim in (cy, cx):
        data = repeat(data, factor, axis=c.dims.index(dim))
    renamed = [dims.y if d == cy else dims.x if d == cx else d for d in c.dims]
    return xr.DataArray(data, dims=renamed, coords={k: v for k, v in c.coords.items()},
                        name=coarse.name, attrs=dict(coarse.attrs))


def _get(ds: xr.Dataset, name: str, what: str) -> xr.DataArray:
    if name not in ds.variables:
        raise ValueError(f"output store: no {what} variable {name!r} (variables: {sorted(ds.variables)})")
    return ds[name]


def read_grid(ds: xr.Dataset, dims: Dims = OUTPUT) -> Grid:
    """``area``, ``lat``, ``lon`` of the fine grid, loaded, without coordinates on y/x."""
    fields = []
    for name in ("area", "lat", "lon"):
        v = _get(ds, name, "grid")
        missing = [d for d in dims.spatial if d not in v.dims]
        if missing:
            raise ValueError(f"output store: grid variable {name!r} lacks dims {missing} (has {v.dims})")
        fields.append(drop_coords_on(v.reset_coords(drop=True), [dims.y, dims.x]).transpose(*dims.spatial).load())
    return Grid(*fields)


def _fine(v: xr.DataArray, dims: Dims) -> xr.DataArray:
    return drop_coords_on(v.reset_coords(drop=True), [dims.y, dims.x])


def gather_sources(ds: xr.Dataset, factor: int, variable: str = PRECIPITATION, truth: str = TRUTH,
                   coarse: str | None = COARSE, baselines: tuple[str, ...] | None = None,
                   dims: Dims = OUTPUT,
                   coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS,
                   ensembles: tuple[str, ...] | None = None) -> tuple[list[Source], Grid]:
    """The ensemble, the extra ensembles, each baseline, the upsampled coarse input and the truth of an
    output store, in that order.

    ``baselines=None`` takes every ``{variable}_*`` variable on the deterministic fine dims other than
    the truth and coarse input; ``ensembles=None`` every ``{variable}_*`` variable on the ensemble's dims
    (kind ``ensemble``, e.g. ``ensemble_raw``). A source's name drops the ``{variable}_`` prefix. Nothing is
    loaded except the grid.

    Example: ``gather_sources(xr.open_zarr("outputs.zarr"), factor=8)``
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer (the fine/coarse ratio), got {factor!r}")
    fine_dims = (dims.time, *dims.spatial)
    ens = _fine(_get(ds, variable, "ensemble"), dims)
    if set(ens.dims) != {dims.member, *fine_dims}:
        raise ValueError(f"output store: ensemble {variable!r} has dims {ens.dims}, expected "
                         f"{(dims.member, *fine_dims)}")
    sources = [Source("ensemble", ens.transpose(dims.member, *fine_dims), "ensemble")]
    if ensembles is None:
        ensembles = tuple(sorted(k for k, v in ds.data_vars.items() if k.startswith(f"{variable}_")
                                 and set(v.dims) == {dims.member, *fine_dims}))
    for name in ensembles:
        e = _fine(_get(ds, name, "ensemble"), dims)
        if set(e.dims) != {dims.member, *fine_dims}:
            raise ValueError(f"output store: ensemble {name!r} has dims {e.dims}, expected {(dims.member, *fine_dims)}")
        sources.append(Source(name.removeprefix(f"{variable}_"), e.transpose(dims.member, *fine_dims), "ensemble"))
    if baselines is None:
        baselines = tuple(sorted(
            k for k, v in ds.data_vars.items()
            if k.startswith(f"{variable}_") and k not in (truth, coarse) and set(v.dims) == set(fine_dims)))
    for name in baselines:
        b = _fine(_get(ds, name, "baseline"), dims)
        if set(b.dims) != set(fine_dims):
            raise ValueError(f"output store: baseline {name!r} has dims {b.dims}, expected {fine_dims}")
        sources.append(Source(name.removeprefix(f"{variable}_"), b.transpose(*fine_dims), "baseline"))
    if coarse is not None and coarse in ds.variables:
        c = _get(ds, coarse, "coarse input").reset_coords(drop=True)
        expected = {dims.time, *coarse_spatial_dims}
        if set(c.dims) != expected:
            raise ValueError(f"output store: coarse input {coarse!r} has dims {c.dims}, expected {sorted(expected)}")
        up = upsample_nearest(c.transpose(dims.time, *coarse_spatial_dims), factor, dims, coarse_spatial_dims)
        if up.sizes[dims.y] != ens.sizes[dims.y] or up.sizes[dims.x] != ens.sizes[dims.x]:
            raise ValueError(f"output store: coarse input {coarse!r} × factor {factor} gives "
                             f"{up.sizes[dims.y]}×{up.sizes[dims.x]} cells per tile, the fine grid has "
                             f"{ens.sizes[dims.y]}×{ens.sizes[dims.x]}")
        sources.append(Source("coarse", up, "coarse"))
    y = _fine(_get(ds, truth, "truth"), dims)
    if set(y.dims) != set(fine_dims):
        raise ValueError(f"output store: truth {truth!r} has dims {y.dims}, expected {fine_dims}")
    sources.append(Source("truth", y.transpose(*fine_dims), "truth"))
    return sources, read_grid(ds, dims)


def coarse_input(ds: xr.Dataset, coarse: str | None) -> xr.DataArray | None:
    """The coarse input as stored (not upsampled), or None if the store has none."""
    if coarse is None or coarse not in ds.variables:
        return None
    return ds[coarse].reset_coords(drop=True)
