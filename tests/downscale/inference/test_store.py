"""The output store on a tiny real grid (C4 fine, C2 coarse, 3 members, 24 three-hourly Julian frames):
round trip, CF attributes, shards, concurrent writers, resume after a kill, no overwrite, one consolidation,
file-system faults as one line, item claims and the swap of a replacement."""

from __future__ import annotations

import errno
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import cf_xarray  # noqa: F401 - registers the .cf accessor
import cftime
import numpy as np
import pytest
import xarray as xr
import zarr
from dask.distributed import Client
from storage_faults import fail_writes

from data_catalog.cubesphere import cube_sphere_grid
from downscale.diagnostics.sources import gather_sources
from downscale.evaluation.evaluate import open_output_store
from downscale.inference import store
from downscale.inference.store import (IncompleteStoreError, OutputStoreError, create_store, done_items,
                                       finalize_store, is_complete, open_output, pending_items, write_item)
from downscale.inference.store_faults import StoreIOError
from downscale.inference.store_locks import CLAIMS, Claim, claim_item, lock_path, store_lock
from downscale.inference.store_plan import BOOKKEEPING, ITEMS, WorkItem, plan_items
from downscale.inference.store_swap import recover_swap, staging_path, swap_in
from downscale.inference.store_schema import OutputSpec

N, NC, MEMBERS, FRAMES = 4, 2, ("0001", "0002", "0003"), 24
TIMES = np.array([cftime.DatetimeJulian(2016, 7, 1) + timedelta(hours=3 * i) for i in range(FRAMES)])
BASELINES = ("bilinear", "deterministic", "qm")


def make_spec(**changes) -> OutputSpec:
    coarse_area = cube_sphere_grid(NC).area.rename(y="yc", x="xc")
    settings = dict(members=MEMBERS, times=TIMES, grid=cube_sphere_grid(N), coarse_area=coarse_area, factor=2,
                    baselines=BASELINES, has_truth=True, time_block=8, member_block=2, time_chunk=4, space_chunk=2,
                    attrs={"bundle_id": "bundle-abc", "nfe": 35, "base_seed": 1234, "sigma_max": 80.0,
                           "sampler": {"name": "heun", "steps": 18}, "inputs": ["c48.zarr"]})
    return OutputSpec(**(settings | changes))


# Known data: every value tells where it belongs.
rng = np.random.default_rng(0)
ENSEMBLE = rng.gamma(0.5, 1e-4, (len(MEMBERS), FRAMES, 6, N, N)).astype(np.float32)
FIELDS = {name: rng.gamma(0.5, 1e-4, (FRAMES, 6, N, N)).astype(np.float32) for name in (*BASELINES, "truth")}
COARSE = rng.gamma(0.5, 1e-4, (FRAMES, 6, NC, NC)).astype(np.float32)
SEEDS = np.arange(len(MEMBERS) * FRAMES, dtype=np.int64).reshape(len(MEMBERS), FRAMES) + 2**40


def write_known(path: Path, spec: OutputSpec, item: WorkItem) -> None:
    """Write ``item`` with its slices of the known data."""
    ts, ms = item.frames, item.member_slice(spec)
    extra = {}
    if item.member_block == 0:
        extra = dict(deterministic={b: FIELDS[b][ts] for b in spec.baselines},
                     truth=FIELDS["truth"][ts] if spec.has_truth else None, coarse=COARSE[ts])
    write_item(path, spec, item, ENSEMBLE[ms, ts], SEEDS[ms, ts], **extra)


def write_all(path: Path, spec: OutputSpec) -> None:
    create_store(path, spec)
    for item in pending_items(path, spec):
        write_known(path, spec, item)
    finalize_store(path, spec)


def data_files(path: Path) -> dict[str, bytes]:
    """Every file of the store but the root metadata (its history has times) and the bookkeeping."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.relative_to(path).parts[0] != BOOKKEEPING and p != path / "zarr.json"}


@pytest.fixture(scope="module")
def spec() -> OutputSpec:
    return make_spec()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spec) -> Path:
    """A store written serially, item by item."""
    path = tmp_path_factory.mktemp("reference") / "outputs.zarr"
    write_all(path, spec)
    return path


def test_round_trip(reference, spec):
    ds = xr.open_zarr(reference).load()
    assert ds.PRATEsfc.dims == ("member", "time", "tile", "grid_yt", "grid_xt")
    assert ds.PRATEsfc.dtype == np.float32
    np.testing.assert_array_equal(ds.PRATEsfc.values, ENSEMBLE)
    for name in (*BASELINES, "truth"):
        assert ds[f"PRATEsfc_{name}"].dims == ("time", "tile", "grid_yt", "grid_xt")
        np.testing.assert_array_equal(ds[f"PRATEsfc_{name}"].values, FIELDS[name])
    assert ds.PRATEsfc_coarse.dims == ("time", "tile", "grid_yt_coarse", "grid_xt_coarse")
    np.testing.assert_array_equal(ds.PRATEsfc_coarse.values, COARSE)
    assert ds.seed.dtype == np.int64 and ds.seed.dims == ("member", "time")
    np.testing.assert_array_equal(ds.seed.values, SEEDS)

    grid, coarse = cube_sphere_grid(N), cube_sphere_grid(NC)
    for name in ("lat", "lon", "area"):
        assert ds[name].dims == ("tile", "grid_yt", "grid_xt")
        np.testing.assert_array_equal(ds[name].values, grid[name].values)
    for name in ("latb", "lonb"):
        assert ds[name].dims == ("tile", "grid_y", "grid_x")
        np.testing.assert_array_equal(ds[name].values, grid[name].values)
    np.testing.assert_array_equal(ds.area_coarse.values, coarse.area.values)

    assert list(ds.member.values) == [1, 2, 3] and list(ds.member_name.values) == list(MEMBERS)
    assert list(ds.tile.values) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(ds.grid_xt.values, np.arange(1.0, N + 1))
    np.testing.assert_array_equal(ds.grid_y.values, np.arange(1.0, N + 2))
    np.testing.assert_array_equal(ds.grid_yt_coarse.values, np.arange(1.0, NC + 1))
    assert all(isinstance(t, cftime.DatetimeJulian) for t in ds.time.values)
    assert list(ds.time.values) == list(TIMES)
    assert ds.time.encoding["calendar"] == "julian"

    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["title"] and "created by fv3-downscale" in ds.attrs["history"]
    assert ds.attrs["bundle_id"] == "bundle-abc" and ds.attrs["nfe"] == 35 and ds.attrs["sigma_max"] == 80.0
    assert json.loads(ds.attrs["sampler"]) == {"name": "heun", "steps": 18}
    assert json.loads(ds.attrs["inputs"]) == ["c48.zarr"]
    assert ds.attrs["downscale_status"] == "complete"
    assert ds.attrs["downscale_fingerprint"] == spec.fingerprint
    assert is_complete(reference)
    opened = open_output(reference)
    assert opened.PRATEsfc.chunks == ((1, 1, 1), (8, 8, 8), (6,), (N,), (N,))  # one dask chunk per shard
    xr.testing.assert_identical(opened.load(), ds)


@pytest.mark.parametrize("name, shard, chunk", [
    ("PRATEsfc", [1, 8, 6, N, N], [1, 4, 1, 2, 2]),
    ("PRATEsfc_qm", [8, 6, N, N], [4, 1, 2, 2]),
    ("PRATEsfc_coarse", [8, 6, NC, NC], [4, 1, NC, NC]),
])
def test_shards_in_zarr_metadata(reference, name, shard, chunk):
    meta = json.loads((reference / name / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == shard
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    assert codec["configuration"]["chunk_shape"] == chunk
    # one file per shard: 3 time blocks (× 3 members for the ensemble)
    assert len([p for p in (reference / name / "c").rglob("*") if p.is_file()]) == 3 * (3 if name == "PRATEsfc" else 1)


def test_cf_attributes(reference):
    ds = xr.open_zarr(reference)
    precipitation = ds.cf.standard_names["precipitation_flux"]
    assert sorted(precipitation) == sorted(["PRATEsfc", "PRATEsfc_coarse", "PRATEsfc_truth",
                                            *(f"PRATEsfc_{b}" for b in BASELINES)])
    assert ds.PRATEsfc.cf["latitude"].name == "lat" and ds.PRATEsfc.cf["longitude"].name == "lon"
    assert ds.PRATEsfc_coarse.cf["latitude"].name == "lat_coarse"
    assert ds.lat.attrs["units"] == "degrees_north" and ds.lon.attrs["units"] == "degrees_east"
    assert ds.area.attrs == {"units": "m2", "standard_name": "cell_area", "long_name": "cell area"}
    assert ds.cf.get_associated_variable_names("PRATEsfc")["cell_measures"] == ["area"]
    assert ds.cf.get_associated_variable_names("PRATEsfc_coarse")["cell_measures"] == ["area_coarse"]
    assert {"lat", "lon"} <= set(ds.PRATEsfc.coords)
    for name in precipitation:
        attrs = ds[name].attrs
        assert attrs["units"] == "kg m-2 s-1" and attrs["cell_methods"] == "time: mean"
        assert attrs["long_name"].startswith(("downscaled surface precipitation rate", "surface precipitation rate"))
    assert "diffusion ensemble member" in ds.PRATEsfc.attrs["long_name"]
    assert "bilinear baseline" in ds.PRATEsfc_bilinear.attrs["long_name"]


def test_diagnostics_read_the_store(reference):
    sources, grid = gather_sources(open_output(reference), factor=2)
    assert [s.name for s in sources] == ["ensemble", "bilinear", "deterministic", "qm", "coarse", "truth"]
    np.testing.assert_array_equal(sources[0].data.values, ENSEMBLE)
    np.testing.assert_array_equal(grid.area.values, cube_sphere_grid(N).area.values)


def test_concurrent_writers_equal_a_serial_write(tmp_path, spec, reference):
    path = tmp_path / "outputs.zarr"
    create_store(path, spec)
    with Client(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None) as client:
        futures = [client.submit(write_known, path, spec, item, pure=False) for item in plan_items(spec)]
        client.gather(futures)
    assert pending_items(path, spec) == []
    finalize_store(path, spec)
    assert data_files(path) == data_files(reference)


def test_resume_after_a_kill(tmp_path, spec, reference, monkeypatch):
    path = tmp_path / "outputs.zarr"
    items = plan_items(spec)
    create_store(path, spec)
    for item in items[:3]:
        write_known(path, spec, item)

    # the 4th item dies after its data, before its marker: real files, the rename never happens
    real_replace = os.replace

    def killed_at_marker(src, dst):
        if f"{BOOKKEEPING}/{ITEMS}" in Path(dst).as_posix():
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_marker)
    with pytest.raises(KeyboardInterrupt):
        write_known(path, spec, items[3])
    monkeypatch.setattr(os, "replace", real_replace)

    # a new process: the same spec reuses the store, the interrupted item is pending
    create_store(path, spec)
    assert done_items(path) == {i.key for i in items[:3]}
    assert pending_items(path, spec) == items[3:]
    with pytest.raises(IncompleteStoreError, match=f"3 work items missing: {items[3].key}, {items[4].key}"):
        open_output(path)
    partial = open_output(path, allow_incomplete=True)
    assert np.isnan(partial.PRATEsfc.isel(time=-1).values).all()
    assert (partial.seed.isel(time=-1).values == -1).all()
    with pytest.raises(IncompleteStoreError, match=f"3 of 6 work items not written: {items[3].key}"):
        finalize_store(path, spec)

    for item in pending_items(path, spec):
        write_known(path, spec, item)
    finalize_store(path, spec)
    assert data_files(path) == data_files(reference)


def test_no_overwrite(tmp_path, spec, reference):
    complete = tmp_path / "complete.zarr"   # a copy: the module's reference store stays complete
    shutil.copytree(reference, complete)
    with pytest.raises(FileExistsError, match=f"{complete}.*already complete.*--overwrite"):
        create_store(complete, spec)
    create_store(complete, spec, overwrite=True)
    assert not is_complete(complete) and done_items(complete) == set()
    assert len(pending_items(complete, spec)) == 6

    other = make_spec(members=("0001", "0002"))
    with pytest.raises(OutputStoreError, match=f"{complete}.*different spec.*--overwrite.*overwrite: true"):
        create_store(complete, other)
    with pytest.raises(OutputStoreError, match="different spec"):
        write_known(complete, other, WorkItem(0, 8, 0))
    create_store(complete, other, overwrite=True)
    assert len(pending_items(complete, other)) == 3

    foreign = tmp_path / "not-a-store"
    foreign.mkdir()
    with pytest.raises(OutputStoreError, match="not a Zarr store"):
        create_store(foreign, spec, overwrite=True)


def test_metadata_consolidated_once_at_the_end(tmp_path, spec, monkeypatch):
    calls = []
    real_consolidate = zarr.consolidate_metadata

    def counting_consolidate(*args, **kwargs):
        calls.append(args)
        return real_consolidate(*args, **kwargs)

    monkeypatch.setattr(zarr, "consolidate_metadata", counting_consolidate)
    path = tmp_path / "outputs.zarr"
    create_store(path, spec)
    for item in plan_items(spec):
        write_known(path, spec, item)
    assert json.loads((path / "zarr.json").read_text()).get("consolidated_metadata") is None
    with pytest.raises(ValueError):
        zarr.open_consolidated(path, zarr_format=3)
    finalize_store(path, spec)
    finalize_store(path, spec)  # a complete store is left as it is
    assert len(calls) == 1
    group = zarr.open_consolidated(path, zarr_format=3)
    assert group.attrs["downscale_status"] == "complete"
    assert set(group.metadata.consolidated_metadata.metadata) >= {"PRATEsfc", "seed", "lat", "time"}
    with pytest.raises(OutputStoreError, match="is complete"):
        write_known(path, spec, WorkItem(0, 8, 0))


def test_item_contents_are_validated(tmp_path, spec):
    path = tmp_path / "outputs.zarr"
    create_store(path, spec)
    ts, ms = slice(0, 8), slice(2, 3)
    with pytest.raises(ValueError, match="member block 0 only"):
        write_item(path, spec, WorkItem(0, 8, 1), ENSEMBLE[ms, ts], SEEDS[ms, ts], coarse=COARSE[ts])
    with pytest.raises(ValueError, match=r"must give baselines \['bilinear', 'deterministic', 'qm'\] \(got \[\]\)"):
        write_item(path, spec, WorkItem(0, 8, 0), ENSEMBLE[:2, ts], SEEDS[:2, ts], coarse=COARSE[ts])
    with pytest.raises(ValueError, match=r"PRATEsfc_coarse has shape \(8, 6, 4, 4\).*expected shape \(8, 6, 2, 2\)"):
        write_item(path, spec, WorkItem(0, 8, 0), ENSEMBLE[:2, ts], SEEDS[:2, ts],
                   deterministic={b: FIELDS[b][ts] for b in BASELINES}, truth=FIELDS["truth"][ts],
                   coarse=FIELDS["truth"][ts])
    with pytest.raises(ValueError, match=r"ensemble has shape \(1, 8, 6, 4, 4\).*expected shape \(2, 8, 6, 4, 4\)"):
        write_item(path, spec, WorkItem(0, 8, 0), ENSEMBLE[ms, ts], SEEDS[ms, ts])
    with pytest.raises(ValueError, match="seeds .* integers"):
        write_item(path, spec, WorkItem(0, 8, 1), ENSEMBLE[ms, ts], SEEDS[ms, ts].astype(float))
    with pytest.raises(ValueError, match="not a work item of its plan"):
        write_item(path, spec, WorkItem(24, 32, 0), ENSEMBLE[ms, ts], SEEDS[ms, ts])
    assert done_items(path) == set()


def test_partial_last_blocks_and_defaults(tmp_path):
    spec = make_spec(time_block=10, member_block=3, time_chunk=None, space_chunk=None)
    assert (spec.time_chunk_length, spec.space_chunk_length) == (5, N)
    assert [i.key for i in plan_items(spec)] == ["t000000-000010-m0000", "t000010-000020-m0000",
                                                 "t000020-000024-m0000"]
    assert plan_items(spec)[-1].frames == slice(20, 24)
    path = tmp_path / "outputs.zarr"
    write_all(path, spec)
    ds = open_output(path)
    np.testing.assert_array_equal(ds.PRATEsfc.values, ENSEMBLE)
    np.testing.assert_array_equal(ds.PRATEsfc_coarse.values, COARSE)


@pytest.mark.parametrize("changes, message", [
    (dict(space_chunk=3), "space_chunk 3 must divide the tile size 4"),
    (dict(time_chunk=3), "time_chunk 3 must divide time_block 8"),
    (dict(factor=3), "factor 3 does not divide the fine tile size 4"),
    (dict(members=("0001", "0001")), "members must be distinct"),
    (dict(baselines=("truth",)), "baselines must be distinct identifiers"),
    (dict(times=TIMES[[0, 1, 3]]), "regular step"),
    (dict(attrs={"history": "x"}), "reserved"),
    (dict(attrs={"path": Path("x")}), "provenance attribute 'path'"),
    (dict(member_block=0), "member_block must be a positive integer"),
])
def test_spec_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        make_spec(**changes)


def test_a_store_grows_by_the_appended_frames_only(tmp_path, monkeypatch):
    """13 frames written (blocks [0, 8) and [8, 13)), then the input reaches 24: only frames 13…23 are new
    items, the half-filled shard keeps its old frames, and a growth killed half-way resumes."""
    from downscale.inference import growth

    short, full = make_spec(times=TIMES[:13]), make_spec()
    path = tmp_path / "grow.zarr"
    write_all(path, short)
    assert growth.new_frames(path, short) == 0
    assert growth.new_frames(path, full) == 11

    real_resize, calls = zarr.Array.resize, []

    def dies_on_the_second_array(self, shape):
        calls.append(shape)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_resize(self, shape)

    monkeypatch.setattr(zarr.Array, "resize", dies_on_the_second_array)
    with pytest.raises(KeyboardInterrupt):
        growth.extend_store(path, full)
    monkeypatch.setattr(zarr.Array, "resize", real_resize)
    assert not is_complete(path)
    with pytest.raises(IncompleteStoreError):
        open_output(path)

    assert growth.extend_store(path, full) == 11
    new = pending_items(path, full)
    assert [(i.start, i.stop) for i in new if i.member_block == 0] == [(13, 16), (16, 24)]
    old_markers = {p.name: p.read_bytes() for p in (path / BOOKKEEPING / ITEMS).iterdir()}
    for item in new:
        write_known(path, full, item)
    finalize_store(path, full)
    ds = open_output(path)
    np.testing.assert_array_equal(ds.PRATEsfc.values, ENSEMBLE)     # old and new frames where they belong
    np.testing.assert_array_equal(ds.PRATEsfc_coarse.values, COARSE)
    np.testing.assert_array_equal(ds.seed.values, SEEDS)
    assert list(ds.time.values) == list(TIMES)
    assert ds.attrs[store.FINGERPRINT] == full.fingerprint
    assert all((path / BOOKKEEPING / ITEMS / k).read_bytes() == v for k, v in old_markers.items())

    with pytest.raises(OutputStoreError, match="another configuration"):
        growth.new_frames(path, make_spec(members=("0001", "0002")))
    with pytest.raises(OutputStoreError, match="does not continue"):
        growth.new_frames(path, make_spec(times=TIMES[:20]))


def test_the_store_format_is_recorded_and_another_one_refused(tmp_path, reference):
    """Format 1 is written; a store from before the attribute (format 0) or of another format is refused,
    naming its format, the one this software reads and ``--overwrite``."""
    assert open_output(reference).attrs[store.FORMAT] == store.STORE_FORMAT == 1
    path = tmp_path / "copy.zarr"
    shutil.copytree(reference, path)
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    del meta["attributes"][store.FORMAT]
    meta_file.write_text(json.dumps(meta))
    for found in (0, 2):
        if found:
            meta["attributes"][store.FORMAT] = found
            meta_file.write_text(json.dumps(meta))
        with pytest.raises(OutputStoreError,
                           match=f"output store {path} has format {found}, this software .* reads format 1.*--overwrite"):
            open_output(path)
        with pytest.raises(OutputStoreError, match=f"has format {found}"):   # evaluate's (URL-capable) opener too
            open_output_store(path)


# ---- file-system faults, claims and swaps ------------------------------------------------------------------


def test_a_full_disk_is_one_line_naming_store_and_variable_and_loses_no_written_item(tmp_path, spec, reference,
                                                                                   monkeypatch):
    """ENOSPC from the storage layer after 2 of 6 items: a StoreIOError naming the store, the variable and the
    problem; the written items keep their markers, and once space is freed the store ends equal to a serial one."""
    path = tmp_path / "outputs.zarr"
    items = plan_items(spec)
    create_store(path, spec)
    refused = fail_writes(monkeypatch, errno.ENOSPC, after=lambda: len(done_items(path)) >= 2)
    with pytest.raises(StoreIOError) as caught:
        for item in items:
            write_known(path, spec, item)
    message = str(caught.value)
    assert "\n" not in message and refused
    assert message.startswith(f"output store '{path}': variable 'PRATEsfc': cannot write {items[2].key}: "
                              f"the disk is full ([Errno {errno.ENOSPC}]")
    assert "free space" in message and "work items already written are kept" in message
    assert done_items(path) == {i.key for i in items[:2]}
    monkeypatch.undo()                                      # space freed
    for item in pending_items(path, spec):
        write_known(path, spec, item)
    finalize_store(path, spec)
    assert data_files(path) == data_files(reference)


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "the file system is read-only"),
                                           (errno.EACCES, "permission denied")])
def test_an_unwritable_output_leaves_nothing_behind(tmp_path, spec, monkeypatch, code, problem):
    path = tmp_path / "outputs.zarr"
    fail_writes(monkeypatch, code)
    with pytest.raises(StoreIOError, match=f"^output store '{path}': cannot create: {problem} "):
        create_store(path, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == []      # no store, no half-made temporary


def test_an_output_under_a_file_is_one_line_naming_the_file(tmp_path, spec):
    (tmp_path / "notes.txt").write_text("a file")
    path = tmp_path / "notes.txt" / "outputs.zarr"
    with pytest.raises(StoreIOError, match=f"^output store '{path}': {tmp_path / 'notes.txt'} is a file, not a "
                                           f"folder; choose another output path"):
        create_store(path, spec)
    with pytest.raises(StoreIOError, match="is a file, not a folder"):
        with store_lock(path):
            pass


def test_an_item_is_claimed_by_one_holder_and_a_dead_holder_leaves_it_claimable(tmp_path, spec):
    path = tmp_path / "outputs.zarr"
    create_store(path, spec)
    first, second = plan_items(spec)[:2]
    with claim_item(path, first, wait=False) as mine:
        assert mine is Claim.MINE
        with claim_item(path, first, wait=False) as other:      # another open file: as another process sees it
            assert other is Claim.HELD
        write_known(path, spec, first)
    with claim_item(path, first, wait=True) as again:
        assert again is Claim.DONE
    claims = path / BOOKKEEPING / CLAIMS
    (claims / f"{second.key}.lock").write_text("")               # left by a process killed while it held it
    with claim_item(path, second, wait=False) as stale:
        assert stale is Claim.MINE
    assert list(claims.iterdir()) == []                          # every lock file is removed on release
    with store_lock(path):
        assert lock_path(path).exists()
    assert not lock_path(path).exists()


def test_an_interrupted_swap_is_finished_and_an_unfinished_replacement_is_undone(tmp_path, spec, reference):
    path, staging = tmp_path / "outputs.zarr", staging_path(tmp_path / "outputs.zarr")
    shutil.copytree(reference, path)
    other = make_spec(members=("0001", "0002"))
    write_all(staging, other)
    path.rename(tmp_path / "outputs.zarr.old")                   # killed between the two renames
    recover_swap(path)
    assert store.matches(path, other) and is_complete(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.zarr"]

    create_store(staging, spec)                                  # a replacement not yet complete
    path.rename(tmp_path / "outputs.zarr.old")
    recover_swap(path)
    assert store.matches(path, other) and is_complete(path)      # the finished store is back in place
    assert store.matches(staging, spec) and not is_complete(staging)
    for item in pending_items(staging, spec):
        write_known(staging, spec, item)
    finalize_store(staging, spec)
    swap_in(staging, path)
    assert store.matches(path, spec) and data_files(path) == data_files(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.zarr"]
