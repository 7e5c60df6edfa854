"""Halo exchange on the real C48 grid and a real smooth field (run with -s to see the measured figures)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from data_catalog import halo
from data_catalog.cubesphere import corner_unit_vectors, lat_lon_to_unit_vectors
from data_catalog.halo import EDGE_CONNECTIVITY, EDGES, halo_index_maps, halo_pad, halo_pad_dataarray, remove_halo

CUBE_DOC = Path(__file__).resolve().parents[2] / "docs" / "cube-sphere.md"


def _open(path) -> xr.Dataset:
    return xr.open_dataset(path, engine="h5netcdf").load()


def _clear_caches() -> None:
    halo.halo_index_maps.cache_clear()
    halo._torch_maps.cache_clear()


@pytest.fixture
def broken_connectivity(monkeypatch):
    """Turn one join the wrong way round (tile 1 W ↔ tile 5 N, 1-based, loses its reversal)."""
    _clear_caches()
    nbr, edge, reversed_ = EDGE_CONNECTIVITY[0]["W"]
    monkeypatch.setitem(EDGE_CONNECTIVITY[0], "W", (nbr, edge, not reversed_))
    yield
    monkeypatch.undo()
    _clear_caches()


# ---------------------------------------------------------------- (a) geometry of the real C48 grid

def _steps_deg(v: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Great-circle steps between x- and y-neighbours of the padded unit vectors ``v (6, P, P, 3)``:
    (interior steps, steps touching the halo but no corner block, steps touching a corner block)."""
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    p = v.shape[1]
    region = np.zeros((p, p), dtype=int)             # 0 interior, 1 edge strip, 2 corner block
    region[:w, :], region[-w:, :], region[:, :w], region[:, -w:] = 1, 1, 1, 1
    for cj in (slice(0, w), slice(p - w, p)):
        for ci in (slice(0, w), slice(p - w, p)):
            region[cj, ci] = 2
    out = {0: [], 1: [], 2: []}
    for axis in (1, 2):
        a, b = (np.take(v, range(0, p - 1), axis=axis), np.take(v, range(1, p), axis=axis))
        step = np.rad2deg(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.einsum("...k,...k->...", a, b)))
        kind = np.maximum(np.take(region, range(0, p - 1), axis=axis - 1), np.take(region, range(1, p), axis=axis - 1))
        for k in out:
            out[k].append(step[:, kind == k].ravel())
    return tuple(np.concatenate(out[k]) for k in (0, 1, 2))


@pytest.fixture(scope="module")
def c48_unit_vectors(c48_dir) -> np.ndarray:
    """The real C48 cell centres (grid.nc) as unit vectors, components first: (3, 6, 48, 48)."""
    grid = _open(c48_dir / "grid.nc")
    return np.moveaxis(lat_lon_to_unit_vectors(grid.lat.values, grid.lon.values), -1, 0)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_halo_steps_on_real_c48_grid_look_like_interior(c48_unit_vectors, width):
    padded = np.moveaxis(halo_pad(c48_unit_vectors, width), 0, -1)
    interior, strips, corners = _steps_deg(padded, width)
    print(f"\nw={width}: interior steps {interior.min():.3f}-{interior.max():.3f} deg, with halo strips "
          f"{strips.min():.3f}-{strips.max():.3f} deg, corner blocks {corners.min():.3f}-{corners.max():.3f} deg")
    assert strips.max() <= interior.max() * 1.001
    assert strips.min() >= 1.2
    assert corners.max() <= interior.max() * 1.001      # the corner-block choice keeps steps interior-like


def test_wrong_join_fails_the_geometry_check(c48_unit_vectors, broken_connectivity):
    padded = np.moveaxis(halo_pad(c48_unit_vectors, 1), 0, -1)
    _, strips, _ = _steps_deg(padded, 1)
    print(f"\nreversed edge: largest step {strips.max():.1f} deg")
    assert strips.max() > 10.0


def test_connectivity_matches_tile_edges_of_generated_grid():
    """Each join in the table puts together two tile edges whose corner nodes coincide, in the stated order."""
    n = 6
    p = corner_unit_vectors(n)
    edge_nodes = {"W": lambda t: p[t, :, 0], "E": lambda t: p[t, :, -1],
                  "S": lambda t: p[t, 0, :], "N": lambda t: p[t, -1, :]}
    for tile, joins in EDGE_CONNECTIVITY.items():
        for edge, (nbr, nbr_edge, reversed_) in joins.items():
            ours, theirs = edge_nodes[edge](tile), edge_nodes[nbr_edge](nbr)
            np.testing.assert_allclose(ours, theirs[::-1] if reversed_ else theirs, atol=1e-12,
                                       err_msg=f"tile {tile} {edge} vs tile {nbr} {nbr_edge}")


# ---------------------------------------------------------------- (b) a real smooth field across seams

def _seam_statistics(field: np.ndarray, pad=halo_pad) -> dict[str, np.ndarray | float]:
    """|Differences| across each seam (tile's first/last row or column vs the first halo one) and, at the
    same places, the mean of the next same-direction differences on each side (inside the tile, inside
    the neighbour): shapes (6, 4 edges, n)."""
    w = 2
    p = pad(field, w)
    a = slice(w, -w)
    lines = {"W": [p[:, a, k] for k in (0, 1, 2, 3)], "E": [p[:, a, k] for k in (-1, -2, -3, -4)],
             "S": [p[:, k, a] for k in (0, 1, 2, 3)], "N": [p[:, k, a] for k in (-1, -2, -3, -4)]}
    seam, beside = [], []
    for edge in EDGES:
        out2, out1, in1, in2 = lines[edge]
        seam.append(np.abs(in1 - out1))
        beside.append(0.5 * (np.abs(in2 - in1) + np.abs(out1 - out2)))
    interior = np.concatenate([np.abs(np.diff(field, axis=-1)).ravel(), np.abs(np.diff(field, axis=-2)).ravel()])
    seam, beside = np.stack(seam, 1), np.stack(beside, 1)
    return {"seam": seam, "ratio": float(seam.mean() / beside.mean()),
            "edge_ratios": seam.mean(-1) / beside.mean(-1), "interior_max": float(interior.max())}


def _seams_look_like_interior(stats) -> bool:
    return (0.7 <= stats["ratio"] <= 1.4 and stats["edge_ratios"].max() <= 1.4
            and stats["seam"].max() <= stats["interior_max"])


@pytest.fixture(scope="module")
def h500(c48_dir) -> np.ndarray:
    da = _open(c48_dir / "plot_2_plot_cube_prognostic_diags.nc").h500_time_mean_value
    assert da.dims == ("tile", "y", "x")
    return da.values.astype(np.float64)


def test_real_h500_seams_look_like_interior(h500):
    stats = _seam_statistics(h500)
    print(f"\nh500 seams: mean |seam diff| / mean |diff beside it| = {stats['ratio']:.3f}; per edge "
          f"{stats['edge_ratios'].min():.2f}-{stats['edge_ratios'].max():.2f}; max seam diff "
          f"{stats['seam'].max():.1f} m vs max interior diff {stats['interior_max']:.1f} m")
    assert _seams_look_like_interior(stats)


def test_wrong_connectivity_fails_the_seam_check(h500, broken_connectivity):
    stats = _seam_statistics(h500)
    print(f"\nreversed edge: ratio {stats['ratio']:.2f}, worst edge {stats['edge_ratios'].max():.1f}, "
          f"max seam diff {stats['seam'].max():.1f} m")
    assert not _seams_look_like_interior(stats)


def test_zero_padding_fails_the_seam_check(h500):
    stats = _seam_statistics(h500, pad=lambda x, w: np.pad(x, ((0, 0), (w, w), (w, w))))
    print(f"\nzero padding: ratio {stats['ratio']:.0f}")
    assert not _seams_look_like_interior(stats)


# ---------------------------------------------------------------- (c) torch, dtypes, batch dims, speed

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead", [(), (3,), (2, 1, 3)])
def test_numpy_and_torch_agree_and_interior_is_unchanged(dtype, lead):
    n, w = 8, 3
    x = np.random.default_rng(0).normal(size=lead + (6, n, n)).astype(dtype)
    out_np = halo_pad(x, w)
    out_torch = halo_pad(torch.from_numpy(x), w)
    assert isinstance(out_torch, torch.Tensor) and out_torch.dtype == torch.from_numpy(x).dtype
    assert out_np.shape == lead + (6, n + 2 * w, n + 2 * w) and out_np.dtype == dtype
    np.testing.assert_array_equal(out_np, out_torch.numpy())
    np.testing.assert_array_equal(remove_halo(out_np, w), x)


def test_perturbation_reaches_exactly_the_neighbour_halo():
    """Tile 1 (1-based) E edge joins tile 2 W, not reversed: cell (j, n−1) of tile 0 shows up only at
    tile 1's padded (j + w, w − 1), besides its own place."""
    n, w, j = 8, 2, 3
    x = torch.zeros(6, n, n, dtype=torch.float64)
    bumped = x.clone()
    bumped[0, j, n - 1] = 1.0
    changed = torch.nonzero(halo_pad(bumped, w) - halo_pad(x, w)).tolist()
    assert sorted(changed) == sorted([[0, j + w, n - 1 + w], [1, j + w, w - 1]])


def test_gradient_of_halo_sum_is_nonzero_exactly_at_edge_cells():
    n, w = 8, 2
    x = torch.randn(2, 6, n, n, dtype=torch.float32, requires_grad=True)
    out = halo_pad(x, w)
    halo_mask = torch.ones(n + 2 * w, n + 2 * w, dtype=torch.bool)
    halo_mask[w:-w, w:-w] = False
    out[..., halo_mask].sum().backward()
    near_edge = torch.zeros(n, n, dtype=torch.bool)
    near_edge[:w, :] = near_edge[-w:, :] = near_edge[:, :w] = near_edge[:, -w:] = True
    assert torch.equal(x.grad != 0, near_edge.expand(2, 6, n, n))
    # Every strip cell comes from one source, every corner cell half from each of two: the gradient
    # sums to the number of halo cells.
    assert x.grad.sum().item() == pytest.approx(2 * 6 * int(halo_mask.sum()))


def test_halo_pad_of_big_batch_is_fast():
    x = torch.randn(8, 5, 16, 6, 96, 96)
    halo_pad(x, 1)                                  # builds and caches the index maps
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = halo_pad(x, 1)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    x.clone()
    copy = time.perf_counter() - start
    print(f"\nhalo_pad (8, 5, 16, 6, 96, 96) float32, w=1: {best * 1e3:.0f} ms (a plain clone: {copy * 1e3:.0f} ms)")
    assert out.shape == (8, 5, 16, 6, 98, 98)
    assert best < 1.0


def test_dataarray_wrapper_keeps_dims_and_coords(h500):
    da = xr.DataArray(np.stack([h500, h500 + 1.0]).transpose(0, 2, 3, 1), dims=("time", "y", "x", "tile"),
                      coords={"time": [10, 20], "tile": np.arange(6)}, name="h500", attrs={"units": "m"})
    out = halo_pad_dataarray(da, 1)
    assert out.dims == da.dims and out.sizes["y"] == 50 and out.sizes["tile"] == 6
    assert out.time.values.tolist() == [10, 20] and out.attrs["units"] == "m"
    np.testing.assert_array_equal(out.transpose("time", "tile", "y", "x").values,
                                  halo_pad(da.transpose("time", "tile", "y", "x").values, 1))


@pytest.mark.parametrize("shape, width, match", [((5, 8, 8), 1, "tile, y, x last"), ((6, 8, 7), 1, "tile, y, x last"),
                                                  ((6, 8, 8), 0, "width"), ((6, 8, 8), 9, "width"),
                                                  ((6, 8, 8), 1.5, "width")])
def test_bad_input_is_a_clear_error(shape, width, match):
    with pytest.raises(ValueError, match=match):
        halo_pad(np.zeros(shape), width)


# ---------------------------------------------------------------- (d) the connectivity table itself

def test_every_join_is_reciprocal_and_the_cube_has_twelve_edges():
    joins = set()
    for tile, edges in EDGE_CONNECTIVITY.items():
        assert set(edges) == set(EDGES)
        for edge, (nbr, nbr_edge, reversed_) in edges.items():
            assert EDGE_CONNECTIVITY[nbr][nbr_edge] == (tile, edge, reversed_), (tile, edge)
            assert nbr != tile
            # docs/cube-sphere.md: same-orientation joins pair E with W or N with S; rotated ones pair an x edge
            # with a y edge and reverse the index.
            rotated = (edge in "WE") != (nbr_edge in "WE")
            assert reversed_ == rotated and (rotated or {edge, nbr_edge} in ({"W", "E"}, {"S", "N"}))
            joins.add(frozenset([(tile, edge), (nbr, nbr_edge)]))
    assert len(joins) == 12


def test_table_is_the_documented_table():
    rows = re.findall(r"^\| (\d) \| ([^|]+)\| ([^|]+)\| ([^|]+)\| ([^|]+)\|$", CUBE_DOC.read_text(), re.M)
    rows = [r for r in rows if "," in "".join(r) or re.match(r"\d [WESN]", r[1].strip())]
    assert len(rows) == 6
    for tile, *cells in rows:
        for edge, cell in zip(("W", "E", "S", "N"), cells):
            nbr, nbr_edge = re.match(r"(\d) ([WESN])", cell.strip()).groups()
            assert EDGE_CONNECTIVITY[int(tile) - 1][edge] == (int(nbr) - 1, nbr_edge, "reversed" in cell)


def test_index_maps_cover_every_padded_cell_once():
    n, w = 5, 2
    maps = halo_index_maps(n, w)
    p = n + 2 * w
    positions = np.concatenate([maps.strip_positions, maps.corner_positions])
    assert len(np.unique(positions)) == len(positions) == 6 * (p * p - n * n)
    assert maps.source.min() >= 0 and maps.source.max() < 6 * n * n
