"""The files that record a training run beside its checkpoints, kept whole across attempts and resumes.

* ``<output_dir>/train_config.yaml`` — the configuration of the attempt that is training, written
  (atomically) by :class:`ConfigRecord` once training has started: an attempt that fails before (a
  checkpoint that does not fit, a dataset that cannot be read) leaves the previous one in place.
* ``<output_dir>/logs/metrics.csv`` — one row per ``log_metrics`` call (``step`` = 0-based index of the
  optimizer step; train rows, learning rate, validation rows), written by :class:`MetricsLog`. A run
  resumed from a checkpoint after ``start_step`` steps keeps the earlier rows with ``step < start_step``
  and adds its own (rows the interrupted attempt logged after that checkpoint are redone, so dropped):
  the file holds the whole history of the run, before and after every resume. Nothing is written until
  the attempt logs its first row; that first write (and any that adds a column) replaces the file
  atomically, later rows are appended (a line cut short by a kill is not read back as a row).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from downscale.training.config import TrainConfig

LOG_DIR = "logs"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "train_config.yaml"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_history(path: Path, before_step: int) -> list[dict[str, str]]:
    """The rows of a metrics file with ``step < before_step`` (values as written); none when there is no file.
    A last line without its line end (a write cut short) is not a row."""
    if not path.is_file():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        step = row.get("step") or ""
        if step.isdigit() and int(step) < before_step:
            rows.append({k: v for k, v in row.items() if k is not None and v not in (None, "")})
    return rows


class MetricsLog(Logger):
    """CSV logger of ``<output_dir>/logs/metrics.csv`` that keeps the rows before ``start_step`` (module
    docstring); on rank zero only. Columns: ``step`` and every metric logged, sorted by name."""

    def __init__(self, output_dir: str | Path, start_step: int = 0) -> None:
        super().__init__()
        self._dir = Path(output_dir) / LOG_DIR
        self._start_step = start_step
        self._rows: list[dict[str, Any]] | None = None   # history + this attempt's rows, once one is logged
        self._written = 0                                 # rows of self._rows already on disk
        self._columns: list[str] = []                     # the header on disk

    @property
    def name(self) -> str:
        return LOG_DIR

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self._dir.parent)

    @property
    def log_dir(self) -> str:
        return str(self._dir)

    @property
    def save_dir(self) -> str:
        return str(self._dir.parent)

    @property
    def path(self) -> Path:
        return self._dir / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the configuration is ``train_config.yaml`` (:class:`ConfigRecord`)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float | Tensor], step: int | None = None) -> None:
        if self._rows is None:
            self._rows = read_history(self.path, self._start_step)
            self._written = 0
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        self._rows.append({**row, "step": step if step is not None else len(self._rows)})

    @rank_zero_only
    def save(self) -> None:
        """Write the rows logged since the last write (Lightning calls this after every ``log_metrics``):
        the whole file, atomically, the first time and when a column is new; else appended."""
        if self._rows is None or self._written == len(self._rows):
            return
        columns = sorted({k for row in self._rows for k in row})
        rewrite = columns != self._columns
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        if rewrite:
            writer.writeheader()
        writer.writerows(self._rows if rewrite else self._rows[self._written:])
        if rewrite:
            write_atomically(self.path, out.getvalue())
        else:
            with self.path.open("a", newline="") as f:
                f.write(out.getvalue())
        self._columns, self._written = columns, len(self._rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


class ConfigRecord(pl.Callback):
    """Writes ``train_config.yaml`` (rank zero, atomically) when training starts: after the checkpoint was
    restored, so an attempt that fails before keeps the previous record."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            write_atomically(Path(self.config.output_dir) / CONFIG_FILE, self.config.to_yaml())
