"""Splits: a clip in one split only, no frame shared between splits, a buffer between them, no gaps."""

from __future__ import annotations

import numpy as np
import pytest

from data_catalog.splits import SPLITS, SplitConfig, Splits, clip_starts, make_splits

STEP = 3 * 3600.0


def _times(rng: np.random.Generator, n: int, offset_steps: int = 0, gaps: int = 0) -> np.ndarray:
    steps = np.ones(n - 1)
    if gaps:
        steps[rng.choice(n - 1, size=gaps, replace=False)] = rng.integers(2, 6, size=gaps)
    return (offset_steps + np.concatenate([[0], np.cumsum(steps)])) * STEP


def test_clip_starts_skip_gaps():
    times = np.array([0, 1, 2, 3, 5, 6, 7, 8, 9]) * STEP  # frame 4 missing (a gap between 3 and 5)
    assert clip_starts(times, 3, STEP).tolist() == [0, 1, 4, 5, 6]
    assert clip_starts(times, 1, STEP).tolist() == list(range(9))
    assert clip_starts(times[:2], 3, STEP).size == 0


def test_members_split_like_stvd():
    times = {f"{k:04d}": np.arange(20) * STEP for k in range(1, 12)}
    splits = make_splits(times, dict.fromkeys(times, True), 5, STEP, SplitConfig(validation_members=("0011",)))
    assert {m for m, _ in splits.clips["validation"]} == {"0011"}
    assert {m for m, _ in splits.clips["train"]} == {f"{k:04d}" for k in range(1, 11)}
    assert splits.counts() == {"train": 10 * 16, "validation": 16, "test": 0}


def _check_no_leakage(splits: Splits, times: dict[str, np.ndarray], config: SplitConfig, t: int) -> None:
    owners: dict[tuple[str, int], str] = {}
    for split in SPLITS:
        clips = splits.clips[split]
        assert len(set(clips)) == len(clips), "a clip listed twice"
        for member, start in clips:
            frames = times[member][start:start + t]
            assert len(frames) == t and np.all(np.diff(frames) == STEP), "a clip spans a gap"
            for k in range(start, start + t):
                assert owners.setdefault((member, k), split) == split, f"frame {member}:{k} in two splits"
    # A clip belongs to exactly one split.
    all_clips = [c for s in SPLITS for c in splits.clips[s]]
    assert len(all_clips) == len(set(all_clips))
    # Any two frames of different splits of one member are more than the buffer apart.
    if config.buffer_hours and (config.validation_fraction or config.test_fraction):
        for member, member_times in times.items():
            by_split = {s: np.array([member_times[k] for (m, k), o in owners.items() if m == member and o == s])
                        for s in SPLITS}
            for a in SPLITS:
                for b in SPLITS:
                    if a < b and by_split[a].size and by_split[b].size:
                        gap = np.abs(by_split[a][:, None] - by_split[b][None, :]).min()
                        assert gap > config.buffer_hours * 3600.0, (member, a, b, gap)


@pytest.mark.parametrize("seed", range(25))
def test_random_configs_never_share_a_frame(seed):
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 7))
    members = [f"m{k}" for k in range(int(rng.integers(1, 5)))]
    times = {m: _times(rng, int(rng.integers(40, 120)), int(rng.integers(0, 10)), int(rng.integers(0, 4)))
             for m in members}
    listed = list(rng.permutation(members))
    n_val_members = int(rng.integers(0, len(members)))
    validation_members = tuple(listed[:n_val_members])
    config = SplitConfig(
        validation_members=validation_members,
        validation_fraction=float(rng.choice([0.0, 0.1, 0.25])),
        test_fraction=float(rng.choice([0.0, 0.15])),
        block_hours=float(rng.choice([24.0, 48.0])) if rng.random() < 0.6 else None,
        buffer_hours=float(rng.choice([0.0, 3.0, 12.0, 24.0])),
        clip_stride=int(rng.choice([1, 1, 2])),
        seed=seed,
    )
    try:
        splits = make_splits(times, dict.fromkeys(members, True), t, STEP, config)
    except ValueError as err:  # a legitimately impossible config (too few blocks or no training clip)
        assert "blocks" in str(err) or "no training clips" in str(err)
        return
    _check_no_leakage(splits, times, config, t)
    assert all(s % config.clip_stride == 0 for c in splits.clips.values() for _, s in c)
    assert {m for m, _ in splits.clips["validation"]} >= set(validation_members) - {
        m for m in validation_members if clip_starts(times[m], t, STEP).size == 0}


def test_time_blocks_chronological_with_buffer():
    times = {"a": np.arange(200) * STEP}
    config = SplitConfig(validation_fraction=0.2, test_fraction=0.1, buffer_hours=24.0)
    splits = make_splits(times, {"a": True}, 5, STEP, config)
    train = max(s for _, s in splits.clips["train"])
    val = [s for _, s in splits.clips["validation"]]
    test = [s for _, s in splits.clips["test"]]
    assert train + 4 < min(val) and max(val) + 4 < min(test)  # train, then validation, then test
    # 24 h = 8 frames of buffer after each boundary, so the frames are > 24 h apart.
    assert (min(val) - (train + 4)) * 3 > 24 and (min(test) - (max(val) + 4)) * 3 > 24
    _check_no_leakage(splits, times, config, 5)


def test_time_blocks_are_the_same_for_every_member():
    times = {m: np.arange(200) * STEP for m in ("a", "b")}
    config = SplitConfig(validation_fraction=0.3, block_hours=48.0, buffer_hours=6.0, seed=7)
    splits = make_splits(times, dict.fromkeys(times, True), 4, STEP, config)
    for split in SPLITS:
        starts = {m: sorted(s for mm, s in splits.clips[split] if mm == m) for m in times}
        assert starts["a"] == starts["b"]
    assert splits.counts()["validation"] > 0


def test_coarse_only_members_never_train():
    times = {"truth": np.arange(30) * STEP, "coarse-run": np.arange(30) * STEP}
    splits = make_splits(times, {"truth": True, "coarse-run": False}, 5, STEP, SplitConfig())
    assert splits.unassigned_members == ("coarse-run",)
    assert {m for m, _ in splits.clips["train"]} == {"truth"}
    listed = make_splits(times, {"truth": True, "coarse-run": False}, 5, STEP,
                         SplitConfig(test_members=("coarse-run",)))
    assert {m for m, _ in listed.clips["test"]} == {"coarse-run"}


def test_json_round_trip_and_training_frames():
    times = {"a": np.arange(12) * STEP}
    splits = make_splits(times, {"a": True}, 3, STEP, SplitConfig(clip_stride=4))
    again = Splits.from_json(splits.to_json())
    assert again.clips == splits.clips and again.clip_frames == 3
    assert splits.training_frames()["a"].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="both validation and test"):
        SplitConfig(validation_members=("a",), test_members=("a",))
    with pytest.raises(ValueError, match="leaves no time for training"):
        SplitConfig(validation_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="not in the dataset"):
        make_splits({"a": np.arange(10) * STEP}, {"a": True}, 2, STEP, SplitConfig(validation_members=("zz",)))
    with pytest.raises(ValueError, match="too few"):
        make_splits({"a": np.arange(10) * STEP}, {"a": True}, 2, STEP,
                    SplitConfig(validation_fraction=0.5, test_fraction=0.4, block_hours=24.0))
    with pytest.raises(ValueError, match="no training clips"):
        make_splits({"a": np.arange(3) * STEP}, {"a": True}, 5, STEP, SplitConfig())
