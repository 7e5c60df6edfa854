"""Sampling uncertainty of extreme quantiles: a block bootstrap over whole days, on streaming histograms.

A pooled extreme quantile (the 99.9th … 99.999th percentile of every value of a region, all frames, cells and
members) rests on few values, and those are not independent: the frames of one day show the same storms. The
bootstrap therefore resamples whole days (the blocks), never single frames:

1. :func:`daily_histograms`: one area-weighted histogram per calendar day of the time stamps, pooling that
   day's frames, cells and members: ``H (day, [region,] bin)``. It streams like
   :func:`~downscale.diagnostics.histogram.histogram`: one task per block, each giving its days' counts.
2. :func:`resample_days`: resample b draws ``D`` days with replacement out of the ``D`` days of the record;
   ``m_bd`` is how often day d was drawn.
3. Resample b's histogram is ``Σ_d m_bd · H_d`` (a matrix product, cheap whatever the data size) and its
   quantile Q_b(q) is read off it (:func:`~downscale.diagnostics.distribution.histogram_quantiles`).

:func:`bootstrap_extremes` does this for every source with the *same* resampled days for all of them, so a
source's difference to the truth is a paired statistic. With ``Q`` the value on all days (each once) and
``Q_1 … Q_B`` the resamples, every statistic comes as ``stat`` = ``value`` (Q), ``lower`` and ``upper`` (the
2.5 and 97.5 % percentiles of Q_b: a percentile-bootstrap 95 % interval) and ``se`` (the standard deviation of
Q_b, the bootstrap standard error). Outputs (``extreme_quantile`` = q, default 0.999, 0.9999, 0.99999):

* ``extreme_quantile_value (source, region, extreme_quantile, stat)``: Q_s(q), kg m-2 s-1.
* ``extreme_quantile_difference (…, stat)``: Q_s(q) − Q_truth(q), paired; exactly 0 with a zero-width
  interval for a source equal to the truth.
* ``extreme_pe (…, stat)``: the PE at q, |Q_s(q) − Q_truth(q)|; its interval is that of |Q_s,b − Q_truth,b|.
* ``extreme_n_values (source, region)``: N, the number of finite values pooled (cells × frames × members).
* ``extreme_supported (source, region, extreme_quantile)``: the *supported-quantile rule*: a sample supports q
  only if the expected number of its values above Q(q), (1 − q) · N, is at least :data:`MIN_EXPECTED_ABOVE`
  = 10. (N counts values, not area: cells of a region differ in area by < 2.3×, so this is close to an
  effective count.) Above that, a quantile is an extrapolation of a handful of values, whatever its interval.

:func:`extreme_scalars` flattens them into the comparison's scalars, for each q with tag ``t`` (``q999`` for
0.999, :func:`quantile_tag`): ``t`` = Q_s(q); ``truth_t_lower``, ``truth_t_upper`` (region only) = the truth's
95 % interval; ``t_in_truth_interval`` = truth_t_lower ≤ Q_s(q) ≤ truth_t_upper (False when either is NaN);
``pe_t``, ``pe_t_lower``, ``pe_t_upper`` = the PE and its paired interval; ``supported_t``.

Bins (:data:`EXTREME_BINS`): bin 0 holds everything under 1e-6 kg m-2 s-1 (0.0864 mm/day, zeros included),
then 5000 log bins to 0.1 kg m-2 s-1, a relative width of 10^(5/5000) − 1 = 0.23 % like the default bins (a
quantile is interpolated linearly inside its bin; in a sparse tail this resolves Q and its spread to a few
tenths of a percent of Q). A quantile in bin 0 is only known to lie under 0.0864 mm/day (it is interpolated in
[0, 1e-6) like any other bin): no extreme quantile of a real record is that low. Memory: days × regions × 5001 ×
8 bytes per source (a year, 5 regions: 73 MB), and (resamples + 1) × regions × 5001 × 8 bytes for one source
at a time while bootstrapping (40 MB for 200 resamples).

Example::

    >>> h = daily_histograms(ens, regional_weights(area, lat, lon, REGIONS.values()))    # (day, region, bin), lazy
    >>> boot = bootstrap_extremes(xr.concat([h, h_truth], "source").assign_coords(source=["ensemble", "truth"]),
    ...                           n_values, n_boot=200, seed=0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dask.array as dsa
import numpy as np
import xarray as xr

from downscale.diagnostics.dims import TIME_DIM, require_dims
from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import BIN_DIM, LogBins, stacked_weights, weighted_counts

DAY_DIM = "day"
SAMPLE_DIM = "sample"
QUANTILE_DIM = "extreme_quantile"
STATS = ("value", "lower", "upper", "se")
EXTREME_QUANTILES: tuple[float, ...] = (0.999, 0.9999, 0.99999)
EXTREME_BINS = LogBins(floor=1e-6, ceiling=1e-1, bins=5000)
MIN_EXPECTED_ABOVE = 10.0


def quantile_tag(q: float) -> str:
    """Short name of a quantile: ``q`` and its digits after ``0.`` (0.999 → ``q999``, 0.99 → ``q99``)."""
    text = f"{q:.10f}".rstrip("0")
    if not (0 < q < 1) or not text.startswith("0."):
        raise ValueError(f"a quantile lies in (0, 1), got {q!r}")
    return "q" + text[2:]


def day_index(time: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """The calendar days of a (cftime or numpy) time axis and the day of each time: ``(days, index)`` with
    ``days[index[i]]`` the start of time i's day."""
    try:
        floor = time.dt.floor("D").values
    except (AttributeError, TypeError) as err:
        raise ValueError(f"time axis {time.name!r} holds no dates ({time.dtype}): days cannot be told apart") from err
    days, index = np.unique(floor, return_inverse=True)
    return days, index.ravel()


def _day_aligned_chunks(chunks: tuple[int, ...], index: np.ndarray) -> tuple[int, ...]:
    """Time chunks near ``chunks`` whose boundaries fall between days (each chunk holds whole days)."""
    day_starts = np.concatenate([[0], np.flatnonzero(np.diff(index)) + 1])
    starts = np.cumsum((0,) + tuple(chunks))[:-1]
    snapped = np.unique(day_starts[np.searchsorted(day_starts, starts, side="right") - 1])
    return tuple(int(c) for c in np.diff(np.append(snapped, index.size)))


def daily_histograms(x: xr.DataArray, weights: xr.DataArray | None = None, bins: LogBins = EXTREME_BINS,
                     time_dim: str = TIME_DIM) -> xr.DataArray:
    """One :func:`~downscale.diagnostics.histogram.histogram` of ``x`` (kg m-2 s-1) per calendar day, pooling
    the day's frames and every other dim (cells, members): ``(day, [region,] bin)`` with the ``day`` start
    times as coordinate; area-weighted with ``weights`` (e.g. ``(region, tile, y, x)`` in m²). Summed over
    ``day`` it is the pooled histogram. Lazy on dask: time is re-chunked to whole days (chunk boundaries moved
    back to the start of their day) and each block gives the counts of its days, summed over the other blocks.

    Example: ``daily_histograms(truth, regional_weights(area, lat, lon, REGIONS.values()))  # (day, region, bin)``
    """
    require_dims(x, [time_dim], "daily_histograms")
    days, index = day_index(x[time_dim])
    if np.any(np.diff(index) < 0):
        raise ValueError(f"daily_histograms: time axis {time_dim!r} is not sorted")
    x = x.transpose(time_dim, ...)
    w, extra = stacked_weights(x, weights)
    if x.chunks is None:
        counts = weighted_counts(x.values, w, bins, groups=index)
    else:
        data = x.data.rechunk({0: _day_aligned_chunks(x.data.chunks[0], index)})
        day = dsa.from_array(index.reshape((-1,) + (1,) * (x.ndim - 1)), chunks=(data.chunks[0],) + (1,) * (x.ndim - 1))
        w_data = dsa.broadcast_to(dsa.from_array(w, chunks=-1), (w.shape[0],) + x.shape)
        w_data = w_data.rechunk(((w.shape[0],),) + data.chunks)
        per_chunk = tuple(len(np.unique(c)) for c in np.split(index, np.cumsum(data.chunks[0])[:-1]))

        def block(v: np.ndarray, d: np.ndarray, wb: np.ndarray) -> np.ndarray:
            first = d.ravel()
            counts = weighted_counts(v[0], wb, bins, groups=first - first[0])
            return counts.reshape((1, counts.shape[0]) + (1,) * (v.ndim - 2) + counts.shape[1:])

        out_chunks = ((1,), per_chunk) + tuple((1,) * len(c) for c in data.chunks[1:]) + ((w.shape[0],), (bins.size,))
        blocks = dsa.map_blocks(block, data[None], day[None], w_data, new_axis=[x.ndim + 1, x.ndim + 2],
                                chunks=out_chunks, dtype=np.float64)
        counts = blocks.sum(axis=(0, *range(2, x.ndim + 1)))
    edges = bins.edges()
    coords = {DAY_DIM: days, "lower": (BIN_DIM, edges[:-1]), "upper": (BIN_DIM, edges[1:])}
    if extra is None:
        counts, dims = counts[:, 0], (DAY_DIM, BIN_DIM)
    else:
        dims = (DAY_DIM, extra, BIN_DIM)
        if extra in weights.coords:
            coords[extra] = weights[extra].values
    return xr.DataArray(counts, dims=dims, coords=coords, name="daily_histogram",
                        attrs={"units": "m2" if weights is not None else "1", "bin_floor": bins.floor,
                               "bin_ceiling": bins.ceiling, "log_bins": bins.bins})


def resample_days(n_days: int, n_boot: int, seed: int | None = 0) -> np.ndarray:
    """``(n_boot, n_days)`` multiplicities: row b counts how often each day is drawn when ``n_days`` days are
    drawn with replacement (each row sums to ``n_days``); reproducible with ``seed``.

    Example: ``resample_days(365, 200, seed=0) @ day_hist.reshape(365, -1)  # 200 resampled histograms``
    """
    if n_days < 1 or n_boot < 1:
        raise ValueError(f"need at least one day and one resample, got n_days={n_days}, n_boot={n_boot}")
    draws = np.random.default_rng(seed).integers(0, n_days, size=(n_boot, n_days))
    return np.stack([np.bincount(row, minlength=n_days) for row in draws]).astype(np.float64)


def _summarize(samples: xr.DataArray, level: float) -> xr.DataArray:
    """(sample, …) with sample 0 the full record → (…, stat): value, percentile interval, standard error."""
    boot = samples.isel({SAMPLE_DIM: slice(1, None)})
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():            # an all-NaN statistic stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lower = boot.quantile(alpha, SAMPLE_DIM).drop_vars("quantile")
        upper = boot.quantile(1.0 - alpha, SAMPLE_DIM).drop_vars("quantile")
        se = boot.std(SAMPLE_DIM, ddof=1) if boot.sizes[SAMPLE_DIM] > 1 else xr.full_like(lower, np.nan)
    parts = [samples.isel({SAMPLE_DIM: 0}, drop=True), lower, upper, se]
    out = xr.concat(parts, dim="stat", coords="minimal", compat="override").assign_coords(stat=list(STATS))
    return out.transpose(..., "stat")


def supported(n_values: xr.DataArray, quantiles: Sequence[float], min_expected: float = MIN_EXPECTED_ABOVE
              ) -> xr.DataArray:
    """The supported-quantile rule: ``(1 − q) · N ≥ min_expected`` for each q (dim ``extreme_quantile``), with
    ``N`` the number of values pooled (module docstring).

    Example: ``supported(xr.DataArray(1e5), [0.999, 0.99999])  # [True, False]``
    """
    q = xr.DataArray(np.asarray(quantiles, dtype=np.float64), dims=QUANTILE_DIM)
    expected = (1.0 - q) * n_values
    return (expected >= min_expected * (1.0 - 1e-9)).assign_coords({QUANTILE_DIM: q.values}).rename(
        "extreme_supported")


def bootstrap_extremes(day_hists: xr.DataArray, n_values: xr.DataArray,
                       quantiles: Sequence[float] = EXTREME_QUANTILES, truth: str = "truth", n_boot: int = 200,
                       seed: int | None = 0, level: float = 0.95,
                       min_expected: float = MIN_EXPECTED_ABOVE) -> xr.Dataset:
    """Day-block bootstrap of the extreme quantiles of every source and of their paired errors against
    ``truth`` (module docstring). ``day_hists (source, day, [region,] bin)`` from :func:`daily_histograms`,
    loaded, on the same days for every source; ``n_values (source, [region])`` the values pooled (for the
    supported-quantile rule). Returns ``extreme_quantile_value``, ``extreme_quantile_difference``, ``extreme_pe``
    (… , extreme_quantile, stat) in kg m-2 s-1, ``extreme_supported`` and ``extreme_n_values``.

    Example: ``bootstrap_extremes(h, n, n_boot=200).extreme_pe.sel(stat="upper")``
    """
    require_dims(day_hists, ["source", DAY_DIM, BIN_DIM], "bootstrap_extremes")
    if truth not in day_hists["source"].values:
        raise ValueError(f"bootstrap_extremes: no source {truth!r} among {list(day_hists['source'].values)}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    h = day_hists.transpose("source", DAY_DIM, ..., BIN_DIM)
    n_days = h.sizes[DAY_DIM]
    weights = np.vstack([np.ones((1, n_days)), resample_days(n_days, n_boot, seed)])   # sample 0: every day once
    mult = xr.DataArray(weights, dims=(SAMPLE_DIM, DAY_DIM))
    per_source = [histogram_quantiles(xr.dot(mult, h.isel(source=[i]).drop_vars(DAY_DIM, errors="ignore"),
                                             dim=DAY_DIM), quantiles)      # one source at a time: memory
                  for i in range(h.sizes["source"])]
    q = xr.concat(per_source, dim="source").transpose(SAMPLE_DIM, "source", ...).rename(quantile=QUANTILE_DIM)
    diff = q - q.sel(source=truth, drop=True)                 # the same resampled days: paired
    out = xr.Dataset({
        "extreme_quantile_value": _summarize(q, level).assign_attrs(
            units="kg m-2 s-1", long_name="pooled area-weighted quantile with its day-block bootstrap interval"),
        "extreme_quantile_difference": _summarize(diff, level).assign_attrs(
            units="kg m-2 s-1", long_name="quantile minus the truth's, paired day-block bootstrap interval"),
        "extreme_pe": _summarize(abs(diff), level).assign_attrs(
            units="kg m-2 s-1", long_name="|quantile minus the truth's| (PE), paired day-block bootstrap interval"),
        "extreme_n_values": n_values.assign_attrs(units="1", long_name="number of values pooled"),
        "extreme_supported": supported(n_values, quantiles, min_expected).transpose(..., QUANTILE_DIM).assign_attrs(
            long_name=f"(1 - q) * n_values >= {min_expected:g}"),
    })
    method = {"n_boot": n_boot, "n_days": n_days, "interval_level": level, "block": "calendar day",
              "seed": -1 if seed is None else seed}
    for name in ("extreme_quantile_value", "extreme_quantile_difference", "extreme_pe"):
        out[name].attrs.update(method)
    return out


def extreme_scalars(ext: xr.Dataset, truth: str = "truth") -> dict[str, xr.DataArray]:
    """The flat scalars of :func:`bootstrap_extremes`' output (module docstring), per quantile tag ``t``:
    ``t``, ``truth_t_lower``, ``truth_t_upper``, ``t_in_truth_interval``, ``pe_t``, ``pe_t_lower``,
    ``pe_t_upper``, ``supported_t``.

    Example: ``extreme_scalars(boot)["q999_in_truth_interval"].sel(source="ensemble", region="global")``
    """
    out = {}
    flux = {"units": "kg m-2 s-1"}
    for q in ext[QUANTILE_DIM].values:
        tag = quantile_tag(float(q))
        value = ext.extreme_quantile_value.sel({QUANTILE_DIM: q}, drop=True)
        pe = ext.extreme_pe.sel({QUANTILE_DIM: q}, drop=True)
        t = value.sel(source=truth, drop=True)
        lower, upper = t.sel(stat="lower", drop=True), t.sel(stat="upper", drop=True)
        v = value.sel(stat="value", drop=True)
        out[tag] = v.assign_attrs(flux, long_name=f"pooled {q:g} quantile (extreme bins)")
        out[f"truth_{tag}_lower"] = lower.assign_attrs(flux, long_name=f"truth's {q:g} quantile: lower 95 % bound")
        out[f"truth_{tag}_upper"] = upper.assign_attrs(flux, long_name=f"truth's {q:g} quantile: upper 95 % bound")
        out[f"{tag}_in_truth_interval"] = ((v >= lower) & (v <= upper)).assign_attrs(
            long_name=f"{q:g} quantile inside the truth's bootstrap 95 % interval")
        for stat, suffix in (("value", ""), ("lower", "_lower"), ("upper", "_upper")):
            out[f"pe_{tag}{suffix}"] = pe.sel(stat=stat, drop=True).assign_attrs(
                flux, long_name=f"PE at the {q:g} quantile" + (f" ({stat} 95 % bound)" if suffix else ""))
        out[f"supported_{tag}"] = ext.extreme_supported.sel({QUANTILE_DIM: q}, drop=True)
    return out
