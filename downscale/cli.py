"""The ``downscale`` command line. Every subcommand has ``--help``; bad input exits non-zero.

    downscale synthetic --preset demo --root data/    write synthetic FV3GFS stores and a catalog
    downscale card --preset demo --root data/ --figure-dir docs/figures   dataset card numbers and figures
    downscale validate --catalog data/catalog.yaml    open, standardize and check every member
    downscale generate --bundle b.safetensors --catalog c.yaml --member 0003 --members 8 --out o.zarr
    downscale config --preset demo --output p.yaml     a preset's complete pipeline config (YAML)
    downscale run --demo --workdir demo-run            the pipeline's stages without Prefect
    downscale evaluate --output o.zarr --diagnostics diag/              score every source against the truth
    downscale report --diagnostics diag/ --output o.zarr --html r.html  the offline HTML validation report
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from data_catalog.redaction import redact
from downscale.logs import configure as configure_logging

#: Errors that are the user's input, not our bug: printed as one clear line, exit code 2.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileExistsError, FileNotFoundError)
EXIT_BAD_INPUT = 2


def _cmd_synthetic(args: argparse.Namespace) -> int:
    import yaml

    from data_catalog.synthetic import generate_synthetic, preset

    config = preset(args.preset)
    layout = generate_synthetic(config, args.root, overwrite=args.overwrite)
    path = layout.root / "catalog.yaml"
    path.write_text(yaml.safe_dump(layout.catalog_document(config.name), sort_keys=False))
    print(f"catalog: {path}")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    import json

    from data_catalog.synthetic.card import measure_card, render

    data, config, stats = measure_card(args.preset, args.root)
    print(render(stats))
    if args.json:
        args.json.write_text(json.dumps(stats, indent=2))
    if args.figure_dir:
        from downscale.plots.dataset_card import card_figures

        for path in card_figures(data, config, args.figure_dir):
            print(f"figure: {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from downscale.summary import summarize_catalog

    print(summarize_catalog(args.catalog, check_values=not args.no_values))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from downscale import stages
    from downscale.pipeline_config import PipelineConfig, demo_config

    config = demo_config(args.workdir, args.preset) if args.demo else PipelineConfig.from_yaml(args.config)
    for step in stages.sequence(config):   # each logs why it runs, its progress and one summary line
        step(config, args.overwrite)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from downscale.pipeline_config import preset_yaml

    text = preset_yaml(args.preset, args.workdir)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
        print(f"config: {args.output}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from data_catalog.errors import validated
    from downscale.inference.config import DEFAULT_SAMPLER, GenerateConfig
    from downscale.inference.generate import generate

    flags = {"bundle": args.bundle, "catalog": args.catalog, "member": args.member, "output": args.out,
             "members": args.members, "seed": args.seed, "start": args.start, "end": args.end,
             "members_per_batch": args.members_per_batch, "time_block": args.time_block,
             "workers": args.workers, "device": args.device, "scheduler": args.scheduler,
             "mass_correction": False if args.no_mass_correction else None, "overwrite": args.overwrite or None,
             "append": args.append or None}
    doc = {k: v for k, v in flags.items() if v is not None}
    sampler = {k: v for k, v in (("kind", args.sampler), ("num_steps", args.steps)) if v is not None}
    if sampler:  # merged into the YAML's sampler, or into the default one
        doc["sampler"] = sampler if args.config else {**DEFAULT_SAMPLER.model_dump(), **sampler}
    config = GenerateConfig.from_yaml(args.config, doc) if args.config else validated(GenerateConfig, doc,
                                                                                     "downscale generate")
    print(f"output: {generate(config)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from downscale.evaluation.evaluate import evaluate

    paths = evaluate(args.output, args.diagnostics, overwrite=args.overwrite, factor=args.factor,
                     n_boot=args.n_boot)
    for kind, path in paths.items():
        print(f"{kind:10s} {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from downscale.report import render_report

    print(f"report: {render_report(args.diagnostics, args.output, args.html, overwrite=args.overwrite)}")
    return 0


def _add(sub, name: str, help_: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=fn)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="downscale",
        description="Downscale FV3GFS C48 precipitation to C384 ensembles with a video diffusion model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "synthetic", "write synthetic FV3GFS stores (real schema) and their catalog", _cmd_synthetic)
    p.add_argument("--root", required=True, type=Path, help="directory to write the stores and catalog.yaml into")
    p.add_argument("--preset", default="demo", help="synthetic data preset: tests, demo, skill or full (default demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing complete dataset")

    p = _add(sub, "card", "measure the dataset card of a synthetic preset (generated if missing)", _cmd_card)
    p.add_argument("--root", required=True, type=Path, help="dataset root (generated there if missing)")
    p.add_argument("--preset", default="demo", help="synthetic preset: tests, demo, skill or full (default demo)")
    p.add_argument("--json", type=Path, help="also write the statistics as JSON here")
    p.add_argument("--figure-dir", type=Path, help="write the card's figures (PNG) here")

    p = _add(sub, "validate", "open every store of a catalog, standardize, check, and print a summary", _cmd_validate)
    p.add_argument("--catalog", required=True, type=Path, help="catalog YAML (native or intake-v1 form)")
    p.add_argument("--no-values", action="store_true", help="skip the pass over values (NaN/inf, negatives)")

    # `train` has its own parser (downscale.training.trainer.main); listed here for --help.
    sub.add_parser("train", help="train the model from a training YAML (docs/training.md); --resume continues",
                   add_help=False)

    p = _add(sub, "generate", "downscale a coarse run of a catalog into an ensemble + baselines (docs/inference.md)",
             _cmd_generate)
    p.add_argument("--config", type=Path, help="generate YAML (downscale.inference.config); flags override it")
    p.add_argument("--bundle", type=Path, help="model bundle (.safetensors) from downscale train")
    p.add_argument("--catalog", type=Path, help="catalog YAML that holds the coarse run")
    p.add_argument("--member", help="catalog member (run) to downscale")
    p.add_argument("--out", type=Path, help="output Zarr store")
    p.add_argument("--members", type=int, help="ensemble size (default 8)")
    p.add_argument("--seed", type=int, help="base seed (default 0)")
    p.add_argument("--start", help="first time, ISO date (default: the run's first)")
    p.add_argument("--end", help="last time, ISO date, inclusive (default: the run's last)")
    p.add_argument("--sampler", choices=["heun", "dpmpp_2m"], help="sampler (default dpmpp_2m)")
    p.add_argument("--steps", type=int, help="sampler steps (NFE = steps for dpmpp_2m, 2·steps − 1 for heun)")
    p.add_argument("--members-per-batch", type=int, help="members sampled at once (memory knob)")
    p.add_argument("--time-block", type=int, help="frames per work item (and shard)")
    p.add_argument("--workers", type=int, help="work items at once (local Dask threads)")
    p.add_argument("--scheduler", help="Dask scheduler address to run the work items on")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-mass-correction", action="store_true",
                   help="keep the members as sampled (default: rescaled to the coarse input's mass per coarse cell)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete output store")
    p.add_argument("--append", action="store_true",
                   help="grow a complete output store of the same settings by the frames its input gained since")

    p = _add(sub, "evaluate", "score the ensemble, baselines and coarse input of an output store against its "
             "truth; writes metrics.json, maps.zarr, curves.nc and evaluation.json", _cmd_evaluate)
    p.add_argument("--output", required=True, help="output store (Zarr) with PRATEsfc and PRATEsfc_truth")
    p.add_argument("--diagnostics", required=True, type=Path, help="folder to write the diagnostics into")
    p.add_argument("--factor", type=int, help="fine/coarse ratio, only if the store lacks the 'factor' attribute")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the return-level CIs (default 200)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing evaluation in --diagnostics")

    p = _add(sub, "report", "render the validation report (one offline HTML file) from a diagnostics folder",
             _cmd_report)
    p.add_argument("--diagnostics", required=True, type=Path, help="diagnostics folder from `downscale evaluate`")
    p.add_argument("--output", required=True, help="the evaluated output store (grid corners, provenance)")
    p.add_argument("--html", required=True, type=Path, help="report file to write, e.g. report.html")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report file")

    p = _add(sub, "config", "print a preset's complete pipeline config as YAML (every field, defaults included); "
             "`downscale run --config` reads it back", _cmd_config)
    p.add_argument("--preset", default="demo", help="pipeline preset: tests, demo, skill, … (default demo)")
    p.add_argument("--workdir", default="demo-run", help="the config's workdir (default demo-run, as run --demo)")
    p.add_argument("--output", type=Path, help="write the YAML to this file instead of stdout")

    p = _add(sub, "run", "run the pipeline's stages in this process, without Prefect (see also flows.pipeline)",
             _cmd_run)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=Path, help="pipeline YAML (downscale.pipeline_config.PipelineConfig)")
    which.add_argument("--demo", action="store_true", help="the embedded synthetic default (CPU)")
    p.add_argument("--workdir", default="demo-run", type=Path, help="with --demo: where data, model and outputs go")
    p.add_argument("--preset", default="demo", help="with --demo: synthetic data preset (tests, demo, skill)")
    p.add_argument("--overwrite", action="store_true", help="redo stages whose outputs are complete")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from downscale.training.trainer import main as train_main

        run: Callable[[], int] = partial(train_main, argv[1:])   # it sets up logging (downscale.logs)
    else:
        args = build_parser().parse_args(argv)
        configure_logging(args.verbose)
        run = partial(args.func, args)
    try:
        return run()
    except USER_ERRORS as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
