"""The output store on disk: a CF-compliant Zarr v3 store with shards, written by concurrent work items,
resumable. What it holds is :mod:`downscale.inference.store_schema`; which work items it is cut into, and
which are done, is :mod:`downscale.inference.store_plan`.

Lifecycle: :func:`create_store`, once, by the driver (metadata, grid and coordinates; data left at
the NaN fill value) → :func:`write_item` for every item of :func:`pending_items`, from any number of
threads or processes → :func:`finalize_store` (checks every item, consolidates the metadata once,
marks the store complete). Each written item leaves a marker after its data, so a crash leaves the item
pending and a rerun redoes exactly the missing items. :func:`open_output` opens with one dask chunk per
shard (plain ``xr.open_zarr`` gives one per inner chunk; pass ``chunks=`` for large stores). Zarr warns
that ``.downscale`` "is not recognized as a component of a Zarr hierarchy" when listing an unconsolidated
store; it is harmless.

Example::

    >>> spec = OutputSpec(members=("0001", "0002"), times=times, grid=cube_sphere_grid(384),
    ...                   coarse_area=static.area_coarse, factor=8, baselines=("bilinear", "qm"),
    ...                   has_truth=True, time_block=8, member_block=2, attrs={"bundle_id": "abc123"})
    >>> create_store("outputs.zarr", spec)
    >>> for item in pending_items("outputs.zarr", spec):
    ...     write_item("outputs.zarr", spec, item, ensemble, seeds, baselines, truth, coarse)
    >>> finalize_store("outputs.zarr", spec)
    >>> ds = xr.open_zarr("outputs.zarr")   # or open_output("outputs.zarr"): checked, shard-sized dask chunks
    >>> ds.PRATEsfc.dims
    ('member', 'time', 'tile', 'grid_yt', 'grid_xt')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.errors import ZarrUserWarning

from data_catalog.schema import N_TILES, PRECIPITATION
from data_catalog.zarr_metadata import consolidated_v3
from downscale.inference.store_faults import (IncompleteStoreError, OutputStoreError, StoreIOError, check_parents,
                                              describe, io_faults)
from downscale.inference.store_plan import (BOOKKEEPING, TMP_SUFFIX, WorkItem, mark_done, marked_items,
                                            planned_items, unmarked_items, write_new_plan)
from downscale.inference.store_schema import (COARSE, COMPLETE, FINGERPRINT, FORMAT, IN_PROGRESS, SEED, STATUS,
                                              STORE_FORMAT, TRUTH, OutputSpec, baseline_variable, encode_attr,
                                              ensemble_variant_variable, skeleton)
from downscale.version import __version__


# ---- state of a store on disk ------------------------------------------------------------------------------


def root_attributes(root: Path) -> dict[str, Any]:
    """The global attributes of the store at ``root`` as its ``zarr.json`` holds them (empty: no store)."""
    return (_root_metadata(root) or {}).get("attributes", {})

def _root_metadata(root: Path) -> dict[str, Any] | None:
    """The root group's ``zarr.json``, or None if ``root`` holds none; :class:`StoreIOError` if it cannot be
    read (no permission, a path under a file)."""
    try:
        return json.loads((root / "zarr.json").read_text())
    except FileNotFoundError:
        return None
    except OSError as err:
        check_parents(root)
        raise StoreIOError(describe(root, "read", err)) from None


def require_format(attrs: dict[str, Any], name: str) -> None:
    """:class:`OutputStoreError` naming the store ``name`` unless its global attributes ``attrs`` say
    :data:`STORE_FORMAT` (a store from before the attribute is format 0)."""
    found = attrs.get(FORMAT, 0)
    if found != STORE_FORMAT:
        raise OutputStoreError(f"output store {name} has format {found}, this software (fv3-downscale "
                               f"{__version__}) reads format {STORE_FORMAT}; write it again with this version "
                               f"(--overwrite), or read it with the version that wrote it")


def status_of(root: Path) -> str | None:
    """None (nothing at ``root``), :data:`IN_PROGRESS` or :data:`COMPLETE` (marked and consolidated).

    Raises :class:`OutputStoreError` if ``root`` exists but is not an output store."""
    meta = _root_metadata(root)
    if meta is None:
        if root.exists():
            raise OutputStoreError(f"output store {root}: exists but is not a Zarr store; refusing to touch it "
                                   f"(choose another path or remove it)")
        return None
    status = meta.get("attributes", {}).get(STATUS)
    if status not in (IN_PROGRESS, COMPLETE):
        raise OutputStoreError(f"output store {root}: a Zarr store without a valid {STATUS!r} attribute "
                               f"(got {status!r}) is not a downscale output store; refusing to touch it")
    require_format(meta["attributes"], str(root))
    consolidated = meta.get("consolidated_metadata") is not None
    return COMPLETE if status == COMPLETE and consolidated else IN_PROGRESS


def _fingerprint(root: Path) -> str | None:
    return root_attributes(root).get(FINGERPRINT)


def matches(path: str | os.PathLike[str], spec: OutputSpec) -> bool:
    """True if ``path`` holds an output store (complete or not) laid out for ``spec``."""
    root = Path(path)
    return status_of(root) is not None and _fingerprint(root) == spec.fingerprint


def _require_spec(root: Path, spec: OutputSpec) -> str:
    """The store's status; raises if there is no store or it was laid out for another spec."""
    status = status_of(root)
    if status is None:
        raise FileNotFoundError(f"output store {root}: does not exist (create it with create_store)")
    found = str(_fingerprint(root))
    if found != spec.fingerprint:
        raise OutputStoreError(
            f"output store {root}: was created for a different spec (fingerprint {found[:12]}, this spec "
            f"{spec.fingerprint[:12]}: members, times, grid, baselines, blocks, chunks or attrs differ); "
            f"use the same settings to resume it, or replace it: downscale generate --overwrite, or overwrite: true "
            f"in the generate or pipeline config")
    return status



@contextmanager
def quiet_bookkeeping() -> Iterator[None]:
    """Silence zarr's warning that the bookkeeping folder is no array or group (it lists it with them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f"Object at {re.escape(BOOKKEEPING)} is not recognized", ZarrUserWarning)
        yield


def _describe(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")



# ---- the public lifecycle ----------------------------------------------------------------------------------


def create_store(path: str | os.PathLike[str], spec: OutputSpec, overwrite: bool = False) -> None:
    """Lay out the store at ``path``: metadata, grid and coordinates, data at the NaN fill value, status
    "in progress". An in-progress store of the same spec is kept as it is (resume); a complete store
    raises :class:`FileExistsError` and an in-progress store of another spec :class:`OutputStoreError`,
    unless ``overwrite=True``, which removes the old store first. Built under a temporary name and
    renamed, so ``path`` never holds a half-created store."""
    root = Path(path)
    status = status_of(root)
    if status is not None and not overwrite:
        if status == COMPLETE:
            raise FileExistsError(f"output store {root}: already complete; replace it with downscale generate "
                                  f"--overwrite (overwrite: true in a config)")
        _require_spec(root, spec)
        return
    tmp = root.with_name(root.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    ds, encoding = skeleton(spec)
    try:
        with io_faults(root, "create"):
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, compute=False, encoding=encoding)
            write_new_plan(tmp, spec)
            if status is not None:
                shutil.rmtree(root)
            os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed creation leaves nothing half-made


def _as_array(root: Path, name: str, value: Any, shape: tuple[int, ...], kind: str) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != shape or a.dtype.kind not in kind:
        raise ValueError(f"output store {root}: {name} has shape {a.shape} and dtype {a.dtype}, expected "
                         f"shape {shape} of {'integers' if kind == 'iu' else 'floats'}")
    return a.astype(np.int64 if kind == "iu" else np.float32, copy=False)


def _shared_fields(root: Path, spec: OutputSpec, item: WorkItem, deterministic: dict[str, np.ndarray] | None,
                   truth: np.ndarray | None, coarse: np.ndarray | None) -> dict[str, Any]:
    """The member-independent variables the item writes: every baseline, the truth (if the spec has it)
    and the coarse input for the items of member block 0, none for the others."""
    deterministic = deterministic or {}
    if item.member_block != 0:
        given = [k for k, v in (("deterministic", deterministic or None), ("truth", truth), ("coarse", coarse))
                 if v is not None]
        if given:
            raise ValueError(f"output store {root}: {item.key} got {given}: baselines, truth and coarse input "
                             f"are written by the items of member block 0 only")
        return {}
    problems = []
    if set(deterministic) != set(spec.baselines):
        problems.append(f"baselines {sorted(spec.baselines)} (got {sorted(deterministic)})")
    if (truth is not None) != spec.has_truth:
        problems.append("truth" if spec.has_truth else "no truth (has_truth is False)")
    if coarse is None:
        problems.append("coarse")
    if problems:
        raise ValueError(f"output store {root}: {item.key} (member block 0) must give {'; '.join(problems)}")
    fields = {baseline_variable(b): deterministic[b] for b in spec.baselines}
    return {**fields, **({TRUTH: truth} if spec.has_truth else {}), COARSE: coarse}


def _item_writes(root: Path, spec: OutputSpec, item: WorkItem, ensemble: np.ndarray, seeds: np.ndarray,
                 deterministic: dict[str, np.ndarray] | None, truth: np.ndarray | None,
                 coarse: np.ndarray | None, variants: dict[str, np.ndarray] | None = None,
                 ) -> list[tuple[str, tuple[slice, ...], np.ndarray]]:
    """``(variable, selection, data)`` of every array the item writes, validated against ``spec``."""
    if item not in planned_items(root):
        raise ValueError(f"output store {root}: {item} is not a work item of its plan")
    ts, ms = item.frames, item.member_slice(spec)
    nt, nm, n, nc = ts.stop - ts.start, ms.stop - ms.start, spec.n, spec.n_coarse
    writes = [(PRECIPITATION, (ms, ts), _as_array(root, "ensemble", ensemble, (nm, nt, N_TILES, n, n), "f")),
              (SEED, (ms, ts), _as_array(root, "seeds", seeds, (nm, nt), "iu"))]
    variants = variants or {}
    if set(variants) != set(spec.ensemble_variants):
        raise ValueError(f"output store {root}: {item.key} must give the ensemble variants "
                         f"{sorted(spec.ensemble_variants)} (got {sorted(variants)})")
    for name in spec.ensemble_variants:
        writes.append((ensemble_variant_variable(name), (ms, ts),
                       _as_array(root, f"ensemble {name}", variants[name], (nm, nt, N_TILES, n, n), "f")))
    for name, value in _shared_fields(root, spec, item, deterministic, truth, coarse).items():
        shape = (nt, N_TILES, nc, nc) if name == COARSE else (nt, N_TILES, n, n)
        writes.append((name, (ts,), _as_array(root, name, value, shape, "f")))
    return writes


def write_item(path: str | os.PathLike[str], spec: OutputSpec, item: WorkItem, ensemble: np.ndarray,
               seeds: np.ndarray, deterministic: dict[str, np.ndarray] | None = None,
               truth: np.ndarray | None = None, coarse: np.ndarray | None = None,
               variants: dict[str, np.ndarray] | None = None) -> None:
    """Write one work item, then its marker; safe to call concurrently for different items.

    ``ensemble``: (m, t, 6, N, N) kg m-2 s-1 for the item's m members and t frames; ``seeds``: (m, t)
    integers, the sampler seed of each member and frame; items of member block 0 also give
    ``deterministic`` (every baseline name → (t, 6, N, N)), ``truth`` (t, 6, N, N) if the spec has
    truth, and ``coarse`` (t, 6, Nc, Nc), all kg m-2 s-1; other items give none of them. Every item gives
    ``variants`` (each ensemble variant name → (m, t, 6, N, N)) when the spec has any. Rewriting an
    item (after a crash) overwrites exactly its own shards.
    """
    root = Path(path)
    if _require_spec(root, spec) == COMPLETE:
        raise OutputStoreError(f"output store {root}: is complete; refusing to write {item.key} into it")
    writes = _item_writes(root, spec, item, ensemble, seeds, deterministic, truth, coarse, variants)
    with io_faults(root, f"write {item.key}"):
        group = zarr.open_group(root, mode="r+", use_consolidated=False)
    for name, selection, data in writes:
        with io_faults(root, f"write {item.key}", variable=name):
            group[name][selection] = data
    with io_faults(root, f"mark {item.key} written"):
        mark_done(root, spec, item)


def done_items(path: str | os.PathLike[str]) -> set[str]:
    """Keys of the items whose marker exists (their data is fully written)."""
    root = Path(path)
    if status_of(root) is None:
        raise FileNotFoundError(f"output store {root}: does not exist")
    return marked_items(root)


def pending_items(path: str | os.PathLike[str], spec: OutputSpec) -> list[WorkItem]:
    """The items of ``spec`` still to write into the store at ``path`` (all of them for a new store)."""
    root = Path(path)
    _require_spec(root, spec)
    return unmarked_items(root)


def finalize_store(path: str | os.PathLike[str], spec: OutputSpec, attrs: dict[str, Any] | None = None) -> None:
    """Check every item is written, mark the store complete and consolidate its metadata (once).
    ``attrs``: global attributes that describe the finished period (e.g. ``window_joins``, which change
    when a store grows), written now. A complete store is left as it is."""
    root = Path(path)
    if _require_spec(root, spec) == COMPLETE:
        return
    missing = [i.key for i in unmarked_items(root)]
    if missing:
        raise IncompleteStoreError(f"output store {root}: cannot finalize, {len(missing)} of "
                                   f"{len(planned_items(root))} work items not written: {_describe(missing)}")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    final = {k: encode_attr(k, v) for k, v in (attrs or {}).items()}
    with io_faults(root, "finalize"), quiet_bookkeeping(), consolidated_v3():
        group = zarr.open_group(root, mode="r+", use_consolidated=False)
        group.attrs.update({**final, STATUS: COMPLETE, "history": f"{group.attrs['history']}\n{now}: completed"})
        zarr.consolidate_metadata(str(root))


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds an output store (complete or not); raises :class:`OutputStoreError` for a
    path that holds something else."""
    return status_of(Path(path)) is not None


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a finalized output store (marked complete, metadata consolidated); raises
    :class:`StoreIOError` if it cannot be read."""
    try:
        return status_of(Path(path)) == COMPLETE
    except StoreIOError:
        raise
    except OutputStoreError:
        return False


def _shard_chunks(root: Path) -> dict[str, int]:
    """Dask chunks of one shard along every dim of the sharded variables."""
    chunks: dict[str, int] = {}
    for name in (PRECIPITATION, COARSE):
        meta = json.loads((root / name / "zarr.json").read_text())
        chunks.update(zip(meta["dimension_names"], meta["chunk_grid"]["configuration"]["chunk_shape"]))
    return chunks


def open_output(path: str | os.PathLike[str], allow_incomplete: bool = False) -> xr.Dataset:
    """The store lazily (``xr.open_zarr``), one dask chunk per shard (plain ``xr.open_zarr`` makes one
    per inner chunk, pydata/xarray#11460). An in-progress store raises :class:`IncompleteStoreError`
    naming the missing items, unless ``allow_incomplete`` (unwritten data reads as NaN, seeds as -1)."""
    root = Path(path)
    status = status_of(root)
    if status is None:
        raise FileNotFoundError(f"output store {root}: does not exist")
    if status == COMPLETE:
        return xr.open_zarr(root, consolidated=True, chunks=_shard_chunks(root))
    missing = [i.key for i in unmarked_items(root)]
    if not allow_incomplete:
        raise IncompleteStoreError(f"output store {root}: in progress, {len(missing)} work items missing: "
                                   f"{_describe(missing)} (finish and finalize it, or pass allow_incomplete=True)")
    with quiet_bookkeeping():
        return xr.open_zarr(root, consolidated=False, chunks=_shard_chunks(root))
