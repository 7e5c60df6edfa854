"""EDM parts against the paper's formulas and exact (oracle) denoisers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from downscale.models.config import network_preset
from downscale.models.edm import EDMPrecond, edm_coefficients, edm_heun_sampler, edm_loss, edm_sigma_steps
from downscale.models.video_unet import VideoUNet


class Recorder(nn.Module):
    """F that records its inputs and returns a fixed field, to read off the preconditioning."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out
        self.seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.seen = (x, c_noise)
        return self.out


class Zero(nn.Module):
    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :, :1])


def test_coefficients_are_table_1():
    sigma, sd = torch.tensor([0.002, 0.5, 1.0, 80.0], dtype=torch.float64), 0.7
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(sd**2 / (s**2 + sd**2), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * sd / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    # the effective training target of F has unit variance: c_skip² σ_d² + … ⇒ c_in²(σ² + σ_d²) = 1
    assert torch.allclose(c_in**2 * (sigma**2 + sd**2), torch.ones_like(sigma))


def test_precond_combines_skip_network_and_conditioning():
    B, T = 2, 3
    x, cond = torch.randn(B, T, 1, 6, 4, 4), torch.randn(B, T, 2, 6, 4, 4)
    f_out = torch.randn(B, T, 1, 6, 4, 4)
    rec = Recorder(f_out)
    precond = EDMPrecond(rec, sigma_data=0.5)
    sigma = torch.tensor([0.1, 3.0])
    D = precond(x, sigma, cond)
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, 0.5)
    view = (B, 1, 1, 1, 1, 1)
    assert torch.allclose(D, c_skip.view(view) * x + c_out.view(view) * f_out)
    net_in, seen_noise = rec.seen
    assert torch.allclose(net_in[:, :, :1], c_in.view(view) * x) and torch.equal(net_in[:, :, 1:], cond)
    assert torch.allclose(seen_noise, c_noise)
    assert precond(x, 2.0).shape == x.shape                       # a scalar σ is broadcast to the batch
    with pytest.raises(ValueError, match="does not fit x"):
        precond(x, sigma, cond[..., :2, :2])
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        EDMPrecond(rec, sigma_data=0.0)


def test_sigma_steps_follow_eq_5():
    steps = edm_sigma_steps(18, 0.002, 80.0, 7.0)
    assert steps.shape == (19,) and steps.dtype == torch.float64
    assert steps[0].item() == pytest.approx(80.0) and steps[17].item() == pytest.approx(0.002) and steps[18] == 0
    assert (steps[1:] < steps[:-1]).all()
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert steps[i].item() == pytest.approx(expected, rel=1e-12)
    assert edm_sigma_steps(1).tolist() == [80.0, 0.0]
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        edm_sigma_steps(10, sigma_min=1.0, sigma_max=0.5)


@pytest.mark.parametrize("churn", [0.0, 30.0])
def test_sampler_with_an_oracle_denoiser_returns_the_single_data_point(churn):
    """Data = one known point y*: D(x; σ) = y* exactly, and every trajectory must end there."""
    y_star = torch.randn(3, 2, 1, 6, 4, 4, generator=torch.Generator().manual_seed(1))
    out = edm_heun_sampler(lambda x, s: y_star.expand_as(x), tuple(y_star.shape), num_steps=12, S_churn=churn,
                           generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, y_star, atol=1e-5)


M, S = 0.3, 0.8


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact D(x; σ) = m + s²/(s² + σ²)·(x − m) for data ~ N(m, s²) per cell."""
    return M + S**2 / (S**2 + sigma.view(-1, 1) ** 2) * (x - M)


def test_heun_sampler_converges_at_second_order_to_the_exact_ode_path():
    """For Gaussian data the probability-flow ODE is linear: x(σ) − m = (x_0 − m)·√(s² + σ²)/√(s² + σ_max²).
    Heun's error against that exact end point must shrink about 4× per doubling of the steps."""
    shape, seed = (4, 500), 3
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 80.0
    exact = M + (x0 - M) * S / math.sqrt(S**2 + 80.0**2)
    errors, gains = [], []
    for steps in (16, 32, 64):
        out = edm_heun_sampler(gaussian_denoiser, shape, num_steps=steps, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(seed))
        errors.append((out - exact).abs().max().item())
        gains.append(((out - M) / (exact - M)).mean().item())   # the ODE is linear: one gain for all samples
    assert abs(gains[0] - 1) < 0.1 and abs(gains[2] - 1) < 0.01, gains
    assert errors[1] < errors[0] / 3.5 and errors[2] < errors[1] / 3.5, errors


def test_stochastic_sampler_reproduces_the_gaussian():
    """With churn the trajectories differ from the ODE, but the samples must still be N(m, s²)."""
    out = edm_heun_sampler(gaussian_denoiser, (20, 1000), num_steps=64, S_churn=40.0, S_tmin=0.05, S_tmax=50,
                           generator=torch.Generator().manual_seed(0))
    assert out.mean().item() == pytest.approx(M, abs=0.03)
    assert out.std().item() == pytest.approx(S, rel=0.03)


def test_sampler_is_reproducible_bit_for_bit_with_a_seeded_generator():
    torch.manual_seed(0)
    net = EDMPrecond(VideoUNet(network_preset("tiny"), 3, 1, noise_conditioning=True), sigma_data=1.0).eval()
    cond = torch.randn(1, 3, 2, 6, 16, 16)

    def run(seed):
        return edm_heun_sampler(lambda x, s: net(x, s, cond), (1, 3, 1, 6, 16, 16), num_steps=4, S_churn=5.0,
                                generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_loss_of_the_exact_denoiser_is_one_at_every_sigma():
    """For y ~ N(0, σ_d²) the exact denoiser is D = c_skip·x, i.e. F = 0, and λ(σ) makes its expected loss
    λ(σ)·σ²σ_d²/(σ² + σ_d²) = 1 at every σ — the point of EDM's loss weighting."""
    sd = 0.6
    precond = EDMPrecond(Zero(), sigma_data=sd)
    g = torch.Generator().manual_seed(0)
    y = sd * torch.randn(4, 2, 1, 6, 16, 16, generator=g)
    for sigma in (0.01, 0.5, 20.0):
        loss = edm_loss(precond, y, sigma=torch.full((4,), sigma), generator=g)
        assert loss.item() == pytest.approx(1.0, rel=0.03)
    random_sigma_loss = edm_loss(precond, y, generator=g)             # ln σ ~ N(−1.2, 1.2²)
    assert random_sigma_loss.item() == pytest.approx(1.0, rel=0.05)


def test_loss_weights_give_a_weighted_mean():
    sd = 1.0
    precond = EDMPrecond(Zero(), sigma_data=sd)
    y = torch.zeros(2, 1, 1, 6, 4, 4)
    y[..., 0, :, :] = 1.0                                             # error only on tile 0
    weights = torch.ones(6, 4, 4)
    weights[0] = 3.0
    weights = weights / weights.mean()
    noise, sigma = torch.zeros_like(y), torch.full((2,), 1.0)
    plain = edm_loss(precond, y, sigma=sigma, noise=noise)
    weighted = edm_loss(precond, y, weights=weights, sigma=sigma, noise=noise)
    assert weighted.item() == pytest.approx(plain.item() * weights[0, 0, 0].item(), rel=1e-6)
    with pytest.raises(ValueError, match="do not match the trailing dims"):
        edm_loss(precond, y, weights=torch.ones(6, 5, 5), sigma=sigma, noise=noise)
