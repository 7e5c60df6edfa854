"""Downscale a coarse run of the catalog into a high-resolution ensemble with deterministic baselines.

    generate(GenerateConfig(bundle=..., catalog=..., member="0003", output="out.zarr", members=8))

Steps:

1. **Open and check** (:func:`open_run`): the catalog member is opened lazily; the bundle must fit it
   (predictors, C-N of both grids, time step); the period (``start``…``end``) must be gap-free and at
   least one clip long. Every failure names the store, the variable and the problem.
2. **Plan**: the period is cut into work items of ``time_block`` frames × ``member_block`` members
   (:func:`downscale.inference.store.plan_items`). An item samples its frames plus ``context_frames``
   on each side (so the model sees the weather coming and going), with overlapping T-frame windows
   fused at every denoising step, and writes only its own frames. Members are then rescaled to the coarse
   input's mass per coarse cell (``mass_correction``, on by default; bounded at ``mass_correction_max_ratio``,
   :func:`data_catalog.upsample.correct_block_means`), and the members before that correction are written
   beside them (``ensemble_variants: [raw]``), so the report scores both. Memory depends on ``time_block``,
   never on the period's length.
3. **Run** the items still missing from the store (a restarted run skips finished ones), serially or on
   Dask (local threads, or a scheduler address), each a region write into the Zarr v3 store.
4. **Finalize**: consolidated metadata once at the end; only then is the store complete.

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

import ctypes
import datetime as dt
import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cftime
import numpy as np
import torch
import xarray as xr

from data_catalog.catalog import Catalog, load_catalog
from data_catalog.errors import DataError
from data_catalog.loader import MemberData, open_grid, open_member, open_topography
from data_catalog.reader import is_precipitation
from data_catalog.schema import TIME
from data_catalog.upsample import correct_block_means
from data_catalog.validation import check_values, time_step_seconds
from downscale.bundle import BundleError, BundleMetadata, check_inputs, read_bundle_metadata
from downscale.inference import growth, store
from downscale.inference.baselines import QuantileTable, interpolate_baseline, quantile_map
from downscale.inference.config import GenerateConfig
from downscale.inference.runtime import Runtime, frame_seed, load_runtime, resolve_device
from downscale.inference.windows import window_starts

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunInput:
    """A checked coarse run: the member's data restricted to the period, its grids and the bundle."""

    catalog: Catalog
    data: MemberData
    times: np.ndarray                 # cftime, the period's frames
    first: int                        # index of the period's first frame in the member's time axis
    meta: BundleMetadata
    fine_grid: xr.Dataset
    coarse_area: xr.DataArray
    topography: np.ndarray | None

    @property
    def store_names(self) -> str:
        return ", ".join(self.data.stores)


def _parse_time(text: str, calendar: str, field: str) -> cftime.datetime:
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"generate config: {field} {text!r} is not an ISO date like 2016-08-05") from None
    return cftime.datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, calendar=calendar)


def _period(times: np.ndarray, config: GenerateConfig, store_name: str, step: float, frames: int) -> slice:
    """Indices of the configured period; refuses gaps and periods shorter than one clip."""
    calendar = times[0].calendar
    lo = 0 if config.start is None else int(np.searchsorted(times, _parse_time(config.start, calendar, "start")))
    hi = len(times) if config.end is None else int(
        np.searchsorted(times, _parse_time(config.end, calendar, "end"), side="right"))
    chosen = times[lo:hi]
    if len(chosen) < frames:
        raise DataError(store_name, f"the period {config.start or times[0]} … {config.end or times[-1]} holds "
                        f"{len(chosen)} frames; the model needs at least one clip of {frames}", TIME)
    steps = np.array([(b - a).total_seconds() for a, b in zip(chosen[:-1], chosen[1:], strict=True)])
    gaps = np.flatnonzero(steps != step)
    if gaps.size:
        where = ", ".join(f"{chosen[i]} → {chosen[i + 1]}" for i in gaps[:3])
        raise DataError(store_name, f"the period has {gaps.size} gap(s) in time (expected a {step / 3600:g} h step): "
                        f"{where}; downscale each gap-free part separately (start/end)", TIME)
    return slice(lo, hi)


def open_run(config: GenerateConfig) -> RunInput:
    """Open the catalog member lazily and check it against the bundle (module docstring, step 1)."""
    meta = read_bundle_metadata(config.bundle)
    catalog = load_catalog(config.catalog)
    res = catalog.resolution
    source = f"catalog '{catalog.name}' member '{config.member}'"
    if res.fine != meta.fine_resolution:
        raise BundleError(f"{source}: fine grid C{res.fine} but bundle {meta.bundle_id} downscales to "
                          f"C{meta.fine_resolution}")
    if store.COARSE not in meta.predictors:
        raise BundleError(f"bundle {meta.bundle_id}: has no {store.COARSE} predictor; the baselines and "
                          f"the mass check need the coarse precipitation")
    data = open_member(catalog, config.member, check=False)
    check_inputs(meta, catalog.predictors, res.coarse, time_step_seconds(data.coarse, ", ".join(data.stores)),
                 source)
    times = np.asarray(data.coarse.indexes[TIME])
    period = _period(times, config, ", ".join(data.stores), meta.time_step_seconds, meta.clip_frames)
    grid = open_grid(catalog, "fine")
    topography = open_topography(catalog).values if catalog.static is not None else None
    return RunInput(catalog, data, times[period], period.start, meta, grid, open_grid(catalog, "coarse")["area"],
                    topography)


def output_spec(run: RunInput, config: GenerateConfig, runtime_attrs: dict) -> store.OutputSpec:
    has_truth = config.include_truth and run.data.fine is not None
    return store.OutputSpec(
        members=tuple(f"{k + 1:04d}" for k in range(config.members)), times=run.times, grid=run.fine_grid,
        coarse_area=run.coarse_area, factor=run.meta.factor, baselines=tuple(config.baselines),
        has_truth=has_truth, time_block=config.time_block, member_block=config.members_per_item,
        attrs=runtime_attrs, ensemble_variants=tuple(config.ensemble_variants))


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
        "context_frames": _context(config, frames), "time_block": config.time_block,
        "mass_correction": str(config.mass_correction).lower(),
        "mass_correction_max_ratio": config.mass_correction_max_ratio,
        "ensemble_variants": list(config.ensemble_variants),
        "baselines": list(config.baselines),
    }


def _context(config: GenerateConfig, frames: int) -> int:
    return frames if config.context_frames is None else config.context_frames


def sampled_range(block: slice, context: int, frames: int, n_times: int) -> tuple[int, int]:
    """Frames ``[lo, hi)`` sampled for the time block ``block``: ``context`` more on each side, at least one
    clip; at the period's ends the range shifts inward rather than shrinking, so every full block samples
    the same number of frames (and needs the same memory) wherever it lies in the period."""
    length = min(max(block.stop - block.start + 2 * context, frames), n_times)
    lo = min(max(block.start - context, 0), n_times - length)
    return lo, lo + length


def window_joins(items: list[store.WorkItem], context: int, frames: int, stride: int, n_times: int) -> list[int]:
    """Frames ``t`` where frame ``t − 1`` and ``t`` were sampled apart: every work-item boundary and, with
    independent windows (``stride == frames``), every window boundary inside an item (fused overlapping
    windows have none)."""
    joins = {i.start for i in items if i.start > 0}
    if stride >= frames:
        for item in items:
            lo, hi = sampled_range(item.frames, context, frames, n_times)
            joins |= {lo + s for s in window_starts(hi - lo, frames, stride) if item.start < lo + s < item.stop}
    return sorted(joins)


# ---- one work item -----------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _opened_run(config: GenerateConfig) -> RunInput:
    """:func:`open_run` once per config and process (the driver's plan and its items share it)."""
    return open_run(config)


def _run_for(config: GenerateConfig, spec: store.OutputSpec) -> RunInput:
    """The opened run of ``config`` over the period of ``spec``, opened again if the input has grown since."""
    run = _opened_run(config)
    if len(run.times) != len(spec.times) or run.times[-1] != spec.times[-1]:
        _opened_run.cache_clear()
        run = _opened_run(config)
    return run


@lru_cache(maxsize=2)
def _loaded_unlocked(config: GenerateConfig) -> tuple[Runtime, QuantileTable | None, torch.Tensor]:
    """The loaded model of a config, once per process (Dask workers call items repeatedly)."""
    run = _opened_run(config)
    runtime = load_runtime(config.bundle, config.device, config.sampler, config.stride(run.meta.clip_frames),
                           config.members_per_batch, run.fine_grid["lat"].values, run.fine_grid["lon"].values,
                           run.topography)
    qm = run.meta.baselines.get("quantile_mapping")
    table = QuantileTable.model_validate(qm) if qm else None
    area = torch.as_tensor(run.fine_grid["area"].values, dtype=torch.float64, device=runtime.device)
    return runtime, table, area


_LOAD_LOCK = threading.Lock()


def _cached(config: GenerateConfig, spec: store.OutputSpec
            ) -> tuple[RunInput, Runtime, QuantileTable | None, torch.Tensor]:
    """The run and the loaded model behind a lock: worker threads that start together load the model once."""
    with _LOAD_LOCK:
        return (_run_for(config, spec), *_loaded_unlocked(config))


def _read_block(run: RunInput, names: tuple[str, ...], lo: int, hi: int) -> np.ndarray:
    """Raw coarse predictors ``(hi − lo, C, 6, nc, nc)`` float32 of period frames ``lo … hi − 1``, checked as
    :func:`data_catalog.validation.check_values` does (NaN/inf and large negative precipitation refused, tiny
    negatives clipped)."""
    sel = {TIME: slice(run.first + lo, run.first + hi)}
    out = []
    for name in names:
        da = run.data.coarse[name].isel(sel).load()
        da, _ = check_values(da, run.store_names, precipitation=is_precipitation(name, da.attrs))
        out.append(np.asarray(da.values, dtype=np.float32))
    return np.stack(out, axis=1)


def run_item(config: GenerateConfig, spec: store.OutputSpec, item: store.WorkItem) -> str:
    """Sample and write one work item of the store laid out by ``spec``; returns its key."""
    run, rt, table, area = _cached(config, spec)
    frames, context = run.meta.clip_frames, _context(config, run.meta.clip_frames)
    t = item.frames
    lo, hi = sampled_range(t, context, frames, len(run.times))
    keep = slice(t.start - lo, t.stop - lo)
    raw = _read_block(run, run.meta.predictors, lo, hi)
    cond = rt.conditioning(rt.normalize_coarse(raw))
    mu = rt.mean(cond)
    m = item.member_slice(spec)
    seeds = np.array([[frame_seed(config.seed, k, run.first + f) for f in range(lo, hi)]
                      for k in range(m.start, m.stop)], dtype=np.int64)
    ensemble = rt.members(cond, mu, seeds)[:, keep]
    coarse_p = torch.from_numpy(raw[keep, run.meta.predictors.index(store.COARSE)]).to(rt.device)
    variants = {"raw": ensemble.cpu().numpy().astype(np.float32)} if "raw" in config.ensemble_variants else {}
    if config.mass_correction:
        ensemble = _mass_corrected(config, ensemble, coarse_p, run.meta.factor, area)
    deterministic = truth = coarse = None
    if item.member_block == 0:
        deterministic = _baselines(config, rt, table, mu[0, keep, 0], coarse_p, area)
        coarse = raw[keep, run.meta.predictors.index(store.COARSE)]
        if spec.has_truth:
            fine = run.data.fine[run.catalog.precipitation].isel({TIME: slice(run.first + t.start, run.first + t.stop)})
            truth = np.asarray(check_values(fine.load(), run.store_names, precipitation=True)[0].values, np.float32)
    store.write_item(config.output, spec, item, ensemble.cpu().numpy().astype(np.float32), seeds[:, keep],
                     deterministic, truth, coarse, variants)
    del raw, cond, mu, ensemble
    _release_memory()
    return item.key


def _mass_corrected(config: GenerateConfig, fields: torch.Tensor, coarse_p: torch.Tensor, factor: int,
                    area: torch.Tensor) -> torch.Tensor:
    """The bounded multiplicative mass correction of ``fields (..., 6, nf, nf)`` (kg m-2 s-1) to ``coarse_p``."""
    return correct_block_means(fields.double(), coarse_p, factor, area, max_ratio=config.mass_correction_max_ratio
                               ).clamp_min(0).float()


def _release_memory() -> None:
    """Hand the item's freed buffers back to the OS, so the next item does not start fragmented."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _baselines(config: GenerateConfig, rt: Runtime, table: QuantileTable | None, mu: torch.Tensor,
               coarse_p: torch.Tensor, area: torch.Tensor) -> dict[str, np.ndarray]:
    """``(t, 6, nf, nf)`` float32 of each configured baseline."""
    out: dict[str, torch.Tensor] = {}
    if {"bilinear", "qm"} & set(config.baselines):
        interpolated = interpolate_baseline(coarse_p.double(), rt.meta.factor, area)
    for name in config.baselines:
        if name == "bilinear":
            out[name] = interpolated
        elif name == "deterministic":     # μ mass-corrected as the members are: the strongest deterministic
            physical = rt.physical(mu)
            out[name] = _mass_corrected(config, physical, coarse_p, rt.meta.factor, area) \
                if config.mass_correction else physical
        elif name == "deterministic_raw":
            out[name] = rt.physical(mu)
        elif name == "qm":
            out[name] = quantile_map(interpolated, table)
    return {k: v.float().cpu().numpy() for k, v in out.items()}


# ---- the whole run ---------------------------------------------------------------------------------------
def _check_baselines(run: RunInput, config: GenerateConfig) -> None:
    if "qm" in config.baselines and not run.meta.baselines.get("quantile_mapping"):
        raise BundleError(f"bundle {run.meta.bundle_id} ({config.bundle}) holds no quantile-mapping table; "
                          f"drop 'qm' from baselines or re-export the bundle from its training run")


@contextmanager
def item_threads(config: GenerateConfig, spec: store.OutputSpec) -> Iterator[None]:
    """While ``config.workers`` local threads run items: torch's threads split among them, and the model loaded
    once before they start (with a scheduler elsewhere, or one worker, nothing changes)."""
    threads = torch.get_num_threads()
    if config.scheduler is None and config.workers > 1:
        _cached(config, spec)
        torch.set_num_threads(max(1, threads // config.workers))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_items(config: GenerateConfig, spec: store.OutputSpec, items: list[store.WorkItem]) -> None:
    """Run ``items``: in this thread (one worker), on local Dask threads (``workers``) or on the Dask scheduler
    at ``scheduler``. The Prefect flow maps them over its own task runner instead."""
    if not items:
        return
    if config.workers == 1 and config.scheduler is None:
        for item in items:
            log.info("item %s", run_item(config, spec, item))
        return
    from distributed import Client, LocalCluster

    with item_threads(config, spec):
        cluster = None if config.scheduler else LocalCluster(
            processes=False, n_workers=1, threads_per_worker=config.workers, dashboard_address=None)
        client = Client(config.scheduler or cluster)
        try:
            # keys unique to this store's layout: another run on a shared scheduler never aliases these items
            keys = [f"downscale-{spec.fingerprint[:16]}-{item.key}" for item in items]
            futures = client.map(run_item, [config] * len(items), [spec] * len(items), items, key=keys, pure=False)
            for done in client.gather(futures):
                log.info("item %s", done)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def planned_spec(config: GenerateConfig) -> store.OutputSpec:
    """The layout ``config`` writes (opens and checks the input; reads no data)."""
    config = config.with_absolute_paths()
    _opened_run.cache_clear()  # the input may have grown since it was last opened: plan from what is there now
    run = _opened_run(config)
    _check_baselines(run, config)
    return output_spec(run, config, provenance(run, config))


def set_up_output_store(config: GenerateConfig, spec: store.OutputSpec) -> list[store.WorkItem]:
    """Create, resume or (with ``append``) grow the output store of ``config`` laid out by ``spec``
    (:func:`planned_spec`); returns the work items still to run.

    ``config`` must have absolute paths (:meth:`GenerateConfig.with_absolute_paths`). A complete store is
    refused unless ``overwrite``; with ``append`` a complete store of the same configuration grows by the
    frames the input gained (none: nothing to run), and a store of another configuration is refused."""
    out = Path(config.output)
    if config.scheduler is None:
        resolve_device(config.device)  # a bad device name fails here, not in a worker
    if config.append and not config.overwrite and store.exists(out):
        added = growth.extend_store(out, spec)
        log.info("%s: %s", out, f"grows by {added} frames" if added else "up to date with its input")
    elif store.is_complete(out) and not config.overwrite:
        if not store.matches(out, spec):
            raise FileExistsError(f"{out}: a complete output store of another configuration (bundle, sampler, "
                                  f"members, period …); pass overwrite to redo it")
        raise FileExistsError(f"output {out} is complete; pass overwrite (--overwrite) to replace it, or "
                              f"append (--append) to add the frames its input gained")
    else:
        store.create_store(out, spec, overwrite=config.overwrite)
    pending = store.pending_items(out, spec)
    log.info("%s: %d of %d work items to run", out, len(pending), len(store.planned_items(out)))
    return pending


def finish_store(config: GenerateConfig, spec: store.OutputSpec) -> Path:
    """Finalize the store once every item is written, recording where frames were sampled apart."""
    run, out = _opened_run(config), Path(config.output)
    frames = run.meta.clip_frames
    joins = window_joins(store.planned_items(out), _context(config, frames), frames, config.stride(frames),
                         len(spec.times))
    store.finalize_store(out, spec, {"window_joins": joins})
    return out


def generate(config: GenerateConfig) -> Path:
    """Run ``config`` to a complete output store (resuming an interrupted one); returns its path."""
    config = config.with_absolute_paths()  # workers elsewhere (a Dask cluster) see the same files
    spec = planned_spec(config)
    run_items(config, spec, set_up_output_store(config, spec))
    return finish_store(config, spec)
