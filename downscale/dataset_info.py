"""What a model knows about the prepared dataset it was trained on: one typed description, written once.

:class:`DatasetInfo` is read off a prepared dataset's manifest, statistics and splits
(:meth:`DatasetInfo.from_prepared`). Training keeps it in its checkpoints (``hyper_parameters["dataset"]``)
and the model bundle carries it (:class:`downscale.bundle.BundleMetadata` extends it), so inference knows
the variables, grids, clip length, time step and normalization a model expects without the dataset.

    >>> info = DatasetInfo.from_prepared(PreparedDataset.open("data/prepared"))
    >>> info.factor, info.clip_frames, info.in_channels
    (8, 5, 6)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_catalog.normalization import NormalizationStats
from data_catalog.prepare import PreparedDataset

if TYPE_CHECKING:
    import torch


class DatasetInfo(BaseModel):
    """The prepared dataset a model is trained on: variables, grids, clip, normalization, provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="folder of the prepared dataset (as given to training)")
    fingerprint: str = Field(description="content fingerprint of the prepared dataset (its manifest)")
    catalog_name: str = Field(description="name of the catalog the dataset was prepared from")
    target: str = Field(description="fine target variable, e.g. PRATEsfc (kg m-2 s-1)")
    predictors: tuple[str, ...] = Field(description="coarse predictors, in the model's channel order")
    static_features: tuple[str, ...] = Field(description="static fine channels after the predictors")
    coarse_resolution: int = Field(gt=0, description="N of the coarse C-N grid")
    fine_resolution: int = Field(gt=0, description="N of the fine C-N grid (= factor × coarse)")
    factor: int = Field(gt=0, description="fine cells per coarse cell along each tile axis")
    clip_frames: int = Field(gt=0, description="frames T of one clip (the network's window)")
    time_step_seconds: float = Field(gt=0, description="seconds between frames")
    normalization: NormalizationStats = Field(description="statistics of the training split")
    train_members: tuple[str, ...] = Field(description="members with clips in the train split")
    validation_members: tuple[str, ...] = Field(description="members with clips in the validation split")

    @model_validator(mode="after")
    def _consistent_grids(self) -> Self:
        if self.fine_resolution != self.factor * self.coarse_resolution:
            raise ValueError(f"fine resolution C{self.fine_resolution} != factor {self.factor} x coarse "
                             f"C{self.coarse_resolution}")
        return self

    @classmethod
    def from_prepared(cls, prepared: PreparedDataset) -> DatasetInfo:
        m, clips = prepared.manifest, prepared.splits.clips
        return cls(path=str(prepared.path), fingerprint=m.fingerprint, catalog_name=m.catalog_name, target=m.target,
                   predictors=m.predictors, static_features=m.static_features,
                   coarse_resolution=m.coarse_resolution, fine_resolution=m.fine_resolution, factor=m.factor,
                   clip_frames=prepared.splits.clip_frames, time_step_seconds=m.time_step_seconds,
                   normalization=prepared.stats,
                   train_members=tuple(sorted({c[0] for c in clips.get("train", [])})),
                   validation_members=tuple(sorted({c[0] for c in clips.get("validation", [])})))

    @property
    def in_channels(self) -> int:
        """Conditioning channels: predictors then static features."""
        return len(self.predictors) + len(self.static_features)

    def physical_target(self, y: torch.Tensor) -> torch.Tensor:
        """Normalized target ``y`` (any shape) → kg m-2 s-1, ≥ 0, float32. ``y`` is first capped at the value of
        1 kg m-2 s-1 (86 400 mm/day), so an untrained sampler's outliers cannot overflow the inverse log
        transform."""
        cap = float(self.normalization.normalize(self.target, 1.0))
        return self.normalization.denormalize(self.target, y.float().clamp(max=cap)).clamp_min(0.0)

    def normalized_target(self, p: torch.Tensor) -> torch.Tensor:
        """Target ``p`` in kg m-2 s-1 (any shape) → normalized units, float32 (computed in float64)."""
        return self.normalization.normalize(self.target, p.double()).float()

    def shipped_target(self, y: torch.Tensor) -> torch.Tensor:
        """Normalized target ``y`` (any shape) as ``generate`` ships it, back in normalized units (float32):
        :meth:`physical_target` (floored at zero rain, capped) normalized again. The network puts about a third
        of its sampled cells below zero rain (its way of saying "dry"); the store holds them as 0. The sampled
        residual std (``val/residual_std_ratio``, ``bench/skill.py``, ``bench/denoiser_scales.py``) is measured
        on these values: one definition."""
        return self.normalized_target(self.physical_target(y))
