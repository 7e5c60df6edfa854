"""The output store of one ``generate`` run, from set-up to swap: what the run writes where, checked before
anything is made on disk, shared with any other process running the same settings on the same path.

    job = set_up_output_store(config, spec)      # checks, then creates / resumes / grows the store
    run_items(job.work_config(config), spec, job.items)
    finish_job(job, spec, final_attrs)           # finalizes, and swaps a replacement into place

**Before anything is made**: the bundle is verified byte for byte (metadata and weights,
:func:`downscale.bundle.verify_bundle`) and the input values of every frame the store will newly hold are
read and checked (NaN, negative precipitation, unreadable chunks), so an input that is refused leaves no
output behind.

**Together**: the set-up and the finish of a store are done under its lock
(:func:`~downscale.inference.store_locks.store_lock`), so two processes on one path with the same settings
create the store once and both resume it; the work items are then shared (each claimed by one process,
:mod:`downscale.inference.generate`), and whoever ends last finds the store finished.

**Replacing** (``overwrite``) a store that is complete, or of another configuration, builds the new one
beside it at ``<store>.new`` (resumed by a rerun, shared by a concurrent one) and swaps it in once
complete (:mod:`downscale.inference.store_swap`): a killed ``--overwrite`` run never loses the old store.
An unfinished store of the same settings is resumed in place, with or without ``overwrite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downscale.bundle import verify_bundle
from downscale.inference import growth, store
from downscale.inference.coarse_run import open_run
from downscale.inference.config import GenerateConfig
from downscale.inference.runtime import resolve_device
from downscale.inference.store_locks import store_lock
from downscale.inference.store_plan import WorkItem, planned_items
from downscale.inference.store_schema import COMPLETE, OutputSpec
from downscale.inference.store_swap import recover_swap, staging_path, swap_in

log = logging.getLogger(__name__)

_REPLACE = "pass --overwrite (overwrite: true in a generate or pipeline config) to replace it"


@dataclass(frozen=True)
class OutputJob:
    """Where a run's work items go: ``store`` is the output it produces, ``work`` the store the items are
    written into (``store`` itself, or ``<store>.new`` while a store is being replaced) and ``items`` the
    items still to write there."""

    store: Path
    work: Path
    items: list[WorkItem]

    def work_config(self, config: GenerateConfig) -> GenerateConfig:
        """``config`` writing its items into :attr:`work`."""
        return config.model_copy(update={"output": self.work})


@dataclass(frozen=True)
class _Step:
    """What set-up does: ``action`` ("create", "grow" or "resume") the store at ``work``; ``frames``: the
    period frames ``[lo, hi)`` whose input values must be checked first (None: nothing new is made)."""

    action: str
    work: Path
    frames: tuple[int, int] | None


def _next_step(config: GenerateConfig, spec: OutputSpec, out: Path) -> _Step:
    """What set-up would do with the store at ``out`` as it is now (module docstring); refuses a complete
    store, or one of another configuration, without ``overwrite``."""
    n = len(spec.times)
    if config.append and not config.overwrite and store.exists(out):
        added = growth.new_frames(out, spec)
        return _Step("grow", out, (n - added, n) if added else None)
    status = store.status_of(out)
    if status is None:
        return _Step("create", out, (0, n))
    same = store.matches(out, spec)
    if same and status != COMPLETE:
        return _Step("resume", out, None)
    if not config.overwrite:
        if status != COMPLETE:
            raise FileExistsError(f"output {out}: an unfinished store of another configuration (bundle, sampler, "
                                  f"members, period …); run it with its own settings to finish it, or {_REPLACE}")
        if not same:
            raise FileExistsError(f"output {out}: a complete output store of another configuration (bundle, "
                                  f"sampler, members, period …); {_REPLACE}")
        raise FileExistsError(f"output {out} is complete; {_REPLACE}, or pass --append (append: true) to add "
                              f"the frames its input gained")
    staging = staging_path(out)
    if store.exists(staging) and store.matches(staging, spec):
        return _Step("resume", staging, None)
    return _Step("create", staging, (0, n))


def _check_inputs(config: GenerateConfig, spec: OutputSpec, frames: tuple[int, int] | None) -> None:
    """Read and check the input values of period frames ``[lo, hi)`` as the work items will read them."""
    if frames is None:
        return
    lo, hi = frames
    log.info("%s: checking the input's values of frames %d…%d before the store is made", config.output, lo, hi - 1)
    open_run(config).over(spec.times).check_frames(lo, hi, config.time_block, truth=spec.has_truth)


def set_up_output_store(config: GenerateConfig, spec: OutputSpec) -> OutputJob:
    """Create, resume, grow (``append``) or start replacing (``overwrite``) the output store of ``config``
    laid out by ``spec`` (:func:`downscale.inference.generate.planned_spec`), once the bundle and the new
    frames' input values are checked (module docstring); returns the job.

    ``config`` must have absolute paths (:meth:`GenerateConfig.with_absolute_paths`)."""
    out = Path(config.output)
    if config.scheduler is None:
        resolve_device(config.device)  # a bad device name fails here, not in a worker
    step = _next_step(config, spec, out)
    verify_bundle(config.bundle)
    _check_inputs(config, spec, step.frames)
    with store_lock(out):
        recover_swap(out)
        checked, step = step.frames, _next_step(config, spec, out)   # another process may have been first
        if step.frames not in (None, checked):
            _check_inputs(config, spec, step.frames)
        if step.action == "grow":
            added = growth.extend_store(out, spec)
            log.info("%s: %s", out, f"grows by {added} frames" if added else "up to date with its input")
        elif step.action == "create":
            store.create_store(step.work, spec, overwrite=True)
        pending = store.pending_items(step.work, spec)
    if step.work != out:
        log.info("%s: the new store is built beside it, at %s, and replaces it once complete", out, step.work)
    log.info("%s: %d of %d work items to run", step.work, len(pending), len(planned_items(step.work)))
    return OutputJob(out, step.work, pending)


def finish_job(job: OutputJob, spec: OutputSpec, final_attrs: Callable[[Path], dict[str, Any]]) -> Path:
    """Finalize the store the items were written into, with the global attributes ``final_attrs(work)``,
    and swap it into place if it replaces one; returns the output store. A store another process already
    finished is left as it is."""
    with store_lock(job.store):
        if job.work != job.store and not job.work.exists() and store.matches(job.store, spec) \
                and store.is_complete(job.store):
            return job.store   # another process finished the replacement and swapped it in
        store.finalize_store(job.work, spec, final_attrs(job.work))
        if job.work != job.store:
            swap_in(job.work, job.store)
    return job.store
