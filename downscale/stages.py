"""The pipeline's stages as plain functions: each does its work or, when its output is already
complete and valid for this configuration (content checks, not file existence), says so and skips.

The Prefect flows (``flows/``) call exactly these; so does ``downscale run`` without Prefect.
Every stage returns a :class:`StageResult` with the path of what it produced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from data_catalog.catalog import load_catalog
from data_catalog.prepare import PreparedDataset, prepare_dataset
from downscale.config import PipelineConfig

if TYPE_CHECKING:
    from downscale.training.progress import ProgressReport
    from downscale.inference.config import GenerateConfig
    from downscale.inference.store import OutputSpec, WorkItem

#: ``run_items(config, spec, items)``: how the generate stage runs its pending work items.
RunItems = Callable[["GenerateConfig", "OutputSpec", "list[WorkItem]"], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    name: str
    path: Path
    skipped: bool
    detail: str = ""


def synthetic_data(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Generate the synthetic preset into ``workdir/data`` and write its ``catalog.yaml``.

    Skipped when a complete dataset of the same configuration fingerprint is already there.
    """
    from data_catalog.synthetic import generate_synthetic, preset

    syn = preset(config.data.synthetic, **config.data.synthetic_overrides)
    root = config.synthetic_root
    marker = root / "synthetic.json"
    catalog = config.catalog_path
    if marker.exists() and not overwrite:
        found = json.loads(marker.read_text()).get("fingerprint")
        if found == syn.fingerprint() and catalog.exists():
            return StageResult("synthetic", catalog, True, f"complete (fingerprint {found})")
        raise FileExistsError(
            f"{root}: holds synthetic data of another configuration (fingerprint {found}, wanted "
            f"{syn.fingerprint()}); choose another workdir or pass overwrite"
        )
    layout = generate_synthetic(syn, root, overwrite=overwrite)
    catalog.write_text(yaml.safe_dump(layout.catalog_document(syn.name), sort_keys=False))
    return StageResult("synthetic", catalog, False, f"{len(syn.members)} members, C{syn.coarse_n} -> C{syn.fine_n}")


def prepared_data(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Validate the catalog's members and write the prepared dataset (splits, statistics)."""
    out = config.prepared_dir
    if not overwrite and PreparedDataset.is_complete(out):
        prepared = PreparedDataset.open(out)
        if prepared.manifest.config == config.prepare:
            return StageResult("prepare", out, True, f"complete ({len(prepared.member_names)} members)")
        raise FileExistsError(f"{out}: a prepared dataset with other settings exists; pass overwrite to redo it")
    catalog = load_catalog(config.catalog_path)
    prepared = prepare_dataset(catalog, out, config.prepare, overwrite=overwrite)
    return StageResult("prepare", out, False, f"{len(prepared.member_names)} members")


def trained_model(config: PipelineConfig, overwrite: bool = False,
                  progress: ProgressReport | None = None) -> StageResult:
    """Train (resuming from the last checkpoint if one exists) and export the model bundle.
    ``progress(step, max_steps)`` hears how far training is."""
    from downscale.bundle import BundleError, read_bundle_metadata
    from downscale.training.trainer import train

    bundle = config.train.bundle_path
    prepared = PreparedDataset.open(config.prepared_dir)
    if bundle.exists() and not overwrite:
        try:
            meta = read_bundle_metadata(bundle)
        except BundleError as err:
            log.warning("%s: retraining", err)
        else:
            if meta.provenance.get("prepared_fingerprint") == prepared.manifest.fingerprint:
                return StageResult("train", bundle, True, f"bundle {meta.bundle_id} complete")
    path = train(config.train, resume=not overwrite, progress=progress)
    return StageResult("train", Path(path), False)


def generated_outputs(config: PipelineConfig, overwrite: bool = False,
                      run_items: RunItems | None = None) -> StageResult:
    """Downscale the configured run into the ensemble store: resume an interrupted one, and with
    ``generate.append`` grow a complete one by the frames its input gained. ``run_items(config, spec, items)``
    runs the pending work items (default :func:`downscale.inference.generate.run_items`; the Prefect flow
    maps them over its task runner)."""
    from downscale.inference import generate as gen_module
    from downscale.inference import store

    gen = config.generate.model_copy(update={"overwrite": overwrite}).with_absolute_paths()
    spec = gen_module.planned_spec(gen)
    if not overwrite and store.is_complete(gen.output) and store.matches(gen.output, spec):
        return StageResult("generate", gen.output, True, "complete")
    pending = gen_module.set_up_output_store(gen, spec)
    (run_items or gen_module.run_items)(gen, spec, pending)
    gen_module.finish_store(gen, spec)
    return StageResult("generate", gen.output, False, f"{len(pending)} work items of {gen.members} members "
                                                      f"of {gen.member}")


def evaluation(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Score the generated store into the diagnostics folder; skipped when the folder was computed from the
    store as it is now (its fingerprint changes whenever the store is rewritten or grows)."""
    from downscale.report.evaluate import evaluate
    from downscale.report.inputs import is_complete

    store, diagnostics = config.generate.output, config.diagnostics_dir
    if is_complete(diagnostics) and not overwrite and _evaluated(store, diagnostics):
        return StageResult("evaluate", diagnostics, True, "diagnostics of the current store complete")
    evaluate(store, diagnostics, overwrite=True, n_boot=config.evaluate.n_boot)
    return StageResult("evaluate", diagnostics, False, f"scores of {store}")


def report(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Render the HTML report; skipped when it was rendered from the current diagnostics."""
    from downscale.report.render import render_report, rendered_from

    html, diagnostics = config.report_path, config.diagnostics_dir
    if not overwrite and rendered_from(html, diagnostics):
        return StageResult("report", html, True, "report of the current diagnostics complete")
    render_report(diagnostics, config.generate.output, html, overwrite=True)
    return StageResult("report", html, False, f"from {diagnostics}")


def key_metrics(config: PipelineConfig) -> str:
    """The report's headline table (ensemble and baselines, targets checked) as markdown."""
    from downscale.report.inputs import read_diagnostics
    from downscale.report.tables import summary_table

    return summary_table(read_diagnostics(config.diagnostics_dir).scalars).to_markdown()


def sequence(config: PipelineConfig) -> list[Callable[[PipelineConfig, bool], StageResult]]:
    """The stages ``config`` runs, in order (the Prefect pipeline flow runs the same ones)."""
    data = [synthetic_data] if config.data.synthetic is not None else []
    scoring = [evaluation, report] if config.evaluate.enabled else []
    return [*data, prepared_data, trained_model, generated_outputs, *scoring]


def _evaluated(store_path: Path, diagnostics: Path) -> bool:
    """True if the diagnostics folder was computed from the store as it is now (same store fingerprint)."""
    from downscale.inference.store import FINGERPRINT, open_output
    from downscale.report.inputs import EVALUATION_FILE

    scored = json.loads((diagnostics / EVALUATION_FILE).read_text()).get("store_attrs", {}).get(FINGERPRINT)
    return scored is not None and scored == open_output(store_path).attrs.get(FINGERPRINT)
