"""The pipeline flow at tiny size under a real (temporary) Prefect API."""

from __future__ import annotations

import json

import pytest

from data_catalog.prepare import PreparedDataset
from downscale import stages
from downscale.config import PipelineConfig, demo_config
from flows.pipeline import main, prepare_flow


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> PipelineConfig:
    return demo_config(tmp_path_factory.mktemp("pipeline") / "run", preset="tests")


def test_prepare_flow_runs_then_skips_complete_outputs(prefect_harness, config):
    first = prepare_flow(config)
    assert not first.skipped
    assert PreparedDataset.is_complete(first.path)
    marker = json.loads((config.synthetic_root / "synthetic.json").read_text())
    assert marker["config"]["name"] == "tests"

    before = (first.path / "manifest.json").stat().st_mtime_ns
    again = prepare_flow(config)
    assert again.skipped, "a rerun must skip a stage whose output is complete and valid"
    assert (first.path / "manifest.json").stat().st_mtime_ns == before


def test_a_damaged_prepared_dataset_is_redone(prefect_harness, config):
    prepare_flow(config)
    (config.prepared_dir / "manifest.json").unlink()  # a stage killed before its last write
    result = prepare_flow(config)
    assert not result.skipped and PreparedDataset.is_complete(result.path)


def test_bad_pipeline_config_exits_non_zero(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("workdir: x\ndata: {synthetic: demo, catalog: c.yaml}\n")
    assert main(["--config", str(path)]) == 2
    assert "exactly one of 'catalog'" in capsys.readouterr().err


def test_whole_pipeline_runs_every_stage_then_skips_them_all(prefect_harness, config):
    """synthetic → prepare → train → generate → evaluate + report, under Prefect; a rerun skips every stage."""
    from downscale.inference import store
    from flows.pipeline import pipeline_flow

    results = pipeline_flow(config)
    assert [r.name for r in results] == ["prepare", "train", "generate", "evaluate"]
    ds = store.open_output(config.generate.output)
    assert ds.PRATEsfc.sizes["member"] == config.generate.members
    assert {"PRATEsfc_bilinear", "PRATEsfc_deterministic", "PRATEsfc_qm", "PRATEsfc_truth"} <= set(ds.data_vars)
    metrics = json.loads((config.diagnostics_dir / "metrics.json").read_text())
    assert "crps" in metrics["data_vars"]
    html = config.report_path.read_text()
    assert 'data-figure="annual-mean"' in html
    again = pipeline_flow(config)
    assert all(r.skipped for r in again), [(r.name, r.skipped) for r in again]
    other = config.model_copy(update={"generate": config.generate.model_copy(update={"seed": 1})})
    with pytest.raises(FileExistsError, match="another configuration"):
        stages.generated_outputs(other)   # a finished store of other settings is never reused nor overwritten
