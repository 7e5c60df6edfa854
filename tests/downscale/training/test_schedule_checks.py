"""Training settings that contradict the run: refused where the run could never honour them, a WARNING
naming the fields where it honours them other than as written."""

from __future__ import annotations

import logging

import pytest
from tiny_training import tiny_config

from downscale.training.config import TrainConfig
from downscale.training.trainer import fit


def _config(**extra) -> TrainConfig:
    return TrainConfig.model_validate({"dataset": "prepared", "output_dir": "runs/x", **extra})


@pytest.mark.parametrize(("extra", "message"), [
    ({"max_steps": 240}, r"optimizer\.warmup_steps \(500\) is longer than the run \(max_steps 240\): the learning "
                         r"rate would never reach optimizer\.lr \(0\.0002\); give optimizer\.warmup_steps ≤ 120"),
    ({"max_steps": 1000, "mode": "two_stage", "mean_stage_fraction": 0.25},
     r"optimizer\.warmup_steps \(500\) is longer than the mean stage \(250 steps: mean_stage_fraction 0\.25 × "
     r"max_steps 1000\).*≤ 125"),
    ({"max_steps": 1000, "mode": "two_stage", "mean_stage_fraction": 0.6},
     r"optimizer\.warmup_steps \(500\) is longer than the residual stage \(400 steps after the mean stage\)"),
])
def test_a_warmup_longer_than_its_stage_is_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        _config(**extra)


def test_a_consistent_config_has_no_warnings():
    config = _config(max_steps=240, optimizer={"warmup_steps": 50}, validation={"every_n_steps": 80},
                     checkpoint={"every_n_steps": 80})
    assert config.schedule_warnings() == []
    # limits are inclusive: a warm-up of half the run, validation and a checkpoint at the last step
    edge = _config(max_steps=240, optimizer={"warmup_steps": 120}, validation={"every_n_steps": 240},
                   checkpoint={"every_n_steps": 240})
    assert edge.schedule_warnings() == []


def test_odd_settings_are_named_with_their_consequence():
    config = _config(max_steps=240, optimizer={"warmup_steps": 200}, validation={"every_n_steps": 1000},
                     checkpoint={"every_n_steps": 500})
    warmup, validation, checkpoint = config.schedule_warnings()
    assert warmup == ("optimizer.warmup_steps (200) is more than half of the run (max_steps 240): the warm-up is "
                      "cut to 120 steps")
    assert validation.startswith("validation.every_n_steps (1000) is beyond max_steps (240): validation never runs")
    assert checkpoint.startswith("checkpoint.every_n_steps (500) is beyond max_steps (240): the only checkpoint is "
                                 "written at the end")
    two = _config(max_steps=1000, mode="two_stage", mean_stage_fraction=0.5, optimizer={"warmup_steps": 300},
                  validation={"every_n_steps": 100}, checkpoint={"every_n_steps": 100})
    assert two.schedule_warnings() == [
        "optimizer.warmup_steps (300) is more than half of the mean stage (500 steps: mean_stage_fraction 0.5 × "
        "max_steps 1000): the warm-up is cut to 250 steps",
        "optimizer.warmup_steps (300) is more than half of the residual stage (500 steps after the mean stage): "
        "the warm-up is cut to 250 steps"]


def test_training_logs_the_warnings_when_it_starts(tiny_prepared, tmp_path, caplog):
    config = tiny_config(tiny_prepared, tmp_path / "run", max_steps=2, optimizer={"warmup_steps": 1},
                         validation={"every_n_steps": 100}, checkpoint={"every_n_steps": 2})
    with caplog.at_level(logging.WARNING, logger="downscale.training.trainer"):
        trainer, _ = fit(config)
    assert trainer.global_step == 2
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "downscale.training.trainer" and r.levelno == logging.WARNING]
    assert warnings == ["training config: validation.every_n_steps (100) is beyond max_steps (2): validation never "
                        "runs, so no val/* metrics and no best-*.ckpt"]
