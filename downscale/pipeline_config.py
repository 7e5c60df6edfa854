"""One configuration for the whole pipeline, shared by the ``downscale`` CLI and the Prefect flows.

``downscale config --preset demo`` prints an embedded preset's complete config (:func:`preset_yaml`:
every field with its value, defaults included); ``docs/pipeline.md`` shows the demo's and explains the
sections. A file may omit any section or field that has a default: ``workdir`` and ``data`` (or the
default synthetic ``demo``) suffice, and the paths of ``train`` and ``generate`` follow ``workdir``.

Paths are plain strings/paths so the object travels as Prefect flow parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_catalog.errors import read_yaml_mapping, validated
from data_catalog.prepare import PrepareConfig
from downscale.inference.config import GenerateConfig
from downscale.training.config import TrainConfig


class DataSource(BaseModel):
    """Where the data come from: a catalog file, or a synthetic preset generated into the workdir."""

    model_config = ConfigDict(extra="forbid")

    catalog: Path | None = None
    synthetic: str | None = None
    synthetic_overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSource:
        if (self.catalog is None) == (self.synthetic is None):
            raise ValueError("data: give exactly one of 'catalog' (a catalog YAML) or 'synthetic' (a preset name)")
        return self


def _mapping(doc: dict, key: str) -> dict | None:
    """``doc[key]`` as a dict (absent or null: empty); None if it is something else."""
    value = doc.get(key) or {}
    return value if isinstance(value, dict) else None


class EvaluateSettings(BaseModel):
    """The last stage: diagnostics of the generated store (``downscale evaluate``) and the HTML report."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    n_boot: int = Field(200, ge=10, description="bootstrap resamples of the return-level confidence intervals")


class PipelineConfig(BaseModel):
    """The pipeline's stages and where they write (a complete YAML: ``downscale config --preset demo``)."""

    model_config = ConfigDict(extra="forbid")

    workdir: Path
    data: DataSource = Field(default_factory=lambda: DataSource(synthetic="demo"))
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    train: TrainConfig
    generate: GenerateConfig
    evaluate: EvaluateSettings = Field(default_factory=lambda: EvaluateSettings())
    overwrite: bool = Field(False, description="replace a finished stage output whose settings or inputs changed "
                                               "(otherwise the pipeline stops naming what changed)")

    @model_validator(mode="before")
    @classmethod
    def _paths_from_workdir(cls, doc: Any) -> Any:
        """Paths that follow from ``workdir`` (train dataset/output; generate bundle/catalog/member/output)
        unless the file gives them."""
        if not isinstance(doc, dict) or "workdir" not in doc:
            return doc
        workdir, doc = Path(doc["workdir"]), dict(doc)
        train, generate = _mapping(doc, "train"), _mapping(doc, "generate")
        if train is None or generate is None:
            return doc  # not mappings: left for validation to refuse
        doc["train"] = train = {"dataset": workdir / "prepared", "output_dir": workdir / "train", **train}
        splits = (_mapping(doc, "prepare") or {}).get("splits") or {}
        held_out = [*(splits.get("validation_members") or ()), *(splits.get("test_members") or ())]
        member = generate.get("member") or (held_out[0] if held_out else None)
        defaults = {"bundle": Path(train["output_dir"]) / "model.bundle.safetensors",
                    "catalog": (_mapping(doc, "data") or {}).get("catalog") or workdir / "data" / "catalog.yaml",
                    "output": workdir / "outputs" / f"{member}.zarr", **({"member": member} if member else {})}
        doc["generate"] = {**defaults, **generate}
        return doc

    @property
    def synthetic_root(self) -> Path:
        return Path(self.workdir) / "data"

    @property
    def catalog_path(self) -> Path:
        return Path(self.data.catalog) if self.data.catalog else self.synthetic_root / "catalog.yaml"

    @property
    def prepared_dir(self) -> Path:
        return Path(self.train.dataset)

    @property
    def diagnostics_dir(self) -> Path:
        return Path(self.workdir) / "diagnostics"

    @property
    def report_path(self) -> Path:
        return Path(self.workdir) / "report.html"

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        """Read a pipeline YAML; errors name the file and each bad field's dotted path."""
        return validated(cls, read_yaml_mapping(path, "pipeline config"), f"pipeline config {path}")

    def to_yaml(self) -> str:
        """Every field with its value (defaults included) as YAML that :meth:`from_yaml` reads back into an
        equal config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


#: The training, validation and generation settings of each embedded preset (``demo_config``).
_PRESET_SETTINGS: dict[str, dict[str, Any]] = {
    # C8 → C32, 4 days: seconds; the tests.
    "tests": {"held_out": "0002", "network": "tiny", "max_steps": 20, "warmup": 5, "lr": 1e-3, "validate_every": 20,
              "ensemble_size": 2, "val_batches": 1, "checkpoint_every": 10, "num_workers": 0, "log_every": 5,
              "members": 2, "end": None, "time_block": 16, "workers": 1,
              "sampler": {"kind": "dpmpp_2m", "num_steps": 3}, "ensemble_qm_clips": 0},
    # C12 → C96, 60 days: `make demo`, minutes on 2 cores; ten days of the held-out member, 4 members.
    "demo": {"held_out": "0003", "network": "demo", "max_steps": 240, "warmup": 50, "lr": 1e-3, "validate_every": 80,
             "ensemble_size": 4, "val_batches": 4, "checkpoint_every": 80, "num_workers": 2, "log_every": 25,
             "members": 4, "end": "2016-08-15", "time_block": 40, "workers": 2, "sampler": None, "ensemble_qm_clips": 0},
    # C8 → C64, 60 days: bench/skill.py, training sized to 45 min on 2 cores (3000 steps: train stage 2577 s on
    # 2026-12-07 at learning rate 1e-3, the ensemble's quantile-mapping table included; the rate does not change a
    # step's cost); twenty days scored with 8 members. The `demo` network with the learned seam transform on all
    # twelve cube edges (on the turned ones it took the seam ratio from 1.16 to 1.07× the truth's, on the straight
    # ones from 1.11 to 1.05), learning rate 1.5e-3 (the sampled spread 0.944 → 0.953 with seed 0; docs/skill.md).
    "skill": {"held_out": "0003", "network": "demo",
              "network_overrides": {"seam_transform": True, "seam_transform_edges": "all"},
              "max_steps": 3000, "warmup": 100, "lr": 1.5e-3, "validate_every": 400, "ensemble_size": 4,
              "val_batches": 4, "checkpoint_every": 200, "num_workers": 2, "log_every": 50, "members": 8,
              "end": "2016-08-25", "time_block": 40, "workers": 2, "sampler": None, "ensemble_qm_clips": 32},
    # C8 → C32, 365 days: bench/year.py, training ≈ 12 min on 2 quiet cores; the held-out member's whole year
    # (grown month by month by the benchmark), 4 members.
    "year": {"held_out": "0003", "network": "demo", "max_steps": 1200, "warmup": 100, "lr": 5e-4,
             "validate_every": 400, "ensemble_size": 4, "val_batches": 4, "checkpoint_every": 200, "num_workers": 2,
             "log_every": 50, "members": 4, "end": None, "time_block": 40, "workers": 2, "sampler": None,
             "ensemble_qm_clips": 0},
}


def demo_config(workdir: str | Path, preset: str = "demo") -> PipelineConfig:
    """The embedded default (``demo``), the test-sized ``tests`` and the ``skill`` benchmark configuration:
    synthetic data, the CPU networks, a training budget of seconds, minutes or ≤ 45 minutes."""
    if preset not in _PRESET_SETTINGS:
        raise ValueError(f"unknown pipeline preset {preset!r}; choose one of {', '.join(_PRESET_SETTINGS)}")
    p = _PRESET_SETTINGS[preset]
    return PipelineConfig.model_validate({
        "workdir": str(workdir),
        "data": {"synthetic": preset},
        "prepare": {"splits": {"validation_members": [p["held_out"]]}},
        "train": {
            "network": {"preset": p["network"], "overrides": p.get("network_overrides", {})},
            "max_steps": p["max_steps"],
            "batch_size": 2,
            "optimizer": {"warmup_steps": p["warmup"], "lr": p["lr"]},
            "validation": {"every_n_steps": p["validate_every"], "ensemble_size": p["ensemble_size"],
                           "max_batches": p["val_batches"], **({"sampler": p["sampler"]} if p["sampler"] else {})},
            "checkpoint": {"every_n_steps": p["checkpoint_every"]},
            "hardware": {"num_workers": p["num_workers"]},
            "log_every_n_steps": p["log_every"],
            "ensemble_quantile_mapping": {"clips": p["ensemble_qm_clips"]},
        },
        "generate": {"members": p["members"], "end": p["end"], "time_block": p["time_block"], "workers": p["workers"],
                     "ensemble_variants": ["raw", "qm"] if p["ensemble_qm_clips"] else ["raw"],
                     **({"sampler": p["sampler"]} if p["sampler"] else {})},
        "evaluate": {"n_boot": 20 if preset == "tests" else 200},
    })


def preset_yaml(preset: str, workdir: str | Path = "demo-run") -> str:
    """The complete pipeline config of ``preset`` (:func:`demo_config`) as YAML, behind a comment that says
    where it comes from and that its paths follow ``workdir`` only where a file leaves them out: what
    ``downscale config --preset PRESET --workdir WORKDIR`` prints. ``downscale run --config`` of it runs
    exactly what ``downscale run --demo --preset PRESET --workdir WORKDIR`` runs."""
    config = demo_config(workdir, preset)
    header = (f"# downscale config --preset {preset} --workdir {workdir}: every field with its value.\n"
              f"# The paths in train: and generate: were derived from workdir: change them with it, or delete\n"
              f"# them to have them derived again (docs/pipeline.md).\n")
    return header + config.to_yaml()
