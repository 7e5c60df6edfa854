"""The sources of an output store: extra member-dim variables are ensembles (after the main one), fine-grid
variables without members are baselines, and a bad extra ensemble is named in the error."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from diag_helpers import julian_times, output_grid
from downscale.diagnostics.sources import gather_sources

N, NT, K = 4, 8, 2
FINE = ("time", "tile", "grid_yt", "grid_xt")


def _store() -> xr.Dataset:
    grid = output_grid(N)
    rng = np.random.default_rng(0)

    def values(*lead):
        return rng.gamma(0.6, 2e-5, size=(*lead, NT, 6, N, N))
    coarse = ("time", "tile", "grid_yt_coarse", "grid_xt_coarse")
    return xr.Dataset(
        {"PRATEsfc_qm": (FINE, values()), "PRATEsfc_ensemble_qm": (("member", *FINE), values(K)),
         "PRATEsfc": (("member", *FINE), values(K)), "PRATEsfc_ensemble_raw": (("member", *FINE), values(K)),
         "PRATEsfc_deterministic_raw": (FINE, values()), "PRATEsfc_bilinear": (FINE, values()),
         "PRATEsfc_truth": (FINE, values()), "PRATEsfc_coarse": (coarse, values()[..., ::2, ::2]),
         "lat": grid.lat.variable, "lon": grid.lon.variable, "area": grid.area.variable},
        coords={"time": julian_times(NT)})


def test_extra_ensembles_follow_the_main_one():
    ds = _store()
    sources, _ = gather_sources(ds, factor=2)
    assert [(s.name, s.kind) for s in sources] == [
        ("ensemble", "ensemble"), ("ensemble_qm", "ensemble"), ("ensemble_raw", "ensemble"),
        ("bilinear", "baseline"), ("deterministic_raw", "baseline"), ("qm", "baseline"), ("coarse", "coarse"),
        ("truth", "truth")]
    raw = next(s for s in sources if s.name == "ensemble_raw")
    assert raw.ensemble and raw.data.dims == ("member", *FINE)
    np.testing.assert_array_equal(raw.data.values, ds.PRATEsfc_ensemble_raw.values)
    only, _ = gather_sources(ds, factor=2, ensembles=("PRATEsfc_ensemble_raw",), baselines=())
    assert [s.name for s in only] == ["ensemble", "ensemble_raw", "coarse", "truth"]


def test_a_bad_extra_ensemble_is_named():
    ds = _store()
    with pytest.raises(ValueError, match="ensemble 'PRATEsfc_bilinear' has dims"):
        gather_sources(ds, factor=2, ensembles=("PRATEsfc_bilinear",))
