"""The scale-by-scale denoiser diagnostic (downscale.models.scale_diagnostics, bench/denoiser_scales.py): band
powers, the model-vs-"do nothing" error ratio against the Gaussian oracle on denoisers known in closed form,
sampled-residual statistics, and one run of the bench script on a tiny trained model."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import tiny_config

from downscale.models.edm import edm_coefficients
from downscale.models.scale_diagnostics import (
    BANDS,
    band_index,
    band_power,
    combine,
    denoiser_band_errors,
    mode_power,
    ring_wavenumber,
    sampled_residual_stats,
    wiener_oracle_ratio,
)
from downscale.bundle import save_bundle
from downscale.training.trainer import bundle_metadata, fit

REPO = Path(__file__).resolve().parents[3]
N = 16                     # tiles of 16 × 16: low k < 2, mid 2 ≤ k < 4, high k ≥ 4
SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0)


def _shape_like(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.to(torch.float64).view(-1, *[1] * (x.ndim - 1))


def _fourier_filter(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Multiply every tile's FFT by ``gain (B, n, n)`` (per clip), back to real space."""
    g = gain.view(gain.shape[0], *[1] * (x.ndim - 3), *gain.shape[-2:])
    return torch.fft.ifft2(torch.fft.fft2(x.to(torch.float64)) * g).real


# --- (a) band power ---------------------------------------------------------------------------------------

def test_bands_partition_the_modes_by_index_wavenumber():
    k, band = ring_wavenumber(N), band_index(N)
    assert k[0, 0] == 0 and k[0, 1] == 1 and k[1, 1] == 1 and k[3, 3] == 4 and k[8, 8] == 11
    assert set(band[k < 2].tolist()) == {0} and set(band[(k >= 2) & (k < 4)].tolist()) == {1}
    assert set(band[k >= 4].tolist()) == {2}
    assert torch.bincount(band.flatten()).tolist() == [9, 28, 219]   # rings 0–1 | 2–3 | 4–11


def test_white_noise_power_is_spread_over_bands_by_their_mode_counts():
    x = 0.7 * torch.randn(64, 6, N, N, generator=torch.Generator().manual_seed(0))
    power = band_power(x, N)
    assert power.sum().item() == pytest.approx((x.double() ** 2).mean().item(), rel=1e-10)   # Parseval
    counts = torch.bincount(band_index(N).flatten()).double()
    torch.testing.assert_close(power / power.sum(), counts / counts.sum(), rtol=0.1, atol=0)
    assert mode_power(x).mean().item() == pytest.approx(0.49, rel=0.02)                     # white: v per mode


@pytest.mark.parametrize(("ky", "kx", "band"), [(0, 1, "low"), (3, 0, "mid"), (2, 2, "mid"), (0, 4, "high"),
                                                (3, 3, "high"), (8, 0, "high")])
def test_a_single_wavenumber_cosine_lands_in_its_band(ky, kx, band):
    i = torch.arange(N, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * (ky * i[:, None] + kx * i[None, :]) / N)
    power = band_power(wave.expand(2, 6, N, N), N)
    assert power[BANDS.index(band)].item() == pytest.approx(power.sum().item(), rel=1e-9)
    assert power.sum().item() == pytest.approx((wave**2).mean().item(), rel=1e-9)


# --- (b) the exact Gaussian denoiser reaches the oracle; (c) F = 0 gives exactly 1 -------------------------

def test_exact_denoiser_of_a_white_gaussian_residual_reaches_the_oracle():
    s, sigma_data = 0.2, 0.5
    g = torch.Generator().manual_seed(1)
    r = s * torch.randn(32, 1, 1, 6, N, N, generator=g)
    exact = lambda x, sigma: s**2 / (s**2 + _shape_like(sigma, x) ** 2) * x  # noqa: E731
    res = denoiser_band_errors(exact, r, SIGMAS, sigma_data, generator=g)
    torch.testing.assert_close(res.ratio, res.oracle_ratio, rtol=0.08, atol=0)
    assert res.oracle_ratio.min() < 0.5                      # s ≠ σ_data: there is something to gain
    # a wrong shrinkage (assumes std 0.4) is clearly worse than the oracle somewhere — the check can fail
    wrong = lambda x, sigma: 0.16 / (0.16 + _shape_like(sigma, x) ** 2) * x  # noqa: E731
    bad = denoiser_band_errors(wrong, r, SIGMAS, sigma_data, generator=torch.Generator().manual_seed(1))
    assert (bad.ratio / bad.oracle_ratio).max() > 1.25


def test_do_nothing_denoiser_has_ratio_one_in_every_band():
    sigma_data = 0.5
    g = torch.Generator().manual_seed(2)
    r = 0.3 * torch.randn(2, 3, 1, 6, N, N, generator=g)

    def skip(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return edm_coefficients(_shape_like(sigma, x), sigma_data)[0] * x

    res = denoiser_band_errors(skip, r, SIGMAS, sigma_data, generator=g)
    torch.testing.assert_close(res.ratio, torch.ones_like(res.ratio), rtol=1e-6, atol=0)


def test_a_denoiser_blind_below_four_cells_shows_ratio_one_in_the_high_band_only():
    """A red residual (ring power ∝ (1 + k)^-1.5); the Wiener denoiser in low and mid, F = 0 in high: the
    high band stays at 1 where the oracle says 0.5 or less was possible, the other bands follow the oracle."""
    sigma_data = 0.5
    k = ring_wavenumber(N).double()
    P = 0.6 * (1 + k) ** -1.5                                               # mode power
    g = torch.Generator().manual_seed(3)
    white = torch.randn(24, 1, 1, 6, N, N, generator=g, dtype=torch.float64)
    r = _fourier_filter(white, P.sqrt().expand(24, N, N)).float()
    high = band_index(N) == 2

    def blind(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = _shape_like(sigma, x).view(-1, 1, 1) ** 2
        c_skip = sigma_data**2 / (sigma_data**2 + s2)
        return _fourier_filter(x, torch.where(high, c_skip, P / (P + s2)))

    res = denoiser_band_errors(blind, r, SIGMAS, sigma_data, generator=g)
    hi = BANDS.index("high")
    torch.testing.assert_close(res.ratio[:, hi], torch.ones(len(SIGMAS), dtype=torch.float64), rtol=1e-6, atol=0)
    assert res.oracle_ratio[:, hi].min() < 0.5
    torch.testing.assert_close(res.ratio[:, :hi], res.oracle_ratio[:, :hi], rtol=0.12, atol=0)
    # the oracle from the exact spectrum agrees with the one from the sample's spectrum
    torch.testing.assert_close(wiener_oracle_ratio(P, SIGMAS, sigma_data), res.oracle_ratio, rtol=0.1, atol=0)


def test_combine_weights_parts_by_their_size():
    g = torch.Generator().manual_seed(4)
    r = torch.randn(3, 1, 1, 6, N, N, generator=g)
    eps = torch.randn(r.shape, generator=g)
    half = lambda x, sigma: 0.5 * x  # noqa: E731
    whole = denoiser_band_errors(half, r, (0.1, 1.0), 0.5, noise=eps)
    parts = combine([denoiser_band_errors(half, r[:1], (0.1, 1.0), 0.5, noise=eps[:1]),
                     denoiser_band_errors(half, r[1:], (0.1, 1.0), 0.5, noise=eps[1:])])
    assert parts.count == whole.count == 18
    torch.testing.assert_close(parts.ratio, whole.ratio)
    torch.testing.assert_close(parts.oracle_ratio, whole.oracle_ratio)


# --- sampled residual statistics --------------------------------------------------------------------------

def test_sampled_residual_stats():
    g = torch.Generator().manual_seed(5)
    truth = torch.randn(2, 3, 1, 6, N, N, generator=g)
    weights = torch.rand(6, N, N, generator=g) + 0.5
    same = sampled_residual_stats(truth.expand(4, *truth.shape), truth, weights)
    assert same.std_ratio == pytest.approx(1.0, rel=1e-12)
    assert all(abs(v) < 1e-12 for v in same.ln_power_ratio.values())
    half = sampled_residual_stats(0.5 * truth.expand(2, *truth.shape), truth, weights)
    assert half.std_ratio == pytest.approx(0.5, rel=1e-9)
    assert all(v == pytest.approx(math.log(0.25), rel=1e-9) for v in half.ln_power_ratio.values())
    smooth = _fourier_filter(truth, (band_index(N) < 2).double().expand(2, N, N)).float()   # low band only
    low_pass = sampled_residual_stats(smooth.unsqueeze(0), truth)
    assert abs(low_pass.ln_power_ratio["low"]) < 1e-6 and low_pass.ln_power_ratio["high"] < -20
    with pytest.raises(ValueError, match="must be"):
        sampled_residual_stats(truth, truth)


# --- (d) the bench script on a tiny trained model ----------------------------------------------------------

def _bench_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("denoiser_scales", REPO / "bench" / "denoiser_scales.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_script_runs_on_a_tiny_trained_model(tiny_prepared, tmp_path, capsys, monkeypatch):
    config = tiny_config(tiny_prepared, tmp_path / "run", max_steps=8, validation={"every_n_steps": 100},
                         checkpoint={"every_n_steps": 100})
    _, module = fit(config)
    bench = _bench_module(monkeypatch)
    options = ["--clips", "2", "--samples", "2", "--sigmas", "0.05", "0.5", "5", "--sampler-steps", "3",
               "--device", "cpu"]
    out = tmp_path / "scales.json"
    assert bench.main(["--checkpoint", str(config.checkpoint_dir / "last.ckpt"), *options, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| σ | low model | low oracle | mid model | mid oracle | high model | high oracle |" in text
    assert "(step 8)" in text and "sampled residual as shipped (sample and μ floored at zero rain) (2 per clip)" in text
    assert "sampled residual before the floor (2 per clip)" in text
    doc = json.loads(out.read_text())
    assert doc["step"] == 8 and len(doc["clips"]) == 2 and doc["sampler"]["num_steps"] == 3
    rows = doc["denoiser"]["per_sigma"]
    assert [row["sigma"] for row in rows] == [0.05, 0.5, 5.0]
    numbers = [v for row in rows for key in ("ratio", "oracle_ratio") for v in row[key].values()]
    sampled, unfloored = doc["sampled_residual"], doc["sampled_residual_unfloored"]
    numbers += [sampled["std_ratio"], *sampled["ln_power_ratio"].values(), unfloored["std_ratio"]]
    assert sampled["std_ratio"] != unfloored["std_ratio"]     # an 8-step model samples below zero rain
    assert all(math.isfinite(v) for v in numbers), numbers
    assert all(0 < row["oracle_ratio"][b] <= 1 + 1e-9 for row in rows for b in BANDS)
    assert all(v > 0 for row in rows for v in row["ratio"].values()) and sampled["std_ratio"] > 0

    # the trained weights of an 8-step run are not yet their EMA: other numbers, named as such
    out_live = tmp_path / "scales-live.json"
    assert bench.main(["--checkpoint", str(config.checkpoint_dir / "last.ckpt"), "--live-weights", *options,
                       "--json", str(out_live)]) == 0
    doc_live = json.loads(out_live.read_text())
    assert doc_live["source"].endswith("live weights") and doc["source"].endswith("EMA weights")
    assert doc_live["denoiser"]["per_sigma"][0]["ratio"] != rows[0]["ratio"]
    with pytest.raises(SystemExit):
        bench.main(["--bundle", str(tmp_path / "any.safetensors"), "--live-weights", *options])

    # the bundle of the same EMA weights gives the same numbers
    meta = bundle_metadata(config, module.info, module.network_config, 8, module.ema.num_updates, None)
    bundle = save_bundle(tmp_path / "model.bundle.safetensors", module.ema.averaged_state(), meta)
    assert bundle.fine_resolution == N
    out_b = tmp_path / "scales-bundle.json"
    assert bench.main(["--bundle", str(tmp_path / "model.bundle.safetensors"), "--prepared", str(tiny_prepared),
                       *options, "--json", str(out_b)]) == 0
    doc_b = json.loads(out_b.read_text())
    for row, row_b in zip(rows, doc_b["denoiser"]["per_sigma"], strict=True):
        for key in ("ratio", "oracle_ratio"):
            assert row_b[key] == pytest.approx(row[key], rel=1e-5)
    assert doc_b["sampled_residual"]["std_ratio"] == pytest.approx(sampled["std_ratio"], rel=1e-5)
