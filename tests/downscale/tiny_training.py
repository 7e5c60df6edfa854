"""The small synthetic training set-up of the training and inference tests (imported by name: pytest puts
``tests/downscale`` on ``sys.path`` for its conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from data_catalog.catalog import load_catalog
from data_catalog.prepare import PrepareConfig, prepare_dataset
from data_catalog.synthetic import generate_synthetic, preset
from downscale.training.config import TrainConfig


def prepare_tiny_dataset(root: str | Path, days: float = 2, clip_frames: int = 3, coarse_n: int = 4) -> Path:
    """Synthetic ``tests`` preset (2 members, factor 4; C4 → C16 by default) prepared under ``root`` with
    member 0002 held out for validation; returns the prepared dataset's path."""
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
