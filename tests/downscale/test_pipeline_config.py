"""``downscale config``: every preset's complete pipeline config as YAML, which ``downscale run --config``
reads back into the same config, and which docs/pipeline.md shows for the demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from downscale.cli import EXIT_BAD_INPUT, main
from downscale.pipeline_config import _PRESET_SETTINGS, PipelineConfig, demo_config, preset_yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipeline.md"
BLOCK = re.compile(r"<!-- BEGIN demo config -->\n```yaml\n(.*?)```\n<!-- END demo config -->", flags=re.S)
REGENERATE = ("regenerate it: paste the output of `.venv/bin/downscale config --preset demo` between the "
              "`<!-- BEGIN demo config -->` and `<!-- END demo config -->` markers of docs/pipeline.md")


@pytest.mark.parametrize("preset", list(_PRESET_SETTINGS))
def test_printed_config_holds_every_field_and_reads_back_identically(preset, tmp_path, capsys):
    path = tmp_path / "pipeline.yaml"
    assert main(["config", "--preset", preset, "--workdir", str(tmp_path / "run"), "--output", str(path)]) == 0
    assert capsys.readouterr().out == f"config: {path}\n"
    expected = demo_config(tmp_path / "run", preset)
    # every field with its value, defaults included (e.g. optimizer betas, the EMA, the baselines)
    assert yaml.safe_load(path.read_text()) == expected.model_dump(mode="json")
    # what `downscale run --config` reads is the preset's config, field for field
    assert PipelineConfig.from_yaml(path) == expected


def test_config_goes_to_stdout_without_output(capsys):
    assert main(["config", "--preset", "tests"]) == 0
    printed = capsys.readouterr().out
    assert printed == preset_yaml("tests", "demo-run")
    assert printed.startswith("# downscale config --preset tests --workdir demo-run")
    assert yaml.safe_load(printed)["train"]["max_steps"] == _PRESET_SETTINGS["tests"]["max_steps"]


def test_unknown_preset_is_refused_naming_the_presets(capsys):
    assert main(["config", "--preset", "nope"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unknown pipeline preset 'nope'" in err and all(p in err for p in _PRESET_SETTINGS)


def test_documented_example_is_the_printed_demo_config(tmp_path):
    found = BLOCK.findall(DOCS.read_text())
    assert len(found) == 1, f"docs/pipeline.md needs exactly one marked demo config block; {REGENERATE}"
    assert found[0] == preset_yaml("demo"), f"docs/pipeline.md's demo config is out of date; {REGENERATE}"
    path = tmp_path / "copied.yaml"
    path.write_text(found[0])
    assert PipelineConfig.from_yaml(path) == demo_config("demo-run", "demo")   # what `make demo` runs


def test_a_contradiction_stops_run_config_naming_the_fields(tmp_path, capsys):
    doc = yaml.safe_load(preset_yaml("demo", str(tmp_path / "run")))
    doc["train"]["optimizer"]["warmup_steps"] = 500      # the run has 240 steps
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", "--config", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"pipeline config {path}" in err
    assert "optimizer.warmup_steps (500) is longer than the run (max_steps 240)" in err
    assert not (tmp_path / "run").exists()   # refused before any stage ran
