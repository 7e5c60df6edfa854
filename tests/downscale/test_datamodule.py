"""DownscalingDataModule under a real Lightning Trainer: seeded loaders, workers, and resume of the data position."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DistributedSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_catalog"))
from test_prepare import make_catalog  # noqa: E402  (tiny stores in the real FV3GFS layout)

from data_catalog.catalog import load_catalog  # noqa: E402
from data_catalog.clips import ClipSampler  # noqa: E402
from data_catalog.prepare import PrepareConfig, prepare_dataset  # noqa: E402
from downscale.training.datamodule import DownscalingDataModule  # noqa: E402

warnings.filterwarnings("ignore", message=".*does not have many workers.*")


@pytest.fixture(scope="module")
def prepared_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datamodule")
    catalog = load_catalog(make_catalog(root / "stores", members=("0001", "0002"), nt=14, static=False))
    config = PrepareConfig(clip_frames=3, splits={"validation_members": ["0002"]})
    prepare_dataset(catalog, root / "prepared", config)
    return root / "prepared"


class Recorder(pl.LightningModule):
    """A trivial model that fits a scale to the clips and records which clips it saw."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []
        self.validated: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):
        for k in range(batch["member"].shape[0]):
            self.seen.append(tuple(int(batch[key][k]) for key in ("member", "start", "tile", "y0", "x0")))
        prediction = self.scale * batch["coarse"][:, :, :1].mean(dim=(-1, -2), keepdim=True)
        return ((batch["target"][..., :2, :2] - prediction) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        self.validated.extend(zip(batch["member"].tolist(), batch["start"].tolist(), strict=True))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, max_epochs=2, **kwargs)


def _module(path: Path, workers: int) -> DownscalingDataModule:
    return DownscalingDataModule(path, batch_size=2, num_workers=workers, mode="patch", patch_size=4, halo=2, seed=7)


def test_loaders_are_seeded_and_distributed_ready(prepared_path):
    dm = _module(prepared_path, 0)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ClipSampler) and isinstance(loader.sampler, DistributedSampler)
    assert not loader.pin_memory and not loader.persistent_workers  # CPU, no workers
    assert len(dm.datasets["train"]) == 12 and len(loader) == 6
    first = [b["start"].tolist() for b in loader]
    again = [b["start"].tolist() for b in _module(prepared_path, 0).train_dataloader()]
    assert first == again  # the same seed gives the same order
    val = dm.val_dataloader()
    assert [b["member"].tolist() for b in val][0] == [1, 1]
    assert _module(prepared_path, 2).train_dataloader().persistent_workers


def test_trainer_fits_and_resumes_the_data_position(prepared_path, tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1,
                                        filename="{step}")
    full = Recorder()
    _trainer(tmp_path, callbacks=[ckpt]).fit(full, datamodule=_module(prepared_path, 2))
    assert len(full.seen) == 2 * 12  # two epochs of 12 training clips (patches), 2 workers
    epoch0, epoch1 = full.seen[:12], full.seen[12:]
    assert sorted(epoch0) != sorted(epoch1)  # new patch positions in a new epoch
    assert sorted(s[:2] for s in epoch0) == sorted(s[:2] for s in epoch1)  # the same clips
    assert full.scale.item() != 0.0
    for step in (2, 9):  # mid-epoch 0 and mid-epoch 1
        resumed = Recorder()
        _trainer(tmp_path, enable_checkpointing=False).fit(resumed, datamodule=_module(prepared_path, 0),
                               ckpt_path=tmp_path / "ckpt" / f"step={step}.ckpt")
        assert resumed.seen == full.seen[2 * step:], f"resume after step {step} lost the data position"
    assert set(full.validated) == {(1, s) for s in range(12)}


def test_resume_on_other_data_warns(prepared_path):
    dm = _module(prepared_path, 0)
    dm.setup()
    state = dm.state_dict()
    assert state["fingerprint"] == dm.prepared.manifest.fingerprint
    with pytest.warns(UserWarning, match="checkpoint was trained on"):
        dm.load_state_dict({**state, "fingerprint": "0" * 64})
