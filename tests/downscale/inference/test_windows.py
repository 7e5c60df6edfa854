"""Window fusion: coverage, exactness on consistent windows, the weighted average, and no seams in time."""

from __future__ import annotations

import pytest
import torch

from downscale.models.samplers import SamplerConfig, sample
from downscale.inference.windows import count_window_evaluations, fused_denoiser, window_starts, window_weights


def block(length: int, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """A block state ``(B, L, C=1, 6, 4, 4)`` (cube layout)."""
    return torch.randn(batch, length, 1, 6, 4, 4, generator=torch.Generator().manual_seed(seed))


def sigma_of(x: torch.Tensor) -> torch.Tensor:
    return torch.linspace(0.5, 2.0, x.shape[0])


@pytest.mark.parametrize(("length", "frames", "stride"), [(5, 5, 1), (12, 5, 2), (13, 5, 2), (20, 5, 5), (21, 5, 5),
                                                          (9, 3, 1), (10, 4, 3)])
def test_starts_cover_every_frame_and_end_at_length(length, frames, stride):
    starts = window_starts(length, frames, stride)
    assert starts[0] == 0 and starts[-1] + frames == length
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    assert set().union(*(range(s, s + frames) for s in starts)) == set(range(length))
    assert count_window_evaluations(length, frames, stride) == len(starts)


def test_starts_examples_and_errors():
    assert window_starts(12, 5, 2) == [0, 2, 4, 6, 7]
    assert window_starts(20, 5, 5) == [0, 5, 10, 15]
    with pytest.raises(ValueError, match="length must be >= frames"):
        window_starts(4, 5, 1)
    with pytest.raises(ValueError, match="stride > frames leaves frames unseen"):
        window_starts(20, 5, 6)
    with pytest.raises(ValueError, match="1 <= stride"):
        window_starts(20, 5, 0)


def test_weights():
    assert window_weights(5, "triangular").tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4, "triangular").tolist() == [1, 2, 2, 1]
    assert window_weights(1, "triangular").tolist() == [1]
    assert window_weights(3, "flat").tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="taper must be"):
        window_weights(3, "cosine")


@pytest.mark.parametrize("taper", ["flat", "triangular"])
def test_fusing_consistent_windows_is_exact(taper):
    """A per-frame denoiser gives every window the same answer on a shared frame: fusion returns it."""
    def per_frame(x, sigma):
        return torch.tanh(x) * sigma.view(-1, *[1] * (x.ndim - 1)) + x.sum(dim=(2, 3, 4, 5), keepdim=True)

    x = block(13)
    D = fused_denoiser(lambda x_window, sigma, start: per_frame(x_window, sigma), 13, 5, 2, taper)
    assert torch.allclose(D(x, sigma_of(x)), per_frame(x, sigma_of(x)), rtol=1e-6, atol=1e-6)


def test_window_dependent_outputs_are_the_weighted_average():
    """D_s = x + s on the windows at 0 and 2 of 4 frames. Triangular (1, 2, 2, 1): frame 2 = (2·0 + 1·2)/3,
    frame 3 = (1·0 + 2·2)/3; flat: both (0 + 2)/2."""
    x = block(6)
    fused = fused_denoiser(lambda x_window, sigma, start: x_window + start, 6, 4, 2, "triangular")(x, sigma_of(x))
    offset = (fused - x).mean(dim=(0, 2, 3, 4, 5))
    assert torch.allclose(offset, torch.tensor([0, 0, 2 / 3, 4 / 3, 2, 2]), atol=1e-6)
    flat = fused_denoiser(lambda x_window, sigma, start: x_window + start, 6, 4, 2, "flat")(x, sigma_of(x))
    assert torch.allclose((flat - x).mean(dim=(0, 2, 3, 4, 5)), torch.tensor([0, 0, 1, 1, 2, 2.0]), atol=1e-6)


def test_stride_equal_to_frames_is_independent_windows():
    """Each frame seen by one window: the result is the concatenation of the windows' outputs, bit for bit."""
    def window_mean(x_window, sigma, start):
        return x_window.mean(dim=1, keepdim=True).expand_as(x_window) * 0.5

    x = block(15)
    fused = fused_denoiser(window_mean, 15, 5, 5)(x, sigma_of(x))
    independent = torch.cat([window_mean(x[:, s:s + 5], sigma_of(x), s) for s in (0, 5, 10)], dim=1)
    assert torch.equal(fused, independent)


def test_the_callback_gets_each_window_once():
    seen = []

    def record(x_window, sigma, start):
        seen.append((start, tuple(x_window.shape), sigma.tolist()))
        return x_window

    x = block(12, batch=2)
    fused_denoiser(record, 12, 5, 2)(x, torch.tensor([1.0, 3.0]))
    assert seen == [(s, (2, 5, 1, 6, 4, 4), [1.0, 3.0]) for s in (0, 2, 4, 6, 7)]
    assert len(seen) == count_window_evaluations(12, 5, 2)


def test_errors():
    D = fused_denoiser(lambda x_window, sigma, start: x_window, 12, 5, 2)
    x = block(12)
    with pytest.raises(ValueError, match=r"x must be \(B, 12, C"):
        D(block(11), sigma_of(x))
    with pytest.raises(ValueError, match=r"sigma must be \(2,\)"):
        D(x, torch.ones(3))
    with pytest.raises(ValueError, match="denoise_window returned .* at start 0"):
        fused_denoiser(lambda x_window, sigma, start: x_window[:, :4], 12, 5, 2)(x, sigma_of(x))


RHO, T, L = 0.9, 5, 20


def correlated_clip_denoiser(x_window, sigma, start):
    """Exact denoiser of clips whose T frames are equicorrelated (ρ) standard normals: Σ = (1 − ρ)I + ρ11ᵀ has
    eigenvalue 1 − ρ + ρT on the temporal mean and 1 − ρ on the deviations, D = Σ(Σ + σ²I)⁻¹x per part."""
    s2 = sigma.view(-1, *[1] * (x_window.ndim - 1)) ** 2
    mean = x_window.mean(dim=1, keepdim=True)
    var_mean, var_dev = 1 - RHO + RHO * T, 1 - RHO
    return var_mean / (var_mean + s2) * mean + var_dev / (var_dev + s2) * (x_window - mean)


def join_ratio(x: torch.Tensor) -> float:
    """Mean |x_{t+1} − x_t| across the joins of the T-frame partition (t = kT − 1) over that inside it."""
    step = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(0, 2, 3, 4))
    at_join = torch.zeros(L - 1, dtype=torch.bool)
    at_join[T - 1::T] = True
    return (step[at_join].mean() / step[~at_join].mean()).item()


@pytest.mark.parametrize("kind", ["heun", "dpmpp_2m"])
def test_fusion_removes_the_seams_between_windows(kind):
    """Frames are coupled within a window only. Independent windows (stride = T) jump at every join
    (~√(1/(1 − ρ)) ≈ 3× the step inside a window); overlapping windows fused at every step do not.
    (At stride 2 a small ripple of period 2 remains in |Δ|; stride 1 flattens it.)"""
    latents = torch.randn(1, L, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    config = SamplerConfig(kind=kind, num_steps=8)
    fused = sample(fused_denoiser(correlated_clip_denoiser, L, T, stride=2), latents, config)
    independent = sample(fused_denoiser(correlated_clip_denoiser, L, T, stride=T), latents, config)
    assert join_ratio(fused) == pytest.approx(1.0, abs=0.15)          # measured 1.04–1.10 over seeds
    assert join_ratio(independent) > 2.0
