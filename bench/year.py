"""A whole year, downscaled as the scheduled deployment would and judged: the `year` preset end to end (a
benchmark, not a test).

    .venv/bin/python bench/year.py [--workdir skill-runs/year]                # ≈ 60 min on 2 quiet cores
    .venv/bin/python bench/year.py --markdown docs/performance.md            # also (re)write its section there
    .venv/bin/python bench/year.py --workdir /tmp/y --days 40 --max-steps 20 # a smoke run of minutes
    .venv/bin/python bench/year.py --from-json year.json --markdown docs/performance.md   # re-render a --json run

Runs the data, prepare and train stages of the ``year`` pipeline preset (C8 → C32, 365 days from January 1st,
3 members; ``downscale.stages``, a finished stage is skipped), then downscales the held-out member's year with
4 ensemble members **month by month** through the incremental path: a copy of the member's stores first holds
its first 10 days, then gains each month in turn (:class:`data_catalog.synthetic.growing.GrowingInput`), and
``generate --append`` samples only the frames it gained — what a daily or monthly schedule does. The first
month's store and the year's are evaluated (with the synthetic Earth's land fraction, so land and ocean are
regions of the climatology) and the year is reported (``report.html``).

Each ``generate`` and ``evaluate`` runs in a child process, so its peak resident memory is its own. Printed:
wall time per stage and per growth step, member-frames per second over the first 10 days and over the year
(goal: no slowdown beyond 10 %), peak RSS of ``generate`` and ``evaluate`` for the year vs for the first month
(goal ≤ 1.2×), evaluation time and output size per member-year, and the extrapolation of the measured cost
per member-frame to 10 members × 10 years at C384 (× (384/32)² fine cells).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_catalog.synthetic.growing import GrowingInput  # noqa: E402
from downscale import stages  # noqa: E402
from downscale.logs import configure as configure_logging  # noqa: E402
from downscale.inference.config import GenerateConfig  # noqa: E402
from downscale.inference.coarse_run import open_run  # noqa: E402
from downscale.pipeline_config import PipelineConfig, demo_config  # noqa: E402

FIRST_DAYS = 10
FRAMES_PER_DAY = 8
TARGET_N, TARGET_MEMBERS, TARGET_YEARS = 384, 10, 10


# ---- children: one generate or evaluate each, reporting their own wall time and peak RSS -----------------

def _child(kind: str, payload: dict) -> dict:
    """Run ``kind`` with ``payload`` in a fresh interpreter; its wall time (s) and peak RSS (MiB)."""
    done = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(payload)], capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_child(kind: str, payload: dict) -> None:
    t0 = time.perf_counter()
    if kind == "generate":
        from downscale.inference.generate import generate
        generate(GenerateConfig.model_validate(payload))
    else:
        from downscale.evaluation.evaluate import evaluate
        evaluate(payload["store"], payload["out"], overwrite=True, n_boot=payload["n_boot"],
                 land_fraction=_land_fraction(payload["store"]))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's own peak RSS (MiB). Linux's ``ru_maxrss`` survives fork + exec, so a child would report
    at least the parent's size at the fork; ``VmHWM`` (``/proc/self/status``) belongs to the running image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _land_fraction(store: str):
    """The synthetic Earth's land fraction at the store's cell centres."""
    import xarray as xr

    from data_catalog.cubesphere import lat_lon_to_unit_vectors
    from data_catalog.synthetic.topography import land_fraction
    ds = xr.open_zarr(store)
    return ds.lat.copy(data=land_fraction(lat_lon_to_unit_vectors(ds.lat.values, ds.lon.values)))


# ---- the benchmark -----------------------------------------------------------------------------------------

def growth_cuts(times: np.ndarray) -> list[int]:
    """Frame counts the input holds at each run: the first 10 days, then the end of each calendar month."""
    months = np.array([t.year * 12 + t.month for t in times])
    ends = [int(i) for i in np.flatnonzero(np.diff(months)) + 1] + [len(times)]
    first = min(FIRST_DAYS * FRAMES_PER_DAY, len(times))
    return [first, *(e for e in ends if e > first)]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(config: PipelineConfig) -> dict:
    """Every stage, timed; the measurements (module docstring)."""
    out: dict = {"stages": {}, "growth": []}
    for step in (*([stages.synthetic_data] if config.data.synthetic else []), stages.prepared_data,
                 stages.trained_model):
        t0 = time.perf_counter()
        result = step(config)
        out["stages"][result.name] = time.perf_counter() - t0
        print(f"{result.name:10s} {'skipped' if result.skipped else 'ran':8s} {out['stages'][result.name]:7.1f} s",
              flush=True)
    gen = config.generate.with_absolute_paths()
    times = open_run(gen).times
    cuts = growth_cuts(times)
    work = Path(config.workdir) / "growing"
    work.mkdir(parents=True, exist_ok=True)
    growing = GrowingInput(gen.catalog, work, gen.member, frames=cuts[0])
    grow = gen.model_copy(update={"catalog": growing.catalog, "end": None, "append": True, "overwrite": True})
    month_eval, before = None, 0
    for i, cut in enumerate(cuts):
        if i:
            growing.append(cut)
        m = _child("generate", json.loads(grow.model_dump_json()))
        grow = grow.model_copy(update={"overwrite": False})
        m.update(frames=cut - before, member_frames=(cut - before) * gen.members, through=str(times[cut - 1]))
        out["growth"].append(m)
        print(f"generate   {m['through'][:10]}  {m['frames']:5d} frames {m['wall_s']:7.1f} s "
              f"{m['member_frames'] / m['wall_s']:6.2f} member-frames/s  peak {m['peak_rss_mib']:.0f} MiB", flush=True)
        before = cut
        if i == 1:      # the store holds the first calendar month
            month_eval = _child("evaluate", {"store": str(gen.output), "out": str(work / "diagnostics-month"),
                                             "n_boot": config.evaluate.n_boot})
            month_eval["frames"] = cut
            print(f"evaluate   first month ({cut} frames) {month_eval['wall_s']:.1f} s, "
                  f"peak {month_eval['peak_rss_mib']:.0f} MiB", flush=True)
    out["evaluate"] = _child("evaluate", {"store": str(gen.output), "out": str(config.diagnostics_dir),
                                          "n_boot": config.evaluate.n_boot})
    out["evaluate_month"] = month_eval
    print(f"evaluate   year {out['evaluate']['wall_s']:.1f} s, peak {out['evaluate']['peak_rss_mib']:.0f} MiB",
          flush=True)
    t0 = time.perf_counter()
    from downscale.report.render import render_report
    render_report(config.diagnostics_dir, gen.output, config.report_path, overwrite=True)
    out["stages"]["report"] = time.perf_counter() - t0
    out.update(n_frames=len(times), members=gen.members, n_fine=gen_fine_n(config), store_bytes=_du(Path(gen.output)),
               period=[str(times[0]), str(times[-1])])
    return out


def gen_fine_n(config: PipelineConfig) -> int:
    from data_catalog.synthetic import preset
    return preset(config.data.synthetic, **config.data.synthetic_overrides).fine_n


def summary(m: dict) -> dict:
    """Derived figures: rates, ratios, per member-year and the C384 extrapolation."""
    g = m["growth"]
    first = g[0]["member_frames"] / g[0]["wall_s"]
    total_s = sum(x["wall_s"] for x in g)
    year = sum(x["member_frames"] for x in g) / total_s
    member_years = m["members"] * m["n_frames"] / (365 * FRAMES_PER_DAY)
    per_frame_s = 1.0 / year
    cells = (TARGET_N / m["n_fine"]) ** 2
    target_frames = TARGET_MEMBERS * TARGET_YEARS * 365 * FRAMES_PER_DAY
    month = m["evaluate_month"]
    return {
        "rate_first_days": first, "rate_year": year, "rate_ratio": year / first, "generate_s": total_s,
        "generate_peak_first_mib": g[0]["peak_rss_mib"], "generate_peak_max_mib": max(x["peak_rss_mib"] for x in g),
        "evaluate_peak_year_mib": m["evaluate"]["peak_rss_mib"],
        "evaluate_peak_month_mib": month["peak_rss_mib"] if month else float("nan"),
        "evaluate_memory_ratio": m["evaluate"]["peak_rss_mib"] / month["peak_rss_mib"] if month else float("nan"),
        "evaluate_s_per_member_year": m["evaluate"]["wall_s"] / member_years,
        "store_mib_per_member_year": m["store_bytes"] / 2**20 / member_years, "member_years": member_years,
        "c384_core_hours": target_frames * per_frame_s * cells / 3600.0, "cells_factor": cells,
    }


def _verdict(ratio: float, limit: float) -> str:
    return f"**met** (×{ratio:.2f})" if ratio <= limit else f"**missed** (×{ratio:.2f}, goal ×{limit:.2f})"


def markdown(m: dict, s: dict) -> str:
    """The ``## `year` benchmark`` section of docs/performance.md."""
    g, first, month = m["growth"], m["growth"][0], m["evaluate_month"]
    rates = [x["member_frames"] / x["wall_s"] for x in g[1:]] or [s["rate_first_days"]]
    slowest = min(range(len(rates)), key=rates.__getitem__)
    st = m["stages"]
    train = ", ".join(f"{st[k]:.0f} s" if k in st else "—" for k in ("synthetic", "prepare", "train"))
    peak_first, peak_max = s["generate_peak_first_mib"], s["generate_peak_max_mib"]
    year_eval = m["evaluate"]
    c384_days = s["c384_core_hours"] / 24
    return "\n".join([
        "## `year` benchmark", "",
        f"Measured {m.get('date', '')} on this machine's 2 CPU cores. Reproduce (rewrites this section):", "",
        "    .venv/bin/python bench/year.py --markdown docs/performance.md", "",
        f"The `year` preset: C8 → C{m['n_fine']}, {m['n_frames']} frames ({m['period'][0][:10]} … "
        f"{m['period'][1][:10]}), 3 synthetic members; the held-out member's year is downscaled with "
        f"{m['members']} ensemble members month by month with `generate --append` (the first {FIRST_DAYS} days, then "
        "each month), each `generate` and `evaluate` in its own process; peak memory is that process's own "
        "(`VmHWM`). `evaluate` reads the store in blocks of whole days (docs/metrics.md, \"How a store is read\"). "
        "A smoke run of minutes: `.venv/bin/python bench/year.py --workdir /tmp/year --days 40 --max-steps 20`.", "",
        "| measured | value | goal |", "|---|---|---|",
        f"| synthetic data, prepare, training | {train} | — |",
        f"| generate, first {FIRST_DAYS} days ({first['frames']} frames × {m['members']} members) | "
        f"{s['rate_first_days']:.2f} member-frames/s | — |",
        f"| generate, the {len(g) - 1} growth steps after them | {min(rates):.2f} – {max(rates):.2f} member-frames/s "
        f"(slowest: the step through {g[1 + slowest]['through'][:10] if len(g) > 1 else '—'}); the year "
        f"{s['rate_year']:.2f} member-frames/s in {s['generate_s']:.0f} s | slowdown ≤ 10 %: "
        f"{_verdict(s['rate_first_days'] / s['rate_year'], 1.1)} |",
        f"| generate peak RSS, largest growth step vs first | {peak_max:.0f} vs {peak_first:.0f} MiB | ≤ 1.2×: "
        f"{_verdict(peak_max / peak_first, 1.2)} |",
        f"| evaluate, first month ({month['frames']} frames) | {month['wall_s']:.0f} s, peak {month['peak_rss_mib']:.0f} "
        "MiB | — |" if month else "| evaluate, first month | not measured | — |",
        f"| evaluate, the year ({m['n_frames']} frames × {m['members']} members) | {year_eval['wall_s']:.0f} s, peak "
        f"{year_eval['peak_rss_mib']:.0f} MiB | peak ≤ 1.2 × the month's: "
        f"{_verdict(s['evaluate_memory_ratio'], 1.2)} |",
        f"| evaluation time per member-year | {s['evaluate_s_per_member_year']:.0f} s | — |",
        f"| output store (members, truth, baselines, coarse input) | {m['store_bytes'] / 2**20:.0f} MiB, "
        f"{s['store_mib_per_member_year']:.0f} MiB per member-year | — |",
        f"| 10 members × 10 years at C384, extrapolated from the measured cost per member-frame "
        f"(× {s['cells_factor']:.0f} fine cells) | {s['c384_core_hours']:.0f} h ≈ {c384_days:.0f} days on these 2 "
        "cores | — (GPU estimate: next section) |", ""])


def write_section(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else ""
    pattern = re.compile(r"## `year` benchmark\n.*?(?=\n## |\Z)", re.S)
    path.write_text(pattern.sub(lambda _: text.rstrip("\n"), doc) if pattern.search(doc) else
                    doc.rstrip("\n") + "\n\n" + text)


def with_max_steps(config: PipelineConfig, steps: int) -> PipelineConfig:
    """``config`` trained for ``steps`` steps, warm-up, validation and checkpoint intervals cut to fit."""
    doc = config.model_dump(mode="json")
    train = doc["train"]
    train["max_steps"] = steps
    train["optimizer"]["warmup_steps"] = min(train["optimizer"]["warmup_steps"], steps // 2)
    train["validation"]["every_n_steps"] = min(train["validation"]["every_n_steps"], steps)
    train["checkpoint"]["every_n_steps"] = min(train["checkpoint"]["every_n_steps"], steps)
    return PipelineConfig.model_validate(doc)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _run_child(sys.argv[2], json.loads(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("skill-runs/year"))
    parser.add_argument("--markdown", type=Path, help="write the results section into this markdown file")
    parser.add_argument("--days", type=int, help="days of synthetic data (a smoke run; default the preset's 365)")
    parser.add_argument("--max-steps", type=int, help="training steps (a smoke run; default the preset's)")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--from-json", type=Path, help="render the measurements of an earlier --json, run nothing")
    args = parser.parse_args()
    configure_logging()   # progress lines with timestamps, no library noise (as `downscale run`)
    config = demo_config(args.workdir, "year")
    if args.days:
        config = config.model_copy(update={"data": config.data.model_copy(
            update={"synthetic_overrides": {"days": args.days}})})
    if args.max_steps:
        config = with_max_steps(config, args.max_steps)
    if args.from_json:
        m = json.loads(args.from_json.read_text())["measured"]
    else:
        m = run(config)
        m["date"] = time.strftime("%Y-%m-%d")
    s = summary(m)
    text = markdown(m, s)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"measured": m, "summary": s}, indent=1))
    if args.markdown:
        write_section(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
