"""Run a training from a :class:`TrainConfig`, resume it, and export the model bundle.

    bundle = train(config)                  # fresh run → <output_dir>/model.bundle.safetensors
    bundle = train(config, resume=True)     # continue from the newest intact checkpoint (downscale.training.resume)
    export_bundle("runs/x/checkpoints/best-crps.ckpt", "best.bundle.safetensors")

(Loading a bundle is :func:`downscale.bundle.load_model`; it needs nothing of training.)

Command line (what ``infra/slurm/train.sbatch`` runs under ``srun``, one process per GPU)::

    python -m downscale.training.trainer --config train.yaml [--resume] [--devices 8] [--num-nodes 2]

Hardware: ``precision: auto`` is bf16-mixed on CUDA and 32-bit otherwise; ``strategy: auto`` is DDP
when more than one device or node is used (``find_unused_parameters`` on in ``two_stage`` mode,
where each stage leaves one network without gradients). Under SLURM, Lightning's
``SLURMEnvironment`` is detected from the environment (ranks from ``srun``); on ``SIGUSR1``
(``#SBATCH --signal=SIGUSR1@120``) it writes ``hpc_ckpt_N.ckpt`` and requeues the job.

``resume=True`` continues from the newest checkpoint that loads safely (``last.ckpt``, ``hpc_ckpt_N``,
``step=N``, ``best-*``; :func:`downscale.training.resume.resume_point`), logging any it passed over;
checkpoints are only ever read with ``weights_only=True``. ``logs/metrics.csv`` keeps the rows of the
steps before the resume and ``train_config.yaml`` is written once training starts
(:mod:`downscale.training.run_record`): a failed attempt loses neither.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy, Strategy

from data_catalog.prepare import PreparedDataset
from downscale.baselines import fit_quantile_table
from downscale.bundle import BaselineTables, BundleMetadata, TrainingRecord, load_bundle, save_bundle
from downscale.dataset_info import DatasetInfo
from downscale.logs import configure, share_lightning_logs
from downscale.version import __version__
from downscale.models.config import NetworkConfig
from downscale.training.checkpointing import (
    LAST,
    AtomicCheckpointIO,
    checkpoint_callbacks,
    remove_stale_temporaries,
)
from downscale.training.config import TrainConfig
from downscale.training.datamodule import DownscalingDataModule
from downscale.training.ensemble_table import fit_ensemble_quantile_table
from downscale.training.module import CHECKPOINT_KEY, DownscalingModule, downscaler_spec, fine_area_weights
from downscale.training.progress import ProgressCallback, ProgressReport, TrainingLog
from downscale.training.residual_scale import subgrid_rms_scale
from downscale.training.resume import resume_point
from downscale.training.run_record import ConfigRecord, MetricsLog

log = logging.getLogger(__name__)


# ---- Trainer ----------------------------------------------------------------------------------------------
def _uses_cuda(config: TrainConfig) -> bool:
    accel = config.hardware.accelerator
    return accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())


def resolve_precision(config: TrainConfig) -> str:
    p = config.hardware.precision
    if p == "auto":
        return "bf16-mixed" if _uses_cuda(config) else "32-true"
    return "32-true" if p == "32" else p


def _device_count(config: TrainConfig) -> int:
    d = config.hardware.devices
    if isinstance(d, list):
        return len(d)
    if isinstance(d, int):
        return d
    if d.isdigit():
        return int(d)
    if d in ("auto", "-1"):
        return torch.cuda.device_count() if _uses_cuda(config) else 1
    return 1


def resolve_strategy(config: TrainConfig) -> str | Strategy:
    s = config.hardware.strategy
    distributed = _device_count(config) * config.hardware.num_nodes > 1
    if s == "auto":
        if not distributed:
            return "auto"
        s = "ddp"
    if s == "ddp":
        return DDPStrategy(find_unused_parameters=config.mode == "two_stage")
    return s


def loggers(config: TrainConfig, start_step: int = 0) -> list[Logger]:
    """CSV always (``<output_dir>/logs/metrics.csv``, keeping the rows before ``start_step``); TensorBoard
    too when it is installed. Both offline."""
    out: list[Logger] = [MetricsLog(config.output_dir, start_step)]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401

        out.append(TensorBoardLogger(Path(config.output_dir), name="tensorboard", version=""))
    except ImportError:
        pass
    return out


def build_trainer(config: TrainConfig, callbacks: list[pl.Callback] | None = None, start_step: int = 0,
                  **overrides: Any) -> pl.Trainer:
    """A ``Trainer`` for ``config``: step-based validation and checkpoints, atomic (and weights-only) checkpoint
    IO, offline logs (a run resumed after ``start_step`` steps keeps the metrics rows before them)."""
    h, v = config.hardware, config.validation
    kwargs: dict[str, Any] = dict(
        max_steps=config.max_steps, max_epochs=-1,
        accelerator="gpu" if h.accelerator == "cuda" else h.accelerator, devices=h.devices,
        num_nodes=h.num_nodes, strategy=resolve_strategy(config), precision=resolve_precision(config),
        callbacks=[*checkpoint_callbacks(config.checkpoint_dir, config.checkpoint.every_n_steps,
                                         config.checkpoint.keep_periodic),
                   LearningRateMonitor(logging_interval="step"), *(callbacks or [])],
        plugins=[AtomicCheckpointIO()], logger=loggers(config, start_step), default_root_dir=str(config.output_dir),
        val_check_interval=v.every_n_steps, check_val_every_n_epoch=None,
        limit_val_batches=v.max_batches if v.max_batches is not None else 1.0, num_sanity_val_steps=0,
        gradient_clip_val=config.optimizer.grad_clip, gradient_clip_algorithm="norm",
        log_every_n_steps=config.log_every_n_steps, deterministic=h.deterministic, benchmark=False,
        use_distributed_sampler=False, enable_progress_bar=False, enable_model_summary=False,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def build_datamodule(config: TrainConfig) -> DownscalingDataModule:
    return DownscalingDataModule(config.dataset, batch_size=config.batch_size,
                                 eval_batch_size=config.validation.eval_batch_size or config.batch_size,
                                 num_workers=config.hardware.num_workers, mode=config.spatial_mode,
                                 patch_size=config.patch_size, seed=config.seed)


def build_module(config: TrainConfig, resuming: bool = False) -> DownscalingModule:
    """The module of a run on its prepared dataset. The residual scale map is measured for a new run only: a
    resumed one takes it from its checkpoint."""
    prepared = PreparedDataset.open(config.dataset)
    area_weights = fine_area_weights(prepared)
    measure = config.residual_scale == "subgrid_rms" and not resuming
    scale = subgrid_rms_scale(prepared, area_weights) if measure else None
    return DownscalingModule(config, DatasetInfo.from_prepared(prepared), area_weights, scale)


# ---- fit --------------------------------------------------------------------------------------------------
def fit(config: TrainConfig, resume: bool = False, callbacks: list[pl.Callback] | None = None,
        **trainer_overrides: Any) -> tuple[pl.Trainer, DownscalingModule]:
    """Train (or continue, from the newest intact checkpoint) a run; returns the trainer and the trained
    module (live and EMA weights). A resume whose checkpoints are all broken raises
    :class:`~downscale.training.resume.ResumeError` before anything is written. Progress is logged as
    training goes (:class:`~downscale.training.progress.TrainingLog`: step, loss, speed, ETA)."""
    config.check_paths()
    for warning in config.schedule_warnings():
        log.warning("training config: %s", warning)
    out = Path(config.output_dir)
    remove_stale_temporaries(config.checkpoint_dir)
    if not resume and (config.checkpoint_dir / LAST).exists():
        raise FileExistsError(f"{config.checkpoint_dir / LAST} exists: resume with resume=True (--resume) "
                              f"or choose another output_dir than {out}")
    start = resume_point(config) if resume else None
    if resume and start is None:
        log.info("no checkpoint in %s: training starts at step 0", config.checkpoint_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config, resuming=start is not None)
    share_lightning_logs()
    trainer = build_trainer(config, [ConfigRecord(config), TrainingLog(), *(callbacks or [])],
                            start_step=start.step if start else 0, **trainer_overrides)
    trainer.fit(module, datamodule=build_datamodule(config), ckpt_path=start.path if start else None,
                weights_only=True)
    # The interval checkpoint may not fall on the last step: write the final state too.
    periodic = next(cb for cb in trainer.checkpoint_callbacks if getattr(cb, "save_last", False))
    if getattr(periodic, "_last_global_step_saved", None) != trainer.global_step:
        trainer.save_checkpoint(config.checkpoint_dir / LAST)
    return trainer, module


def train(config: TrainConfig, resume: bool = False, progress: ProgressReport | None = None) -> Path:
    """Train to ``config.max_steps`` (continuing from the last checkpoint if ``resume``) and export the
    EMA model to ``<output_dir>/model.bundle.safetensors``; returns the bundle path. ``progress(step,
    max_steps)`` is called as training goes (every ``log_every_n_steps``)."""
    callbacks = [ProgressCallback(progress, config.log_every_n_steps)] if progress else None
    trainer, module = fit(config, resume=resume, callbacks=callbacks)
    if trainer.is_global_zero:
        export_module(module, config.bundle_path, checkpoint_name=None)
    trainer.strategy.barrier()
    return config.bundle_path


# ---- bundle -----------------------------------------------------------------------------------------------
def bundle_metadata(config: TrainConfig, info: DatasetInfo, network: NetworkConfig | dict, steps: int,
                    ema_updates: int, checkpoint_name: str | None) -> BundleMetadata:
    """What the bundle records: the data description (from the prepared manifest), the model spec (activation
    checkpointing off: it only matters for training) and the training record; no baseline tables."""
    net = NetworkConfig.model_validate(network).model_copy(update={"activation_checkpointing": False})
    training = TrainingRecord(steps=steps, max_steps=config.max_steps, seed=config.seed, mode=config.mode,
                              spatial_mode=config.spatial_mode, patch_size=config.patch_size,
                              ema_decay=config.ema.decay, ema_updates=ema_updates, checkpoint=checkpoint_name,
                              train_config=config.model_dump(mode="json"))
    return BundleMetadata(**dict(info), model=downscaler_spec(config, info, net), training=training)


def baseline_tables(config: TrainConfig, info: DatasetInfo, meta: BundleMetadata,
                    state: dict[str, torch.Tensor]) -> BaselineTables:
    """The quantile-mapping tables, fitted on the training split of the prepared dataset: the baseline's, and
    the ensemble's own for the weights ``state`` when ``config.ensemble_quantile_mapping.clips`` > 0
    (:mod:`downscale.training.ensemble_table`); none, with a warning, when that dataset is no longer there."""
    if not PreparedDataset.is_complete(info.path):
        log.warning("prepared dataset %s not found: the bundle gets no quantile-mapping table", info.path)
        return BaselineTables()
    prepared = PreparedDataset.open(info.path)
    ensemble = None
    if config.ensemble_quantile_mapping.clips:
        net = meta.model.build().to(next(iter(state.values())).device)
        net.load_state_dict(state)
        ensemble = fit_ensemble_quantile_table(net, config, info, prepared)
    return BaselineTables(quantile_mapping=fit_quantile_table(prepared), ensemble_quantile_mapping=ensemble)


def _export(out: str | Path, config: TrainConfig, info: DatasetInfo, meta: BundleMetadata,
            state: dict[str, torch.Tensor]) -> BundleMetadata:
    return save_bundle(out, state, meta.model_copy(update={"baselines": baseline_tables(config, info, meta, state)}))


def export_module(module: DownscalingModule, out: str | Path, checkpoint_name: str | None = None) -> BundleMetadata:
    """Write the EMA weights of a trained module as a bundle."""
    meta = bundle_metadata(module.config, module.info, module.network_config, int(module.global_step),
                           module.ema.num_updates, checkpoint_name)
    return _export(out, module.config, module.info, meta, module.ema.averaged_state())


def export_bundle(checkpoint: str | Path, out: str | Path) -> BundleMetadata:
    """Write the bundle of a training checkpoint (its EMA weights); needs no GPU, and the prepared dataset
    only for the quantile-mapping tables."""
    checkpoint = Path(checkpoint)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "ema" not in ckpt or CHECKPOINT_KEY not in ckpt:
        raise ValueError(f"checkpoint {checkpoint}: not a downscaling training checkpoint (no EMA weights)")
    hp = ckpt["hyper_parameters"]
    config, info = TrainConfig.model_validate(hp["train_config"]), DatasetInfo.model_validate(hp["dataset"])
    meta = bundle_metadata(config, info, ckpt[CHECKPOINT_KEY]["network"], int(ckpt["global_step"]),
                           int(ckpt["ema"]["num_updates"]), checkpoint.name)
    return _export(out, config, info, meta, ckpt["ema"]["shadow"])


def refit_tables(bundle: str | Path, config: TrainConfig) -> BundleMetadata:
    """Rewrite ``bundle`` with the same weights and tables fitted for ``config`` (its training record then
    holds ``config``): what ``train`` does when only the export's settings (``ensemble_quantile_mapping``)
    changed, instead of training again."""
    meta, state = load_bundle(bundle)
    training = meta.training.model_copy(update={"train_config": config.model_dump(mode="json")})
    rewritten = meta.model_copy(update={"training": training, "software_version": __version__})
    return _export(bundle, config, meta, rewritten, state)


# ---- command line -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="downscale train", description="Train a downscaler (docs/training.md).")
    p.add_argument("--config", required=True, help="training YAML (docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint if there is one")
    p.add_argument("--devices", help="override hardware.devices")
    p.add_argument("--num-nodes", type=int, help="override hardware.num_nodes")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    args = p.parse_args(argv)
    configure()
    config = TrainConfig.from_yaml(args.config)
    hardware = {}
    if args.devices is not None:
        hardware["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    if args.num_nodes is not None:
        hardware["num_nodes"] = args.num_nodes
    update: dict[str, Any] = {"hardware": config.hardware.model_copy(update=hardware)}
    if args.max_steps is not None:
        update["max_steps"] = args.max_steps
    config = TrainConfig.model_validate({**config.model_dump(), **{k: v if not hasattr(v, "model_dump") else
                                                                    v.model_dump() for k, v in update.items()}})
    print(f"bundle: {train(config, resume=args.resume)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
