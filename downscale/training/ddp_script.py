"""A training run as a separate process: for DDP (each rank its own process) and kill/resume tests.

Lightning's ``ddp`` strategy starts the other ranks by re-running the command that started rank 0;
run inside pytest that would re-run pytest. This script is the command instead (with the
``__main__`` guard the strategy needs)::

    python -m downscale.training.ddp_script --config cfg.json --report DIR [--resume] [--step-delay 0.3]

After training, every rank writes ``DIR/rank{r}.json`` (global step, SHA-256 of its live and EMA
weights) and ``DIR/rank{r}.pt`` (both state dicts); rank 0 also exports the bundle. During training
every rank appends one line per optimizer step to ``DIR/batches-rank{r}.jsonl`` — step, members and
start frames of its batch — so a test can check which clips a resumed run trained on.
``--step-delay`` sleeps after each step (to give a test time to kill the process; the numbers are
unchanged).

:func:`prepare_tiny_dataset` and :func:`tiny_config` build the small synthetic set-up the tests use.
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


def prepare_tiny_dataset(root: str | Path, days: float = 2, clip_frames: int = 3, coarse_n: int = 4) -> Path:
    """Synthetic ``tests`` preset (2 members, factor 4; C4 → C16 by default) prepared with member 0002
    held out for validation."""
    from data_catalog.catalog import load_catalog
    from data_catalog.prepare import PrepareConfig, prepare_dataset
    from data_catalog.synthetic import generate_synthetic, preset

    root = Path(root)
    layout = generate_synthetic(preset("tests", days=days, coarse_n=coarse_n), root / "synthetic")
    catalog = root / "synthetic" / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(layout.catalog_document("tests")))
    config = PrepareConfig(clip_frames=clip_frames, splits={"validation_members": ["0002"]})
    return prepare_dataset(load_catalog(catalog), root / "prepared", config).path


def tiny_config(dataset: str | Path, output_dir: str | Path, **overrides: Any) -> TrainConfig:
    """A CPU training of the ``tiny`` network: a few steps, small validation, deterministic."""
    doc: dict[str, Any] = {
        "dataset": str(dataset), "output_dir": str(output_dir), "network": {"preset": "tiny"},
        "max_steps": 6, "batch_size": 2, "seed": 7, "log_every_n_steps": 1,
        "optimizer": {"lr": 1e-3, "warmup_steps": 2},
        "validation": {"every_n_steps": 3, "ensemble_size": 2, "members_per_batch": 2, "sampler": {"kind": "dpmpp_2m", "num_steps": 2},
                       "max_batches": 1},
        "hardware": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "deterministic": True},
        "checkpoint": {"every_n_steps": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return TrainConfig.model_validate(doc)


def main(argv: list[str] | None = None) -> int:
    from downscale.training.trainer import export_module, fit

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
