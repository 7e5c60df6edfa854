"""TrainConfig: the documented YAML example is valid, bad values get clear messages, it nests in a pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.strategies import DDPStrategy
from pydantic import BaseModel

from downscale.training.config import TrainConfig
from downscale.training.trainer import resolve_precision, resolve_strategy

DOCS = Path(__file__).resolve().parents[3] / "docs" / "training.md"


def _base(**extra) -> dict:
    return {"dataset": "prepared", "output_dir": "runs/x", **extra}


def test_documented_example_is_complete_and_valid(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks, "docs/training.md has no yaml example"
    path = tmp_path / "train.yaml"
    path.write_text(blocks[0])
    config = TrainConfig.from_yaml(path)
    documented = yaml.safe_load(blocks[0])
    # every field of the model (and of each section) appears in the example
    dumped = config.model_dump(mode="json")
    assert set(documented) == set(dumped)
    for section, value in dumped.items():
        if isinstance(value, dict) and section != "network":
            assert set(documented[section]) == set(value), section


def test_defaults_and_preset_shorthand():
    c = TrainConfig.model_validate(_base(network="tiny"))
    assert c.network.preset == "tiny" and c.network.overrides == {}
    assert c.mode == "joint" and c.mean_stage_steps == 0
    assert c.checkpoint_dir == Path("runs/x/checkpoints")
    two = TrainConfig.model_validate(_base(mode="two_stage", max_steps=1000, mean_stage_fraction=0.25,
                                           optimizer={"warmup_steps": 100}))
    assert two.mean_stage_steps == 250


@pytest.mark.parametrize("mode, detach, stages", [("joint", False, 1), ("detached", True, 1), ("two_stage", True, 2)])
def test_each_mode_says_whether_the_diffusion_gradients_stop_at_the_mean(mode, detach, stages):
    c = TrainConfig.model_validate(_base(mode=mode, max_steps=1000, optimizer={"warmup_steps": 100}))
    assert c.detach_mean is detach and len(c.stages) == stages
    assert (c.mean_stage_steps > 0) is (mode == "two_stage")          # only two_stage freezes μ after a stage


def test_validation_samples_with_the_production_sampler_and_reads_old_configs():
    from downscale.inference.config import GenerateConfig
    from downscale.models.samplers import PRODUCTION_SAMPLER

    c = TrainConfig.model_validate(_base())
    assert c.validation.sampler == PRODUCTION_SAMPLER == GenerateConfig.model_fields["sampler"].default
    old = TrainConfig.model_validate(_base(validation={"sampler_steps": 8}))   # a config written before `sampler`
    assert (old.validation.sampler.kind, old.validation.sampler.num_steps, old.validation.sampler.sigma_max) == (
        "heun", 8, 80.0)
    with pytest.raises(ValueError, match="not both"):
        TrainConfig.model_validate(_base(validation={"sampler_steps": 8, "sampler": {"kind": "heun", "num_steps": 8}}))


@pytest.mark.parametrize(("extra", "message"), [
    ({"spatial_mode": "patch"}, "needs patch_size"),
    ({"patch_size": 64}, "spatial_mode is 'cube'"),
    ({"optimizer": {"min_lr_ratio": 2}}, "min_lr_ratio"),
    ({"validation": {"ensemble_size": 4, "members_per_batch": 8}}, "members_per_batch"),
    ({"mode": "three_stage"}, "joint"),
    ({"learning_rate": 1e-3}, "learning_rate"),
    ({"ema": {"decay": 1.0}}, "decay"),
])
def test_bad_values_are_named(extra, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.model_validate(_base(**extra))


def test_yaml_errors_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_base(validation={"ensemble_size": 1})))
    with pytest.raises(ValueError, match=r"bad\.yaml:\n  validation\.ensemble_size: "):
        TrainConfig.from_yaml(path)
    path.write_text("dataset: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        TrainConfig.from_yaml(path)


def test_usable_as_a_sub_model_of_a_pipeline_config(tmp_path):
    class Pipeline(BaseModel):
        name: str
        train: TrainConfig

    p = Pipeline(name="demo", train=TrainConfig.model_validate(_base(max_steps=10, optimizer={"warmup_steps": 2})))
    again = Pipeline.model_validate_json(p.model_dump_json())
    assert again == p and isinstance(again.train.dataset, Path)
    # a pipeline YAML with a `train:` section also reads directly
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"train": p.train.model_dump(mode="json")}))
    assert TrainConfig.from_yaml(path) == p.train


def test_auto_precision_and_strategy_on_cpu():
    c = TrainConfig.model_validate(_base(hardware={"accelerator": "cpu", "devices": 1}))
    assert resolve_precision(c) == "32-true" and resolve_strategy(c) == "auto"
    assert resolve_precision(TrainConfig.model_validate(_base(hardware={"precision": "32"}))) == "32-true"
    ddp = resolve_strategy(TrainConfig.model_validate(_base(hardware={"accelerator": "cpu", "devices": 2})))
    assert isinstance(ddp, DDPStrategy) and not ddp._ddp_kwargs.get("find_unused_parameters")
    two = resolve_strategy(TrainConfig.model_validate(
        _base(mode="two_stage", hardware={"accelerator": "cpu", "devices": 1, "num_nodes": 2})))
    assert isinstance(two, DDPStrategy) and two._ddp_kwargs["find_unused_parameters"] is True
