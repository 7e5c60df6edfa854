"""Consistency checks of a downscaled field: seams at tile edges, joins between sampling windows, and
conservation of the coarse input.

* Seams and coarse-cell imprint, compared like with like. With ``f`` fine cells per coarse cell
  (``factor``), a tile edge is also a coarse-cell edge, so its jumps are compared with jumps across
  other coarse-cell edges, and those with jumps in the middle of coarse cells. Four kinds of
  rook-neighbour pairs, each in both grid directions, on every tile and frame (``n`` cells per tile
  edge, ``n_c = n / f`` coarse cells per tile edge, ``j`` the fine index along the pair's direction):

  - tile edge: an edge cell and its neighbour on the next tile (one-cell halo from
    :func:`data_catalog.halo.halo_pad`, the cube's edge connectivity); the E and N edges of the six
    tiles are the cube's 12 edges exactly once, so each of the 12 n pairs counts once;
  - near-edge coarse-cell edge: the first interior coarse-cell edge parallel to each tile edge,
    ``j = (f − 1, f)`` and ``(n − f − 1, n − f)``, at every along-edge position: every tile edge is
    bracketed by one such line on each of its two tiles (24 n pairs);
  - coarse-cell edge: ``j = (m f − 1, m f)``, m = 1 … n_c − 1, all interior coarse-cell edges;
  - mid-cell: ``j = (m f + ⌊f/2⌋ − 1, m f + ⌊f/2⌋)``, m = 0 … n_c − 1, the pair at the middle of each
    coarse cell, weighted ½ for the first and last coarse cell of a line (so the mid-cell pairs sit,
    on average, where the coarse-cell edges do); none when f = 1.

  With J(kind) = (weighted) mean |x_a − x_b| over the pairs of that kind (units of x):

      seam_ratio     = J(tile edge) / J(near-edge coarse-cell edge)
      coarse_imprint = J(coarse-cell edge) / J(mid-cell)

  A per-tile offset raises only the seam ratio, a per-coarse-block offset (a repeated or blocky coarse
  field, a per-block multiplicative correction) only the imprint. Both are 1 in expectation for white
  noise. The cube's geometry moves a smooth field's seam ratio below 1 (grid lines kink and cells are
  narrowest at tile edges: 0.69–0.91 for smooth fields at C48–C96 with f = 2–8, lower for larger f/n);
  its imprint stays within 3 % of 1. So the truth's own value is the reference: compare reports
  ``*_vs_truth`` = source ÷ truth. With f = 1 (the default) the seam ratio is the tile-edge jump over
  the jump one cell in, and the imprint is NaN. NaN where a kind has no pair (f = n) or a mean jump of 0
  (e.g. the imprint of a coarse field repeated onto the fine grid: no mid-cell jump).
* Window joins. Inference samples clips of frames; at a join index j (the first frame of a new window)
  the step ``|f_j − f_{j−1}|`` crosses two windows. Join ratio = area-weighted mean step at joins / mean
  step inside windows, ≈ 1 without join artefacts (compare with the truth's ratio).
* Mass. Area-weighted block means (:func:`data_catalog.coarsen.coarse_grain`, docs/cube-sphere.md, "Coarse-graining") of each
  member against the coarse input C: ``relative_error = Σ A_c |cg(f) − C| / Σ A_c |C|`` and
  ``mass_bias = (Σ A_c cg(f) − Σ A_c C) / Σ A_c C`` (A_c = coarse cell area = block sum of fine area).

Example::

    >>> seam_statistics(ens, factor=8)[["seam_ratio", "coarse_imprint"]]     # 0-d each, lazy
    >>> mass_consistency(ens, coarse, area, factor=8)["relative_error"]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from data_catalog.coarsen import block_sum, coarse_grain
from data_catalog.halo import halo_pad
from data_catalog.schema import X, Y
from downscale.diagnostics.dims import COARSE_SPATIAL_DIMS, SPATIAL_DIMS, TIME_DIM, drop_coords_on, require_dims
from downscale.diagnostics.weights import weighted_mean

_SEAM_STATS = ("tile_edge_sum", "tile_edge_count", "near_edge_sum", "near_edge_count", "coarse_edge_sum",
               "coarse_edge_count", "mid_cell_sum", "mid_cell_weight")


def _pair_index(n: int, factor: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each interior kind, the fine indices (a, b = a + 1) of its pairs along one direction and
    their weights (module docstring)."""
    n_c = n // factor
    near = np.array([factor - 1, n - factor - 1] if n_c >= 2 else [], dtype=np.int64)
    edge = np.arange(1, n_c, dtype=np.int64) * factor - 1
    mid = np.arange(n_c, dtype=np.int64) * factor + factor // 2 - 1 if factor > 1 else np.zeros(0, np.int64)
    mid_w = np.ones(mid.size)
    mid_w[[0, -1] if mid.size else []] = 0.5
    return {"near": (near, near + 1, np.ones(near.size)), "edge": (edge, edge + 1, np.ones(edge.size)),
            "mid": (mid, mid + 1, mid_w)}


def _weighted_jumps(f: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ w |jump| and Σ w over the finite jumps between fine lines a and b = a + 1, both directions:
    (…, 6, n, n) → (…,) each."""
    jx = np.abs(f[..., :, a] - f[..., :, b])                     # (…, 6, n, k): pairs along x
    jy = np.abs(f[..., a, :] - f[..., b, :])                     # (…, 6, k, n): pairs along y
    total = np.nansum(jx * w, axis=(-3, -2, -1)) + np.nansum(jy * w[:, None], axis=(-3, -2, -1))
    weight = (np.isfinite(jx) * w).sum(axis=(-3, -2, -1)) + (np.isfinite(jy) * w[:, None]).sum(axis=(-3, -2, -1))
    return total, weight


def _seam_sums(field: np.ndarray, factor: int) -> np.ndarray:
    """(…, 6, n, n) → (…, 8): Σ|jump| and the number (weight) of jumps across tile edges, near-edge
    coarse-cell edges, all interior coarse-cell edges and mid-cell pairs (module docstring; NaNs skipped)."""
    f = np.asarray(field, dtype=np.float64)
    halo = halo_pad(f, 1)                                 # (…, 6, n + 2, n + 2); halo[…, 1:-1, 1:-1] == f
    # E and N edges of every tile: each of the cube's 12 edges once
    tile = [np.abs(f[..., :, -1] - halo[..., 1:-1, -1]), np.abs(f[..., -1, :] - halo[..., -1, 1:-1])]
    out = [sum(np.nansum(t, axis=(-2, -1)) for t in tile), sum(np.isfinite(t).sum(axis=(-2, -1)) for t in tile)]
    for a, b, w in _pair_index(f.shape[-1], factor).values():
        out.extend(_weighted_jumps(f, a, b, w))
    return np.stack(out, axis=-1)


def seam_statistics(x: xr.DataArray, spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                    factor: int = 1) -> xr.Dataset:
    """Mean |jump| across tile edges, near-edge and all interior coarse-cell edges and mid-cell pairs of
    ``x``, and ``seam_ratio`` and ``coarse_imprint`` (module docstring), pooled over every other dim. ``factor`` =
    fine cells per coarse cell (must divide the tile size). Units: those of ``x`` (the ratios are
    dimensionless). Lazy on dask, with the (tile, y, x) dims gathered into one chunk.

    Example: ``seam_statistics(ens, factor=8)["seam_ratio"]  # ≈ 1 without seams``
    """
    require_dims(x, list(spatial_dims), "seam_statistics")
    n = x.sizes[spatial_dims[2]]
    if x.sizes[spatial_dims[0]] != 6 or x.sizes[spatial_dims[1]] != n:
        raise ValueError(f"seam_statistics: {x.name!r} must have 6 square tiles on {spatial_dims}, "
                         f"got sizes {[x.sizes[d] for d in spatial_dims]}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1 or n % factor:
        raise ValueError(f"seam_statistics: factor must be a positive integer dividing the tile size {n}, "
                         f"got {factor!r}")
    f = drop_coords_on(x, list(spatial_dims))
    if f.chunks is not None:
        f = f.chunk({d: -1 for d in spatial_dims})
    sums = xr.apply_ufunc(_seam_sums, f, kwargs={"factor": int(factor)}, input_core_dims=[list(spatial_dims)],
                          output_core_dims=[["stat"]], dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"output_sizes": {"stat": len(_SEAM_STATS)}})
    total = sums.sum([d for d in sums.dims if d != "stat"])
    seam, near, edge, mid = (total.isel(stat=2 * k) / total.isel(stat=2 * k + 1) for k in range(4))
    units = x.attrs.get("units", "")
    return xr.Dataset(
        {"seam_mean_abs_step": seam.assign_attrs(units=units, long_name="mean |jump| across tile edges"),
         "interior_mean_abs_step": near.assign_attrs(
             units=units, long_name=f"mean |jump| across the coarse-cell edges {factor} cells in from tile edges"),
         "coarse_edge_mean_abs_step": edge.assign_attrs(units=units,
                                                        long_name="mean |jump| across interior coarse-cell edges"),
         "mid_cell_mean_abs_step": mid.assign_attrs(units=units, long_name="mean |jump| in the middle of coarse cells"),
         "seam_ratio": (seam / near.where(near > 0)).assign_attrs(units="1"),
         "coarse_imprint": (edge / mid.where(mid > 0)).assign_attrs(units="1")},
        attrs={"factor": int(factor)})


def check_window_joins(joins: Sequence[int], n: int, time_dim: str = TIME_DIM) -> list[int]:
    """``joins`` sorted and unique, checked against a record of ``n`` frames: non-empty, each in 1 … n − 1, and
    leaving at least one step inside a window. Raises ValueError otherwise."""
    joins = sorted({int(j) for j in joins})
    if not joins or joins[0] < 1 or joins[-1] >= n:
        raise ValueError(f"window joins must be non-empty indices in 1..{n - 1} of {time_dim!r}, got {joins}")
    if len(joins) >= n - 1:
        raise ValueError("window_join_statistics: every step is a join; nothing inside windows to compare")
    return joins


def window_join_steps(x: xr.DataArray, weights: xr.DataArray, joins: Sequence[int], offset: int = 0,
                      first: int = 1, time_dim: str = TIME_DIM) -> dict[str, tuple[xr.DataArray | None, int]]:
    """Area-weighted mean |f_t − f_{t−1}| of the steps arriving at a window join (``"join"``) and at every other
    frame (``"inside"``), each with its number of steps (mean None for none), pooled over all other dims.
    Frame i of ``x`` is the record's frame ``offset + i``; only steps arriving at record frames ≥ ``first``
    count, so that consecutive blocks of a record (each with the last frame of the one before, ``offset =
    first − 1``) add up to the whole record.

    Example: ``window_join_steps(block, area, joins, offset=start - 1, first=start)["join"]``
    """
    f = drop_coords_on(x, [time_dim])
    step = abs(f.isel({time_dim: slice(1, None)}) - f.isel({time_dim: slice(None, -1)}))  # step i: frame i → i+1
    arrives = offset + 1 + np.arange(step.sizes[time_dim])
    at_join = np.isin(arrives, list(joins))
    out = {}
    for name, pick in (("join", at_join), ("inside", ~at_join)):
        index = np.flatnonzero(pick & (arrives >= first))
        out[name] = (weighted_mean(step.isel({time_dim: index}), weights) if index.size else None, int(index.size))
    return out


def window_join_statistics(x: xr.DataArray, weights: xr.DataArray, joins: Sequence[int],
                           time_dim: str = TIME_DIM) -> xr.Dataset:
    """Area-weighted mean |f_t − f_{t−1}| at the window joins ``joins`` (0-based indices of the first
    frame of each new window, 1 ≤ j < n) and inside windows, and their ratio; pooled over all other dims.

    Example: ``window_join_statistics(ens, area, joins=range(5, n_time, 5))["join_ratio"]``
    """
    require_dims(x, [time_dim], "window_join_statistics")
    steps = window_join_steps(x, weights, check_window_joins(joins, x.sizes[time_dim], time_dim), time_dim=time_dim)
    join_mean, inside_mean = steps["join"][0], steps["inside"][0]
    units = x.attrs.get("units", "")
    return xr.Dataset({"join_mean_abs_step": join_mean.assign_attrs(units=units),
                       "inside_mean_abs_step": inside_mean.assign_attrs(units=units),
                       "join_ratio": (join_mean / inside_mean).assign_attrs(units="1")})


def on_coarse_blocks(fine: xr.DataArray, area: xr.DataArray, factor: int,
                     spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                     coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS,
                     ) -> tuple[xr.DataArray, xr.DataArray]:
    """Per ``factor × factor`` block of ``fine (…, tile, y, x)`` with fine cell ``area`` (m², float64): the
    area-weighted block mean (:func:`data_catalog.coarsen.coarse_grain`) and the block's area (m²), each on the
    coarse dims ``coarse_spatial_dims`` without coordinates, so they line up by position with a coarse variable
    of the output store (after :func:`drop_coords_on`)."""
    tile, ydim, xdim = spatial_dims
    ctile, cy, cx = coarse_spatial_dims
    to_internal = {ydim: Y, xdim: X}
    f = drop_coords_on(fine, [ydim, xdim]).rename(to_internal)
    a = drop_coords_on(area, [ydim, xdim]).rename(to_internal).astype(np.float64)
    back = {Y: cy, X: cx, **({tile: ctile} if tile != ctile else {})}
    return coarse_grain(f, a, factor).rename(back), block_sum(a, factor).rename(back)


def mass_consistency(fine: xr.DataArray, coarse: xr.DataArray, area: xr.DataArray, factor: int,
                     spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                     coarse_spatial_dims: tuple[str, str, str] = COARSE_SPATIAL_DIMS) -> xr.Dataset:
    """Coarse-grain ``fine`` (…, tile, y, x) by ``factor`` with the fine cell ``area`` (m²) and compare it
    with ``coarse`` (…, tile, y_c, x_c): ``relative_error`` and ``mass_bias`` (dimensionless, module
    docstring), pooled over every dim (members included), with the four area-weighted means they are ratios
    of (:func:`mass_ratios`). ``factor`` is given, never read off shapes.

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
    grained, coarse_area = on_coarse_blocks(fine.astype(np.float64), area, factor, spatial_dims, coarse_spatial_dims)
    c = drop_coords_on(coarse, [cy, cx]).astype(np.float64)
    means = {"mean_abs_error": weighted_mean(abs(grained - c), coarse_area),
             "mean_abs_coarse": weighted_mean(abs(c), coarse_area),
             "mean_error": weighted_mean(grained - c, coarse_area), "mean_coarse": weighted_mean(c, coarse_area)}
    return xr.Dataset({**means, **mass_ratios(**means)})


def mass_ratios(mean_abs_error: xr.DataArray, mean_abs_coarse: xr.DataArray, mean_error: xr.DataArray,
                mean_coarse: xr.DataArray) -> dict[str, xr.DataArray]:
    """``relative_error`` and ``mass_bias`` from the area-weighted means of |coarse-grained − coarse|, |coarse|,
    coarse-grained − coarse and coarse (of one block of frames, or of a record's blocks together)."""
    return {"relative_error": (mean_abs_error / mean_abs_coarse).assign_attrs(units="1"),
            "mass_bias": (mean_error / mean_coarse).assign_attrs(units="1")}
