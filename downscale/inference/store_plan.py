"""Planning an output store's work: the work items, the plan that lists them, and which are done or left.

A :class:`WorkItem` is one time range within one time block (one shard along ``time``) × one block of
``member_block`` members, so concurrent writers never touch the same file. The plan and the done-markers
live in the store's bookkeeping folder (plain JSON, written atomically)::

    <store>/.downscale/plan.json           fingerprint, time_ranges, member_blocks (grown_from once it grew)
    <store>/.downscale/items/<key>.json    one marker per written item, renamed into place after its data
    <store>/.downscale/claims/<key>.lock   while a process writes the item (downscale.inference.store_locks)

A crash leaves an item without its marker, so a rerun redoes exactly the missing items. The functions here
read and write only these files; :mod:`downscale.inference.store` checks the store before calling them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from downscale.inference.store_schema import OutputSpec

BOOKKEEPING, PLAN, ITEMS = ".downscale", "plan.json", "items"
TMP_SUFFIX = ".tmp"


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


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(json.dumps(content, sort_keys=True))
    os.replace(tmp, path)


def read_plan(root: Path) -> dict[str, Any]:
    """The store's plan (``fingerprint``, ``time_ranges``, ``member_blocks``; ``grown_from`` once it grew),
    written at creation and rewritten when the store grows."""
    return json.loads((root / BOOKKEEPING / PLAN).read_text())


def write_plan(root: Path, fingerprint: str, ranges: list[tuple[int, int]], member_blocks: int,
               grown_from: int | None = None) -> None:
    """``grown_from``: frames the store held before it grew into this plan (absent for a new store)."""
    plan = {"fingerprint": fingerprint, "time_ranges": [list(r) for r in ranges], "member_blocks": member_blocks}
    write_json(root / BOOKKEEPING / PLAN, plan | ({"grown_from": grown_from} if grown_from is not None else {}))


def write_new_plan(root: Path, spec: OutputSpec) -> None:
    """The plan of a new store laid out for ``spec`` (:func:`plan_items`)."""
    write_plan(root, spec.fingerprint, time_ranges(0, len(spec.times), spec.time_block), spec.n_member_blocks)


def planned_length(root: Path) -> int:
    """Frames the store's plan covers."""
    return max(stop for _, stop in read_plan(root)["time_ranges"])


def planned_items(path: str | os.PathLike[str]) -> list[WorkItem]:
    """Every work item of the store's plan, written or not, in time order."""
    plan = read_plan(Path(path))
    return _items([tuple(r) for r in plan["time_ranges"]], plan["member_blocks"])


def marked_items(root: Path) -> set[str]:
    """Keys of the items whose marker exists (their data is fully written)."""
    return {p.stem for p in (root / BOOKKEEPING / ITEMS).glob("*.json")}


def is_marked(root: Path, item: WorkItem) -> bool:
    """Whether ``item`` has its marker (its data is fully written)."""
    return (root / BOOKKEEPING / ITEMS / f"{item.key}.json").exists()


def unmarked_items(root: Path) -> list[WorkItem]:
    """The items of the store's plan that have no marker yet, in time order."""
    done = marked_items(root)
    return [i for i in planned_items(root) if i.key not in done]


def mark_done(root: Path, spec: OutputSpec, item: WorkItem) -> None:
    """The item's marker: written after its data, so its presence means the data is complete."""
    ts, ms = item.frames, item.member_slice(spec)
    write_json(root / BOOKKEEPING / ITEMS / f"{item.key}.json",
               {"key": item.key, "time": [ts.start, ts.stop], "member": [ms.start, ms.stop],
                "fingerprint": spec.fingerprint, "written": datetime.now(UTC).isoformat(timespec="seconds")})
