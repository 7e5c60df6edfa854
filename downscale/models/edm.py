"""EDM diffusion parts (Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"), each one equation of the paper.

Noise model: x = y + n, n ~ N(0, σ² I). The denoiser D(x; σ) estimates E[y | x].

* Preconditioning (Table 1, "Ours"), :func:`edm_coefficients` and :class:`EDMPrecond`::

      c_skip = σ_d² / (σ² + σ_d²)      c_out = σ·σ_d / √(σ² + σ_d²)
      c_in   = 1 / √(σ² + σ_d²)        c_noise = ln(σ) / 4
      D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise)

  Conditioning channels (not noised, not scaled) are concatenated to ``c_in·x`` at the network input.
* Training loss (Eq. 2 with Table 1), :func:`edm_loss`::

      ln σ ~ N(P_mean, P_std²),  λ(σ) = (σ² + σ_d²) / (σ·σ_d)²,
      L = E_{σ, y, n}[ λ(σ) · w · ‖D(y + n; σ) − y‖² ]    (w: optional per-cell weights, e.g. area)

* Sampler (Algorithm 2, with Eq. 5 time steps), :func:`edm_sigma_steps` and :func:`edm_heun_sampler`::

      σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  i < N;  σ_N = 0

  Heun's 2nd-order step except on the last step (σ_N = 0), with optional churn S_churn, S_tmin,
  S_tmax, S_noise. The initial noise (``latents``) and the churn noise (``churn_noise(i)``) can be
  supplied by the caller, e.g. keyed to global frame indices for bit-reproducible ensemble members.

Shapes: clips ``(B, T, C, 6, H, W)`` (cube) or ``(B, T, C, H, W)`` (patch); σ per clip ``(B,)``.
σ_d (``sigma_data``) is the std of the data the diffusion models — here the residual target − μ of
normalized log-precipitation, so of order 1 (default 1.0; the training code sets it from data).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   #: D(x, σ (B,)) → estimate of y


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """``(c_skip, c_out, c_in, c_noise)`` of EDM Table 1, elementwise in ``sigma``."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """``D(x; σ, cond) = c_skip·x + c_out·F([c_in·x, cond]; c_noise)`` around a noise-conditioned network F.

    ``model(x, c_noise)`` maps ``(B, T, C_x + C_cond, *S)`` and ``c_noise (B,)`` to ``(B, T, C_x, *S)``.
    ``forward(x, sigma, cond)``: ``x (B, T, C_x, *S)``, ``sigma (B,)`` or a scalar, ``cond`` with the same
    leading and trailing dims as ``x`` or None. Computed in float32.
    """

    def __init__(self, model: nn.Module, sigma_data: float = 1.0) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.model = model
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or ({x.shape[0]},), got shape {tuple(sigma.shape)}")
        c_skip, c_out, c_in, c_noise = (c.view(-1, *[1] * (x.ndim - 1)) for c in edm_coefficients(sigma, self.sigma_data))
        net_input = c_in * x
        if cond is not None:
            if cond.shape[:2] != x.shape[:2] or cond.shape[3:] != x.shape[3:]:
                raise ValueError(f"cond {tuple(cond.shape)} does not fit x {tuple(x.shape)} (all dims but channels)")
            net_input = torch.cat([net_input, cond.to(torch.float32)], dim=2)
        F_x = self.model(net_input, c_noise.flatten())
        return c_skip * x + c_out * F_x.to(torch.float32)


def sample_sigma(batch: int, P_mean: float = -1.2, P_std: float = 1.2, *, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Training noise levels, ``ln σ ~ N(P_mean, P_std²)``: ``(batch,)``."""
    return (torch.randn(batch, device=device, generator=generator) * P_std + P_mean).exp()


def edm_loss(denoiser: EDMPrecond, y: torch.Tensor, cond: torch.Tensor | None = None,
             weights: torch.Tensor | None = None, *, P_mean: float = -1.2, P_std: float = 1.2,
             sigma: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar EDM loss ``mean(λ(σ)·w·(D(y + σ·ε; σ) − y)²)`` over clips and cells.

    ``y (B, T, C, *S)`` clean data (the residual); ``weights`` broadcast against the trailing dims
    (area weights ``(6, H, W)`` with mean 1 give an area-weighted mean). ``sigma (B,)`` and ``noise ε``
    (shaped like y, unit variance) default to fresh draws (from ``generator``); pass them to evaluate
    the loss at fixed noise.
    """
    sigma_d = denoiser.sigma_data
    if sigma is None:
        sigma = sample_sigma(y.shape[0], P_mean, P_std, device=y.device, generator=generator)
    if noise is None:
        noise = torch.randn(y.shape, device=y.device, dtype=y.dtype, generator=generator)
    if weights is not None and weights.shape != y.shape[y.ndim - weights.ndim:]:
        raise ValueError(f"loss weights {tuple(weights.shape)} do not match the trailing dims of y {tuple(y.shape)}")
    s = sigma.view(-1, *[1] * (y.ndim - 1))
    lam = (s**2 + sigma_d**2) / (s * sigma_d) ** 2
    D_yn = denoiser(y + s * noise, sigma, cond)
    loss = lam * (D_yn - y) ** 2
    return (loss * weights if weights is not None else loss).mean()


def edm_sigma_steps(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Time steps of Eq. 5, ``(σ_0 = σ_max, …, σ_{N−1} = σ_min, σ_N = 0)``: ``(num_steps + 1,)`` float64."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if num_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64, device=device)
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    sigmas = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@torch.no_grad()
def edm_heun_sampler(denoise: Denoiser, shape: tuple[int, ...], *, num_steps: int = 18, sigma_min: float = 0.002,
                     sigma_max: float = 80.0, rho: float = 7.0, S_churn: float = 0.0, S_tmin: float = 0.0,
                     S_tmax: float = math.inf, S_noise: float = 1.0, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                     latents: torch.Tensor | None = None,
                     churn_noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """EDM Algorithm 2: start from ``x_0 ~ N(0, σ_0² I)`` of ``shape`` and integrate the probability-flow ODE
    ``dx/dσ = (x − D(x; σ))/σ`` down to σ_N = 0 with Heun steps; returns ``x_N`` (``dtype``).

    ``denoise(x, sigma)`` gets ``x`` in ``dtype`` and ``sigma (B,)``. ``latents`` (unit variance, ``shape``)
    fix the initial noise, ``x_0 = σ_0·latents``; ``churn_noise(i)`` returns the unit-variance noise
    (``shape``) added at step ``i ∈ [0, num_steps)``, called only on steps with churn (γ_i > 0). What is not
    supplied is drawn from ``generator`` (initial noise first, then churn step by step), so a seeded
    generator reproduces a sample exactly. The ODE state is kept in float64 (as the paper's code does) to
    keep the 2nd-order steps accurate.
    """
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho, device=device)
    batch = shape[0]

    def D(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = torch.full((batch,), float(t), dtype=dtype, device=x.device)
        return denoise(x.to(dtype), sigma).to(torch.float64)

    def draw() -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64, device=device)

    def unit_noise(noise: torch.Tensor, what: str) -> torch.Tensor:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"{what} must have shape {tuple(shape)}, got {tuple(noise.shape)}")
        return noise.to(device=device, dtype=torch.float64)

    x_next = (draw() if latents is None else unit_noise(latents, "latents")) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:], strict=True)):
        x_cur = x_next
        # Churn: raise the noise level to t_hat = (1 + γ)·t_cur by adding fresh noise.
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_tmin <= t_cur <= S_tmax else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            eps = draw() if churn_noise is None else unit_noise(churn_noise(i), f"churn_noise({i})")
            x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * S_noise * eps
        else:
            x_hat = x_cur
        # Euler step from t_hat to t_next.
        d_cur = (x_hat - D(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        # Heun (2nd-order) correction, except on the last step where t_next = 0.
        if i < num_steps - 1:
            d_prime = (x_next - D(x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next.to(dtype)
