"""prepare_dataset: validated member stores, static, splits, training-only stats, manifest last."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from builders import fortran_dataset, write

from data_catalog.catalog import load_catalog
from data_catalog.errors import DataError
from data_catalog.member_reader import open_member
from data_catalog.normalization import PRECIPITATION_EPSILON
from data_catalog.prepare import (
    MANIFEST,
    PrepareConfig,
    PreparedDataset,
    PreparedDatasetError,
    prepare_dataset,
)

N, FACTOR = 4, 2
SECRET = "s3cr3t-token-value"


def make_catalog(root: Path, members: tuple[str, ...] = ("0001", "0002", "0003"), nt: int = 24,
                 hours: np.ndarray | None = None, scale: dict[str, float] | None = None,
                 static: bool = True, split_extra: dict | None = None) -> Path:
    """A catalog of ``members`` (fine PRATEsfc; coarse PRATEsfc_coarse + TMPsfc_coarse) and a zsurf store.

    ``hours`` replaces the default 3-hourly axis (e.g. with a missing step); ``scale`` multiplies a
    member's precipitation (to change one member's values).
    """
    hours = np.arange(nt) * 3.0 + 3.0 if hours is None else np.asarray(hours, dtype=np.float64)
    nt = hours.size
    doc: dict = {"name": "prepare-test", "resolution": {"coarse": N, "fine": N * FACTOR},
                 "predictors": ["PRATEsfc_coarse", "TMPsfc_coarse"], "members": {}}
    for k, name in enumerate(members):
        rng = np.random.default_rng(k)
        fine = rng.gamma(0.5, 2e-5, size=(6, nt, N * FACTOR, N * FACTOR)) * (scale or {}).get(name, 1.0)
        fine[rng.random(fine.shape) < 0.3] = 0.0
        coarse = fine.reshape(6, nt, N, FACTOR, N, FACTOR).mean(axis=(3, 5))
        tmp = 280 + 3 * rng.normal(size=coarse.shape)
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        f = write(fortran_dataset({"PRATEsfc": fine}, hours=hours), d / "fine.zarr")
        c = write(fortran_dataset({"PRATEsfc_coarse": coarse, "TMPsfc_coarse": tmp}, coarse=True, hours=hours),
                  d / "coarse.zarr")
        doc["members"][name] = {"fine": {"urlpath": str(f)},
                                "coarse": {"urlpath": str(c), "storage_options": {"token": SECRET}}}
    if static:
        zsurf = np.random.default_rng(99).gamma(1.0, 400.0, size=(6, N * FACTOR, N * FACTOR)).astype(np.float32)
        ds = xr.Dataset({"zsurf": (("tile", "grid_yt", "grid_xt"), zsurf, {"units": "m"})})
        write(ds, root / "atmos_static.zarr")
        doc["static"] = {"urlpath": str(root / "atmos_static.zarr")}
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("prepare")
    catalog = load_catalog(make_catalog(root / "stores"))
    config = PrepareConfig(splits={"validation_members": ["0003"]})
    return prepare_dataset(catalog, root / "prepared", config)


def test_layout_and_manifest(prepared):
    m = prepared.manifest
    assert [e.name for e in m.members] == ["0001", "0002", "0003"]
    assert (m.coarse_resolution, m.fine_resolution, m.factor) == (N, N * FACTOR, FACTOR)
    assert m.target == "PRATEsfc" and m.predictors == ("PRATEsfc_coarse", "TMPsfc_coarse")
    assert m.precipitation_variables == ("PRATEsfc", "PRATEsfc_coarse")
    assert m.static_features == ("zsurf", "centre_x", "centre_y", "centre_z")
    assert m.time_step_seconds == 10800.0 and m.calendar == "julian"
    assert m.time_units == "seconds since 2016-08-05 00:00:00"
    assert m.counts == {"train": 2 * 20, "validation": 20, "test": 0}
    assert len(m.fingerprint) == 64 and m.software_version
    text = (prepared.path / MANIFEST).read_text()
    assert SECRET not in text and "coarse.zarr" in text  # store display names, never credentials
    prepared.verify()


def test_member_store_holds_the_validated_standard_form(prepared, tmp_path):
    group = zarr.open_group(prepared.member_path("0002"), mode="r")
    target, tmp = group["PRATEsfc"], group["TMPsfc_coarse"]
    assert target.shape == (24, 6, 8, 8) and tmp.shape == (24, 6, 4, 4)
    assert target.chunks == (5, 6, 8, 8) and target.shards is None  # a clip reads one or two chunks
    assert target.dtype == np.float32
    seconds = group["time"][:]
    np.testing.assert_array_equal(seconds, (np.arange(24) * 3 + 3) * 3600.0)
    catalog = load_catalog(prepared.path.parent / "stores" / "catalog.yaml")
    expected = open_member(catalog, "0002")
    np.testing.assert_array_equal(target[:], expected.fine["PRATEsfc"].values)
    ds = prepared.open_member("0002")
    assert ds["TMPsfc_coarse"].dims == ("time", "tile", "yc", "xc")
    assert ds.indexes["time"][0] == expected.coarse.indexes["time"][0]
    static = prepared.open_static()
    assert {"zsurf", "lat", "lon", "area", "area_coarse", "centre_x", "centre_y", "centre_z"} <= set(static)
    r2 = static["centre_x"] ** 2 + static["centre_y"] ** 2 + static["centre_z"] ** 2
    np.testing.assert_allclose(r2.values, 1.0, rtol=1e-6)


def test_fine_area_is_the_static_area_and_refuses_a_bad_cell(prepared, tmp_path):
    area = prepared.fine_area()
    assert area.dtype == np.float64 and area.dims == ("tile", "y", "x")
    np.testing.assert_array_equal(area.values, prepared.open_static()["area"].values.astype(np.float64))
    copy = tmp_path / "prepared"
    shutil.copytree(prepared.path, copy)
    static = zarr.open_group(PreparedDataset.open(copy).static_path, mode="r+")
    static["area"][0, 0, 0] = 0.0
    with pytest.raises(PreparedDatasetError, match=r"static.*area has 1 of \d+ cells not finite and > 0"):
        PreparedDataset.open(copy).fine_area()


def test_stats_come_from_training_frames_only(prepared, tmp_path):
    frames = prepared.splits.training_frames()
    assert set(frames) == {"0001", "0002"}
    values = np.concatenate([zarr.open_group(prepared.member_path(m), mode="r")["PRATEsfc"][idx].ravel()
                             for m, idx in frames.items()]).astype(np.float64)
    z = np.log1p(values / PRECIPITATION_EPSILON)
    s = prepared.stats["PRATEsfc"]
    assert s.mean == pytest.approx(z.mean(), rel=1e-10) and s.std == pytest.approx(z.std(), rel=1e-10)
    assert s.epsilon == PRECIPITATION_EPSILON and prepared.stats.split == "train"
    # Change the validation member's values tenfold: the statistics do not move.
    catalog = load_catalog(make_catalog(tmp_path / "stores", scale={"0003": 10.0}))
    other = prepare_dataset(catalog, tmp_path / "prepared", prepared.manifest.config)
    v_old = zarr.open_group(prepared.member_path("0003"), mode="r")["PRATEsfc"][:]
    v_new = zarr.open_group(other.member_path("0003"), mode="r")["PRATEsfc"][:]
    np.testing.assert_allclose(v_new, 10 * v_old, rtol=1e-6)
    assert other.stats == prepared.stats
    assert other.manifest.fingerprint != prepared.manifest.fingerprint


def test_refuses_to_overwrite_then_overwrites(tmp_path):
    catalog = load_catalog(make_catalog(tmp_path / "stores", members=("0001",), nt=8, static=False))
    out = tmp_path / "prepared"
    first = prepare_dataset(catalog, out)
    assert PreparedDataset.is_complete(out)
    assert first.manifest.static_features == ("centre_x", "centre_y", "centre_z")
    with pytest.raises(FileExistsError, match="complete prepared dataset; pass overwrite=True"):
        prepare_dataset(catalog, out)
    again = prepare_dataset(catalog, out, PrepareConfig(clip_frames=3), overwrite=True)
    assert again.manifest.config.clip_frames == 3 and again.manifest.counts["train"] == 6


def test_interrupted_prepare_is_detected_and_redone(tmp_path):
    catalog = load_catalog(make_catalog(tmp_path / "stores", members=("0001",), nt=8))
    out = tmp_path / "prepared"
    done = prepare_dataset(catalog, out)
    (out / "user-notes.txt").write_text("not ours")
    (out / MANIFEST).unlink()  # as if the run died before the manifest was written
    shutil.copytree(out / "members" / "0001.zarr", out / "members" / "0001.zarr.tmp")  # and a half store
    assert not PreparedDataset.is_complete(out)
    with pytest.raises(PreparedDatasetError, match="no manifest.json"):
        PreparedDataset.open(out)
    redone = prepare_dataset(catalog, out)  # no FileExistsError: incomplete work is redone
    assert PreparedDataset.is_complete(out)
    assert redone.manifest.fingerprint == done.manifest.fingerprint  # same inputs, same content
    assert not (out / "members" / "0001.zarr.tmp").exists()
    assert (out / "user-notes.txt").read_text() == "not ours"  # only our own files are removed


def test_tampering_is_detected(tmp_path):
    catalog = load_catalog(make_catalog(tmp_path / "stores", members=("0001",), nt=8))
    out = tmp_path / "prepared"
    prepared = prepare_dataset(catalog, out)
    stats = json.loads((out / "stats.json").read_text())
    stats["variables"]["PRATEsfc"]["mean"] += 1.0
    (out / "stats.json").write_text(json.dumps(stats))
    assert not PreparedDataset.is_complete(out)
    with pytest.raises(PreparedDatasetError, match="stats.json was changed"):
        PreparedDataset.open(out)
    prepared = prepare_dataset(catalog, out)  # redone
    chunk = next(p for p in (out / "members" / "0001.zarr" / "PRATEsfc").rglob("*") if p.is_file()
                 and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[::-1])
    with pytest.raises(PreparedDatasetError, match="content fingerprint"):
        prepared.verify()


def test_clips_never_span_a_time_gap(tmp_path):
    hours = np.delete(np.arange(20) * 3.0 + 3.0, 9)  # the 10th record is missing
    catalog = load_catalog(make_catalog(tmp_path / "stores", members=("0001",), hours=hours))
    prepared = prepare_dataset(catalog, tmp_path / "prepared", PrepareConfig(clip_frames=4))
    times = zarr.open_group(prepared.member_path("0001"), mode="r")["time"][:]
    starts = [s for _, s in prepared.splits.clips["train"]]
    assert starts == [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15]
    for s in starts:
        assert np.all(np.diff(times[s:s + 4]) == 3 * 3600.0)


def test_bad_time_step_and_config_errors(tmp_path):
    catalog = load_catalog(make_catalog(tmp_path / "stores", members=("0001",), hours=np.arange(8) * 6.0 + 6.0))
    with pytest.raises(DataError, match="time step is 6 h but the prepare config expects 3 h"):
        prepare_dataset(catalog, tmp_path / "prepared")
    assert not PreparedDataset.is_complete(tmp_path / "prepared")
    with pytest.raises(ValueError, match="must be a multiple of chunk_frames"):
        PrepareConfig(chunk_frames=2, shard_frames=5)
    sharded = PrepareConfig(chunk_frames=1, shard_frames=10)
    assert (sharded.chunk_length, sharded.write_length) == (1, 10)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        PrepareConfig(clip_frames=0)
    from data_catalog.errors import CatalogError

    with pytest.raises(CatalogError, match="no member 'nope'"):
        prepare_dataset(catalog, tmp_path / "p2", PrepareConfig(members=("nope",), time_step_hours=6))


def test_predictors_coarse_grained_when_the_catalog_lacks_them(tmp_path):
    path = make_catalog(tmp_path / "stores", members=("0001",), nt=6, static=False)
    doc = yaml.safe_load(path.read_text())
    del doc["members"]["0001"]["coarse"]
    doc["predictors"] = ["PRATEsfc_coarse"]
    path.write_text(yaml.safe_dump(doc))
    prepared = prepare_dataset(load_catalog(path), tmp_path / "prepared", PrepareConfig(clip_frames=2))
    assert prepared.manifest.members[0].derived_predictors == ("PRATEsfc_coarse",)
    group = zarr.open_group(prepared.member_path("0001"), mode="r")
    fine, coarse = group["PRATEsfc"][:].astype(np.float64), group["PRATEsfc_coarse"][:]
    area = prepared.open_static()["area"].values
    w = (fine * area).reshape(6, 6, N, FACTOR, N, FACTOR).sum(axis=(3, 5))
    a = area.reshape(6, N, FACTOR, N, FACTOR).sum(axis=(2, 4))
    np.testing.assert_allclose(coarse, w / a, rtol=1e-5)
