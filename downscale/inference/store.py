"""The inference output store: CF-compliant Zarr v3 with shards, written by concurrent work items, resumable.

Contents (docs/inference.md, "The output store"; read by :mod:`downscale.diagnostics.sources`), N fine cells and
Nc = N / factor coarse cells per tile side::

    PRATEsfc             (member, time, tile, grid_yt, grid_xt)                float32  diffusion ensemble
    PRATEsfc_ensemble_<v> (member, time, tile, grid_yt, grid_xt)               float32  ensemble variants, e.g.
                                                       raw (before the mass correction), qm (quantile-mapped members)
    PRATEsfc_<baseline>  (time, tile, grid_yt, grid_xt)                        float32  e.g. bilinear, qm
    PRATEsfc_truth       (time, tile, grid_yt, grid_xt)                        float32  when the truth is known
    PRATEsfc_coarse      (time, tile, grid_yt_coarse, grid_xt_coarse)          float32  the coarse input
    seed                 (member, time)              int64    sampler seed of each member and frame (-1: unwritten)
    lat, lon             (tile, grid_yt, grid_xt)    degrees  cell centres (coordinates of the fine fields)
    area                 (tile, grid_yt, grid_xt)    m2       cell areas, the ``cell_measures`` of the fine fields
    latb, lonb           (tile, grid_y, grid_x)      degrees  FV3 cell corners, N + 1 per tile side
    area_coarse          (tile, grid_yt_coarse, grid_xt_coarse)  m2

Precipitation is in kg m-2 s-1 (``standard_name: precipitation_flux``, ``cell_methods: time: mean`` —
each frame is a mean over its time step). Coordinates as FV3 writes them: ``time`` (cftime, CF-encoded
in the calendar of the inputs — Julian for FV3GFS), ``member`` (strings, e.g. "0001"), ``tile`` 1..6,
``grid_xt``/``grid_yt`` 1..N and ``grid_x``/``grid_y`` 1..N+1 (1-based float indices). ``latb``/``lonb``
are FV3's corner arrays, not CF ``bounds`` (CF wants 4 vertices per cell): corner ``(j, i)`` and
``(j+1, i+1)`` are opposite corners of cell ``(j, i)``. Global attributes: ``Conventions: CF-1.10``,
``title``, ``history``, the caller's provenance (JSON for lists and dicts), ``downscale_status``
("in progress" or "complete"), ``downscale_fingerprint`` (SHA-256 of the :class:`OutputSpec`) and
``downscale_series_fingerprint`` (the same without the period's end: a store can grow, see
:mod:`downscale.inference.growth`).

Layout on disk: each shard holds one member × ``time_block`` frames × 6 tiles × whole tiles, made of
inner chunks of ``(1, time_chunk, 1, space_chunk, space_chunk)``, so a map at one time and a time
series at one point both read few, small chunks. A :class:`WorkItem` (one time block × one block of
``member_block`` members) covers whole shards, so concurrent writers never touch the same file.

Lifecycle: :func:`create_store`, once, by the driver (metadata, grid and coordinates; data left at
the NaN fill value) → :func:`write_item` for every item of :func:`pending_items`, from any number of
threads or processes → :func:`finalize_store` (checks every item, consolidates the metadata once,
marks the store complete). Each written item leaves a marker ``<store>/.downscale/items/<key>.json``
(atomic rename) after its data, so a crash leaves the item pending and a rerun redoes exactly the
missing items. :func:`open_output` opens with one dask chunk per shard (plain ``xr.open_zarr`` gives
one per inner chunk; pass ``chunks=`` for large stores). Zarr warns that ``.downscale`` "is not
recognized as a component of a Zarr hierarchy" when listing an unconsolidated store; it is harmless.

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

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import cftime
import dask.array as dsa
import numpy as np
import xarray as xr
import zarr
from zarr.errors import ZarrUserWarning

from data_catalog.schema import (CORNER_DIMS, N_TILES, PRECIPITATION, PRECIPITATION_STANDARD_NAME,
                                 PRECIPITATION_UNITS, STATIC_DIMS)
from downscale.version import __version__

TRUTH, COARSE, SEED = f"{PRECIPITATION}_truth", f"{PRECIPITATION}_coarse", "seed"
FINE_DIMS = ("tile", "grid_yt", "grid_xt")
CORNER_OUTPUT_DIMS = ("tile", "grid_y", "grid_x")
COARSE_OUTPUT_DIMS = ("tile", "grid_yt_coarse", "grid_xt_coarse")
#: Dims :attr:`OutputSpec.coarse_area` may come on (the prepared dataset's, or the internal form's).
COARSE_INPUT_DIMS = (("tile", "yc", "xc"), STATIC_DIMS)
STATUS, FINGERPRINT, SERIES = "downscale_status", "downscale_fingerprint", "downscale_series_fingerprint"
IN_PROGRESS, COMPLETE = "in progress", "complete"
RESERVED_ATTRS = frozenset({"Conventions", "history", "factor", STATUS, FINGERPRINT, SERIES})
MAX_SPACE_CHUNK, MAX_TIME_CHUNK = 96, 8
SEED_FILL = -1
BOOKKEEPING, PLAN, ITEMS = ".downscale", "plan.json", "items"
_TMP = ".tmp"


class OutputStoreError(ValueError):
    """An output store that cannot be used as asked; the message names the store and the problem."""


class IncompleteStoreError(OutputStoreError):
    """An output store with work items not yet written; the message names them."""


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _encode_attr(key: str, value: Any) -> str | int | float:
    """A provenance value as a Zarr/netCDF-safe attribute: str, int and float as they are, else JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"provenance attribute {key!r}: {err} (give str, int, float, or JSON lists/dicts)") from None


@dataclass(frozen=True, eq=False, kw_only=True)
class OutputSpec:
    """Everything that lays out an output store; validated on construction.

    ``members``: member names (coordinate ``member``); ``times``: 1-D cftime objects at a regular step
    (frame means); ``grid``: the fine grid in the internal form of
    :func:`data_catalog.cubesphere.cube_sphere_grid` (``lat``, ``lon`` in degrees and ``area`` in m2 on
    ``(tile, y, x)``, corners ``latb``, ``lonb`` on ``(tile, yb, xb)``); ``coarse_area``: m2 on
    ``(tile, yc, xc)`` or ``(tile, y, x)``; ``factor``: fine cells per coarse cell side; ``baselines``:
    names ``b`` of the ``PRATEsfc_b`` variables; ``ensemble_variants``: names ``v`` of the member-dim
    ``PRATEsfc_ensemble_v`` variables written beside the ensemble; ``time_block``/``member_block``: frames/members per
    work item (``time_block`` is the shard length in time); ``time_chunk``: frames per inner chunk,
    dividing ``time_block`` (default the largest such ≤ 8); ``space_chunk``: cells per inner chunk
    side, dividing N (default the largest such ≤ 96); ``attrs``: provenance (bundle id, sampler
    settings, seeds, inputs, …), written as global attributes — dicts and lists as JSON.
    """

    members: tuple[str, ...]
    times: np.ndarray
    grid: xr.Dataset
    coarse_area: xr.DataArray
    factor: int
    baselines: tuple[str, ...]
    has_truth: bool
    time_block: int
    member_block: int
    time_chunk: int | None = None
    space_chunk: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    ensemble_variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        members, baselines = tuple(self.members), tuple(self.baselines)
        variants = tuple(self.ensemble_variants)
        if not all(isinstance(v, str) and v.isidentifier() for v in variants) or len(set(variants)) != len(variants):
            raise ValueError(f"ensemble_variants must be distinct identifiers, got {variants!r}")
        object.__setattr__(self, "ensemble_variants", variants)
        if not members or len(set(members)) != len(members) or not all(isinstance(m, str) and m for m in members):
            raise ValueError(f"members must be distinct non-empty strings, got {members!r}")
        bad = [b for b in baselines if not (isinstance(b, str) and b.isidentifier()) or b in ("truth", "coarse")]
        if bad or len(set(baselines)) != len(baselines):
            raise ValueError(f"baselines must be distinct identifiers other than 'truth'/'coarse', got {baselines!r}")
        for name in ("factor", "time_block", "member_block"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "baselines", baselines)
        object.__setattr__(self, "times", _checked_times(self.times))
        _check_grid(self.grid)
        object.__setattr__(self, "coarse_area", self._checked_coarse_area())
        self._check_chunks()
        for key in self.attrs:
            if not isinstance(key, str) or key in RESERVED_ATTRS:
                raise ValueError(f"attrs: {key!r} is reserved or not a string (reserved: {sorted(RESERVED_ATTRS)})")
        object.__setattr__(self, "attrs", {k: _encode_attr(k, v) for k, v in self.attrs.items()})

    def _checked_coarse_area(self) -> xr.DataArray:
        area = self.coarse_area
        dims = next((d for d in COARSE_INPUT_DIMS if set(area.dims) == set(d)), None)
        if dims is None:
            raise ValueError(f"coarse_area must be on one of {COARSE_INPUT_DIMS}, got {area.dims}")
        if self.n % self.factor:
            raise ValueError(f"factor {self.factor} does not divide the fine tile size {self.n}")
        expected = (N_TILES, self.n // self.factor, self.n // self.factor)
        area = area.transpose(*dims)
        if area.shape != expected:
            raise ValueError(f"coarse_area has shape {area.shape}, expected {expected} (C{self.n} / factor "
                             f"{self.factor})")
        return area

    def _check_chunks(self) -> None:
        if self.time_chunk is not None and (self.time_chunk < 1 or self.time_block % self.time_chunk):
            raise ValueError(f"time_chunk {self.time_chunk} must divide time_block {self.time_block} "
                             f"(a shard holds whole chunks)")
        if self.space_chunk is not None and (self.space_chunk < 1 or self.n % self.space_chunk):
            raise ValueError(f"space_chunk {self.space_chunk} must divide the tile size {self.n} "
                             f"(divisors: {[d for d in range(1, self.n + 1) if self.n % d == 0]})")

    @property
    def n(self) -> int:
        """Fine cells per tile side."""
        return int(self.grid.sizes["y"])

    @property
    def n_coarse(self) -> int:
        """Coarse cells per tile side."""
        return self.n // self.factor

    @property
    def time_chunk_length(self) -> int:
        """Frames per inner chunk."""
        return self.time_chunk or _largest_divisor(self.time_block, MAX_TIME_CHUNK)

    @property
    def space_chunk_length(self) -> int:
        """Fine cells per inner chunk side."""
        return self.space_chunk or _largest_divisor(self.n, MAX_SPACE_CHUNK)

    @property
    def n_member_blocks(self) -> int:
        return -(-len(self.members) // self.member_block)

    @cached_property
    def series_fingerprint(self) -> str:
        """SHA-256 of everything that decides the store's layout and contents (grid values included) except
        how far its time axis reaches: the first time and the step count, the last time does not. A store
        may grow into a spec of the same series (:mod:`downscale.inference.growth`)."""
        step = (self.times[1] - self.times[0]).total_seconds() if len(self.times) > 1 else None
        h = hashlib.sha256()
        h.update(json.dumps({
            "members": self.members, "first_time": self.times[0].isoformat(), "step_seconds": step,
            "calendar": self.times[0].calendar, "factor": self.factor, "baselines": self.baselines,
            "has_truth": self.has_truth, "ensemble_variants": self.ensemble_variants,
            "time_block": self.time_block, "member_block": self.member_block,
            "time_chunk": self.time_chunk_length, "space_chunk": self.space_chunk_length, "attrs": self.attrs,
        }, sort_keys=True).encode())
        for array in (*(self.grid[v] for v in ("lat", "lon", "area", "latb", "lonb")), self.coarse_area):
            h.update(np.ascontiguousarray(array.values, dtype=np.float64).tobytes())
        return h.hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the series fingerprint and every time: a store holds exactly one spec's frames."""
        times = json.dumps([t.isoformat() for t in self.times]).encode()
        return hashlib.sha256(self.series_fingerprint.encode() + times).hexdigest()


def _checked_times(times: Any) -> np.ndarray:
    """``times`` as a 1-D object array of cftime datetimes of one calendar at a regular step (to the second)."""
    t = np.asarray(times, dtype=object)
    if t.ndim != 1 or t.size == 0 or not all(isinstance(x, cftime.datetime) for x in t):
        raise ValueError("times must be a non-empty 1-D sequence of cftime datetimes")
    if len({x.calendar for x in t}) > 1:
        raise ValueError(f"times mix calendars {sorted({x.calendar for x in t})}")
    steps = np.array([s.total_seconds() for s in np.diff(t)])
    if steps.size and (steps[0] <= 0 or np.any(np.abs(steps - steps[0]) >= 1.0)):
        raise ValueError(f"times must increase at a regular step; steps range from {steps.min()} to {steps.max()} s")
    return t


def _check_grid(grid: xr.Dataset) -> None:
    n = grid.sizes.get("y", 0)
    for names, dims, size in ((("lat", "lon", "area"), STATIC_DIMS, n), (("latb", "lonb"), CORNER_DIMS, n + 1)):
        for name in names:
            if name not in grid or grid[name].dims != dims or grid[name].shape != (N_TILES, size, size):
                have = (grid[name].dims, grid[name].shape) if name in grid else "missing"
                raise ValueError(f"grid: {name} must be on {dims} with shape {(N_TILES, size, size)}, got {have}")


@dataclass(frozen=True, order=True)
class WorkItem:
    """One unit of work: frames ``start … stop − 1`` (positions along ``time``, all within one time block,
    i.e. one shard) × member block ``member_block`` (0-based). A fresh store's items are whole time blocks;
    a store that grew (:func:`downscale.inference.growth.extend_store`) may end a block with an item
    holding only its new frames."""

    start: int
    stop: int
    member_block: int

    @property
    def frames(self) -> slice:
        """The item's frames: positions along ``time``."""
        return slice(self.start, self.stop)

    def member_slice(self, spec: OutputSpec) -> slice:
        """The item's members: positions along ``member``."""
        start = self.member_block * spec.member_block
        return slice(start, min(start + spec.member_block, len(spec.members)))

    @property
    def key(self) -> str:
        """Name of the item, e.g. ``"t000040-000080-m0001"`` (frames 40…79, member block 1)."""
        return f"t{self.start:06d}-{self.stop:06d}-m{self.member_block:04d}"


def time_ranges(start: int, stop: int, time_block: int) -> list[tuple[int, int]]:
    """Frames ``start … stop − 1`` cut at the multiples of ``time_block`` (shard boundaries)."""
    cuts = [start, *range((start // time_block + 1) * time_block, stop, time_block), stop]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def _items(ranges: list[tuple[int, int]], n_member_blocks: int) -> list[WorkItem]:
    return [WorkItem(a, b, m) for a, b in ranges for m in range(n_member_blocks)]


def plan_items(spec: OutputSpec) -> list[WorkItem]:
    """Every work item of a new store laid out for ``spec``: whole time blocks, block by block."""
    return _items(time_ranges(0, len(spec.times), spec.time_block), spec.n_member_blocks)


# ---- the skeleton: metadata, grid and coordinates --------------------------------------------------------


def _precip_attrs(long_name: str, area: str) -> dict[str, str]:
    return {"units": PRECIPITATION_UNITS, "standard_name": PRECIPITATION_STANDARD_NAME, "long_name": long_name,
            "cell_methods": "time: mean", "cell_measures": f"area: {area}"}


def _index(dim: str, n: int, long_name: str) -> tuple[str, np.ndarray, dict[str, str]]:
    return (dim, np.arange(1, n + 1, dtype=np.float64), {"long_name": long_name})


def _coords(spec: OutputSpec) -> dict[str, Any]:
    n, nc = spec.n, spec.n_coarse
    grid = spec.grid
    return {
        "member": ("member", np.array(spec.members, dtype=object), {"long_name": "ensemble member"}),
        "time": ("time", spec.times, {"long_name": "time", "standard_name": "time"}),
        "tile": ("tile", np.arange(1, N_TILES + 1), {"long_name": "cube-sphere tile (FV3 numbering)"}),
        "grid_yt": _index("grid_yt", n, "T-cell index along tile y (1-based, as FV3)"),
        "grid_xt": _index("grid_xt", n, "T-cell index along tile x (1-based, as FV3)"),
        "grid_y": _index("grid_y", n + 1, "cell-corner index along tile y (1-based, as FV3)"),
        "grid_x": _index("grid_x", n + 1, "cell-corner index along tile x (1-based, as FV3)"),
        "grid_yt_coarse": _index("grid_yt_coarse", nc, "coarse T-cell index along tile y (1-based, as FV3)"),
        "grid_xt_coarse": _index("grid_xt_coarse", nc, "coarse T-cell index along tile x (1-based, as FV3)"),
        "lat": (FINE_DIMS, grid.lat.values, {"units": "degrees_north", "standard_name": "latitude",
                                             "long_name": "cell-centre latitude"}),
        "lon": (FINE_DIMS, grid.lon.values, {"units": "degrees_east", "standard_name": "longitude",
                                             "long_name": "cell-centre longitude"}),
    }


def _grid_variables(spec: OutputSpec) -> dict[str, tuple]:
    corner = "FV3 cell-corner array (N+1 per tile side); corners (j, i) and (j+1, i+1) bound cell (j, i)"
    return {
        "area": (FINE_DIMS, spec.grid.area.values, {"units": "m2", "standard_name": "cell_area",
                                                    "long_name": "cell area"}),
        "latb": (CORNER_OUTPUT_DIMS, spec.grid.latb.values, {"units": "degrees_north", "comment": corner,
                                                            "long_name": "cell-corner latitude"}),
        "lonb": (CORNER_OUTPUT_DIMS, spec.grid.lonb.values, {"units": "degrees_east", "comment": corner,
                                                            "long_name": "cell-corner longitude"}),
        "area_coarse": (COARSE_OUTPUT_DIMS, spec.coarse_area.values,
                        {"units": "m2", "standard_name": "cell_area", "long_name": "coarse cell area"}),
    }


def _layout(spec: OutputSpec) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], dict]]:
    """Every data variable: ``name → (dims, shard shape, inner chunk shape, attrs)``."""
    n, nc, tb, tc, sc = spec.n, spec.n_coarse, spec.time_block, spec.time_chunk_length, spec.space_chunk_length
    fine_shard, fine_chunk = (tb, N_TILES, n, n), (tc, 1, sc, sc)
    fine = ("time", *FINE_DIMS)
    layout = {PRECIPITATION: (("member", *fine), (1, *fine_shard), (1, *fine_chunk),
                              _precip_attrs("downscaled surface precipitation rate, diffusion ensemble member",
                                            "area"))}
    for name in spec.ensemble_variants:
        layout[f"{PRECIPITATION}_ensemble_{name}"] = (("member", *fine), (1, *fine_shard), (1, *fine_chunk),
                                                      _precip_attrs(f"downscaled surface precipitation rate, "
                                                                    f"diffusion ensemble member, {name}", "area"))
    for name in spec.baselines:
        layout[f"{PRECIPITATION}_{name}"] = (fine, fine_shard, fine_chunk, _precip_attrs(
            f"downscaled surface precipitation rate, {name} baseline", "area"))
    if spec.has_truth:
        layout[TRUTH] = (fine, fine_shard, fine_chunk, _precip_attrs("surface precipitation rate, truth", "area"))
    ncc = _largest_divisor(nc, MAX_SPACE_CHUNK)
    layout[COARSE] = (("time", *COARSE_OUTPUT_DIMS), (tb, N_TILES, nc, nc), (tc, 1, ncc, ncc),
                      _precip_attrs("surface precipitation rate, coarse input", "area_coarse"))
    return layout


def _skeleton(spec: OutputSpec) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The store as a dataset whose data variables are lazy NaN (never computed), and its encoding."""
    sizes = {"member": len(spec.members), "time": len(spec.times), "tile": N_TILES, "grid_yt": spec.n,
             "grid_xt": spec.n, "grid_yt_coarse": spec.n_coarse, "grid_xt_coarse": spec.n_coarse}
    variables: dict[str, tuple] = dict(_grid_variables(spec))
    encoding: dict[str, dict[str, Any]] = {}
    for name, (dims, shard, chunk, attrs) in _layout(spec).items():
        shape = tuple(sizes[d] for d in dims)
        variables[name] = (dims, dsa.full(shape, np.nan, dtype=np.float32, chunks=shard), attrs)
        encoding[name] = {"dtype": "float32", "_FillValue": np.nan, "chunks": chunk, "shards": shard}
    seed_chunk = (1, spec.time_block)
    variables[SEED] = (("member", "time"), dsa.full((sizes["member"], sizes["time"]), SEED_FILL, dtype=np.int64,
                                                    chunks=seed_chunk),
                       {"long_name": f"sampler seed of each member and frame ({SEED_FILL}: not written)"})
    encoding[SEED] = {"chunks": seed_chunk, "fill_value": SEED_FILL}
    encoding["time"] = {"calendar": spec.times[0].calendar}
    ds = xr.Dataset(variables, coords=_coords(spec), attrs=_global_attrs(spec))
    for name, v in ds.variables.items():  # static fields: one chunk per tile
        if v.ndim == 3 and v.dims[0] == "tile" and name not in encoding:
            encoding[name] = {"chunks": (1, *v.shape[1:])}
    return ds, encoding


def _global_attrs(spec: OutputSpec) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    title = (f"FV3GFS surface precipitation downscaled C{spec.n_coarse} -> C{spec.n}: diffusion ensemble of "
             f"{len(spec.members)} members and {len(spec.baselines)} baselines")
    return {"Conventions": "CF-1.10", "title": title,
            "history": f"{now}: created by fv3-downscale {__version__} (downscale.inference.store)",
            "software_version": __version__, "factor": spec.factor, **spec.attrs,
            STATUS: IN_PROGRESS, FINGERPRINT: spec.fingerprint, SERIES: spec.series_fingerprint}


# ---- state of a store on disk ------------------------------------------------------------------------------


def _root_metadata(root: Path) -> dict[str, Any] | None:
    """The root group's ``zarr.json``, or None if ``root`` holds none."""
    try:
        return json.loads((root / "zarr.json").read_text())
    except FileNotFoundError:
        return None


def _status(root: Path) -> str | None:
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
    consolidated = meta.get("consolidated_metadata") is not None
    return COMPLETE if status == COMPLETE and consolidated else IN_PROGRESS


def _fingerprint(root: Path) -> str | None:
    return (_root_metadata(root) or {}).get("attributes", {}).get(FINGERPRINT)


def matches(path: str | os.PathLike[str], spec: OutputSpec) -> bool:
    """True if ``path`` holds an output store (complete or not) laid out for ``spec``."""
    root = Path(path)
    return _status(root) is not None and _fingerprint(root) == spec.fingerprint


def _require_spec(root: Path, spec: OutputSpec) -> str:
    """The store's status; raises if there is no store or it was laid out for another spec."""
    status = _status(root)
    if status is None:
        raise FileNotFoundError(f"output store {root}: does not exist (create it with create_store)")
    found = str(_fingerprint(root))
    if found != spec.fingerprint:
        raise OutputStoreError(
            f"output store {root}: was created for a different spec (fingerprint {found[:12]}, this spec "
            f"{spec.fingerprint[:12]}: members, times, grid, baselines, blocks, chunks or attrs differ); "
            f"use the same spec to resume, or create_store(..., overwrite=True) to start again")
    return status


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + _TMP)
    tmp.write_text(json.dumps(content, sort_keys=True))
    os.replace(tmp, path)


@contextmanager
def _quiet_bookkeeping() -> Iterator[None]:
    """Silence zarr's warning that the bookkeeping folder is no array or group (it lists it with them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f"Object at {re.escape(BOOKKEEPING)} is not recognized", ZarrUserWarning)
        yield


def _plan(root: Path) -> dict[str, Any]:
    """The store's plan (``fingerprint``, ``time_ranges``, ``member_blocks``; ``grown_from`` once it grew),
    written at creation and rewritten when the store grows."""
    return json.loads((root / BOOKKEEPING / PLAN).read_text())


def _write_plan(root: Path, fingerprint: str, ranges: list[tuple[int, int]], member_blocks: int,
                grown_from: int | None = None) -> None:
    """``grown_from``: frames the store held before it grew into this plan (absent for a new store)."""
    plan = {"fingerprint": fingerprint, "time_ranges": [list(r) for r in ranges], "member_blocks": member_blocks}
    _write_json(root / BOOKKEEPING / PLAN, plan | ({"grown_from": grown_from} if grown_from is not None else {}))


def planned_items(path: str | os.PathLike[str]) -> list[WorkItem]:
    """Every work item of the store's plan, written or not, in time order."""
    plan = _plan(Path(path))
    return _items([tuple(r) for r in plan["time_ranges"]], plan["member_blocks"])


def _pending(root: Path) -> list[WorkItem]:
    """The items of the store's plan that have no marker yet."""
    done = done_items(root)
    return [i for i in planned_items(root) if i.key not in done]


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
    status = _status(root)
    if status is not None and not overwrite:
        if status == COMPLETE:
            raise FileExistsError(f"output store {root}: already complete; pass overwrite=True to replace it")
        _require_spec(root, spec)
        return
    tmp = root.with_name(root.name + _TMP)
    shutil.rmtree(tmp, ignore_errors=True)
    ds, encoding = _skeleton(spec)
    ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, compute=False, encoding=encoding)
    _write_plan(tmp, spec.fingerprint, time_ranges(0, len(spec.times), spec.time_block), spec.n_member_blocks)
    if status is not None:
        shutil.rmtree(root)
    os.replace(tmp, root)


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
    fields = {f"{PRECIPITATION}_{b}": deterministic[b] for b in spec.baselines}
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
        writes.append((f"{PRECIPITATION}_ensemble_{name}", (ms, ts),
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
    group = zarr.open_group(root, mode="r+", use_consolidated=False)
    for name, selection, data in writes:
        group[name][selection] = data
    ts, ms = item.frames, item.member_slice(spec)
    _write_json(root / BOOKKEEPING / ITEMS / f"{item.key}.json",
                {"key": item.key, "time": [ts.start, ts.stop], "member": [ms.start, ms.stop],
                 "fingerprint": spec.fingerprint, "written": datetime.now(UTC).isoformat(timespec="seconds")})


def done_items(path: str | os.PathLike[str]) -> set[str]:
    """Keys of the items whose marker exists (their data is fully written)."""
    root = Path(path)
    if _status(root) is None:
        raise FileNotFoundError(f"output store {root}: does not exist")
    return {p.stem for p in (root / BOOKKEEPING / ITEMS).glob("*.json")}


def pending_items(path: str | os.PathLike[str], spec: OutputSpec) -> list[WorkItem]:
    """The items of ``spec`` still to write into the store at ``path`` (all of them for a new store)."""
    root = Path(path)
    _require_spec(root, spec)
    return _pending(root)


def finalize_store(path: str | os.PathLike[str], spec: OutputSpec, attrs: dict[str, Any] | None = None) -> None:
    """Check every item is written, mark the store complete and consolidate its metadata (once).
    ``attrs``: global attributes that describe the finished period (e.g. ``window_joins``, which change
    when a store grows), written now. A complete store is left as it is."""
    root = Path(path)
    if _require_spec(root, spec) == COMPLETE:
        return
    missing = [i.key for i in _pending(root)]
    if missing:
        raise IncompleteStoreError(f"output store {root}: cannot finalize, {len(missing)} of "
                                   f"{len(planned_items(root))} work items not written: {_describe(missing)}")
    group = zarr.open_group(root, mode="r+", use_consolidated=False)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    final = {k: _encode_attr(k, v) for k, v in (attrs or {}).items()}
    group.attrs.update({**final, STATUS: COMPLETE, "history": f"{group.attrs['history']}\n{now}: completed"})
    with _quiet_bookkeeping():
        zarr.consolidate_metadata(str(root))


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds an output store (complete or not); raises :class:`OutputStoreError` for a
    path that holds something else."""
    return _status(Path(path)) is not None


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a finalized output store (marked complete, metadata consolidated)."""
    try:
        return _status(Path(path)) == COMPLETE
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
    status = _status(root)
    if status is None:
        raise FileNotFoundError(f"output store {root}: does not exist")
    if status == COMPLETE:
        return xr.open_zarr(root, consolidated=True, chunks=_shard_chunks(root))
    missing = [i.key for i in _pending(root)]
    if not allow_incomplete:
        raise IncompleteStoreError(f"output store {root}: in progress, {len(missing)} work items missing: "
                                   f"{_describe(missing)} (finish and finalize it, or pass allow_incomplete=True)")
    with _quiet_bookkeeping():
        return xr.open_zarr(root, consolidated=False, chunks=_shard_chunks(root))
