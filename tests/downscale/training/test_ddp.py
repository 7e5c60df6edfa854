"""DDP on 2 CPU processes (gloo): both ranks train on different clips and end with identical weights."""

from __future__ import annotations

import csv

from tiny_training import tiny_config


def test_two_rank_ddp_keeps_ranks_identical(tiny_prepared, tmp_path, script):
    config = tiny_config(tiny_prepared, tmp_path / "out", max_steps=4, batch_size=1,
                         hardware={"devices": 2, "strategy": "ddp"},
                         validation={"every_n_steps": 4, "max_batches": 1})
    reports = script.run(config, tmp_path / "report", timeout=300)
    assert [r["rank"] for r in reports] == [0, 1]
    r0, r1 = reports
    assert r0["world_size"] == r1["world_size"] == 2 and r0["strategy"] == "DDPStrategy"
    assert r0["global_step"] == r1["global_step"] == 4
    assert r0["live_sha256"] == r1["live_sha256"]
    assert r0["ema_sha256"] == r1["ema_sha256"]

    # each rank trained on its own share of the clips (DistributedSampler), so gradients were averaged
    b0 = script.batch_log(tmp_path / "report" / "batches-rank0.jsonl")
    b1 = script.batch_log(tmp_path / "report" / "batches-rank1.jsonl")
    assert sorted(b0) == sorted(b1) == [1, 2, 3, 4]
    assert all(b0[s] != b1[s] for s in b0)
    # validation metrics were reduced over both ranks and the bundle written once, by rank 0
    assert config.bundle_path.exists()
    assert (config.checkpoint_dir / "best-crps.ckpt").exists()
    # the run's record, written by rank 0 alone: the config, and one metrics row per step
    assert (config.output_dir / "train_config.yaml").read_text() == config.to_yaml()
    rows = list(csv.DictReader((config.output_dir / "logs" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["train/total"]] == [0, 1, 2, 3]
