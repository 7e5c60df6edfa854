"""Does the denoiser learn every scale? Scale-by-scale errors of a trained model's residual denoiser (a benchmark).

    python bench/denoiser_scales.py --checkpoint RUN/train/checkpoints/last.ckpt [--clips 3] \\
        [--sigmas 0.02 0.05 0.1 0.2 0.5 1 2 5 10 80] [--samples 4] [--json out.json]
    python bench/denoiser_scales.py --bundle RUN/train/model.bundle.safetensors --prepared RUN/prepared

On a few validation clips (whole cubes, normalized units, EMA weights — or a checkpoint's trained weights with
``--live-weights`` — fixed seeds):

1. per σ, the error of ``D(r + n; σ)`` against the true residual ``r = (y − μ) / s`` (``s`` the model's residual
   scale, 1 unless ``train.residual_scale`` is set) over the error of the "do nothing" denoiser ``c_skip·x``,
   in three bands of index wavenumber k (cycles per tile edge): ``low``
   k < n/8, ``mid`` n/8 ≤ k < n/4, ``high`` k ≥ n/4 (wavelengths ≤ 4 cells) — beside the ratio a Gaussian
   (Wiener) denoiser would reach on a residual with the truth's spectrum, which shows where a ratio below 1
   is possible at all;
2. residuals sampled with the production sampler (or ``--sampler-steps/--sigma-min/--sigma-max/--rho``):
   their std over the true residual's, and ``ln(P_band(r̂)/P_band(r))`` per band — as shipped (sample and μ
   floored at zero rain, the definition of ``val/residual_std_ratio`` and ``bench/skill.py``) and before the
   floor (the network's raw output, which puts about a third of its cells below zero rain).

Definitions and conventions: :mod:`downscale.models.scale_diagnostics`; reading the table: docs/training.md,
"Does the denoiser learn every scale?".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_catalog.clips import ClipDataset, collate_clips  # noqa: E402
from data_catalog.prepare import PreparedDataset  # noqa: E402
from downscale.dataset_info import DatasetInfo  # noqa: E402
from downscale.models.conditioning import build_conditioning  # noqa: E402
from downscale.models.downscaler import VideoDownscaler  # noqa: E402
from downscale.models.samplers import PRODUCTION_SAMPLER, SamplerConfig  # noqa: E402
from downscale.models.scale_diagnostics import (  # noqa: E402
    BANDS,
    DenoiserBandErrors,
    SampledResidualStats,
    band_edges,
    combine,
    denoiser_band_errors,
    sampled_residual_stats,
)

#: The two readings of the sampled residual (:func:`evaluate`), as the table names them.
SAMPLED_KINDS = {"shipped": "as shipped (sample and μ floored at zero rain)", "unfloored": "before the floor"}

DEFAULT_SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 80.0)


@dataclass
class Loaded:
    """A model with EMA weights (eval mode, cube geometry) and what is needed to feed it."""

    net: VideoDownscaler
    info: DatasetInfo
    prepared: Path
    area_weights: torch.Tensor
    step: int
    source: str


def load_checkpoint(path: Path, device: str, prepared: Path | None, live_weights: bool = False) -> Loaded:
    """A training checkpoint: the module rebuilt from its hyper-parameters, its EMA weights copied into the net
    (``live_weights``: the trained weights themselves, to see what the EMA changes)."""
    from downscale.training.module import DownscalingModule

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    module = DownscalingModule(hp["train_config"], hp["dataset"])
    module.load_state_dict(ckpt["state_dict"], strict=True)
    module.on_load_checkpoint(ckpt)
    if not live_weights:
        module.ema.copy_to(module.net)       # the EMA weights: what validation and the bundle use
    net = module.net.eval()
    net.geometry = "cube"
    return Loaded(net.to(device), module.info, Path(prepared or module.info.path),
                  module.area_weights.detach().clone(), int(ckpt["global_step"]),
                  f"checkpoint {path}, {'live' if live_weights else 'EMA'} weights")


def load_bundle_model(path: Path, device: str, prepared: Path | None) -> Loaded:
    """A model bundle (EMA weights); the prepared dataset from ``prepared`` or the bundle's provenance."""
    from downscale.training.module import fine_area_weights
    from downscale.bundle import load_model

    net, meta = load_model(path, device)
    net.geometry = "cube"
    data = Path(prepared or meta.path)
    weights = fine_area_weights(PreparedDataset.open(data))
    return Loaded(net, meta, data, weights, meta.training.steps, f"bundle {path}")


def pick_clips(dataset: ClipDataset, count: int) -> list[int]:
    """``count`` clip indices spread evenly over the split's clips whose member has the fine target."""
    indices = dataset.spread_with_target(count)
    if not indices:
        raise SystemExit(f"the {dataset.split!r} split of {dataset.path} has no clip with the fine target")
    return indices


@torch.no_grad()
def evaluate(loaded: Loaded, clips: int, sigmas: list[float], samples: int, sampler: SamplerConfig,
             split: str = "validation", seed: int = 0, device: str = "cpu"
             ) -> tuple[DenoiserBandErrors, dict[str, SampledResidualStats], list[int]]:
    """Both diagnostics on ``clips`` clips of ``split`` (see the module docstring); the sampled residuals'
    statistics ``"shipped"`` (sample and μ floored at zero rain, as ``generate`` writes them: the definition of
    ``val/residual_std_ratio`` and of ``bench/skill.py``) and ``"unfloored"`` (the network's raw output)."""
    net, shipped = loaded.net, loaded.info.shipped_target
    dataset = ClipDataset(loaded.prepared, split, "cube")
    indices = pick_clips(dataset, clips)
    parts: list[DenoiserBandErrors] = []
    sampled: dict[str, list[torch.Tensor]] = {kind: [] for kind in SAMPLED_KINDS}
    truth: dict[str, list[torch.Tensor]] = {kind: [] for kind in SAMPLED_KINDS}
    for j, index in enumerate(indices):
        batch = collate_clips([dataset[index]])
        coarse, static = batch["coarse"].to(device), batch["static"].to(device)
        target = batch["target"].to(device)
        cond = build_conditioning(coarse, static, loaded.info.factor, "cube")
        mu = net.forward_mean(cond)
        cond_d = torch.cat([cond, mu], dim=2)
        noise_gen = torch.Generator().manual_seed(seed * 1_000_003 + 2 * index)
        residual = net.scaled_residual(target.float(), mu.float())  # what the denoiser models
        parts.append(denoiser_band_errors(lambda x, s: net.denoiser(x, s, cond_d), residual, sigmas,  # noqa: B023
                                          net.sigma_data, generator=noise_gen))
        latent_gen = torch.Generator().manual_seed(seed * 1_000_003 + 2 * index + 1)
        draws = []
        for _ in range(samples):
            latents = torch.randn(mu.shape, generator=latent_gen, dtype=torch.float64).to(device)
            draws.append(net.sample(cond, latents, sampler, mean=mu).float().cpu())
        draws_t, mu_c, target_c = torch.stack(draws), mu.float().cpu(), target.float().cpu()
        mu_s = shipped(mu_c)
        sampled["unfloored"].append(draws_t - mu_c)
        truth["unfloored"].append(target_c - mu_c)
        sampled["shipped"].append(shipped(draws_t) - mu_s)
        truth["shipped"].append(target_c - mu_s)
        print(f"  clip {j + 1}/{len(indices)} (#{index}) done", file=sys.stderr, flush=True)
    stats = {kind: sampled_residual_stats(torch.cat(sampled[kind], dim=1), torch.cat(truth[kind]),
                                          loaded.area_weights.cpu()) for kind in sampled}
    return combine(parts), stats, indices


def markdown(errors: DenoiserBandErrors, stats: dict[str, SampledResidualStats]) -> str:
    """The σ × band table of the model's and the oracle's error ratio, and the sampled-residual lines."""
    lo, hi = band_edges(errors.n)
    ratio, oracle = errors.ratio.tolist(), errors.oracle_ratio.tolist()
    share = errors.residual_band_power / errors.residual_band_power.sum()
    lines = [f"Denoiser error / F = 0 error (model | Gaussian oracle), n = {errors.n}: low k < {lo:g}, "
             f"mid {lo:g} ≤ k < {hi:g}, high k ≥ {hi:g} (λ ≤ 4 cells)",
             "",
             "| σ | " + " | ".join(f"{b} model | {b} oracle" for b in BANDS) + " |",
             "|---:" * (1 + 2 * len(BANDS)) + "|"]
    for i, s in enumerate(errors.sigmas):
        cells = " | ".join(f"{ratio[i][b]:.3f} | {oracle[i][b]:.3f}" for b in range(len(BANDS)))
        lines.append(f"| {s:g} | {cells} |")
    lines += ["",
              "true residual: mean square " + f"{float(errors.residual_band_power.sum()):.4g}, by band "
              + ", ".join(f"{b} {float(v):.1%}" for b, v in zip(BANDS, share, strict=True)),
              *(f"sampled residual {SAMPLED_KINDS[kind]} ({s.samples} per clip): std ratio {s.std_ratio:.3f}; "
                "ln(P_band(r̂)/P_band(r)): " + ", ".join(f"{b} {s.ln_power_ratio[b]:+.3f}" for b in BANDS)
                for kind, s in stats.items())]
    return "\n".join(lines)


def sampler_from(args: argparse.Namespace) -> SamplerConfig:
    overrides = {k: v for k, v in (("num_steps", args.sampler_steps), ("sigma_min", args.sigma_min),
                                   ("sigma_max", args.sigma_max), ("rho", args.rho)) if v is not None}
    return SamplerConfig.model_validate({**PRODUCTION_SAMPLER.model_dump(), **overrides})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a training checkpoint (its EMA weights, unless --live-weights)")
    src.add_argument("--bundle", type=Path, help="a model bundle (.safetensors)")
    p.add_argument("--live-weights", action="store_true",
                   help="with --checkpoint: the trained weights instead of their EMA (the EMA is what ships)")
    p.add_argument("--prepared", type=Path, help="prepared dataset (default: the one the model was trained on)")
    p.add_argument("--split", default="validation", help="split whose clips are used (default validation)")
    p.add_argument("--clips", type=int, default=3, help="clips, spread evenly over the split (default 3)")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS), help="noise levels")
    p.add_argument("--samples", type=int, default=4, help="sampled residuals per clip (default 4)")
    p.add_argument("--sampler-steps", type=int, help="override the production sampler's num_steps")
    p.add_argument("--sigma-min", type=float, help="override the production sampler's sigma_min")
    p.add_argument("--sigma-max", type=float, help="override the production sampler's sigma_max")
    p.add_argument("--rho", type=float, help="override the production sampler's rho")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the latents (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.clips < 1 or args.samples < 1:
        p.error("--clips and --samples must be >= 1")
    if args.live_weights and args.checkpoint is None:
        p.error("--live-weights needs --checkpoint: a bundle holds the EMA weights only")
    if args.threads:
        torch.set_num_threads(args.threads)
    sampler = sampler_from(args)
    t0 = time.perf_counter()
    if args.checkpoint is not None:
        loaded = load_checkpoint(args.checkpoint, args.device, args.prepared, args.live_weights)
    else:
        loaded = load_bundle_model(args.bundle, args.device, args.prepared)
    errors, stats, indices = evaluate(loaded, args.clips, args.sigmas, args.samples, sampler, args.split,
                                      args.seed, args.device)
    print(f"{loaded.source} (step {loaded.step}); {len(indices)} {args.split} clips {indices}; "
          f"σ_data {loaded.net.sigma_data:g}; sampler {sampler.kind} N={sampler.num_steps} "
          f"σ {sampler.sigma_min:g}–{sampler.sigma_max:g} ρ {sampler.rho:g}; {time.perf_counter() - t0:.0f} s\n")
    print(markdown(errors, stats))
    if args.json is not None:
        doc = {"source": loaded.source, "step": loaded.step, "split": args.split, "clips": indices,
               "seed": args.seed, "sampler": sampler.model_dump(), "denoiser": errors.as_dict(),
               "sampled_residual": stats["shipped"].as_dict(),
               "sampled_residual_unfloored": stats["unfloored"].as_dict()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
