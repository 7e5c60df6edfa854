"""ClipDataset: normalized clips of T frames, cube or patch with neighbour halos, reproducible, loader-ready."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
import zarr
from test_prepare import make_catalog
from torch.utils.data import DataLoader

from data_catalog.catalog import load_catalog
from data_catalog.clips import ClipDataset, ClipSampler, collate_clips
from data_catalog.halo import halo_pad
from data_catalog.prepare import PrepareConfig, PreparedDataset, prepare_dataset

T = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("clips")
    path = make_catalog(root / "stores", members=("0001", "0002", "0003"), nt=12)
    doc = yaml.safe_load(path.read_text())
    del doc["members"]["0003"]["fine"]  # a coarse run without truth
    path.write_text(yaml.safe_dump(doc))
    config = PrepareConfig(clip_frames=T, splits={"validation_members": ["0002"], "test_members": ["0003"]})
    return prepare_dataset(load_catalog(path), root / "prepared", config)


def _raw(prepared, member, name, start):
    return zarr.open_group(prepared.member_path(member), mode="r")[name][start:start + T].astype(np.float64)


def _static(prepared):
    s = prepared.open_static()
    return np.stack([prepared.stats.normalize(f, s[f].values.astype(np.float64))
                     for f in prepared.manifest.static_features])


def test_cube_item_is_normalized_clip_with_coordinates(prepared):
    ds = ClipDataset(prepared, "train")
    assert len(ds) == 10
    item = ds[7]
    member, start = ds.clips[7]
    assert item["member"] == prepared.member_names.index(member) and item["start"] == start
    assert item["target"].shape == (T, 1, 6, 8, 8) and item["target"].dtype == torch.float32
    assert item["coarse"].shape == (T, 2, 6, 4, 4) and item["static"].shape == (4, 6, 8, 8)
    assert item["area_weight"].shape == (6, 8, 8)
    assert float(item["area_weight"].mean()) == pytest.approx(1.0, rel=1e-6)
    stats = prepared.stats
    np.testing.assert_allclose(item["target"][:, 0].numpy(),
                               stats.normalize("PRATEsfc", _raw(prepared, member, "PRATEsfc", start)), atol=1e-5)
    for c, name in enumerate(prepared.manifest.predictors):
        np.testing.assert_allclose(item["coarse"][:, c].numpy(),
                                   stats.normalize(name, _raw(prepared, member, name, start)), atol=1e-5)
    np.testing.assert_allclose(item["static"].numpy(), _static(prepared), atol=1e-5)
    times = zarr.open_group(prepared.member_path(member), mode="r")["time"][start:start + T]
    assert item["time"].dtype == torch.float64 and item["time"].tolist() == times.tolist()
    assert np.all(np.diff(times) == 3 * 3600.0)


def test_coarse_only_members_have_no_target_and_batch_with_others(prepared):
    test = ClipDataset(prepared, "test")
    assert {m for m, _ in test.clips} == {"0003"} and "target" not in test[0]
    train = ClipDataset(prepared, "train")
    batch = collate_clips([train[0], test[0]])
    assert batch["target"].shape == (2, T, 1, 6, 8, 8) and batch["has_target"].tolist() == [True, False]
    assert torch.isnan(batch["target"][1]).all() and not torch.isnan(batch["target"][0]).any()
    assert "has_target" not in collate_clips([train[0], train[1]])


def test_patch_halos_carry_neighbour_tile_data(prepared):
    p, h, f = 4, 2, prepared.manifest.factor
    ds = ClipDataset(prepared, "train", mode="patch", patch_size=p, halo=h, seed=3)
    stats = prepared.stats
    edges = inside = 0
    for key in range(3 * len(ds)):  # three epochs of patch positions
        item = ds[key]
        member, start = ds.clips[key % len(ds)]
        tile, y0, x0 = item["tile"], item["y0"], item["x0"]
        assert y0 % f == 0 and x0 % f == 0 and 0 <= y0 <= 8 - p
        full = stats.normalize("PRATEsfc", _raw(prepared, member, "PRATEsfc", start))
        expected = halo_pad(full, h)[:, tile, y0:y0 + p + 2 * h, x0:x0 + p + 2 * h]
        assert item["target"].shape == (T, 1, p + 2 * h, p + 2 * h)
        np.testing.assert_allclose(item["target"][:, 0].numpy(), expected, atol=1e-5)
        coarse = stats.normalize("TMPsfc_coarse", _raw(prepared, member, "TMPsfc_coarse", start))
        pc, hc = p // f, h // f
        expected_c = halo_pad(coarse, hc)[:, tile, y0 // f:y0 // f + pc + 2 * hc, x0 // f:x0 // f + pc + 2 * hc]
        np.testing.assert_allclose(item["coarse"][:, 1].numpy(), expected_c, atol=1e-5)
        static = halo_pad(_static(prepared), h)[:, tile, y0:y0 + p + 2 * h, x0:x0 + p + 2 * h]
        np.testing.assert_allclose(item["static"].numpy(), static, atol=1e-5)
        on_tile = min(y0, x0) >= h and max(y0, x0) + p + h <= 8
        inside += on_tile  # the halo lies on the patch's own tile
        edges += not on_tile  # the halo reaches into neighbouring tiles
    assert edges > 0 and inside > 0


def test_patch_positions_are_reproducible_and_change_with_epoch(prepared):
    a = ClipDataset(prepared, "train", mode="patch", patch_size=4, halo=2, seed=11)
    b = ClipDataset(prepared, "train", mode="patch", patch_size=4, halo=2, seed=11)
    n = len(a)
    first = [(a[i]["tile"], a[i]["y0"], a[i]["x0"]) for i in range(n)]
    assert first == [(b[i]["tile"], b[i]["y0"], b[i]["x0"]) for i in range(n)]
    second = [(a[n + i]["tile"], a[n + i]["y0"], a[n + i]["x0"]) for i in range(n)]  # epoch 1
    assert first != second
    assert [a[n + i]["start"] for i in range(n)] == [a[i]["start"] for i in range(n)]


def test_bad_settings_are_refused(prepared):
    with pytest.raises(ValueError, match="multiple of the factor"):
        ClipDataset(prepared, "train", mode="patch", patch_size=3)
    with pytest.raises(ValueError, match="halo 1 must be a non-negative multiple"):
        ClipDataset(prepared, "train", mode="patch", patch_size=4, halo=1)
    with pytest.raises(ValueError, match="unknown split"):
        ClipDataset(prepared, "training")


def test_sampler_is_seeded_and_resumes():
    data = list(range(10))
    a = ClipSampler(data, shuffle=True, seed=5)
    order = list(a)
    assert sorted(order) == data and order == list(ClipSampler(data, shuffle=True, seed=5))
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != [i + 10 for i in order] and sorted(epoch1) == list(range(10, 20))
    b = ClipSampler(data, shuffle=True, seed=5)
    b.resume(1, 4)
    assert list(b) == epoch1[4:]
    assert len(list(b)) == 10  # the skip applies once
    b.resume(1, 10)  # an epoch consumed to its end: continue with the next one
    assert b.epoch == 2
    halves = [list(ClipSampler(data, num_replicas=2, rank=r, shuffle=True, seed=5)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == data


def test_loader_with_two_workers_gives_the_same_batches(prepared):
    ds = ClipDataset(prepared, "train", mode="patch", patch_size=4, halo=2, seed=1)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=3, sampler=ClipSampler(ds, seed=2), num_workers=workers,
                            collate_fn=collate_clips)
        batches[workers] = list(loader)
    assert len(batches[0]) == 4
    for b0, b2 in zip(batches[0], batches[2], strict=True):
        assert b0.keys() == b2.keys()
        for key in b0:
            assert torch.equal(b0[key], b2[key]), key
    assert batches[0][0]["target"].shape == (3, T, 1, 8, 8)
