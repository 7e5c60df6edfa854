"""The pipeline's stages as plain functions: each does its work or, when its output is already
complete and valid for this configuration (content checks, not file existence), says so and skips.

The Prefect flows (``flows/``) call exactly these; so does ``downscale run`` without Prefect.
Every stage returns a :class:`StageResult` with the path of what it produced.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from data_catalog.catalog import load_catalog
from data_catalog.prepare import PreparedDataset, prepare_dataset
from downscale.config import PipelineConfig

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


def trained_model(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Train (resuming from the last checkpoint if one exists) and export the model bundle."""
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
    path = train(config.train, resume=not overwrite)
    return StageResult("train", Path(path), False)


def generated_outputs(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Downscale the configured run into the ensemble store (resuming an interrupted one)."""
    from downscale.inference import store
    from downscale.inference.generate import generate, planned_spec

    gen = config.generate.model_copy(update={"overwrite": overwrite})
    if store.is_complete(gen.output) and not overwrite:
        if store.matches(gen.output, planned_spec(gen)):
            return StageResult("generate", gen.output, True, "complete")
        raise FileExistsError(f"{gen.output}: a complete output store of another configuration (bundle, sampler, "
                              f"members, period …); pass overwrite to redo it")
    path = generate(gen)
    return StageResult("generate", path, False, f"{gen.members} members of {gen.member}")


def evaluation(config: PipelineConfig, overwrite: bool = False) -> StageResult:
    """Score the generated store (diagnostics folder) and write the HTML report; skipped when both exist."""
    from downscale.report.evaluate import evaluate
    from downscale.report.inputs import is_complete
    from downscale.report.render import render_report

    store, diagnostics, html = config.generate.output, config.diagnostics_dir, config.report_path
    if is_complete(diagnostics) and html.exists() and not overwrite and _evaluated(store, diagnostics):
        return StageResult("evaluate", html, True, "diagnostics and report complete")
    evaluate(store, diagnostics, overwrite=True, n_boot=config.evaluate.n_boot)
    render_report(diagnostics, store, html, overwrite=True)
    return StageResult("evaluate", html, False, f"diagnostics in {diagnostics}")


def _evaluated(store_path: Path, diagnostics: Path) -> bool:
    """True if the diagnostics folder was computed from the store as it is now (same store fingerprint)."""
    from downscale.inference.store import FINGERPRINT, open_output
    from downscale.report.inputs import EVALUATION_FILE

    scored = json.loads((diagnostics / EVALUATION_FILE).read_text()).get("store_attrs", {}).get(FINGERPRINT)
    return scored is not None and scored == open_output(store_path).attrs.get(FINGERPRINT)
