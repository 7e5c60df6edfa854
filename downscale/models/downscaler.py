"""The video downscaler: a deterministic conditional mean plus a residual video diffusion (EDM).

Conditioning ``cond (B, T, C_cond, 6, H, W)`` (cube) or ``(B, T, C_cond, H, W)`` (patch), prepared by
the data layer on the fine grid: upsampled coarse predictors, fine topography, geometry features —
normalized, unitless. Target ``y (B, T, C_out, …)`` in the same layout (normalized log-precipitation).

* ``μ = mean_net(cond)`` — a deterministic :class:`~downscale.models.video_unet.VideoUNet`, trained by
  area-weighted MSE ``mean(w·(μ − y)²)``;
* ``r = (y − μ) / s`` — the residual, modelled by ``D = EDMPrecond(VideoUNet)`` over the whole T-frame clip,
  conditioned on ``[cond, μ]``, trained by the EDM loss (:func:`~downscale.models.edm.edm_loss`). ``s`` is the
  buffer ``residual_scale``: 1 (a scalar) unless a per-cell scale ``(6, H, W)`` was set
  (:meth:`VideoDownscaler.set_residual_scale`, :mod:`downscale.training.residual_scale`);
* a sample is ``μ + s·r̂`` with ``r̂`` from a sampler of :mod:`downscale.models.samplers` (the production one
  by default: what validation samples is what generation ships).

``detach_mean=False`` (STVD, Srivastava et al. 2024: joint training) lets the diffusion loss push
gradients into the mean network through the residual and the conditioning; ``detach_mean=True``
(CorrDiff, Mardani et al. 2024: two stages) stops them at μ. For a fully two-stage run, freeze
``mean_net``'s parameters as well.

:class:`DownscalerSpec` is the serializable description of a downscaler (what a model bundle records);
``spec.build()`` returns the module, with freshly initialized weights::

    >>> net = DownscalerSpec(network=network_preset("tiny"), in_channels=6).build()
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from downscale.models.config import Geometry, NetworkConfig
from downscale.models.edm import EDMPrecond, edm_loss
from downscale.models.samplers import PRODUCTION_SAMPLER, SamplerConfig, sample
from downscale.models.video_unet import VideoUNet


#: How μ and the residual diffusion train: ``joint`` (STVD), ``detached`` (together, the diffusion loss's
#: gradients stopped at μ: ``detach_mean``) or ``two_stage`` (CorrDiff: μ first, then frozen, also detached).
TrainingMode = Literal["joint", "detached", "two_stage"]


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(w·(prediction − target)²)``; ``weights`` broadcast against the trailing dims (mean 1 for a
    weighted mean, e.g. cell area ``(6, H, W)`` / its mean)."""
    err = (prediction - target) ** 2
    if weights is None:
        return err.mean()
    if weights.shape != err.shape[err.ndim - weights.ndim:]:
        raise ValueError(f"loss weights {tuple(weights.shape)} do not match the trailing dims of {tuple(err.shape)}")
    return (err * weights).mean()


class VideoDownscaler(nn.Module):
    """``mean_net`` (deterministic) + ``denoiser`` (EDM residual diffusion); see the module docstring."""

    def __init__(self, mean_net: VideoUNet, denoiser: EDMPrecond, *, detach_mean: bool = False,
                 P_mean: float = -1.2, P_std: float = 1.2, diffusion_weight: float = 1.0) -> None:
        super().__init__()
        self.mean_net = mean_net
        self.denoiser = denoiser
        self.detach_mean = detach_mean
        self.P_mean, self.P_std = P_mean, P_std
        self.diffusion_weight = diffusion_weight
        self.register_buffer("residual_scale", torch.ones(()))

    @classmethod
    def build(cls, network_config: NetworkConfig, in_channels: int, out_channels: int, sigma_data: float = 1.0,
              **options: Any) -> VideoDownscaler:
        """Two UNets of the same shape: ``mean_net`` (C_cond → C_out, no noise input) and the denoiser's
        F (C_out noisy residual + C_cond + C_out μ → C_out, noise-conditioned). ``options``: ``detach_mean``,
        ``P_mean``, ``P_std``, ``diffusion_weight``."""
        mean_net = VideoUNet(network_config, in_channels, out_channels, noise_conditioning=False)
        backbone = VideoUNet(network_config, out_channels + in_channels + out_channels, out_channels,
                             noise_conditioning=True)
        return cls(mean_net, EDMPrecond(backbone, sigma_data), **options)

    @property
    def sigma_data(self) -> float:
        return self.denoiser.sigma_data

    @property
    def geometry(self) -> Geometry:
        return self.mean_net.geometry

    @geometry.setter
    def geometry(self, value: Geometry) -> None:
        self.mean_net.geometry = value
        self.denoiser.model.geometry = value

    def set_residual_scale(self, scale: torch.Tensor) -> None:
        """Let the diffusion model ``(y − μ) / scale``; ``scale`` a positive, finite scalar or per-cell ``(6, H, W)``
        map (normalized units; whole cubes only)."""
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if scale.ndim not in (0, 3) or not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
            raise ValueError(f"a residual scale must be a positive, finite scalar or (6, H, W) map, got shape "
                             f"{tuple(scale.shape)} with minimum {float(scale.min()):g}")
        self.residual_scale = scale.to(self.residual_scale.device)

    def scaled_residual(self, target: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """The residual in the diffusion's units, ``(y − μ) / s``: what the denoiser models."""
        return (target - mu) / self.residual_scale

    def add_residual(self, mu: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """A sample ``μ + s·r̂`` from the mean and a residual ``r̂`` in the diffusion's units (the inverse of
        :meth:`scaled_residual`)."""
        return mu + self.residual_scale * residual

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The scale's shape is the saved model's (a per-cell map or a scalar); models saved before it existed had 1.
        key = prefix + "residual_scale"
        if key in state_dict:
            self.residual_scale = torch.empty_like(state_dict[key], device=self.residual_scale.device)
        else:
            state_dict[key] = torch.ones(())
            self.residual_scale = torch.ones((), device=self.residual_scale.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_mean(self, cond: torch.Tensor) -> torch.Tensor:
        """``μ (B, T, C_out, …)`` from ``cond (B, T, C_cond, …)``."""
        return self.mean_net(cond)

    forward = forward_mean

    def _mean_for_diffusion(self, mu: torch.Tensor) -> torch.Tensor:
        return mu.detach() if self.detach_mean else mu

    def loss(self, cond: torch.Tensor, target: torch.Tensor, area_weights: torch.Tensor | None = None, *,
             sigma: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"total", "mean_loss", "diffusion_loss"}`` for one batch; ``total = mean_loss +
        diffusion_weight·diffusion_loss``. ``sigma (B,)``/``noise`` fix the diffusion draw (for evaluation)."""
        if target.shape[:2] != cond.shape[:2] or target.shape[3:] != cond.shape[3:]:
            raise ValueError(f"target {tuple(target.shape)} does not fit cond {tuple(cond.shape)} (all dims but channels)")
        mu = self.forward_mean(cond)
        mean_loss = weighted_mse(mu, target, area_weights)
        mu_d = self._mean_for_diffusion(mu)
        diffusion_loss = edm_loss(self.denoiser, self.scaled_residual(target, mu_d), torch.cat([cond, mu_d], dim=2),
                                  area_weights, P_mean=self.P_mean, P_std=self.P_std, sigma=sigma, noise=noise,
                                  generator=generator)
        return {"total": mean_loss + self.diffusion_weight * diffusion_loss,
                "mean_loss": mean_loss, "diffusion_loss": diffusion_loss}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, latents: torch.Tensor, sampler: SamplerConfig = PRODUCTION_SAMPLER, *,
               mean: torch.Tensor | None = None, churn_noise: Any = None) -> torch.Tensor:
        """One ensemble member per clip: ``μ + s·r̂ (B, T, C_out, …)``, ``r̂`` from ``sampler`` started at
        unit-variance ``latents`` (shaped like μ; ``churn_noise`` for a stochastic Heun sampler). Pass ``mean`` to
        reuse a μ already computed. Call ``.eval()`` first (dropout)."""
        mu = self.forward_mean(cond) if mean is None else mean
        if latents.shape != mu.shape:
            raise ValueError(f"latents {tuple(latents.shape)} must be shaped like the mean {tuple(mu.shape)}")
        cond_d = torch.cat([cond, mu], dim=2)
        residual = sample(lambda x, sigma: self.denoiser(x, sigma, cond_d), latents.to(mu.device), sampler,
                          churn_noise=churn_noise, dtype=mu.dtype)
        return self.add_residual(mu, residual)

    def sample_members(self, cond: torch.Tensor, members: int, sampler: SamplerConfig, generator: torch.Generator,
                       *, mean: torch.Tensor | None = None, members_per_batch: int = 1) -> torch.Tensor:
        """``members`` ensemble members of each clip, ``(K, B, T, C_out, …)`` in normalized units: :meth:`sample`
        ``members_per_batch`` members at a time, latents (and churn noise) drawn in order from ``generator``
        (a CPU generator: the same seed gives the same members on any device). Call ``.eval()`` first."""
        mu = self.forward_mean(cond) if mean is None else mean
        b, out = cond.shape[0], []
        for first in range(0, members, members_per_batch):
            m = min(members_per_batch, members - first)
            rep = lambda x: x.unsqueeze(0).expand(m, *x.shape).reshape(m * b, *x.shape[1:])  # noqa: E731
            latents = torch.randn((m * b, *mu.shape[1:]), generator=generator, dtype=torch.float64).to(mu.device)
            churn = None
            if sampler.stochastic:
                churn = lambda i, shape=latents.shape: torch.randn(shape, generator=generator).to(mu.device)  # noqa: E731
            sample = self.sample(rep(cond), latents, sampler, mean=rep(mu), churn_noise=churn)
            out.append(sample.reshape(m, b, *sample.shape[1:]))
        return torch.cat(out)


class DownscalerSpec(BaseModel):
    """Everything needed to rebuild a :class:`VideoDownscaler` (weights aside); :meth:`build` builds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: NetworkConfig = Field(description="shape of both UNets (mean network and denoiser backbone)")
    in_channels: int = Field(ge=1, description="conditioning channels C_cond (predictors + static features)")
    out_channels: int = Field(1, ge=1, description="target channels C_out")
    sigma_data: float = Field(1.0, gt=0, description="EDM σ_data of the residual (normalized units)")
    detach_mean: bool = Field(False, description="stop diffusion gradients at μ (two-stage training)")
    P_mean: float = Field(-1.2, description="mean of ln σ in the EDM training noise distribution")
    P_std: float = Field(1.2, gt=0, description="std of ln σ in the EDM training noise distribution")
    diffusion_weight: float = Field(1.0, ge=0, description="weight of the diffusion loss in the total loss")

    def build(self) -> VideoDownscaler:
        """A new :class:`VideoDownscaler` of this shape (random initial weights, training mode, on the CPU)."""
        return VideoDownscaler.build(self.network, self.in_channels, self.out_channels, self.sigma_data,
                                     detach_mean=self.detach_mean, P_mean=self.P_mean, P_std=self.P_std,
                                     diffusion_weight=self.diffusion_weight)
