"""Where ``--resume`` continues from: the newest checkpoint of a run that loads, and loads safely.

    start = resume_point(config)      # ResumePoint(path, step), None (nothing to resume), or ResumeError

The candidates are every checkpoint of the run: ``checkpoints/last.ckpt``, the periodic
``checkpoints/step=N.ckpt`` (``checkpoint.keep_periodic``), ``checkpoints/best-*.ckpt`` and SLURM's
``hpc_ckpt_N.ckpt`` in ``output_dir``. Each is opened as :func:`load_checkpoint` opens it — memory-mapped
and ``weights_only=True`` (tensors and plain containers; never code, whatever
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says) — and must hold a ``global_step``. The intact one with the
most steps wins (ties: ``last.ckpt`` or the newer ``hpc_ckpt``, then a periodic one, then a best one).
Every checkpoint passed over is logged with why (truncated, not a checkpoint, refused by the safe
loader); when checkpoints exist but none is intact, :class:`ResumeError` says so instead of starting
afresh over them.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

from downscale.training.checkpointing import LAST, load_checkpoint
from downscale.training.config import TrainConfig

log = logging.getLogger(__name__)

#: Tie-break among checkpoints of the same step: the designated resume points first.
_PRIORITY = {"last": 2, "hpc": 2, "periodic": 1, "best": 0}


class ResumeError(ValueError):
    """A resume that cannot continue: the run's checkpoints exist but none of them is intact."""


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resumed run starts from: ``path`` after ``step`` optimizer steps."""

    path: Path
    step: int


def _kind(path: Path) -> str:
    if path.name == LAST:
        return "last"
    if path.name.startswith("hpc_ckpt_"):
        return "hpc"
    return "best" if path.name.startswith("best-") else "periodic"


def checkpoint_candidates(config: TrainConfig) -> list[Path]:
    """Every checkpoint file of the run (see the module docstring), in no particular order."""
    ckpts = config.checkpoint_dir
    hpc = [p for p in Path(config.output_dir).glob("hpc_ckpt_*.ckpt") if re.fullmatch(r"hpc_ckpt_\d+\.ckpt", p.name)]
    found = [ckpts / LAST, *ckpts.glob("step=*.ckpt"), *ckpts.glob("best-*.ckpt"), *hpc]
    return [p for p in found if p.is_file()]


def checkpoint_step(path: Path) -> int:
    """The optimizer steps behind checkpoint ``path``; ``ValueError`` (saying why) when it cannot be resumed
    from: unreadable, truncated, refused by the safe loader, or not a training checkpoint."""
    try:
        ckpt = load_checkpoint(path, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        text = str(err).strip()
        first_sentence = text.splitlines()[0].split(". ")[0] if text else "no message"
        raise ValueError(f"unreadable ({type(err).__name__}: {first_sentence})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("global_step"), int) or "state_dict" not in ckpt:
        raise ValueError("not a training checkpoint (no global_step or state_dict)")
    return ckpt["global_step"]


def resume_point(config: TrainConfig) -> ResumePoint | None:
    """The newest intact checkpoint of the run (module docstring); None when the run has no checkpoint."""
    candidates = checkpoint_candidates(config)
    intact: list[tuple[int, int, float, Path]] = []
    passed_over: list[str] = []
    for path in candidates:
        try:
            step = checkpoint_step(path)
        except ValueError as why:
            passed_over.append(f"{path.name}: {why}")
            continue
        intact.append((step, _PRIORITY[_kind(path)], path.stat().st_mtime, path))
    if not candidates:
        return None
    if not intact:
        raise ResumeError(f"cannot resume {config.output_dir}: none of its checkpoints is intact "
                          f"({'; '.join(passed_over)}); move them away to start afresh")
    step, _, _, path = max(intact)
    if passed_over:
        log.warning("resuming from %s (step %d), the newest intact checkpoint; passed over: %s",
                    path, step, "; ".join(passed_over))
    else:
        log.info("resuming from %s (step %d)", path, step)
    return ResumePoint(path, step)
