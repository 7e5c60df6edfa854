"""The model at inference time: a loaded bundle with its static conditioning, turning one time range of
normalized coarse predictors into the deterministic mean and ensemble members, in physical units.

Shapes (cube geometry, one time range of ``L ≥ T`` frames, ``T`` = the bundle's clip length):

* ``coarse (L, C_pred, 6, nc, nc)`` normalized predictors → ``cond (1, L, C_cond, 6, nf, nf)``;
* :meth:`Runtime.mean` → ``μ (1, L, 1, 6, nf, nf)`` (normalized), overlapping T-frame windows fused;
* :meth:`Runtime.members` → ``(m, L, 6, nf, nf)`` kg m-2 s-1: ``μ + r̂`` with ``r̂`` sampled over the whole
  range at once — at every denoising step each window is denoised and the windows are averaged
  (:func:`downscale.inference.windows.fused_denoiser`), so consecutive windows join without jumps.

Noise is keyed to (seed, member, global frame): the latent of member ``k`` at frame ``t`` is drawn on the
CPU from :func:`frame_seed` (``seed, k, t``), and so is the churn noise of step ``i`` (``seed, k, t, i + 1``).
(The churn seed of step ``i`` is ``frame_seed(frame's seed, 0, 0, i + 1)``.) A member is therefore reproducible bit for bit on the same device, whatever else runs in its batch, and
two work items that overlap in time start their shared frames from the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_catalog.cubesphere import lat_lon_to_unit_vectors
from data_catalog.normalization import NormalizationStats
from data_catalog.prepare import GEOMETRY_FEATURES
from downscale.bundle import BundleMetadata, load_model
from downscale.models.samplers import SamplerConfig, sample
from downscale.inference.windows import fuse_windows, fused_denoiser
from downscale.models.conditioning import build_conditioning
from downscale.models.downscaler import VideoDownscaler


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU; anything else as torch spells it (a CUDA device must exist)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r}: {err}") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def frame_seed(seed: int, member: int, frame: int, step: int = 0) -> int:
    """A 63-bit seed from (base seed, member index, global frame index, sampler step; 0 = latent)."""
    state = np.random.SeedSequence([seed, member, frame, step]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def frame_noise(seeds: np.ndarray, shape: tuple[int, ...], step: int = 0) -> torch.Tensor:
    """Unit normal noise ``(m, L, *shape)`` float64 on the CPU, frame ``(k, t)`` from ``seeds[k, t]`` (and step)."""
    m, length = seeds.shape
    out = torch.empty((m, length, *shape), dtype=torch.float64)
    for k in range(m):
        for t in range(length):
            seed = int(seeds[k, t]) if step == 0 else frame_seed(int(seeds[k, t]), 0, 0, step)
            out[k, t] = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return out


def static_features(meta: BundleMetadata, lat: np.ndarray, lon: np.ndarray,
                    topography: np.ndarray | None) -> np.ndarray:
    """Normalized static channels ``(S, 6, nf, nf)`` float32 in the bundle's order: ``zsurf`` (m) and the
    cell-centre unit vector (from ``lat``/``lon`` in degrees), as :mod:`data_catalog.prepare` made them."""
    xyz = lat_lon_to_unit_vectors(lat, lon)
    channels = []
    for name in meta.static_features:
        if name in GEOMETRY_FEATURES:
            channels.append(xyz[..., GEOMETRY_FEATURES.index(name)])
        elif topography is None:
            raise ValueError(f"bundle {meta.bundle_id} needs the static field {name!r} but the catalog has no "
                             f"static store")
        else:
            channels.append(meta.normalization.normalize(name, np.asarray(topography, dtype=np.float64)))
    return np.stack(channels).astype(np.float32)


@dataclass
class Runtime:
    """A bundle's network on a device with its static conditioning (module docstring)."""

    net: VideoDownscaler
    meta: BundleMetadata
    static: torch.Tensor              # (S, 6, nf, nf) normalized, on device
    sampler: SamplerConfig
    window_stride: int
    members_per_batch: int

    @property
    def device(self) -> torch.device:
        return self.static.device

    @property
    def frames(self) -> int:
        return self.meta.clip_frames

    @property
    def stats(self) -> NormalizationStats:
        return self.meta.normalization

    def normalize_coarse(self, raw: np.ndarray) -> torch.Tensor:
        """Raw predictors ``(L, C, 6, nc, nc)`` (bundle order, SI units) → normalized float32 tensor on device."""
        x = np.array(raw, dtype=np.float32, copy=True)
        for c, name in enumerate(self.meta.predictors):
            self.stats.normalize_(name, x[:, c])
        return torch.from_numpy(x).to(self.device)

    def conditioning(self, coarse: torch.Tensor) -> torch.Tensor:
        return build_conditioning(coarse.unsqueeze(0), self.static, self.meta.factor, "cube")

    def physical(self, y: torch.Tensor) -> torch.Tensor:
        """Normalized target → kg m-2 s-1, ≥ 0 (capped at 1 kg m-2 s-1 before the inverse log transform)."""
        return self.meta.physical_target(y)

    @torch.no_grad()
    def mean(self, cond: torch.Tensor) -> torch.Tensor:
        """Deterministic mean ``μ (1, L, 1, 6, nf, nf)`` (normalized) of ``cond (1, L, C, …)``, windows fused."""
        T = self.frames
        return fuse_windows(lambda s: self.net.forward_mean(cond[:, s:s + T]), cond.shape[1], T, self.window_stride)

    @torch.no_grad()
    def members(self, cond: torch.Tensor, mu: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        """Ensemble members ``(m, L, 6, nf, nf)`` in kg m-2 s-1 for frame seeds ``seeds (m, L)``."""
        out = []
        for first in range(0, seeds.shape[0], self.members_per_batch):
            block = seeds[first:first + self.members_per_batch]
            out.append(self._sample(cond, mu, block))
        return torch.cat(out)

    def _sample(self, cond: torch.Tensor, mu: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        m, length, T = seeds.shape[0], cond.shape[1], self.frames
        cond_d = torch.cat([cond, mu], dim=2).expand(m, *cond.shape[1:2], -1, *cond.shape[3:])
        spatial = tuple(mu.shape[2:])

        def window(x: torch.Tensor, sigma: torch.Tensor, s: int) -> torch.Tensor:
            return self.net.denoiser(x, sigma, cond_d[:, s:s + T])

        latents = frame_noise(seeds, spatial).to(self.device)
        churn = (lambda i: frame_noise(seeds, spatial, i + 1).to(self.device)) if self.sampler.stochastic else None
        denoise = fused_denoiser(window, length, T, self.window_stride)
        residual = sample(denoise, latents, self.sampler, churn_noise=churn)
        return self.physical(self.net.add_residual(mu, residual)).squeeze(2)


def load_runtime(bundle: str | Path, device: str, sampler: SamplerConfig, window_stride: int,
                 members_per_batch: int, lat: np.ndarray, lon: np.ndarray,
                 topography: np.ndarray | None) -> Runtime:
    """Load ``bundle`` onto ``device`` (eval mode) with the static conditioning of the fine grid."""
    dev = resolve_device(device)
    net, meta = load_model(bundle, dev)
    static = torch.from_numpy(static_features(meta, lat, lon, topography)).to(dev)
    return Runtime(net, meta, static, sampler, window_stride, members_per_batch)
