"""The ensemble's quantile-mapping table: fitted on the members' own training-split distribution, so mapping
the very members it was fitted on gives the truth's quantiles; clips spread over the split; exported in the
bundle only when asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_training import tiny_config

from data_catalog.clips import ClipDataset, collate_clips
from data_catalog.prepare import PreparedDataset
from downscale.baselines import quantile_map
from downscale.bundle import read_bundle_metadata
from downscale.dataset_info import DatasetInfo
from downscale.models.conditioning import build_conditioning
from downscale.training.ensemble_table import fit_ensemble_quantile_table
from downscale.training.module import downscaler_spec, network_config
from downscale.training.trainer import train


def test_clips_are_spread_evenly_from_first_to_last(tiny_prepared):
    dataset = ClipDataset(PreparedDataset.open(tiny_prepared), "train", "cube")
    n = len(dataset)
    assert n >= 5
    assert dataset.spread_with_target(3) == [0, round((n - 1) / 2), n - 1]
    assert dataset.spread_with_target(1) == [0]
    assert dataset.spread_with_target(n + 3) == list(range(n))
    assert dataset.spread_with_target(0) == []


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(weights[order]) / weights.sum()
    return values[order][np.searchsorted(cdf, probabilities)]


def test_mapping_the_fitted_members_gives_the_truths_quantiles(tiny_prepared, tmp_path):
    config = tiny_config(tiny_prepared, tmp_path / "run", ensemble_quantile_mapping={"clips": 4, "members": 3})
    prepared = PreparedDataset.open(tiny_prepared)
    info = DatasetInfo.from_prepared(prepared)
    torch.manual_seed(0)
    net = downscaler_spec(config, info, network_config(config, info)).build()    # untrained: far from the truth

    table = fit_ensemble_quantile_table(net, config, info, prepared)
    dataset = ClipDataset(prepared, "train", "cube")
    chosen = dataset.spread_with_target(4)
    assert table.n_values == len(chosen) * info.clip_frames * 3 * 6 * info.fine_resolution ** 2
    assert "3 raw members" in table.note and f"{len(chosen)} of {len(dataset)} training clips" in table.note

    # the same members again (same seed, same clips) and the truth of the same frames
    generator = torch.Generator().manual_seed(config.validation.seed)
    area = prepared.open_static()["area"].values.astype(np.float64)
    members, truth = [], []
    with torch.no_grad():
        for index in chosen:
            batch = collate_clips([dataset[index]])
            cond = build_conditioning(batch["coarse"], batch["static"], info.factor, "cube")
            sample = net.sample_members(cond, 3, config.validation.sampler, generator,
                                        members_per_batch=config.validation.members_per_batch)
            members.append(info.physical_target(sample).double().numpy().reshape(-1, *area.shape))
            truth.append(info.physical_target(batch["target"]).double().numpy().reshape(-1, *area.shape))
    members, truth = np.concatenate(members), np.concatenate(truth)
    mapped = quantile_map(torch.from_numpy(members), table).numpy()

    p = np.array([0.75, 0.9, 0.95, 0.99])
    w_members = np.broadcast_to(area, members.shape).ravel()
    w_truth = np.broadcast_to(area, truth.shape).ravel()
    q_truth = _weighted_quantiles(truth.ravel(), w_truth, p)
    q_raw = _weighted_quantiles(members.ravel(), w_members, p)
    q_mapped = _weighted_quantiles(mapped.ravel(), w_members, p)
    assert np.all(q_truth > 0)
    # the untrained members are far off; mapped, they sit on the truth's quantiles (histogram bins: 0.26 %)
    assert np.max(np.abs(q_raw / q_truth - 1)) > 0.5, (q_raw, q_truth)
    np.testing.assert_allclose(q_mapped, q_truth, rtol=0.02)


def test_the_bundle_carries_the_table_only_when_asked(tiny_prepared, tmp_path):
    without = train(tiny_config(tiny_prepared, tmp_path / "without", max_steps=2))
    assert read_bundle_metadata(without).baselines.ensemble_quantile_mapping is None
    assert read_bundle_metadata(without).baselines.quantile_mapping is not None
    asked = tiny_config(tiny_prepared, tmp_path / "with", max_steps=2, ensemble_quantile_mapping={"clips": 2})
    table = read_bundle_metadata(train(asked)).baselines.ensemble_quantile_mapping
    assert table is not None and table.n_values > 0 and "2 raw members" in table.note


def test_no_table_is_fitted_for_zero_clips(tiny_prepared, tmp_path):
    config = tiny_config(tiny_prepared, tmp_path / "run")
    prepared = PreparedDataset.open(tiny_prepared)
    info = DatasetInfo.from_prepared(prepared)
    net = downscaler_spec(config, info, network_config(config, info)).build()
    with pytest.raises(ValueError, match="ensemble_quantile_mapping.clips is 0"):
        fit_ensemble_quantile_table(net, config, info, prepared)
