"""The report's annual and seasonal climatology: the headline says what it judges, the climatology tables show
the seasons the record holds (and name the absent ones) with their intervals, and the annual-maximum map is
drawn; the pass/miss marks follow the spread rule."""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from downscale.evaluation.results import read_diagnostics
from downscale.report.climate_tables import climate_table, present_periods


def test_headline_and_climatology_sections(report_run):
    page = report_run.html.read_text(encoding="utf-8")
    assert re.search(r"This report judges 0\.03 years of one held-out member, downscaled with 3 ensemble members",
                     page)                                                          # 12 days / 365.25
    for anchor in ('id="climatology"', 'id="annual-maxima"', 'id="table-climate-annual"', 'id="table-climate-djf"',
                   'id="table-wet-dry-seasons"', "annual-max-daily"):
        assert anchor in page, anchor
    assert "absent: MAM, JJA, SON" in page
    assert 'id="table-climate-jja"' not in page
    assert "95 % day-block interval" in page                                        # the intervals, as tooltips


def test_present_periods_of_the_report_store(report_run):
    scalars = read_diagnostics(report_run.diagnostics).scalars
    assert present_periods(scalars) == ["annual", "DJF"]


def _scalars(within: float, significant: float) -> xr.Dataset:
    dims = ("source", "climate_region", "period")
    coords = {"source": ["truth", "x"], "climate_region": ["global"], "period": ["annual"], "period_days": (
        "period", [365])}
    full = lambda v: (dims, np.full((2, 1, 1), v))  # noqa: E731
    return xr.Dataset({"clim_mean": full(2.0), "clim_percent_bias": full(5.0), "clim_bias": full(0.1),
                       "clim_bias_lower": full(-0.1), "clim_bias_upper": full(0.3),
                       "clim_member_lower": full(np.nan), "clim_member_upper": full(np.nan),
                       "clim_within_spread": full(within), "clim_bias_significant": full(significant)},
                      coords=coords)


def test_marks_follow_the_spread_rule():
    ensemble_in = climate_table(_scalars(1.0, 1.0), "annual").rows[1][1]
    ensemble_out = climate_table(_scalars(0.0, 0.0), "annual").rows[1][1]
    deterministic_ok = climate_table(_scalars(np.nan, 0.0), "annual").rows[1][1]
    deterministic_off = climate_table(_scalars(np.nan, 1.0), "annual").rows[1][1]
    assert [c.status for c in (ensemble_in, ensemble_out, deterministic_ok, deterministic_off)] == [
        "pass", "miss", "pass", "miss"]
    assert ensemble_in.text == "2 (+5.0 %)"
