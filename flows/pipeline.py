"""Prefect flows: thin orchestration of the library's stages (``downscale.stages``); no science here.

Run the embedded default in-process (a temporary local Prefect API starts by itself)::

    python -m flows.pipeline --demo --workdir demo-run
    python -m flows.pipeline --config pipeline.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from downscale import stages
from downscale.config import PipelineConfig, demo_config

#: Failures worth a retry: storage hiccups, not bad input (DataError, CatalogError are ValueErrors).
TRANSIENT = (OSError, TimeoutError, ConnectionError)


def _retry_transient(task_, task_run, state) -> bool:
    try:
        state.result()
    except TRANSIENT as err:
        return not isinstance(err, FileExistsError | FileNotFoundError)
    except Exception:  # noqa: BLE001 - anything else is not transient
        return False
    return False


def _report(result: stages.StageResult) -> stages.StageResult:
    verb = "skipped (output complete)" if result.skipped else "done"
    get_run_logger().info("stage %s %s: %s %s", result.name, verb, result.path, result.detail)
    return result


@task(name="synthetic-data", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient)
def synthetic_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return _report(stages.synthetic_data(config, overwrite))


@task(name="prepare", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient)
def prepare_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return _report(stages.prepared_data(config, overwrite))


@task(name="train")
def train_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return _report(stages.trained_model(config, overwrite))


@task(name="generate", retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_transient)
def generate_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    """A retry resumes: finished work items in the store are kept."""
    return _report(stages.generated_outputs(config, overwrite))


@task(name="evaluate")
def evaluate_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return _report(stages.evaluation(config, overwrite))


@flow(name="prepare")
def prepare_flow(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    """Data: synthetic generation if configured, validation of every member, the prepared dataset."""
    if config.data.synthetic is not None:
        synthetic_task(config, overwrite)
    return prepare_task(config, overwrite)


@flow(name="train")
def train_flow(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return train_task(config, overwrite)


@flow(name="downscale")
def downscale_flow(config: PipelineConfig, overwrite: bool = False) -> list[stages.StageResult]:
    """Ensemble downscaling of the configured run, then (if ``config.evaluate``) diagnostics and the report."""
    results = [generate_task(config, overwrite)]
    if config.evaluate.enabled:
        results.append(evaluate_task(config, overwrite))
    return results


@flow(name="pipeline")
def pipeline_flow(config: PipelineConfig, overwrite: bool = False) -> list[stages.StageResult]:
    """Every stage in order; a rerun skips the stages whose outputs are complete and valid."""
    results = [prepare_flow(config, overwrite), train_flow(config, overwrite), *downscale_flow(config, overwrite)]
    rows = "\n".join(f"| {r.name} | {'skipped' if r.skipped else 'ran'} | `{r.path}` | {r.detail} |" for r in results)
    create_markdown_artifact(
        key="pipeline-outputs",
        markdown="| stage | status | output | detail |\n|---|---|---|---|\n" + rows,
        description="Outputs of the downscaling pipeline",
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description="Run the downscaling pipeline flow.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", type=Path, help="pipeline YAML (downscale.config.PipelineConfig)")
    group.add_argument("--demo", action="store_true", help="the embedded default (synthetic data, CPU)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-run"), help="with --demo: output folder")
    parser.add_argument("--preset", default="demo", help="with --demo: synthetic preset (tests, demo)")
    parser.add_argument("--overwrite", action="store_true", help="redo stages even if their outputs are complete")
    args = parser.parse_args(argv)
    try:
        config = demo_config(args.workdir, args.preset) if args.demo else PipelineConfig.from_yaml(args.config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        results = pipeline_flow(config, args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as err:  # bad input: one clear line
        print(f"error: {err}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.name:10s} {'skipped' if r.skipped else 'ran':8s} {r.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
