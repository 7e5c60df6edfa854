"""Power spectrum by total wavenumber l on the sphere, from a spherical-harmonic transform of the cube's
cells by direct quadrature: every cell counted once, with its area; tile edges are not special.

For a frame f on cells i (centre latitude φ_i, longitude λ_i, solid angle Ω_i = 4π A_i / Σ A, so
Σ Ω = 4π) with its area-weighted mean f̄ removed:

    a_lm = Σ_i Ω_i (f_i − f̄) Ȳ_lm(φ_i, λ_i),        E(l) = (1/4π) Σ_{m=−l..l} |a_lm|²,   l = 0 … L

with Y_lm orthonormal on the unit sphere (∫ |Y_lm|² dΩ = 1), so Σ_l E(l) ≈ (1/4π) ∫ (f − f̄)² dΩ, the
area-weighted variance (Parseval; E(0) = 0 exactly). Units: (units of f)² per unit l.

* Modes kept: L = ⌊√N_cells⌋ − 1, so the (L + 1)² harmonics are as many as the cells (C48: L = 116,
  C64: 155, C96: 234). The harmonics near L are only partly resolved, like the corners k > n/2 of a
  2-D FFT; none is dropped or windowed. Quadrature at the centres is not exact: a pure harmonic with
  l ≤ n comes back within ~0.2 % with < 10⁻⁴ of its power elsewhere; for white noise
  Σ E = variance · (L + 1)² (1 + cv²) / N_cells = 1.03–1.04 × the variance (cv = 0.21, the coefficient of
  variation of the cube's cell areas), so fine-scale power is slightly over-counted by the big cells.
* Wavelength: l ↔ 2πR / √(l (l + 1)) (coordinate ``wavelength_km``, R from Σ A = 4πR²). A tile edge
  spans a quarter of a great circle, so the per-tile index wavenumber k (cycles per tile edge, of
  :func:`~downscale.diagnostics.structure.power_spectrum`) corresponds to l ≈ 4k: "k ≥ n/4" (wavelengths
  ≤ 4 fine cells) is l ≥ n on the sphere.
* Cost. Cells come in rings of equal |latitude| (the cube's symmetries give 8–16 cells a ring, ~N/16
  rings), and P̄_lm(−μ) = (−1)^(l+m) P̄_lm(μ), so the transform is: per ring, a small matrix product with
  e^(−imλ) over its cells (even and odd parts in μ), then per m a product with the normalised
  associated Legendre functions P̄_lm(|μ|) of the rings (computed by the standard stable recurrence).
  Measured on one busy core: 1–1.5 s for 40 frames of C64, 5 s at C96. A grid without these symmetries
  still works (more rings, slower).
* Frames: :func:`sphere_power_spectrum` averages at most ``max_frames`` = 40 frames a source: times
  evenly spread over the record (``round(linspace(0, T − 1, 40))``: the same times for every source of
  a record, so sources are compared on the same weather), the members of an ensemble in turn (frame k
  takes member k mod M).

Example::

    >>> spec = sphere_power_spectrum(truth, grid.lat, grid.lon, grid.area)    # (total_wavenumber: L + 1,)
    >>> float(spec.sum())                                                         # ≈ area-weighted variance
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import numpy as np
import xarray as xr

from downscale.diagnostics.dims import MEMBER_DIM, SPATIAL_DIMS, TIME_DIM, drop_coords_on, require_dims

#: Default cap on the frames (times, with members taken in turn) whose spectra are averaged.
DEFAULT_MAX_FRAMES = 40
_M_BLOCK = 16           # wavenumbers m per batch of the longitude transform (bounds memory)
_TINY = 1e-280          # P̄_mm below this is flushed to 0 (no denormals; the true values are negligible)


@dataclass(frozen=True)
class SphereQuadrature:
    """The cells of a grid grouped in rings of equal |latitude|, padded to K cells a ring.

    ``cells`` (U, K): flat cell index into (6·n·n); ``weight`` (U, K): Ω_i in steradians (0 for padding);
    ``sign`` (U, K): sign of sin φ_i; ``lon`` (U, K): λ_i in radians; ``mu`` (U,): |sin φ| of each ring;
    ``omega`` (N,): Ω of every cell; ``l_max``: L; ``radius``: R in the units of √area.
    """

    cells: np.ndarray
    weight: np.ndarray
    sign: np.ndarray
    lon: np.ndarray
    mu: np.ndarray
    omega: np.ndarray
    l_max: int
    radius: float


def default_l_max(n_cells: int) -> int:
    """L = ⌊√N_cells⌋ − 1: (L + 1)² harmonics, no more than there are cells."""
    return int(np.floor(np.sqrt(n_cells))) - 1


def sphere_quadrature(lat: np.ndarray, lon: np.ndarray, area: np.ndarray, l_max: int | None = None,
                      lat_tolerance_deg: float = 1e-6) -> SphereQuadrature:
    """Quadrature of the cells with centres ``lat``, ``lon`` (degrees) and ``area`` (any same shape,
    flattened in C order); cells whose |latitudes| agree to ``lat_tolerance_deg`` share a ring."""
    lat, lon, area = (np.asarray(a, dtype=np.float64).ravel() for a in (lat, lon, area))
    if not (lat.size == lon.size == area.size) or not np.all(area > 0) or not np.all(np.isfinite(lat + lon)):
        raise ValueError("sphere_quadrature: lat, lon and area must have the same size, finite, area > 0")
    n_cells = lat.size
    l_max = default_l_max(n_cells) if l_max is None else int(l_max)
    if not 0 <= l_max:
        raise ValueError(f"sphere_quadrature: l_max must be >= 0, got {l_max}")
    omega = 4.0 * np.pi * area / area.sum()
    key = np.round(np.abs(lat) / lat_tolerance_deg).astype(np.int64)
    order = np.argsort(key, kind="stable")
    _, start, size = np.unique(key[order], return_index=True, return_counts=True)
    n_rings, k = start.size, int(size.max())
    slot = np.arange(n_cells) - np.repeat(start, size)                  # position of each sorted cell in its ring
    ring = np.repeat(np.arange(n_rings), size)
    cells = np.zeros((n_rings, k), dtype=np.int64)
    cells[ring, slot] = order
    valid = np.zeros((n_rings, k), dtype=bool)
    valid[ring, slot] = True
    first = order[start]
    mu = np.abs(np.sin(np.deg2rad(lat[first])))
    return SphereQuadrature(cells=cells, weight=np.where(valid, omega[cells], 0.0),
                            sign=np.where(np.sin(np.deg2rad(lat[cells])) < 0, -1.0, 1.0),
                            lon=np.deg2rad(lon[cells]), mu=mu, omega=omega, l_max=l_max,
                            radius=float(np.sqrt(area.sum() / (4.0 * np.pi))))


def _legendre_rows(m: int, l_max: int, mu: np.ndarray, p_mm: np.ndarray) -> np.ndarray:
    """P̄_lm(μ) for l = m … l_max, shape (l_max − m + 1, U), from P̄_mm (orthonormal: ∫|Ȳ_lm|² dΩ = 1)."""
    rows = np.empty((l_max - m + 1, mu.size))
    rows[0] = p_mm
    if l_max > m:
        rows[1] = sqrt(2 * m + 3) * mu * p_mm
    for i, l in enumerate(range(m + 2, l_max + 1), start=2):
        a = sqrt((4 * l * l - 1) / (l * l - m * m))
        b = sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
        rows[i] = a * (mu * rows[i - 1] - b * rows[i - 2])
    return rows


def sphere_spectra(field: np.ndarray, q: SphereQuadrature) -> np.ndarray:
    """(…, cells…) → (…, L + 1): E(l) of every frame (module docstring); the trailing axes of ``field``
    hold the N cells in the order of the quadrature (e.g. (6, n, n))."""
    n_cells = q.omega.size
    lead = field.shape[: field.ndim - _trailing(field.shape, n_cells)]
    flat = np.asarray(field, dtype=np.float64).reshape(-1, n_cells)
    n_frames, big_l = flat.shape[0], q.l_max
    anomaly = flat - (flat @ q.omega)[:, None] / (4.0 * np.pi)
    g = (anomaly[:, q.cells] * q.weight).transpose(1, 0, 2)               # (U, F, K)
    parts = (np.ascontiguousarray(g), np.ascontiguousarray(g * q.sign[:, None, :]))   # even, odd in μ
    out = np.zeros((n_frames, big_l + 1))
    sin_theta = np.sqrt(np.clip(1.0 - q.mu**2, 0.0, None))
    p_mm = np.full(q.mu.size, 1.0 / sqrt(4.0 * np.pi))
    for m0 in range(0, big_l + 1, _M_BLOCK):
        ms = np.arange(m0, min(m0 + _M_BLOCK, big_l + 1))
        phase = q.lon[:, :, None] * ms                                     # (U, K, mb)
        trig = np.concatenate([np.cos(phase), np.sin(phase)], axis=-1)     # (U, K, 2 mb)
        # per part: Σ_k g e^{−imλ} as (mb, U, 2F) = [real | −imaginary] per frame, contiguous per m
        even, odd = (np.ascontiguousarray((part @ trig).reshape(q.mu.size, n_frames, 2, ms.size)
                                          .transpose(3, 0, 2, 1).reshape(ms.size, q.mu.size, 2 * n_frames))
                     for part in parts)
        for j, m in enumerate(ms):
            if m > 0:
                p_mm = sqrt((2 * m + 1) / (2 * m)) * sin_theta * p_mm
                p_mm[p_mm < _TINY] = 0.0
            rows = _legendre_rows(int(m), big_l, q.mu, p_mm)              # (L − m + 1, U)
            scale = (1.0 if m == 0 else 2.0) / (4.0 * np.pi)              # ±m of a real field
            # l − m even / odd: (·, 2F). einsum, not BLAS: BLAS threads fighting a busy core cost 10× here
            a_even = np.einsum("lu,uf->lf", rows[0::2], even[j])
            a_odd = np.einsum("lu,uf->lf", rows[1::2], odd[j])
            out[:, m::2] += scale * (a_even[:, :n_frames] ** 2 + a_even[:, n_frames:] ** 2).T
            out[:, m + 1::2] += scale * (a_odd[:, :n_frames] ** 2 + a_odd[:, n_frames:] ** 2).T
    return out.reshape(lead + (big_l + 1,))


def _trailing(shape: tuple[int, ...], n_cells: int) -> int:
    """How many trailing axes of ``shape`` hold the ``n_cells`` cells."""
    size = 1
    for k, s in enumerate(reversed(shape), start=1):
        size *= s
        if size == n_cells:
            return k
    raise ValueError(f"sphere_spectra: trailing axes of {shape} do not hold {n_cells} cells")


def _frames(x: xr.DataArray, spatial: list[str], time_dim: str, member_dim: str,
            max_frames: int | None) -> xr.DataArray:
    """``x`` with its time (and member) dims replaced by one ``frame`` dim: at most ``max_frames`` times
    evenly spread over the record, members taken in turn (frame k uses member k mod M); every
    (member, time) if ``max_frames`` is None."""
    stack = [d for d in (member_dim, time_dim) if d in x.dims]
    if not stack:
        return x.expand_dims("frame")
    if max_frames is None or time_dim not in x.dims:
        return x.stack(frame=stack).transpose(..., "frame", *spatial).drop_vars(["frame", *stack], errors="ignore")
    n_t = x.sizes[time_dim]
    picks = np.unique(np.round(np.linspace(0, n_t - 1, min(n_t, int(max_frames)))).astype(np.int64))
    if member_dim not in x.dims:
        return x.isel({time_dim: picks}).rename({time_dim: "frame"}).drop_vars("frame", errors="ignore")
    n_m = x.sizes[member_dim]
    parts = [x.isel({member_dim: m, time_dim: picks[m::n_m]}).drop_vars(member_dim, errors="ignore")
             for m in range(min(n_m, picks.size))]
    parts = [p.rename({time_dim: "frame"}).drop_vars("frame", errors="ignore") for p in parts]
    return xr.concat(parts, dim="frame", coords="minimal", compat="override")


def sphere_power_spectrum(x: xr.DataArray, lat: xr.DataArray, lon: xr.DataArray, area: xr.DataArray,
                          spatial_dims: tuple[str, str, str] = SPATIAL_DIMS, l_max: int | None = None,
                          max_frames: int | None = DEFAULT_MAX_FRAMES, time_dim: str = TIME_DIM,
                          member_dim: str = MEMBER_DIM) -> xr.DataArray:
    """Mean over frames of the spherical-harmonic power spectrum E(l) of ``x`` (module docstring), dim
    ``total_wavenumber`` l = 0 … L with coordinate ``wavelength_km``. ``lat``, ``lon`` (degrees) and
    ``area`` (m²) are the cell centres and areas on ``spatial_dims``. Frames: at most ``max_frames``
    times evenly spread over the record (the same times for every source of that record), the members
    of an ensemble taken in turn, one per time; ``None`` uses every (member, time). Dims other than
    time, member and space are kept. Units: (units of x)². Lazy on dask: one task per ≤ 40 frames, with
    the spatial dims in one chunk.

    Example: ``sphere_power_spectrum(ens, grid.lat, grid.lon, grid.area)  # (total_wavenumber,)``
    """
    spatial = list(spatial_dims)
    require_dims(x, spatial, "sphere_power_spectrum")
    for g, name in ((lat, "lat"), (lon, "lon"), (area, "area")):
        require_dims(g, spatial, f"sphere_power_spectrum ({name})")
    q = sphere_quadrature(*(g.transpose(*spatial).values for g in (lat, lon, area)), l_max=l_max)
    frames = _frames(drop_coords_on(x, spatial), spatial, time_dim, member_dim, max_frames)
    n_frames = frames.sizes["frame"]
    if frames.chunks is not None:
        frames = frames.chunk({"frame": DEFAULT_MAX_FRAMES, **{d: -1 for d in spatial}})
    spec = xr.apply_ufunc(sphere_spectra, frames, kwargs={"q": q}, input_core_dims=[spatial],
                          output_core_dims=[["total_wavenumber"]], dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"output_sizes": {"total_wavenumber": q.l_max + 1}}, keep_attrs=False)
    out = spec.mean("frame")
    l = np.arange(q.l_max + 1)
    with np.errstate(divide="ignore"):
        wavelength = np.where(l > 0, 2.0 * np.pi * q.radius / np.sqrt(l * (l + 1.0)) / 1000.0, np.inf)
    out = out.assign_coords(total_wavenumber=l, wavelength_km=("total_wavenumber", wavelength, {"units": "km"}))
    units = x.attrs.get("units")
    return out.rename("sphere_power_spectrum").assign_attrs(
        units=f"({units})2" if units else "", l_max=q.l_max, frames=n_frames,
        method="spherical-harmonic transform by area-weighted quadrature at cell centres; mean over frames")
