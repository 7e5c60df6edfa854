"""One worker's means to run work items: an :class:`ItemRunner` holds the opened coarse run, the loaded
model, the quantile-mapping table and the fine cell areas of one output store, and samples and writes
any of its work items.

Create one per worker — a process, or the threads of one process, which share it (the model is loaded
once; sampling only reads it) — and call it for each item::

    runner = ItemRunner(config, spec)          # config with absolute paths; spec: generate.planned_spec
    for item in store.pending_items(config.output, spec):
        runner(item)

Where other processes may write the same store, run each item through :func:`run_claimed`, which skips
the items that are written or that another process is writing.

An item samples its frames plus ``context_frames`` on each side (:func:`sampled_range`), rescales the
members to the coarse input's mass per coarse cell (``mass_correction``), writes the members before that
correction beside them (``ensemble_variants: [raw]``), the raw members quantile-mapped with the bundle's
ensemble table (``[qm]``) and, for member block 0, the deterministic baselines, the coarse input and the
truth. Memory depends on ``time_block``, never on the period's length.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from data_catalog.upsample import correct_block_means
from downscale.baselines import QuantileTable, interpolate_baseline, quantile_map
from downscale.inference import store
from downscale.inference.coarse_run import RunInput, open_run
from downscale.inference.config import GenerateConfig
from downscale.inference.runtime import Runtime, frame_seed, load_runtime
from downscale.inference.store_locks import Claim, claim_item
from downscale.inference.store_plan import WorkItem
from downscale.inference.store_schema import COARSE, OutputSpec


def context_frames(config: GenerateConfig, frames: int) -> int:
    """Frames sampled beyond each side of a time block: ``context_frames``, or one clip of ``frames``."""
    return frames if config.context_frames is None else config.context_frames


def sampled_range(block: slice, context: int, frames: int, n_times: int) -> tuple[int, int]:
    """Frames ``[lo, hi)`` sampled for the time block ``block``: ``context`` more on each side, at least one
    clip; at the period's ends the range shifts inward rather than shrinking, so every full block samples
    the same number of frames (and needs the same memory) wherever it lies in the period."""
    length = min(max(block.stop - block.start + 2 * context, frames), n_times)
    lo = min(max(block.start - context, 0), n_times - length)
    return lo, lo + length


class ItemRunner:
    """Samples and writes the work items of the store ``spec`` lays out (module docstring).

    ``config`` must have absolute paths; the coarse run is opened again here (lazily: metadata and grids)
    and cut to the planned period, so an input that grew since the plan is not read beyond it."""

    def __init__(self, config: GenerateConfig, spec: OutputSpec) -> None:
        self.config, self.spec = config, spec
        self.run: RunInput = open_run(config).over(spec.times)
        grid = self.run.fine_grid
        self.runtime: Runtime = load_runtime(config.bundle, config.device, config.sampler,
                                             config.stride(self.run.meta.clip_frames), config.members_per_batch,
                                             grid["lat"].values, grid["lon"].values, self.run.topography)
        self.table: QuantileTable | None = self.run.meta.baselines.quantile_mapping
        self.ensemble_table: QuantileTable | None = self.run.meta.baselines.ensemble_quantile_mapping
        #: fine cell areas (6, nf, nf) m2 on the model's device: the mass correction's and the baselines' weights
        self.area = torch.as_tensor(grid["area"].values, dtype=torch.float64, device=self.runtime.device)

    def __call__(self, item: WorkItem) -> str:
        """Sample and write ``item``; returns its key."""
        config, spec, run, rt = self.config, self.spec, self.run, self.runtime
        frames = run.meta.clip_frames
        t = item.frames
        lo, hi = sampled_range(t, context_frames(config, frames), frames, len(run.times))
        keep = slice(t.start - lo, t.stop - lo)
        raw = run.read_block(run.meta.predictors, lo, hi)
        cond = rt.conditioning(rt.normalize_coarse(raw))
        mu = rt.mean(cond)
        m = item.member_slice(spec)
        seeds = np.array([[frame_seed(config.seed, k, run.first + f) for f in range(lo, hi)]
                          for k in range(m.start, m.stop)], dtype=np.int64)
        ensemble = rt.members(cond, mu, seeds)[:, keep]
        coarse = raw[keep, run.meta.predictors.index(COARSE)]
        coarse_p = torch.from_numpy(coarse).to(rt.device)
        variants = {}
        if "raw" in config.ensemble_variants:
            variants["raw"] = ensemble.cpu().numpy().astype(np.float32)
        if "qm" in config.ensemble_variants:
            variants["qm"] = quantile_map(ensemble, self.ensemble_table).cpu().numpy().astype(np.float32)
        if config.mass_correction:
            ensemble = self._mass_corrected(ensemble, coarse_p)
        shared = {}
        if item.member_block == 0:
            shared = {"deterministic": self._baselines(mu[0, keep, 0], coarse_p), "coarse": coarse,
                      "truth": run.read_truth(t.start, t.stop) if spec.has_truth else None}
        store.write_item(config.output, spec, item, ensemble.cpu().numpy().astype(np.float32), seeds[:, keep],
                         variants=variants, **shared)
        del raw, cond, mu, ensemble, variants, shared
        _return_freed_memory()
        return item.key

    def _mass_corrected(self, fields: torch.Tensor, coarse_p: torch.Tensor) -> torch.Tensor:
        """The bounded multiplicative mass correction of ``fields (..., 6, nf, nf)`` (kg m-2 s-1) to ``coarse_p``
        ``(..., 6, nc, nc)``."""
        return correct_block_means(fields.double(), coarse_p, self.run.meta.factor, self.area,
                                   max_ratio=self.config.mass_correction_max_ratio).clamp_min(0).float()

    def _baselines(self, mu: torch.Tensor, coarse_p: torch.Tensor) -> dict[str, np.ndarray]:
        """``(t, 6, nf, nf)`` float32 kg m-2 s-1 of each configured baseline, from the model mean ``mu``
        (normalized, ``(t, 6, nf, nf)``) and the coarse precipitation ``coarse_p`` ``(t, 6, nc, nc)``."""
        config, rt = self.config, self.runtime
        out: dict[str, torch.Tensor] = {}
        if {"bilinear", "qm"} & set(config.baselines):
            interpolated = interpolate_baseline(coarse_p.double(), rt.meta.factor, self.area)
        for name in config.baselines:
            if name == "bilinear":
                out[name] = interpolated
            elif name == "deterministic":     # μ mass-corrected as the members are: the strongest deterministic
                physical = rt.physical(mu)
                out[name] = self._mass_corrected(physical, coarse_p) if config.mass_correction else physical
            elif name == "deterministic_raw":
                out[name] = rt.physical(mu)
            elif name == "qm":
                out[name] = quantile_map(interpolated, self.table)
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def run_claimed(runner: Callable[[], ItemRunner], output: Path, item: WorkItem, wait: bool) -> str:
    """Run ``item`` into the store at ``output`` with ``runner()`` if this process claims it
    (:func:`~downscale.inference.store_locks.claim_item`: not written, no other process writing it; with
    ``wait``, once that process is done); returns the item's key and what happened to it."""
    with claim_item(output, item, wait) as claim:
        if claim is Claim.MINE:
            runner()(item)
            return f"{item.key} written"
        return f"{item.key} {claim.value}"


def _return_freed_memory() -> None:
    """Hand an item's freed buffers back to the OS before the next item starts. glibc keeps freed heap
    memory, so without this the RSS between items climbed by ~30 % over four items (docs/inference.md,
    "Memory: period P vs 4P"); there is no portable call for it, hence ``malloc_trim`` through ctypes."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
