"""Checkpoints that are never half-written, and the callbacks that decide when to write them.

:class:`AtomicCheckpointIO` serializes into a temporary file in the checkpoint's own directory,
flushes it to disk, and only then renames it over the target (``os.replace`` is atomic on POSIX
within one file system). A process killed or failing during a save leaves the previous checkpoint
exactly as it was; a failing save also removes its temporary file (a SIGKILL cannot, so
:func:`remove_stale_temporaries` clears leftovers before training starts). Checkpoints are read with
``weights_only=True`` only (:func:`load_checkpoint`): a planted pickle never runs.

:func:`checkpoint_callbacks` gives the three kinds of checkpoint the training writes into
``<output_dir>/checkpoints``:

* ``last.ckpt`` every ``checkpoint.every_n_steps`` optimizer steps — what resume starts from;
* ``best-crps.ckpt`` — lowest validation fair CRPS (``val/crps_fair``);
* ``best-tail.ckpt`` — lowest tail error (``val/tail_error``, mean |q_pred/q_true − 1| at the 99.9th
  and 99.99th percentiles).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST_CRPS = "best-crps.ckpt"
BEST_TAIL = "best-tail.ckpt"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, but the file at ``path`` is either the old one or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files left by a process killed while saving; returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(directory.glob(f"{TEMP_PREFIX}*"))
    for p in stale:
        p.unlink(missing_ok=True)
        log.info("removed partial checkpoint %s", p)
    return stale


def load_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A checkpoint unpickled with ``weights_only=True`` — passed explicitly, so that no environment variable
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) turns it off: tensors and plain containers only; a file that would
    run code is refused with ``pickle.UnpicklingError``. ``mmap``: map the tensors instead of reading them."""
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO writing each checkpoint atomically (temp file in the same dir → fsync → rename)
    and reading every checkpoint with :func:`load_checkpoint` (``weights_only=True``, whatever is asked)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any = "cpu",
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)


def checkpoint_callbacks(dirpath: str | Path, every_n_steps: int, keep_periodic: bool = False) -> list[ModelCheckpoint]:
    """``last.ckpt`` every ``every_n_steps`` steps (plus ``step=N.ckpt`` files if ``keep_periodic``),
    ``best-crps.ckpt`` and ``best-tail.ckpt`` after each validation."""
    dirpath = str(dirpath)
    periodic = ModelCheckpoint(
        dirpath=dirpath, filename="step={step:08d}", auto_insert_metric_name=False,
        every_n_train_steps=every_n_steps, save_last=True, save_top_k=-1 if keep_periodic else 0,
        enable_version_counter=False,
    )
    best = [
        ModelCheckpoint(dirpath=dirpath, filename=Path(name).stem, monitor=metric, mode="min", save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False, save_last=False)
        for name, metric in ((BEST_CRPS, "val/crps_fair"), (BEST_TAIL, "val/tail_error"))
    ]
    return [periodic, *best]
