"""Consistency checks of a downscaled field: seams at tile edges, joins between sampling windows, and
conservation of the coarse input.

* Seams. With a one-cell halo from the neighbouring tiles (:func:`data_catalog.halo.halo_pad`, the
  cube's edge connectivity), the step across a tile edge is ``|f_edge − f_halo|``; the step just inside
  is ``|f_edge − f_next|`` between the same edge cell and its inward neighbour (same along-edge
  positions, so the same grid spacing to within the cube's smooth stretching). The seam ratio

      mean |f_edge − f_halo| / mean |f_edge − f_next|

  is ≈ 1 for a field without seams and ≫ 1 when tiles were generated independently (e.g. a per-tile
  offset). Every edge is seen from both of its tiles. A field that is constant over the two cells next
  to each edge (e.g. a coarse field repeated onto the fine grid) has no inner step: its ratio is NaN.
* Window joins. Inference samples clips of frames; at a join index j (the first frame of a new window)
  the step ``|f_j − f_{j−1}|`` crosses two windows. Join ratio = area-weighted mean step at joins / mean
  step inside windows, ≈ 1 without join artefacts (compare with the truth's ratio).
* Mass. Area-weighted block means (:func:`data_catalog.coarsen.coarse_grain`, SCHEMA.md §2) of each
  member against the coarse input C: ``relative_error = Σ A_c |cg(f) − C| / Σ A_c |C|`` and
  ``mass_bias = (Σ A_c cg(f) − Σ A_c C) / Σ A_c C`` (A_c = coarse cell area = block sum of fine area).

Example::

    >>> seam_statistics(ens)["seam_ratio"]                                     # 0-d, lazy
    >>> mass_consistency(ens, coarse, area, factor=8)["relative_error"]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from data_catalog.coarsen import block_sum, coarse_grain
from data_catalog.halo import halo_pad
from data_catalog.schema import X, Y
from downscale.diagnostics.dims import SPATIAL_DIMS, TIME_DIM, drop_coords_on, require_dims
from downscale.diagnostics.weights import weighted_mean

COARSE_SPATIAL_DIMS: tuple[str, str, str] = ("tile", "grid_yt_coarse", "grid_xt_coarse")
_SEAM_STATS = ("seam_sum", "seam_count", "inner_sum", "inner_count")


def _seam_sums(field: np.ndarray) -> np.ndarray:
    """(…, 6, n, n) → (…, 4): Σ|seam step|, their number, Σ|inner step|, their number (NaNs skipped)."""
    f = np.asarray(field, dtype=np.float64)
    halo = halo_pad(f, 1)                                 # (…, 6, n + 2, n + 2); halo[…, 1:-1, 1:-1] == f
    # per edge W, E, S, N: the edge cells, their neighbours across the edge, and their inward neighbours
    edge = (f[..., :, 0], f[..., :, -1], f[..., 0, :], f[..., -1, :])
    across = (halo[..., 1:-1, 0], halo[..., 1:-1, -1], halo[..., 0, 1:-1], halo[..., -1, 1:-1])
    inward = (f[..., :, 1], f[..., :, -2], f[..., 1, :], f[..., -2, :])
    seam = np.stack([np.abs(e - o) for e, o in zip(edge, across)], axis=-1)     # (…, 6, n, 4)
    step = np.stack([np.abs(e - i) for e, i in zip(edge, inward)], axis=-1)
    axes = (-3, -2, -1)
    return np.stack([np.nansum(seam, axis=axes), np.isfinite(seam).sum(axis=axes),
                     np.nansum(step, axis=axes), np.isfinite(step).sum(axis=axes)], axis=-1)


def seam_statistics(x: xr.DataArray, spatial_dims: tuple[str, str, str] = SPATIAL_DIMS) -> xr.Dataset:
    """Mean absolute step across tile edges and just inside them, and their ratio (module docstring),
    pooled over every other dim. Units: those of ``x`` (the ratio is dimensionless). Lazy on dask, with
    the (tile, y, x) dims gathered into one chunk.

    Example: ``seam_statistics(ens)["seam_ratio"]  # ≈ 1 without seams``
    """
    require_dims(x, list(spatial_dims), "seam_statistics")
    if x.sizes[spatial_dims[0]] != 6 or x.sizes[spatial_dims[1]] != x.sizes[spatial_dims[2]]:
        raise ValueError(f"seam_statistics: {x.name!r} must have 6 square tiles on {spatial_dims}, "
                         f"got sizes {[x.sizes[d] for d in spatial_dims]}")
    f = drop_coords_on(x, list(spatial_dims))
    if f.chunks is not None:
        f = f.chunk({d: -1 for d in spatial_dims})
    sums = xr.apply_ufunc(_seam_sums, f, input_core_dims=[list(spatial_dims)], output_core_dims=[["stat"]],
                          dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"output_sizes": {"stat": len(_SEAM_STATS)}})
    total = sums.sum([d for d in sums.dims if d != "stat"])
    seam = total.isel(stat=0) / total.isel(stat=1)
    inner = total.isel(stat=2) / total.isel(stat=3)
    units = x.attrs.get("units", "")
    return xr.Dataset({"seam_mean_abs_step": seam.assign_attrs(units=units),
                       "interior_mean_abs_step": inner.assign_attrs(units=units),
                       "seam_ratio": (seam / inner.where(inner > 0)).assign_attrs(units="1")})


def window_join_statistics(x: xr.DataArray, weights: xr.DataArray, joins: Sequence[int],
                           time_dim: str = TIME_DIM) -> xr.Dataset:
    """Area-weighted mean |f_t − f_{t−1}| at the window joins ``joins`` (0-based indices of the first
    frame of each new window, 1 ≤ j < n) and inside windows, and their ratio; pooled over all other dims.

    Example: ``window_join_statistics(ens, area, joins=range(5, n_time, 5))["join_ratio"]``
    """
    require_dims(x, [time_dim], "window_join_statistics")
    n = x.sizes[time_dim]
    joins = sorted({int(j) for j in joins})
    if not joins or joins[0] < 1 or joins[-1] >= n:
        raise ValueError(f"window joins must be non-empty indices in 1..{n - 1} of {time_dim!r}, got {joins}")
    f = drop_coords_on(x, [time_dim])
    step = abs(f.isel({time_dim: slice(1, None)}) - f.isel({time_dim: slice(None, -1)}))  # step i: frame i → i+1
    at_join = [j - 1 for j in joins]
    inside = [i for i in range(n - 1) if i not in set(at_join)]
    if not inside:
        raise ValueError("window_join_statistics: every step is a join; nothing inside windows to compare")
    join_mean = weighted_mean(step.isel({time_dim: at_join}), weights)
    inside_mean = weighted_mean(step.isel({time_dim: inside}), weights)
    units = x.attrs.get("units", "")
    return xr.Dataset({"join_mean_abs_step": join_mean.assign_attrs(units=units),
                       "inside_mean_abs_step": inside_mean.assign_attrs(units=units),
                       "join_ratio": (join_mean / inside_mean).assign_attrs(units="1")})


def mass_consistency(fine: xr.DataArray, coarse: xr.DataArray, area: xr.DataArray, factor: int,
                     spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                     coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS) -> xr.Dataset:
    """Coarse-grain ``fine`` (…, tile, y, x) by ``factor`` with the fine cell ``area`` (m²) and compare it
    with ``coarse`` (…, tile, y_c, x_c): ``relative_error`` and ``mass_bias`` (dimensionless, module
    docstring), pooled over every dim (members included). ``factor`` is given, never read off shapes.

    Example: ``mass_consistency(ens, ds.PRATEsfc_coarse, area, factor=8)["relative_error"]``
    """
    require_dims(fine, list(spatial_dims), "mass_consistency (fine)")
    require_dims(coarse, list(coarse_spatial_dims), "mass_consistency (coarse)")
    tile, ydim, xdim = spatial_dims
    ctile, cy, cx = coarse_spatial_dims
    for fine_d, coarse_d in ((ydim, cy), (xdim, cx)):
        if fine.sizes[fine_d] != factor * coarse.sizes[coarse_d]:
            raise ValueError(f"mass_consistency: fine {fine_d}={fine.sizes[fine_d]} is not factor {factor} × "
                             f"coarse {coarse_d}={coarse.sizes[coarse_d]}")
    to_internal = {ydim: Y, xdim: X}
    f = drop_coords_on(fine, [ydim, xdim]).rename(to_internal)
    a = drop_coords_on(area, [ydim, xdim]).rename(to_internal).astype(np.float64)
    back = {Y: cy, X: cx, **({tile: ctile} if tile != ctile else {})}
    grained = coarse_grain(f.astype(np.float64), a, factor).rename(back)
    coarse_area = block_sum(a, factor).rename(back)
    c = drop_coords_on(coarse, [cy, cx]).astype(np.float64)
    relative_error = weighted_mean(abs(grained - c), coarse_area) / weighted_mean(abs(c), coarse_area)
    mass_bias = weighted_mean(grained - c, coarse_area) / weighted_mean(c, coarse_area)
    return xr.Dataset({"relative_error": relative_error.assign_attrs(units="1"),
                       "mass_bias": mass_bias.assign_attrs(units="1")})
