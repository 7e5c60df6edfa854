"""Random fields on the sphere that move and age: periodic 3D Gaussian volumes sampled at cell positions.

A field is a function of the 3D position ``p`` (unit vector) of a cell, so it is seamless across tile
edges by construction and independent of the grid. Its value is read from a periodic 3D Gaussian random
volume (isotropic power spectrum set in Fourier space) by trilinear interpolation:

    g(p) = V(Q p / h + o)          (lattice spacing h, rotation Q, offset o; V periodic, unit variance)

**Motion and life.** A pattern is born every ``H`` seconds (generation k at ``t_k = k H``) with its own
random rotation ``Q_k`` and offset ``o_k`` (independent-looking draws from the same volume), lives
``2H`` and is carried by a displacement ``D(p, age)`` (the departure point of the air now at ``p``).
Two generations overlap at any time and cross-fade with weights that keep the variance at one:

    G(p, t) = cos(πf/2) · g_{k−1}(D(p, t − t_{k−1})) + sin(πf/2) · g_k(D(p, t − t_k)),   f = t/H − k

so the field is continuous in time, decorrelates over ~H and moves with the wind that ``D`` encodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

Spectrum = Callable[[np.ndarray], np.ndarray]
Displacement = Callable[[np.ndarray, float], np.ndarray]


def log_normal_band(k0: float, width: float) -> Spectrum:
    """Shell spectrum ``E(k) ∝ exp(−½ (ln(k/k0)/width)²)`` (k in radians⁻¹ on the unit sphere)."""
    def spectrum(k: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.exp(-0.5 * (np.log(np.maximum(k, 1e-12) / k0) / width) ** 2)
    return spectrum


def power_law_band(k_lo: float, k_hi: float, slope: float) -> Spectrum:
    """Shell spectrum ``E(k) ∝ k^slope`` between ``k_lo`` and ``k_hi`` with Gaussian roll-offs outside."""
    def spectrum(k: np.ndarray) -> np.ndarray:
        k = np.maximum(k, 1e-12)
        low = np.where(k < k_lo, np.exp(-0.5 * (np.log(k / k_lo) / 0.25) ** 2), 1.0)
        high = np.exp(-((k / k_hi) ** 4))
        return k**slope * low * high
    return spectrum


@dataclass(frozen=True)
class PeriodicVolume:
    """A periodic Gaussian random field on an ``m³`` lattice of spacing ``spacing`` (unit-sphere lengths).

    ``values`` has zero mean and unit variance.
    """

    values: np.ndarray
    spacing: float

    @property
    def period(self) -> float:
        return self.values.shape[0] * self.spacing


def spectral_volume(rng: np.random.Generator, m: int, spacing: float, shell_spectrum: Spectrum) -> PeriodicVolume:
    """White noise filtered to the isotropic shell spectrum ``E(k)`` (3D density ``E(k)/k²``)."""
    white = rng.standard_normal((m, m, m), dtype=np.float32)
    k1 = 2 * np.pi * np.fft.fftfreq(m, d=spacing)
    kr = 2 * np.pi * np.fft.rfftfreq(m, d=spacing)
    kx, ky, kz = np.meshgrid(k1, k1, kr, indexing="ij", sparse=True)
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        amplitude = np.sqrt(np.where(k > 0, shell_spectrum(k) / np.maximum(k, 1e-12) ** 2, 0.0))
    field = np.fft.irfftn(np.fft.rfftn(white) * amplitude, s=white.shape, axes=(0, 1, 2))
    return PeriodicVolume(((field - field.mean()) / field.std()).astype(np.float32), float(spacing))


@dataclass(frozen=True)
class EvolvingField:
    """A unit-variance random field on the sphere whose patterns live ``2 · half_life_s`` and move with
    a displacement (module docstring). Deterministic in ``(seed, t)``: any time can be computed alone."""

    volume: PeriodicVolume
    half_life_s: float
    seed: int

    def generation(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rotation (3, 3) and offset (3,) in lattice units of generation ``k`` (any integer)."""
        rng = np.random.default_rng([self.seed, k + 2**31])
        rotation = Rotation.random(random_state=rng).as_matrix()
        offset = rng.uniform(0.0, self.volume.values.shape[0], size=3)
        return rotation, offset

    def sample(self, p: np.ndarray, k: int) -> np.ndarray:
        """Generation ``k`` at unit-vector positions ``p (P, 3)``; shape (P,), float32."""
        rotation, offset = self.generation(k)
        coords = (rotation / self.volume.spacing) @ p.T + offset[:, None]       # (3, P), lattice units
        return ndimage.map_coordinates(self.volume.values, coords, output=np.float32, order=1, mode="grid-wrap",
                                       prefilter=False)

    def __call__(self, p: np.ndarray, t: float, displacement: Displacement) -> np.ndarray:
        """The field at positions ``p (P, 3)`` and time ``t`` (s), each generation at its departure points
        ``displacement(p, age_s)``; shape (P,), float32."""
        s = t / self.half_life_s
        k = int(np.floor(s))
        f = s - k
        out = np.float32(np.cos(0.5 * np.pi * f)) * self.sample(displacement(p, (1.0 + f) * self.half_life_s), k - 1)
        if f > 0:                               # at f = 0 the newer generation has weight 0
            out += np.float32(np.sin(0.5 * np.pi * f)) * self.sample(displacement(p, f * self.half_life_s), k)
        return out
