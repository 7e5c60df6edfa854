"""The configuration of an ensemble downscaling run: one pydantic model shared by ``downscale generate``,
the pipeline config and the Prefect flow parameters.

Complete example (every field; only ``bundle``, ``catalog``, ``member`` and ``output`` are required)::

    bundle: runs/demo/train/model.bundle.safetensors   # the trained model (downscale train)
    catalog: data/catalog.yaml        # where the coarse run is (native or intake-v1 catalog)
    member: "0003"                    # which run of the catalog to downscale
    output: outputs/0003.zarr         # the Zarr v3 output store (refused if complete, unless overwrite)
    start: null                       # first time to downscale (ISO date, Julian calendar); null = the run's first
    end: null                         # last time (inclusive); null = the run's last
    members: 8                        # ensemble size N
    seed: 0                           # base seed: member k, frame t draw from seed_of(seed, k, t)
    sampler: {kind: dpmpp_2m, num_steps: 8, sigma_min: 0.005, sigma_max: 10.0, rho: 1000.0}   # or kind: heun, …
    members_per_batch: 2              # members sampled at once (memory knob; 1 = least memory)
    time_block: 40                    # frames per work item (and per shard); memory does not grow with the period
    member_block: null                # members per work item; null = all members in one item per time block
    window_stride: null               # frames between overlapping T-frame windows; null = T // 2 (T = the bundle's)
    context_frames: null              # frames sampled beyond each side of a time block; null = T
    baselines: [bilinear, deterministic, deterministic_raw, qm]   # deterministic: μ mass-corrected as the
                                      # members are; deterministic_raw: μ as the network gives it
    mass_correction: true             # rescale each member so its coarse-grained field equals the input
    mass_correction_max_ratio: 2.0    # bound of the multiplicative correction (the rest is added uniformly)
    ensemble_variants: [raw]          # also write the members before the mass correction (PRATEsfc_ensemble_raw);
                                      # qm: the raw members quantile-mapped with the bundle's ensemble table
                                      # (PRATEsfc_ensemble_qm; train with ensemble_quantile_mapping.clips > 0)
    include_truth: true               # write the fine truth beside the ensemble when the run has it
    device: auto                      # auto | cpu | cuda | cuda:1 …
    workers: 1                        # work items run at once (Dask threads on this machine)
    scheduler: null                   # a Dask scheduler address (tcp://…) to run items on a cluster instead
    overwrite: false                  # replace a complete output store
    append: false                     # grow a complete store of this configuration by the frames its input
                                      # gained since (incremental runs); frames already written are kept

Validation errors name the field and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_catalog.errors import read_yaml_mapping, validated
from downscale.models.samplers import PRODUCTION_SAMPLER, SamplerConfig

Baseline = Literal["bilinear", "deterministic", "deterministic_raw", "qm"]
EnsembleVariant = Literal["raw", "qm"]

#: The default sampler is the production one, shared with training validation (downscale.models.samplers).
DEFAULT_SAMPLER = PRODUCTION_SAMPLER


class GenerateConfig(BaseModel):
    """One ensemble downscaling run (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle: Path
    catalog: Path
    member: str
    output: Path
    start: str | None = None
    end: str | None = None
    members: int = Field(8, ge=1, description="ensemble size")
    seed: int = Field(0, ge=0)
    sampler: SamplerConfig = DEFAULT_SAMPLER
    members_per_batch: int = Field(2, ge=1, description="members sampled at once (memory knob)")
    time_block: int = Field(40, ge=1, description="frames per work item and per shard")
    member_block: int | None = Field(None, ge=1, description="members per work item; null = all")
    window_stride: int | None = Field(None, ge=1, description="frames between overlapping windows; null = T // 2")
    context_frames: int | None = Field(None, ge=0, description="frames sampled beyond each side of a block; null = T")
    baselines: tuple[Baseline, ...] = ("bilinear", "deterministic", "deterministic_raw", "qm")
    mass_correction: bool = Field(True, description="rescale members (and the deterministic baseline) to the coarse "
                                                    "input's mass per coarse cell")
    mass_correction_max_ratio: float = Field(
        2.0, ge=1.0, description="bound R of the multiplicative mass correction: a block is scaled by at most R and "
                                 "the rest of its missing mass is added uniformly, so no spike is created")
    ensemble_variants: tuple[EnsembleVariant, ...] = Field(
        ("raw",), description="member-dim variables written beside the ensemble: 'raw' = the members before the "
                              "mass correction (PRATEsfc_ensemble_raw), so the report scores both; 'qm' = the raw members "
                              "quantile-mapped with the bundle's ensemble table (PRATEsfc_ensemble_qm); default [raw] "
                              "with mass_correction, [] without")
    include_truth: bool = True
    device: str = "auto"
    workers: int = Field(1, ge=1, description="work items at once (Dask threads)")
    scheduler: str | None = Field(None, description="Dask scheduler address; null = local")
    overwrite: bool = False
    append: bool = Field(False, description="grow a complete output store of this configuration by the frames "
                                            "the input gained since it was written (never redoes old frames)")

    @model_validator(mode="before")
    @classmethod
    def _default_variants(cls, doc: Any) -> Any:
        """Without ``ensemble_variants``: the raw members beside a mass-corrected ensemble, none otherwise."""
        if isinstance(doc, dict) and doc.get("ensemble_variants") is None:
            doc = {**doc, "ensemble_variants": ["raw"] if doc.get("mass_correction", True) else []}
        return doc

    @model_validator(mode="after")
    def _consistent(self) -> GenerateConfig:
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines repeat: {list(self.baselines)}")
        if "raw" in self.ensemble_variants and not self.mass_correction:
            raise ValueError("ensemble_variants 'raw' needs mass_correction: true (without it the ensemble is raw)")
        if len(set(self.ensemble_variants)) != len(self.ensemble_variants):
            raise ValueError(f"ensemble_variants repeat: {list(self.ensemble_variants)}")
        if self.member_block is not None and self.member_block > self.members:
            raise ValueError(f"member_block ({self.member_block}) exceeds members ({self.members})")
        return self

    def stride(self, frames: int) -> int:
        """Frames between overlapping windows for clips of ``frames`` (``window_stride`` or T // 2)."""
        stride = self.window_stride or max(frames // 2, 1)
        if stride > frames:
            raise ValueError(f"window_stride {stride} exceeds the bundle's clip length {frames}: frames between "
                             f"windows would never be sampled")
        return stride

    def with_absolute_paths(self) -> GenerateConfig:
        """The same config with ``bundle``, ``catalog`` and ``output`` made absolute."""
        return self.model_copy(update={k: Path(getattr(self, k)).absolute() for k in ("bundle", "catalog", "output")})

    @property
    def members_per_item(self) -> int:
        return self.member_block or self.members

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> GenerateConfig:
        """Read a YAML file (or the ``generate:`` section of one: its paths must then be there or in
        ``overrides``), fields in ``overrides`` replacing the file's (nested ``sampler`` fields merge); errors
        name the file and the field."""
        doc = read_yaml_mapping(path, "generate config")
        doc = doc["generate"] if isinstance(doc.get("generate"), dict) else doc  # or a `generate:` section
        if overrides:
            sampler = {**(doc.get("sampler") or {}), **overrides.get("sampler", {})}
            doc = {**doc, **overrides, **({"sampler": sampler} if sampler else {})}
        return validated(cls, doc, f"generate config {path}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
