"""The pipeline flow at tiny size under a real (temporary) Prefect API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from data_catalog.prepare import PreparedDataset
from data_catalog.synthetic.growing import GrowingInput
from downscale import stages
from downscale.pipeline_config import PipelineConfig, demo_config
from downscale.inference import store
from downscale.inference.store_plan import BOOKKEEPING, ITEMS
from flows.pipeline import incremental_downscale_flow, main, pipeline_flow, prepare_flow, train_flow


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
    results = pipeline_flow(config)
    assert [r.name for r in results] == ["prepare", "train", "generate", "evaluate", "report"]
    ds = store.open_output(config.generate.output)
    assert ds.PRATEsfc.sizes["member"] == config.generate.members
    assert {"PRATEsfc_bilinear", "PRATEsfc_deterministic", "PRATEsfc_qm", "PRATEsfc_truth"} <= set(ds.data_vars)
    metrics = json.loads((config.diagnostics_dir / "metrics.json").read_text())
    assert {"crps_fair", "crps_standard"} <= set(metrics["data_vars"])
    html = config.report_path.read_text()
    assert 'data-figure="annual-mean"' in html
    assert any("work items to run" in line for line in _logged("work items to run")), "library logs must reach the flow run log"
    again = pipeline_flow(config)
    assert all(r.skipped for r in again), [(r.name, r.skipped) for r in again]
    other = config.model_copy(update={"generate": config.generate.model_copy(update={"seed": 1})})
    changed = r"^generate: generate.seed changed 0→1 since .*overwrite: true"
    with pytest.raises(stages.StageChangedError, match=changed):
        stages.generated_outputs(other)   # a finished store of other settings is never reused nor overwritten


def _logged(text: str) -> list[str]:
    """Messages of the flow and task run logs the API holds that contain ``text``."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.client.schemas.sorting import LogSort

    for handler in logging.getLogger("prefect.extra").handlers:  # the API handler sends in batches
        handler.flush()
    with get_client(sync_client=True) as client:
        # a quoted phrase (bare words are OR-ed: a long session holds hundreds of "run" lines), newest first
        logs = client.read_logs(LogFilter(text={"query": f'"{text}"'}), limit=200, sort=LogSort.TIMESTAMP_DESC)
        return [log.message for log in logs]


@pytest.fixture(scope="module")
def trained(prefect_harness, config) -> PipelineConfig:
    prepare_flow(config)
    train_flow(config)
    return config


def _generating(config: PipelineConfig, catalog, output) -> PipelineConfig:
    """``config`` downscaling the run of ``catalog`` into ``output`` (prepare and train as they were)."""
    return config.model_copy(update={"generate": config.generate.model_copy(
        update={"catalog": catalog, "output": output})})


def _markers(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / BOOKKEEPING / ITEMS).iterdir()}


def test_incremental_flow_appends_only_the_new_time_steps(trained, tmp_path):
    """20 of member 0002's 32 frames, then 12 appended to its coarse and fine stores."""
    growing = GrowingInput(trained.catalog_path, tmp_path, "0002", frames=20)
    config = _generating(trained, growing.catalog, tmp_path / "grown.zarr")
    assert not incremental_downscale_flow(config).skipped
    out = config.generate.output
    before, markers = store.open_output(out).load(), _markers(out)
    assert before.sizes["time"] == 20 and sorted(markers) == ["t000000-000016-m0000.json",
                                                              "t000016-000020-m0000.json"]

    growing.append()
    assert not incremental_downscale_flow(config).skipped
    after = store.open_output(out).load()
    assert after.sizes["time"] == growing.total == 32
    written = _markers(out)
    assert {k: written[k] for k in markers} == markers, "frames already written are never redone"
    assert sorted(set(written) - set(markers)) == ["t000020-000032-m0000.json"]
    xr.testing.assert_identical(after.drop_attrs().isel(time=slice(0, 20)), before.drop_attrs())
    assert np.isfinite(after.PRATEsfc.isel(time=slice(20, None))).all()

    assert incremental_downscale_flow(config).skipped      # nothing new: nothing runs
    assert _markers(out) == written


def test_a_failed_stage_keeps_earlier_outputs_and_a_rerun_resumes(trained, tmp_path):
    """A NaN in the input's last frame fails the generate stage before its store is made (the input is
    checked first): prepare and train outputs are untouched, no output is left, and after the input is
    repaired a rerun writes the store."""
    growing = GrowingInput(trained.catalog_path, tmp_path, "0002", frames=32)
    config = _generating(trained, growing.catalog, tmp_path / "out.zarr")
    config = config.model_copy(update={"evaluate": config.evaluate.model_copy(update={"enabled": False})})
    earlier = [trained.prepared_dir / "manifest.json", trained.train.bundle_path]
    stamps = {p: p.stat().st_mtime_ns for p in earlier}
    predictor = zarr.open_array(growing.full["coarse"][1] / "TMPsfc_coarse", mode="r+")
    last = tuple(-1 if d == "time" else slice(None) for d in predictor.metadata.dimension_names)
    good = predictor[last]
    predictor[last] = np.nan

    with pytest.raises(ValueError, match=r"growing-coarse.zarr.*TMPsfc_coarse.*NaN"):
        pipeline_flow(config)
    out = config.generate.output
    assert {p: p.stat().st_mtime_ns for p in earlier} == stamps
    assert not out.exists()

    predictor[last] = good
    results = pipeline_flow(config)
    assert [(r.name, r.skipped) for r in results] == [("prepare", True), ("train", True), ("generate", False)]
    assert store.is_complete(out)
    assert sorted(_markers(out)) == ["t000000-000016-m0000.json", "t000016-000032-m0000.json"]
    assert {p: p.stat().st_mtime_ns for p in earlier} == stamps
