"""A real Lightning Trainer fits the tiny network on a prepared synthetic dataset, writes checkpoints,
logs and a bundle; the bundle reproduces the EMA model; both training modes (and patch mode) run."""

from __future__ import annotations

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from tiny_training import tiny_config

from data_catalog.prepare import PreparedDataset
from data_catalog.upsample import upsample_coarse
from downscale.bundle import load_model, read_bundle_metadata
from downscale.training.module import DownscalingModule
from downscale.training.trainer import build_datamodule, export_bundle, fit, train

VAL_METRICS = ("val/crps_fair", "val/crps_standard", "val/residual_std_ratio", "val/mae_mean", "val/q999_ratio", "val/q9999_ratio", "val/tail_error")


class Snapshots(pl.Callback):
    """Copies of μ's and the denoiser's parameters after every step (and before the first)."""

    def __init__(self) -> None:
        self.mean: list[torch.Tensor] = []
        self.denoiser: list[torch.Tensor] = []

    def _take(self, module: DownscalingModule) -> None:
        flat = lambda m: torch.cat([p.detach().flatten().clone() for p in m.parameters()])  # noqa: E731
        self.mean.append(flat(module.net.mean_net))
        self.denoiser.append(flat(module.net.denoiser))

    def on_train_start(self, trainer, pl_module) -> None:
        self._take(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._take(pl_module)


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """``train()`` of 6 steps (checkpoint every 2, validation every 3)."""
    torch.set_num_threads(1)
    config = tiny_config(tiny_prepared, tmp_path_factory.mktemp("run") / "out")
    return config, train(config)


def test_fit_writes_checkpoints_logs_and_bundle(trained, tiny_prepared):
    config, bundle = trained
    ckpts = config.checkpoint_dir
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-crps.ckpt", "best-tail.ckpt", "last.ckpt"]
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == config.max_steps
    assert last["ema"]["num_updates"] == config.max_steps
    assert {"optimizer_states", "lr_schedulers", "loops"} <= set(last)
    best = torch.load(ckpts / "best-crps.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] in (3, 6)  # validations ran after steps 3 and 6
    rows = list(csv.DictReader((config.output_dir / "logs" / "metrics.csv").open()))
    val_rows = [r for r in rows if r["val/crps_fair"]]
    assert [int(r["step"]) for r in val_rows] == [2, 5]  # logged at the 0-based step index of the 3rd, 6th step
    for r in val_rows:
        for name in VAL_METRICS:
            assert math.isfinite(float(r[name])) and float(r[name]) >= 0, (name, r[name])
    assert all(float(r["train/total"]) > 0 for r in rows if r["train/total"])

    meta = read_bundle_metadata(bundle)
    manifest = PreparedDataset.open(tiny_prepared).manifest
    assert (meta.coarse_resolution, meta.fine_resolution, meta.factor) == (4, 16, 4)
    assert meta.predictors == manifest.predictors and meta.static_features == manifest.static_features
    assert meta.clip_frames == 3 and meta.time_step_seconds == 3 * 3600
    assert meta.normalization == PreparedDataset.open(tiny_prepared).stats
    assert meta.fingerprint == manifest.fingerprint and meta.catalog_name == manifest.catalog_name
    t = meta.training
    assert t.steps == config.max_steps and t.seed == config.seed and t.ema_updates == config.max_steps
    assert meta.train_members == ("0001",) and meta.validation_members == ("0002",)
    assert meta.baselines.quantile_mapping is not None and meta.baselines.quantile_mapping.split == "train"


def test_bundle_reproduces_the_ema_model(trained, tiny_prepared):
    config, bundle = trained
    net, meta = load_model(bundle, "cpu")
    module = DownscalingModule.load_from_checkpoint(config.checkpoint_dir / "last.ckpt", map_location="cpu")
    module.eval()
    dm = build_datamodule(config)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        cond = module.conditioning(batch)
        with module.ema.averaged(module.net):
            mu_ema = module.net.forward_mean(cond)
            latents = torch.randn(mu_ema.shape, generator=torch.Generator().manual_seed(5))
            sample_ema = module.net.sample(cond, latents)
        mu_live = module.net.forward_mean(cond)
        mu_bundle = net.forward_mean(cond)
        sample_bundle = net.sample(cond, latents)
    assert torch.equal(mu_bundle, mu_ema) and torch.equal(sample_bundle, sample_ema)
    assert not torch.equal(mu_live, mu_ema)  # the bundle holds the EMA, not the live weights
    assert meta.model.network.frames == 3 and meta.model.network.activation_checkpointing is False

    # export from another checkpoint: same metadata, that checkpoint's EMA weights
    best = export_bundle(config.checkpoint_dir / "best-tail.ckpt", config.output_dir / "best.safetensors")
    assert best.training.checkpoint == "best-tail.ckpt" and best.factor == 4
    load_model(config.output_dir / "best.safetensors")


def test_conditioning_is_upsampled_coarse_plus_static_and_area_weights_have_mean_one(trained, tiny_prepared):
    config, _ = trained
    module = DownscalingModule.load_from_checkpoint(config.checkpoint_dir / "last.ckpt", map_location="cpu")
    dm = build_datamodule(config)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    cond = module.conditioning(batch)
    b, t, c_pred = batch["coarse"].shape[:3]
    assert cond.shape == (b, t, c_pred + batch["static"].shape[1], 6, 16, 16)
    assert torch.equal(cond[:, :, :c_pred], upsample_coarse(batch["coarse"], 4, "bilinear"))
    assert torch.equal(cond[:, 1, c_pred:], batch["static"])
    assert module.area_weights.mean().item() == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(module.area_weights, batch["area_weight"][0])
    assert module.area_weights.std() > 0  # real cube-sphere areas, not uniform


def test_cell_loss_weighting_counts_every_cell_alike_and_validation_stays_area_weighted(trained):
    config, _ = trained
    area = DownscalingModule.load_from_checkpoint(config.checkpoint_dir / "last.ckpt", map_location="cpu")
    cell = DownscalingModule(config.model_copy(update={"loss_weighting": "cell"}), area.info, area.area_weights)
    cell.net.load_state_dict(area.net.state_dict())
    dm = build_datamodule(config)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    cond, target = area.conditioning(batch), batch["target"]
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    fixed = {"sigma": torch.full((target.shape[0],), 0.5), "noise": noise}
    with torch.no_grad():
        by_area = area.net.loss(cond, target, area.loss_weights(batch, target, cond), **fixed)["total"]
        by_cell = cell.net.loss(cond, target, cell.loss_weights(batch, target, cond), **fixed)["total"]
        uniform = area.net.loss(cond, target, torch.ones_like(area.area_weights), **fixed)["total"]
    torch.testing.assert_close(by_cell, uniform)
    assert abs(float(by_cell - by_area)) > 1e-6 * float(by_area)       # the weighting changes the loss
    assert torch.equal(cell.area_weights, area.area_weights)            # validation scores stay area-weighted


def test_heavy_rain_weighting_weighs_each_cell_by_its_coarse_rain(trained):
    """γ = 1: weight ∝ area × (1 + P_c/ε), P_c from the batch's normalized coarse rain by the statistics' own
    formula (ε expm1(std·z + mean)); mean 1; the loss changes; γ = 0 keeps the area weights."""
    config, _ = trained
    area = DownscalingModule.load_from_checkpoint(config.checkpoint_dir / "last.ckpt", map_location="cpu")
    heavy = DownscalingModule(config.model_copy(update={"heavy_rain_weighting": 1.0}), area.info, area.area_weights)
    heavy.net.load_state_dict(area.net.state_dict())
    dm = build_datamodule(config)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    cond, target = area.conditioning(batch), batch["target"]
    weights = heavy.loss_weights(batch, target, cond)
    assert weights.shape == target.shape and weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    channel = list(area.info.predictors).index(f"{area.info.target}_coarse")
    s = area.stats.variables[f"{area.info.target}_coarse"]
    epsilon = area.stats.variables[area.info.target].epsilon
    rate = s.epsilon * torch.expm1(cond[:, :, channel:channel + 1].double() * s.std + s.mean)
    expected = (1 + rate.clamp_min(0) / epsilon) * area.area_weights.double()
    torch.testing.assert_close(weights.double(), expected / expected.mean(), rtol=1e-4, atol=1e-6)
    assert float((weights / area.area_weights).max() / (weights / area.area_weights).min()) > 2  # it rains unevenly
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    fixed = {"sigma": torch.full((target.shape[0],), 0.5), "noise": noise}
    with torch.no_grad():
        by_area = area.net.loss(cond, target, area.loss_weights(batch, target, cond), **fixed)["total"]
        by_rain = heavy.net.loss(cond, target, weights, **fixed)["total"]
    assert abs(float(by_rain - by_area)) > 1e-6 * float(by_area)
    assert area.loss_weights(batch, target, cond) is area.area_weights


def test_heavy_rain_weighting_needs_the_coarse_rain_among_the_predictors(trained):
    config, _ = trained
    area = DownscalingModule.load_from_checkpoint(config.checkpoint_dir / "last.ckpt", map_location="cpu")
    info = area.info.model_copy(update={"predictors": tuple(p for p in area.info.predictors
                                                            if p != f"{area.info.target}_coarse")})
    with pytest.raises(ValueError, match="PRATEsfc_coarse.*not among the predictors"):
        DownscalingModule(config.model_copy(update={"heavy_rain_weighting": 1.0}), info, area.area_weights)


def test_existing_run_is_not_overwritten_without_resume(trained):
    config, _ = trained
    with pytest.raises(FileExistsError, match="resume"):
        fit(config)


def test_two_stage_trains_the_mean_then_freezes_it(tiny_prepared, tmp_path):
    config = tiny_config(tiny_prepared, tmp_path / "two", mode="two_stage", mean_stage_fraction=0.5,
                         validation={"every_n_steps": 100})
    snaps = Snapshots()
    trainer, module = fit(config, callbacks=[snaps])
    assert trainer.global_step == 6 and module.mean_frozen
    m, d = snaps.mean, snaps.denoiser
    for step in (1, 2, 3):  # stage 1: μ learns, the denoiser is untouched
        assert not torch.equal(m[step], m[step - 1]) and torch.equal(d[step], d[0])
    for step in (4, 5, 6):  # stage 2: μ frozen (at its EMA weights), the denoiser learns
        assert torch.equal(m[step], m[4]) and not torch.equal(d[step], d[step - 1])
    assert all(not p.requires_grad for p in module.net.mean_net.parameters())
    ema_mean = torch.cat([module.ema.shadow[k].flatten() for k, _ in module.net.named_parameters()
                          if k.startswith("mean_net.")])
    assert torch.equal(ema_mean, m[6])  # live μ = its EMA: the bundle's μ is the one the diffusion saw
    ckpt = torch.load(config.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["downscale"]["mean_frozen"] is True


def test_joint_mode_trains_both_networks_every_step(tiny_prepared, tmp_path):
    config = tiny_config(tiny_prepared, tmp_path / "joint", max_steps=3, validation={"every_n_steps": 100})
    snaps = Snapshots()
    fit(config, callbacks=[snaps])
    for step in (1, 2, 3):
        assert not torch.equal(snaps.mean[step], snaps.mean[step - 1])
        assert not torch.equal(snaps.denoiser[step], snaps.denoiser[step - 1])


def test_detached_mode_trains_both_networks_with_the_diffusion_gradients_stopped_at_the_mean(tiny_prepared, tmp_path):
    config = tiny_config(tiny_prepared, tmp_path / "detached", mode="detached", max_steps=2,
                         validation={"every_n_steps": 100})
    snaps = Snapshots()
    _, module = fit(config, callbacks=[snaps])
    for step in (1, 2):                 # μ learns from its own loss, the denoiser from the diffusion loss
        assert not torch.equal(snaps.mean[step], snaps.mean[step - 1])
        assert not torch.equal(snaps.denoiser[step], snaps.denoiser[step - 1])
    assert module.net.detach_mean and not module.mean_frozen     # test_downscaler: detach_mean stops the gradients


def test_patch_mode_trains_and_validates(tiny_prepared, tmp_path):
    """Patch mode, with heavy-rain loss weights (per-patch area weights times the coarse rain's)."""
    config = tiny_config(tiny_prepared, tmp_path / "patch", max_steps=3, spatial_mode="patch", patch_size=8,
                         validation={"every_n_steps": 3}, heavy_rain_weighting=1.0)
    trainer, module = fit(config)
    assert trainer.global_step == 3 and module.net.geometry == "patch"
    assert math.isfinite(float(trainer.callback_metrics["val/crps_fair"]))
