"""Train / validation / test splits of clips, by ensemble member and/or contiguous time blocks, without leakage.

A *clip* is ``T`` consecutive frames ``start … start + T − 1`` of one member, with exactly the expected
time step between them (a clip never spans a gap in the time axis). Splits are made of clips:

* **By member** (as in STVD: members 1–10 train, 11 validation): every clip of a member listed in
  ``validation_members`` / ``test_members`` belongs to that split.
* **By time block**, for the remaining members with a fine target: the time line (shared by all
  members, counted from the earliest frame) is cut into contiguous blocks of ``block_hours``; a seeded
  permutation gives ``validation_fraction`` of the blocks to validation and ``test_fraction`` to test,
  the rest to training. Without ``block_hours`` there is one block per split, in time order
  (train, then validation, then test). Every frame gets the split of its block.

No leakage, by construction:

1. a clip belongs to a split only if **all** its frames carry that split's label — clips straddling a
   block boundary are dropped, so a clip belongs to exactly one split (or none);
2. a frame has one label, so no frame is shared by clips of different splits;
3. a **buffer**: frames in the first ``buffer_hours`` after a boundary between blocks of different
   splits carry no label, so any two frames of clips of different splits (same member) are more than
   ``buffer_hours`` apart — weather is correlated over a day or so (default 24 h).

Members without a fine target (coarse runs) take part only if listed by member (validation or test);
they are never training data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

SPLITS = ("train", "validation", "test")
_NO_SPLIT = -1


class SplitConfig(BaseModel):
    """How clips are split (module docstring). Fractions are of the time line of the non-listed members."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validation_members: tuple[str, ...] = ()
    test_members: tuple[str, ...] = ()
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    block_hours: float | None = Field(None, gt=0, description="length of a time block; None: one block per split")
    buffer_hours: float = Field(24.0, ge=0, description="gap without any clip after a boundary between splits")
    clip_stride: int = Field(1, ge=1, description="keep clip starts whose frame index is a multiple of this")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> "SplitConfig":
        both = set(self.validation_members) & set(self.test_members)
        if both:
            raise ValueError(f"members {sorted(both)} are listed for both validation and test")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"validation_fraction + test_fraction = {self.validation_fraction + self.test_fraction:g} "
                "leaves no time for training (must be < 1)"
            )
        return self

    @property
    def by_time(self) -> bool:
        return self.validation_fraction > 0 or self.test_fraction > 0


@dataclass(frozen=True)
class Splits:
    """Clips ``(member, start)`` of each split, for clips of ``clip_frames`` frames."""

    clip_frames: int
    clips: dict[str, list[tuple[str, int]]]
    unassigned_members: tuple[str, ...] = ()
    config: dict = field(default_factory=dict)

    def frames(self, split: str) -> set[tuple[str, int]]:
        """Every ``(member, frame index)`` used by a clip of ``split``."""
        return {(m, s + k) for m, s in self.clips.get(split, []) for k in range(self.clip_frames)}

    def counts(self) -> dict[str, int]:
        return {name: len(self.clips.get(name, [])) for name in SPLITS}

    def training_frames(self) -> dict[str, np.ndarray]:
        """Member → sorted frame indices covered by training clips (what normalization statistics see)."""
        out: dict[str, set[int]] = {}
        for m, s in self.clips.get("train", []):
            out.setdefault(m, set()).update(range(s, s + self.clip_frames))
        return {m: np.array(sorted(v), dtype=np.int64) for m, v in out.items()}

    def to_json(self) -> str:
        return json.dumps({"clip_frames": self.clip_frames, "config": self.config,
                           "unassigned_members": list(self.unassigned_members),
                           "counts": self.counts(),
                           "clips": {k: [[m, int(s)] for m, s in v] for k, v in self.clips.items()}}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Splits":
        doc = json.loads(text)
        return cls(clip_frames=int(doc["clip_frames"]),
                   clips={k: [(str(m), int(s)) for m, s in v] for k, v in doc["clips"].items()},
                   unassigned_members=tuple(doc.get("unassigned_members", ())), config=doc.get("config", {}))


def clip_starts(times: np.ndarray, clip_frames: int, step: float) -> np.ndarray:
    """Frame indices where a clip of ``clip_frames`` frames spaced exactly ``step`` apart starts.

    ``times`` are sorted, unique times in seconds; a clip spanning a gap (a step > ``step``) is left out.
    """
    times = np.asarray(times, dtype=np.float64)
    n = times.size - clip_frames + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    span = times[clip_frames - 1:] - times[:n]
    return np.flatnonzero(np.isclose(span, (clip_frames - 1) * step, rtol=0, atol=0.5)).astype(np.int64)


def time_labels(times: np.ndarray, t0: float, t1: float, config: SplitConfig) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test, −1 none) of each time (s) on the time line ``[t0, t1]``."""
    times = np.asarray(times, dtype=np.float64)
    if not config.by_time:
        return np.zeros(times.shape, dtype=np.int64)
    span = max(t1 - t0, 1.0)
    if config.block_hours is None:
        # One block per split, in time order: train | validation | test.
        fractions = np.array([1.0 - config.validation_fraction - config.test_fraction, 1.0 - config.test_fraction])
        labels = np.searchsorted(fractions, (times - t0) / span, side="right")
        labels = np.minimum(labels, 2 if config.test_fraction else 1)  # the last instant: the last split
        boundaries = np.unique(t0 + fractions[fractions < 1.0] * span)
    else:
        block = config.block_hours * 3600.0
        n_blocks = int(np.floor(span / block)) + 1
        n_val = _n_blocks(config.validation_fraction, n_blocks)
        n_test = _n_blocks(config.test_fraction, n_blocks)
        if n_val + n_test >= n_blocks:
            raise ValueError(
                f"the time line ({span / 3600:g} h) has only {n_blocks} blocks of {config.block_hours:g} h: too few "
                f"for {n_val} validation + {n_test} test blocks and some training; use shorter blocks"
            )
        order = np.random.default_rng(config.seed).permutation(n_blocks)
        block_label = np.zeros(n_blocks, dtype=np.int64)
        block_label[order[:n_val]] = 1
        block_label[order[n_val:n_val + n_test]] = 2
        labels = block_label[np.floor((times - t0) / block).astype(np.int64)]
        boundaries = t0 + (np.flatnonzero(block_label[1:] != block_label[:-1]) + 1) * block
    buffer = config.buffer_hours * 3600.0
    for b in boundaries:
        labels = np.where((times >= b) & (times < b + buffer), _NO_SPLIT, labels)
    return labels


def _n_blocks(fraction: float, n_blocks: int) -> int:
    return 0 if fraction == 0 else max(1, int(round(fraction * n_blocks)))


def make_splits(
    times: Mapping[str, np.ndarray],
    has_target: Mapping[str, bool],
    clip_frames: int,
    step_seconds: float,
    config: SplitConfig,
) -> Splits:
    """Assign every valid clip of every member to at most one split (module docstring).

    Args:
        times: member → its sorted, unique times in seconds since a common reference.
        has_target: member → whether it has the fine target (coarse-only members never train).
        clip_frames: frames per clip ``T``.
        step_seconds: the time step; clips never span a larger step (a gap).
        config: the split settings.
    """
    unknown = [m for m in (*config.validation_members, *config.test_members) if m not in times]
    if unknown:
        raise ValueError(f"split config names members {unknown} that are not in the dataset "
                         f"(members: {', '.join(times)})")
    by_member = {**{m: 1 for m in config.validation_members}, **{m: 2 for m in config.test_members}}
    timed = [m for m in times if m not in by_member and has_target[m]]
    unassigned = tuple(m for m in times if m not in by_member and not has_target[m])
    all_times = [np.asarray(times[m], dtype=np.float64) for m in timed if len(times[m])]
    t0 = min((t[0] for t in all_times), default=0.0)
    t1 = max((t[-1] for t in all_times), default=0.0)

    clips: dict[str, list[tuple[str, int]]] = {name: [] for name in SPLITS}
    for member, member_times in times.items():
        if member in unassigned:
            continue
        member_times = np.asarray(member_times, dtype=np.float64)
        starts = clip_starts(member_times, clip_frames, step_seconds)
        starts = starts[starts % config.clip_stride == 0]
        if member in by_member:
            clips[SPLITS[by_member[member]]].extend((member, int(s)) for s in starts)
            continue
        labels = time_labels(member_times, t0, t1, config)
        for s in starts:
            window = labels[s:s + clip_frames]
            if window[0] != _NO_SPLIT and np.all(window == window[0]):
                clips[SPLITS[int(window[0])]].append((member, int(s)))
    if not clips["train"]:
        raise ValueError(
            f"no training clips of {clip_frames} frames: members with a target: {timed or 'none'}; "
            "check the split settings, the clip length and the time axes (clips never span a gap)"
        )
    return Splits(clip_frames=clip_frames, clips=clips, unassigned_members=unassigned,
                  config=config.model_dump(mode="json"))
