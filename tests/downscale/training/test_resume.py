"""Resume after a real SIGKILL: same final step, same clips in the same order, same weights and the same
metrics history as a run that was never interrupted (bitwise, with deterministic settings on CPU)."""

from __future__ import annotations

import csv
import signal
import subprocess
import time

import torch
from ddp_harness import BatchRecorder
from tiny_training import tiny_config

from downscale.bundle import weights_digest
from downscale.training.trainer import fit

STEPS = 8


def _wait_for_checkpoint(proc: subprocess.Popen, path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended ({proc.returncode}) before writing {path}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint {path} within {timeout} s")


def test_killed_run_resumes_to_the_same_weights(tiny_prepared, tmp_path, script):
    common = dict(max_steps=STEPS, checkpoint={"every_n_steps": 2}, validation={"every_n_steps": 4})
    config_a = tiny_config(tiny_prepared, tmp_path / "a" / "out", **common)
    config_b = tiny_config(tiny_prepared, tmp_path / "b" / "out", **common)

    # run B: killed (SIGKILL, no chance to clean up) soon after its first checkpoint
    cmd, env = script.command(config_b, tmp_path / "b" / "report-killed", "--step-delay", "0.3")
    proc = subprocess.Popen(cmd, env=env, cwd=script.repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_for_checkpoint(proc, config_b.checkpoint_dir / "last.ckpt")
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(config_b.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert 2 <= killed_at["global_step"] < STEPS
    assert not (tmp_path / "b" / "report-killed" / "rank0.json").exists()

    # B resumed from its last checkpoint; run A, uninterrupted (in this process: same settings, one thread)
    [report_b] = script.run(config_b, tmp_path / "b" / "report-resumed", "--resume")
    (tmp_path / "a" / "report").mkdir(parents=True)
    trainer, module = fit(config_a, callbacks=[BatchRecorder(tmp_path / "a" / "report" / "batches-rank0.jsonl")])
    assert trainer.global_step == report_b["global_step"] == STEPS

    # the resumed run trained on the clips the killed run had not seen, in the uninterrupted order
    seen_a = script.batch_log(tmp_path / "a" / "report" / "batches-rank0.jsonl")
    killed = script.batch_log(tmp_path / "b" / "report-killed" / "batches-rank0.jsonl")
    resumed = script.batch_log(tmp_path / "b" / "report-resumed" / "batches-rank0.jsonl")
    assert min(resumed) == killed_at["global_step"] + 1 and max(resumed) == STEPS
    assert {**killed, **resumed} == seen_a

    # optimizer, scheduler, EMA and noise draws restored: bitwise the same weights
    a = {"live": module.net.state_dict(), "ema": module.ema.shadow}
    b = torch.load(tmp_path / "b" / "report-resumed" / "rank0.pt", weights_only=True)
    for kind in ("live", "ema"):
        assert a[kind].keys() == b[kind].keys()
        for name in a[kind]:
            assert torch.equal(a[kind][name], b[kind][name]), (kind, name)
    assert weights_digest(module.ema.shadow) == report_b["ema_sha256"]

    # logs/metrics.csv of the killed-and-resumed run: every step once, the same losses as the uninterrupted run
    def losses(config) -> list[tuple[int, str]]:
        rows = csv.DictReader((config.output_dir / "logs" / "metrics.csv").open())
        return [(int(r["step"]), r["train/total"]) for r in rows if r["train/total"]]

    assert [step for step, _ in losses(config_b)] == list(range(STEPS))
    assert losses(config_b) == losses(config_a)
