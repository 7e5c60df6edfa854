"""Measurements that say whether precipitation behaves like weather (the dataset card's numbers).

Pure numpy on the internal layout: fields ``(time, tile, y, x)``, statics ``(tile, y, x)``. Rates are
whatever units are passed in (the card uses mm/day); every spatial mean is area-weighted unless said.
"""

from __future__ import annotations

import numpy as np

from data_catalog.cubesphere import cell_centre_unit_vectors, local_east_north
from data_catalog.halo import halo_pad
from data_catalog.schema import EARTH_RADIUS

WET_THRESHOLD_MM_DAY = 0.1


def wet_fraction(p: np.ndarray, threshold: float = WET_THRESHOLD_MM_DAY) -> float:
    """Share of values above ``threshold`` (all cells count alike)."""
    return float(np.mean(p > threshold))


def area_mean(p: np.ndarray, area: np.ndarray) -> float:
    """Area-weighted mean over tiles and cells, averaged over any leading dims."""
    w = np.broadcast_to(area, p.shape)
    return float(np.sum(p * w, dtype=np.float64) / np.sum(w, dtype=np.float64))


def block_mean(p: np.ndarray, area: np.ndarray, factor: int) -> np.ndarray:
    """Area-weighted ``factor × factor`` block means over the last two dims (the coarse field)."""
    *lead, n, _ = p.shape
    m = n // factor
    w = area.reshape(area.shape[:-2] + (m, factor, m, factor))
    x = p.reshape(tuple(lead) + (m, factor, m, factor))
    return (x * w).sum(axis=(-3, -1)) / w.sum(axis=(-3, -1))


def unexplained_fraction(fine: np.ndarray, coarse: np.ndarray, area: np.ndarray) -> float:
    """Share of the (area-weighted) fine variance that the nearest-upsampled coarse field leaves:
    Σ a (fine − up(coarse))² / Σ a (fine − mean)². With block-mean coarse fields this is the within-block
    share of the variance."""
    factor = fine.shape[-1] // coarse.shape[-1]
    up = np.repeat(np.repeat(coarse, factor, axis=-2), factor, axis=-1)
    w = np.broadcast_to(area, fine.shape)
    mean = np.sum(fine * w, dtype=np.float64) / np.sum(w, dtype=np.float64)
    return float(np.sum((fine - up) ** 2 * w, dtype=np.float64) / np.sum((fine - mean) ** 2 * w, dtype=np.float64))


def lag_autocorrelation(p: np.ndarray, lag: int = 1) -> float:
    """Pearson correlation of ``p[t]`` with ``p[t + lag]``, pooled over all times and cells."""
    a, b = p[:-lag].ravel().astype(np.float64), p[lag:].ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


def radial_spectrum(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged 2D power spectrum of each tile (Hann-windowed), averaged over everything else.

    Returns integer wavenumbers ``k`` = 1 … n/2 (cycles per tile width) and the mean power at each.
    """
    n = p.shape[-1]
    window = np.outer(np.hanning(n), np.hanning(n))
    x = p.reshape(-1, n, n)
    x = (x - x.mean(axis=(1, 2), keepdims=True)) * window
    power = np.mean(np.abs(np.fft.fft2(x)) ** 2, axis=0)
    f = np.fft.fftfreq(n) * n
    k = np.rint(np.hypot(*np.meshgrid(f, f, indexing="ij"))).astype(int)
    ks = np.arange(1, n // 2 + 1)
    return ks, np.array([power[k == kk].mean() for kk in ks])


def spectral_slope(p: np.ndarray, k_min: int, k_max: int) -> float:
    """Least-squares slope of log power against log wavenumber over ``k_min ≤ k ≤ k_max``."""
    k, power = radial_spectrum(p)
    sel = (k >= k_min) & (k <= k_max)
    return float(np.polyfit(np.log(k[sel]), np.log(power[sel]), 1)[0])


def band_means(p: np.ndarray, lat: np.ndarray, area: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Area-weighted mean of ``p`` (time-averaged) in latitude bands ``[edges[i], edges[i+1])``."""
    field = p.mean(axis=0) if p.ndim == 4 else p
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (lat >= lo) & (lat < hi)
        out.append(np.sum(field[sel] * area[sel]) / np.sum(area[sel]) if sel.any() else np.nan)
    return np.array(out)


def itcz_latitude(p: np.ndarray, lat: np.ndarray, area: np.ndarray, span: float = 30.0, step: float = 2.0) -> float:
    """Latitude of the wettest ``step``-degree band between ``±span`` (time-mean of ``p``)."""
    edges = np.arange(-span, span + step / 2, step)
    means = band_means(p, lat, area, edges)
    return float(edges[int(np.nanargmax(means))] + step / 2)


def zonal_pattern_speed(p: np.ndarray | list[np.ndarray], lat: np.ndarray, lon: np.ndarray,
                        band: tuple[float, float], lag_steps: int, step_hours: float, bin_deg: float = 2.0) -> float:
    """Eastward speed (m/s) of precipitation patterns in a latitude band: the zonal shift that best
    correlates the longitude profile (band mean in ``bin_deg`` bins, minus its time mean) at ``t`` with
    that at ``t + lag``. ``p (time, tile, y, x)``, or a list of such runs (e.g. members) pooled."""
    runs = p if isinstance(p, list) else [p]
    sel = (lat >= band[0]) & (lat < band[1])
    bins = (lon[sel] // bin_deg).astype(int)
    nb = int(round(360 / bin_deg))
    counts = np.maximum(np.bincount(bins, minlength=nb), 1)
    shifts = np.arange(-nb // 4, nb // 4 + 1)
    score = np.zeros(len(shifts))
    for run in runs:
        prof = np.stack([np.bincount(bins, weights=frame[sel], minlength=nb) for frame in run]) / counts
        prof = prof - prof.mean(axis=0)             # remove the stationary (climatological) profile
        a, b = prof[:-lag_steps], prof[lag_steps:]
        score += [np.sum(np.roll(a, s, axis=1) * b) for s in shifts]
    shift_deg = shifts[int(np.argmax(score))] * bin_deg
    lat_mid = np.deg2rad(0.5 * (band[0] + band[1]))
    return float(np.deg2rad(shift_deg) * EARTH_RADIUS * np.cos(lat_mid) / (lag_steps * step_hours * 3600))


def diurnal_composite(p: np.ndarray, lon: np.ndarray, utc_hours: np.ndarray, mask: np.ndarray,
                      bins: int = 8) -> np.ndarray:
    """Mean of ``p`` over the cells in ``mask`` by local solar time, in ``bins`` bins of 24/bins hours."""
    lst = (utc_hours[:, None] + lon[mask][None, :] / 15.0) % 24.0
    index = (lst // (24.0 / bins)).astype(int)
    values = p[:, mask]
    return np.array([values[index == b].mean() for b in range(bins)])


def upslope_winds(u: np.ndarray, v: np.ndarray, grad_z: np.ndarray, n: int) -> np.ndarray:
    """Surface-following vertical velocity ``w = U · ∇z`` (m/s) of winds ``u, v (time, tile, y, x)``
    (east/north, m/s) on C-``n`` with ``grad_z (tile, y, x, 3)`` in m/m."""
    east, north = local_east_north(cell_centre_unit_vectors(n))
    return u * np.einsum("tyxk,tyxk->tyx", east, grad_z) + v * np.einsum("tyxk,tyxk->tyx", north, grad_z)


def seam_ratio(field: np.ndarray) -> float:
    """Mean |gradient| across tile edges divided by that one step further in, at the same places.

    Gradients are |difference| / distance of neighbouring cell centres; "across" pairs each edge cell
    with its neighbour on the next tile (halo exchange), "one step in" with its neighbour in the same
    direction inside the tile. About 1 for a field without seams (1.0–1.1 for the real 500 hPa height
    and moistening fixtures); a seam raises it. ``field (…, 6, n, n)``.
    """
    n = field.shape[-1]
    padded = halo_pad(np.asarray(field, dtype=np.float64), 1)
    centres = halo_pad(np.moveaxis(cell_centre_unit_vectors(n), -1, 0), 1)       # (3, 6, n + 2, n + 2)
    dist_x = np.linalg.norm(np.diff(centres[..., 1:-1, :], axis=-1), axis=0)     # (6, n, n + 1)
    dist_y = np.linalg.norm(np.diff(centres[..., :, 1:-1], axis=-2), axis=0)     # (6, n + 1, n)
    gx = np.abs(np.diff(padded[..., 1:-1, :], axis=-1)) / dist_x                # columns 0 and n cross edges
    gy = np.abs(np.diff(padded[..., :, 1:-1], axis=-2)) / dist_y
    across = np.concatenate([gx[..., [0, -1]].ravel(), gy[..., [0, -1], :].ravel()])
    inside = np.concatenate([gx[..., [1, -2]].ravel(), gy[..., [1, -2], :].ravel()])
    return float(across.mean() / inside.mean())
