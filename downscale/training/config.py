"""The training configuration: one pydantic model, readable from YAML, usable as flow parameters.

:class:`TrainConfig` holds plain values only (numbers, strings, paths), so a pipeline config can
embed it as a field and Prefect can take it as a flow parameter. Every field has a default except
the prepared dataset and the output directory; ``docs/training.md`` shows a complete YAML file.

Example::

    cfg = TrainConfig(dataset="prepared/", output_dir="runs/demo", network={"preset": "tiny"},
                      max_steps=200, batch_size=2)
    cfg = TrainConfig.from_yaml("train.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data_catalog.errors import read_yaml_mapping, validated
from downscale.models.downscaler import TrainingMode
from downscale.models.samplers import PRODUCTION_SAMPLER, SamplerConfig

Precision = Literal["auto", "32", "32-true", "bf16-mixed", "16-mixed", "64"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkSpec(_Section):
    """Which network: a preset of :class:`downscale.models.config.NetworkConfig` plus field overrides."""

    preset: Literal["tiny", "demo", "paper"] = "demo"
    overrides: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(_Section):
    """AdamW with linear warm-up then cosine decay of the learning rate, stepped every optimizer step."""

    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(500, ge=0, description="linear warm-up to lr over this many steps; longer than a "
                              "stage is refused, more than half of one is cut to half (with a warning)")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine ends at lr * min_lr_ratio at max_steps")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm; null = off")


class DiffusionConfig(_Section):
    """EDM settings of the residual diffusion (Karras et al. 2022): ln σ ~ N(P_mean, P_std²) in training."""

    sigma_data: float = Field(0.5, gt=0, description="std of the residual y − μ (normalized units); the target's is 1, "
                              "the residual of a trained mean about half of it (measured: 0.47 on demo, 0.54 on skill, validation clips)")
    P_mean: float = -1.2
    P_std: float = Field(1.2, gt=0)
    diffusion_weight: float = Field(1.0, gt=0, description="joint loss = mean_loss + weight * diffusion_loss")


class EMAConfig(_Section):
    decay: float = Field(0.999, ge=0, lt=1)
    warmup: bool = Field(True, description="decay_t = min(decay, (1 + t) / (10 + t))")


class ValidationConfig(_Section):
    """Validation on the held-out split: K-member ensembles with fixed seeds, metrics in physical units."""

    every_n_steps: int = Field(1000, ge=1)
    ensemble_size: int = Field(10, ge=2, description="K members per clip for the fair CRPS")
    members_per_batch: int = Field(2, ge=1, description="ensemble members sampled at once (memory knob)")
    eval_batch_size: int | None = Field(None, ge=1, description="clips per validation batch; null = batch_size")
    sampler: SamplerConfig = Field(PRODUCTION_SAMPLER, description="the production sampler by default, so that "
                                   "validation scores what generation ships")
    max_batches: int | None = Field(None, ge=1, description="validate on at most this many batches (null = all)")
    seed: int = 1234

    @model_validator(mode="before")
    @classmethod
    def _legacy_sampler_steps(cls, doc: Any) -> Any:
        """Configs (and checkpoints) written before ``sampler`` existed named ``sampler_steps`` of EDM Heun."""
        if isinstance(doc, dict) and "sampler_steps" in doc:
            doc = dict(doc)
            steps = doc.pop("sampler_steps")
            if "sampler" in doc:
                raise ValueError("give 'sampler' (the sampler config) or the old 'sampler_steps', not both")
            doc["sampler"] = {"kind": "heun", "num_steps": steps, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
        return doc


class HardwareConfig(_Section):
    """Where and how to run; ``auto`` picks bf16-mixed on CUDA and 32-bit on CPU, ddp for > 1 device."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="auto | ddp | ddp_spawn | ddp_find_unused_parameters_true | …")
    precision: Precision = "auto"
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per device")
    deterministic: bool = Field(False, description="torch deterministic algorithms (slower; for bitwise resume)")


class CheckpointConfig(_Section):
    every_n_steps: int = Field(1000, ge=1, description="write checkpoints/last.ckpt every this many steps")
    keep_periodic: bool = Field(False, description="also keep a step=N.ckpt file for every interval")


class EnsembleQuantileMappingConfig(_Section):
    """The ensemble's own quantile-mapping table, fitted when the bundle is exported (docs/training.md):
    ``members`` raw members sampled with ``validation.sampler`` on ``clips`` training clips, spread evenly over
    the split, against the truth of the same frames. ``clips: 0`` (the default) fits no table."""

    clips: int = Field(0, ge=0, description="training clips sampled for the table (0 = no table)")
    members: int = Field(2, ge=1, description="raw members sampled per clip")


class TrainConfig(_Section):
    """Everything one training run needs; see docs/training.md for every field in a YAML example."""

    dataset: Path = Field(description="prepared dataset directory (data_catalog.prepare)")
    output_dir: Path = Field(description="checkpoints/, logs/, model.bundle.safetensors go here")
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    mode: TrainingMode = Field(
        "joint", description="joint: mean + residual diffusion trained together (STVD); detached: trained together, "
                             "but the diffusion loss's gradients stop at μ (μ learns from its own loss only); "
                             "two_stage: mean first, then frozen, then the residual (CorrDiff)")
    mean_stage_fraction: float = Field(0.3, gt=0, lt=1, description="two_stage: share of max_steps for the mean")
    max_steps: int = Field(ge=1, default=100_000)
    batch_size: int = Field(1, ge=1, description="clips per device per step")
    seed: int = 0
    activation_checkpointing: bool = Field(False, description="recompute activations in backward (saves memory)")
    spatial_mode: Literal["cube", "patch"] = Field("cube", description="cube: 6 whole faces; patch: crops")
    patch_size: int | None = Field(None, ge=8, description="fine-grid patch edge for spatial_mode=patch")
    loss_weighting: Literal["area", "cell"] = Field(
        "area", description="area: each cell's loss weighted by its area (every m² counts alike); cell: every cell "
                            "counts alike (small cells near tile edges and corners weigh more than under area)")
    heavy_rain_weighting: float = Field(
        0.0, ge=0.0, le=4.0,
        description="γ: each cell's loss also weighted by (1 + P_c/ε)^γ, P_c the coarse precipitation there, ε the "
                    "precipitation offset; weights of a batch renormalized to mean 1. Input-only weights: the best "
                    "denoiser is unchanged, capacity moves towards heavy rain (downscale.training.heavy_rain). "
                    "0: off")
    residual_scale: Literal["none", "subgrid_rms"] = Field(
        "none", description="none: the diffusion models y − μ; subgrid_rms: (y − μ) / s, s the training split's "
                            "per-cell fine-scale RMS (downscale.training.residual_scale; whole cubes only)")
    log_every_n_steps: int = Field(50, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    ensemble_quantile_mapping: EnsembleQuantileMappingConfig = Field(default_factory=EnsembleQuantileMappingConfig)

    @field_validator("network", mode="before")
    @classmethod
    def _preset_shorthand(cls, v: Any) -> Any:
        return {"preset": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.spatial_mode == "patch" and self.patch_size is None:
            raise ValueError("spatial_mode 'patch' needs patch_size (fine cells per patch edge), e.g. patch_size: 128")
        if self.spatial_mode == "cube" and self.patch_size is not None:
            raise ValueError(f"patch_size {self.patch_size} given but spatial_mode is 'cube'; "
                             "set spatial_mode: patch or drop patch_size")
        if self.spatial_mode == "patch" and self.residual_scale != "none":
            raise ValueError(f"residual_scale {self.residual_scale!r} is a per-cell map of whole cubes; use "
                             "spatial_mode: cube or residual_scale: none")
        if self.validation.members_per_batch > self.validation.ensemble_size:
            raise ValueError(f"validation.members_per_batch ({self.validation.members_per_batch}) exceeds "
                             f"validation.ensemble_size ({self.validation.ensemble_size})")
        if self.mode == "two_stage" and self.mean_stage_steps < 1:
            raise ValueError(f"two_stage: mean_stage_fraction {self.mean_stage_fraction} of max_steps "
                             f"{self.max_steps} leaves no step for the mean")
        warmup = self.optimizer.warmup_steps
        for stage, steps in self.stages:
            if warmup > steps:
                raise ValueError(f"optimizer.warmup_steps ({warmup}) is longer than {stage}: the "
                                 f"learning rate would never reach optimizer.lr ({self.optimizer.lr:g}); give "
                                 f"optimizer.warmup_steps ≤ {steps // 2} (at most half of it) or more max_steps")
        return self

    @property
    def stages(self) -> list[tuple[str, int]]:
        """Each learning-rate stage as (what it is, in words; its optimizer steps): the whole run in joint
        and detached mode, the mean stage and the residual stage in two_stage mode. Each has its own warm-up."""
        if self.mode != "two_stage":
            return [(f"the run (max_steps {self.max_steps})", self.max_steps)]
        mean, rest = self.mean_stage_steps, self.max_steps - self.mean_stage_steps
        return [(f"the mean stage ({mean} steps: mean_stage_fraction {self.mean_stage_fraction:g} × max_steps "
                 f"{self.max_steps})", mean), (f"the residual stage ({rest} steps after the mean stage)", rest)]

    def schedule_warnings(self) -> list[str]:
        """What this run will do other than its settings read — a warm-up cut to half of a stage, no
        validation or no interval checkpoint before the end — one sentence each, naming the fields.
        Empty for a consistent config. :func:`downscale.training.trainer.fit` logs them as WARNINGs."""
        warnings, warmup, total = [], self.optimizer.warmup_steps, self.max_steps
        for stage, steps in self.stages:
            if warmup > steps // 2:
                warnings.append(f"optimizer.warmup_steps ({warmup}) is more than half of {stage}: the warm-up is "
                                f"cut to {steps // 2} steps")
        if self.validation.every_n_steps > total:
            warnings.append(f"validation.every_n_steps ({self.validation.every_n_steps}) is beyond max_steps "
                            f"({total}): validation never runs, so no val/* metrics and no best-*.ckpt")
        if self.checkpoint.every_n_steps > total:
            warnings.append(f"checkpoint.every_n_steps ({self.checkpoint.every_n_steps}) is beyond max_steps "
                            f"({total}): the only checkpoint is written at the end, so an interrupted run "
                            "starts again from step 0")
        return warnings

    @property
    def detach_mean(self) -> bool:
        """Whether the diffusion loss's gradients stop at μ: in ``detached`` and ``two_stage`` mode."""
        return self.mode != "joint"

    @property
    def mean_stage_steps(self) -> int:
        """two_stage: optimizer steps that train the mean only (0 in joint mode)."""
        return int(round(self.mean_stage_fraction * self.max_steps)) if self.mode == "two_stage" else 0

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"

    @property
    def bundle_path(self) -> Path:
        return Path(self.output_dir) / "model.bundle.safetensors"

    def check_paths(self) -> None:
        """Fail early, naming the path, if the prepared dataset is not there."""
        manifest = Path(self.dataset) / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"training dataset {self.dataset}: no manifest.json "
                                    "(run data preparation first: data_catalog.prepare)")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file; a bad field is reported with the file name and the field's dotted path."""
        doc = read_yaml_mapping(path, "training config")
        return validated(cls, doc.get("train", doc), f"training config {path}")  # or a pipeline's `train:`

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
