"""Spatial and temporal structure: spatial autocorrelation (SAE), power spectra per tile, temporal
autocorrelation at 3–24 h lags and the diurnal cycle by local solar time. Lazy on dask throughout.

* Spatial autocorrelation of a frame: Moran's I over rook neighbours on the whole cube — pairs of
  cells adjacent in x or y inside a tile, and the pairs across the 12 tile edges (one-cell halo from
  :func:`data_catalog.halo.halo_pad`; the E and N edges of the six tiles are each cube edge once, so
  every pair counts once). Every cell then has 4 neighbours: P = 2 N pairs for N = 6 n² cells. With
  z = f − f̄ over the frame:

      I = (N / P) · Σ_pairs z_a z_b / Σ_cells z²

  (``across_edges=False`` keeps only the pairs inside tiles, P = 6 · 2 n (n − 1): the former definition.)
  SAE = mean over frames (and members) of |I_forecast − I_truth| — dimensionless. The STVD paper names
  the metric but does not define it precisely; this is our definition, so SAE values are comparable
  between our sources, not with the paper's number. Frames with no variance (all dry) are skipped.
* Power spectrum of one tile (n_y × n_x): remove the mean, multiply by a 2-D Hann window w, FFT, and
  sum |F|² / (n_y n_x Σw²) over rings of integer index wavenumber k = round(√(k_x² + k_y²)),
  k = 0 … min(n_y, n_x)/2. Σ_k E(k) ≈ the tile's variance less what the window and the ring cut
  (k > n/2, ~21 % of the modes) drop, so E(k) is in (kg m-2 s-1)² per unit index wavenumber (k cycles
  per tile edge). The spectrum on the whole sphere, by total wavenumber, that keeps every mode is
  :func:`~downscale.diagnostics.sphere_spectrum.sphere_power_spectrum` (re-exported here).
* Band power: ``band_power_ratio(E_f, E_y, low, high) = ln(Σ_{low ≤ k ≤ high} E_f / Σ_{low ≤ k ≤ high} E_y)``,
  0 when a band holds the truth's power, < 0 when it is too smooth. The fine-scale band (wavelengths of
  ≤ 4 fine cells) is k ≥ n/4 per tile (:func:`fine_band_tile`) and l ≥ n on the sphere
  (:func:`fine_band_sphere`: a tile edge is a quarter of a great circle, so l ≈ 4k).
* Temporal autocorrelation at lag L of each cell's anomaly a = f − f̄ (time mean):
  r(L) = mean_t(a_t a_{t+L}) / mean_t(a_t²), then area-weighted over cells (cells with no variance skipped);
  computed from per-cell sums (:func:`autocorrelation_sums`) that consecutive blocks of a record add up to.
* Diurnal cycle: mean rate in bins of local solar time LST = UTC hour + lon/15 (mod 24), area-weighted.

Example::

    >>> sae = spatial_autocorrelation_error(ens, truth)                    # 0-d, dimensionless
    >>> spec = power_spectrum(truth)                                          # (wavenumber,)
    >>> band_power_ratio(power_spectrum(ens), spec, *fine_band_tile(64))      # ln ratio, 0-d
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from data_catalog.halo import halo_pad
from downscale.diagnostics.dims import SPATIAL_DIMS, TIME_DIM, drop_coords_on, require_dims, time_step_seconds
from downscale.diagnostics.sphere_spectrum import sphere_power_spectrum
from downscale.diagnostics.weights import weighted_mean

__all__ = ["DEFAULT_LAGS_HOURS", "autocorrelation_from_sums", "autocorrelation_sums", "band_power_ratio",
           "diurnal_cycle", "diurnal_from_sums", "diurnal_sums", "fine_band_sphere", "fine_band_tile", "morans_i",
           "power_spectrum", "spatial_autocorrelation_error", "sphere_power_spectrum", "temporal_autocorrelation"]

DEFAULT_LAGS_HOURS = (3, 6, 9, 12, 15, 18, 21, 24)


def _bare(x: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """``x`` as float64 without coordinates on ``dims`` (so slices combine by position)."""
    return drop_coords_on(x, list(dims)).astype(np.float64)


# --- spatial autocorrelation -----------------------------------------------------------------------

def _morans_i(field: np.ndarray, across_edges: bool) -> np.ndarray:
    """(…, tiles, n_y, n_x) → (…,): Moran's I of each frame (module docstring); NaN without variance."""
    f = np.asarray(field, dtype=np.float64)
    n_tiles, ny, nx = f.shape[-3:]
    axes = (-3, -2, -1)
    n_cells = float(n_tiles * ny * nx)
    mean = f.mean(axis=axes, keepdims=True)
    z = f - mean
    if across_edges:
        p = halo_pad(z, 1)                           # pairs (i, i + 1) for i = 0 … n − 1: the last crosses E/N
        inner = p[..., 1:-1, 1:-1]
        cross = (inner * p[..., 1:-1, 2:]).sum(axis=axes) + (inner * p[..., 2:, 1:-1]).sum(axis=axes)
        n_pairs = 2.0 * n_cells
    else:
        cross = (z[..., :, :-1] * z[..., :, 1:]).sum(axis=axes) + (z[..., :-1, :] * z[..., 1:, :]).sum(axis=axes)
        n_pairs = float(n_tiles * (ny * (nx - 1) + (ny - 1) * nx))
    var = (z**2).sum(axis=axes)
    scale = np.abs(mean[..., 0, 0, 0]) + np.sqrt(np.abs((f**2).mean(axis=axes)))
    ok = var > 1e-12 * n_cells * scale**2          # relative test: a constant frame is not "autocorrelated"
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (n_cells / n_pairs) * cross / np.where(ok, var, 1.0), np.nan)


def morans_i(x: xr.DataArray, spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
             across_edges: bool = True) -> xr.DataArray:
    """Moran's I (rook neighbours on the cube, across tile edges unless ``across_edges=False``) of every
    frame of ``x``: reduces ``spatial_dims`` ``(tile, y, x)`` and keeps the other dims; NaN for a frame
    without variance. Dimensionless. Lazy on dask, the spatial dims gathered into one chunk.

    Example: ``morans_i(truth)  # (time,)``
    """
    require_dims(x, list(spatial_dims), "morans_i")
    if across_edges and (x.sizes[spatial_dims[0]] != 6 or x.sizes[spatial_dims[1]] != x.sizes[spatial_dims[2]]):
        raise ValueError(f"morans_i: pairs across tile edges need 6 square tiles on {spatial_dims}, got sizes "
                         f"{[x.sizes[d] for d in spatial_dims]} (across_edges=False counts pairs inside tiles)")
    f = _bare(x, spatial_dims)
    if f.chunks is not None:
        f = f.chunk({d: -1 for d in spatial_dims})
    out = xr.apply_ufunc(_morans_i, f, kwargs={"across_edges": across_edges}, input_core_dims=[list(spatial_dims)],
                         dask="parallelized", output_dtypes=[np.float64], keep_attrs=False)
    return out.rename("morans_i").assign_attrs(units="1")


def spatial_autocorrelation_error(forecast: xr.DataArray, truth: xr.DataArray,
                                  spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                                  across_edges: bool = True) -> xr.DataArray:
    """SAE: mean over frames (and any member dim) of |I(forecast) − I(truth)|, dimensionless, 0-d; Moran's
    I counts the pairs across tile edges unless ``across_edges=False``.

    Example: ``spatial_autocorrelation_error(ens, truth)``
    """
    diff = abs(morans_i(forecast, spatial_dims, across_edges) - morans_i(truth, spatial_dims, across_edges))
    return diff.mean(skipna=True).rename("sae").assign_attrs(units="1", definition="mean |Moran's I difference|")


# --- power spectra ---------------------------------------------------------------------------------

def _radial_spectrum(field: np.ndarray, n_k: int) -> np.ndarray:
    """(…, n_y, n_x) → (…, n_k): Hann window, FFT, |F|² summed over rings of integer wavenumber."""
    ny, nx = field.shape[-2:]
    window = np.outer(np.hanning(ny), np.hanning(nx))
    f = np.asarray(field, dtype=np.float64)
    f = (f - f.mean(axis=(-2, -1), keepdims=True)) * window
    power = np.abs(np.fft.fft2(f)) ** 2 / (nx * ny * np.sum(window**2))
    ky, kx = np.meshgrid(np.fft.fftfreq(ny) * ny, np.fft.fftfreq(nx) * nx, indexing="ij")
    ring = np.rint(np.hypot(kx, ky)).astype(np.int64).ravel()
    keep = ring < n_k
    flat = power.reshape((-1, ny * nx))[:, keep]                    # (frames, cells inside the ring k < n_k)
    frame = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    out = np.bincount(frame * n_k + np.tile(ring[keep], flat.shape[0]), weights=flat.ravel(),
                      minlength=flat.shape[0] * n_k)
    return out.reshape(power.shape[:-2] + (n_k,))


def power_spectrum(x: xr.DataArray, spatial_dims: tuple[str, str, str] = SPATIAL_DIMS,
                   mean_dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Radially summed, Hann-windowed power spectrum of each tile of ``x`` (module docstring), dim
    ``wavenumber`` = 0 … n/2 (cycles per tile edge), averaged over ``mean_dims`` (default: every other dim,
    tiles included). Units: (units of x)². The (y, x) dims are gathered into one chunk on dask.

    Example: ``power_spectrum(truth, mean_dims=["time"])  # one spectrum per tile``
    """
    require_dims(x, list(spatial_dims), "power_spectrum")
    _, ydim, xdim = spatial_dims
    n_k = min(x.sizes[ydim], x.sizes[xdim]) // 2 + 1
    f = _bare(x, [ydim, xdim])
    if f.chunks is not None:
        f = f.chunk({ydim: -1, xdim: -1})
    spec = xr.apply_ufunc(_radial_spectrum, f, kwargs={"n_k": n_k}, input_core_dims=[[ydim, xdim]],
                          output_core_dims=[["wavenumber"]], dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"output_sizes": {"wavenumber": n_k}})
    mean_dims = [d for d in spec.dims if d != "wavenumber"] if mean_dims is None else list(mean_dims)
    out = spec.mean(mean_dims).assign_coords(wavenumber=np.arange(n_k))
    units = x.attrs.get("units")
    return out.rename("power_spectrum").assign_attrs(units=f"({units})2" if units else "")


def fine_band_tile(n: int) -> tuple[int, int]:
    """Index wavenumbers k of the per-tile spectrum of C-``n`` with wavelengths ≤ 4 fine cells:
    ⌈n/4⌉ … n/2 (inclusive)."""
    return math.ceil(n / 4), n // 2


def fine_band_sphere(n: int, l_max: int | None = None) -> tuple[int, int | None]:
    """Total wavenumbers l of the sphere spectrum of C-``n`` with wavelengths ≤ 4 fine cells: n … l_max
    (l ≈ 4k, a tile edge being a quarter of a great circle; ``None`` = to the spectrum's end)."""
    return n, l_max


def band_power_ratio(spec_forecast: xr.DataArray, spec_truth: xr.DataArray, low: float,
                     high: float | None = None, dim: str | None = None) -> xr.DataArray:
    """ln( Σ_{low ≤ k ≤ high} E_forecast(k) / Σ_{low ≤ k ≤ high} E_truth(k) ), summed over the wavenumber
    coordinate ``dim`` (default: whichever of ``wavenumber`` / ``total_wavenumber`` the spectrum has);
    ``high=None`` runs to the end. Other dims broadcast (e.g. ``source``). Dimensionless: 0 = the truth's
    band power, ln 2 = twice it, −∞ when the forecast has none.

    Example: ``band_power_ratio(curves.power_spectrum, curves.power_spectrum.sel(source="truth"), 16)``
    """
    if dim is None:
        found = [d for d in ("wavenumber", "total_wavenumber") if d in spec_forecast.dims]
        if len(found) != 1:
            raise ValueError(f"band_power_ratio: pass dim= (spectrum dims {spec_forecast.dims})")
        dim = found[0]
    band = {dim: slice(low, high)}
    if spec_forecast.sel(band).sizes[dim] == 0:
        raise ValueError(f"band_power_ratio: no {dim} in [{low}, {high}]")
    with np.errstate(divide="ignore"):
        out = np.log(spec_forecast.sel(band).sum(dim) / spec_truth.sel(band).sum(dim))
    return out.rename("band_power_log_ratio").assign_attrs(units="1", band=f"{dim} {low}..{high}")


# --- temporal autocorrelation ----------------------------------------------------------------------

def autocorrelation_sums(x: xr.DataArray, lags_hours: Sequence[float] = DEFAULT_LAGS_HOURS,
                         time_dim: str = TIME_DIM, lead: int = 0) -> xr.Dataset:
    """Per-cell sums from which :func:`autocorrelation_from_sums` gives the lag autocorrelation, over the frames
    ``lead:`` of ``x`` and the pairs (t, t + k) whose later frame is one of them (the ``lead`` frames before
    are the previous block's last ones, so that consecutive blocks add up to the whole record):
    ``n``, ``sum``, ``sum_sq`` and, on dim ``lag`` (hours), ``pair_n``, ``pair_product``, ``pair_first``,
    ``pair_second`` (Σ x_t x_{t+k}, Σ x_t, Σ x_{t+k}); float64, the dims of ``x`` but time.

    Example: ``autocorrelation_sums(truth, (3, 24))["pair_product"]  # (lag: 2, tile, y, x)``
    """
    require_dims(x, [time_dim], "autocorrelation_sums")
    step = time_step_seconds(x[time_dim]) / 3600.0
    f = _bare(x, [time_dim])
    n = x.sizes[time_dim]
    own = f.isel({time_dim: slice(lead, None)})
    parts = []
    for lag in lags_hours:
        k = lag / step
        if abs(k - round(k)) > 1e-6 or round(k) <= 0:
            raise ValueError(f"lag {lag} h is not a positive multiple of the {step:g} h time step")
        k = int(round(k))
        first = f.isel({time_dim: slice(max(lead - k, 0), max(n - k, 0))})
        second = f.isel({time_dim: slice(max(lead, k), None)})
        parts.append(xr.Dataset({"pair_n": float(second.sizes[time_dim]),
                                 "pair_product": (first * second).sum(time_dim),
                                 "pair_first": first.sum(time_dim), "pair_second": second.sum(time_dim)}))
    pairs = xr.concat(parts, dim=xr.DataArray(list(lags_hours), dims="lag", attrs={"units": "hours"}, name="lag"))
    return pairs.assign(n=float(own.sizes[time_dim]), sum=own.sum(time_dim), sum_sq=(own**2).sum(time_dim))


def autocorrelation_from_sums(sums: xr.Dataset, weights: xr.DataArray,
                              dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Each cell's lag-L autocorrelation of its anomaly from the record mean, r = mean over the pairs of
    a_t a_{t+L} / mean over the frames of a², area-weighted over ``dims`` (default: all but ``lag``), from
    :func:`autocorrelation_sums` (cells with no variance skipped); dim ``lag``.

    Example: ``autocorrelation_from_sums(autocorrelation_sums(truth), area)  # (lag: 8,)``
    """
    mean = sums["sum"] / sums["n"]
    variance = sums["sum_sq"] / sums["n"] - mean**2
    n_pairs = sums["pair_n"].where(sums["pair_n"] > 0)
    cov = (sums["pair_product"] - mean * (sums["pair_first"] + sums["pair_second"])) / n_pairs + mean**2
    r = cov / variance.where(variance > 0)
    dims = [d for d in r.dims if d != "lag"] if dims is None else list(dims)
    return weighted_mean(r, weights, dims).transpose("lag", ...).rename("autocorrelation").assign_attrs(units="1")


def temporal_autocorrelation(x: xr.DataArray, weights: xr.DataArray,
                             lags_hours: Sequence[float] = DEFAULT_LAGS_HOURS, time_dim: str = TIME_DIM,
                             dims: Sequence[Hashable] | None = None) -> xr.DataArray:
    """Area-weighted mean over cells (and members) of each cell's lag-L autocorrelation, dim ``lag``
    (hours); ``dims`` are the dims averaged after the per-cell correlation (default: all but time).

    Example: ``temporal_autocorrelation(truth, area, (3, 24))  # (lag: 2,)``
    """
    require_dims(x, [time_dim], "temporal_autocorrelation")
    n = x.sizes[time_dim]
    step = time_step_seconds(x[time_dim]) / 3600.0
    for lag in lags_hours:
        if not 0 < round(lag / step) < n:
            raise ValueError(f"lag {lag} h is not a positive multiple of the {step:g} h time step below the "
                             f"record length ({n} steps)")
    return autocorrelation_from_sums(autocorrelation_sums(x, lags_hours, time_dim), weights, dims)


# --- diurnal cycle ---------------------------------------------------------------------------------

def _bin_sums(sums: np.ndarray, counts: np.ndarray, which: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """(…, H, cells…) sums and counts per UTC hour → (…, 2, n_bins): Σ w·sum and Σ w·count per LST bin."""
    idx = which.ravel()
    w = np.broadcast_to(weights, which.shape).ravel()
    lead = sums.shape[: sums.ndim - which.ndim]
    s = sums.reshape(lead + (-1,))
    c = counts.reshape(lead + (-1,))
    out = np.zeros(lead + (2, n_bins))
    for i in np.ndindex(lead):
        out[i + (0,)] = np.bincount(idx, weights=np.nan_to_num(s[i]) * w, minlength=n_bins)
        out[i + (1,)] = np.bincount(idx, weights=c[i] * w, minlength=n_bins)
    return out


def diurnal_cycle(x: xr.DataArray, weights: xr.DataArray, lon: xr.DataArray, bin_hours: float = 3.0,
                  time_dim: str = TIME_DIM) -> xr.DataArray:
    """Area-weighted mean of ``x`` in bins of local solar time LST = UTC hour + lon/15 (``lon`` in degrees
    east at the cell centres, ``weights`` the cell area, both on the spatial dims of ``x``), pooled over
    every other dim; dim ``local_solar_hour`` = bin centres. First a lazy time reduction per UTC hour of
    day, then each cell's hours are binned by its own LST. Units: those of ``x``.

    Example: ``diurnal_cycle(truth, area, lon)  # (local_solar_hour: 8,)``
    """
    return diurnal_from_sums(diurnal_sums(x, weights, lon, bin_hours, time_dim)).assign_attrs(
        units=x.attrs.get("units", ""))


def diurnal_from_sums(total: xr.DataArray) -> xr.DataArray:
    """The diurnal cycle from :func:`diurnal_sums` (of one block, or added over the blocks of a record)."""
    mean = total.isel(part=0) / total.isel(part=1).where(total.isel(part=1) > 0)
    return mean.rename("diurnal_cycle")


def diurnal_sums(x: xr.DataArray, weights: xr.DataArray, lon: xr.DataArray, bin_hours: float = 3.0,
                 time_dim: str = TIME_DIM) -> xr.DataArray:
    """Σ area·value and Σ area·count per bin of local solar time (:func:`diurnal_cycle`): ``(part: 2,
    local_solar_hour)``; blocks of a record add up."""
    require_dims(x, [time_dim], "diurnal_cycle")
    if not 0 < bin_hours <= 24 or abs(24 / bin_hours - round(24 / bin_hours)) > 1e-9:
        raise ValueError(f"bin_hours must divide 24, got {bin_hours}")
    spatial = [d for d in x.dims if d in lon.dims]
    if sorted(spatial) != sorted(lon.dims) or any(d not in lon.dims for d in weights.dims):
        raise ValueError(f"diurnal_cycle: lon {lon.dims} and weights {weights.dims} must span dims of x {x.dims}")
    t = x[time_dim]
    utc = np.asarray((t.dt.hour + t.dt.minute / 60.0 + t.dt.second / 3600.0).values, dtype=np.float64)
    hours = np.unique(utc)
    hour_dim = xr.DataArray(hours, dims="utc_hour", name="utc_hour")
    picks = [x.isel({time_dim: np.flatnonzero(utc == h)}) for h in hours]   # the steps at each UTC hour
    sums = xr.concat([p.sum(time_dim) for p in picks], dim=hour_dim)
    counts = xr.concat([p.notnull().sum(time_dim) for p in picks], dim=hour_dim)
    n_bins = int(round(24 / bin_hours))
    lon_ = lon.transpose(*spatial).values
    which = np.minimum(np.floor(((hours.reshape((-1,) + (1,) * lon_.ndim) + lon_ / 15.0) % 24.0) / bin_hours),
                       n_bins - 1).astype(np.int64)                          # (utc_hour, *spatial)
    w = weights.transpose(*[d for d in spatial if d in weights.dims]).values.reshape(
        [weights.sizes[d] if d in weights.dims else 1 for d in spatial])
    core = ["utc_hour", *spatial]
    if sums.chunks is not None:
        sums, counts = sums.chunk({d: -1 for d in core}), counts.chunk({d: -1 for d in core})
    parts = xr.apply_ufunc(_bin_sums, sums, counts, kwargs={"which": which, "weights": w, "n_bins": n_bins},
                           input_core_dims=[core, core], output_core_dims=[["part", "local_solar_hour"]],
                           dask="parallelized", output_dtypes=[np.float64],
                           dask_gufunc_kwargs={"output_sizes": {"part": 2, "local_solar_hour": n_bins}})
    total = parts.sum([d for d in parts.dims if d not in ("part", "local_solar_hour")])
    centres = (np.arange(n_bins) + 0.5) * bin_hours
    return total.assign_coords(local_solar_hour=("local_solar_hour", centres, {"units": "hours"}))
