"""Streaming, area-weighted histograms of precipitation on fixed log-spaced bins.

Pooled distributions of a year of C384 output (~10⁹–10¹⁰ values per source) do not fit in memory and
exact quantiles would need a global sort. Instead each dask block is binned on its own and the counts
are summed (one small array per block, a tree reduction), so the cost is one streaming pass and the
result a few tens of kB whatever the data size. Quantiles, Q–Q curves and the Wasserstein distance are
then read off the counts (:mod:`downscale.diagnostics.distribution`).

Bins (:class:`LogBins`): bin 0 holds [0, floor) (zeros and drizzle), bins 1..n are equally spaced in
log10 from ``floor`` to ``ceiling``; values ≥ ceiling go to the last bin, tiny negatives to bin 0, NaNs
are skipped. The defaults (1e-10 … 1e-1 kg m-2 s-1 = 8.6e-6 … 8640 mm/day, 8000 bins) have a relative
bin width of 10^(9/8000) − 1 = 0.26 %, which bounds the error of a quantile read inside a bin.

Example::

    >>> h = histogram(precip, weights=area)       # DataArray (bin,), lazy on dask; units m² (area-weighted)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dask.array as dsa
import numpy as np
import xarray as xr

BIN_DIM = "bin"


@dataclass(frozen=True)
class LogBins:
    """Bin 0 = [0, floor); ``bins`` log-spaced bins from ``floor`` to ``ceiling`` (kg m-2 s-1)."""

    floor: float = 1e-10
    ceiling: float = 1e-1
    bins: int = 8000

    def __post_init__(self) -> None:
        if not (0 < self.floor < self.ceiling) or self.bins < 1:
            raise ValueError(f"log bins need 0 < floor < ceiling and bins >= 1, got {self}")

    @property
    def size(self) -> int:
        """Number of bins, bin 0 included."""
        return self.bins + 1

    def edges(self) -> np.ndarray:
        """The ``size + 1`` bin edges: 0, floor, …, ceiling."""
        return np.concatenate([[0.0], np.logspace(np.log10(self.floor), np.log10(self.ceiling), self.bins + 1)])

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each (finite) value."""
        lf, lc = np.log10(self.floor), np.log10(self.ceiling)
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = (np.log10(np.maximum(v, self.floor)) - lf) / (lc - lf) * self.bins
        idx = 1 + np.clip(np.floor(pos), 0, self.bins - 1).astype(np.int64)
        return np.where(v < self.floor, 0, idx)


DEFAULT_BINS = LogBins()


def weighted_counts(values: np.ndarray, weights: np.ndarray, bins: LogBins,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """(R, size) counts: the bin index of each value is computed once, then counted with each of the R
    weight sets ``weights (R, …)`` (broadcastable to the values). With ``groups`` (one integer ≥ 0 per index
    of the values' first axis, e.g. the day of each frame) the counts are kept apart per group:
    ``(n_groups, R, size)`` with ``n_groups = groups.max() + 1``."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v).ravel()
    code = bins.index(v.ravel()[ok])
    n_groups = 1
    if groups is not None:
        n_groups = int(groups.max()) + 1
        code = code + np.broadcast_to(groups.reshape((-1,) + (1,) * (v.ndim - 1)), v.shape).ravel()[ok] * bins.size
    counts = np.empty((n_groups, weights.shape[0], bins.size))
    for r in range(weights.shape[0]):          # one weight set at a time: memory of one block, not R
        w = np.broadcast_to(weights[r], v.shape).ravel()[ok]
        counts[:, r] = np.bincount(code, weights=w, minlength=n_groups * bins.size).reshape(n_groups, bins.size)
    return counts if groups is not None else counts[0]


def stacked_weights(values: xr.DataArray, weights: xr.DataArray | None) -> tuple[np.ndarray, str | None]:
    """Weights as numpy ``(R, …)`` broadcastable to ``(R, *values.shape)`` (R = 1 without an extra dim),
    and the name of the one weight dim the values lack (e.g. ``region``), if any."""
    if weights is None:
        return np.ones((1,) * (values.ndim + 1)), None
    extra = [d for d in weights.dims if d not in values.dims]
    if len(extra) > 1:
        raise ValueError(f"weights {weights.name!r} may add at most one dim to {values.name!r} "
                         f"{tuple(values.dims)}, got {extra}")
    inner = [d for d in values.dims if d in weights.dims]
    w = np.asarray(weights.transpose(*extra, *inner).values, dtype=np.float64)
    shape = [weights.sizes[extra[0]] if extra else 1] + [values.sizes[d] if d in weights.dims else 1
                                                         for d in values.dims]
    return w.reshape(shape), (extra[0] if extra else None)


def reduce_blocks(func: Callable[[np.ndarray, np.ndarray], np.ndarray], values: xr.DataArray,
                  weights: xr.DataArray | None, size: int) -> tuple[np.ndarray | dsa.Array, str | None]:
    """Σ over blocks of ``func(value_block, weight_block (R, …)) -> (R, size)``, and the extra weight dim
    (R along it; None and R = 1 without one). Weights are loaded (a static field is small); numpy in →
    numpy out, dask in → a lazy dask array with one small task per block (nothing is computed)."""
    w, extra = stacked_weights(values, weights)
    n_sets = w.shape[0]
    if values.chunks is None:
        return func(values.values, w), extra
    data = values.data[None]                                  # a leading axis for the weight sets
    ndim = data.ndim
    w_data = dsa.broadcast_to(dsa.from_array(w, chunks=-1), (n_sets,) + values.shape)
    w_data = w_data.rechunk(((n_sets,),) + values.data.chunks)

    def block(v: np.ndarray, wb: np.ndarray) -> np.ndarray:
        return func(v[0], wb).reshape((1,) * ndim + (n_sets, size))

    per_block = dsa.map_blocks(block, data, w_data, new_axis=[ndim, ndim + 1], dtype=np.float64,
                               chunks=tuple((1,) * len(c) for c in data.chunks) + ((n_sets,), (size,)))
    return per_block.sum(axis=tuple(range(ndim))), extra


def histogram(x: xr.DataArray, weights: xr.DataArray | None = None, bins: LogBins = DEFAULT_BINS) -> xr.DataArray:
    """Counts of ``x`` (kg m-2 s-1, any dims, pooled over all) in ``bins``, each value counted with
    its ``weights`` (e.g. cell area in m², zero outside a region; broadcast over the other dims).
    Weights with one more dim, e.g. ``(region, tile, y, x)``, give one histogram per region in the
    same pass (the bin of each value is found once).

    Returns ``([region,] bin)`` float64 with coords ``lower``/``upper`` (bin edges, kg m-2 s-1); lazy on dask.

    Example: ``histogram(ens, area)  # every member, time and cell, weighted by its area``
    """
    counts, extra = reduce_blocks(lambda v, w: weighted_counts(v, w, bins), x, weights, bins.size)
    edges = bins.edges()
    coords = {"lower": (BIN_DIM, edges[:-1]), "upper": (BIN_DIM, edges[1:])}
    if extra is None:
        counts, dims = counts[0], (BIN_DIM,)
    else:
        dims = (extra, BIN_DIM)
        if extra in weights.coords:
            coords[extra] = weights[extra].values
    return xr.DataArray(counts, dims=dims, name=f"{x.name or 'values'}_histogram", coords=coords,
                        attrs={"units": "m2" if weights is not None else "1",
                               "long_name": "area-weighted counts" if weights is not None else "counts",
                               "bin_floor": bins.floor, "bin_ceiling": bins.ceiling, "log_bins": bins.bins})


def regional_histograms(x: xr.DataArray, weights: xr.DataArray, bins: LogBins = DEFAULT_BINS,
                        region_dim: str = "region") -> xr.DataArray:
    """:func:`histogram` for stacked weights ``(region, tile, y, x)``: ``(region, bin)``, one pass.

    Example: ``regional_histograms(truth, regional_weights(area, lat, lon, REGIONS.values()))``
    """
    if region_dim not in weights.dims:
        raise ValueError(f"regional_histograms: weights lack the {region_dim!r} dim (have {tuple(weights.dims)})")
    return histogram(x, weights, bins)


def density(hist: xr.DataArray, log: bool = False) -> xr.DataArray:
    """Probability density per unit precipitation rate, counts / (total · bin width), in
    (kg m-2 s-1)⁻¹; ``log=True`` gives its log10 (NaN for empty bins), for plots over decades.

    Example: ``density(histogram(truth, area), log=True)``
    """
    width = hist["upper"] - hist["lower"]
    dens = hist / (hist.sum(BIN_DIM) * width)
    if log:
        dens = np.log10(dens.where(dens > 0))
    return dens.rename("log10_density" if log else "density")
