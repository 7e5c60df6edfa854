"""Climatology maps and their biases: annual and seasonal (DJF/MAM/JJA/SON) means, absolute and percent
bias maps, and area-weighted global and regional means. Works on cftime (Julian) time; lazy on dask.

Seasons come from ``time.dt.season`` (calendar months), so with a one-year record DJF pools January,
February and the December of the same year (not a contiguous winter). "Annual" is one mean per
calendar year present (``time.dt.year``); a 13-month record therefore gives two years, the second of
one month: select the year(s) you want first (the first month of an STVD run is spin-up).

Percent bias: 100 · (f̄ − ȳ) / ȳ where ȳ > ``min_truth`` (default 0.1 mm/day), NaN elsewhere (deserts
would otherwise dominate any map of ratios).

Example::

    >>> maps = seasonal_mean(ens.mean("member"))                    # (season, tile, grid_yt, grid_xt)
    >>> pb = percent_bias_map(maps, seasonal_mean(truth))
    >>> regional_means(annual_mean(truth), area, lat, lon, REGIONS.values())   # (year, region)
"""

from __future__ import annotations

from collections.abc import Iterable

import xarray as xr

from downscale.diagnostics.dims import SPATIAL_DIMS, TIME_DIM, require_dims
from downscale.diagnostics.weights import Region, regional_weights, weighted_mean

SEASONS = ("DJF", "MAM", "JJA", "SON")
SECONDS_PER_DAY = 86400.0
MIN_TRUTH_MM_DAY = 0.1


def time_mean(x: xr.DataArray, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Mean over the whole record, a map in the units of ``x``.

    Example: ``time_mean(truth)  # (tile, grid_yt, grid_xt), kg m-2 s-1``
    """
    require_dims(x, [time_dim], "time_mean")
    return x.mean(time_dim).assign_attrs(x.attrs)


def annual_mean(x: xr.DataArray, time_dim: str = TIME_DIM) -> xr.DataArray:
    """One mean map per calendar year present, dim ``year``.

    Example: ``annual_mean(truth).sel(year=2017)``
    """
    require_dims(x, [time_dim], "annual_mean")
    return x.groupby(x[time_dim].dt.year.rename("year")).mean(time_dim).assign_attrs(x.attrs)


def seasonal_mean(x: xr.DataArray, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Mean maps per season, dim ``season`` ordered DJF, MAM, JJA, SON (NaN for a season without data).

    Example: ``seasonal_mean(ens.mean("member")).sel(season="JJA")``
    """
    require_dims(x, [time_dim], "seasonal_mean")
    means = x.groupby(x[time_dim].dt.season.rename("season")).mean(time_dim)
    return means.reindex(season=list(SEASONS)).assign_attrs(x.attrs)


def bias_map(forecast_mean: xr.DataArray, truth_mean: xr.DataArray) -> xr.DataArray:
    """``forecast_mean − truth_mean`` (maps of the same dims), units of the inputs.

    Example: ``bias_map(time_mean(ens.mean("member")), time_mean(truth))``
    """
    return (forecast_mean - truth_mean).rename("bias").assign_attrs(units=truth_mean.attrs.get("units", ""))


def percent_bias_map(forecast_mean: xr.DataArray, truth_mean: xr.DataArray,
                     min_truth: float = MIN_TRUTH_MM_DAY / SECONDS_PER_DAY) -> xr.DataArray:
    """100 · (f̄ − ȳ) / ȳ in %, NaN where ȳ ≤ ``min_truth`` (units of the data; default 0.1 mm/day
    expressed in kg m-2 s-1).

    Example: ``percent_bias_map(time_mean(baseline), time_mean(truth))  # %``
    """
    ok = truth_mean > min_truth
    return (100.0 * (forecast_mean - truth_mean) / truth_mean.where(ok)).rename("percent_bias") \
        .assign_attrs(units="%", min_truth=min_truth)


def regional_means(x: xr.DataArray, area: xr.DataArray, lat: xr.DataArray, lon: xr.DataArray,
                   regions: Iterable[Region],
                   spatial_dims: tuple[str, str, str] = SPATIAL_DIMS) -> xr.DataArray:
    """Area-weighted means of ``x`` over ``spatial_dims`` for each region, dim ``region`` (other dims kept).

    Example: ``regional_means(time_mean(truth), area, lat, lon, [REGIONS["california"]]) * 86400  # mm/day``
    """
    require_dims(x, list(spatial_dims), "regional_means")
    w = regional_weights(area, lat, lon, regions)
    return weighted_mean(x, w, list(spatial_dims)).rename(x.name).assign_attrs(x.attrs)


def climatology_maps(forecast: xr.DataArray, truth: xr.DataArray, time_dim: str = TIME_DIM) -> xr.Dataset:
    """Record-mean and seasonal-mean maps of ``forecast`` and ``truth`` with bias and percent bias.

    Returns variables ``mean``, ``truth_mean``, ``bias``, ``percent_bias`` (spatial dims) and
    ``seasonal_mean``, ``truth_seasonal_mean``, ``seasonal_bias``, ``seasonal_percent_bias``
    (``season`` + spatial dims).

    Example: ``climatology_maps(ens.mean("member"), truth)["seasonal_percent_bias"]``
    """
    f, y = time_mean(forecast, time_dim), time_mean(truth, time_dim)
    fs, ys = seasonal_mean(forecast, time_dim), seasonal_mean(truth, time_dim)
    units = truth.attrs.get("units", "")
    return xr.Dataset({
        "mean": f.assign_attrs(units=units), "truth_mean": y.assign_attrs(units=units),
        "bias": bias_map(f, y), "percent_bias": percent_bias_map(f, y),
        "seasonal_mean": fs.assign_attrs(units=units), "truth_seasonal_mean": ys.assign_attrs(units=units),
        "seasonal_bias": bias_map(fs, ys), "seasonal_percent_bias": percent_bias_map(fs, ys),
    })


def relative_bias(forecast: xr.DataArray, truth: xr.DataArray, weights: xr.DataArray) -> xr.DataArray:
    """Area-weighted relative bias ⟨f − y⟩ / ⟨y⟩ over all dims (dimensionless), e.g. 0.05 = 5 % too wet.

    Example: ``relative_bias(baseline, truth, area)  # 0.05 = 5 % too wet``
    """
    return (weighted_mean(forecast - truth, weights) / weighted_mean(truth, weights)).rename("relative_bias") \
        .assign_attrs(units="1")

