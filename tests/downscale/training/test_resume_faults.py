"""``--resume`` against broken or hostile checkpoints, with a real Lightning trainer on the tiny set-up: a
truncated ``last.ckpt`` → the newest intact checkpoint (logged); a planted pickle never runs, even with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; the metrics history stays whole across a resume; a failed attempt
loses neither ``logs/metrics.csv`` nor ``train_config.yaml``; no intact checkpoint → one line, exit 2."""

from __future__ import annotations

import csv
import logging
import os
import pickle

import pytest
import torch
import yaml
from tiny_training import tiny_config

from downscale.cli import main as cli
from downscale.training.checkpointing import AtomicCheckpointIO
from downscale.training.trainer import fit

TRAIN = "train/total"


def _rows(config) -> list[dict[str, str]]:
    return list(csv.DictReader((config.output_dir / "logs" / "metrics.csv").open()))


def _steps(rows: list[dict[str, str]], column: str) -> list[int]:
    return [int(r["step"]) for r in rows if r.get(column)]


def _resume_log(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "downscale.training.resume")


def test_truncated_last_checkpoint_resumes_from_the_newest_intact_one(tiny_prepared, tmp_path, caplog):
    """last.ckpt (step 6) cut in half, step=6 gone: the best checkpoints (step 5, the validation) are the
    newest intact ones, ahead of step=4; the run continues from there to step 8 and metrics.csv holds the
    rows of steps 0–4 as the first attempt wrote them, then 5–7 — each step once."""
    common = dict(checkpoint={"every_n_steps": 2, "keep_periodic": True}, validation={"every_n_steps": 5})
    first = tiny_config(tiny_prepared, tmp_path / "out", max_steps=6, **common)
    fit(first)
    before = _rows(first)
    assert _steps(before, TRAIN) == list(range(6)) and _steps(before, "val/crps_fair") == [4]
    ckpts = first.checkpoint_dir
    last = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(last[: len(last) // 2])
    (ckpts / "step=00000006.ckpt").unlink()

    second = tiny_config(tiny_prepared, tmp_path / "out", max_steps=8, **common)
    with caplog.at_level(logging.INFO, logger="downscale.training.resume"):
        trainer, _ = fit(second, resume=True)

    message = _resume_log(caplog)
    assert "(step 5), the newest intact checkpoint" in message and "/best-" in message, message
    assert "last.ckpt: unreadable (RuntimeError: PytorchStreamReader failed reading zip archive" in message
    assert trainer.global_step == 8
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 8

    after = _rows(second)
    assert _steps(after, TRAIN) == list(range(8))
    assert _steps(after, "val/crps_fair") == [4]
    kept = [r for r in after if int(r["step"]) < 5]
    assert [{k: v for k, v in r.items() if v} for r in kept] == [{k: v for k, v in r.items() if v}
                                                                for r in before if int(r["step"]) < 5]
    assert yaml.safe_load((second.output_dir / "train_config.yaml").read_text())["max_steps"] == 8


def test_every_resume_keeps_the_earlier_metrics(tiny_prepared, tmp_path):
    """Three attempts (4, then 6, then 8 steps): the file ends with every step once, the first attempt's
    rows unchanged."""
    rows = {}
    for steps, resume in ((4, False), (6, True), (8, True)):
        config = tiny_config(tiny_prepared, tmp_path / "out", max_steps=steps, validation={"every_n_steps": 100})
        fit(config, resume=resume)
        rows[steps] = _rows(config)
        assert _steps(rows[steps], TRAIN) == list(range(steps)), steps
    assert [r[TRAIN] for r in rows[8] if r.get(TRAIN)][:4] == [r[TRAIN] for r in rows[4] if r.get(TRAIN)]


def test_a_failed_attempt_keeps_metrics_and_config(tiny_prepared, tmp_path):
    """A resume whose network does not fit the checkpoint fails while restoring it: the run's record (metrics,
    config, checkpoints) is left exactly as the last successful attempt wrote it."""
    config = tiny_config(tiny_prepared, tmp_path / "out", max_steps=4)
    fit(config)
    record = [config.output_dir / "logs" / "metrics.csv", config.output_dir / "train_config.yaml",
              config.checkpoint_dir / "last.ckpt"]
    before = [p.read_bytes() for p in record]

    other = tiny_config(tiny_prepared, tmp_path / "out", max_steps=6,
                        network={"preset": "tiny", "overrides": {"base_channels": 16}})
    with pytest.raises(RuntimeError, match="size"):  # restoring 16-channel weights from 8-channel ones
        fit(other, resume=True)
    assert [p.read_bytes() for p in record] == before


class Payload:
    """Unpickling this creates the directory ``marker``: what a planted checkpoint could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_planted_pickle_never_runs(tiny_prepared, tmp_path, monkeypatch, caplog):
    """A pickle with a payload planted as last.ckpt, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in the environment:
    the payload does not run (neither in the search for a checkpoint nor in Lightning's restore); the run
    resumes from the newest intact checkpoint, saying why last.ckpt was passed over."""
    config = tiny_config(tiny_prepared, tmp_path / "out", max_steps=4,
                         checkpoint={"every_n_steps": 2, "keep_periodic": True})
    fit(config)
    marker = tmp_path / "payload-ran"
    planted = config.checkpoint_dir / "last.ckpt"
    torch.save({"global_step": 99, "state_dict": {}, "payload": Payload(str(marker))}, planted)
    torch.load(planted, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.is_dir()
    marker.rmdir()

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(planted)
    assert not marker.exists()
    with caplog.at_level(logging.INFO, logger="downscale.training.resume"):
        trainer, _ = fit(config.model_copy(update={"max_steps": 6}), resume=True)
    assert not marker.exists()
    message = _resume_log(caplog)
    assert "step=00000004.ckpt (step 4), the newest intact checkpoint" in message, message
    assert "last.ckpt: unreadable (UnpicklingError: Weights only load failed" in message
    assert trainer.global_step == 6


def test_no_intact_checkpoint_is_one_line_and_exit_2(tiny_prepared, tmp_path, capsys):
    """`downscale train --resume` over checkpoints that are all broken: refused before anything is written."""
    config = tiny_config(tiny_prepared, tmp_path / "out")
    config.checkpoint_dir.mkdir(parents=True)
    (config.checkpoint_dir / "last.ckpt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    (config.checkpoint_dir / "best-crps.ckpt").write_bytes(b"")
    path = tmp_path / "train.yaml"
    path.write_text(config.to_yaml())

    assert cli(["train", "--config", str(path), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: cannot resume {config.output_dir}: none of its checkpoints is intact")
    assert "last.ckpt: unreadable" in err[0] and "best-crps.ckpt: unreadable" in err[0]
    assert sorted(p.name for p in config.output_dir.iterdir()) == ["checkpoints"]
