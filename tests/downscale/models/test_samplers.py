"""Samplers against exact (Gaussian) denoisers, the exact probability-flow ODE path, and their bookkeeping."""

from __future__ import annotations

import json
import math

import pytest
import torch

from downscale.models.samplers import SamplerConfig, dpm_solver_pp_2m, sample
from downscale.models.edm import edm_heun_sampler, edm_sigma_steps

M, S = 0.3, 0.8
SIGMA_MAX = 80.0
EDM = {"sigma_min": 0.002, "sigma_max": SIGMA_MAX, "rho": 7.0}     # the paper's schedule (the exact ODE tests)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact D(x; σ) = (s²x + σ²m)/(s² + σ²) for data ~ N(m, s²) per element; x (B, n), σ (B,)."""
    s2 = sigma.view(-1, 1) ** 2
    return (S**2 * x + s2 * M) / (S**2 + s2)


def exact_ode_endpoint(latents: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE is linear for Gaussian data: x(0) = m + (x(σ_max) − m)·s/√(s² + σ_max²)."""
    return M + (latents * SIGMA_MAX - M) * S / math.sqrt(S**2 + SIGMA_MAX**2)


def euler(denoise, latents: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Euler (DDIM) on the same schedule, ``num_steps`` evaluations, the 1st-order reference."""
    sigmas = edm_sigma_steps(num_steps)
    x = latents * sigmas[0]
    for sigma_cur, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = x + (sigma_next - sigma_cur) * (x - denoise(x, sigma_cur.expand(x.shape[0]))) / sigma_cur
    return x


def latents_of(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def keyed_churn(shape: tuple[int, ...], seed: int):
    """Churn noise of step i from its own seed, as a caller keys it to frames."""
    return lambda i: torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1000 + i))


class Counter:
    def __init__(self, denoise) -> None:
        self.denoise, self.calls = denoise, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoise(x, sigma)


@pytest.mark.parametrize("config", [SamplerConfig(kind="heun", num_steps=32, **EDM),
                                    SamplerConfig(kind="dpmpp_2m", num_steps=48, **EDM),
                                    SamplerConfig(kind="heun", num_steps=64, S_churn=40.0, S_tmin=0.05, S_tmax=50,
                                                  **EDM)])
def test_samplers_reproduce_the_gaussian(config):
    shape = (20, 1000)
    out = sample(gaussian_denoiser, latents_of(shape, 0), config, churn_noise=keyed_churn(shape, 1))
    assert out.dtype == torch.float32
    assert out.mean().item() == pytest.approx(M, abs=0.03)
    assert out.std().item() == pytest.approx(S, rel=0.03)


@pytest.mark.parametrize("nfe", range(5, 11))
def test_dpmpp_2m_beats_euler_at_equal_nfe(nfe):
    latents = latents_of((4, 500), 3)
    exact = exact_ode_endpoint(latents)
    dpm = sample(gaussian_denoiser, latents, SamplerConfig.for_nfe("dpmpp_2m", nfe, **EDM), dtype=torch.float64)
    err_dpm = (dpm - exact).abs().max().item()
    err_euler = (euler(gaussian_denoiser, latents, nfe) - exact).abs().max().item()
    assert err_dpm < err_euler / 1.5, (err_dpm, err_euler)


def test_dpmpp_2m_converges_at_second_order():
    latents = latents_of((4, 500), 3)
    exact = exact_ode_endpoint(latents)
    outs = [dpm_solver_pp_2m(gaussian_denoiser, latents, num_steps=n, dtype=torch.float64) for n in (20, 40, 80)]
    errors = [(out - exact).abs().max().item() for out in outs]
    assert errors[1] < errors[0] / 3.5 and errors[2] < errors[1] / 3.5, errors


def test_dpmpp_2m_first_steps_by_hand():
    """Two steps and the final one written out from the paper: x_1 first order, x_2 with r = h_0/h_1, x_3 = D_2."""
    latents = latents_of((2, 7), 5)
    sigmas = edm_sigma_steps(3)
    lam = -sigmas.log()

    def D(x, i):
        return gaussian_denoiser(x, sigmas[i].expand(2))

    x0 = latents * sigmas[0]
    h0, h1 = lam[1] - lam[0], lam[2] - lam[1]
    x1 = sigmas[1] / sigmas[0] * x0 - (torch.exp(-h0) - 1) * D(x0, 0)
    r = h0 / h1
    x2 = sigmas[2] / sigmas[1] * x1 - (torch.exp(-h1) - 1) * ((1 + 1 / (2 * r)) * D(x1, 1) - 1 / (2 * r) * D(x0, 0))
    out = dpm_solver_pp_2m(gaussian_denoiser, latents, num_steps=3, dtype=torch.float64)
    assert torch.allclose(out, D(x2, 2), rtol=1e-12, atol=1e-12)


def test_heun_churn_is_reproducible_given_the_churn_noise():
    shape = (2, 300)
    latents = latents_of(shape, 0)
    churn = SamplerConfig(kind="heun", num_steps=10, S_churn=20.0)
    deterministic = sample(gaussian_denoiser, latents, SamplerConfig(kind="heun", num_steps=10))
    a = sample(gaussian_denoiser, latents, churn, churn_noise=keyed_churn(shape, 1))
    b = sample(gaussian_denoiser, latents, churn, churn_noise=keyed_churn(shape, 1))
    c = sample(gaussian_denoiser, latents, churn, churn_noise=keyed_churn(shape, 2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, deterministic, atol=1e-3) and not torch.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="stochastic .* pass churn_noise"):
        sample(gaussian_denoiser, latents, churn)
    with pytest.raises(ValueError, match=r"churn_noise\(0\) must have shape"):
        sample(gaussian_denoiser, latents, churn, churn_noise=keyed_churn((2, 3), 1))


@pytest.mark.parametrize("kind", ["heun", "dpmpp_2m"])
def test_latents_give_bit_identical_samples(kind):
    config = SamplerConfig(kind=kind, num_steps=6)
    latents = latents_of((3, 50), 4).float()

    def run():
        return sample(gaussian_denoiser, latents.clone(), config)

    assert torch.equal(run(), run())
    assert not torch.equal(run(), sample(gaussian_denoiser, latents_of((3, 50), 5), config))


def test_heun_latents_match_the_generator_draw():
    """latents = the generator's first draw reproduce the generator path bit for bit (the refactor is faithful)."""
    shape = (2, 40)
    drawn = edm_heun_sampler(gaussian_denoiser, shape, num_steps=5, generator=torch.Generator().manual_seed(9))
    given = edm_heun_sampler(gaussian_denoiser, shape, num_steps=5, latents=latents_of(shape, 9))
    assert torch.equal(drawn, given)
    with pytest.raises(ValueError, match="latents must have shape"):
        edm_heun_sampler(gaussian_denoiser, shape, num_steps=5, latents=latents_of((2, 41), 9))


@pytest.mark.parametrize("kind", ["heun", "dpmpp_2m"])
@pytest.mark.parametrize("num_steps", [1, 2, 5, 18])
def test_denoiser_calls_equal_nfe(kind, num_steps):
    shape = (1, 4)
    for churn in ([0.0, 10.0] if kind == "heun" else [0.0]):
        config = SamplerConfig(kind=kind, num_steps=num_steps, S_churn=churn)
        counter = Counter(gaussian_denoiser)
        sample(counter, latents_of(shape, 0), config, churn_noise=keyed_churn(shape, 0))
        assert counter.calls == config.nfe == (2 * num_steps - 1 if kind == "heun" else num_steps)
        assert config.stochastic == (churn > 0)


def test_for_nfe_picks_the_steps():
    heun = SamplerConfig.for_nfe("heun", 35, S_churn=5.0)
    assert (heun.num_steps, heun.nfe, heun.S_churn) == (18, 35, 5.0)
    assert SamplerConfig.for_nfe("heun", 1).num_steps == 1
    assert SamplerConfig.for_nfe("dpmpp_2m", 8).num_steps == 8
    with pytest.raises(ValueError, match="nfe must be odd, got nfe=8"):
        SamplerConfig.for_nfe("heun", 8)
    with pytest.raises(ValueError, match="nfe must be >= 1"):
        SamplerConfig.for_nfe("dpmpp_2m", 0)


@pytest.mark.parametrize(("settings", "message"), [
    ({"kind": "dpmpp_2m", "num_steps": 8, "S_churn": 1.0}, "S_churn=1.0 needs kind='heun': dpmpp_2m is deterministic"),
    ({"kind": "heun", "num_steps": 8, "sigma_min": 2.0, "sigma_max": 1.0}, "sigma_min < sigma_max"),
    ({"kind": "heun", "num_steps": 8, "sigma_min": 0.0}, "0 < sigma_min"),
    ({"kind": "heun", "num_steps": 8, "sigma_min": 1.0, "sigma_max": 1.0}, "sigma_min < sigma_max"),
    ({"kind": "heun", "num_steps": 0}, "num_steps"),
    ({"kind": "heun", "num_steps": 8, "S_churn": -1.0}, "S_churn"),
    ({"kind": "heun", "num_steps": 8, "S_tmin": 2.0, "S_tmax": 1.0}, "S_tmin <= S_tmax"),
    ({"kind": "euler", "num_steps": 8}, "kind"),
    ({"kind": "heun", "num_steps": 8, "steps": 3}, "steps"),
])
def test_invalid_configs_name_the_field(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**settings)


def test_attrs_are_flat_json_and_parse_back():
    config = SamplerConfig(kind="heun", num_steps=18, S_churn=2.5, S_tmin=0.05, **EDM)
    attrs = config.attrs()
    assert attrs == {"sampler_kind": "heun", "sampler_num_steps": 18, "sampler_sigma_min": 0.002,
                     "sampler_sigma_max": 80.0, "sampler_rho": 7.0, "sampler_S_churn": 2.5, "sampler_S_tmin": 0.05,
                     "sampler_S_tmax": None, "sampler_S_noise": 1.0, "sampler_nfe": 35}
    stored = json.loads(json.dumps(attrs, allow_nan=False))
    fields = {k.removeprefix("sampler_"): v for k, v in stored.items() if k != "sampler_nfe"}
    assert SamplerConfig(**fields) == config


def test_the_production_sampler_keeps_every_mode_size_within_5_percent():
    """Gaussian oracle with large- and small-variance modes (s from 0.03 to 2, σ_data ≈ 0.5): the sampled std of
    each mode within 5 % of the true std at the production NFE — the EDM defaults at the same NFE are not."""
    from downscale.models.samplers import PRODUCTION_SAMPLER

    s = torch.tensor([0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    latents = latents_of((4000, s.numel()), 11)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return s**2 / (s**2 + sigma.view(-1, 1) ** 2) * x

    def std_ratio(config: SamplerConfig) -> torch.Tensor:
        out = sample(denoise, latents, config, dtype=torch.float64)
        return out.std(0) / (s * latents.std(0))      # the ODE is linear: the latents' own std cancels

    assert PRODUCTION_SAMPLER.nfe <= 10
    production = std_ratio(PRODUCTION_SAMPLER)
    assert (production - 1).abs().max().item() < 0.05, production
    edm_defaults = std_ratio(SamplerConfig(kind="dpmpp_2m", num_steps=PRODUCTION_SAMPLER.num_steps, **EDM))
    assert (edm_defaults - 1).abs().max().item() > 0.1, edm_defaults
