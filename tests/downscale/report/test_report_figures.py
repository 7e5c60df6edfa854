"""Units of the report without a store: seasons present, targets, log ticks, densities, figures of gaps."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.cubesphere import cube_sphere_grid
from downscale.report import figures_distribution as fd
from downscale.report import figures_maps as fm
from downscale.report.style import log_ticks, source_colors
from downscale.evaluation.regions import CASE_STUDIES, REGIONS
from downscale.evaluation.targets import TARGETS
from downscale.plots.globe import ZOOM_MARGIN_DEG
from downscale.report.tables import extreme_quantile_table, summary_table, targets_table


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


def test_zoom_maps_show_the_scored_box_with_a_margin():
    """One definition per region: the dashed box is the region the metrics average over, the window that box
    with ZOOM_MARGIN_DEG degrees around it."""
    maps, grid = _maps(), cube_sphere_grid(8)
    for name in CASE_STUDIES:
        r = REGIONS[name]
        ax = fm.zoom_maps(maps, grid.lonb.values, grid.latb.values, name).axes[0]
        box = next(p for p in ax.patches if p.get_linestyle() == "--")
        assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (
            r.lon_min, r.lat_min, r.lon_max - r.lon_min, r.lat_max - r.lat_min)
        assert ax.get_xlim() == pytest.approx((r.lon_min - ZOOM_MARGIN_DEG, r.lon_max + ZOOM_MARGIN_DEG))
        assert ax.get_ylim() == pytest.approx((r.lat_min - ZOOM_MARGIN_DEG, r.lat_max + ZOOM_MARGIN_DEG))
    with pytest.raises(ValueError, match="unknown region"):
        fm.zoom_maps(maps, grid.lonb.values, grid.latb.values, "atlantis")


def test_absent_seasons_are_skipped():
    maps = _maps()
    assert fm.present_seasons(maps) == ["DJF", "JJA"]
    grid = cube_sphere_grid(8)
    fig = fm.seasonal_maps(maps, grid.lonb.values, grid.latb.values)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["DJF: truth", "DJF: ensemble (mean)", "JJA: truth", "JJA: ensemble (mean)"]


def _scalars(crps_ratio: float, spread: float, rel_bias: float) -> xr.Dataset:
    src = ["ensemble", "ensemble_raw", "bilinear", "truth"]
    reg = ["global"]
    def per(values):
        return (("source", "region"), np.array(values, dtype=float)[:, None], {"units": "1"})
    flux = np.array([[1e-5], [1.2e-5], [2e-5], [0.0]])
    return xr.Dataset({"crps_fair": (("source", "region"), flux, {"units": "kg m-2 s-1"}),
                       "crps_standard": (("source", "region"), 1.1 * flux, {"units": "kg m-2 s-1"}),
                       "crps_fair_ratio": per([crps_ratio, 0.6, 1.0, 0.0]),
                       "crps_standard_ratio": per([crps_ratio + 0.1, 0.66, 1.0, 0.0]),
                       "spread_skill": per([spread, 1.0, np.nan, np.nan]),
                       "relative_bias": per([rel_bias, -0.03, 0.1, 0.0]),
                       "q999_in_truth_interval": (("source", "region"), np.array([[True], [False], [False], [True]])),
                       "q9999_in_truth_interval": (("source", "region"), np.array([[True], [True], [False], [True]])),
                       "supported_q9999": (("source", "region"), np.array([[True], [True], [True], [False]]))},
                      coords={"source": src, "region": reg})


def test_targets_pass_and_miss_on_the_ensemble_only():
    table = summary_table(_scalars(0.7, 1.5, -0.03))
    rows = {r[0].text: r for r in table.rows}
    assert table.header == ["metric", "units", "target", "ensemble", "ensemble_raw", "bilinear"]   # no truth
    fair = rows["fair CRPS (K−1 estimator, estimates an infinite ensemble)"]
    assert fair[1].text == "mm/day" and fair[3].text == "0.864"                      # 1e-5 kg m-2 s-1
    assert rows["standard CRPS (this K-member ensemble)"][3].text == "0.95"
    ratio = rows["fair CRPS / best baseline"]
    assert ratio[2].text == "≤ 0.75" and ratio[3].status == "pass"
    assert rows["standard CRPS / best baseline"][2].text == "≤ 0.85"
    assert rows["standard CRPS / best baseline"][3].status == "pass"
    assert rows["fair CRPS / best baseline"][4].status is None                        # an extra ensemble: no target
    assert rows["spread–skill ratio"][3].status == "miss"
    bias = rows["relative bias of the area-weighted mean"]      # checked on the raw ensemble (column 4)
    assert (bias[1].text, bias[3].text, bias[3].status, bias[4].status, bias[5].status) == ("%", "-3", None,
                                                                                           "pass", None)
    inside = rows["q99.9 / q99.99 inside the truth's 95 % interval"]
    assert [c.text for c in inside[3:]] == ["yes / yes (n/s)", "no / yes (n/s)", "no / no (n/s)"]
    results = {r[0].text: r[-1].text for r in targets_table(_scalars(0.8, 1.0, 0.0)).rows}
    assert results["relative bias of the area-weighted mean (ensemble_raw)"] == "pass"
    assert results["fair CRPS / best baseline"] == "miss" and results["standard CRPS / best baseline"] == "miss"
    assert results["spread–skill ratio"] == "pass"
    assert results["PE / best baseline"] == "miss"                                    # not computed: not a pass
    assert "crps" not in TARGETS and "crps_ratio" not in TARGETS


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


def _extremes() -> xr.Dataset:
    """Extreme-quantile curves of two sources, the 99.999th percentile unsupported by the truth."""
    stat = ["value", "lower", "upper", "se"]
    q = [0.999, 0.99999]
    value = np.array([[[[1, 0.9, 1.1, 0.05], [2, 1.5, 2.5, 0.3]]], [[[1.2, 1.0, 1.4, 0.1], [3, 2, 4, 0.5]]]])
    pe = np.abs(value - value[1:])
    dims = ("source", "region", "extreme_quantile", "stat")
    flux = {"units": "kg m-2 s-1", "n_boot": 50}
    return xr.Dataset({"extreme_quantile_value": (dims, value / 86400, flux),
                       "extreme_pe": (dims, pe / 86400, flux),
                       "extreme_supported": (dims[:3], np.array([[[True, True]], [[True, False]]]))},
                      coords={"source": ["ensemble", "truth"], "region": ["global"], "extreme_quantile": q,
                              "stat": stat})


def test_extreme_quantile_table_marks_unsupported_quantiles():
    table = extreme_quantile_table(_extremes())
    assert table.header == ["region", "percentile", "truth (mm/day)", "PE ensemble"]
    assert [c.text for c in table.rows[0]] == ["global", "99.9", "1.2 [1, 1.4] ± 0.1", "0.2 [0.1, 0.3]"]
    assert [c.text for c in table.rows[1]] == ["global", "99.999", "3 [2, 4] ± 0.5 (n/s)", "1 [0.5, 1.5] (n/s)"]
    assert "Not supported by the truth's sample: global 99.999" in table.caption and "50 resamples" in table.caption


def test_reliability_figure_draws_every_source_but_the_truth():
    p = np.linspace(0, 1, 4)
    freq = np.stack([np.stack([p, p ** 2])[:, None], np.stack([p, p])[:, None]])       # (source, thr, region, p)
    dims = ("source", "threshold_quantile", "region", "probability")
    curves = xr.Dataset({"reliability_frequency": (dims, freq), "reliability_weight": (dims, np.full(freq.shape, 0.25)),
                         "brier_threshold": (("region", "threshold_quantile"), [[1e-4, 3e-4]])},
                        coords={"source": ["ensemble", "truth"], "threshold_quantile": [0.99, 0.999],
                                "region": ["global"], "probability": p})
    fig = fd.reliability_figure(curves, source_colors(["ensemble", "truth"]))
    assert len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["ensemble", "perfect"]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), p ** 2)
    assert "8.64 mm/day" in fig.axes[0].get_title()


def test_a_store_without_raw_members_checks_the_bias_on_the_ensemble():
    """Mass correction off (or a store from before variants existed): the ensemble is the raw one."""
    scalars = _scalars(0.7, 1.0, -0.03).drop_sel(source="ensemble_raw")
    results = {r[0].text: (r[2].text, r[-1].text) for r in targets_table(scalars).rows}
    assert results["relative bias of the area-weighted mean"] == ("-3 %", "pass")
