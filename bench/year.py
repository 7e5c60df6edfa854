"""A whole year, downscaled as the scheduled deployment would and judged: the `year` preset end to end (a
benchmark, not a test).

    .venv/bin/python bench/year.py [--workdir skill-runs/year]                # ≈ 60 min on 2 quiet cores
    .venv/bin/python bench/year.py --markdown docs/performance.md            # also (re)write its section there
    .venv/bin/python bench/year.py --workdir /tmp/y --days 40 --max-steps 20 # a smoke run of minutes
    .venv/bin/python bench/year.py --from-json year.json --markdown docs/performance.md   # re-render a --json run
    .venv/bin/python bench/year.py --from-json year.json --evaluate-curve --json year.json  # re-measure evaluate

Runs the data, prepare and train stages of the ``year`` pipeline preset (C8 → C32, 365 days from January 1st,
3 members; ``downscale.stages``, a finished stage is skipped), then downscales the held-out member's year with
4 ensemble members **month by month** through the incremental path: a copy of the member's stores first holds
its first 10 days, then gains each month in turn (:class:`data_catalog.synthetic.growing.GrowingInput`), and
``generate --append`` samples only the frames it gained — what a daily or monthly schedule does. The year's
store is evaluated (with the synthetic Earth's land fraction, so land and ocean are regions of the
climatology), and so are copies of its first 31, 91 and 182 days (:func:`evaluate_curve`: does evaluate's
peak memory level off as the record grows?); the year is reported (``report.html``).

Each ``generate`` and ``evaluate`` runs in a child process, so its peak resident memory is its own. Printed:
wall time per stage and per growth step, member-frames per second over the first 10 days and over the year
(goal: no slowdown beyond 10 %), peak RSS of ``generate`` for a month of frames into the year's store vs into a
store of one month and of ``evaluate`` for the year vs its first 31 days (goal ≤ 1.2×), evaluation time and output size per member-year, and the extrapolation of the measured cost
per member-frame to 10 members × 10 years at C384 (× (384/32)² fine cells).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from markdown_section import replace_section  # noqa: E402  (bench/, the script's folder)

if TYPE_CHECKING:      # the children import only what they run: a child's peak memory is that of its job
    from downscale.pipeline_config import PipelineConfig

FIRST_DAYS = 10
FRAMES_PER_DAY = 8
TARGET_N, TARGET_MEMBERS, TARGET_YEARS = 384, 10, 10
#: Record lengths (days) of the evaluate memory curve, beside the whole year.
CURVE_DAYS = (31, 91, 182)


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
        from downscale.inference.config import GenerateConfig
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
    from data_catalog.synthetic.growing import GrowingInput
    from downscale import stages
    from downscale.inference.coarse_run import open_run
    out: dict = {"stages": {}, "growth": []}
    for step in (*([stages.synthetic_data] if config.data.synthetic else []), stages.prepared_data,
                 stages.trained_model):
        t0 = time.perf_counter()
        result = step(config)
        out["stages"][result.name] = time.perf_counter() - t0
        if result.skipped:
            out.setdefault("kept", []).append(result.name)
        print(f"{result.name:10s} {'skipped' if result.skipped else 'ran':8s} {out['stages'][result.name]:7.1f} s",
              flush=True)
    gen = config.generate.with_absolute_paths()
    times = open_run(gen).times
    cuts = growth_cuts(times)
    work = Path(config.workdir) / "growing"
    work.mkdir(parents=True, exist_ok=True)
    growing = GrowingInput(gen.catalog, work, gen.member, frames=cuts[0])
    grow = gen.model_copy(update={"catalog": growing.catalog, "end": None, "append": True, "overwrite": True})
    before = 0
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
    out["evaluate_curve"] = evaluate_curve(Path(gen.output), work, config.evaluate.n_boot, config.diagnostics_dir)
    t0 = time.perf_counter()
    from downscale.report.render import render_report
    render_report(config.diagnostics_dir, gen.output, config.report_path, overwrite=True)
    out["stages"]["report"] = time.perf_counter() - t0
    out.update(n_frames=len(times), members=gen.members, n_fine=gen_fine_n(config), store_bytes=_du(Path(gen.output)),
               period=[str(times[0]), str(times[-1])])
    return out


def _slice_store(source: Path, target: Path, frames: int) -> None:
    """The output store ``source``'s first ``frames`` frames as a store of its own (same chunks and attributes;
    window joins beyond its end dropped)."""
    import xarray as xr

    from downscale.evaluation.evaluate import store_window_joins
    ds = xr.open_zarr(source).isel(time=slice(0, frames))
    for v in ds.variables.values():
        v.encoding = {k: v.encoding[k] for k in ("dtype", "units", "calendar", "_FillValue") if k in v.encoding}
    if "window_joins" in ds.attrs:
        ds.attrs["window_joins"] = json.dumps([j for j in store_window_joins(ds, source) if j < frames])
    ds.to_zarr(target, mode="w", zarr_format=3, consolidated=False)


def evaluate_curve(store: Path, work: Path, n_boot: int, diagnostics: Path,
                   days: tuple[int, ...] = CURVE_DAYS) -> list[dict]:
    """Peak memory and time of ``evaluate`` on the first ``days`` of the year's store and on the whole store (its
    diagnostics into ``diagnostics``), each in its own child: does the peak level off as the record grows
    (streaming) or keep growing? The last point is the whole store."""
    import shutil

    import xarray as xr
    n = xr.open_zarr(store).sizes["time"]
    curve = []
    for d in (*(d for d in days if d * FRAMES_PER_DAY < n), None):
        frames = n if d is None else d * FRAMES_PER_DAY
        target = store if d is None else work / f"first-{d}-days.zarr"
        if d is not None:
            _slice_store(store, target, frames)
        out = diagnostics if d is None else work / f"diagnostics-{frames}"
        m = _child("evaluate", {"store": str(target), "out": str(out), "n_boot": n_boot})
        m.update(frames=frames, days=frames / FRAMES_PER_DAY)
        curve.append(m)
        print(f"evaluate   {m['days']:5.0f} days {m['wall_s']:7.1f} s, peak {m['peak_rss_mib']:.0f} MiB", flush=True)
        if d is not None:
            shutil.rmtree(target)
            shutil.rmtree(out)
    return curve


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
    curve = m["evaluate_curve"]
    month, year_eval = curve[0], curve[-1]
    return {
        "rate_first_days": first, "rate_year": year, "rate_ratio": year / first, "generate_s": total_s,
        "generate_peak_first_mib": g[0]["peak_rss_mib"], "generate_peak_max_mib": max(x["peak_rss_mib"] for x in g),
        # a month of frames into a store holding one month (February) vs into the growing year (every later month)
        "generate_peak_month_mib": g[min(2, len(g) - 1)]["peak_rss_mib"],
        "generate_peak_later_max_mib": max(x["peak_rss_mib"] for x in g[min(2, len(g) - 1):]),
        "evaluate_peak_year_mib": year_eval["peak_rss_mib"], "evaluate_peak_month_mib": month["peak_rss_mib"],
        "evaluate_memory_ratio": year_eval["peak_rss_mib"] / month["peak_rss_mib"],
        "evaluate_s_per_member_year": year_eval["wall_s"] / member_years,
        "store_mib_per_member_year": m["store_bytes"] / 2**20 / member_years, "member_years": member_years,
        "c384_core_hours": target_frames * per_frame_s * cells / 3600.0, "cells_factor": cells,
    }


def _verdict(ratio: float, limit: float) -> str:
    return f"**met** (×{ratio:.2f})" if ratio <= limit else f"**missed** (×{ratio:.2f}, goal ×{limit:.2f})"


def markdown(m: dict, s: dict) -> str:
    """The ``## `year` benchmark`` section of docs/performance.md."""
    g, first, curve = m["growth"], m["growth"][0], m["evaluate_curve"]
    rates = [x["member_frames"] / x["wall_s"] for x in g[1:]] or [s["rate_first_days"]]
    slowest = min(range(len(rates)), key=rates.__getitem__)
    st = m["stages"]
    kept = m.get("kept", [])
    train = ("kept from an earlier run (stage records)" if {"synthetic", "prepare", "train"} <= set(kept) else
             ", ".join("kept" if k in kept else f"{st[k]:.0f} s" if k in st else "—"
                       for k in ("synthetic", "prepare", "train")))
    slowdown = 1.0 - s["rate_year"] / s["rate_first_days"]
    peak_first = s["generate_peak_first_mib"]
    points = "; ".join(f"{p['days']:.0f} days: {p['peak_rss_mib']:.0f} MiB, {p['wall_s']:.0f} s" for p in curve)
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
        f"**{'met' if slowdown <= 0.1 else 'missed'}** ({100 * slowdown:.1f} %) |",
        f"| generate peak RSS, the first {FIRST_DAYS} days ({first['frames']} frames) | {peak_first:.0f} MiB | — |",
        f"| generate peak RSS, a month's frames into the year's store: the largest later month vs February (the store "
        f"then held one month) | {s['generate_peak_later_max_mib']:.0f} vs {s['generate_peak_month_mib']:.0f} MiB | "
        f"≤ 1.2×: {_verdict(s['generate_peak_later_max_mib'] / s['generate_peak_month_mib'], 1.2)} |",
        f"| evaluate peak RSS and time by record length (the year's first days, each in its own process) | {points} "
        "| — |",
        f"| evaluate peak RSS, the year ({m['n_frames']} frames × {m['members']} members) vs its first 31 days | "
        f"{s['evaluate_peak_year_mib']:.0f} vs {s['evaluate_peak_month_mib']:.0f} MiB | ≤ 1.2×: "
        f"{_verdict(s['evaluate_memory_ratio'], 1.2)} |",
        f"| evaluation time per member-year | {s['evaluate_s_per_member_year']:.0f} s | — |",
        f"| output store (members, truth, baselines, coarse input) | {m['store_bytes'] / 2**20:.0f} MiB, "
        f"{s['store_mib_per_member_year']:.0f} MiB per member-year | — |",
        f"| 10 members × 10 years at C384, extrapolated from the measured cost per member-frame "
        f"(× {s['cells_factor']:.0f} fine cells) | {s['c384_core_hours']:.0f} h ≈ {c384_days:.0f} days on these 2 "
        "cores | — (GPU estimate: next section) |", ""])


def write_section(path: Path, text: str) -> None:
    replace_section(path, "## `year` benchmark", text)


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
    parser.add_argument("--evaluate-curve", action="store_true",
                        help="with --from-json: (re)measure evaluate's memory curve on the workdir's year store")
    args = parser.parse_args()
    from downscale.logs import configure as configure_logging
    from downscale.pipeline_config import demo_config
    configure_logging()   # progress lines with timestamps, no library noise (as `downscale run`)
    config = demo_config(args.workdir, "year")
    if args.days:
        config = config.model_copy(update={"data": config.data.model_copy(
            update={"synthetic_overrides": {"days": args.days}})})
    if args.max_steps:
        config = with_max_steps(config, args.max_steps)
    if args.from_json:
        m = json.loads(args.from_json.read_text())["measured"]
        if args.evaluate_curve:
            gen = config.generate.with_absolute_paths()
            m["evaluate_curve"] = evaluate_curve(Path(gen.output), Path(config.workdir) / "growing",
                                                 config.evaluate.n_boot, config.diagnostics_dir)
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
