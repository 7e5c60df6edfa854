"""Units of the report without a store: seasons present, targets, log ticks, densities, figures of gaps."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.cubesphere import cube_sphere_grid
from downscale.report import figures_distribution as fd
from downscale.report import figures_maps as fm
from downscale.report.style import log_ticks, source_colors
from downscale.report.tables import summary_table, targets_table


def _maps(n: int = 8) -> xr.Dataset:
    """Maps of two sources where only DJF and JJA have data."""
    rng = np.random.default_rng(0)
    mean = rng.gamma(2.0, 2e-5, size=(2, 6, n, n))
    seasonal = np.repeat(mean[:, None], 4, axis=1)
    seasonal[:, [1, 3]] = np.nan
    dims = ("source", "tile", "grid_yt", "grid_xt")
    sdims = ("source", "season", "tile", "grid_yt", "grid_xt")
    return xr.Dataset({"mean": (dims, mean), "bias": (dims, mean - mean[:1]),
                       "seasonal_mean": (sdims, seasonal), "seasonal_bias": (sdims, seasonal - seasonal[:1])},
                      coords={"source": ["ensemble", "truth"], "season": ["DJF", "MAM", "JJA", "SON"]})


def test_absent_seasons_are_skipped():
    maps = _maps()
    assert fm.present_seasons(maps) == ["DJF", "JJA"]
    grid = cube_sphere_grid(8)
    fig = fm.seasonal_maps(maps, grid.lonb.values, grid.latb.values)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["DJF: truth", "DJF: ensemble (mean)", "JJA: truth", "JJA: ensemble (mean)"]


def _scalars(crps_ratio: float, spread: float, rel_bias: float) -> xr.Dataset:
    src = ["ensemble", "bilinear", "truth"]
    reg = ["global"]
    def per(values):
        return (("source", "region"), np.array(values, dtype=float)[:, None], {"units": "1"})
    return xr.Dataset({"crps": (("source", "region"), np.array([[1e-5], [2e-5], [0.0]]), {"units": "kg m-2 s-1"}),
                       "crps_ratio": per([crps_ratio, 1.0, 0.0]), "spread_skill": per([spread, np.nan, np.nan]),
                       "relative_bias": per([rel_bias, 0.1, 0.0])}, coords={"source": src, "region": reg})


def test_targets_pass_and_miss_on_the_ensemble_only():
    table = summary_table(_scalars(0.8, 1.5, -0.03))
    rows = {r[0].text: r for r in table.rows}
    assert table.header == ["metric", "units", "target", "ensemble", "bilinear"]     # no truth column
    assert rows["CRPS"][1].text == "mm/day" and rows["CRPS"][3].text == "0.864"      # 1e-5 kg m-2 s-1
    assert rows["CRPS / best baseline"][3].status == "pass"
    assert rows["spread–skill ratio"][3].status == "miss"
    bias = rows["relative bias of the area-weighted mean"]
    assert (bias[1].text, bias[3].text, bias[3].status, bias[4].status) == ("%", "-3", "pass", None)
    results = {r[0].text: r[-1].text for r in targets_table(_scalars(0.9, 1.0, 0.0)).rows}
    assert results["CRPS / best baseline"] == "miss" and results["spread–skill ratio"] == "pass"
    assert results["PE / best baseline"] == "miss"                                    # not computed: not a pass


def test_log_ticks_are_readable():
    assert log_ticks(0.1, 5.0) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
    assert log_ticks(1e-6, 1e3) == pytest.approx([1e-6, 1e-4, 1e-2, 1.0, 1e2])     # thinned powers of ten
    assert log_ticks(0.0, 1.0) == []


def test_merged_density_integrates_to_the_wet_fraction():
    edges = np.concatenate([[0.0], np.logspace(-10, -1, 801)])
    counts = np.zeros(801)
    counts[0], counts[400:500] = 30.0, 0.7
    hist = xr.DataArray(counts, dims="bin", coords={"lower": ("bin", edges[:-1]), "upper": ("bin", edges[1:])})
    x, dens = fd.merged_density(hist, n_plot=100)
    assert x.size == 100 and np.all(np.diff(x) > 0)
    widths = (edges[9::8] - edges[1:-8:8]) * 86400          # the 100 merged bins of 8, in mm/day
    assert np.nansum(dens * widths) == pytest.approx(70.0 / 100.0)


def test_return_levels_without_any_fit_say_so():
    nan = np.full((2, 1, 3), np.nan)
    curves = xr.Dataset({"return_level": (("source", "tail_region", "return_period"), nan),
                         "return_lower": (("source", "tail_region", "return_period"), nan),
                         "return_upper": (("source", "tail_region", "return_period"), nan),
                         "return_n_exceedances": (("source", "tail_region"), np.zeros((2, 1), int))},
                        coords={"source": ["ensemble", "truth"], "tail_region": ["california"],
                                "return_period": [1.0, 10.0, 100.0]})
    fig = fd.return_level_figure(curves, source_colors(["ensemble", "truth"]), "california")
    assert any("no source has" in t.get_text() for t in fig.axes[0].texts)
