"""Growing an output store along time: a coarse run that grows (a model still running, a store appended
to every day) is downscaled incrementally — only the new frames are sampled and appended.

    >>> new_frames("out.zarr", spec)     # spec: the store's series, its period reaching further
    48
    >>> extend_store("out.zarr", spec)   # then write its pending items and finalize as usual

A store can grow into ``spec`` when it was laid out for the same series (:attr:`OutputSpec.series_fingerprint`:
members, grid, blocks, provenance, first time and step) and its times are the first times of ``spec``.
The new frames are cut at shard boundaries into work items: when the old period ended inside a time
block, the first new item holds only that block's remaining frames, so nothing already written is sampled
again (the block's shard is rewritten around its old frames, which keep their values).

:func:`extend_store` takes four steps, each safe to repeat after a crash (it resumes where it stopped):

1. the plan gains the new items and records the new fingerprint;
2. the root says "in progress" and drops its consolidated metadata: readers see an unfinished store
   (:func:`~downscale.inference.store.open_output` names the missing items);
3. every array on ``time`` is resized (new frames read as the fill value: NaN, seed −1) and the
   ``time`` coordinate and its bounds ``time_bnds`` get the new times, encoded in the store's units and calendar;
4. the root's fingerprint becomes the new spec's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import cftime
import numpy as np
import zarr

from downscale.inference.store import quiet_bookkeeping, root_attributes, status_of
from downscale.inference.store_faults import OutputStoreError, io_faults
from downscale.inference.store_plan import planned_length, read_plan, time_ranges, write_plan
from downscale.inference.store_schema import FINGERPRINT, IN_PROGRESS, SERIES, STATUS, TIME_BOUNDS, OutputSpec

TIME = "time"


def _stored_times(root: Path) -> np.ndarray:
    """The store's ``time`` coordinate decoded to cftime (its CF units and calendar)."""
    arr = zarr.open_array(root / TIME, mode="r")
    return np.asarray(cftime.num2date(arr[:], arr.attrs["units"], arr.attrs["calendar"]), dtype=object)


def new_frames(path: str | os.PathLike[str], spec: OutputSpec) -> int:
    """How many frames ``spec`` adds to the store at ``path`` (0: the store already holds ``spec``).

    Raises :class:`OutputStoreError` naming the store and the reason when it cannot grow into ``spec``
    (another series, or times that are not a continuation of the store's), FileNotFoundError if there is
    no store."""
    root = Path(path)
    if status_of(root) is None:
        raise FileNotFoundError(f"output store {root}: does not exist")
    attrs = root_attributes(root)
    if attrs.get(FINGERPRINT) == spec.fingerprint:
        return 0
    if attrs.get(SERIES) != spec.series_fingerprint:
        raise OutputStoreError(
            f"output store {root}: was made by another configuration (bundle, sampler, members, grid, blocks or "
            f"first time differ), so it cannot grow by appending; choose another output or pass overwrite")
    plan = read_plan(root)
    if plan["fingerprint"] == spec.fingerprint:  # an extension to spec was interrupted
        return len(spec.times) - plan["grown_from"]
    old = _stored_times(root)[:planned_length(root)]
    if len(old) > len(spec.times) or not all(a == b for a, b in zip(old, spec.times, strict=False)):
        raise OutputStoreError(
            f"output store {root}: holds {len(old)} frames ({old[0]} … {old[-1]}); the input now gives "
            f"{len(spec.times)} ({spec.times[0]} … {spec.times[-1]}), which does not continue them (the input "
            f"lost or changed frames); choose another output or pass overwrite")
    return len(spec.times) - len(old)


def extend_store(path: str | os.PathLike[str], spec: OutputSpec) -> int:
    """Grow the store at ``path`` to the period of ``spec`` (module docstring); returns the frames added."""
    root = Path(path)
    added = new_frames(root, spec)
    if added == 0:
        return 0
    with io_faults(root, "grow"):
        _extend(root, spec)
    return added


def _extend(root: Path, spec: OutputSpec) -> None:
    """The four steps of :func:`extend_store` (module docstring)."""
    time = zarr.open_array(root / TIME, mode="r+")
    encoded = {name: np.asarray(cftime.date2num(dates, time.attrs["units"], time.attrs["calendar"]))
               for name, dates in ((TIME, list(spec.times)), (TIME_BOUNDS, spec.time_bounds))}
    values = {name: v.astype(time.dtype) for name, v in encoded.items()}
    if not all(np.array_equal(values[name], encoded[name]) for name in values):  # checked before anything changes
        raise OutputStoreError(f"output store {root}: the new times cannot be encoded exactly in the store's "
                               f"time units {time.attrs['units']!r}")
    plan = read_plan(root)
    if plan["fingerprint"] != spec.fingerprint:                                        # 1. the plan
        old = planned_length(root)
        ranges = [tuple(r) for r in plan["time_ranges"]] + time_ranges(old, len(spec.times), spec.time_block)
        write_plan(root, spec.fingerprint, ranges, plan["member_blocks"], grown_from=old)
    # 2. unfinished: rewriting the root's attributes without use_consolidated drops its consolidated metadata
    group = zarr.open_group(root, mode="r+", use_consolidated=False)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    group.attrs.update({STATUS: IN_PROGRESS,
                        "history": f"{group.attrs['history']}\n{now}: growing to {len(spec.times)} frames"})
    n = len(spec.times)                                                               # 3. the arrays
    with quiet_bookkeeping():
        arrays = list(group.arrays())
    for _, array in arrays:
        dims = array.metadata.dimension_names or ()
        if TIME in dims:
            axis = dims.index(TIME)
            array.resize(tuple(n if i == axis else s for i, s in enumerate(array.shape)))
    for name, v in values.items():
        zarr.open_array(root / name, mode="r+")[:] = v
    group.attrs.update({FINGERPRINT: spec.fingerprint})                               # 4. the new spec
