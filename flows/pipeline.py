"""Prefect flows: thin orchestration of the library's stages (``downscale.stages``); no science here.

Flows (each takes the one pipeline config, :class:`downscale.pipeline_config.PipelineConfig`, validated by Prefect
from the run's parameters):

* ``prepare`` (synthetic data if configured, validation, coarse-graining of missing predictors,
  statistics, splits) → ``train`` → ``downscale`` (the work items mapped over prefect-dask's
  DaskTaskRunner: a LocalCluster of ``generate.workers`` threads, or the Dask scheduler at
  ``generate.scheduler``) → ``evaluate`` (diagnostics, report, artifacts); ``pipeline`` chains them.
* ``incremental-downscale``: ``downscale`` with ``generate.append``, for a coarse store that grows —
  only the new frames are sampled and appended (scheduled in ``prefect.yaml``).

A rerun skips the stages whose outputs are complete and were made from the same settings and inputs, and
logs why each ran or was skipped (``downscale.stages``); storage hiccups are retried, bad input is not. Run the embedded default in-process (a temporary local Prefect API starts by itself)::

    python -m flows.pipeline --demo --workdir demo-run
    python -m flows.pipeline --config pipeline.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               update_progress_artifact)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import as_completed
from prefect.utilities.annotations import unmapped
from prefect_dask import DaskTaskRunner

from downscale import stages
from downscale.logs import configure as configure_logging
from downscale.pipeline_config import PipelineConfig, demo_config
from downscale.progress_log import ProgressLog

#: The library's loggers (standard ``logging``), sent to each flow run's Prefect log as well (UI, API).
LIBRARY_LOGGERS = ("downscale", "data_catalog")


class RunLogHandler(logging.Handler):
    """Hands library records to Prefect's handlers (the run's API log, the console) inside a flow or task
    run — what ``PREFECT_LOGGING_EXTRA_LOGGERS`` does, but silent outside runs and whatever the import order."""

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        for handler in logging.getLogger("prefect.extra").handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def route_library_logs(level: int = logging.INFO) -> None:
    """Send the library's log records from ``level`` up to the Prefect run they happen in."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(min(logger.getEffectiveLevel(), level))
        if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler())


route_library_logs()
configure_logging()    # Prefect's handlers stay; redaction, warnings as records, no library noise (downscale.logs)

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


class _Progress:
    """A Prefect progress artifact, created at the first report: ``progress(done, total)``."""

    def __init__(self, description: str) -> None:
        self.description, self.artifact = description, None

    def __call__(self, done: int, total: int) -> None:
        percent = 100.0 * done / max(total, 1)
        if self.artifact is None:
            self.artifact = create_progress_artifact(percent, description=self.description)
        else:
            update_progress_artifact(self.artifact, percent)


def _stage_task(stage, name: str, retries: int = 0):
    """A Prefect task running one stage function (retrying transient failures ``retries`` times)."""
    @task(name=name, retries=retries, retry_delay_seconds=5, retry_condition_fn=_retry_transient,
          cache_policy=NO_CACHE)
    def run(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
        return stage(config, overwrite)
    return run


synthetic_task = _stage_task(stages.synthetic_data, "synthetic-data", retries=2)
prepare_task = _stage_task(stages.prepared_data, "prepare", retries=2)
evaluate_task = _stage_task(stages.evaluation, "evaluate", retries=1)
report_task = _stage_task(stages.report, "report", retries=1)


@task(name="train", cache_policy=NO_CACHE)
def train_task(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    progress = _Progress(f"training steps of {config.train.output_dir}")
    return stages.trained_model(config, overwrite, progress=progress)


@task(name="downscale-item", task_run_name="item {item.key}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def item_task(work: stages.GenerateWork, item: stages.WorkItem) -> str:
    """One work item, on the Dask worker's item runner; a retry rewrites exactly its own shards."""
    return stages.run_generate_item(work, item)


def map_items(work: stages.GenerateWork) -> None:
    """The generate stage's work items as mapped Prefect tasks on the flow's Dask task runner (every worker
    holds one item runner meanwhile), with progress. Every item runs to its end before a failure is raised,
    so a rerun has only the failed ones left."""
    if not work.items:
        return
    progress = _Progress(f"work items of {work.config.output}")
    talk = ProgressLog(f"generate {work.config.output}", len(work.items), "work items")
    failed: list[Exception] = []
    client = FlowRunContext.get().task_runner.client   # the DaskTaskRunner's own (its cluster starts here)
    with stages.generate_runners(work, client), talk.heartbeat():
        futures = item_task.map(unmapped(work), work.items)
        for done, future in enumerate(as_completed(futures), 1):
            try:
                note = f"item {future.result()}"
            except Exception as err:  # noqa: BLE001 - collected; the first is raised once all items ended
                failed.append(err)
                note = f"an item failed: {err}"
            progress(done, len(work.items))
            talk.advance(note=note)
    if failed:
        get_run_logger().error("%d of %d work items failed", len(failed), len(work.items))
        raise failed[0]


def _local_dask(threads: int, output: Path | None = None) -> DaskTaskRunner:
    """A LocalCluster as ``downscale generate`` starts one (:func:`stages.local_cluster_options`)."""
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs=stages.local_cluster_options(threads, output))


def task_runner(config: PipelineConfig) -> DaskTaskRunner:
    """Dask for the work items: the scheduler at ``generate.scheduler``, else a LocalCluster of ``generate.workers``
    threads whose scratch space is in the output store's folder, as ``downscale generate``'s
    (:func:`downscale.inference.generate.run_items`)."""
    gen = config.generate
    return DaskTaskRunner(address=gen.scheduler) if gen.scheduler else _local_dask(gen.workers, Path(gen.output))


@flow(name="prepare")
def prepare_flow(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    """Data: synthetic generation if configured, validation of every member, the prepared dataset."""
    if config.data.synthetic is not None:
        synthetic_task(config, overwrite)
    return prepare_task(config, overwrite)


@flow(name="train")
def train_flow(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    return train_task(config, overwrite)


@flow(name="downscale", task_runner=_local_dask(1))
def downscale_flow(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    """Ensemble downscaling of the configured run (resumes an interrupted store; grows one with ``append``)."""
    work = stages.plan_generate(config, overwrite)
    map_items(work)
    return stages.finish_generate(work)


def downscale(config: PipelineConfig, overwrite: bool = False) -> stages.StageResult:
    """:func:`downscale_flow` on the task runner its config asks for."""
    return downscale_flow.with_options(task_runner=task_runner(config))(config, overwrite)


@flow(name="incremental-downscale")
def incremental_downscale_flow(config: PipelineConfig) -> stages.StageResult:
    """Append the frames the coarse input gained since the last run to the output store (only those are
    sampled); a store that is up to date is left as it is."""
    grown = config.model_copy(update={"generate": config.generate.model_copy(update={"append": True})})
    return downscale(grown)


@flow(name="evaluate")
def evaluate_flow(config: PipelineConfig, overwrite: bool = False) -> list[stages.StageResult]:
    """Diagnostics of the output store and the HTML report; artifacts: the key metrics and the report's location."""
    results = [evaluate_task(config, overwrite), report_task(config, overwrite)]
    create_markdown_artifact(key="key-metrics", markdown=stages.key_metrics(config),
                             description=f"Headline metrics of {config.generate.output}")
    create_link_artifact(key="validation-report", link=Path(config.report_path).resolve().as_uri(),
                         link_text=str(config.report_path), description="The validation report (HTML)")
    return results


@flow(name="pipeline")
def pipeline_flow(config: PipelineConfig, overwrite: bool = False) -> list[stages.StageResult]:
    """Every stage in order; a rerun skips the stages whose outputs are complete and of the same settings."""
    results = [prepare_flow(config, overwrite), train_flow(config, overwrite), downscale(config, overwrite)]
    if config.evaluate.enabled:
        results += evaluate_flow(config, overwrite)
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
    group.add_argument("--config", type=Path, help="pipeline YAML (downscale.pipeline_config.PipelineConfig)")
    group.add_argument("--demo", action="store_true", help="the embedded default (synthetic data, CPU)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-run"), help="with --demo: output folder")
    parser.add_argument("--preset", default="demo", help="with --demo: synthetic preset (tests, demo, skill)")
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
    by_name = {r.name: r.path for r in results}   # each stage logged its own summary line
    print(f"\nensemble store: {Path(by_name['generate']).resolve()}   (xr.open_zarr)")
    if "report" in by_name:
        print(f"validation report: {Path(by_name['report']).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
