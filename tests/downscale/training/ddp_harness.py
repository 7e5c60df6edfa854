"""Test harness: a training run as a separate process, for DDP (each rank its own process) and kill/resume.

Lightning's ``ddp`` strategy starts the other ranks by re-running the command that started rank 0;
run inside pytest that would re-run pytest. This script is the command instead (with the
``__main__`` guard the strategy needs; ``PYTHONPATH`` must name the repository root)::

    python tests/downscale/training/ddp_harness.py --config cfg.yaml --report DIR [--resume] [--step-delay 0.3]

After training, every rank writes ``DIR/rank{r}.json`` (global step, SHA-256 of its live and EMA
weights) and ``DIR/rank{r}.pt`` (both state dicts); rank 0 also exports the bundle. During training
every rank appends one line per optimizer step to ``DIR/batches-rank{r}.jsonl`` — step, members and
start frames of its batch — so a test can check which clips a resumed run trained on.
``--step-delay`` sleeps after each step (to give a test time to kill the process; the numbers are
unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

from downscale.bundle import weights_digest
from downscale.training.config import TrainConfig
from downscale.training.trainer import export_module, fit


class BatchRecorder(pl.Callback):
    """Appends ``{"step", "member", "start"}`` of every trained batch to a JSON-lines file (flushed)."""

    def __init__(self, path: Path, delay: float = 0.0) -> None:
        self.path, self.delay = path, delay

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: dict[str, Any], batch_idx: int) -> None:
        line = {"step": trainer.global_step, "member": batch["member"].tolist(), "start": batch["start"].tolist()}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        if self.delay:
            time.sleep(self.delay)


def main(argv: list[str] | None = None) -> int:
    """Train ``--config``, then write the per-rank reports into ``--report``; exit code 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="TrainConfig as JSON or YAML")
    p.add_argument("--report", required=True, help="folder for per-rank reports")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--step-delay", type=float, default=0.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = TrainConfig.model_validate(yaml.safe_load(Path(args.config).read_text()))
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("LOCAL_RANK", 0))  # set for the ranks Lightning launches; rank 0 has none
    recorder = BatchRecorder(report / f"batches-rank{rank}.jsonl", args.step_delay)
    trainer, module = fit(config, resume=args.resume, callbacks=[recorder])
    r = trainer.global_rank
    live = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    ema = {k: v.detach().cpu() for k, v in module.ema.shadow.items()}
    torch.save({"live": live, "ema": ema}, report / f"rank{r}.pt")
    (report / f"rank{r}.json").write_text(json.dumps({
        "rank": r, "world_size": trainer.world_size, "global_step": trainer.global_step,
        "live_sha256": weights_digest(live), "ema_sha256": weights_digest(ema),
        "strategy": type(trainer.strategy).__name__,
    }))
    if trainer.is_global_zero:
        export_module(module, config.bundle_path)
    trainer.strategy.barrier()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
