"""Checkpoints are written atomically: a failing or killed save leaves the previous checkpoint intact; a real
Trainer with the training's callbacks writes ``last.ckpt`` on its interval and each best at its best step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

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


class ScriptedValidation(pl.LightningModule):
    """A one-weight regression whose validations report scripted ``val/crps_fair`` and ``val/tail_error``
    (the i-th validation logs ``scores[i]``), so which step each best checkpoint must hold is known."""

    def __init__(self, scores: list[tuple[float, float]]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.scores = scores
        self.validations = 0

    def training_step(self, batch, batch_idx):
        return ((self.w - batch) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        crps, tail = self.scores[self.validations]
        self.log_dict({"val/crps_fair": crps, "val/tail_error": tail})

    def on_validation_epoch_end(self) -> None:
        self.validations += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LastCheckpointStep(pl.Callback):
    """``global_step`` stored in ``last.ckpt`` as each training step begins (None: not written yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[int, int | None] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        stored = torch.load(self.path, weights_only=True)["global_step"] if self.path.exists() else None
        self.seen[trainer.global_step] = stored


def fit_scripted(dirpath: Path, keep_periodic: bool) -> LastCheckpointStep:
    """9 steps (4 batches an epoch, so epochs do not matter), ``last.ckpt`` every 2 steps, validations
    after steps 3, 6 and 9: lowest CRPS at step 6, lowest tail error at step 9."""
    model = ScriptedValidation([(0.5, 0.2), (0.3, 0.4), (0.4, 0.1)])
    probe = LastCheckpointStep(dirpath / "last.ckpt")
    data = DataLoader(torch.randn(4, 1), batch_size=1)
    trainer = pl.Trainer(max_steps=9, max_epochs=-1, val_check_interval=3, check_val_every_n_epoch=None,
                         limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu", logger=False,
                         callbacks=[*checkpoint_callbacks(dirpath, every_n_steps=2, keep_periodic=keep_periodic),
                                    probe],
                         plugins=[AtomicCheckpointIO()], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=data, val_dataloaders=data)
    assert model.validations == 3
    return probe


def stored_step(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def test_last_every_n_steps_and_the_best_of_each_validation_score(tmp_path):
    probe = fit_scripted(tmp_path, keep_periodic=False)
    # last.ckpt is (re)written after steps 2, 4, 6, 8: at the start of step s it holds the last even step < s
    assert probe.seen == {0: None, 1: None, 2: 2, 3: 2, 4: 4, 5: 4, 6: 6, 7: 6, 8: 8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-crps.ckpt", "best-tail.ckpt", "last.ckpt"]
    assert stored_step(tmp_path / "last.ckpt") == 8
    assert stored_step(tmp_path / "best-crps.ckpt") == 6  # lowest val/crps_fair (0.3) was after step 6
    assert stored_step(tmp_path / "best-tail.ckpt") == 9  # lowest val/tail_error (0.1) was after step 9


def test_keep_periodic_keeps_a_numbered_checkpoint_of_each_interval(tmp_path):
    fit_scripted(tmp_path, keep_periodic=True)
    periodic = sorted(p.name for p in tmp_path.glob("step=*.ckpt"))
    assert periodic == [f"step={s:08d}.ckpt" for s in (2, 4, 6, 8)]
    assert [stored_step(tmp_path / name) for name in periodic] == [2, 4, 6, 8]
    assert stored_step(tmp_path / "best-crps.ckpt") == 6 and stored_step(tmp_path / "best-tail.ckpt") == 9
