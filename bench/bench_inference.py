"""Inference benchmarks (not a test): sampler cost, the NFE curve, memory vs period, seams, mass.

    python bench/bench_inference.py cost   --bundle B [--nfe 2 4 8] [--reps 5]
    python bench/bench_inference.py nfe    --bundle B [--members 4] [--clips 3]
    python bench/bench_inference.py memory --bundle B [--days 5] [--steps 2]
    python bench/bench_inference.py seams  --bundle B [--days 5] [--time-block 10]   # also the mass check
    python bench/bench_inference.py all    --bundle B [--json results.json]

Everything runs on the demo catalog (``--catalog``, default ``demo-run/data/catalog.yaml``), member
``0003`` (the validation split), on the CPU with ``--threads`` torch threads (default 1, set in every
process, subprocesses included). Times are reported next to references measured in the same run
(ratios), since the machine is shared. Every metric comes from :mod:`downscale.diagnostics`.

``cost``: one denoiser network evaluation on one T-frame window, batch = ``members_per_batch``
(median of ``--reps``); then :meth:`Runtime.members` for one member batch over an interior work item
(``time_block + 2·context`` frames, fused overlapping windows at the default stride T//2) at each
``--nfe`` (DPM-Solver++(2M)). Reports windows per frame (``count_window_evaluations / frames``) and
``measured / (NFE × windows × one eval)`` — the sampler's own overhead (noise generation, fusion
arithmetic, float64 state, μ excluded).

``nfe``: ``--clips`` clips of ``--clip-frames`` frames (default T: one window each) spread evenly
over the validation run, ``--members`` members with the same latents at every NFE (noise keyed by
seed/member/frame), for DPM-Solver++(2M) at 2…70 NFE and EDM Heun at 3…69 NFE, on the σ schedule of
``--schedule`` (``production``: σ 10 → 0.005, ρ = 1000, as :data:`PRODUCTION_SAMPLER`; ``edm``: σ 80 → 0.002,
ρ = 7). Per NFE: the std of the sampled residual (normalized log units, area weighted; members and μ as
shipped, floored at zero rain) over the true residual's (``residual_std_ratio``, 1 = the right spread), fair
area-weighted CRPS, q99.99 of the pooled ensemble vs the truth's, and the distance of the radially
averaged power spectrum to the truth's (mean |ln E_ens(k)/E_truth(k)| over k = 1…n/2). The same with
``correct_block_means`` applied as ``mass_correction: true`` does. Picks the smallest NFE within 5 %
of the reference (the largest NFE of the same sampler) in CRPS and in q99.99.

``memory``: ``downscale.inference.generate`` in a fresh subprocess per period (serial, workers 1),
``--days`` and 4 × ``--days``; each child reports its own peak RSS (``ru_maxrss``), wall time and the
time spent inside :meth:`Runtime.members` / :meth:`Runtime.mean`.

``seams``: three stores of ``--days`` days (time_block ``--time-block``, so item joins occur) made
by ``generate`` in subprocesses: (a) the default (fused windows, stride T//2, cube network), (b)
independent windows (``window_stride = T``), (c) independent tiles (the same network with
``geometry = "patch"`` per tile: replicate padding instead of the halo exchange; conditioning stays
cube-aware), plus (d) = (a) with ``mass_correction: true``. Temporal joins with
``window_join_statistics`` (window starts inside the written frames, and the item boundaries
``window_joins`` of the store), tile seams with ``seam_statistics``, mass with ``mass_consistency``
and the per-coarse-cell error of the area integral; each next to the truth's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CATALOG = REPO / "demo-run/data/catalog.yaml"
MEMBER = "0003"
DPM_NFE = (2, 4, 6, 8, 12, 18, 35, 70)
HEUN_NFE = (3, 5, 7, 11, 17, 35, 69)
TOLERANCE = 0.05
SCHEDULES = {"production": {"sigma_max": 10.0, "sigma_min": 0.005, "rho": 1000.0},
             "edm": {"sigma_max": 80.0, "sigma_min": 0.002, "rho": 7.0}}


# ---- shared ----------------------------------------------------------------------------------------------
def baselines_for(bundle: str | Path) -> list[str]:
    """bilinear + deterministic, and qm when the bundle holds a quantile-mapping table."""
    from downscale.bundle import read_bundle_metadata

    meta = read_bundle_metadata(bundle)
    return ["bilinear", "deterministic"] + (["qm"] if meta.baselines.quantile_mapping else [])


def base_config(args: argparse.Namespace, output: Path, **fields: Any):
    from data_catalog.errors import validated
    from downscale.inference.config import GenerateConfig

    return validated(GenerateConfig, {"bundle": str(args.bundle), "catalog": str(args.catalog), "member": args.member,
                                     "output": str(output), "device": "cpu", "baselines": baselines_for(args.bundle),
                                     **fields}, "bench_inference")


def load(args: argparse.Namespace, **fields: Any):
    """(RunInput, Runtime) of the validation member with ``fields`` of GenerateConfig."""
    from downscale.inference.coarse_run import open_run
    from downscale.inference.runtime import load_runtime

    config = base_config(args, Path(tempfile.gettempdir()) / "unused.zarr", **fields)
    run = open_run(config)
    rt = load_runtime(config.bundle, "cpu", config.sampler, config.stride(run.meta.clip_frames), config.members_per_batch,
                      run.fine_grid["lat"].values, run.fine_grid["lon"].values, run.topography)
    return run, rt


def block_inputs(run, rt, lo: int, hi: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Raw coarse predictors, conditioning and μ of period frames lo … hi − 1 (as an ItemRunner builds them)."""
    raw = run.read_block(run.meta.predictors, lo, hi)
    cond = rt.conditioning(rt.normalize_coarse(raw))
    return raw, cond, rt.mean(cond)


def seeds_for(run, seed: int, members: int, lo: int, hi: int) -> np.ndarray:
    from downscale.inference.runtime import frame_seed

    return np.array([[frame_seed(seed, k, run.first + f) for f in range(lo, hi)] for k in range(members)],
                    dtype=np.int64)


def median_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fine_area(run):
    return run.fine_grid["area"].rename({"y": "grid_yt", "x": "grid_xt"}).astype(np.float64).load()


def as_field(values: np.ndarray, dims: tuple[str, ...], units: str = "kg m-2 s-1"):
    import xarray as xr

    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims, attrs={"units": units})


class TimedNet:
    """A proxy of the network that times every denoiser call (wall and process CPU time)."""

    def __init__(self, net) -> None:
        self.net, self.calls, self.wall, self.cpu = net, 0, 0.0, 0.0

    def forward_mean(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net.forward_mean(cond)

    def denoiser(self, *a: Any) -> torch.Tensor:
        w, c = time.perf_counter(), time.process_time()
        out = self.net.denoiser(*a)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c
        self.calls += 1
        return out


# ---- cost ------------------------------------------------------------------------------------------------
def cost(args: argparse.Namespace) -> dict[str, Any]:
    from downscale.models.samplers import SamplerConfig
    from downscale.inference.windows import count_window_evaluations

    run, rt = load(args, members_per_batch=args.members_per_batch, time_block=args.time_block)
    T, B = rt.frames, rt.members_per_batch
    length = args.time_block + 2 * T                          # an interior item: time_block + context each side
    lo = min(len(run.times) // 3, len(run.times) - length)
    _, cond, mu = block_inputs(run, rt, lo, lo + length)
    cond_d = torch.cat([cond, mu], dim=2).expand(B, *cond.shape[1:2], -1, *cond.shape[3:])[:, :T]
    x = torch.randn(B, T, *mu.shape[2:])
    sigma = torch.full((B,), 1.0)
    with torch.no_grad():
        t_eval = median_time(lambda: rt.net.denoiser(x, sigma, cond_d), args.reps)
        t_mean = median_time(lambda: rt.net.forward_mean(cond[:, :T]), args.reps)
        t_mean_block = median_time(lambda: rt.mean(cond), max(args.reps // 2, 1), warmup=0)
    windows = count_window_evaluations(length, T, rt.window_stride)
    seeds = seeds_for(run, 0, B, lo, lo + length)
    rows = []
    for nfe in args.nfe:
        timed = TimedNet(rt.net)
        rtn = dataclasses.replace(rt, net=timed, sampler=SamplerConfig.for_nfe("dpmpp_2m", nfe))
        w0, c0 = time.perf_counter(), time.process_time()
        rtn.members(cond, mu, seeds)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        with torch.no_grad():   # one evaluation again, right after: the reference follows the machine's load
            t_eval = statistics.median([t_eval, median_time(lambda: rt.net.denoiser(x, sigma, cond_d), 2, warmup=0)])
        ideal = nfe * windows * t_eval
        rows.append({"sampler": "dpmpp_2m", "nfe": nfe, "network_calls": timed.calls, "sampler_wall_s": wall,
                     "sampler_cpu_s": cpu, "network_wall_s_in_run": timed.wall, "network_cpu_s_in_run": timed.cpu,
                     "ideal_s": ideal, "ratio_to_nfe_x_windows_x_eval": wall / ideal,
                     "ratio_to_network_time_in_run_wall": wall / timed.wall,
                     "ratio_to_network_time_in_run_cpu": cpu / timed.cpu,
                     "s_per_sampled_frame_per_batch": wall / length,
                     "s_per_written_frame_per_member": wall / args.time_block / B})
        print(json.dumps(rows[-1]), flush=True)
    return {"what": "cost", "threads": torch.get_num_threads(), "members_per_batch": B, "window_frames": T,
            "window_stride": rt.window_stride, "item_frames_sampled": length, "item_frames_written": args.time_block,
            "windows_per_item": windows, "windows_per_frame": windows / length,
            "window_frames_per_frame": windows * T / length, "context_factor": length / args.time_block,
            "one_eval_s": t_eval, "one_mean_eval_s": t_mean, "mean_block_s": t_mean_block,
            "mean_block_ideal_s": windows * t_mean, "rows": rows}


# ---- NFE curve -------------------------------------------------------------------------------------------
def _metrics(ens: np.ndarray, truth: np.ndarray, area) -> dict[str, float]:
    from downscale.diagnostics.distribution import histogram_quantiles
    from downscale.diagnostics.histogram import histogram
    from downscale.diagnostics.skill import crps_ensemble
    from downscale.diagnostics.structure import power_spectrum
    from downscale.diagnostics.weights import weighted_mean

    dims = ("time", "tile", "grid_yt", "grid_xt")
    e, y = as_field(ens, ("member", *dims)), as_field(truth, dims)
    crps = float(weighted_mean(crps_ensemble(e, y, fair=True), area))
    qe = float(histogram_quantiles(histogram(e, area), [0.9999]).squeeze())
    qt = float(histogram_quantiles(histogram(y, area), [0.9999]).squeeze())
    se, st = power_spectrum(e).values[1:], power_spectrum(y).values[1:]
    log_ratio = np.log(se / st)
    high = log_ratio[len(log_ratio) // 2:]
    return {"crps": crps, "q9999_ens": qe, "q9999_truth": qt, "q9999_abs_error": abs(qe - qt), "q9999_ratio": qe / qt,
            "spectrum_mean_abs_log_ratio": float(np.mean(np.abs(log_ratio))),
            "spectrum_high_k_mean_log_ratio": float(np.mean(high))}


def _choose(rows: list[dict[str, Any]], kind: str, key: str = "") -> dict[str, Any]:
    mine = sorted((r for r in rows if r["sampler"] == kind), key=lambda r: r["nfe"])
    ref = mine[-1]
    ok = [r for r in mine if abs(r[f"crps{key}"] / ref[f"crps{key}"] - 1) <= TOLERANCE
          and abs(r[f"q9999_ens{key}"] / ref[f"q9999_ens{key}"] - 1) <= TOLERANCE]
    # the smallest NFE from which on every larger NFE also passes (the curve may cross the band)
    passing = {r["nfe"] for r in ok}
    chosen = next((r["nfe"] for i, r in enumerate(mine) if all(s["nfe"] in passing for s in mine[i:])), None)
    return {"sampler": kind, "reference_nfe": ref["nfe"], "smallest_passing_nfe": min(passing) if passing else None,
            "smallest_nfe_passing_from_then_on": chosen, "metric_suffix": key or "(raw)"}


def nfe_curve(args: argparse.Namespace) -> dict[str, Any]:
    from data_catalog.upsample import correct_block_means
    from downscale.inference.store import COARSE as COARSE_PRECIPITATION
    from downscale.inference.config import GenerateConfig
    from downscale.models.samplers import SamplerConfig

    MAX_RATIO = GenerateConfig.model_fields["mass_correction_max_ratio"].default
    run, rt = load(args, members_per_batch=args.members_per_batch)
    T = rt.frames
    L = args.clip_frames or T
    n = len(run.times)
    starts = [int(round(s)) for s in np.linspace(T, n - L - T, args.clips)]
    blocks = []
    for lo in starts:
        raw, cond, mu = block_inputs(run, rt, lo, lo + L)
        truth = np.asarray(run.data.fine[run.catalog.precipitation].isel(
            time=slice(run.first + lo, run.first + lo + L)).transpose("time", "tile", ...).values, dtype=np.float32)
        coarse_p = torch.from_numpy(raw[:, run.meta.predictors.index(COARSE_PRECIPITATION)])
        blocks.append((lo, cond, mu, seeds_for(run, args.seed, args.members, lo, lo + L), truth, coarse_p))
    area = fine_area(run)
    area_t = torch.as_tensor(area.values, dtype=torch.float64)
    truth_all = np.concatenate([b[4] for b in blocks])
    configs = [("dpmpp_2m", k) for k in args.dpm_nfe] + [("heun", k) for k in args.heun_nfe]
    schedule = SCHEDULES[args.schedule]
    w = area_t / area_t.sum()
    # μ as generate ships it (floored at zero rain), like the members: the definition of val/residual_std_ratio
    mu_all = rt.meta.shipped_target(torch.cat([b[2][0, :, 0] for b in blocks])).double()   # (frames, 6, n, n)
    norm = lambda x: torch.as_tensor(rt.stats.normalize(rt.meta.target, np.asarray(x, np.float64)))  # noqa: E731
    true_res_std = float(((norm(truth_all) - mu_all) ** 2 * w).sum(dim=(-3, -2, -1)).mean().sqrt())
    rows = []
    for kind, nfe in configs:
        rtn = dataclasses.replace(rt, sampler=SamplerConfig.for_nfe(kind, nfe, **schedule))
        t0 = time.perf_counter()
        ens = torch.cat([rtn.members(cond, mu, seeds) for _, cond, mu, seeds, _, _ in blocks], dim=1)
        elapsed = time.perf_counter() - t0
        corrected = torch.cat([correct_block_means(part.double(), cp, run.meta.factor, area_t, max_ratio=MAX_RATIO)
                               .clamp_min(0).float() for part, cp in
                               zip(torch.split(ens, L, dim=1), [b[5] for b in blocks], strict=True)], dim=1)
        res_std = float(((norm(ens.numpy()) - mu_all) ** 2 * w).sum(dim=(-3, -2, -1)).mean().sqrt())
        row = {"sampler": kind, "nfe": nfe, "num_steps": rtn.sampler.num_steps, "sample_s": elapsed,
               "schedule": args.schedule, "residual_std_ratio": res_std / true_res_std,
               **_metrics(ens.numpy(), truth_all, area),
               **{f"{k}_mc": v for k, v in _metrics(corrected.numpy(), truth_all, area).items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    choice = [_choose(rows, "dpmpp_2m"), _choose(rows, "heun"), _choose(rows, "dpmpp_2m", "_mc"),
              _choose(rows, "heun", "_mc")]
    for c in choice:
        print(json.dumps(c), flush=True)
    return {"what": "nfe", "threads": torch.get_num_threads(), "members": args.members, "clip_frames": L,
            "clip_starts": starts, "clip_times": [str(run.times[s]) for s in starts], "frames": L * len(starts),
            "members_per_batch": rt.members_per_batch, "window_stride": rt.window_stride, "seed": args.seed,
            "rows": rows, "choice": choice}


# ---- generate in a subprocess ----------------------------------------------------------------------------
class TileWise:
    """The network with ``geometry = "patch"`` run on each tile separately (STVD): ``(B, T, C, 6, H, W)``
    → ``(B·6, T, C, H, W)`` and back, replicate padding at tile edges instead of the halo exchange."""

    def __init__(self, net) -> None:
        self.net = net
        net.geometry = "patch"

    @staticmethod
    def _split(x: torch.Tensor) -> torch.Tensor:
        b, t, c, six, h, w = x.shape
        return x.permute(0, 3, 1, 2, 4, 5).reshape(b * six, t, c, h, w)

    @staticmethod
    def _merge(y: torch.Tensor, b: int) -> torch.Tensor:
        n, t, c, h, w = y.shape
        return y.reshape(b, n // b, t, c, h, w).permute(0, 2, 3, 1, 4, 5)

    def forward_mean(self, cond: torch.Tensor) -> torch.Tensor:
        return self._merge(self.net.forward_mean(self._split(cond)), cond.shape[0])

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.net.denoiser(self._split(x), sigma.repeat_interleave(6), self._split(cond))
        return self._merge(out, x.shape[0])


def child_generate(doc: dict[str, Any], tilewise: bool) -> dict[str, Any]:
    """Run ``generate`` on ``doc`` in this process, timing Runtime.members / Runtime.mean; peak RSS."""
    import downscale.inference.generate as gen
    import downscale.inference.runner as runner_module
    from data_catalog.errors import validated
    from downscale.inference.runner import ItemRunner
    from downscale.inference.config import GenerateConfig
    from downscale.inference.runtime import Runtime

    spent = {"members": 0.0, "mean": 0.0, "load": 0.0, "items": 0.0}

    def timed(name):
        original = getattr(Runtime, name)

        def wrapper(self, *a, **k):
            t0 = time.perf_counter()
            try:
                return original(self, *a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    Runtime.members, Runtime.mean = timed("members"), timed("mean")

    def timed_fn(fn, name):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    ItemRunner.__init__ = timed_fn(ItemRunner.__init__, "load")   # open the run + load the bundle (once)
    item_rss: list[tuple[float, float]] = []
    run_item = timed_fn(ItemRunner.__call__, "items")               # every work item

    def tracked(self, item):
        out = run_item(self, item)
        current = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
        item_rss.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current))
        return out
    ItemRunner.__call__ = tracked
    if tilewise:
        load_runtime = runner_module.load_runtime

        def tile_runtime(*a, **k):
            rt = load_runtime(*a, **k)
            rt.net = TileWise(rt.net)
            return rt
        runner_module.load_runtime = tile_runtime
    config = validated(GenerateConfig, doc, "bench_inference")
    t0 = time.perf_counter()
    gen.generate(config)
    wall = time.perf_counter() - t0
    import xarray as xr

    frames = xr.open_zarr(config.output).sizes["time"]
    items = spent["items"]
    return {"wall_s": wall, "sampler_s": spent["members"], "mean_s": spent["mean"], "load_s": spent["load"],
            "items_s": items, "item_rest_s": items - spent["members"] - spent["mean"],
            "setup_finalize_s": wall - spent["items"] - spent["load"],
            "other_s": wall - spent["members"] - spent["mean"], "frames": frames, "members": config.members,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_mib_after_each_item": [round(r[0], 1) for r in item_rss],
            "rss_mib_after_each_item": [round(r[1], 1) for r in item_rss],
            "threads": torch.get_num_threads()}


def run_child(args: argparse.Namespace, doc: dict[str, Any], tilewise: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_generate", "--threads", str(args.threads), "--doc", json.dumps(doc)]
    cmd += ["--tilewise"] if tilewise else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"generate subprocess failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["children_maxrss_mib_so_far"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return out


def period(args: argparse.Namespace, days: float) -> tuple[str, str]:
    """``days`` days starting ``--start-day`` days into the validation run (ISO, inclusive end)."""
    from downscale.inference.coarse_run import open_run

    run = open_run(base_config(args, Path("unused.zarr")))
    step = run.meta.time_step_seconds
    first = int(args.start_day * 86400 / step)
    last = first + int(days * 86400 / step) - 1
    iso = lambda t: f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"  # noqa: E731
    return iso(run.times[first]), iso(run.times[last])


def gen_doc(args: argparse.Namespace, out: Path, days: float, **fields: Any) -> dict[str, Any]:
    start, end = period(args, days)
    sampler = fields.pop("sampler", {"kind": "dpmpp_2m", "num_steps": args.steps})
    return {**base_config(args, out).model_dump(mode="json"), "start": start, "end": end, "members": args.members,
            "members_per_batch": args.members_per_batch, "sampler": sampler, "time_block": args.time_block,
            "overwrite": True, **fields}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for days in (args.days, 4 * args.days):
            out = Path(tmp) / f"mem_{days:g}d.zarr"
            row = {"days": days, **run_child(args, gen_doc(args, out, days))}
            row["store_mib"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(out)
    return {"what": "memory", "threads": args.threads, "members": args.members,
            "members_per_batch": args.members_per_batch, "time_block": args.time_block,
            "sampler": {"kind": "dpmpp_2m", "num_steps": args.steps}, "rows": rows,
            "rss_ratio_4P_over_P": rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]}


# ---- seams and mass --------------------------------------------------------------------------------------
def window_start_frames(n: int, time_block: int, frames: int, stride: int, context: int) -> list[int]:
    """Output frames (0-based, in 1 … n − 1) where a T-frame window starts, as an ItemRunner lays them out."""
    from downscale.inference.windows import window_starts

    joins = set()
    for start in range(0, n, time_block):
        stop = min(start + time_block, n)
        lo, hi = max(start - context, 0), min(stop + context, n)
        if hi - lo < frames:
            lo = max(hi - frames, 0)
        joins |= {lo + s for s in window_starts(hi - lo, frames, stride) if start < lo + s < stop}
    return sorted(joins)


def store_statistics(path: Path) -> dict[str, Any]:
    import xarray as xr

    from data_catalog.coarsen import block_sum, coarse_grain
    from data_catalog.schema import X, Y
    from downscale.diagnostics.consistency import mass_consistency, seam_statistics, window_join_statistics

    ds = xr.open_zarr(path)
    ens, truth, area = ds.PRATEsfc.load(), ds.PRATEsfc_truth.load(), ds.area.astype(np.float64).load()
    n, T = ds.sizes["time"], int(ds.attrs["window_frames"])
    block_joins = json.loads(ds.attrs["window_joins"]) if isinstance(ds.attrs["window_joins"], str) \
        else list(ds.attrs["window_joins"])
    win = window_start_frames(n, int(ds.attrs["time_block"]), T, int(ds.attrs["window_stride"]),
                              int(ds.attrs["context_frames"]))
    out: dict[str, Any] = {"frames": n, "window_stride": int(ds.attrs["window_stride"]), "window_joins": win,
                           "item_joins": block_joins}
    for name, joins in (("window", win), ("item", block_joins)):
        if not joins:
            continue
        e = window_join_statistics(ens, area, joins)
        t = window_join_statistics(truth, area, joins)
        out[f"{name}_join_ratio"] = float(e["join_ratio"])
        out[f"{name}_join_ratio_truth"] = float(t["join_ratio"])
        out[f"{name}_join_mean_abs_step"] = float(e["join_mean_abs_step"])
        out[f"{name}_inside_mean_abs_step"] = float(e["inside_mean_abs_step"])
    s, st = seam_statistics(ens), seam_statistics(truth)
    out.update(seam_ratio=float(s["seam_ratio"]), seam_ratio_truth=float(st["seam_ratio"]),
               seam_mean_abs_step=float(s["seam_mean_abs_step"]),
               interior_mean_abs_step=float(s["interior_mean_abs_step"]))
    factor = int(ds.attrs["factor"])
    mc = mass_consistency(ens, ds.PRATEsfc_coarse, area, factor)
    out.update(mass_relative_error=float(mc["relative_error"]), mass_bias=float(mc["mass_bias"]))
    # per coarse cell: |Δ| of the area integral over the mean area integral of a coarse cell
    fine = ens.drop_vars([c for c in ens.coords]).rename({"grid_yt": Y, "grid_xt": X}).astype(np.float64)
    a = area.drop_vars([c for c in area.coords]).rename({"grid_yt": Y, "grid_xt": X})
    cg = coarse_grain(fine, a, factor)
    coarse = ds.PRATEsfc_coarse.load().drop_vars([c for c in ds.PRATEsfc_coarse.coords]).rename(
        {"grid_yt_coarse": Y, "grid_xt_coarse": X}).astype(np.float64)
    ac = block_sum(a, factor)
    delta = (abs(cg - coarse) * ac).values.ravel()
    scale = float((coarse * ac).mean())
    out.update(cell_rel_error_mean=float(np.mean(delta) / scale), cell_rel_error_p99=float(np.percentile(delta, 99) / scale))
    out.update(_metrics(ens.values, truth.values, area))
    return out


def seams(args: argparse.Namespace) -> dict[str, Any]:
    from downscale.bundle import read_bundle_metadata

    T = read_bundle_metadata(args.bundle).clip_frames
    variants = {"a_default": ({}, False), "b_independent_windows": ({"window_stride": T}, False),
                "c_independent_tiles": ({}, True), "d_default_mass_corrected": ({"mass_correction": True}, False)}
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for name, (fields, tilewise) in variants.items():
            if args.only and name[0] not in args.only:
                continue
            out = Path(tmp) / f"{name}.zarr"
            run = run_child(args, gen_doc(args, out, args.days, **fields), tilewise=tilewise)
            row = {"variant": name, **{k: run[k] for k in ("wall_s", "sampler_s", "mean_s", "load_s", "items_s",
                                                          "item_rest_s", "setup_finalize_s", "frames", "peak_rss_mib")}, **store_statistics(out)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.keep_store and name == "a_default":
                shutil.copytree(out, args.keep_store, dirs_exist_ok=True)
    return {"what": "seams", "threads": args.threads, "members": args.members, "days": args.days,
            "time_block": args.time_block, "sampler": {"kind": "dpmpp_2m", "num_steps": args.steps}, "rows": rows}


# ---- main ------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["cost", "nfe", "memory", "seams", "all", "_generate"])
    p.add_argument("--bundle", type=Path, default=REPO / "demo-run/train/model.bundle.safetensors")
    p.add_argument("--catalog", type=Path, default=CATALOG)
    p.add_argument("--member", default=MEMBER)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--members-per-batch", type=int, default=None, help="default: 2 (cost/memory/seams), 4 (nfe)")
    p.add_argument("--time-block", type=int, default=None, help="default: 40 (cost, memory), 10 (seams)")
    p.add_argument("--reps", type=int, default=5, help="cost: repetitions of one network evaluation")
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 8], help="cost: DPM-Solver++(2M) NFEs")
    p.add_argument("--dpm-nfe", type=int, nargs="+", default=list(DPM_NFE))
    p.add_argument("--heun-nfe", type=int, nargs="+", default=list(HEUN_NFE))
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="production", help="nfe: σ schedule")
    p.add_argument("--members", type=int, default=None, help="default: 4 (nfe), 2 (memory, seams)")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--clip-frames", type=int, default=None, help="nfe: frames per clip (default T)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=float, default=5.0)
    p.add_argument("--start-day", type=float, default=10.0, help="memory/seams: first day of the period")
    p.add_argument("--steps", type=int, default=None, help="dpmpp_2m steps: default 2 (memory), 8 (seams)")
    p.add_argument("--only", default="", help="seams: variant letters to run, e.g. 'ab'")
    p.add_argument("--keep-store", type=Path, default=None, help="seams: copy store (a) here")
    p.add_argument("--tmp", default=None, help="directory for temporary stores")
    p.add_argument("--json", type=Path, default=None, help="write the results here (JSON)")
    p.add_argument("--doc", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tilewise", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "_generate":
        print(json.dumps(child_generate(json.loads(args.doc), args.tilewise)))
        return
    results = []
    t0 = time.perf_counter()
    run = {"cost": [cost], "nfe": [nfe_curve], "memory": [memory], "seams": [seams],
           "all": [cost, nfe_curve, memory, seams]}[args.what]
    for fn in run:
        a = argparse.Namespace(**vars(args))
        a.members_per_batch = args.members_per_batch or (4 if fn is nfe_curve else 2)
        a.members = args.members or (4 if fn is nfe_curve else 2)
        a.time_block = args.time_block or (10 if fn is seams else 40)
        a.steps = args.steps or (2 if fn is memory else 8)
        t = time.perf_counter()
        res = fn(a)
        res["bench_wall_s"] = time.perf_counter() - t
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "rows"}), flush=True)
    summary = {"bundle": str(args.bundle), "threads": args.threads, "total_wall_s": time.perf_counter() - t0,
               "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "results": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print(json.dumps({"total_wall_s": summary["total_wall_s"], "uptime": summary["uptime"]}))


if __name__ == "__main__":
    main()
