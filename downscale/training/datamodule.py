"""The Lightning DataModule over a prepared dataset: train, validation and test clip loaders.

* Seeded shuffling (:class:`~data_catalog.clips.ClipSampler`, a ``DistributedSampler``): the order of
  an epoch depends only on ``seed`` and the epoch; under DDP each rank gets its share (the sampler is
  built with the trainer's ``num_replicas``/``rank``, so Lightning keeps it as it is).
* ``num_workers`` with ``persistent_workers`` (default when workers are used), ``pin_memory`` when CUDA
  is available; each worker opens the Zarr stores itself, lazily.
* Resume: the train loader is *stateful* — Lightning saves its ``state_dict`` (epoch and clips of this
  rank consumed in the epoch, read from the trainer's progress counters, so batches prefetched but not
  trained on do not count) in every checkpoint and restores it before iterating, and the loader skips
  what was consumed. A run resumed mid-epoch sees exactly the clips the interrupted run had not seen.
  The DataModule's own ``state_dict`` records the dataset fingerprint and seed, and warns when a
  checkpoint is resumed on other data.

Example::

    dm = DownscalingDataModule("prepared/", batch_size=2, num_workers=2, mode="patch", patch_size=64, halo=8)
    trainer.fit(model, datamodule=dm, ckpt_path="last")
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from data_catalog.clips import ClipDataset, ClipSampler, collate_clips
from data_catalog.prepare import PreparedDataset

log = logging.getLogger(__name__)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ClipSampler` whose data position is saved and restored.

    ``position()`` returns ``(epoch, clips consumed in that epoch)``; without it the loader counts the
    batches it has handed out itself (exact when nothing prefetches ahead of the consumer).
    """

    def __init__(self, *args: Any, position: Callable[[], tuple[int, int]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.position = position
        self._delivered = 0

    def __iter__(self) -> Iterator[Any]:
        self._delivered = 0
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        if not isinstance(self.sampler, ClipSampler):  # e.g. Lightning's overfit_batches replaced it
            return {}
        if self.position is not None:
            epoch, consumed = self.position()
        else:
            epoch, consumed = self.sampler.epoch, self._delivered * (self.batch_size or 1)
        return {"epoch": int(epoch), "consumed": int(consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not state or not isinstance(self.sampler, ClipSampler):
            log.warning("no data position restored (state %s, sampler %s)", state, type(self.sampler).__name__)
            return
        self.sampler.resume(int(state["epoch"]), int(state["consumed"]))
        log.info("data position restored: epoch %d after %d clips", state["epoch"], state["consumed"])


class DownscalingDataModule(pl.LightningDataModule):
    """Clip loaders of a prepared dataset (``data_catalog.prepare``) for a Lightning ``Trainer``.

    Args:
        prepared: folder of a complete prepared dataset.
        batch_size: clips per training batch (per device); ``eval_batch_size`` for validation/test.
        num_workers: DataLoader worker processes.
        mode, patch_size, halo: what an item holds (see :class:`data_catalog.clips.ClipDataset`).
        seed: shuffling and patch positions.
        persistent_workers: keep workers between epochs (default: when ``num_workers > 0``).
        pin_memory: default: when CUDA is available.
        drop_last: drop the last incomplete training batch.
    """

    def __init__(self, prepared: str | Path, batch_size: int = 1, eval_batch_size: int | None = None,
                 num_workers: int = 0, mode: Literal["cube", "patch"] = "cube", patch_size: int | None = None,
                 halo: int = 0, seed: int = 0, persistent_workers: bool | None = None,
                 pin_memory: bool | None = None, prefetch_factor: int | None = None, drop_last: bool = True):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.path = Path(prepared)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.mode, self.patch_size, self.halo, self.seed = num_workers, mode, patch_size, halo, seed
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor, self.drop_last = prefetch_factor, drop_last
        self.prepared: PreparedDataset | None = None
        self.datasets: dict[str, ClipDataset] = {}

    # ---- Lightning hooks ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.prepared is None:
            self.prepared = PreparedDataset.open(self.path)
        for split in ("train", "validation", "test"):
            if split not in self.datasets:
                self.datasets[split] = ClipDataset(self.prepared, split, self.mode, self.patch_size, self.halo,
                                                   self.seed)

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader("train", shuffle=True, batch_size=self.batch_size, drop_last=self.drop_last,
                            position=self._train_position if self._attached() else None)

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader("validation", shuffle=False, batch_size=self.eval_batch_size, drop_last=False)

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size, drop_last=False)

    def state_dict(self) -> dict[str, Any]:
        fingerprint = self.prepared.manifest.fingerprint if self.prepared else None
        return {"fingerprint": fingerprint, "seed": self.seed, "mode": self.mode, "patch_size": self.patch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.setup()
        now = self.prepared.manifest.fingerprint
        if state.get("fingerprint") not in (None, now):
            warnings.warn(f"resuming on prepared data {now[:12]} but the checkpoint was trained on "
                          f"{str(state['fingerprint'])[:12]}: the data position may not mean the same clips",
                          stacklevel=2)
        if state.get("seed") != self.seed:
            warnings.warn(f"resuming with seed {self.seed}, the checkpoint used {state.get('seed')}: "
                          "the clip order differs from the interrupted run", stacklevel=2)

    # ---- internals -----------------------------------------------------------------------------------------
    @property
    def static_features(self) -> tuple[str, ...]:
        self.setup()
        return self.prepared.manifest.static_features

    def _attached(self) -> bool:
        return getattr(self, "trainer", None) is not None

    def _replicas(self) -> tuple[int, int]:
        kwargs = self.trainer.distributed_sampler_kwargs if self._attached() else None
        if kwargs:
            return int(kwargs["num_replicas"]), int(kwargs["rank"])
        return 1, 0

    def _train_position(self) -> tuple[int, int]:
        """(epoch, clips consumed by this rank in it) from the trainer's progress counters."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.ready * self.batch_size

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool,
                position: Callable[[], tuple[int, int]] | None = None) -> ResumableDataLoader:
        self.setup()
        dataset = self.datasets[split]
        replicas, rank = self._replicas()
        sampler = ClipSampler(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=self.seed,
                              drop_last=drop_last and replicas > 1, fixed_epoch=not shuffle)
        workers = self.num_workers
        extra = {"prefetch_factor": self.prefetch_factor} if workers and self.prefetch_factor else {}
        return ResumableDataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_clips,
            pin_memory=self.pin_memory, persistent_workers=self.persistent_workers and workers > 0,
            drop_last=drop_last, position=position, **extra,
        )
