"""bench/skill.py's profile of neighbour jumps by distance from the tile edge, on fields whose answer is known."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))          # the script imports its folder's helpers
    spec = importlib.util.spec_from_file_location("skill_bench", REPO / "bench" / "skill.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_groups_split_the_pairs_by_distance_and_fold_parity(bench):
    groups = dict(bench.edge_distance_groups(16, 4, 2))
    assert list(groups) == ["0 (across the tile edge)", "1", "2", "3", "4", "5–8, inside a 2×2 fold block",
                            "5–8, across fold blocks"]
    assert np.flatnonzero(groups["0 (across the tile edge)"]).tolist() == [0, 16]
    assert np.flatnonzero(groups["5–8, inside a 2×2 fold block"]).tolist() == [5, 7, 9, 11]
    assert np.flatnonzero(groups["5–8, across fold blocks"]).tolist() == [6, 8, 10]
    assert sum(m.astype(int) for m in groups.values()).tolist() == [1] * 17          # every pair in one group
    assert list(dict(bench.edge_distance_groups(16, 4, 1)))[-1] == "5–8"


def test_a_field_constant_per_tile_jumps_only_across_tile_edges(bench):
    z = np.broadcast_to(np.arange(6.0)[:, None, None], (6, 8, 8)).copy()
    profile = bench.jump_profile(z[None])
    assert profile[[0, 8]].min() > 0.5 and np.abs(profile[1:8]).max() == 0


def test_a_fold_imprint_shows_as_jumps_across_blocks_only(bench):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 6, 4, 4)).repeat(2, axis=-1).repeat(2, axis=-2)   # constant in every 2 × 2 block
    profile = bench.jump_profile(z)
    assert np.abs(profile[1::2]).max() == 0                                  # inside a block
    assert profile[2:8:2].min() > 0.3                                        # across blocks


def test_fine_power_by_band_finds_an_excess_in_the_band_that_has_it(bench):
    import xarray as xr

    n = 16
    sources = ["ensemble", "truth"]
    tile = xr.DataArray(np.ones((2, n // 2 + 1)), dims=("source", "wavenumber"),
                        coords={"source": sources, "wavenumber": np.arange(n // 2 + 1)})
    sphere = xr.DataArray(np.ones((2, 3 * n)), dims=("source", "total_wavenumber"),
                          coords={"source": sources, "total_wavenumber": np.arange(3 * n)})
    tile[0, 6:] = 2.0                                          # the upper half of the per-tile fine band, doubled
    sphere[0, 2 * n:] = np.e                                   # sub-2-cell wavelengths, e times the truth's
    rows = {r["band"]: r for r in bench.fine_power_by_band(tile, sphere, n)}
    assert list(rows) == ["per tile, k 4–5", "per tile, k 6–8", "sphere, l 16–23", "sphere, l 24–31",
                          "sphere, l 32–47"]
    assert rows["per tile, k 4–5"]["ensemble"] == pytest.approx(0.0)
    assert rows["per tile, k 6–8"]["ensemble"] == pytest.approx(np.log(2.0))
    assert rows["sphere, l 32–47"]["ensemble"] == pytest.approx(1.0)
    assert rows["sphere, l 16–23"]["ensemble"] == pytest.approx(0.0)
    assert rows["per tile, k 4–5"]["share"] == pytest.approx(2 / 5)                 # 2 of the truth's 5 fine k
    assert sum(rows[b]["share"] for b in rows if b.startswith("sphere")) == pytest.approx(1.0)
