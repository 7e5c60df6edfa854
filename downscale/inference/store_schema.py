"""The output store's CF schema: what an output store holds and how it is laid out (variables, attributes,
coordinates, Zarr encodings), decided by one :class:`OutputSpec`.

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
    lat_bnds, lon_bnds   (tile, grid_yt, grid_xt, nv)  degrees  their CF ``bounds``: 4 vertices per cell
    area                 (tile, grid_yt, grid_xt)    m2       cell areas, the ``cell_measures`` of the fine fields
    latb, lonb           (tile, grid_y, grid_x)      degrees  FV3 cell corners, N + 1 per tile side
    lat_coarse, lon_coarse  (tile, grid_yt_coarse, grid_xt_coarse)  degrees  coarse cell centres, with
    lat_coarse_bnds, lon_coarse_bnds  (tile, grid_yt_coarse, grid_xt_coarse, nv)  their bounds
    area_coarse          (tile, grid_yt_coarse, grid_xt_coarse)  m2
    time_bnds            (time, bnds)                the interval of every frame, the ``bounds`` of ``time``

Precipitation is in kg m-2 s-1 (``standard_name: precipitation_flux``, ``cell_methods: time: mean`` —
each frame is the mean over its interval ``time_bnds``, centred on its time as FMS stamps time means).
Every data variable but the grid's own (``latb``, ``lonb``, the bounds) names its auxiliary coordinates in
``coordinates``. Coordinates: ``time`` (cftime, CF-encoded in the calendar of the inputs — Julian for FV3GFS —
in units of the first interval's start, :func:`~downscale.inference.store_bounds.time_units`), ``member``
(1..K, ``standard_name: realization``) labelled by ``member_name`` (strings, e.g. "0001"), ``tile`` 1..6,
``grid_xt``/``grid_yt`` 1..N and ``grid_x``/``grid_y`` 1..N+1 (1-based indices as FV3's, int32: CF coordinate
variables hold no fill value, and xarray's netCDF export gives every float variable one). ``latb``/``lonb`` are
FV3's corner arrays; the CF bounds (:mod:`downscale.inference.store_bounds`) are made from them, and the coarse
cells' centres and bounds from every ``factor``-th corner. The grid has no fill value. Global attributes:
``Conventions: CF-1.10``, ``title``, ``history``, the caller's provenance (JSON for lists and dicts),
``downscale_store_format`` (:data:`STORE_FORMAT`), ``downscale_status`` ("in progress" or "complete"),
``downscale_fingerprint`` (SHA-256 of the :class:`OutputSpec`) and ``downscale_series_fingerprint`` (the same
without the period's end: a store can grow, see :mod:`downscale.inference.growth`).

Layout on disk: each shard holds one member × ``time_block`` frames × 6 tiles × whole tiles, made of
inner chunks of ``(1, time_chunk, 1, space_chunk, space_chunk)``, so a map at one time and a time
series at one point both read few, small chunks. :func:`skeleton` is the store as a lazy dataset
and its encoding; :mod:`downscale.inference.store` writes it, :mod:`downscale.inference.store_plan`
cuts it into work items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import cftime
import dask.array as dsa
import numpy as np
import xarray as xr

from data_catalog.schema import (CORNER_DIMS, N_TILES, PRECIPITATION, PRECIPITATION_STANDARD_NAME,
                                 PRECIPITATION_UNITS, STATIC_DIMS)
from downscale.inference.store_bounds import cell_vertices, coarse_cells, time_bounds, time_units
from downscale.output_names import COARSE, COARSE_DIMS, FINE_CORNER_DIMS, FINE_DIMS, TRUTH
from downscale.version import __version__

SEED = "seed"
VERTEX_DIM, TIME_BOUNDS_DIM, TIME_BOUNDS = "nv", "bnds", "time_bnds"
#: Dims :attr:`OutputSpec.coarse_area` may come on (the prepared dataset's, or the internal form's).
COARSE_INPUT_DIMS = (("tile", "yc", "xc"), STATIC_DIMS)
STATUS, FINGERPRINT, SERIES = "downscale_status", "downscale_fingerprint", "downscale_series_fingerprint"
IN_PROGRESS, COMPLETE = "in progress", "complete"
#: On-disk layout of the store, in the attribute :data:`FORMAT`; bumped with a CHANGELOG.md entry when the
#: layout changes. Stores written before the attribute existed (no CF bounds) are read as format 1; they cannot grow.
STORE_FORMAT, FORMAT = 1, "downscale_store_format"
RESERVED_ATTRS = frozenset({"Conventions", "history", "factor", STATUS, FINGERPRINT, SERIES, FORMAT})
MAX_SPACE_CHUNK, MAX_TIME_CHUNK = 96, 8
SEED_FILL = -1


def ensemble_variant_variable(variant: str) -> str:
    """The store variable of the ensemble variant ``variant`` (``raw`` → ``PRATEsfc_ensemble_raw``)."""
    return f"{PRECIPITATION}_ensemble_{variant}"


def baseline_variable(baseline: str) -> str:
    """The store variable of the deterministic baseline ``baseline`` (``bilinear`` → ``PRATEsfc_bilinear``)."""
    return f"{PRECIPITATION}_{baseline}"


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def encode_attr(key: str, value: Any) -> str | int | float:
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
    settings, seeds, inputs, …), written as global attributes — dicts and lists as JSON;
    ``frame_seconds``: the interval each frame is the mean of, in s (default: the step of ``times``, which
    it must equal to within 1 s; required for a single time).
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
    frame_seconds: float | None = None

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
        self._check_frame_seconds()
        _check_grid(self.grid)
        object.__setattr__(self, "coarse_area", self._checked_coarse_area())
        self._check_chunks()
        for key in self.attrs:
            if not isinstance(key, str) or key in RESERVED_ATTRS:
                raise ValueError(f"attrs: {key!r} is reserved or not a string (reserved: {sorted(RESERVED_ATTRS)})")
        object.__setattr__(self, "attrs", {k: encode_attr(k, v) for k, v in self.attrs.items()})

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

    def _check_frame_seconds(self) -> None:
        given, t = self.frame_seconds, self.times
        step = (t[1] - t[0]).total_seconds() if len(t) > 1 else None
        if given is None and step is None:
            raise ValueError("frame_seconds is required for a single time (the interval the frame is the mean of)")
        if given is not None and not (np.isfinite(given) and given > 0 and (step is None or abs(given - step) < 1.0)):
            raise ValueError(f"frame_seconds must be a positive number of seconds equal to the step of times "
                             f"({step} s), got {given!r}")

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
    def frame_interval(self) -> timedelta:
        """The interval each frame is the mean of, centred on its time."""
        if self.frame_seconds is not None:
            return timedelta(seconds=self.frame_seconds)
        return self.times[1] - self.times[0]

    @cached_property
    def time_bounds(self) -> np.ndarray:
        """``(T, 2)`` cftime: the interval of every frame (the store's ``time_bnds``)."""
        return time_bounds(self.times, self.frame_interval)

    @property
    def n_member_blocks(self) -> int:
        return -(-len(self.members) // self.member_block)

    @cached_property
    def series_fingerprint(self) -> str:
        """SHA-256 of everything that decides the store's layout and contents (grid values included) except
        how far its time axis reaches: the first time and the step count, the last time does not. A store
        may grow into a spec of the same series (:mod:`downscale.inference.growth`)."""
        h = hashlib.sha256()
        h.update(json.dumps({
            "members": self.members, "first_time": self.times[0].isoformat(),
            "frame_seconds": self.frame_interval.total_seconds(),
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


# ---- the skeleton: metadata, grid and coordinates --------------------------------------------------------


#: The auxiliary coordinates of the fields on the fine and on the coarse grid, and of the member dim.
FINE_COORDS, COARSE_COORDS, MEMBER_COORDS = "lat lon", "lat_coarse lon_coarse", "member_name"


def _precip_attrs(long_name: str, area: str, coordinates: str) -> dict[str, str]:
    return {"units": PRECIPITATION_UNITS, "standard_name": PRECIPITATION_STANDARD_NAME, "long_name": long_name,
            "cell_methods": "time: mean", "cell_measures": f"area: {area}", "coordinates": coordinates}


def _index(dim: str, n: int, long_name: str) -> tuple[str, np.ndarray, dict[str, str]]:
    return (dim, np.arange(1, n + 1, dtype=np.int32), {"long_name": long_name})


def _lat_lon(dims: tuple[str, ...], lat: np.ndarray, lon: np.ndarray, suffix: str, what: str) -> dict[str, tuple]:
    """Cell-centre ``lat{suffix}``, ``lon{suffix}`` with CF ``bounds`` ``lat{suffix}_bnds``, ``lon{suffix}_bnds``."""
    return {f"lat{suffix}": (dims, lat, {"units": "degrees_north", "standard_name": "latitude",
                                         "long_name": f"{what} latitude", "bounds": f"lat{suffix}_bnds"}),
            f"lon{suffix}": (dims, lon, {"units": "degrees_east", "standard_name": "longitude",
                                         "long_name": f"{what} longitude", "bounds": f"lon{suffix}_bnds"})}


def _coords(spec: OutputSpec, coarse: dict[str, np.ndarray]) -> dict[str, Any]:
    n, nc = spec.n, spec.n_coarse
    grid = spec.grid
    return {
        "member": ("member", np.arange(1, len(spec.members) + 1, dtype=np.int32),
                   {"standard_name": "realization", "units": "1", "long_name": "ensemble member number"}),
        "member_name": ("member", np.array(spec.members, dtype=object), {"long_name": "ensemble member"}),
        "time": ("time", spec.times, {"long_name": "time", "standard_name": "time", "axis": "T",
                                      "bounds": TIME_BOUNDS}),
        "tile": ("tile", np.arange(1, N_TILES + 1), {"long_name": "cube-sphere tile (FV3 numbering)"}),
        "grid_yt": _index("grid_yt", n, "T-cell index along tile y (1-based, as FV3)"),
        "grid_xt": _index("grid_xt", n, "T-cell index along tile x (1-based, as FV3)"),
        "grid_y": _index("grid_y", n + 1, "cell-corner index along tile y (1-based, as FV3)"),
        "grid_x": _index("grid_x", n + 1, "cell-corner index along tile x (1-based, as FV3)"),
        "grid_yt_coarse": _index("grid_yt_coarse", nc, "coarse T-cell index along tile y (1-based, as FV3)"),
        "grid_xt_coarse": _index("grid_xt_coarse", nc, "coarse T-cell index along tile x (1-based, as FV3)"),
        **_lat_lon(FINE_DIMS, grid.lat.values, grid.lon.values, "", "cell-centre"),
        **_lat_lon(COARSE_DIMS, coarse["lat"], coarse["lon"], "_coarse", "coarse cell-centre"),
    }


def _grid_variables(spec: OutputSpec, coarse: dict[str, np.ndarray]) -> dict[str, tuple]:
    corner = "FV3 cell-corner array (N+1 per tile side); corners (j, i) and (j+1, i+1) bound cell (j, i)"
    fine_vertices, coarse_vertices = (*FINE_DIMS, VERTEX_DIM), (*COARSE_DIMS, VERTEX_DIM)
    return {
        "area": (FINE_DIMS, spec.grid.area.values, {"units": "m2", "standard_name": "cell_area",
                                                    "long_name": "cell area", "coordinates": FINE_COORDS}),
        "latb": (FINE_CORNER_DIMS, spec.grid.latb.values, {"units": "degrees_north", "standard_name": "latitude",
                                                          "comment": corner, "long_name": "cell-corner latitude"}),
        "lonb": (FINE_CORNER_DIMS, spec.grid.lonb.values, {"units": "degrees_east", "standard_name": "longitude",
                                                          "comment": corner, "long_name": "cell-corner longitude"}),
        "lat_bnds": (fine_vertices, cell_vertices(spec.grid.latb.values), {}),
        "lon_bnds": (fine_vertices, cell_vertices(spec.grid.lonb.values), {}),
        "area_coarse": (COARSE_DIMS, spec.coarse_area.values,
                        {"units": "m2", "standard_name": "cell_area", "long_name": "coarse cell area",
                         "coordinates": COARSE_COORDS}),
        "lat_coarse_bnds": (coarse_vertices, coarse["lat_vertices"], {}),
        "lon_coarse_bnds": (coarse_vertices, coarse["lon_vertices"], {}),
        TIME_BOUNDS: (("time", TIME_BOUNDS_DIM), spec.time_bounds, {}),
    }


def _layout(spec: OutputSpec) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], dict]]:
    """Every data variable: ``name → (dims, shard shape, inner chunk shape, attrs)``."""
    n, nc, tb, tc, sc = spec.n, spec.n_coarse, spec.time_block, spec.time_chunk_length, spec.space_chunk_length
    fine_shard, fine_chunk = (tb, N_TILES, n, n), (tc, 1, sc, sc)
    fine = ("time", *FINE_DIMS)
    layout = {PRECIPITATION: (("member", *fine), (1, *fine_shard), (1, *fine_chunk),
                              _precip_attrs("downscaled surface precipitation rate, diffusion ensemble member",
                                            "area", f"{MEMBER_COORDS} {FINE_COORDS}"))}
    for name in spec.ensemble_variants:
        layout[ensemble_variant_variable(name)] = (("member", *fine), (1, *fine_shard), (1, *fine_chunk),
                                                   _precip_attrs(f"downscaled surface precipitation rate, "
                                                                 f"diffusion ensemble member, {name}", "area",
                                                                 f"{MEMBER_COORDS} {FINE_COORDS}"))
    for name in spec.baselines:
        layout[baseline_variable(name)] = (fine, fine_shard, fine_chunk, _precip_attrs(
            f"downscaled surface precipitation rate, {name} baseline", "area", FINE_COORDS))
    if spec.has_truth:
        layout[TRUTH] = (fine, fine_shard, fine_chunk, _precip_attrs("surface precipitation rate, truth", "area",
                                                                           FINE_COORDS))
    ncc = _largest_divisor(nc, MAX_SPACE_CHUNK)
    layout[COARSE] = (("time", *COARSE_DIMS), (tb, N_TILES, nc, nc), (tc, 1, ncc, ncc),
                      _precip_attrs("surface precipitation rate, coarse input", "area_coarse", COARSE_COORDS))
    return layout


def skeleton(spec: OutputSpec) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The store as a dataset whose data variables are lazy NaN (never computed), and its encoding."""
    sizes = {"member": len(spec.members), "time": len(spec.times), "tile": N_TILES, "grid_yt": spec.n,
             "grid_xt": spec.n, "grid_yt_coarse": spec.n_coarse, "grid_xt_coarse": spec.n_coarse}
    coarse = coarse_cells(spec.grid.latb.values, spec.grid.lonb.values, spec.factor)
    variables: dict[str, tuple] = dict(_grid_variables(spec, coarse))
    encoding: dict[str, dict[str, Any]] = {}
    for name, (dims, shard, chunk, attrs) in _layout(spec).items():
        shape = tuple(sizes[d] for d in dims)
        variables[name] = (dims, dsa.full(shape, np.nan, dtype=np.float32, chunks=shard), attrs)
        encoding[name] = {"dtype": "float32", "_FillValue": np.nan, "chunks": chunk, "shards": shard}
    seed_chunk = (1, spec.time_block)
    variables[SEED] = (("member", "time"), dsa.full((sizes["member"], sizes["time"]), SEED_FILL, dtype=np.int64,
                                                    chunks=seed_chunk),
                       {"long_name": f"sampler seed of each member and frame ({SEED_FILL}: not written)",
                        "coordinates": MEMBER_COORDS})
    encoding[SEED] = {"chunks": seed_chunk, "fill_value": SEED_FILL}
    time = {"units": time_units(spec.times, spec.time_bounds), "calendar": spec.times[0].calendar, "dtype": "int64"}
    # chunks that the shard-sized dask chunks of open_output do not cut: one member, one time block
    encoding["time"], encoding[TIME_BOUNDS] = time, {**time, "chunks": (spec.time_block, 2)}
    encoding["member_name"] = {"chunks": (1,)}
    ds = xr.Dataset(variables, coords=_coords(spec, coarse), attrs=_global_attrs(spec))
    for name, v in ds.variables.items():  # the grid: no fill value (CF: none in coordinates), one chunk per tile
        if name not in encoding and v.dtype.kind == "f":
            encoding[name] = {"_FillValue": None, **({"chunks": (1, *v.shape[1:])} if v.dims[0] == "tile" else {})}
        if str(name).endswith("_bnds"):  # a bounds variable has its coordinate's metadata, no coordinates of its own
            v.encoding["coordinates"] = None
    return ds, encoding


def _global_attrs(spec: OutputSpec) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    title = (f"FV3GFS surface precipitation downscaled C{spec.n_coarse} -> C{spec.n}: diffusion ensemble of "
             f"{len(spec.members)} members and {len(spec.baselines)} baselines")
    return {"Conventions": "CF-1.10", "title": title,
            "history": f"{now}: created by fv3-downscale {__version__} (downscale.inference.store_schema)",
            "software_version": __version__, "factor": spec.factor, **spec.attrs,
            STATUS: IN_PROGRESS, FINGERPRINT: spec.fingerprint, SERIES: spec.series_fingerprint,
            FORMAT: STORE_FORMAT}

