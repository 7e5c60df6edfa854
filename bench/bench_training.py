"""Training benchmarks (not a test): Lightning overhead, peak memory, paper-scale activation memory, FLOPs.

    python bench/bench_training.py overhead [--steps 12] [--rounds 2]   # demo network, Lightning vs plain loop
    python bench/bench_training.py memory --res 32 64 [--ac] [--bf16]    # paper network, one training step per res
    python bench/bench_training.py flops                                 # paper network at C384 (meta tensors)
    python bench/bench_training.py seams [--steps 8] [--rounds 2]        # skill network, seam transform off/turned/all
    python bench/bench_training.py all                                   # all of it, memory in all 4 variants

``--threads`` (default 1) sets torch's threads. One thread on purpose: on a shared 2-core machine two
OpenMP threads that wait for each other spin and the step times blow up (seen: 5-15 s instead of
0.4 s per step at a load average of 2-5); the ratios are what is compared, not absolute CPU speed.

``overhead``: the ``demo`` network on whole C96 cubes (6 × 96 × 96, T = 5, batch 1), one fixed batch
served by the same DataLoader, the same DownscalingModule. (a) ``Trainer.fit`` with the settings
``train()`` uses (AdamW, LambdaLR per step, gradient clipping, EMA, CSV logging of every step,
checkpoint callbacks with intervals beyond the run); (b) a plain torch loop doing the same per step:
conditioning, loss, backward, clip, AdamW, LR step, EMA, one sync of the loss. Per-step wall time and
process CPU time from the start of one step to the next (CPU time is the steadier number on a shared
machine; with one thread it is the compute plus framework work of the step); the first 2 steps of each
run are warm-up and not counted; rounds alternate (plain, Lightning, plain, Lightning, …) so a busy
machine hurts both alike. Reports median step times and the Lightning / plain ratios.

``seams``: the cost of the seam transform. The ``skill`` pipeline's network (the ``demo`` preset on whole C64
cubes from C8, 6 × 64 × 64, T = 5, batch 2, one predictor and the three cell-centre channels) with
``seam_transform`` off, on the turned edges (the preset) and on all edges (``seam_transform_edges: all``): one
joint loss + backward + AdamW step per variant in turn, the same fixed batch, ``steps`` per round after 2 warm-up
steps; median wall time per step and each variant's ratio to ``off``.

``memory``: the ``paper`` network (STVD: 64 base channels, multipliers 1,1,2,2,3,4; 51 M parameters
for μ and the denoiser together), cube mode, T = 5, batch 1, one joint-loss forward + backward per
resolution (multiples of 32: the network halves the tiles 5 times), each in a fresh subprocess, on the
CPU in float32 or under bf16 autocast (``--bf16``), with or without activation checkpointing (``--ac``).
Per run:

* ``saved_tensor_gib``: every tensor autograd saves for backward, counted once per storage with
  ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded: the activation memory held at
  the end of the forward pass. With activation checkpointing it is what is saved outside the
  checkpointed blocks plus the block inputs the checkpoints keep for the recomputation;
* without activation checkpointing, per-block accounting (every ``VideoUNet._run``) derives what
  checkpointing would keep: ``ac_outside_gib`` (saved outside the blocks) + ``ac_block_inputs_gib``
  + ``ac_largest_block_gib`` (one block's recomputed activations during backward) = ``ac_derived_gib``;
* ``peak_live_gib``: the peak of tensor bytes allocated and not yet freed over forward + backward,
  from the CPU allocator events of the torch profiler (``profile_memory=True``) — activations,
  activation gradients, transients, parameter gradients; ``live_after_backward_gib`` is what is left
  (the parameter gradients). This is what a GPU allocator must at least hold;
* ``peak_rss_growth_gib``: peak RSS growth of the process over the step, above the RSS before the
  forward pass — an upper bound (malloc keeps freed memory), shown for comparison.

Then the same step at C384 on meta tensors (no data, no memory; float32 only, autocast does not
apply to meta): the saved-tensor accounting there is exact, which checks the extrapolation.

C384 estimate: activations scale with the number of cells (∝ N² per tile for C-N) at fixed channels;
the peak live bytes are fitted as ``a + b·cells`` through the two largest measured resolutions
(``a``: what does not grow with the grid, e.g. bf16 weight copies; the ratio of the two resolutions is
printed as the check, ≈ 4 for 2× N) and evaluated at C384. Model state (weights, gradients, two AdamW
moments, EMA: 5 × 4 bytes per parameter, float32 also under bf16-mixed) is added on top.

``flops``: FLOPs of one such step at C384 counted by ``torch.utils.flop_counter.FlopCounterMode`` on
meta tensors (convolutions, matmuls, attention; not elementwise ops or norms), with and without
activation checkpointing (the recomputed forward counts). For a GPU time estimate; nothing is timed
on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
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


# ---- seams ------------------------------------------------------------------------------------------------
SEAM_VARIANTS: dict[str, dict[str, Any]] = {
    "off": {}, "turned": {"seam_transform": True}, "all": {"seam_transform": True, "seam_transform_edges": "all"}}


def seams(steps: int, rounds: int) -> dict[str, Any]:
    from downscale.training.module import DownscalingModule

    info = fake_info(8, 8, 5) | {"predictors": ("PRATEsfc_coarse",),
                                 "static_features": ("centre_x", "centre_y", "centre_z")}
    batch = fake_batch(info, batch=2)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in SEAM_VARIANTS.items():
            config = make_config(Path(tmp) / name, "demo", steps, batch_size=2,
                                 network={"preset": "demo", "overrides": overrides})
            torch.manual_seed(0)
            module = DownscalingModule(config, info)
            runs[name] = (module, torch.optim.AdamW(module.net.parameters(), lr=1e-3))

    def step(name: str, seed: int) -> float:
        module, optimizer = runs[name]
        start = time.perf_counter()
        torch.manual_seed(seed)
        loss = module.net.loss(module.conditioning(batch), batch["target"], module.area_weights)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for i in range(steps + 2):
            for name in runs:
                t = step(name, i)
                if i >= 2:
                    times[name].append(t)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"network": "demo (skill pipeline)", "grid": "C64 cube from C8, T=5, batch 2",
            "steps_counted": len(times["off"]), "threads": torch.get_num_threads(),
            "parameters": {name: sum(p.numel() for p in m.net.parameters()) for name, (m, _) in runs.items()},
            "median_s_per_step": median, "ratio_to_off": {name: median[name] / median["off"] for name in runs}}


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
    loader = torch.utils.data.DataLoader(_Fixed(fake_batch(info), steps + 1), batch_size=None)  # as Lightning's
    net.train()
    stamps = []
    for step, batch in zip(range(steps), loader):
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
        float(loss.detach())  # what logging costs: one sync of the loss
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
def _rss_now() -> int:
    """Current resident set size of this process in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _StorageSet:
    """Bytes of distinct tensor storages seen, keyed by data pointer; a pointer seen again counts again
    only if the tensor first seen with it has died (its memory may have been reused by a new storage)."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[Any, int]] = {}
        self.retired = 0

    def add(self, x: torch.Tensor) -> int:
        """Record ``x``'s storage; returns its bytes if it is new, else 0."""
        s = x.untyped_storage()
        ptr, n = s._cdata, s.nbytes()
        old = self.live.get(ptr)
        if old is not None:
            if old[0]() is not None:
                return 0
            self.retired += old[1]
        self.live[ptr] = (weakref.ref(x), n)
        return n

    @property
    def total(self) -> int:
        return self.retired + sum(n for _, n in self.live.values())


def _live_bytes(prof: torch.profiler.profile) -> dict[str, int]:
    """Peak and final bytes of tensor memory allocated (and not yet freed) while ``prof`` ran, from
    the CPU allocator's events in the profiler trace: what was live, independent of how malloc
    returns memory to the OS (the RSS figures include that). What a GPU caching allocator must at
    least reserve for the step."""
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return {"peak": peak, "final": cur}


def measure_memory(res: int, ac: bool, bf16: bool, device: str = "cpu") -> dict[str, Any]:
    """One joint-loss forward + backward of the paper network on whole C``res`` cubes, T = 5, batch 1.
    ``device="meta"``: the same step on meta tensors (no data, no memory): the saved-tensor accounting
    is exact at any resolution (C384 included), RSS and times are not measured; no bf16 autocast."""
    if device == "meta" and bf16:
        raise ValueError("bf16 autocast is not available for meta tensors")
    from downscale.models import VideoDownscaler, network_preset
    from downscale.models.conditioning import build_conditioning
    from downscale.models.video_unet import VideoUNet

    torch.manual_seed(0)
    factor = 8
    info = fake_info(res // factor, factor, 5)
    cfg = network_preset("paper", activation_checkpointing=ac, frames=5)
    cfg.check_spatial_shape(res, res)
    with torch.device(device):
        net = VideoDownscaler.build(cfg, len(info["predictors"]) + len(info["static_features"]), 1)
    net.train()
    n_params = sum(p.numel() for p in net.parameters())
    batch = {k: v.to(device) for k, v in fake_batch(info).items()}
    cond = build_conditioning(batch["coarse"], batch["static"], factor, "cube")
    area = torch.ones(6, res, res, device=device)
    params = {p.untyped_storage()._cdata for p in net.parameters()}
    # Saved-tensor accounting. Saved tensors stay alive until backward, so a data pointer names one
    # storage. Per block (each VideoUNet._run call): what autograd saves inside it and the block's input.
    saved: dict[int, int] = {}                 # every saved storage (parameters excluded)
    outside: dict[int, int] = {}               # saved while no block runs (stem, pooling, cat, output, loss)
    acct: dict[str, Any] = {"inside": None, "per_block": [], "inputs": _StorageSet()}

    def pack(x: torch.Tensor) -> torch.Tensor:
        s = x.untyped_storage()
        ptr = s._cdata  # the StorageImpl: one key per storage, also for meta tensors (data_ptr 0)
        if ptr not in params:  # weights saved for backward are model state, not activations
            saved[ptr] = s.nbytes()
            (outside if acct["inside"] is None else acct["inside"])[ptr] = s.nbytes()
        return x

    run_block = VideoUNet._run

    def counting_run(self, block, x, emb, frames):  # per-block accounting (bench only)
        acct["inputs"].add(x)
        if emb is not None:
            acct["inputs"].add(emb)
        outer, acct["inside"] = acct["inside"], {}
        try:
            return run_block(self, block, x, emb, frames)
        finally:
            inside = acct["inside"]
            inside.pop(x.untyped_storage()._cdata, None)  # the input is kept anyway (counted once, above)
            acct["per_block"].append(inside)
            acct["inside"] = outer

    VideoUNet._run = counting_run
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) \
        if device == "cpu" else contextlib.nullcontext()
    with profiler as prof:
        base = _rss_now()
        t0 = time.perf_counter()
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = net.loss(cond, batch["target"], area)["total"]
        finally:
            VideoUNet._run = run_block
        t1 = time.perf_counter()
        at_end_of_forward = _rss_now()
        loss.backward()
        t2 = time.perf_counter()
    derived = {}
    if not ac:
        # What activation checkpointing keeps, from this run without it: everything saved outside the
        # blocks, every block's input (held by its checkpoint frame for the recomputation), and during
        # the backward pass one block's recomputed activations at a time (the largest block).
        held = acct["inputs"].total
        largest = max((sum(d.values()) for d in acct["per_block"]), default=0)
        out_b = sum(outside.values())
        derived = {"ac_outside_gib": out_b / GiB, "ac_block_inputs_gib": held / GiB,
                   "ac_largest_block_gib": largest / GiB, "ac_derived_gib": (out_b + held + largest) / GiB,
                   "blocks": len(acct["per_block"])}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = {"res": res, "device": device, "activation_checkpointing": ac, "bf16_autocast": bf16, "params": n_params,
           "saved_tensor_gib": sum(saved.values()) / GiB, "cells": 6 * res * res * 5, **derived}
    if device != "meta":
        live = _live_bytes(prof)
        row.update({"peak_live_gib": live["peak"] / GiB, "live_after_backward_gib": live["final"] / GiB,
                    "rss_growth_forward_gib": (at_end_of_forward - base) / GiB, "peak_rss_growth_gib": (peak - base) / GiB,
                    "forward_s": t1 - t0, "backward_s": t2 - t1, "threads": torch.get_num_threads()})
    return row


def count_flops(res: int = 384, ac: bool = False) -> dict[str, Any]:
    """FLOPs of one joint-loss forward + backward of the paper network (torch's FlopCounterMode:
    convolutions, matmuls, attention; elementwise ops and norms are not counted), C``res`` cube, T = 5,
    batch 1, counted on meta tensors (no memory, any resolution). ``ac``: with activation checkpointing
    (the recomputed forward of every block is counted too)."""
    from torch.utils.flop_counter import FlopCounterMode

    from downscale.models import VideoDownscaler, network_preset

    torch.manual_seed(0)
    with torch.device("meta"):
        net = VideoDownscaler.build(network_preset("paper", frames=5, activation_checkpointing=ac), 10, 1)
        net.train()
        cond, target = torch.randn(1, 5, 10, 6, res, res), torch.randn(1, 5, 1, 6, res, res)
        with FlopCounterMode(display=False) as counter:
            loss = net.loss(cond, target, torch.ones(6, res, res))["total"]
            forward = counter.get_total_flops()
            loss.backward()
    total = counter.get_total_flops()
    return {"res": res, "activation_checkpointing": ac, "flops_forward": forward, "flops_fwd_bwd": total,
            "tflop_fwd_bwd": total / 1e12}


def _subprocess_row(args: list[str], threads: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_one", *args] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"cmd": args, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory(resolutions: list[int], variants: list[tuple[bool, bool]], threads: int | None) -> list[dict[str, Any]]:
    """One fresh subprocess per (resolution, variant) on the CPU, then (fp32 variants) the same step at
    C384 on meta tensors for the exact saved-tensor bytes."""
    rows = []
    for ac, bf16 in variants:
        flags = (["--ac"] if ac else []) + (["--bf16"] if bf16 else [])
        for res in resolutions:
            rows.append(_subprocess_row([str(res), *flags], threads))
            print(json.dumps(rows[-1]), flush=True)
        if not bf16:
            rows.append(_subprocess_row(["384", "--meta", *flags], threads))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def model_state_gib(params: int) -> dict[str, float]:
    """Training state per GPU besides activations (float32 master weights as Lightning keeps them, also
    under bf16-mixed): weights, gradients, AdamW m and v, EMA shadow = 5 × 4 bytes per parameter."""
    return {"weights_grads_adamw_ema_gib": 5 * 4 * params / GiB}


def estimate_c384(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (AC, bf16): activations at C384 from the largest CPU resolution × (384 / res)² (the
    assumption: activations ∝ cells at fixed channels, checked by the ratio of the two largest measured
    resolutions), next to the exact meta-tensor accounting at C384 where there is one; plus model state.
    ``total_gib_estimate`` = peak live tensor bytes at C384 (two-point linear fit in cells, else scaled)
    + model state (RSS, scaled, is shown as an upper bound: it includes what malloc keeps after frees)."""
    out = []
    ok = [r for r in rows if "error" not in r]
    for ac, bf16 in sorted({(r["activation_checkpointing"], r["bf16_autocast"]) for r in ok}):
        same = [r for r in ok if (r["activation_checkpointing"], r["bf16_autocast"]) == (ac, bf16)]
        cpu = sorted((r for r in same if r["device"] == "cpu"), key=lambda r: r["res"])
        meta = next((r for r in same if r["device"] == "meta" and r["res"] == 384), None)
        e: dict[str, Any] = {"activation_checkpointing": ac, "bf16_autocast": bf16}
        if cpu:
            top = cpu[-1]
            scale = (384 / top["res"]) ** 2
            e.update({"from_res": top["res"], "scale": scale,
                      "saved_tensor_gib_scaled": top["saved_tensor_gib"] * scale,
                      "peak_live_gib_scaled": top["peak_live_gib"] * scale,
                      "peak_rss_growth_gib_scaled": top["peak_rss_growth_gib"] * scale})
            if "ac_derived_gib" in top:
                e["ac_derived_gib_scaled"] = top["ac_derived_gib"] * scale
            if len(cpu) > 1:
                prev = cpu[-2]
                e["check"] = {"resolutions": [prev["res"], top["res"]],
                              "cells_ratio": top["cells"] / prev["cells"],
                              "saved_tensor_ratio": top["saved_tensor_gib"] / prev["saved_tensor_gib"],
                              "peak_live_ratio": top["peak_live_gib"] / prev["peak_live_gib"],
                              "peak_rss_growth_ratio": top["peak_rss_growth_gib"] / prev["peak_rss_growth_gib"]}
                # peak live bytes = a + b·cells through the two points: a holds what does not grow with
                # the grid (parameter gradients live at the peak, bf16 weight copies), b the activations
                b = (top["peak_live_gib"] - prev["peak_live_gib"]) / (top["cells"] - prev["cells"])
                a = top["peak_live_gib"] - b * top["cells"]
                e["peak_live_fit"] = {"constant_gib": a, "gib_per_million_cells": b * 1e6}
                e["peak_live_gib_linear"] = a + b * 6 * 384**2 * 5
        if meta:
            e["saved_tensor_gib_meta_c384"] = meta["saved_tensor_gib"]
            if "ac_derived_gib" in meta:
                e["ac_derived_gib_meta_c384"] = meta["ac_derived_gib"]
        params = (cpu or [meta])[-1]["params"]
        e.update(model_state_gib(params))
        if "saved_tensor_gib_meta_c384" in e and "saved_tensor_gib_scaled" in e:
            # exact / scaled: how far the ∝-cells assumption is off at C384 (halo copies of the small
            # deep levels grow less than ∝ cells)
            e["meta_over_scaled"] = e["saved_tensor_gib_meta_c384"] / e["saved_tensor_gib_scaled"]
        peak = e.get("peak_live_gib_linear", e.get("peak_live_gib_scaled"))
        if peak is not None:  # the full model state on top (its gradients may partly be in the peak already)
            e["total_gib_estimate"] = peak + e["weights_grads_adamw_ema_gib"]
        out.append(e)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["overhead", "seams", "memory", "flops", "all", "_one"])
    p.add_argument("res_one", nargs="?", type=int)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--res", type=int, nargs="+", default=[32, 64],
                   help="memory: C-N resolutions on the CPU (multiples of 32 for the paper network)")
    p.add_argument("--ac", action="store_true", help="memory: with activation checkpointing")
    p.add_argument("--bf16", action="store_true", help="memory: under bf16 autocast")
    p.add_argument("--meta", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: steady timings on a shared machine; 0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "_one":
        print(json.dumps(measure_memory(args.res_one, args.ac, args.bf16, "meta" if args.meta else "cpu")))
        return
    if args.what in ("overhead", "all"):
        print(json.dumps(overhead(args.steps, args.rounds), indent=1))
    if args.what == "seams":
        print(json.dumps(seams(args.steps, args.rounds), indent=1))
    if args.what in ("flops", "all"):
        for ac in (False, True):
            print(json.dumps(count_flops(384, ac)))
    if args.what in ("memory", "all"):
        variants = [(a, b) for a in (False, True) for b in (False, True)] if args.what == "all" else [(args.ac, args.bf16)]
        rows = memory(args.res, variants, args.threads)
        for e in estimate_c384(rows):
            print(json.dumps(e))


if __name__ == "__main__":
    main()
