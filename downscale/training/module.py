"""The Lightning module that trains the video downscaler (mean μ + residual EDM diffusion).

Per step, on the device:

* conditioning ``cond (B, T, C_pred + C_static, 6, nf, nf)`` = concat(upsample_coarse(coarse, f,
  "bilinear"), static broadcast over T) — cube-aware upsampling across tile seams (patch mode:
  plain bilinear inside the patch, edges clamped);
* loss of :meth:`VideoDownscaler.loss`, area weighted (fine cell area / its mean, a buffer read from
  the prepared dataset's static store; with ``heavy_rain_weighting`` γ > 0 also by ``(1 + P_c/ε)^γ`` of the
  coarse rain, :mod:`downscale.training.heavy_rain`): ``joint`` (STVD) trains μ and the diffusion together;
  ``two_stage`` (CorrDiff) trains μ alone for ``mean_stage_steps`` steps, then loads μ's EMA weights
  into μ, freezes it and trains the diffusion on the residual ``y − μ``;
* AdamW, learning rate warm-up + cosine per stage (:func:`warmup_cosine`), EMA after every step.

Randomness of step ``s`` on rank ``r`` (diffusion noise levels and noise, dropout) comes from the
global generator re-seeded with ``(seed, s, r)``, so a resumed run draws exactly what an
uninterrupted one would.

Validation (EMA weights, fixed seeds): ``K`` ensemble members per clip from the **production sampler**
(``validation.sampler``, by default :data:`~downscale.models.samplers.PRODUCTION_SAMPLER`, the one
``generate`` uses), metrics in physical units (kg m-2 s-1, after :meth:`NormalizationStats.denormalize`,
clipped at 0), before any mass correction, scored by the report's statistics
(:class:`downscale.evaluation.pooled.PooledScores`, one implementation): ``val/crps_fair`` and
``val/crps_standard`` (the area-weighted CRPS of both estimators over every point, frame and clip, the report's
``crps_fair`` / ``crps_standard``), ``val/mae_mean`` (area-weighted MAE of μ), ``val/q999_ratio``,
``val/q9999_ratio`` (predicted / true 99.9th and 99.99th pooled area-weighted percentile, on the report's bins:
its ``quantile_value`` statistic), ``val/tail_error`` (mean |ratio − 1|) and ``val/residual_std_ratio``
(area-weighted std of the sampled residual x − μ over that of the true residual y − μ, normalized units, with x
and μ as ``generate`` ships them, floored at zero rain by :meth:`DatasetInfo.shipped_target`; 1 for a
well-dispersed diffusion). The scores are computed on the CPU; their sums and histograms are reduced over
ranks before logging.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from data_catalog.member_reader import COARSE_SUFFIX
from data_catalog.prepare import PreparedDataset
from downscale.dataset_info import DatasetInfo
from downscale.evaluation.pooled import TAIL_QUANTILES, PooledScores
from downscale.models.conditioning import build_conditioning
from downscale.models.config import NetworkConfig, network_preset
from downscale.models.downscaler import DownscalerSpec, weighted_mse
from downscale.training.config import TrainConfig
from downscale.training.ema import EMA
from downscale.training.heavy_rain import combined_loss_weights, heavy_rain_weights

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "downscale"


def fine_area_weights(prepared: PreparedDataset) -> torch.Tensor:
    """Fine cell area ``(6, nf, nf)`` from the static store, divided by its mean (float32)."""
    area = torch.as_tensor(prepared.fine_area().values)
    return (area / area.mean()).float()


def network_config(config: TrainConfig, info: DatasetInfo) -> NetworkConfig:
    """The preset with overrides; ``frames`` = the clip length, geometry = the spatial mode, and the
    activation-checkpointing switch of the training config (unless overridden explicitly)."""
    overrides = {"frames": info.clip_frames, "geometry": config.spatial_mode,
                 "activation_checkpointing": config.activation_checkpointing, **config.network.overrides}
    try:
        net = network_preset(config.network.preset, **overrides)
    except ValueError as err:
        raise ValueError(f"network preset {config.network.preset!r} with overrides "
                         f"{config.network.overrides}: {err}") from None
    size = config.patch_size if config.spatial_mode == "patch" else info.fine_resolution
    net.check_spatial_shape(size, size)
    return net


def downscaler_spec(config: TrainConfig, info: DatasetInfo, network: NetworkConfig) -> DownscalerSpec:
    """The :class:`DownscalerSpec` a training builds: ``network`` on the dataset's conditioning channels,
    one output channel, the diffusion settings of ``config`` (μ detached in ``detached`` and ``two_stage`` mode)."""
    d = config.diffusion
    return DownscalerSpec(network=network, in_channels=info.in_channels, out_channels=1, sigma_data=d.sigma_data,
                          detach_mean=config.detach_mean, P_mean=d.P_mean, P_std=d.P_std,
                          diffusion_weight=d.diffusion_weight)


def warmup_cosine(step: int, start: int, end: int, warmup: int, min_ratio: float) -> float:
    """LR factor at ``step`` of a stage ``[start, end)``: linear warm-up over ``warmup`` steps (capped
    at half the stage), then cosine from 1 to ``min_ratio`` at ``end``."""
    length = max(end - start, 1)
    warmup = min(warmup, length // 2)
    s = step - start
    if s < warmup:
        return (s + 1) / warmup
    progress = min(max(s - warmup, 0) / max(length - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _float64(x: torch.Tensor) -> np.ndarray:
    """``x`` as a float64 numpy array on the CPU (what :class:`PooledScores` adds up)."""
    return x.detach().double().cpu().numpy()


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class DownscalingModule(pl.LightningModule):
    """Training of :class:`VideoDownscaler` on batches of :class:`DownscalingDataModule` (module docstring).

    Args:
        train_config: the :class:`TrainConfig` (or its JSON dict, as stored in checkpoints).
        dataset: :class:`DatasetInfo` of the prepared dataset (or its dict).
        area_weights: fine cell area / mean ``(6, nf, nf)``; ones are replaced by the checkpoint's.
        residual_scale: with ``residual_scale`` other than ``none`` in the config, the map ``(6, nf, nf)``
            (:mod:`downscale.training.residual_scale`); ones are replaced by the checkpoint's.
    """

    def __init__(self, train_config: TrainConfig | dict, dataset: DatasetInfo | dict,
                 area_weights: torch.Tensor | None = None, residual_scale: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = TrainConfig.model_validate(train_config)
        self.info = DatasetInfo.model_validate(dataset)
        self.save_hyperparameters({"train_config": self.config.model_dump(mode="json"),
                                   "dataset": self.info.model_dump(mode="json")})
        self.stats = self.info.normalization
        self.network_config = network_config(self.config, self.info)
        self.net = downscaler_spec(self.config, self.info, self.network_config).build()
        nf = self.info.fine_resolution
        weights = area_weights if area_weights is not None else torch.ones(6, nf, nf)
        if tuple(weights.shape) != (6, nf, nf):
            raise ValueError(f"area weights {tuple(weights.shape)} do not fit the C{nf} grid (6, {nf}, {nf})")
        self.register_buffer("area_weights", weights.float().clone())
        if self.config.residual_scale != "none":
            self.net.set_residual_scale(residual_scale if residual_scale is not None else torch.ones(6, nf, nf))
        elif residual_scale is not None:
            raise ValueError("a residual scale map was given but the config says residual_scale: none")
        self.ema = EMA(self.net, self.config.ema.decay, self.config.ema.warmup)
        self.mean_frozen = False
        self._coarse_rain = self._coarse_rain_channel() if self.config.heavy_rain_weighting > 0 else None
        self._reset_validation_sums()

    # ---- inputs --------------------------------------------------------------------------------------------
    def conditioning(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(B, T, C_pred + C_static, …)``: upsampled coarse predictors and static fields, normalized."""
        return build_conditioning(batch["coarse"], batch["static"], self.info.factor, self.config.spatial_mode)

    def cell_area_weights(self, batch: dict[str, Any], target: torch.Tensor) -> torch.Tensor:
        """Area weights matching the trailing dims of ``target``: the buffer ``(6, nf, nf)`` on whole cubes;
        per patch ``(B, T, C, P, P)`` (expanded, no copy) from the batch."""
        if self.config.spatial_mode == "cube":
            return self.area_weights
        w = batch["area_weight"].to(target.dtype)
        return w[:, None, None].expand_as(target)

    def _coarse_rain_channel(self) -> tuple[int, str, float]:
        """(conditioning channel, variable, ε kg m-2 s-1) of the coarse precipitation the heavy-rain weights read."""
        name = f"{self.info.target}{COARSE_SUFFIX}"
        if name not in self.info.predictors:
            raise ValueError(f"heavy_rain_weighting {self.config.heavy_rain_weighting} reads the coarse "
                             f"precipitation {name!r}, which is not among the predictors "
                             f"({', '.join(self.info.predictors)}); set heavy_rain_weighting: 0")
        epsilon = self.stats[self.info.target].epsilon or self.stats[name].epsilon
        if epsilon is None:
            raise ValueError(f"heavy_rain_weighting needs the precipitation offset epsilon of {self.info.target!r}, "
                             "and its statistics have none (identity transform); set heavy_rain_weighting: 0")
        return self.info.predictors.index(name), name, epsilon

    def loss_weights(self, batch: dict[str, Any], target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor | None:
        """The training loss's per-cell weights: :meth:`cell_area_weights` (``loss_weighting: area``) or None,
        every cell alike (``cell``); with ``heavy_rain_weighting`` γ > 0 times ``(1 + P_c/ε)^γ`` of the coarse
        rain in ``cond`` (:meth:`conditioning`), shaped like ``target``, mean 1 over the batch. Validation scores
        are area-weighted either way."""
        area = self.cell_area_weights(batch, target) if self.config.loss_weighting == "area" else None
        if self._coarse_rain is None:
            return area
        channel, name, epsilon = self._coarse_rain
        rate = self.stats.denormalize(name, cond[:, :, channel:channel + 1].float()).expand_as(target)
        return combined_loss_weights(heavy_rain_weights(rate, epsilon, self.config.heavy_rain_weighting), area)

    # ---- training ------------------------------------------------------------------------------------------
    @property
    def in_mean_stage(self) -> bool:
        return self.config.mode == "two_stage" and self.global_step < self.config.mean_stage_steps

    def freeze_mean(self, load_ema: bool = True) -> None:
        """Two-stage switch: μ takes its EMA weights (if ``load_ema``) and stops learning."""
        if load_ema:
            self.ema.copy_to(self.net, prefix="mean_net.")
        self.net.mean_net.requires_grad_(False)
        self.mean_frozen = True
        log.info("step %d: mean network frozen; training the residual diffusion", self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "target" not in batch or "has_target" in batch:
            raise ValueError("a training batch holds a clip without the fine target: training needs members "
                             "with fine precipitation in the train split")
        torch.manual_seed(_step_seed(self.config.seed, self.global_step, self.global_rank))
        if self.config.mode == "two_stage" and not self.in_mean_stage and not self.mean_frozen:
            self.freeze_mean()
        cond, target = self.conditioning(batch), batch["target"]
        weights = self.loss_weights(batch, target, cond)
        if self.in_mean_stage:
            mean_loss = weighted_mse(self.net.forward_mean(cond), target, weights)
            losses = {"total": mean_loss, "mean_loss": mean_loss}
        else:
            losses = self.net.loss(cond, target, weights)
            if self.mean_frozen:
                losses["total"] = losses["diffusion_loss"]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), on_step=True, on_epoch=False, prog_bar=name == "total")
        self.log("train/stage", 1.0 if self.in_mean_stage else 2.0 if self.mean_frozen else 0.0, on_step=True)
        return losses["total"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.net)  # before on_train_batch_end, where checkpoints are written

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.config.optimizer
        decay = [p for p in self.net.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.net.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=o.betas)
        s1, total = self.config.mean_stage_steps, self.config.max_steps

        def factor(step: int) -> float:
            start, end = (0, s1) if step < s1 else (s1, total)
            return warmup_cosine(step, start, end, o.warmup_steps, o.min_lr_ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_fit_start(self) -> None:
        self.ema.to(self.device)

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.ema.state_dict()
        checkpoint[CHECKPOINT_KEY] = {"format": 1, "mean_frozen": self.mean_frozen,
                                      "network": self.network_config.model_dump(mode="json")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ema.load_state_dict(checkpoint["ema"])
        if checkpoint.get(CHECKPOINT_KEY, {}).get("mean_frozen"):
            self.freeze_mean(load_ema=False)

    # ---- validation ----------------------------------------------------------------------------------------
    def _reset_validation_sums(self) -> None:
        self._scores = PooledScores()
        self._residual_sq = torch.zeros(2, dtype=torch.float64)     # Σ per-clip mean (x − μ)², (y − μ)²

    def on_validation_epoch_start(self) -> None:
        self._reset_validation_sums()
        self._residual_sq = self._residual_sq.to(self.device)
        self._live = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.ema.copy_to(self.net)

    def on_validation_epoch_end(self) -> None:
        with torch.no_grad():
            state = self.net.state_dict()
            for k, v in self._live.items():
                state[k].copy_(v)
        del self._live
        strategy = self.trainer.strategy
        sample_sq, true_sq = strategy.reduce(self._residual_sq, reduce_op="sum").tolist()
        reduced = strategy.reduce(torch.from_numpy(self._scores.state).to(self.device), reduce_op="sum")
        self._scores.state = reduced.cpu().numpy().copy()
        if self._scores.empty:
            return
        scores = self._scores.results(TAIL_QUANTILES)
        metrics = {"val/crps_fair": scores["crps_fair"], "val/crps_standard": scores["crps_standard"],
                   "val/mae_mean": scores["mae_point"], "val/q999_ratio": scores["q999_ratio"],
                   "val/q9999_ratio": scores["q9999_ratio"], "val/tail_error": scores["tail_error"],
                   "val/residual_std_ratio": math.sqrt(sample_sq / max(true_sq, 1e-30))}
        for name, value in metrics.items():
            self.log(name, value, on_step=False, on_epoch=True, sync_dist=False)

    def _per_clip_mean(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Area-weighted mean of ``x (B, …)`` per clip → ``(B,)``."""
        w = weights.to(x.dtype).expand_as(x)
        dims = tuple(range(1, x.ndim))
        return (x * w).sum(dims, dtype=torch.float64) / w.sum(dims, dtype=torch.float64)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if "target" not in batch:
            return
        v = self.config.validation
        cond, target = self.conditioning(batch), batch["target"]
        keep = batch["has_target"] if "has_target" in batch else torch.ones(target.shape[0], dtype=torch.bool)
        mu = self.net.forward_mean(cond)
        world = self.trainer.world_size if self._trainer is not None else 1
        generator = torch.Generator(device="cpu")
        generator.manual_seed(v.seed * 1_000_003 + batch_idx * world + self.global_rank)
        members = self.net.sample_members(cond, v.ensemble_size, v.sampler, generator, mean=mu,
                                          members_per_batch=v.members_per_batch)
        keep = keep.to(self.device)
        normalized = members[:, keep].float()
        ensemble = self.info.physical_target(normalized)
        truth, mean = self.info.physical_target(target[keep]), self.info.physical_target(mu[keep])
        weights = self.cell_area_weights(batch, target)
        weights = weights[keep] if self.config.spatial_mode == "patch" else weights
        self._scores.update(_float64(ensemble), _float64(truth), _float64(weights), point=_float64(mean))
        # the shipped target (DatasetInfo.shipped_target) from the physical values already at hand
        shipped, mu_shipped = self.info.normalized_target(ensemble), self.info.normalized_target(mean)
        residual = (((shipped - mu_shipped) ** 2).mean(0), (target[keep].float() - mu_shipped) ** 2)
        for i, field in enumerate(residual):
            self._residual_sq[i] += self._per_clip_mean(field, weights).sum()
