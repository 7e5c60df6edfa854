"""Validation diagnostics of downscaled precipitation — the metrics library: pure xarray/dask functions over
named dims, area-weighted with the cube's cell area, streaming over data larger than memory. They are composed
into the score of an output store by :mod:`downscale.evaluation` (which also names the regions and targets).

Modules (one concept each): :mod:`~downscale.diagnostics.weights` (area weights, the region mask),
:mod:`~downscale.diagnostics.skill` (MSE/MAE, fair and standard CRPS, spread–skill, rank histogram),
:mod:`~downscale.diagnostics.histogram` and :mod:`~downscale.diagnostics.distribution` (pooled
histograms, quantiles, PE, EMD, exceedances, wet days, dry spells), :mod:`~downscale.diagnostics.extremes`
(GPD return levels), :mod:`~downscale.diagnostics.uncertainty` (day-block bootstrap of extreme quantiles),
:mod:`~downscale.diagnostics.reliability` (Brier score, reliability diagram),
:mod:`~downscale.diagnostics.structure` (SAE, spectra, autocorrelation, diurnal cycle),
:mod:`~downscale.diagnostics.climatology` (mean and bias maps),
:mod:`~downscale.diagnostics.consistency` (seams, window joins, mass) and
:mod:`~downscale.diagnostics.sources` (the sources of an output store).

Example::

    >>> from downscale.diagnostics import skill, weights
    >>> weights.weighted_mean(skill.crps_ensemble(ens, truth), area)
"""

from downscale.diagnostics.dims import INTERNAL, OUTPUT, Dims
from downscale.diagnostics.weights import Region, region_weights, weighted_mean

__all__ = ["INTERNAL", "OUTPUT", "Dims", "Region", "region_weights", "weighted_mean"]
