"""A rerun redoes exactly the stages whose settings or inputs changed, and says why each ran or was skipped:
the ``tests`` preset (4 training steps) through every stage as ``downscale run`` does, then with
``train.max_steps``, then the sampler, then the ensemble quantile-mapping table asked for (~2 min on 2 cores)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from downscale import stages
from downscale.baselines import quantile_map
from downscale.bundle import read_bundle_metadata
from downscale.evaluation.results import read_diagnostics
from downscale.inference import store
from downscale.inference.store import open_output
from downscale.inference.store_schema import FINGERPRINT
from downscale.inference.store_swap import staging_path
from downscale.pipeline_config import PipelineConfig, demo_config
from downscale.stage_record import StageRecord, flatten, record_path
from downscale.training.config import EnsembleQuantileMappingConfig

ALL = ["synthetic", "prepare", "train", "generate", "evaluate", "report"]


def _run(config: PipelineConfig, caplog: pytest.LogCaptureFixture) -> tuple[list[str], dict[str, str]]:
    """Every stage of ``config`` in order: the names of those that ran, and each stage's logged verdict."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="downscale.stages"):
        results = [stage(config, False) for stage in stages.sequence(config)]
    assert [r.name for r in results] == ALL
    verdicts = dict(r.getMessage().split(": ", 1) for r in caplog.records if r.name == "downscale.stages")
    assert set(verdicts) == set(ALL), verdicts
    return [r.name for r in results if not r.skipped], verdicts


def _with(config: PipelineConfig, section: str, **changes) -> PipelineConfig:
    return config.model_copy(update={section: getattr(config, section).model_copy(update=changes)})


def test_a_rerun_redoes_exactly_the_stages_a_change_reaches_and_says_why(tmp_path, caplog):
    tests = demo_config(tmp_path / "run", preset="tests")
    config = _with(tests, "train", max_steps=4, optimizer=tests.train.optimizer.model_copy(update={"warmup_steps": 2}))
    ran, verdicts = _run(config, caplog)
    assert ran == ALL and all(v.startswith("run — ") for v in verdicts.values()), verdicts
    recorded = json.loads(record_path(config.train.bundle_path).read_text())
    assert recorded["config"]["train.max_steps"] == 4 and recorded["stage"] == "train"
    assert recorded["fingerprint"] == StageRecord.read(config.train.bundle_path).fingerprint

    ran, verdicts = _run(config, caplog)
    assert ran == []
    assert verdicts["train"] == f"skipped — {config.train.bundle_path} matches config and inputs"

    longer = _with(config, "train", max_steps=6)
    bundle_before = config.train.bundle_path.read_bytes()
    with pytest.raises(stages.StageChangedError, match=r"^train: train.max_steps changed 4→6 since .*model\.bundle"
                                                        r"\.safetensors was made; set overwrite: true"):
        _run(longer, caplog)
    assert config.train.bundle_path.read_bytes() == bundle_before, "without overwrite the old model stays"

    longer = longer.model_copy(update={"overwrite": True})
    ran, verdicts = _run(longer, caplog)
    assert ran == ["train", "generate", "evaluate", "report"]
    assert verdicts["prepare"].startswith("skipped — ")
    assert verdicts["train"] == "rerun — train.max_steps changed 4→6"
    assert verdicts["generate"].startswith("rerun — input train changed (")
    assert verdicts["evaluate"].startswith("rerun — input generate changed (")
    assert verdicts["report"].startswith("rerun — input evaluate changed (")
    assert config.train.bundle_path.read_bytes() != bundle_before

    sampler = longer.generate.sampler.model_copy(update={"num_steps": 4})
    resampled = _with(longer, "generate", sampler=sampler)
    out = Path(resampled.generate.output).absolute()
    before = store.root_attributes(out)[FINGERPRINT]
    begun = stages.plan_generate(resampled)           # set up, then abandoned as a killed run would be
    assert Path(begun.config.output) == staging_path(out) and begun.items
    assert store.is_complete(out) and store.root_attributes(out)[FINGERPRINT] == before
    ran, verdicts = _run(resampled, caplog)            # resumes the store beside, then swaps it in
    assert ran == ["generate", "evaluate", "report"]
    assert verdicts["train"].startswith("skipped — ")
    assert verdicts["generate"] == "rerun — generate.sampler.num_steps changed 3→4"
    assert store.is_complete(out) and store.root_attributes(out)[FINGERPRINT] == begun.spec.fingerprint
    assert not staging_path(out).exists()

    # asking for the ensemble's quantile-mapping table refits the bundle's tables, keeps its weights, and the
    # generation that writes the mapped members (PRATEsfc_ensemble_qm) reruns; evaluate scores them as an ensemble
    weights = read_bundle_metadata(config.train.bundle_path).weights_sha256
    mapped = _with(_with(resampled, "train", ensemble_quantile_mapping=EnsembleQuantileMappingConfig(clips=2)),
                   "generate", ensemble_variants=("raw", "qm"))
    ran, verdicts = _run(mapped, caplog)
    assert ran == ["train", "generate", "evaluate", "report"]
    assert verdicts["train"] == "refit tables — train.ensemble_quantile_mapping.clips changed 0→2; the weights stay"
    meta = read_bundle_metadata(config.train.bundle_path)
    assert meta.weights_sha256 == weights and meta.baselines.ensemble_quantile_mapping is not None
    assert meta.training.train_config["ensemble_quantile_mapping"]["clips"] == 2
    assert verdicts["generate"].startswith("rerun — generate.ensemble_variants changed")
    written = open_output(out)
    raw = torch.from_numpy(written["PRATEsfc_ensemble_raw"].values)
    mapped_members = quantile_map(raw, meta.baselines.ensemble_quantile_mapping).numpy()
    np.testing.assert_allclose(written["PRATEsfc_ensemble_qm"].values, mapped_members, rtol=1e-6)
    assert "ensemble_qm" in read_diagnostics(mapped.diagnostics_dir).scalars.source.values


def test_a_record_names_every_change_by_its_dotted_key():
    old = StageRecord("generate", {"generate.sampler.num_steps": 8, "generate.seed": 0}, {"train": "a" * 64})
    new = StageRecord("generate", {"generate.sampler.num_steps": 12, "generate.members": 4}, {"train": "b" * 64})
    assert new.changes_from(old) == ["generate.members added (4)", "generate.sampler.num_steps changed 8→12",
                                     "generate.seed removed (was 0)", f"input train changed ({'a' * 12}→{'b' * 12})"]
    assert new.changes_from(new) == [] and new.fingerprint != old.fingerprint
    assert flatten("train", {"optimizer": {"lr": 1e-3}, "network": ["tiny"]}) == {"train.optimizer.lr": 1e-3,
                                                                                   "train.network": ["tiny"]}


def test_a_setting_added_later_is_recorded_only_when_it_departs_from_the_old_behaviour(tmp_path):
    """A bundle trained before ``train.loss_weighting`` existed (area weights) still matches a config that keeps
    ``area``; ``cell`` is a change, named as one."""
    config = demo_config(tmp_path / "run", preset="tests").train
    inputs = {"prepare": "p" * 64}
    area = StageRecord("train", stages._settings("train", "train", config), inputs)
    cell_config = config.model_copy(update={"loss_weighting": "cell"})
    cell = StageRecord("train", stages._settings("train", "train", cell_config), inputs)
    assert "train.loss_weighting" not in area.config and "train.max_steps" in area.config
    assert cell.changes_from(area) == ["train.loss_weighting added (cell)"]


def test_synthetic_data_made_by_another_version_of_its_preset_is_not_reused(tmp_path):
    """The synthetic stage records the preset's resolved fields, not just its name: data a preset made before
    an upgrade changed it (here: recorded with 24 times where the preset now makes 32) stop the run by name."""
    config = demo_config(tmp_path / "run", preset="tests")
    assert not stages.synthetic_data(config).skipped
    assert stages.synthetic_data(config).skipped
    root = config.synthetic_root
    record = json.loads(record_path(root).read_text())
    assert record["config"]["preset.n_times"] == 32 and record["config"]["preset.members"] == ["0001", "0002"]
    old = StageRecord("synthetic", {**record["config"], "preset.n_times": 24})
    old.write(root)
    with pytest.raises(stages.StageChangedError, match=r"^synthetic: preset.n_times changed 24→32 since .* set overwrite"):
        stages.synthetic_data(config)
