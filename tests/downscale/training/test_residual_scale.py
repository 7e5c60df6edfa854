"""The residual scale ``subgrid_rms``: measured on the train split's fine-scale variability, normalized, stored in
the model and bundle, used by training, validation and generation alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from tiny_training import tiny_config

from data_catalog.prepare import PreparedDataset
from data_catalog.upsample import upsample_coarse
from downscale.bundle import load_model
from downscale.inference.runtime import Runtime
from downscale.models.conditioning import build_conditioning
from downscale.models.samplers import PRODUCTION_SAMPLER
from downscale.training.config import TrainConfig
from downscale.training.module import fine_area_weights
from downscale.training.residual_scale import FLOOR, subgrid_rms_scale
from downscale.training.trainer import build_datamodule, train


def coarse_cell_rms(prepared: PreparedDataset) -> torch.Tensor:
    """Per coarse cell, the RMS of the normalized target's deviation from its coarse-cell mean over every training
    frame, computed with xarray (independently of the module)."""
    m, f = prepared.manifest, prepared.manifest.factor
    squares = []
    for member, frames in prepared.splits.training_frames().items():
        y = prepared.stats.normalize(m.target, prepared.open_member(member)[m.target].isel(time=frames).astype("f8"))
        blocks = y.coarsen(y=f, x=f).construct(y=("yc", "yi"), x=("xc", "xi"))
        squares.append(((blocks - blocks.mean(["yi", "xi"])) ** 2).mean(["yi", "xi"]))
    rms = np.sqrt(xr.concat(squares, "time").mean("time"))
    return torch.from_numpy(rms.transpose("tile", "yc", "xc").values)


def test_the_scale_is_the_train_splits_coarse_cell_rms_interpolated_and_normalized(tiny_prepared):
    prepared = PreparedDataset.open(tiny_prepared)
    scale = subgrid_rms_scale(prepared, fine_area_weights(prepared)).double()
    area = torch.as_tensor(prepared.open_static()["area"].values)
    weights = area / area.sum()
    assert scale.shape == (6, 16, 16)
    assert float((weights * scale ** 2).sum()) == pytest.approx(1.0, rel=1e-5)

    expected = upsample_coarse(coarse_cell_rms(prepared), prepared.manifest.factor, "bilinear")
    rms = float((weights * expected ** 2).sum().sqrt())
    expected = expected.clamp_min(FLOOR * rms)
    expected = expected / float((weights * expected ** 2).sum().sqrt())
    torch.testing.assert_close(scale, expected, rtol=1e-4, atol=1e-5)
    assert float(scale.max() / scale.min()) > 1.2      # the tiny data's variability is not uniform


def test_a_frame_cap_reads_fewer_frames(tiny_prepared):
    prepared = PreparedDataset.open(tiny_prepared)
    weights = fine_area_weights(prepared)
    full, capped = subgrid_rms_scale(prepared, weights), subgrid_rms_scale(prepared, weights, max_frames=3)
    assert capped.shape == full.shape and bool(torch.isfinite(capped).all())
    assert not torch.equal(capped, full)


def test_patch_training_refuses_a_per_cell_scale(tiny_prepared, tmp_path):
    doc = tiny_config(tiny_prepared, tmp_path).model_dump(mode="json")
    doc.update(spatial_mode="patch", patch_size=8, residual_scale="subgrid_rms")
    with pytest.raises(ValueError, match="per-cell map of whole cubes"):
        TrainConfig.model_validate(doc)


def test_training_stores_the_scale_and_the_bundle_samples_with_it(tiny_prepared, tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(tiny_prepared, tmp_path / "out", residual_scale="subgrid_rms", max_steps=2,
                         validation={"every_n_steps": 2})
    net, meta = load_model(train(config), "cpu")
    prepared = PreparedDataset.open(tiny_prepared)
    scale = subgrid_rms_scale(prepared, fine_area_weights(prepared))
    torch.testing.assert_close(net.residual_scale, scale)
    assert meta.training.train_config["residual_scale"] == "subgrid_rms"

    dm = build_datamodule(config)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    cond = build_conditioning(batch["coarse"][:1], batch["static"][:1], meta.factor, "cube")
    latents = torch.randn(cond[:, :, :1].shape, generator=torch.Generator().manual_seed(1))
    runtime = Runtime(net, meta, batch["static"][0], PRODUCTION_SAMPLER, meta.clip_frames, 1)
    seeds = np.array([[11, 12, 13]])
    with torch.no_grad():
        mu = net.forward_mean(cond)
        scaled = net.sample(cond, latents, mean=mu) - mu                       # validation's path
        generated = meta.normalized_target(runtime.members(cond, mu, seeds))  # generation's path
        net.set_residual_scale(torch.ones(()))
        plain = net.sample(cond, latents, mean=mu) - mu
        generated_plain = meta.normalized_target(runtime.members(cond, mu, seeds))
    torch.testing.assert_close(scaled, scale * plain)
    dry = meta.normalized_target(torch.zeros(()))
    wet = (generated > dry) & (generated_plain > dry)
    assert int(wet.sum()) > 100                                                # floored cells left out
    mu0 = mu[0, :, 0].expand_as(generated)
    torch.testing.assert_close((generated - mu0)[wet], (scale * (generated_plain - mu0))[wet], rtol=1e-4, atol=1e-4)


def test_a_resumed_run_takes_the_scale_from_its_checkpoint(tiny_prepared, tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(tiny_prepared, tmp_path / "out", residual_scale="subgrid_rms", max_steps=2,
                         validation={"every_n_steps": 2})
    train(config)
    net, meta = load_model(train(config.model_copy(update={"max_steps": 4}), resume=True), "cpu")
    assert meta.training.steps == 4
    prepared = PreparedDataset.open(tiny_prepared)
    torch.testing.assert_close(net.residual_scale, subgrid_rms_scale(prepared, fine_area_weights(prepared)))
