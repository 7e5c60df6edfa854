"""The dataset card command draws its figures; the globe helper masks antimeridian quads."""

from __future__ import annotations

import json

from data_catalog.cubesphere import cube_sphere_grid
from downscale.cli import main


def test_card_command_measures_and_draws(tmp_path, capsys):
    out = tmp_path / "card.json"
    code = main(["card", "--preset", "tests", "--root", str(tmp_path / "data"), "--json", str(out),
                 "--figure-dir", str(tmp_path / "fig")])
    assert code == 0
    stats = json.loads(out.read_text())
    assert 0.05 < stats["wet_fraction"] < 0.8
    assert "wet fraction" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["synthetic-tests-climate.png",
                                                                  "synthetic-tests-frames.png"]
    assert all(p.stat().st_size > 20_000 for p in (tmp_path / "fig").iterdir())


def test_globe_helper_masks_antimeridian_quads():
    from downscale.plots.globe import straddling_quads, wrap_longitude

    grid = cube_sphere_grid(8)
    masks = [straddling_quads(wrap_longitude(grid.lonb.values[t], 180.0)) for t in range(6)]
    assert not masks[1].any()                                        # tile 2 (35–125°E) never crosses 0°
    assert masks[0].any()                                            # tile 1 (305–35°E) does, at 0°/360°
    assert 0 < sum(m.sum() for m in masks) < 6 * 64 // 4
