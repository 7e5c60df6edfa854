"""Training benchmarks (not a test): Lightning overhead, peak memory, paper-scale activation memory.

    python bench/bench_training.py overhead [--steps 12] [--rounds 2]   # demo network, Lightning vs plain loop
    python bench/bench_training.py memory --res 48 96 [--ac] [--bf16]    # paper network, one training step per res
    python bench/bench_training.py all

``overhead``: the ``demo`` network on whole C96 cubes (6 × 96 × 96, T = 5, batch 1), one fixed batch,
the same DownscalingModule. (a) ``Trainer.fit`` with the settings ``train()`` uses (AdamW, LambdaLR per
step, gradient clipping, EMA, CSV logging, checkpoint callbacks with intervals beyond the run); (b) a
plain torch loop doing the same per step: conditioning, loss, backward, clip, AdamW, LR step, EMA.
Per-step wall time and process CPU time from the start of one step to the next (CPU time is the
steadier number on a shared machine; with one thread it is the compute plus framework work of the
step); the first 2 steps of each run are warm-up and not counted; rounds alternate (plain, Lightning, plain, Lightning, …) so a busy machine hurts
both alike. Reports median step times and the Lightning / plain ratios.

``memory``: the ``paper`` network (STVD: 64 base channels, multipliers 1,1,2,2,3,4; 51 M parameters
for μ and the denoiser together), cube mode, T = 5, batch 1, one joint-loss forward + backward per
resolution, each in a fresh subprocess. Two measurements:

* saved-tensor bytes: every tensor autograd saves for backward, counted once per storage with
  ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded (without activation checkpointing
  this is the activation memory held at the end of the forward pass; with it, what is saved outside
  the checkpointed blocks — the block inputs kept for recomputation are held by the checkpoint
  frames and appear only in the RSS figure);
* peak RSS growth of the process over one forward + backward (``resource.getrusage``), above the
  RSS after building the model and the batch: activations plus transient buffers (with activation
  checkpointing the recomputed block's activations appear here).

``flops``: FLOPs of one such step counted by ``torch.utils.flop_counter.FlopCounterMode`` at a small
resolution and scaled by the number of cells (for a GPU time estimate; nothing timed on a GPU).

Activation memory scales with the number of cells (∝ N² per tile for C-N) at fixed channels, so the
C384 estimate is the largest measured resolution × (384 / N)². Model state (weights, gradients,
two AdamW moments, EMA: 5 × 4 bytes per parameter) is added separately.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GiB = 1024**3


# ---- a module without a dataset on disk ------------------------------------------------------------------
def fake_info(coarse: int, factor: int, frames: int) -> dict[str, Any]:
    norm = {"variables": {"PRATEsfc": {"transform": "log1p", "epsilon": 1.157e-6, "mean": 0.5, "std": 1.0}}}
    return dict(path="(bench)", fingerprint="0" * 64, catalog_name="bench", target="PRATEsfc",
                predictors=tuple(f"p{i}_coarse" for i in range(6)), static_features=("zsurf", "cx", "cy", "cz"),
                coarse_resolution=coarse, fine_resolution=coarse * factor, factor=factor, clip_frames=frames,
                time_step_seconds=10800.0, normalization=norm, train_members=("0001",), validation_members=())


def fake_batch(info: dict[str, Any], batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t, nc, nf = info["clip_frames"], info["coarse_resolution"], info["fine_resolution"]
    return {"coarse": torch.randn(batch, t, len(info["predictors"]), 6, nc, nc, generator=g),
            "static": torch.randn(batch, len(info["static_features"]), 6, nf, nf, generator=g),
            "target": torch.randn(batch, t, 1, 6, nf, nf, generator=g),
            "member": torch.zeros(batch, dtype=torch.long), "start": torch.zeros(batch, dtype=torch.long)}


def make_config(out: Path, preset: str, steps: int, **extra: Any):
    from downscale.training.config import TrainConfig

    return TrainConfig.model_validate({
        "dataset": str(out), "output_dir": str(out), "network": {"preset": preset}, "max_steps": steps,
        "optimizer": {"warmup_steps": 1}, "log_every_n_steps": 1,
        "validation": {"every_n_steps": 10**6}, "checkpoint": {"every_n_steps": 10**6},
        "hardware": {"num_workers": 0}, **extra})


# ---- overhead ---------------------------------------------------------------------------------------------
class _Fixed(torch.utils.data.IterableDataset):
    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __iter__(self):
        for _ in range(self.n):
            yield self.batch


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _step_times(stamps: list[tuple[float, float]], warmup: int = 2) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each step after the warm-up."""
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]


def run_lightning(steps: int, out: Path) -> list[tuple[float, float]]:
    import lightning.pytorch as pl

    from downscale.training.module import DownscalingModule
    from downscale.training.trainer import build_trainer

    info = fake_info(12, 8, 5)
    config = make_config(out, "demo", steps)
    torch.manual_seed(0)
    module = DownscalingModule(config, info)
    stamps: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            stamps.append(_now())

        def on_train_end(self, *args: Any) -> None:
            stamps.append(_now())

    trainer = build_trainer(config, callbacks=[Clock()], limit_val_batches=0)
    loader = torch.utils.data.DataLoader(_Fixed(fake_batch(info), steps + 1), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return _step_times(stamps)


def run_plain(steps: int, out: Path) -> list[tuple[float, float]]:
    from downscale.training.module import DownscalingModule

    info = fake_info(12, 8, 5)
    config = make_config(out, "demo", steps)
    torch.manual_seed(0)
    module = DownscalingModule(config, info)
    net, ema, o = module.net, module.ema, config.optimizer
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    batch = fake_batch(info)
    net.train()
    stamps = []
    for step in range(steps):
        stamps.append(_now())
        torch.manual_seed(step)
        cond = module.conditioning(batch)
        loss = net.loss(cond, batch["target"], module.area_weights)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update(net)
        float(loss)  # what logging costs: one sync of the loss
    stamps.append(_now())
    return _step_times(stamps)


def overhead(steps: int, rounds: int) -> dict[str, Any]:
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "lightning": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            times["plain"] += run_plain(steps, Path(tmp) / f"p{r}")
            times["lightning"] += run_lightning(steps, Path(tmp) / f"l{r}")
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out = {"network": "demo", "grid": "C96 cube (6x96x96), T=5, batch 1", "steps_counted": len(times["plain"]),
           "plain_wall_s_per_step": wall["plain"], "lightning_wall_s_per_step": wall["lightning"],
           "wall_ratio": wall["lightning"] / wall["plain"],
           "plain_cpu_s_per_step": cpu["plain"], "lightning_cpu_s_per_step": cpu["lightning"],
           "cpu_ratio": cpu["lightning"] / cpu["plain"], "peak_rss_gib": rss,
           "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / GiB
    return out


# ---- memory -----------------------------------------------------------------------------------------------
def measure_memory(res: int, ac: bool, bf16: bool) -> dict[str, Any]:
    """One joint-loss forward + backward of the paper network on whole C``res`` cubes, T = 5, batch 1."""
    from downscale.models import VideoDownscaler, network_preset

    torch.manual_seed(0)
    factor = 8
    info = fake_info(res // factor, factor, 5)
    cfg = network_preset("paper", activation_checkpointing=ac, frames=5)
    net = VideoDownscaler.build(cfg, 10, 1)
    n_params = sum(p.numel() for p in net.parameters())
    batch = fake_batch(info)
    from data_catalog.upsample import upsample_coarse

    t = batch["coarse"].shape[1]
    cond = torch.cat([upsample_coarse(batch["coarse"], factor, "bilinear"),
                      batch["static"].unsqueeze(1).expand(-1, t, -1, -1, -1, -1)], dim=2)
    area = torch.ones(6, res, res)
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}

    def pack(x: torch.Tensor) -> torch.Tensor:
        s = x.untyped_storage()
        if s.data_ptr() not in params:  # weights saved for backward are model state, not activations
            seen[s.data_ptr()] = s.nbytes()
        return x

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = net.loss(cond, batch["target"], area)["total"]
    saved = sum(seen.values())
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"res": res, "activation_checkpointing": ac, "bf16_autocast": bf16, "params": n_params,
            "saved_tensor_gib": saved / GiB, "peak_rss_growth_gib": (peak - base) / GiB,
            "forward_s": t1 - t0, "backward_s": t2 - t1, "cells": 6 * res * res * 5}


def count_flops(res: int) -> dict[str, Any]:
    """FLOPs of one joint-loss forward + backward of the paper network (torch's FlopCounterMode:
    convolutions, matmuls, attention), C``res`` cube, T = 5, batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    from downscale.models import VideoDownscaler, network_preset

    torch.manual_seed(0)
    net = VideoDownscaler.build(network_preset("paper", frames=5), 10, 1)
    info = fake_info(res // 8, 8, 5)
    batch = fake_batch(info)
    cond = torch.randn(1, 5, 10, 6, res, res)
    with FlopCounterMode(display=False) as counter:
        net.loss(cond, batch["target"], torch.ones(6, res, res))["total"].backward()
    total = counter.get_total_flops()
    return {"res": res, "flops_fwd_bwd": total, "scaled_to_c384": total * (384 / res) ** 2}


def memory(resolutions: list[int], ac_modes: list[bool], bf16_modes: list[bool]) -> list[dict[str, Any]]:
    rows = []
    for res in resolutions:
        for ac in ac_modes:
            for bf16 in bf16_modes:
                cmd = [sys.executable, __file__, "_one", str(res)] + (["--ac"] if ac else []) + \
                      (["--bf16"] if bf16 else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if proc.returncode != 0:
                    rows.append({"res": res, "activation_checkpointing": ac, "bf16_autocast": bf16,
                                 "error": proc.stderr.strip().splitlines()[-1:]})
                else:
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def estimate_c384(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (AC, precision): the largest measured resolution scaled by (384 / res)², plus model state."""
    out = []
    keys = {(r["activation_checkpointing"], r["bf16_autocast"]) for r in rows if "error" not in r}
    for ac, bf16 in sorted(keys):
        ok = [r for r in rows if "error" not in r and (r["activation_checkpointing"], r["bf16_autocast"]) == (ac, bf16)]
        top = max(ok, key=lambda r: r["res"])
        scale = (384 / top["res"]) ** 2
        state = 5 * 4 * top["params"] / GiB  # weights, grads, AdamW m and v, EMA (float32)
        act = max(top["saved_tensor_gib"], top["peak_rss_growth_gib"]) * scale
        out.append({"activation_checkpointing": ac, "bf16_autocast": bf16, "from_res": top["res"], "scale": scale,
                    "activations_gib": act, "model_state_gib": state, "total_gib": act + state})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["overhead", "memory", "flops", "all", "_one"])
    p.add_argument("res_one", nargs="?", type=int)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--res", type=int, nargs="+", default=[48, 96])
    p.add_argument("--ac", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "_one":
        print(json.dumps(measure_memory(args.res_one, args.ac, args.bf16)))
        return
    if args.what in ("overhead", "all"):
        print(json.dumps(overhead(args.steps, args.rounds), indent=1))
    if args.what in ("flops", "all"):
        print(json.dumps(count_flops(args.res[0])))
    if args.what in ("memory", "all"):
        rows = memory(args.res, [False, True], [False, True])
        for e in estimate_c384(rows):
            print(json.dumps(e))


if __name__ == "__main__":
    main()
