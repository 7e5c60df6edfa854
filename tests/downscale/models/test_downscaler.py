"""VideoDownscaler: mean + residual diffusion; losses, gradient routing, sampling, and an overfit run."""

from __future__ import annotations

import pytest
import torch

from data_catalog.cubesphere import cell_areas
from downscale.models.config import network_preset
from downscale.models.samplers import SamplerConfig
from downscale.models.downscaler import VideoDownscaler
from downscale.models.edm import edm_loss

B, T, C_COND, N = 2, 3, 4, 16


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conditioning, a target that depends on it (locally, nonlinearly and across frames), area weights."""
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(B, T, C_COND, 6, N, N, generator=g)
    target = torch.tanh(cond[:, :, :1] * cond[:, :, 1:2]) + 0.5 * cond[:, :, 2:3].roll(1, dims=1)
    target = (target - target.mean()) / target.std()
    area = torch.from_numpy(cell_areas(N)).float()
    return cond, target, area / area.mean()


def test_shapes_losses_and_sampling():
    torch.manual_seed(0)
    model = VideoDownscaler.build(network_preset("tiny"), C_COND, 1, sigma_data=0.8)
    cond, target, area = batch()
    assert model.forward_mean(cond).shape == target.shape
    losses = model.loss(cond, target, area)
    assert set(losses) == {"total", "mean_loss", "diffusion_loss"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.allclose(losses["total"], losses["mean_loss"] + losses["diffusion_loss"])
    model.eval()
    latents = torch.randn(target.shape, generator=torch.Generator().manual_seed(5))
    a = model.sample(cond, latents)
    b = model.sample(cond, latents, mean=model.forward_mean(cond))
    assert a.shape == target.shape and torch.equal(a, b)
    c = model.sample(cond, latents, SamplerConfig(kind="heun", num_steps=3))
    assert c.shape == target.shape and not torch.equal(a, c)
    assert model.sigma_data == 0.8
    with pytest.raises(ValueError, match="does not fit cond"):
        model.loss(cond, target[..., :8, :8], area)
    with pytest.raises(ValueError, match="do not match the trailing dims"):
        model.loss(cond, target, area[:, :8])


def test_patch_geometry_switches_both_networks():
    model = VideoDownscaler.build(network_preset("tiny"), C_COND, 1)
    model.geometry = "patch"
    assert model.mean_net.geometry == model.denoiser.model.geometry == "patch"
    cond, target = torch.randn(B, T, C_COND, 12, 8), torch.randn(B, T, 1, 12, 8)
    losses = model.loss(cond, target, torch.ones(12, 8))
    assert torch.isfinite(losses["total"])
    assert model.eval().sample(cond, torch.randn(target.shape)).shape == target.shape


def test_the_diffusion_models_the_residual_over_its_scale_and_samples_add_it_back():
    torch.manual_seed(0)
    plain = VideoDownscaler.build(network_preset("tiny"), C_COND, 1).eval()
    scaled = VideoDownscaler.build(network_preset("tiny"), C_COND, 1).eval()
    scaled.load_state_dict(plain.state_dict())
    scale = 0.5 + torch.rand(6, N, N, generator=torch.Generator().manual_seed(3))
    scaled.set_residual_scale(scale)
    cond, target, area = batch()
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(4))
    fixed = {"sigma": torch.full((B,), 0.7), "noise": noise}
    with torch.no_grad():
        mu = plain.forward_mean(cond)
        expected = edm_loss(plain.denoiser, (target - mu) / scale, torch.cat([cond, mu], dim=2), area, **fixed)
        torch.testing.assert_close(scaled.loss(cond, target, area, **fixed)["diffusion_loss"], expected)
        assert abs(float(plain.loss(cond, target, area, **fixed)["diffusion_loss"] - expected)) > 1e-4 * float(expected)
        latents = torch.randn(target.shape, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(scaled.sample(cond, latents) - mu, scale * (plain.sample(cond, latents) - mu))

    reloaded = VideoDownscaler.build(network_preset("tiny"), C_COND, 1)          # a scalar 1 until loaded
    reloaded.load_state_dict(scaled.state_dict())
    assert torch.equal(reloaded.residual_scale, scale)
    old = {k: v for k, v in plain.state_dict().items() if k != "residual_scale"}  # saved before the scale existed
    reloaded.load_state_dict(old)
    assert reloaded.residual_scale.shape == () and float(reloaded.residual_scale) == 1.0


@pytest.mark.parametrize("bad", [torch.zeros(6, N, N), torch.full((6, N, N), float("nan")), torch.ones(N, N)])
def test_a_residual_scale_that_cannot_divide_is_refused(bad):
    model = VideoDownscaler.build(network_preset("tiny"), C_COND, 1)
    with pytest.raises(ValueError, match="positive, finite scalar or"):
        model.set_residual_scale(bad)


@pytest.mark.parametrize("detach", [False, True])
def test_diffusion_gradients_reach_the_mean_only_in_joint_training(detach):
    torch.manual_seed(0)
    model = VideoDownscaler.build(network_preset("tiny"), C_COND, 1, detach_mean=detach)
    cond, target, area = batch()
    diffusion = model.loss(cond, target, area, generator=torch.Generator().manual_seed(0))["diffusion_loss"]
    grads = torch.autograd.grad(diffusion, list(model.mean_net.parameters()), allow_unused=True)
    reach = sum(float(g.abs().sum()) for g in grads if g is not None)
    if detach:
        assert reach == 0.0                                     # CorrDiff: μ is a fixed input to the diffusion
    else:
        assert reach > 0.0                                      # STVD: joint training


def test_overfits_one_batch():
    """Adam on one fixed batch (B=2, T=3, 6×16×16, tiny preset). Mean loss must fall ≥ 10×; the diffusion
    loss, evaluated at fixed σ ∈ {0.2, 1, 5} with fixed noise so that evaluations are comparable, ≥ 2×.
    Measured when written (100 steps, lr 5e-3): mean ≈ 22×, diffusion ≈ 3.4×."""
    torch.manual_seed(0)
    model = VideoDownscaler.build(network_preset("tiny"), C_COND, 1, sigma_data=1.0)
    cond, target, area = batch()
    g = torch.Generator().manual_seed(1)
    eval_sigma = torch.tensor([0.2, 1.0, 5.0])
    eval_noise = torch.randn(len(eval_sigma), *target.shape, generator=g)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            runs = [model.loss(cond, target, area, sigma=s.expand(B), noise=n) for s, n in zip(eval_sigma, eval_noise)]
        return runs[0]["mean_loss"].item(), sum(r["diffusion_loss"].item() for r in runs) / len(runs)

    mean0, diffusion0 = evaluate()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, foreach=True)
    for _ in range(100):
        loss = model.loss(cond, target, area, generator=g)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mean1, diffusion1 = evaluate()
    print(f"overfit factors: mean {mean0 / mean1:.1f}x, diffusion {diffusion0 / diffusion1:.1f}x")
    assert mean0 / mean1 >= 10, (mean0, mean1)
    assert diffusion0 / diffusion1 >= 2, (diffusion0, diffusion1)
