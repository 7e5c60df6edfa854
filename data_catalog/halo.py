"""Halo exchange across the six tiles of a cube sphere, from the edge connectivity table.

:func:`halo_pad` takes any array or tensor shaped ``(..., 6, n, n)`` (tile, y, x last) and returns
``(..., 6, n + 2w, n + 2w)``: the interior unchanged, each of the four edge strips (w deep) filled with
the neighbouring tile's cells nearest the shared edge, turned and reversed as :data:`EDGE_CONNECTIVITY`
says. The interior is one block copy and the halo one gather with integer index maps built once per
``(n, w)``, so it works the same on numpy arrays and torch tensors (differentiable, any device, any
float dtype, any leading dims).

Corner blocks. A cube corner joins only 3 tiles, so the w × w block beyond a tile corner has no cell
of its own. A corner cell ``dx`` cells beyond the x edge (W or E) and ``dy`` beyond the y edge (S or N),
both 1..w, gets the mean of the two adjacent strips' cells nearest the corner in its column and row:

    corner(dx, dy) = ½ [ x_strip(depth = dx, along = 0) + y_strip(depth = dy, along = 0) ]

(``along`` counted from the corner inward). Those two cells lie on either side of the cube edge the
two neighbours share, so the corner block folds onto that edge; on the real C48 grid every step
between neighbouring padded centres, corner blocks included, stays ≤ 2.08° for w ≤ 3 (2.31° at w = 4).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, TypeVar

import numpy as np
import xarray as xr

from data_catalog.schema import N_TILES, TILE, X, Y

W, E, S, N = "W", "E", "S", "N"
EDGES = (W, E, S, N)

#: Edge connectivity, 0-based (docs/cube-sphere.md table, there 1-based): tile → edge → (neighbour tile,
#: neighbour edge, reversed). W = x index 0, E = last x, S = y index 0, N = last y; "reversed" = the
#: along-edge index runs the other way on the neighbour.
EDGE_CONNECTIVITY: dict[int, dict[str, tuple[int, str, bool]]] = {
    0: {W: (4, N, True), E: (1, W, False), S: (5, N, False), N: (2, W, True)},
    1: {W: (0, E, False), E: (3, S, True), S: (5, E, True), N: (2, S, False)},
    2: {W: (0, N, True), E: (3, W, False), S: (1, N, False), N: (4, W, True)},
    3: {W: (2, E, False), E: (5, S, True), S: (1, E, True), N: (4, S, False)},
    4: {W: (2, N, True), E: (5, W, False), S: (3, N, False), N: (0, W, True)},
    5: {W: (4, E, False), E: (1, S, True), S: (3, E, True), N: (0, S, False)},
}

Array = TypeVar("Array")


def _edge_cell(edge: str, depth: np.ndarray, along: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(j, i) of the cell ``depth`` cells in from ``edge`` (0 = on the edge), ``along`` the edge's own index."""
    if edge == W:
        return along, depth
    if edge == E:
        return along, n - 1 - depth
    if edge == S:
        return depth, along
    return n - 1 - depth, along


def _strip_positions(edge: str, depth: np.ndarray, along: np.ndarray, n: int, w: int) -> tuple[np.ndarray, ...]:
    """Padded (j, i) of the halo cell ``depth`` (1..w) beyond ``edge`` at along-edge index ``along``."""
    j, i = _edge_cell(edge, -depth, along, n)   # depth d beyond the edge = index −d (W/S) or n−1+d (E/N)
    return j + w, i + w


def _halo_source(tile: int, edge: str, depth: np.ndarray, along: np.ndarray, n: int) -> np.ndarray:
    """Flat source index (into 6·n·n) of the halo cell ``depth`` (1..w) beyond ``edge`` of ``tile``."""
    nbr, nbr_edge, reversed_ = EDGE_CONNECTIVITY[tile][edge]
    j, i = _edge_cell(nbr_edge, depth - 1, n - 1 - along if reversed_ else along, n)
    return (nbr * n + j) * n + i


class HaloMaps(NamedTuple):
    """Integer index maps of a width-w halo on C-n tiles (P = n + 2w); flat indices into the input
    ``(6·n·n)`` ("sources") and into the padded output ``(6·P·P)`` ("positions")."""

    source: np.ndarray            #: (6·P·P,) source of every padded cell (corner cells: first candidate)
    strip_positions: np.ndarray   #: (6·4·w·n,) padded positions of the edge-strip cells
    strip_sources: np.ndarray     #: (6·4·w·n,) their sources on the neighbouring tiles
    corner_positions: np.ndarray  #: (6·4·w²,) padded positions of the corner-block cells
    corner_sources: np.ndarray    #: (2, 6·4·w²) the two candidates of each corner cell, averaged


@lru_cache(maxsize=32)
def halo_index_maps(n: int, width: int) -> HaloMaps:
    """The gather maps of a ``width``-deep halo on C-``n`` tiles, built once per ``(n, width)``."""
    if not (isinstance(n, (int, np.integer)) and isinstance(width, (int, np.integer))) or n < 1:
        raise ValueError(f"halo needs integer tile size n >= 1 and width, got n={n!r}, width={width!r}")
    if not 1 <= width <= n:
        raise ValueError(f"halo width must be in 1..n = 1..{n}, got {width}")
    n, w = int(n), int(width)
    p = n + 2 * w
    source = np.full((N_TILES, p, p), -1, dtype=np.int64)
    jj, ii = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    depth, along = np.meshgrid(np.arange(1, w + 1), np.arange(n), indexing="ij")   # (w, n)
    strip_positions, strip_sources = [], []
    for t in range(N_TILES):
        source[t, w:w + n, w:w + n] = (t * n + jj) * n + ii
        for edge in EDGES:
            pj, pi = _strip_positions(edge, depth, along, n, w)
            src = _halo_source(t, edge, depth, along, n)
            source[t, pj, pi] = src
            strip_positions.append(((t * p + pj) * p + pi).ravel())
            strip_sources.append(src.ravel())

    # Corner blocks: x edge ex in {W, E}, y edge ey in {S, N}; the cell dx, dy = 1..w beyond them.
    dx, dy = (a.ravel() for a in np.meshgrid(np.arange(1, w + 1), np.arange(1, w + 1), indexing="ij"))
    corner_positions, corner_sources = [], []
    for t in range(N_TILES):
        for ex in (W, E):
            for ey in (S, N):
                # The strips' cells nearest the corner, in the corner cell's own column and row.
                xj, xi = _strip_positions(ex, dx, np.full_like(dx, 0 if ey == S else n - 1), n, w)
                yj, yi = _strip_positions(ey, dy, np.full_like(dy, 0 if ex == W else n - 1), n, w)
                cj, ci = _strip_positions(ey, dy, -dx if ex == W else n - 1 + dx, n, w)
                corner_positions.append((t * p + cj) * p + ci)
                corner_sources.append(np.stack([source[t, xj, xi], source[t, yj, yi]]))
    maps = HaloMaps(source.reshape(-1), np.concatenate(strip_positions), np.concatenate(strip_sources),
                    np.concatenate(corner_positions), np.concatenate(corner_sources, axis=1))
    maps.source[maps.corner_positions] = maps.corner_sources[0]
    if (maps.source < 0).any():  # pragma: no cover - a broken table, not bad input
        raise AssertionError("halo index maps leave cells unfilled: EDGE_CONNECTIVITY is inconsistent")
    for a in maps:
        a.setflags(write=False)
    return maps


def turned_edge(tile: int, edge: str) -> int:
    """How the neighbour's grid beyond ``edge`` of ``tile`` is turned against the tile's own: 0 where it runs
    the same way (E↔W, N↔S: the cube's 6 straight edges), else the quarter turns (+1 or −1, counter-clockwise
    positive) that carry the tile's (x, y) axes onto the neighbour's. Every tile has two turned edges: beyond N
    and S the neighbour's axes are the tile's turned by −90° (x → −y, y → x), beyond W and E by +90°."""
    nbr_edge = EDGE_CONNECTIVITY[tile][edge][1]
    if (edge in (W, E)) == (nbr_edge in (W, E)):
        return 0
    return -1 if edge in (S, N) else 1


@lru_cache(maxsize=32)
def strip_positions_by_turn(n: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat positions (into the padded ``6·P·P``, P = n + 2w) of the edge-strip cells of a ``width``-deep halo,
    by how the source tile's grid is turned (:func:`turned_edge`): by −90° (first array: the N and S strips of
    turned edges), by +90° (second: their W and E strips), and not at all (third: the strips of the 6 straight
    edges); corner blocks are in none."""
    by_edge = halo_index_maps(n, width).strip_positions.reshape(N_TILES, len(EDGES), -1)   # (tile, edge, w·n)
    out: dict[int, list[np.ndarray]] = {-1: [], 1: [], 0: []}
    for t in range(N_TILES):
        for e, edge in enumerate(EDGES):
            out[turned_edge(t, edge)].append(by_edge[t, e])
    minus, plus, straight = (np.concatenate(out[k]) for k in (-1, 1, 0))
    for a in (minus, plus, straight):
        a.setflags(write=False)
    return minus, plus, straight


@lru_cache(maxsize=64)
def _torch_maps(n: int, width: int, device: str) -> HaloMaps:
    import torch

    return HaloMaps(*(torch.tensor(a, device=device) for a in halo_index_maps(n, width)))


def _check_shape(shape: tuple[int, ...], width: int) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise ValueError(f"halo width must be an integer number of cells, got {width!r}")
    if len(shape) < 3 or shape[-3] != N_TILES or shape[-2] != shape[-1]:
        raise ValueError(f"halo exchange needs (..., {N_TILES}, n, n) with tile, y, x last, got shape {tuple(shape)}")
    return int(shape[-1])


def halo_pad(x: Array, width: int) -> Array:
    """Pad every tile of ``x`` (``(..., 6, n, n)``, numpy array or torch tensor) with a halo ``width``
    cells deep taken from its neighbours; returns ``(..., 6, n + 2·width, n + 2·width)`` of the same
    type, dtype and device. Corner blocks hold the mean of the two adjacent strips' cells nearest the
    corner (module docstring). Differentiable in torch.

    The interior is copied as a block; only the halo cells are gathered through the index maps, so the
    cost is that of one copy of ``x``.
    """
    n = _check_shape(tuple(x.shape), width)
    w, p = int(width), n + 2 * int(width)
    lead = tuple(x.shape[:-3])
    if isinstance(x, np.ndarray):
        maps = halo_index_maps(n, w)
        flat = x.reshape(lead + (N_TILES * n * n,))
        out = np.empty(lead + (N_TILES, p, p), dtype=x.dtype)
        out[..., w:-w, w:-w] = x
        out_flat = out.reshape(lead + (N_TILES * p * p,))   # a view: out is contiguous
        out_flat[..., maps.strip_positions] = np.take(flat, maps.strip_sources, axis=-1)
        first, second = (np.take(flat, s, axis=-1) for s in maps.corner_sources)
        out_flat[..., maps.corner_positions] = 0.5 * (first + second)
        return out
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"halo_pad takes a numpy array or a torch tensor, got {type(x).__name__}")
    maps = _torch_maps(n, w, str(x.device))
    flat = x.reshape(lead + (N_TILES * n * n,))
    out = x.new_empty(lead + (N_TILES, p, p))
    out[..., w:-w, w:-w] = x
    out_flat = out.view(lead + (N_TILES * p * p,))
    out_flat.index_copy_(-1, maps.strip_positions, flat.index_select(-1, maps.strip_sources))
    first, second = (flat.index_select(-1, s) for s in maps.corner_sources)
    out_flat.index_copy_(-1, maps.corner_positions, 0.5 * (first + second))
    return out


def remove_halo(x: Array, width: int) -> Array:
    """Crop a ``width``-deep halo: ``(..., 6, n + 2w, n + 2w)`` → ``(..., 6, n, n)`` (a view)."""
    if width < 1 or x.shape[-1] <= 2 * width or x.shape[-2] <= 2 * width:
        raise ValueError(f"cannot remove a halo of width {width} from shape {tuple(x.shape)}")
    return x[..., width:-width, width:-width]


def halo_pad_dataarray(da: xr.DataArray, width: int) -> xr.DataArray:
    """:func:`halo_pad` for an ``xarray.DataArray`` with dims ``tile, y, x`` (any position): returns the
    padded array with dims in the same order, ``y``/``x`` without coordinates (halo cells have no index of
    their own) and other coordinates kept. Loads the data (use it on small arrays, or map it over
    dask blocks that hold whole tiles)."""
    missing = [d for d in (TILE, Y, X) if d not in da.dims]
    if missing:
        raise ValueError(f"halo_pad_dataarray: {da.name!r} lacks dims {missing} (has {da.dims})")
    other = [d for d in da.dims if d not in (TILE, Y, X)]
    moved = da.transpose(*other, TILE, Y, X)
    padded = halo_pad(np.asarray(moved.values), width)
    coords = {k: v for k, v in moved.coords.items() if Y not in v.dims and X not in v.dims}
    out = xr.DataArray(padded, dims=moved.dims, coords=coords, name=da.name, attrs=dict(da.attrs))
    return out.transpose(*da.dims)
