"""Run a training from a :class:`TrainConfig`, resume it, and export the model bundle.

    bundle = train(config)                  # fresh run → <output_dir>/model.bundle.safetensors
    bundle = train(config, resume=True)     # continue from checkpoints/last.ckpt (or a newer SLURM hpc_ckpt)
    export_bundle("runs/x/checkpoints/best-crps.ckpt", "best.bundle.safetensors")
    net, meta = load_model_from_bundle(bundle, "cuda")

Command line (what ``infra/slurm/train.sbatch`` runs under ``srun``, one process per GPU)::

    python -m downscale.training.trainer --config train.yaml [--resume] [--devices 8] [--num-nodes 2]

Hardware: ``precision: auto`` is bf16-mixed on CUDA and 32-bit otherwise; ``strategy: auto`` is DDP
when more than one device or node is used (``find_unused_parameters`` on in ``two_stage`` mode,
where each stage leaves one network without gradients). Under SLURM, Lightning's
``SLURMEnvironment`` is detected from the environment (ranks from ``srun``); on ``SIGUSR1``
(``#SBATCH --signal=SIGUSR1@120``) it writes ``hpc_ckpt_N.ckpt`` and requeues the job, and
``resume=True`` picks whichever of that and ``last.ckpt`` is newer.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.strategies import DDPStrategy, Strategy

from data_catalog.prepare import PreparedDataset
from downscale.bundle import BundleMetadata, load_bundle, save_bundle
from downscale.models.config import NetworkConfig
from downscale.models.downscaler import VideoDownscaler
from downscale.training.checkpointing import (
    LAST,
    AtomicCheckpointIO,
    checkpoint_callbacks,
    remove_stale_temporaries,
)
from downscale.training.config import TrainConfig
from downscale.training.datamodule import DownscalingDataModule
from downscale.training.module import CHECKPOINT_KEY, DatasetInfo, DownscalingModule, fine_area_weights
from downscale.training.progress import ProgressCallback, ProgressReport

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


def loggers(config: TrainConfig) -> list[Logger]:
    """CSV always (``<output_dir>/logs/``); TensorBoard too when it is installed. Both offline."""
    out: list[Logger] = [CSVLogger(Path(config.output_dir), name="logs", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401

        out.append(TensorBoardLogger(Path(config.output_dir), name="tensorboard", version=""))
    except ImportError:
        pass
    return out


def build_trainer(config: TrainConfig, callbacks: list[pl.Callback] | None = None, **overrides: Any) -> pl.Trainer:
    """A ``Trainer`` for ``config``: step-based validation and checkpoints, atomic checkpoint IO, offline logs."""
    h, v = config.hardware, config.validation
    kwargs: dict[str, Any] = dict(
        max_steps=config.max_steps, max_epochs=-1,
        accelerator="gpu" if h.accelerator == "cuda" else h.accelerator, devices=h.devices,
        num_nodes=h.num_nodes, strategy=resolve_strategy(config), precision=resolve_precision(config),
        callbacks=[*checkpoint_callbacks(config.checkpoint_dir, config.checkpoint.every_n_steps,
                                         config.checkpoint.keep_periodic),
                   LearningRateMonitor(logging_interval="step"), *(callbacks or [])],
        plugins=[AtomicCheckpointIO()], logger=loggers(config), default_root_dir=str(config.output_dir),
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


def build_module(config: TrainConfig) -> DownscalingModule:
    prepared = PreparedDataset.open(config.dataset)
    return DownscalingModule(config, DatasetInfo.from_prepared(prepared), fine_area_weights(prepared))


# ---- resume -----------------------------------------------------------------------------------------------
def _hpc_checkpoints(output_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("hpc_ckpt_*.ckpt")
             if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
    return [p for _, p in sorted(found)]


def resume_checkpoint(config: TrainConfig) -> str | None:
    """``"last"`` (Lightning finds ``checkpoints/last.ckpt``), or a SLURM ``hpc_ckpt_N.ckpt`` newer than it;
    None when there is nothing to resume from."""
    last = config.checkpoint_dir / LAST
    hpc = _hpc_checkpoints(Path(config.output_dir))
    if hpc and (not last.exists() or hpc[-1].stat().st_mtime > last.stat().st_mtime):
        return str(hpc[-1])
    return "last" if last.exists() else None


def fit(config: TrainConfig, resume: bool = False, callbacks: list[pl.Callback] | None = None,
        **trainer_overrides: Any) -> tuple[pl.Trainer, DownscalingModule]:
    """Train (or continue) a run; returns the trainer and the trained module (live and EMA weights)."""
    config.check_paths()
    out = Path(config.output_dir)
    remove_stale_temporaries(config.checkpoint_dir)
    ckpt = resume_checkpoint(config) if resume else None
    if not resume and (config.checkpoint_dir / LAST).exists():
        raise FileExistsError(f"{config.checkpoint_dir / LAST} exists: resume with resume=True (--resume) "
                              f"or choose another output_dir than {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.yaml").write_text(config.to_yaml())
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config)
    trainer = build_trainer(config, callbacks, **trainer_overrides)
    if resume and ckpt is None:
        log.warning("resume requested but %s holds no checkpoint: starting from step 0", config.checkpoint_dir)
    trainer.fit(module, datamodule=build_datamodule(config), ckpt_path=ckpt)
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
    """What the bundle records: architecture, data description (from the prepared manifest), provenance."""
    net = NetworkConfig.model_validate(network).model_copy(update={"activation_checkpointing": False})
    d = config.diffusion
    return BundleMetadata(
        network=net.model_dump(mode="json"),
        model={"class": "VideoDownscaler", "in_channels": info.in_channels, "out_channels": 1,
               "sigma_data": d.sigma_data, "detach_mean": config.mode == "two_stage", "P_mean": d.P_mean,
               "P_std": d.P_std, "diffusion_weight": d.diffusion_weight, "training_mode": config.mode,
               "spatial_mode": config.spatial_mode, "patch_size": config.patch_size,
               "conditioning": {"upsample": "bilinear (cube-aware, data_catalog.upsample)",
                                "channels": [*info.predictors, *info.static_features]}},
        target=info.target, predictors=info.predictors, static_features=info.static_features,
        coarse_resolution=info.coarse_resolution, fine_resolution=info.fine_resolution, factor=info.factor,
        clip_frames=info.clip_frames, time_step_seconds=info.time_step_seconds, normalization=info.normalization,
        provenance={"prepared_dataset": info.path, "prepared_fingerprint": info.fingerprint,
                    "catalog": info.catalog_name, "train_members": list(info.train_members),
                    "validation_members": list(info.validation_members), "steps": steps,
                    "max_steps": config.max_steps, "seed": config.seed, "training_mode": config.mode,
                    "ema_decay": config.ema.decay, "ema_updates": ema_updates, "weights": "EMA",
                    "checkpoint": checkpoint_name, "train_config": config.model_dump(mode="json")},
    )


def baseline_tables(info: DatasetInfo) -> dict[str, Any]:
    """Tables of the deterministic baselines, fitted on the training split of the prepared dataset (the
    quantile-mapping table); empty, with a warning, when that dataset is no longer there."""
    from downscale.inference.baselines import fit_quantile_table

    if not PreparedDataset.is_complete(info.path):
        log.warning("prepared dataset %s not found: the bundle gets no quantile-mapping table", info.path)
        return {}
    return {"quantile_mapping": fit_quantile_table(PreparedDataset.open(info.path)).model_dump(mode="json")}


def export_module(module: DownscalingModule, out: str | Path, checkpoint_name: str | None = None) -> BundleMetadata:
    """Write the EMA weights of a trained module as a bundle."""
    meta = bundle_metadata(module.config, module.info, module.network_config, int(module.global_step),
                           module.ema.num_updates, checkpoint_name)
    meta = meta.model_copy(update={"baselines": baseline_tables(module.info)})
    return save_bundle(out, module.ema.averaged_state(), meta)


def export_bundle(checkpoint: str | Path, out: str | Path) -> BundleMetadata:
    """Write the bundle of a training checkpoint (its EMA weights); needs no dataset and no GPU."""
    checkpoint = Path(checkpoint)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "ema" not in ckpt or CHECKPOINT_KEY not in ckpt:
        raise ValueError(f"checkpoint {checkpoint}: not a downscaling training checkpoint (no EMA weights)")
    hp = ckpt["hyper_parameters"]
    config, info = TrainConfig.model_validate(hp["train_config"]), DatasetInfo.model_validate(hp["dataset"])
    meta = bundle_metadata(config, info, ckpt[CHECKPOINT_KEY]["network"], int(ckpt["global_step"]),
                           int(ckpt["ema"]["num_updates"]), checkpoint.name)
    return save_bundle(out, ckpt["ema"]["shadow"], meta.model_copy(update={"baselines": baseline_tables(info)}))


def load_model_from_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoDownscaler, BundleMetadata]:
    """Rebuild the network a bundle describes and load its weights (strictly); in eval mode on ``device``."""
    meta, state = load_bundle(path, device)
    m = meta.model
    if m.get("class") != "VideoDownscaler":
        raise ValueError(f"bundle {path}: model class {m.get('class')!r}, this loader builds VideoDownscaler")
    net = VideoDownscaler.build(NetworkConfig.model_validate(meta.network), int(m["in_channels"]),
                                int(m["out_channels"]), float(m["sigma_data"]), detach_mean=bool(m["detach_mean"]),
                                P_mean=float(m["P_mean"]), P_std=float(m["P_std"]),
                                diffusion_weight=float(m["diffusion_weight"]))
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), meta


# ---- command line -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="downscale train", description="Train a downscaler (docs/training.md).")
    p.add_argument("--config", required=True, help="training YAML (docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint if there is one")
    p.add_argument("--devices", help="override hardware.devices")
    p.add_argument("--num-nodes", type=int, help="override hardware.num_nodes")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
