"""Downscale a coarse run of the catalog into a high-resolution ensemble with deterministic baselines.

    generate(GenerateConfig(bundle=..., catalog=..., member="0003", output="out.zarr", members=8))

Steps:

1. **Open and check** (:func:`downscale.inference.coarse_run.open_run`): the catalog member is opened
   lazily; the bundle must fit it (predictors, C-N of both grids, time step); the period
   (``start``…``end``) must be gap-free and at least one clip long. Every failure names the store, the
   variable and the problem.
2. **Plan**: the period is cut into work items of ``time_block`` frames × ``member_block`` members
   (:func:`downscale.inference.store_plan.plan_items`). An item (run by an
   :class:`~downscale.inference.runner.ItemRunner`) samples its frames plus ``context_frames`` on each
   side (so the model sees the weather coming and going), with overlapping T-frame windows fused at
   every denoising step, and writes only its own frames. Members are then rescaled to the coarse
   input's mass per coarse cell (``mass_correction``, on by default; bounded at ``mass_correction_max_ratio``,
   :func:`data_catalog.upsample.correct_block_means`), and the members before that correction are written
   beside them (``ensemble_variants: [raw]``), so the report scores both. Memory depends on ``time_block``,
   never on the period's length.
3. **Set up** the store (:mod:`downscale.inference.output_job`): the bundle is verified and the input
   values of the frames it will hold are checked before anything is made on disk; ``overwrite`` builds the
   new store beside a finished one and swaps it in at the end.
4. **Run** the items still missing from the store (a restarted run skips finished ones), serially or on
   Dask (local threads, or a scheduler address; :mod:`downscale.inference.dask_items`), each a region write
   into the Zarr v3 store. Every worker holds one runner: the model is loaded once per worker. Each item is
   claimed before it runs, so several processes on one path with the same settings share the items.
5. **Finalize**: consolidated metadata once at the end; only then is the store complete.

With ``append`` a complete store of the same configuration grows instead by the frames its input gained
since (:mod:`downscale.inference.growth`): only those are planned, sampled and written.

Deterministic baselines (``bilinear``: cube-aware bilinear interpolation, mass-corrected; ``deterministic``:
the model's own mean μ with the members' mass correction — μ is fitted in log space, so back-transformed it
is the conditional median, too dry, and a user would correct it; ``deterministic_raw``: μ as it comes;
``qm``: quantile mapping of the bilinear field onto the training climatology),
the coarse input and the truth (when the run has it) are written by the first member block of each
time block.
"""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

from downscale.bundle import BundleError
from downscale.inference import store
from downscale.inference.coarse_run import RunInput, open_run
from downscale.inference.config import GenerateConfig
from downscale.inference.output_job import OutputJob, finish_job, set_up_output_store
from downscale.inference.runner import ItemRunner, context_frames, run_claimed, sampled_range
from downscale.inference.store_plan import WorkItem, planned_items
from downscale.inference.store_schema import OutputSpec
from downscale.inference.store_locks import Claim
from downscale.inference.windows import window_starts
from downscale.progress_log import ProgressLog


def output_spec(run: RunInput, config: GenerateConfig, runtime_attrs: dict) -> OutputSpec:
    has_truth = config.include_truth and run.data.fine is not None
    return OutputSpec(
        members=tuple(f"{k + 1:04d}" for k in range(config.members)), times=run.times, grid=run.fine_grid,
        coarse_area=run.coarse_area, factor=run.meta.factor, baselines=tuple(config.baselines),
        has_truth=has_truth, time_block=config.time_block, member_block=config.members_per_item,
        attrs=runtime_attrs, ensemble_variants=tuple(config.ensemble_variants),
        frame_seconds=run.meta.time_step_seconds)


def provenance(run: RunInput, config: GenerateConfig) -> dict:
    """Global attributes recording how the store was made."""
    frames = run.meta.clip_frames
    stride = config.stride(frames)
    return {
        "bundle_id": run.meta.bundle_id, "bundle": str(config.bundle),
        "bundle_created": run.meta.created, "bundle_software_version": run.meta.software_version,
        "input_catalog": run.catalog.name, "input_member": config.member, "input_stores": list(run.data.stores),
        "members": config.members, "seed": config.seed,
        "seed_rule": "member k (0-based), global frame t: numpy SeedSequence([seed, k, t, 0]); "
                     "variable 'seed' holds each frame's seed",
        **config.sampler.attrs(),
        "window_frames": frames, "window_stride": stride,
        "context_frames": context_frames(config, frames), "time_block": config.time_block,
        "mass_correction": str(config.mass_correction).lower(),
        "mass_correction_max_ratio": config.mass_correction_max_ratio,
        "ensemble_variants": list(config.ensemble_variants),
        "baselines": list(config.baselines),
    }


def window_joins(items: list[WorkItem], context: int, frames: int, stride: int, n_times: int) -> list[int]:
    """Frames ``t`` where frame ``t − 1`` and ``t`` were sampled apart: every work-item boundary and, with
    independent windows (``stride == frames``), every window boundary inside an item (fused overlapping
    windows have none)."""
    joins = {i.start for i in items if i.start > 0}
    if stride >= frames:
        for item in items:
            lo, hi = sampled_range(item.frames, context, frames, n_times)
            joins |= {lo + s for s in window_starts(hi - lo, frames, stride) if item.start < lo + s < item.stop}
    return sorted(joins)


# ---- the whole run ---------------------------------------------------------------------------------------
def _check_baselines(run: RunInput, config: GenerateConfig) -> None:
    if "qm" in config.baselines and run.meta.baselines.quantile_mapping is None:
        raise BundleError(f"bundle {run.meta.bundle_id} ({config.bundle}) holds no quantile-mapping table; "
                          f"drop 'qm' from baselines or re-export the bundle from its training run")
    if "qm" in config.ensemble_variants and run.meta.baselines.ensemble_quantile_mapping is None:
        raise BundleError(f"bundle {run.meta.bundle_id} ({config.bundle}) holds no ensemble quantile-mapping table; "
                          f"drop 'qm' from ensemble_variants or train with ensemble_quantile_mapping.clips > 0 "
                          f"(docs/training.md)")


def planned_spec(config: GenerateConfig) -> OutputSpec:
    """The layout ``config`` writes, from the input as it is now (opens and checks it; reads no data)."""
    config = config.with_absolute_paths()
    run = open_run(config)
    _check_baselines(run, config)
    return output_spec(run, config, provenance(run, config))


def _unwritten(work: Path, items: list[WorkItem]) -> list[WorkItem]:
    """The ``items`` still without their marker (none if the store moved away: another process finished it)."""
    try:
        done = store.done_items(work)
    except FileNotFoundError:
        return []
    return [i for i in items if i.key not in done]


def _count(progress: ProgressLog, result: str) -> None:
    """Count an item (``run_claimed``'s result) as done unless another process holds it (waited for later)."""
    progress.advance(0 if result.endswith(Claim.HELD.value) else 1, note=f"item {result}")


def local_cluster_options(threads: int, output: str | Path | None = None) -> dict:
    """``LocalCluster`` settings for the work items: ``threads`` threads of one worker in this process (the
    items share the loaded model), its ``dask-scratch-space`` in the output store's folder (Dask's default,
    the system temporary folder, when ``output`` is None). The scheduler's HTTP server (dashboard, health) takes
    a free port: ``dashboard_address=None`` still serves on 8787, and a second run at once then printed Dask's
    "Port 8787 is already in use" warning into the log."""
    options = {"processes": False, "n_workers": 1, "threads_per_worker": threads, "dashboard_address": ":0"}
    return options | ({"local_directory": str(Path(output).parent)} if output is not None else {})


def run_items(config: GenerateConfig, spec: OutputSpec, items: list[WorkItem]) -> None:
    """Run ``items`` into ``config.output``: in this thread with one runner (one worker), on a LocalCluster
    of ``workers`` threads sharing one runner, or on the Dask scheduler at ``scheduler`` with one runner per
    worker. Each item is claimed first (:func:`~downscale.inference.runner.run_claimed`): the items another
    process is writing are skipped, then waited for once the others are done (and run if that process
    died before writing them), so concurrent runs share the work. Progress (items done/total, ETA) is
    logged as they end (:class:`~downscale.progress_log.ProgressLog`); a LocalCluster keeps its
    ``dask-scratch-space`` in the output store's folder, not the system's temporary one."""
    if not items:
        return
    progress = ProgressLog(f"generate {config.output}", len(items), "work items")
    if config.workers == 1 and config.scheduler is None:
        runner = cache(partial(ItemRunner, config, spec))   # built by the first item this process claims
        with progress.heartbeat():
            for wait in (False, True):
                for item in items if not wait else _unwritten(Path(config.output), items):
                    _count(progress, run_claimed(runner, Path(config.output), item, wait))
        return
    # distributed (~1 s to import) only where items run on Dask
    from distributed import Client, LocalCluster, as_completed

    from downscale.inference.dask_items import item_runners, run_on_worker

    cluster = None if config.scheduler else LocalCluster(**local_cluster_options(config.workers, config.output))
    try:
        with (Client(config.scheduler or cluster) as client, item_runners(client, config, spec) as name,
              progress.heartbeat()):
            for wait in (False, True):
                batch = items if not wait else _unwritten(Path(config.output), items)
                # keys unique to this store's layout: another run on a shared scheduler never aliases these items
                keys = [f"{name}-{'wait' if wait else 'try'}-{item.key}" for item in batch]
                futures = client.map(run_on_worker, [name] * len(batch), batch, [wait] * len(batch), key=keys,
                                     pure=False)
                for future in as_completed(futures):
                    _count(progress, future.result())
    finally:
        if cluster is not None:
            cluster.close()


def finish_store(job: OutputJob, spec: OutputSpec) -> Path:
    """Finalize the store once every item is written, recording where frames were sampled apart (from the
    window settings the spec's provenance records), and swap it into place if it replaces one."""
    frames, stride, context = (int(spec.attrs[k]) for k in ("window_frames", "window_stride", "context_frames"))

    def final_attrs(work: Path) -> dict:
        return {"window_joins": window_joins(planned_items(work), context, frames, stride, len(spec.times))}

    return finish_job(job, spec, final_attrs)


def generate(config: GenerateConfig) -> Path:
    """Run ``config`` to a complete output store (resuming an interrupted one, sharing the work with any
    other process running the same settings on the same path); returns its path."""
    config = config.with_absolute_paths()  # workers elsewhere (a Dask cluster) see the same files
    spec = planned_spec(config)
    job = set_up_output_store(config, spec)
    run_items(job.work_config(config), spec, job.items)
    return finish_store(job, spec)
