"""The pipeline's stages as plain functions: each does its work or, when its output is complete and was
made from the same configuration and inputs, says so and skips.

The Prefect flows (``flows/``) call exactly these; so does ``downscale run`` without Prefect. Every stage
returns a :class:`StageResult` with the path of what it produced and why it ran or was skipped, and ends
with one log line that says so and how long it took (``downscale.stages.done``), e.g.
``train: wrote runs/x/model.bundle.safetensors in 3 min 02 s (bundle 6e11bbe7fa50)``.

**Why a stage runs.** Beside its output every stage records the settings that decide it and the
fingerprints of its inputs (:mod:`downscale.stage_record`). A rerun compares them with the configuration
as it is now and logs the verdict, e.g. ``train: skipped — … matches config and inputs`` or
``train: rerun — train.max_steps changed 240→300``:

* same record, output complete → skipped;
* no output, or an unfinished one (an interrupted run) → run (training resumes from its last checkpoint,
  generation from its written work items);
* a record that differs (its own settings, or an input that changed upstream) → the finished output is
  replaced only when the pipeline config says ``overwrite: true``; otherwise the stage stops with one
  line naming what changed (:class:`StageChangedError`). ``evaluate`` and ``report`` are views of the
  store and are redone whenever it changes (an incremental run grows the store);
* ``overwrite`` passed to a stage (``--overwrite``) redoes it whatever its record says.

An input's fingerprint: the catalog file's (or the synthetic data's record) for ``prepare``, the prepared
dataset's content fingerprint for ``train``, the bundle's weights for ``generate``, the store's fingerprint
for ``evaluate`` and the evaluation's record for ``report``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from distributed import Client

from data_catalog.catalog import load_catalog
from data_catalog.prepare import PreparedDataset, prepare_dataset
from data_catalog.synthetic import generate_synthetic, preset
from downscale.bundle import BundleError, read_bundle_metadata
from downscale.evaluation.evaluate import evaluate
from downscale.evaluation.results import is_complete as evaluation_is_complete
from downscale.evaluation.results import read_diagnostics
from downscale.inference import store
from downscale.inference.config import GenerateConfig
from downscale.inference.dask_items import item_runners, plugin_name, run_on_worker
from downscale.inference.generate import finish_store, local_cluster_options, planned_spec, run_items
from downscale.inference.output_job import OutputJob, set_up_output_store
from downscale.inference.store_plan import WorkItem
from downscale.inference.store_schema import FINGERPRINT, OutputSpec
from downscale.pipeline_config import PipelineConfig
from downscale.progress_log import duration
from downscale.report.render import render_report, rendered_from
from downscale.report.tables import summary_table
from downscale.stage_record import StageRecord, flatten

if TYPE_CHECKING:
    from downscale.training.progress import ProgressReport

log = logging.getLogger(__name__)
#: Each stage's one closing line (what it wrote, how long it took); apart from the verdicts on ``log``.
summary_log = logging.getLogger(f"{__name__}.done")

#: Settings that never change a stage's output (paths it is told, workers, logging, memory knobs).
_NOT_RECORDED = {
    "train": ("train.dataset", "train.output_dir", "train.log_every_n_steps", "train.checkpoint.",
              "train.hardware.num_workers"),
    "generate": ("generate.bundle", "generate.output", "generate.workers", "generate.scheduler", "generate.device",
                 "generate.members_per_batch", "generate.overwrite", "generate.append"),
}

#: Settings added after outputs had been made with the behaviour their value here reproduces: recorded only when
#: they differ from it, so an output made before the setting existed still matches a config that keeps it.
_RECORDED_UNLESS = {"train.loss_weighting": "area", "train.heavy_rain_weighting": 0.0}


#: Training settings that change only the bundle's tables, not its weights: a change alone refits the tables
#: (:func:`downscale.training.trainer.refit_tables`) instead of training again.
_TABLES_ONLY = "train.ensemble_quantile_mapping."


class StageChangedError(FileExistsError):
    """A finished stage output that the configuration would replace, without ``overwrite: true``."""


@dataclass(frozen=True)
class StageResult:
    """What a stage did: its output, whether it was skipped, why (``detail``: the verdict and what it made)
    and what it made (``made``, e.g. ``"bundle 6e11bbe7fa50"``)."""

    name: str
    path: Path
    skipped: bool
    detail: str = ""
    made: str = ""


def _summarized(stage: Callable[..., StageResult]) -> Callable[..., StageResult]:
    """``stage`` ending with its one summary line (:func:`_summary`)."""
    @wraps(stage)
    def run(config: PipelineConfig, overwrite: bool = False, **kwargs: Any) -> StageResult:
        started = time.monotonic()
        return _summary(stage(config, overwrite, **kwargs), started)
    return run


def _summary(result: StageResult, started: float) -> StageResult:
    """Log a stage's one closing line — what it wrote, or why it skipped, and how long it took since
    ``started`` (``time.monotonic``) — on ``downscale.stages.done``."""
    took = duration(time.monotonic() - started)
    if result.skipped:
        summary_log.info("%s: skipped in %s, kept %s", result.name, took, result.path)
    else:
        summary_log.info("%s: wrote %s in %s%s", result.name, result.path, took,
                         f" ({result.made})" if result.made else "")
    return result


@dataclass(frozen=True)
class Verdict:
    """Whether a stage runs, whether it replaces a finished output, and why (``"skipped — …"``,
    ``"rerun — …"``, ``"run — …"``)."""

    run: bool
    replace: bool
    reason: str


def _settings(stage: str, section: str, value: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recorded settings of ``stage``: ``value`` flattened under ``section``, without what never changes
    the output."""
    skip = (*_NOT_RECORDED.get(stage, ()), *exclude)
    return {k: v for k, v in flatten(section, value).items()
            if not any(k == s or k.startswith(s) for s in skip) and (k, v) not in _RECORDED_UNLESS.items()}


def _verdict(config: PipelineConfig, wanted: StageRecord, output: Path, complete: bool, overwrite: bool,
             derived: bool = False, unfinished: str = "is missing or unfinished") -> Verdict:
    """Decide whether ``wanted.stage`` runs (module docstring) and log why. ``complete``: the output passes the
    stage's own content check; ``derived``: the output is a view, redone whenever its record changes;
    ``unfinished``: what to say when it runs because the output is not complete."""
    name, found = wanted.stage, StageRecord.read(output)
    if overwrite:
        verdict = Verdict(True, True, "rerun — overwrite requested")
    elif found is not None and found.fingerprint != wanted.fingerprint:
        changes = "; ".join(wanted.changes_from(found))
        if not (derived or config.overwrite):
            raise StageChangedError(f"{name}: {changes} since {output} was made; set overwrite: true in the "
                                    f"pipeline config to replace it")
        verdict = Verdict(True, True, f"rerun — {changes}")
    elif complete and found is not None:
        verdict = Verdict(False, False, f"skipped — {output} matches config and inputs")
    elif complete:
        if not (derived or config.overwrite):
            raise StageChangedError(f"{name}: {output} has no record of the settings it was made with; set "
                                    f"overwrite: true in the pipeline config to replace it")
        verdict = Verdict(True, True, f"rerun — {output} has no record of its settings")
    else:
        verdict = Verdict(True, False, f"run — {output} {unfinished}")
    log.info("%s: %s", name, verdict.reason)
    return verdict


def _done(wanted: StageRecord, output: Path, verdict: Verdict, detail: str = "") -> StageResult:
    """Record the finished output and describe it."""
    wanted.write(output)
    return StageResult(wanted.stage, output, False, f"{verdict.reason}{'; ' + detail if detail else ''}", detail)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@_summarized
def synthetic_data(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Generate the synthetic preset into ``workdir/data`` and write its ``catalog.yaml``."""
    syn = preset(config.data.synthetic, **config.data.synthetic_overrides)
    root, catalog = config.synthetic_root, config.catalog_path
    # the preset's resolved fields too: a preset changed by an upgrade must not pass for the data made before
    shaping = flatten("preset", syn.shaping_fields())
    wanted = StageRecord("synthetic", {**_settings("synthetic", "data", config.data), **shaping})
    complete = (root / "synthetic.json").exists() and catalog.exists()
    verdict = _verdict(config, wanted, root, complete, overwrite)
    if not verdict.run:
        return StageResult("synthetic", catalog, True, verdict.reason)
    layout = generate_synthetic(syn, root, overwrite=verdict.replace)
    catalog.write_text(yaml.safe_dump(layout.catalog_document(syn.name), sort_keys=False))
    wanted.write(root)
    made = f"{len(syn.members)} members, C{syn.coarse_n} -> C{syn.fine_n}"
    return StageResult("synthetic", catalog, False, f"{verdict.reason}; {made}", made)


@_summarized
def prepared_data(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Validate the catalog's members and write the prepared dataset (splits, statistics)."""
    out = config.prepared_dir
    source = StageRecord.read(config.synthetic_root) if config.data.synthetic is not None else None
    inputs = {"synthetic": source.fingerprint} if source else {"catalog": _file_sha(config.catalog_path)}
    wanted = StageRecord("prepare", _settings("prepare", "prepare", config.prepare), inputs)
    verdict = _verdict(config, wanted, out, PreparedDataset.is_complete(out), overwrite)
    if not verdict.run:
        return StageResult("prepare", out, True, verdict.reason)
    prepared = prepare_dataset(load_catalog(config.catalog_path), out, config.prepare, overwrite=verdict.replace)
    return _done(wanted, out, verdict, f"{len(prepared.member_names)} members")


@_summarized
def trained_model(config: PipelineConfig, overwrite: bool = False,
                  progress: ProgressReport | None = None) -> StageResult:
    """Train (resuming from the last checkpoint unless a finished model is replaced) and export the model
    bundle. ``progress(step, max_steps)`` hears how far training is."""
    # Lightning (~5 s to import) only when this stage trains: a pipeline that skips it never loads it
    from downscale.training.trainer import refit_tables, train

    bundle = config.train.bundle_path
    inputs = {"prepare": PreparedDataset.open(config.prepared_dir).manifest.fingerprint}
    wanted = StageRecord("train", _settings("train", "train", config.train), inputs)
    found = StageRecord.read(bundle)
    if not overwrite and _only_tables_changed(wanted, found) and _readable_bundle(bundle):
        verdict = Verdict(True, True, f"refit tables — {'; '.join(wanted.changes_from(found))}; the weights stay")
        log.info("train: %s", verdict.reason)
        return _done(wanted, bundle, verdict, f"bundle {refit_tables(bundle, config.train).bundle_id}")
    verdict = _verdict(config, wanted, bundle, _readable_bundle(bundle), overwrite)
    if not verdict.run:
        return StageResult("train", bundle, True, verdict.reason)
    if verdict.replace:  # a fresh run: the old model's checkpoints would be resumed or refused
        shutil.rmtree(config.train.checkpoint_dir, ignore_errors=True)
    path = Path(train(config.train, resume=not verdict.replace, progress=progress))
    return _done(wanted, path, verdict, f"bundle {read_bundle_metadata(path).bundle_id}")


def _only_tables_changed(wanted: StageRecord, found: StageRecord | None) -> bool:
    """Whether ``found`` differs from ``wanted`` in :data:`_TABLES_ONLY` settings and nothing else."""
    if found is None or found.inputs != wanted.inputs or found.fingerprint == wanted.fingerprint:
        return False
    def entry(config: dict[str, Any], key: str) -> tuple[bool, Any]:
        return key in config, config.get(key)

    changed = {k for k in set(wanted.config) | set(found.config) if entry(wanted.config, k) != entry(found.config, k)}
    return all(k.startswith(_TABLES_ONLY) for k in changed)


def _readable_bundle(path: Path) -> bool:
    try:
        read_bundle_metadata(path)
    except (FileNotFoundError, BundleError) as err:
        if path.exists():
            log.warning("%s", err)
        return False
    return True


# ---- generate: planned, its work items run (here or by the flow), finished -------------------------------


@dataclass(frozen=True)
class GenerateWork:
    """The generate stage between its plan and its end: the config its items run with (absolute paths; its
    ``output`` is where they are written: ``<store>.new`` while a finished store is replaced), the store's
    layout, the output job (None when skipped) and the verdict."""

    config: GenerateConfig
    spec: OutputSpec
    job: OutputJob | None
    record: StageRecord
    verdict: Verdict
    started: float = field(default_factory=time.monotonic)   # when the stage began (its summary's duration)

    @property
    def items(self) -> list[WorkItem]:
        """The work items still to run (none when skipped)."""
        return self.job.items if self.job is not None else []


def plan_generate(config: PipelineConfig, overwrite: bool = False) -> GenerateWork:
    """Decide whether the generate stage runs and set up its output store (create, resume, grow with
    ``generate.append``, or — replacing a finished one — build the new store beside it, swapped in by
    :func:`finish_generate`); the items are then run by :func:`run_generate_items` (or the flow, one
    :func:`run_generate_item` each) and the stage ends with :func:`finish_generate`."""
    gen = config.generate.with_absolute_paths()
    spec = planned_spec(gen)
    inputs = {"train": read_bundle_metadata(gen.bundle).bundle_id}
    ignored = ("generate.end",) if gen.append else ()   # a growing store's period is the input's
    wanted = StageRecord("generate", _settings("generate", "generate", gen, ignored), inputs)
    out, complete = Path(gen.output), store.is_complete(Path(gen.output))
    growing = "grows by the frames its input gained" if complete and gen.append else "is missing or unfinished"
    verdict = _verdict(config, wanted, out, complete and store.matches(out, spec), overwrite, unfinished=growing)
    if not verdict.run:
        return GenerateWork(gen, spec, None, wanted, verdict)
    gen = gen.model_copy(update={"overwrite": verdict.replace})
    job = set_up_output_store(gen, spec)
    return GenerateWork(job.work_config(gen), spec, job, wanted, verdict)


def run_generate_items(work: GenerateWork) -> None:
    """Run the stage's work items in this process (serially, or on Dask as ``generate.workers`` and
    ``generate.scheduler`` say)."""
    run_items(work.config, work.spec, work.items)


@contextmanager
def generate_runners(work: GenerateWork, client: Client) -> Iterator[None]:
    """While inside, every worker of the Dask cluster of ``client`` holds an item runner of the stage (the
    model loaded once per worker), for :func:`run_generate_item`."""
    with item_runners(client, work.config, work.spec):
        yield


def run_generate_item(work: GenerateWork, item: WorkItem) -> str:
    """Run one work item on the Dask worker this is called on (inside :func:`generate_runners`)."""
    return run_on_worker(plugin_name(work.spec), item)


def finish_generate(work: GenerateWork) -> StageResult:
    """Finalize the store once every item is written (swapping it into place if it replaces one) and record it."""
    if work.job is None:
        return _summary(StageResult("generate", Path(work.config.output), True, work.verdict.reason), work.started)
    out = finish_store(work.job, work.spec)
    return _summary(_done(work.record, out, work.verdict, f"{len(work.items)} work items of {work.config.members} "
                                                         f"members of {work.config.member}"), work.started)


def generated_outputs(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Downscale the configured run into the ensemble store: resume an interrupted one, and with
    ``generate.append`` grow a complete one by the frames its input gained."""
    work = plan_generate(config, overwrite)
    run_generate_items(work)
    return finish_generate(work)


# ---- scoring ------------------------------------------------------------------------------------------------


@_summarized
def evaluation(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Score the generated store into the diagnostics folder; redone whenever the store changes (its
    fingerprint changes when it is rewritten or grows)."""
    output, diagnostics = config.generate.output, config.diagnostics_dir
    inputs = {"generate": str(store.root_attributes(Path(output)).get(FINGERPRINT))}
    wanted = StageRecord("evaluate", _settings("evaluate", "evaluate", config.evaluate), inputs)
    verdict = _verdict(config, wanted, diagnostics, evaluation_is_complete(diagnostics), overwrite, derived=True)
    if not verdict.run:
        return StageResult("evaluate", diagnostics, True, verdict.reason)
    evaluate(output, diagnostics, overwrite=True, n_boot=config.evaluate.n_boot)
    return _done(wanted, diagnostics, verdict, f"scores of {output}")


@_summarized
def report(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Render the HTML report; redone whenever the diagnostics change."""
    html, diagnostics = config.report_path, config.diagnostics_dir
    scored = StageRecord.read(diagnostics)
    wanted = StageRecord("report", {}, {"evaluate": scored.fingerprint if scored else "none"})
    verdict = _verdict(config, wanted, html, rendered_from(html, diagnostics), overwrite, derived=True)
    if not verdict.run:
        return StageResult("report", html, True, verdict.reason)
    render_report(diagnostics, config.generate.output, html, overwrite=True)
    return _done(wanted, html, verdict, f"from {diagnostics}")


def key_metrics(config: PipelineConfig) -> str:
    """The report's headline table (ensemble and baselines, targets checked) as markdown."""
    return summary_table(read_diagnostics(config.diagnostics_dir).scalars).to_markdown()


def sequence(config: PipelineConfig) -> list[Callable[[PipelineConfig, bool], StageResult]]:
    """The stages ``config`` runs, in order (the Prefect pipeline flow runs the same ones)."""
    data = [synthetic_data] if config.data.synthetic is not None else []
    scoring = [evaluation, report] if config.evaluate.enabled else []
    return [*data, prepared_data, trained_model, generated_outputs, *scoring]
