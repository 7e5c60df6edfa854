"""Prepare a training dataset from a catalog: validated Zarr stores, splits and statistics, in one folder.

Layout of ``out_dir`` (see ``docs/data-pipeline.md``)::

    members/{name}.zarr   per member: fine target  PRATEsfc (time, tile, y, x)        [if the member has it]
                          and coarse predictors      X_coarse (time, tile, yc, xc), float32, kg m-2 s-1 / SI;
                          time in float64 "seconds since <reference>" (manifest ``time_units``);
                          chunks of ``chunk_frames`` (default T) frames × all tiles × whole tiles, so a
                          clip reads one or two chunks per variable (optionally Zarr v3 shards of
                          ``shard_frames`` frames, e.g. one-frame chunks in shards for very large tiles).
    static.zarr           fine zsurf, lat, lon, area, centre_x/y/z (unit vector of each cell centre),
                          coarse area_coarse (tile, yc, xc)
    splits.json           clips (member, start) of each split (data_catalog.splits)
    stats.json            normalization statistics of the training split (data_catalog.normalization)
    manifest.json         written LAST: config, catalog, members, store display names, variables,
                          resolutions, factor, time step, counts, software version, content fingerprint

A dataset is **complete** when ``manifest.json`` exists and agrees with the files (``is_complete``).
Stores and JSON files are written under temporary names and renamed, so a crash leaves no manifest
and the next ``prepare_dataset`` redoes the work; a complete dataset is never overwritten unless
``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import xarray as xr
import zarr
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_catalog.catalog import Catalog
from data_catalog.cubesphere import checked_cell_area, lat_lon_to_unit_vectors
from data_catalog.errors import DataError
from data_catalog.member_reader import MemberData, open_grid, open_member, open_topography
from data_catalog.normalization import PRECIPITATION_EPSILON, NormalizationStats, compute_stats
from data_catalog.schema import N_TILES, TIME
from data_catalog.store_reader import is_precipitation
from data_catalog.splits import SplitConfig, Splits, make_splits
from data_catalog.validation import time_step_seconds
from data_catalog.zarr_metadata import consolidated_v3

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST, STATS, SPLITS_FILE, STATIC = "manifest.json", "stats.json", "splits.json", "static.zarr"
MEMBERS = "members"
COARSE_DIMS = {"y": "yc", "x": "xc"}
GEOMETRY_FEATURES = ("centre_x", "centre_y", "centre_z")
_TMP = ".tmp"


class PreparedDatasetError(ValueError):
    """A prepared dataset that is missing, incomplete or inconsistent; names the folder and the problem."""


class PrepareConfig(BaseModel):
    """Settings of :func:`prepare_dataset` (recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_frames: int = Field(5, ge=1, description="frames T per clip")
    time_step_hours: float = Field(3.0, gt=0, description="expected time step; checked against every member")
    splits: SplitConfig = SplitConfig()
    precipitation_epsilon: float = Field(PRECIPITATION_EPSILON, gt=0,
                                         description="log-transform offset ε in kg m-2 s-1 (1 mm/day)")
    chunk_frames: int | None = Field(None, ge=1, description="frames per Zarr chunk; default clip_frames")
    shard_frames: int | None = Field(None, ge=1, description="frames per Zarr v3 shard; default none (no shards)")
    members: tuple[str, ...] | None = Field(None, description="members to prepare; default all of the catalog")

    @model_validator(mode="after")
    def _check(self) -> "PrepareConfig":
        if self.shard_frames is not None and self.shard_frames % self.chunk_length:
            raise ValueError(f"shard_frames ({self.shard_frames}) must be a multiple of chunk_frames "
                             f"({self.chunk_length})")
        if self.members is not None and not self.members:
            raise ValueError("members is an empty list: give none (all members) or some")
        return self

    @property
    def chunk_length(self) -> int:
        """Frames per Zarr chunk (``chunk_frames``, default ``clip_frames``)."""
        return self.chunk_frames or self.clip_frames

    @property
    def write_length(self) -> int:
        """Frames per shard, or per chunk without shards: the unit written (and read by dask) at once."""
        return self.shard_frames or self.chunk_length


class MemberEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    has_target: bool
    n_times: int
    first_time: str
    last_time: str
    stores: tuple[str, ...]
    derived_predictors: tuple[str, ...] = ()
    clipped_negatives: int = 0


class Manifest(BaseModel):
    """What a prepared dataset holds; its presence (and agreement with the files) marks it complete."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    software_version: str
    created: str
    catalog_name: str
    config: PrepareConfig
    members: tuple[MemberEntry, ...]
    target: str
    predictors: tuple[str, ...]
    precipitation_variables: tuple[str, ...]
    static_features: tuple[str, ...]
    coarse_resolution: int
    fine_resolution: int
    factor: int
    time_step_seconds: float
    time_units: str
    calendar: str
    counts: dict[str, int]
    files: dict[str, str] = Field(description="SHA-256 of the JSON files")
    fingerprint: str = Field(description="SHA-256 over every file of the dataset except the manifest")


def _software_version() -> str:
    try:
        return version("fv3-downscale")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def content_fingerprint(root: Path) -> str:
    """SHA-256 over the relative path and SHA-256 of every file the prepare wrote (not the manifest)."""
    h = hashlib.sha256()
    ours = [root / STATS, root / SPLITS_FILE] + [p for d in (MEMBERS, STATIC) for p in (root / d).rglob("*")]
    for path in sorted(p for p in ours if p.is_file() and _TMP not in p.relative_to(root).as_posix()):
        h.update(f"{path.relative_to(root).as_posix()}\0{_sha256(path)}\n".encode())
    return h.hexdigest()


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + _TMP)
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_zarr(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]]) -> None:
    """Write ``ds`` to ``path`` via a temporary store and a rename (a crash never leaves a half store there)."""
    tmp = path.with_name(path.name + _TMP)
    shutil.rmtree(tmp, ignore_errors=True)
    with consolidated_v3():
        ds.to_zarr(tmp, zarr_format=3, mode="w", consolidated=True, encoding=encoding)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _remove_prepared(root: Path) -> None:
    """Delete what a prepare writes (manifest first), nothing else in ``root``."""
    (root / MANIFEST).unlink(missing_ok=True)
    for name in (STATS, SPLITS_FILE, MANIFEST + _TMP, STATS + _TMP, SPLITS_FILE + _TMP):
        (root / name).unlink(missing_ok=True)
    for name in (MEMBERS, STATIC, STATIC + _TMP):
        shutil.rmtree(root / name, ignore_errors=True)


def _time_reference(members: list[MemberData]) -> tuple[str, str]:
    """``seconds since <day of the earliest time>`` and the calendar shared by every member."""
    firsts = [m.coarse.indexes[TIME][0] for m in members if m.coarse.sizes[TIME]]
    calendars = {t.calendar for t in firsts}
    if len(calendars) > 1:
        raise DataError(", ".join(m.name for m in members), f"members use different calendars {sorted(calendars)}",
                        TIME)
    first = min(firsts)
    return f"seconds since {first.year:04d}-{first.month:02d}-{first.day:02d} 00:00:00", first.calendar


def _check_time_step(data: MemberData, config: PrepareConfig) -> None:
    store = ", ".join(data.stores)
    step = time_step_seconds(data.coarse, store)
    if np.isfinite(step) and step != config.time_step_hours * 3600.0:
        raise DataError(store, f"time step is {step / 3600:g} h but the prepare config expects "
                        f"{config.time_step_hours:g} h (time_step_hours)", TIME)


def _member_store(data: MemberData, catalog: Catalog, config: PrepareConfig, units: str, calendar: str,
                  path: Path) -> None:
    fields = {} if data.fine is None else {catalog.precipitation: data.fine[catalog.precipitation]}
    fields.update({p: data.coarse[p].rename(COARSE_DIMS) for p in catalog.predictors})
    ds = xr.Dataset(fields)
    ds.attrs = {"member": data.name, "source_stores": list(data.stores)}
    for var in ds.variables.values():
        var.encoding = {}
    shard = min(config.write_length, max(ds.sizes[TIME], 1))
    chunk = min(config.chunk_length, shard)
    ds = ds.chunk({d: (shard if d == TIME else -1) for d in ds.dims})
    encoding: dict[str, dict[str, Any]] = {TIME: {"units": units, "calendar": calendar, "dtype": "float64"}}
    for name, da in ds.data_vars.items():
        spatial = tuple(da.shape[1:])
        encoding[str(name)] = {"chunks": (chunk, *spatial)}
        if shard != chunk:
            encoding[str(name)]["shards"] = (shard, *spatial)
    _write_zarr(ds, path, encoding)


def _static_store(catalog: Catalog, path: Path) -> tuple[str, ...]:
    fine, coarse = open_grid(catalog, "fine"), open_grid(catalog, "coarse")
    xyz = lat_lon_to_unit_vectors(fine["lat"].values, fine["lon"].values).astype(np.float32)
    ds = xr.Dataset({k: fine[k] for k in ("lat", "lon", "area")})
    ds["area_coarse"] = coarse["area"].rename(COARSE_DIMS)
    features: list[str] = []
    if catalog.static is not None:
        ds[catalog.topography] = open_topography(catalog).astype(np.float32)
        features.append(catalog.topography)
    else:
        log.warning("catalog '%s' has no static store: no %s among the static features", catalog.name,
                    catalog.topography)
    for k, name in enumerate(GEOMETRY_FEATURES):
        ds[name] = (("tile", "y", "x"), xyz[..., k],
                    {"long_name": f"{'xyz'[k]} component of the cell-centre unit vector", "units": "1"})
        features.append(name)
    for var in ds.variables.values():
        var.encoding = {}
    _write_zarr(ds, path, {})
    return tuple(features)


def prepare_dataset(catalog: Catalog, out_dir: str | Path, config: PrepareConfig | None = None,
                    overwrite: bool = False) -> "PreparedDataset":
    """Write the prepared dataset of ``catalog`` into ``out_dir`` (module docstring) and open it.

    Every member is opened with ``open_member(check=True)`` (standardized, validated, tiny negative
    precipitation clipped; missing predictors coarse-grained from the fine data). Statistics come from
    the training split only, computed out-of-core with dask from the written stores.

    Raises:
        FileExistsError: ``out_dir`` holds a complete prepared dataset and ``overwrite`` is False.
        DataError: bad input (names store, variable and problem), e.g. a time step other than
            ``config.time_step_hours``.
    """
    config = config or PrepareConfig()
    root = Path(out_dir)
    if PreparedDataset.is_complete(root):
        if not overwrite:
            raise FileExistsError(f"{root} already holds a complete prepared dataset; pass overwrite=True to redo it")
        log.info("overwriting the prepared dataset in %s", root)
        _remove_prepared(root)
    elif root.exists() and any((root / n).exists() for n in (MEMBERS, STATIC, STATS, SPLITS_FILE, MANIFEST)):
        log.warning("%s holds an incomplete prepared dataset (no valid manifest): redoing it", root)
        _remove_prepared(root)
    (root / MEMBERS).mkdir(parents=True, exist_ok=True)

    names = list(config.members or catalog.members)
    for name in names:
        catalog.member(name)  # a clear error for an unknown member
    members = [open_member(catalog, name, check=True) for name in names]
    for data in members:
        _check_time_step(data, config)
    units, calendar = _time_reference(members)
    seconds = {m.name: np.asarray(cftime.date2num(list(m.coarse.indexes[TIME]), units, calendar), np.float64)
               for m in members}
    for data in members:
        log.info("writing member %s (%d times)", data.name, data.coarse.sizes[TIME])
        _member_store(data, catalog, config, units, calendar, root / MEMBERS / f"{data.name}.zarr")
    static_features = _static_store(catalog, root / STATIC)

    step = config.time_step_hours * 3600.0
    splits = make_splits(seconds, {m.name: m.fine is not None for m in members}, config.clip_frames, step,
                         config.splits)
    _write_text(root / SPLITS_FILE, splits.to_json())

    precipitation = tuple([catalog.precipitation] + [p for p in catalog.predictors
                                                     if is_precipitation(p, members[0].coarse[p].attrs)])
    stats = _training_stats(root, splits, catalog, precipitation, static_features, config)
    _write_text(root / STATS, stats.to_json())

    manifest = Manifest(
        software_version=_software_version(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        catalog_name=catalog.name, config=config,
        members=tuple(MemberEntry(
            name=m.name, has_target=m.fine is not None, n_times=int(m.coarse.sizes[TIME]),
            first_time=str(m.coarse.indexes[TIME][0]), last_time=str(m.coarse.indexes[TIME][-1]),
            stores=m.stores, derived_predictors=m.derived, clipped_negatives=sum(m.clipped_negatives.values()),
        ) for m in members),
        target=catalog.precipitation, predictors=catalog.predictors, precipitation_variables=precipitation,
        static_features=static_features, coarse_resolution=catalog.resolution.coarse,
        fine_resolution=catalog.resolution.fine, factor=catalog.resolution.factor, time_step_seconds=step,
        time_units=units, calendar=calendar, counts=splits.counts(),
        files={n: _sha256(root / n) for n in (SPLITS_FILE, STATS)},
        fingerprint=content_fingerprint(root),
    )
    _write_text(root / MANIFEST, manifest.model_dump_json(indent=2))
    log.info("prepared dataset %s complete: %s clips, fingerprint %s", root, splits.counts(), manifest.fingerprint[:12])
    return PreparedDataset.open(root)


def _training_stats(root: Path, splits: Splits, catalog: Catalog, precipitation: tuple[str, ...],
                    static_features: tuple[str, ...], config: PrepareConfig) -> NormalizationStats:
    """Statistics over the frames of training clips only, read lazily back from the written stores."""
    fields: dict[str, list[xr.DataArray]] = {v: [] for v in (catalog.precipitation, *catalog.predictors)}
    for member, frames in splits.training_frames().items():
        ds = xr.open_zarr(root / MEMBERS / f"{member}.zarr", chunks={TIME: 4 * config.write_length},
                          decode_times=False)
        for name, pieces in fields.items():
            pieces.append(ds[name].isel({TIME: frames}))
    static = xr.open_zarr(root / STATIC)
    topography = {f: static[f] for f in static_features if f not in GEOMETRY_FEATURES}
    return compute_stats(fields, precipitation, config.precipitation_epsilon, static=topography,
                         identity=[f for f in static_features if f in GEOMETRY_FEATURES])


class PreparedDataset:
    """A complete prepared dataset, opened lazily; its manifest checked against the files."""

    def __init__(self, path: Path, manifest: Manifest, stats: NormalizationStats, splits: Splits):
        self.path, self.manifest, self.stats, self.splits = path, manifest, stats, splits

    def __repr__(self) -> str:
        return (f"PreparedDataset({str(self.path)!r}, members={len(self.manifest.members)}, "
                f"clips={self.manifest.counts}, fingerprint={self.manifest.fingerprint[:12]})")

    @classmethod
    def open(cls, path: str | Path) -> "PreparedDataset":
        """Read the manifest, statistics and splits; check that the files agree. Loads no array data."""
        root = Path(path)
        where = f"prepared dataset {root}"
        if not (root / MANIFEST).is_file():
            raise PreparedDatasetError(f"{where}: no {MANIFEST} (not prepared, or prepare did not finish)")
        try:
            manifest = Manifest.model_validate_json((root / MANIFEST).read_text())
        except (ValidationError, ValueError) as err:
            raise PreparedDatasetError(f"{where}: {MANIFEST} is not a valid manifest ({err})") from None
        if manifest.format != FORMAT:
            raise PreparedDatasetError(f"{where}: format {manifest.format}, this software reads format {FORMAT}")
        for name, digest in manifest.files.items():
            if not (root / name).is_file():
                raise PreparedDatasetError(f"{where}: {name} is missing")
            if _sha256(root / name) != digest:
                raise PreparedDatasetError(f"{where}: {name} was changed after the manifest was written")
        dataset = cls(root, manifest, NormalizationStats.from_json((root / STATS).read_text()),
                      Splits.from_json((root / SPLITS_FILE).read_text()))
        dataset._check_stores()
        return dataset

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        """Whether ``path`` holds a complete, consistent prepared dataset (flows use it to skip work)."""
        try:
            PreparedDataset.open(path)
        except PreparedDatasetError as err:
            if Path(path, MANIFEST).exists():
                log.warning("%s", err)
            return False
        return True

    def _check_stores(self) -> None:
        m, where = self.manifest, f"prepared dataset {self.path}"
        nf, nc = m.fine_resolution, m.coarse_resolution
        for entry in m.members:
            path = self.member_path(entry.name)
            try:
                group = zarr.open_group(path, mode="r")
            except Exception as err:  # noqa: BLE001 - any zarr failure means the store is not there
                raise PreparedDatasetError(f"{where}: member store {path.name} cannot be opened ({err})") from None
            expected = {p: (entry.n_times, N_TILES, nc, nc) for p in m.predictors}
            if entry.has_target:
                expected[m.target] = (entry.n_times, N_TILES, nf, nf)
            for name, shape in expected.items():
                if name not in group or tuple(group[name].shape) != shape:
                    have = tuple(group[name].shape) if name in group else "missing"
                    raise PreparedDatasetError(f"{where}: {path.name}/{name} is {have}, expected {shape}")
        if not (self.path / STATIC / "zarr.json").is_file():
            raise PreparedDatasetError(f"{where}: {STATIC} is missing")

    def verify(self) -> None:
        """Recompute the content fingerprint (reads every byte) and compare it with the manifest's."""
        found = content_fingerprint(self.path)
        if found != self.manifest.fingerprint:
            raise PreparedDatasetError(f"prepared dataset {self.path}: content fingerprint {found[:12]} differs "
                                       f"from the manifest's {self.manifest.fingerprint[:12]} (files changed)")

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.manifest.members)

    def member_path(self, name: str) -> Path:
        return self.path / MEMBERS / f"{name}.zarr"

    @property
    def static_path(self) -> Path:
        return self.path / STATIC

    def open_member(self, name: str) -> xr.Dataset:
        """The member's store, lazily (dask), times decoded to cftime."""
        if name not in self.member_names:
            raise KeyError(f"no member '{name}' in {self} (members: {', '.join(self.member_names)})")
        return xr.open_zarr(self.member_path(name), chunks={TIME: 4 * self.manifest.config.write_length},
                            decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))

    def open_static(self) -> xr.Dataset:
        return xr.open_zarr(self.static_path)

    def fine_area(self) -> xr.DataArray:
        """The fine cells' areas ``(tile, y, x)`` in m², float64, loaded; the one reader of them that training,
        the quantile tables and the baselines share. Raises :class:`PreparedDatasetError` if a value is not
        finite and positive."""
        return checked_cell_area(self.open_static()["area"], f"prepared dataset {self.path}: {STATIC}/area",
                                 PreparedDatasetError)
