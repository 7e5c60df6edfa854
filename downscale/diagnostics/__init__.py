"""Validation diagnostics of downscaled precipitation: pure xarray/dask functions over named dims,
area-weighted with the cube's cell area, streaming over data larger than memory.

Modules (one concept each): :mod:`~downscale.diagnostics.weights` (area weights, regions),
:mod:`~downscale.diagnostics.skill` (MSE/MAE, fair and standard CRPS, spread–skill, rank histogram),
:mod:`~downscale.diagnostics.histogram` and :mod:`~downscale.diagnostics.distribution` (pooled
histograms, quantiles, PE, EMD, exceedances, wet days, dry spells), :mod:`~downscale.diagnostics.extremes`
(GPD return levels), :mod:`~downscale.diagnostics.uncertainty` (day-block bootstrap of extreme quantiles),
:mod:`~downscale.diagnostics.reliability` (Brier score, reliability diagram),
:mod:`~downscale.diagnostics.structure` (SAE, spectra, autocorrelation, diurnal cycle),
:mod:`~downscale.diagnostics.climatology` (mean and bias maps),
:mod:`~downscale.diagnostics.consistency` (seams, window joins, mass) and
:mod:`~downscale.diagnostics.compare` (everything for every source, writers).

Example::

    >>> from downscale.diagnostics.compare import CompareConfig, compare, write_comparison
    >>> write_comparison(compare(xr.open_zarr("outputs.zarr"), CompareConfig(factor=8)), "diagnostics/")
"""

from downscale.diagnostics.compare import CompareConfig, Comparison, write_comparison
from downscale.diagnostics.dims import INTERNAL, OUTPUT, Dims
from downscale.diagnostics.weights import REGIONS, Region, region_weights, weighted_mean

__all__ = ["INTERNAL", "OUTPUT", "REGIONS", "CompareConfig", "Comparison", "Dims", "Region", "region_weights",
           "weighted_mean", "write_comparison"]
