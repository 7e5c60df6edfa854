"""Skill of the diffusion ensemble vs the best deterministic baseline (a benchmark, not a test).

    python bench/skill.py demo   [--workdir skill-runs/demo]     # the `make demo` config (reuses a finished run)
    python bench/skill.py larger [--workdir skill-runs/larger]   # longer training and a longer scored period
    python bench/skill.py demo --markdown docs/skill.md           # also (re)write that config's section there

Runs the pipeline's stages in this process (``downscale.stages``, no Prefect; a complete stage is skipped,
so a finished ``make demo`` workdir is scored without recomputing), then prints — and optionally writes
into ``docs/skill.md`` — the validation targets on the held-out member: CRPS, PE (|Δ 99.999th percentile|),
EMD, SAE as ratios to the best deterministic baseline, the spread–skill ratio and the area-weighted
bias of the whole-period mean, each with pass/miss (``downscale.report.tables.TARGETS``), plus each
source's absolute values.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_catalog.schema import SECONDS_PER_DAY as MM_DAY  # noqa: E402  (kg m-2 s-1 → mm/day)
from downscale import stages  # noqa: E402
from downscale.config import PipelineConfig, demo_config  # noqa: E402
from downscale.report.inputs import read_diagnostics  # noqa: E402
from downscale.report.tables import TARGETS, fmt  # noqa: E402

ABSOLUTE = (("crps", "CRPS (mm/day)", MM_DAY), ("mae", "MAE of the mean (mm/day)", MM_DAY),
            ("pe", "PE (mm/day)", MM_DAY), ("emd", "EMD (mm/day)", MM_DAY), ("sae", "SAE", 1.0),
            ("spread_skill", "spread–skill", 1.0), ("relative_bias", "relative bias (%)", 100.0))
TARGET_ROWS = ("crps_ratio", "pe_ratio", "emd_ratio", "sae_ratio", "spread_skill", "relative_bias")


def config_for(name: str, workdir: Path) -> PipelineConfig:
    """``demo``: the embedded default. ``larger``: the same data with 4× the training steps (1000) and 20 days
    of the held-out member scored with 8 members (about an hour on 2 CPU cores)."""
    base = demo_config(workdir)
    if name == "demo":
        return base
    doc = base.model_dump(mode="json")
    doc["train"].update(max_steps=1000, validation={**doc["train"]["validation"], "every_n_steps": 250},
                        checkpoint={**doc["train"]["checkpoint"], "every_n_steps": 250})
    doc["generate"].update(members=8, end="2016-08-25")
    return PipelineConfig.model_validate(doc)


def run(config: PipelineConfig) -> list[tuple[str, bool, float]]:
    out = []
    for step in stages.sequence(config):
        t0 = time.perf_counter()
        result = step(config)
        out.append((result.name, result.skipped, time.perf_counter() - t0))
        print(f"{result.name:10s} {'skipped' if result.skipped else 'ran':8s} {out[-1][2]:7.1f} s  {result.path}",
              flush=True)
    return out


def _value(scalars, var: str, source: str) -> float:
    da = scalars[var].sel(source=source)
    return float(da.sel(region="global") if "region" in da.dims else da)


def section(name: str, config: PipelineConfig, timings: list[tuple[str, bool, float]]) -> str:
    """The markdown section of one config: targets first, then absolute values per source."""
    diags = read_diagnostics(config.diagnostics_dir)
    s, ev = diags.scalars, diags.evaluation
    baselines = [str(x) for x in s.source.values if x not in ("ensemble", "truth", "coarse")]
    best = min(baselines, key=lambda b: _value(s, "crps", b))
    lines = [f"## `{name}` config", "",
             f"Held-out member {config.generate.member}, {ev['n_times']} frames ({ev['period'][0]} … "
             f"{ev['period'][1]}), {ev['n_members']} members, sampler {config.generate.sampler.kind} "
             f"{config.generate.sampler.num_steps} steps (NFE {config.generate.sampler.nfe}), "
             f"{config.train.max_steps} training steps of the `{config.train.network.preset}` network. "
             f"Stage times (s): " + ", ".join(f"{n} {'skipped' if sk else f'{t:.0f}'}" for n, sk, t in timings) + ".",
             "", "| target | ensemble | goal | |", "|---|---|---|---|"]
    for var in TARGET_ROWS:
        v = _value(s, var, "ensemble")
        ok = math.isfinite(v) and TARGETS[var].check(v)
        shown = f"{100 * v:+.1f} %" if var == "relative_bias" else fmt(v)
        goal = TARGETS[var].text.replace("|", "\\|")
        lines.append(f"| {var} | {shown} | {goal} | {'pass' if ok else 'miss'} |")
    sources = [x for x in ("ensemble", *baselines, "coarse") if x in s.source.values]
    lines += ["", f"Ratios are to the best deterministic baseline per metric (by CRPS: `{best}`).", "",
              "| metric | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for var, label, factor in ABSOLUTE:
        lines.append(f"| {label} | " + " | ".join(fmt(_value(s, var, x) * factor) for x in sources) + " |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the ``## `name` config`` section of ``path``."""
    doc = path.read_text() if path.exists() else (
        "# Skill on the synthetic validation split\n\nThe diffusion ensemble against the best deterministic "
        "baseline on the held-out member. Each section is reproduced (and rewritten) by "
        "`python bench/skill.py NAME --markdown docs/skill.md`.\n\n")
    pattern = re.compile(rf"## `{re.escape(name)}` config\n.*?(?=\n## |\Z)", re.S)
    doc = pattern.sub(lambda _: text.rstrip("\n"), doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc if doc.endswith("\n") else doc + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", choices=["demo", "larger"])
    p.add_argument("--workdir", type=Path, help="default: skill-runs/<config>")
    p.add_argument("--markdown", type=Path, help="write this config's section into this file (e.g. docs/skill.md)")
    args = p.parse_args()
    config = config_for(args.config, args.workdir or REPO / "skill-runs" / args.config)
    text = section(args.config, config, run(config))
    print(text)
    if args.markdown:
        write_section(args.markdown, args.config, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
