"""Does the residual denoiser learn every spatial scale? Scale-by-scale errors of ``D(x; σ)`` and of sampled residuals.

A network that cannot represent structure finer than a few cells (e.g. a space-to-depth stem whose output
is blind below 4 cells) still trains to a reasonable total loss: the fine scales hold little of the
residual's variance. This module splits the errors by spatial scale so such a network shows itself.

**Spectral convention.** Each tile ``(n, n)`` of a field ``(…, 6, n, n)`` gets a plain 2-D FFT — no window,
no mean removal (unlike :func:`downscale.diagnostics.structure.power_spectrum`, which applies a Hann window
to physical fields; an error field's mean is part of its error and is kept, in ``k = 0``). A mode
``(k_y, k_x)`` (integers in ``[−n/2, n/2)``) has index wavenumber ``k = round(√(k_x² + k_y²))`` — cycles per
tile edge, as in ``structure.py`` — and *mode power* ``|F|² / n²``, averaged over every leading dim and the
tiles: white noise of variance v has mode power v in every mode. A *band's power* is
``Σ_{modes in band} mode power / n²``, the band's share of the mean square; the three bands' powers add up
to the field's mean square (Parseval). Bands (:data:`BANDS`), by index wavenumber, wavelength λ = n/k cells:

* ``low``  — ``k < n/8``            (λ > 8 cells)
* ``mid``  — ``n/8 ≤ k < n/4``      (4 < λ ≤ 8 cells)
* ``high`` — ``k ≥ n/4``            (λ ≤ 4 cells; includes the corner modes with k > n/2)

Cells are not area weighted in the spectra (a tile's cells are within a factor ~2 of each other in area).

**Denoiser errors** (:func:`denoiser_band_errors`): for the true residual r, noise n ~ N(0, σ²) and
``x = r + n``, the errors ``e = D(x; σ) − r`` of the network and ``e0 = c_skip(σ)·x − r`` of the "do nothing"
denoiser (F = 0 in ``D = c_skip·x + c_out·F``) share the same noise; :attr:`DenoiserBandErrors.ratio` =
band power of e / band power of e0. Below 1: the network removes noise (or restores signal) at that scale;
1: it does nothing there; above 1: it makes things worse.

**The Gaussian (Wiener) reference** (:func:`wiener_oracle_ratio`): if the residual were stationary Gaussian
with the truth's ring-averaged mode power ``P_k``, the best denoiser's expected error per mode is
``σ²P_k/(σ² + P_k)`` and F = 0's is ``(c_skip − 1)²P_k + c_skip²σ²``; the oracle ratio is their ratio summed
over the band. It says at which σ a band *can* be improved at all: at σ ≪ √P_k both errors tend to σ², at
σ ≫ √P_k both tend to P_k, so every band's oracle ratio tends to 1 at both ends and dips only where σ is of
the order of that band's amplitude — low σ for the weak fine scales. It is a reference, not a bound: the
network sees the conditioning and μ, and the residual is neither stationary nor Gaussian, so it may do
better. A network whose ``high`` ratio stays at ≈ 1 while the oracle dips well below has not learned
those scales.

**Sampled residuals** (:func:`sampled_residual_stats`): std ratio and per-band ``ln(P_band(r̂)/P_band(r))``
of residuals ``r̂ = sample − μ`` drawn with a sampler against the true ``r = y − μ``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from downscale.models.edm import edm_coefficients

BANDS: tuple[str, str, str] = ("low", "mid", "high")
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   #: D(x, σ (B,)) → estimate of the clean residual


def band_edges(n: int) -> tuple[float, float]:
    """Index-wavenumber edges ``(n/8, n/4)`` between the ``low``/``mid`` and ``mid``/``high`` bands."""
    return n / 8, n / 4


def ring_wavenumber(n: int) -> torch.Tensor:
    """``(n, n)`` int64: index wavenumber ``k = round(√(k_x² + k_y²))`` of each FFT mode of an ``n × n`` tile."""
    f = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    ky, kx = torch.meshgrid(f, f, indexing="ij")
    return torch.round(torch.hypot(kx, ky)).to(torch.int64)


def band_index(n: int) -> torch.Tensor:
    """``(n, n)`` int64: the band (0 low, 1 mid, 2 high; :data:`BANDS`) of each FFT mode."""
    k = ring_wavenumber(n).to(torch.float64)
    lo, hi = band_edges(n)
    return (k >= lo).to(torch.int64) + (k >= hi).to(torch.int64)


def _tile_size(fields: torch.Tensor, n: int | None) -> int:
    if fields.ndim < 2 or fields.shape[-1] != fields.shape[-2]:
        raise ValueError(f"fields must end in square tiles (…, n, n), got {tuple(fields.shape)}")
    if n is not None and fields.shape[-1] != n:
        raise ValueError(f"fields {tuple(fields.shape)} do not have tiles of n = {n}")
    return fields.shape[-1]


def mode_power(fields: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """``(n, n)`` float64: ``|FFT2(tile)|² / n²`` of every mode, averaged over all leading dims (tiles
    included). White noise of variance v gives v in every mode (module docstring)."""
    n = _tile_size(fields, n)
    spec = torch.fft.fft2(fields.to(torch.float64))
    return (spec.abs() ** 2 / n**2).reshape(-1, n, n).mean(0)


def band_sums(per_mode: torch.Tensor) -> torch.Tensor:
    """``(…, 3)``: ``per_mode (…, n, n)`` summed over the modes of each band (:data:`BANDS`)."""
    n = _tile_size(per_mode, None)
    idx = band_index(n).to(per_mode.device)
    return torch.stack([(per_mode * (idx == b)).sum((-2, -1)) for b in range(len(BANDS))], dim=-1)


def band_power(fields: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """``(3,)`` float64: each band's share of the mean square of ``fields (…, n, n)`` (every leading dim —
    tiles, frames, clips — averaged); the three add up to ``mean(fields²)``. Order :data:`BANDS`."""
    n = _tile_size(fields, n)
    return band_sums(mode_power(fields, n)) / n**2


def ring_average(per_mode: torch.Tensor) -> torch.Tensor:
    """``(n, n)``: each mode replaced by the mean of its ring (same index wavenumber) — the isotropic part."""
    n = _tile_size(per_mode, None)
    ring = ring_wavenumber(n).flatten().to(per_mode.device)
    flat = per_mode.reshape(-1)
    sums = torch.zeros(int(ring.max()) + 1, dtype=flat.dtype, device=flat.device).index_add_(0, ring, flat)
    counts = torch.bincount(ring, minlength=sums.numel()).to(flat.dtype)
    return (sums / counts.clamp_min(1))[ring].reshape(n, n)


def wiener_oracle_ratio(residual_mode_power: torch.Tensor, sigmas: Sequence[float], sigma_data: float) -> torch.Tensor:
    """``(S, 3)``: per σ and band, ``Σ σ²P/(σ² + P) / Σ [(c_skip − 1)²P + c_skip²σ²]`` over the band's
    modes, ``P`` = the ring average of ``residual_mode_power (n, n)`` (mode power, module docstring). 1 where no
    denoiser can beat F = 0 on a Gaussian residual of that spectrum."""
    P = ring_average(residual_mode_power.to(torch.float64))
    s2 = torch.as_tensor(list(sigmas), dtype=torch.float64).view(-1, 1, 1) ** 2
    c_skip = edm_coefficients(s2.sqrt(), sigma_data)[0]
    optimal = s2 * P / (s2 + P)
    skip = (c_skip - 1) ** 2 * P + c_skip**2 * s2
    return band_sums(optimal) / band_sums(skip)


@dataclass
class DenoiserBandErrors:
    """Band powers of the denoiser's error ``e`` and of F = 0's error ``e0`` per σ, and the residual's mode power.

    ``error``, ``skip``: ``(S, 3)`` band powers (mean-square shares) of e and e0; ``residual_mode_power``:
    ``(n, n)``; ``count``: how many tile-frames were averaged (to :func:`combine` several calls).
    """

    sigmas: tuple[float, ...]
    sigma_data: float
    n: int
    error: torch.Tensor
    skip: torch.Tensor
    residual_mode_power: torch.Tensor
    count: int

    @property
    def ratio(self) -> torch.Tensor:
        """``(S, 3)``: band power of e / band power of e0."""
        return self.error / self.skip

    @property
    def oracle_ratio(self) -> torch.Tensor:
        """``(S, 3)``: :func:`wiener_oracle_ratio` of the residual's spectrum."""
        return wiener_oracle_ratio(self.residual_mode_power, self.sigmas, self.sigma_data)

    @property
    def residual_band_power(self) -> torch.Tensor:
        """``(3,)``: the true residual's band powers (they add up to its mean square)."""
        return band_sums(self.residual_mode_power) / self.n**2

    def as_dict(self) -> dict[str, object]:
        """JSON-ready numbers: per σ and band the model's and the oracle's ratio and both error powers."""
        ratio, oracle = self.ratio.tolist(), self.oracle_ratio.tolist()
        return {
            "bands": list(BANDS), "band_edges_k": list(band_edges(self.n)), "n": self.n,
            "sigma_data": self.sigma_data, "tile_frames": self.count,
            "residual_band_power": dict(zip(BANDS, self.residual_band_power.tolist(), strict=True)),
            "per_sigma": [{"sigma": s, "ratio": dict(zip(BANDS, ratio[i], strict=True)),
                           "oracle_ratio": dict(zip(BANDS, oracle[i], strict=True)),
                           "error_power": dict(zip(BANDS, self.error[i].tolist(), strict=True)),
                           "skip_error_power": dict(zip(BANDS, self.skip[i].tolist(), strict=True))}
                          for i, s in enumerate(self.sigmas)],
        }


@torch.no_grad()
def denoiser_band_errors(denoise: Denoise, residual: torch.Tensor, sigmas: Sequence[float], sigma_data: float, *,
                         noise: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> DenoiserBandErrors:
    """Band powers of ``e = D(r + σε; σ) − r`` and ``e0 = c_skip(σ)·(r + σε) − r`` for each σ in ``sigmas``.

    ``residual r (B, …, n, n)`` — e.g. ``(B, T, C, 6, n, n)`` clips of ``y − μ``; ``denoise(x, sigma (B,))``
    returns D's estimate of r (shaped like ``x``); ``noise ε`` (unit variance, shaped like r) defaults to a
    draw from ``generator``; the same ε serves every σ. ``sigma_data`` gives ``c_skip`` (EDM preconditioning).
    """
    n = _tile_size(residual, None)
    r = residual.to(torch.float32)
    if noise is None:
        noise = torch.randn(r.shape, generator=generator, dtype=torch.float32, device="cpu").to(r.device)
    if noise.shape != r.shape:
        raise ValueError(f"noise {tuple(noise.shape)} must be shaped like the residual {tuple(r.shape)}")
    error, skip = [], []
    for s in sigmas:
        if not s > 0:
            raise ValueError(f"σ must be > 0, got {s}")
        x = r + s * noise.to(r.dtype)
        c_skip = edm_coefficients(torch.tensor(float(s), dtype=torch.float64), sigma_data)[0].item()
        d = denoise(x, torch.full((r.shape[0],), float(s), dtype=torch.float32, device=r.device))
        if d.shape != r.shape:
            raise ValueError(f"the denoiser returned {tuple(d.shape)} for an input of {tuple(r.shape)}")
        error.append(band_power(d.to(torch.float64) - r.to(torch.float64), n).cpu())
        skip.append(band_power(c_skip * x.to(torch.float64) - r.to(torch.float64), n).cpu())
    return DenoiserBandErrors(sigmas=tuple(float(s) for s in sigmas), sigma_data=float(sigma_data), n=n,
                              error=torch.stack(error), skip=torch.stack(skip),
                              residual_mode_power=mode_power(r, n).cpu(), count=r.numel() // n**2)


def combine(parts: Sequence[DenoiserBandErrors]) -> DenoiserBandErrors:
    """One :class:`DenoiserBandErrors` over several calls (same σ grid and n), weighted by their ``count``."""
    if not parts:
        raise ValueError("nothing to combine")
    first = parts[0]
    for p in parts[1:]:
        if (p.sigmas, p.n, p.sigma_data) != (first.sigmas, first.n, first.sigma_data):
            raise ValueError("can only combine results of the same σ grid, tile size and σ_data")
    total = sum(p.count for p in parts)
    mix = lambda name: sum(getattr(p, name) * (p.count / total) for p in parts)  # noqa: E731
    return DenoiserBandErrors(first.sigmas, first.sigma_data, first.n, mix("error"), mix("skip"),
                              mix("residual_mode_power"), total)


@dataclass
class SampledResidualStats:
    """``std_ratio``: √(Σ w r̂² / Σ w r²) (area weighted over cells, pooled over samples, clips and frames; on
    residuals of samples and μ as shipped, :meth:`~downscale.dataset_info.DatasetInfo.shipped_target`, the
    definition of the training's ``val/residual_std_ratio``); ``ln_power_ratio``: per band
    ``ln(P_band(r̂)/P_band(r))`` (0 = right power at that scale, −0.69 = half, +0.69 = double)."""

    std_ratio: float
    ln_power_ratio: dict[str, float]
    sample_band_power: dict[str, float]
    truth_band_power: dict[str, float]
    samples: int

    def as_dict(self) -> dict[str, object]:
        return {"std_ratio": self.std_ratio, "ln_power_ratio": self.ln_power_ratio,
                "sample_band_power": self.sample_band_power, "truth_band_power": self.truth_band_power,
                "samples": self.samples}


def sampled_residual_stats(sampled: torch.Tensor, truth: torch.Tensor,
                           weights: torch.Tensor | None = None) -> SampledResidualStats:
    """Statistics of sampled residuals ``sampled (K, B, …, n, n)`` (K draws of ``sample − μ`` for each of the
    ``B`` clips of ``truth (B, …, n, n)``, the true ``y − μ``) — see :class:`SampledResidualStats`.
    ``weights`` (cell area, e.g. ``(6, n, n)``) broadcast against the trailing dims; None = uniform."""
    if sampled.shape[1:] != truth.shape:
        raise ValueError(f"sampled {tuple(sampled.shape)} must be (K, *truth.shape) with truth {tuple(truth.shape)}")
    n = _tile_size(truth, None)
    s, t = sampled.to(torch.float64), truth.to(torch.float64)
    w = torch.ones((), dtype=torch.float64, device=t.device) if weights is None else weights.to(t)
    std_ratio = math.sqrt(float((w * s**2).expand_as(s).sum() / s.shape[0])
                          / max(float((w * t**2).expand_as(t).sum()), 1e-300))
    ps, pt = band_power(s, n).tolist(), band_power(t, n).tolist()
    ln = {b: math.log(a / c) if a > 0 and c > 0 else float("nan") for b, a, c in zip(BANDS, ps, pt, strict=True)}
    return SampledResidualStats(std_ratio=std_ratio, ln_power_ratio=ln,
                                sample_band_power=dict(zip(BANDS, ps, strict=True)),
                                truth_band_power=dict(zip(BANDS, pt, strict=True)), samples=sampled.shape[0])
