"""Checkpoints are written atomically: a failing or killed save leaves the previous checkpoint intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from downscale.training.checkpointing import (
    TEMP_PREFIX,
    AtomicCheckpointIO,
    checkpoint_callbacks,
    remove_stale_temporaries,
)


class FailsWhenPickled:
    """Raises while ``torch.save`` is serializing it — after the tensors before it were written."""

    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temp(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.arange(10.0)}, path)
    before = path.read_bytes()

    broken = {"global_step": 2, "w": torch.randn(1_000_000), "z": FailsWhenPickled()}
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint(broken, path)

    assert path.read_bytes() == before
    loaded = io.load_checkpoint(path)
    assert loaded["global_step"] == 1 and torch.equal(loaded["w"], torch.arange(10.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_save_replaces_and_storage_options_are_refused(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "x.ckpt"
    io.save_checkpoint({"v": 1}, path)
    io.save_checkpoint({"v": 2}, path)
    assert io.load_checkpoint(path)["v"] == 2
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({"v": 3}, path, storage_options={"a": 1})


WRITER = textwrap.dedent("""
    import sys, torch
    from downscale.training.checkpointing import AtomicCheckpointIO
    io, path = AtomicCheckpointIO(), sys.argv[1]
    big = torch.empty(8_000_000)
    version = 0
    while True:
        version += 1
        big.fill_(version)
        io.save_checkpoint({"version": version, "w": big}, path)
        print(version, flush=True)
""")


def test_sigkill_during_saves_never_leaves_a_torn_checkpoint(tmp_path):
    """A real kill at a random moment of repeated 32 MB saves: the file always loads and is consistent."""
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(3):  # wait until a few saves completed, so the kill lands during a later one
            assert proc.stdout.readline(), "writer died before saving"
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ckpt = AtomicCheckpointIO().load_checkpoint(path)
    assert ckpt["version"] >= 3
    assert torch.all(ckpt["w"] == ckpt["version"])  # every value from the same save
    # the killed save may leave its temporary file; it is cleaned before the next training
    removed = remove_stale_temporaries(tmp_path)
    assert all(p.name.startswith(TEMP_PREFIX) for p in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_checkpoint_callbacks_last_and_two_best(tmp_path):
    periodic, crps, tail = checkpoint_callbacks(tmp_path, every_n_steps=25)
    assert all(isinstance(c, ModelCheckpoint) for c in (periodic, crps, tail))
    assert periodic.save_last and periodic._every_n_train_steps == 25 and periodic.monitor is None
    assert (crps.monitor, crps.mode, crps.save_top_k) == ("val/crps_fair", "min", 1)
    assert (tail.monitor, tail.mode) == ("val/tail_error", "min")
    assert crps.filename == "best-crps" and tail.filename == "best-tail"
