"""Skill of the diffusion ensemble on the held-out member, row by row against the targets (a benchmark, not a test).

    python bench/skill.py skill [--workdir skill-runs/skill]     # C8 → C64, training ≤ 45 min on 2 quiet cores
    python bench/skill.py demo  [--workdir demo-run]             # the `make demo` config (reuses a finished run)
    python bench/skill.py skill --markdown docs/skill.md         # also (re)write that config's section there
    python bench/skill.py skill --pipeline experiment.yaml      # an edited `downscale config --preset skill`

Runs the pipeline's stages in this process (``downscale.stages``, no Prefect; a complete stage is skipped, so a
finished workdir is scored without recomputing), then scores what ships: the store written by ``generate`` with
the production sampler and mass correction, the diagnostics of ``downscale evaluate`` (``metrics.json``), and
three figures that need more than the store:

* **the inter-member noise floor** — the other synthetic members' truth on the same dates scored against the
  held-out member's truth (PE at q99.99 / q99.999, EMD): what two equally true climates differ by, so a PE or
  EMD below it cannot be told from zero;
* **the sampled residual std** — in the model's normalized log units, the area-weighted std of the raw
  members minus the raw μ, over that of the truth minus μ (1 = the diffusion's spread is right);
* **the learning curve** — the validation rows of ``train/logs/metrics.csv`` (production sampler, the report's
  tail statistic, before any mass correction).

"μ" below is the strongest deterministic baseline a user would build from the model's mean, per metric: the
better of μ with the members' mass correction (``deterministic``) and μ as the network gives it
(``deterministic_raw``; the back-transformed conditional median, which minimizes the MAE but is too dry).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_catalog.catalog import load_catalog  # noqa: E402
from data_catalog.halo import halo_pad, turned_edge  # noqa: E402
from data_catalog.member_reader import open_member  # noqa: E402
from data_catalog.schema import SECONDS_PER_DAY as MM_DAY  # noqa: E402  (kg m-2 s-1 → mm/day)
from downscale import stages  # noqa: E402
from downscale.logs import configure as configure_logging  # noqa: E402
from downscale.bundle import BundleMetadata, read_bundle_metadata  # noqa: E402
from downscale.pipeline_config import PipelineConfig, demo_config  # noqa: E402
from downscale.diagnostics.distribution import percentile_error, wasserstein_distance  # noqa: E402
from downscale.diagnostics.histogram import histogram  # noqa: E402
from downscale.diagnostics.structure import band_power_ratio, fine_band_sphere, fine_band_tile  # noqa: E402
from downscale.evaluation.results import read_diagnostics  # noqa: E402
from downscale.evaluation.score import PE_QUANTILE  # noqa: E402
from downscale.evaluation.targets import TARGETS  # noqa: E402
from downscale.inference.store import open_output  # noqa: E402
from downscale.inference.store_schema import (COARSE, FINE_DIMS, PRECIPITATION, TRUTH,  # noqa: E402
                                              baseline_variable, ensemble_variant_variable)
from downscale.report.tables import fmt  # noqa: E402
from markdown_section import replace_section  # noqa: E402  (bench/, the script's folder)

MU = "deterministic"                               # the model's mean, mass-corrected as the members are
MU_RAW = f"{MU}_raw"                               # … and as the network gives it
MU_VARIANTS = (MU, MU_RAW)
ABSOLUTE = (("crps_fair", "fair CRPS, K−1 estimator (mm/day)", MM_DAY),
            ("crps_standard", "standard CRPS, this K-member ensemble (mm/day)", MM_DAY),
            ("mae", "MAE of the (ensemble) mean (mm/day)", MM_DAY),
            ("q999", "q99.9 (mm/day)", MM_DAY), ("q9999", "q99.99 (mm/day)", MM_DAY),
            ("pe_q9999", "PE at q99.99 (mm/day)", MM_DAY), ("pe", "PE at q99.999 (mm/day)", MM_DAY),
            ("emd", "EMD (mm/day)", MM_DAY), ("sae", "SAE", 1.0), ("spread_skill", "spread–skill", 1.0),
            ("brier_q99", "Brier score, > truth's q99", 1.0), ("brier_q999", "Brier score, > truth's q99.9", 1.0),
            ("fine_power_log_ratio", "fine-scale power k ≥ n/4, ln ratio to truth (per tile)", 1.0),
            ("fine_power_log_ratio_sphere", "fine-scale power, ln ratio to truth (sphere)", 1.0),
            ("seam_ratio_vs_truth", "seam ratio ÷ truth's", 1.0),
            ("coarse_imprint_vs_truth", "coarse-cell imprint ÷ truth's", 1.0),
            ("relative_bias", "area-mean bias (%)", 100.0))


def config_for(name: str, workdir: Path) -> PipelineConfig:
    """The embedded ``demo`` or ``skill`` pipeline preset (:func:`downscale.pipeline_config.demo_config`)."""
    return demo_config(workdir, name)


def run(config: PipelineConfig) -> list[tuple[str, bool, float]]:
    out = []
    for step in stages.sequence(config):
        t0 = time.perf_counter()
        result = step(config)
        out.append((result.name, result.skipped, time.perf_counter() - t0))
        print(f"{result.name:10s} {'skipped' if result.skipped else 'ran':8s} {out[-1][2]:7.1f} s  {result.path}",
              flush=True)
    return out


def _value(scalars: xr.Dataset, var: str, source: str) -> float:
    """Global value of ``var`` for ``source`` (variables without a source dim, e.g. the truth's intervals, as is)."""
    if var not in scalars or source not in scalars.source.values:
        return float("nan")
    da = scalars[var]
    da = da.sel(source=source) if "source" in da.dims else da
    return float(da.sel(region="global") if "region" in da.dims else da)


def noise_floor(config: PipelineConfig, truth_hist: xr.DataArray) -> dict[str, dict[str, float]]:
    """PE (q99.99, q99.999) and EMD, kg m-2 s-1, of every other member's truth against the held-out truth on the
    same dates (area-weighted, global, the report's bins); ``truth_hist`` is the held-out truth's global histogram
    from the diagnostics (``curves.histogram``), so only the other members are read."""
    ds = open_output(config.generate.output)
    area = ds.area.reset_coords(drop=True).rename(grid_yt="y", grid_xt="x").load()
    catalog = load_catalog(config.catalog_path)
    out = {}
    for member in catalog.members:
        if member == config.generate.member:
            continue
        fine = open_member(catalog, member, check=False).fine
        if fine is None:
            continue
        other = fine[catalog.precipitation].sel(time=ds.time.values).transpose("time", "tile", "y", "x")
        h = histogram(other.reset_coords(drop=True), area).compute()
        out[member] = {"pe_q9999": float(percentile_error(h, truth_hist, 0.9999)),
                       "pe": float(percentile_error(h, truth_hist, PE_QUANTILE)),
                       "emd": float(wasserstein_distance(h, truth_hist))}
    return out


def _normalized(meta: BundleMetadata, values: np.ndarray) -> np.ndarray:
    """Precipitation ``values`` (kg m-2 s-1) in the bundle's normalized units, float64."""
    return meta.normalization.normalize(meta.target, np.asarray(values, np.float64))


#: The ensembles a store may hold, and their variables.
ENSEMBLES = {"ensemble": PRECIPITATION, **{f"ensemble_{v}": ensemble_variant_variable(v) for v in ("raw", "qm")}}


def _ensembles(ds: xr.Dataset) -> dict[str, str]:
    """``{source: variable}`` of the :data:`ENSEMBLES` present in ``ds``."""
    return {src: name for src, name in ENSEMBLES.items() if name in ds}


@lru_cache(maxsize=len(ENSEMBLES) + 1)
def _log_frames(output: str, bundle: str, name: str) -> np.ndarray:
    """Variable ``name`` of the store ``output`` in the normalized log units of ``bundle``, as read-only float32
    frames ``(frames, 6, n, n)`` (members folded in). Cached: the truth and the ensembles are read once per scoring
    for all the tables that need them."""
    z = _normalized(read_bundle_metadata(bundle), open_output(output)[name].values).astype(np.float32)
    z = z.reshape(-1, *z.shape[-3:])
    z.setflags(write=False)
    return z


def residual_std_ratio(config: PipelineConfig) -> float:
    """Area-weighted std of (raw member − raw μ) over that of (truth − raw μ), in the bundle's normalized units."""
    ds = open_output(config.generate.output)
    meta = read_bundle_metadata(config.generate.bundle)
    w = ds.area / ds.area.sum()
    norm = lambda x: xr.apply_ufunc(lambda v: _normalized(meta, v), x, dask="allowed")  # noqa: E731
    mu = norm(ds[baseline_variable(MU_RAW)])
    raw = ensemble_variant_variable("raw")
    members = ds[raw if raw in ds else PRECIPITATION]
    sampled = ((norm(members) - mu) ** 2 * w).sum(FINE_DIMS).mean()
    true = ((norm(ds[TRUTH]) - mu) ** 2 * w).sum(FINE_DIMS).mean()
    return float(np.sqrt(sampled / true))


#: Coarse-cell intensity bins (mm/day) of :func:`subgrid_variability`.
INTENSITY_BINS = (0.0, 1.0, 5.0, 20.0, 50.0, np.inf)


def subgrid_variability(config: PipelineConfig) -> list[dict[str, float | str]]:
    """Where the fine-scale excess sits: the variance of each source inside every coarse cell (its f × f fine
    cells about their mean: the scales the downscaling adds), averaged over the coarse cells in each bin of
    the coarse input's rain rate (:data:`INTENSITY_BINS`), for the truth and as a ratio to it for each ensemble
    (members averaged) — in physical units (mm/day)² and in the model's normalized log units. Also each bin's
    share of the truth's physical sub-grid variance. Unweighted over cells (the cells in one coarse cell have
    nearly equal areas)."""
    ds = open_output(config.generate.output)
    meta = read_bundle_metadata(config.generate.bundle)
    f = meta.factor
    coarse = ds[COARSE].values * MM_DAY                                           # (time, tile, nc, nc)
    which = np.digitize(coarse, INTENSITY_BINS[1:-1])

    def block_var(x: np.ndarray) -> np.ndarray:                                   # (..., 6, n, n) → (..., 6, nc, nc)
        nc = x.shape[-1] // f
        b = x.reshape(*x.shape[:-2], nc, f, nc, f)
        return b.var(axis=(-3, -1))

    def per_bin(x: np.ndarray) -> np.ndarray:
        v = block_var(x.astype(np.float64))
        v = v.mean(0) if v.ndim == coarse.ndim + 1 else v                        # members averaged
        return np.array([v[which == i].mean() if np.any(which == i) else np.nan for i in range(len(INTENSITY_BINS) - 1)])

    def both(name: str) -> tuple[np.ndarray, np.ndarray]:
        x = ds[name].values
        return per_bin(x * MM_DAY), per_bin(_normalized(meta, x))

    truth_p, truth_z = both(TRUTH)
    share = truth_p * np.bincount(which.ravel(), minlength=len(truth_p)) / np.nansum(
        truth_p * np.bincount(which.ravel(), minlength=len(truth_p)))
    rows = []
    for i, (lo, hi) in enumerate(zip(INTENSITY_BINS[:-1], INTENSITY_BINS[1:], strict=True)):
        rows.append({"bin": f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"≥ {lo:g}",
                     "cells": float(np.sum(which == i)), "truth_var": truth_p[i], "truth_share": share[i]})
    for src, name in _ensembles(ds).items():
        p, z = both(name)
        for i, row in enumerate(rows):
            row[f"{src}_phys"], row[f"{src}_log"] = p[i] / truth_p[i], z[i] / truth_z[i]
    return rows


def residual_by_scale(config: PipelineConfig) -> list[dict[str, float | str]]:
    """Where the sampled residual's spread is short, for the raw members (``ensemble_raw``, members pooled) and the
    truth, both minus the raw μ, in normalized log units, area-weighted: the residual's mean square (what the
    target row's std ratio is the root of), split into the mean over each coarse block of f × f cells (the coarse
    cell's scale and above) and the rest, within the blocks; and within the blocks the field's own variance and
    the covariance of the residual r with μ's within-block pattern (``var(z) = var(μ) + var(r) + 2 cov(r, μ)``:
    members whose field varies as much as the truth's but whose r covaries with μ have the right sub-grid
    variability and too little spread about μ). Last column: the ratio of the root mean squares (— for the
    covariance)."""
    ds = open_output(config.generate.output)
    f = read_bundle_metadata(config.generate.bundle).factor
    raw = ensemble_variant_variable("raw")
    if raw not in ds:
        return []
    frames = lambda name: _log_frames(str(config.generate.output), str(config.generate.bundle), name)  # noqa: E731
    mu = frames(baseline_variable(MU_RAW)).astype(np.float64)                      # (T, 6, n, n)
    nc = mu.shape[-1] // f
    w = (ds.area / ds.area.sum()).values.reshape(6, nc, f, nc, f)
    w_block = w.sum(axis=(-3, -1))

    def split(z: np.ndarray) -> np.ndarray:
        """``z (..., T, 6, n, n)`` → mean square of r = z − μ, its block-mean and within-block parts, within-block
        var(z) and cov(r, μ): each summed over cells with the area weights, averaged over frames."""
        r, zz, m = (a.reshape(*a.shape[:-2], nc, f, nc, f) for a in (z - mu, z, np.broadcast_to(mu, z.shape)))
        mean = lambda a: (a * w).sum(axis=(-3, -1), keepdims=True) / w_block[:, :, None, :, None]  # noqa: E731
        total = lambda a: float((a * w).sum(axis=(-5, -4, -3, -2, -1)).mean())                     # noqa: E731
        rw, zw, mw = r - mean(r), zz - mean(zz), m - mean(m)
        return np.array([total(r * r), total(r * r) - total(rw * rw), total(rw * rw), total(zw * zw),
                         total(rw * mw)])

    truth = split(frames(TRUTH).astype(np.float64))
    members = frames(raw)
    ens = np.mean([split(members[k * len(mu):(k + 1) * len(mu)].astype(np.float64))
                   for k in range(len(members) // len(mu))], axis=0)
    labels = ("residual mean square, total", "… of the coarse-block means", "… within the blocks",
              "within the blocks: variance of the field z", "within the blocks: cov(r, μ)")
    return [{"quantity": label, "truth": t, "ensemble_raw": e, "ratio": math.sqrt(e / t) if i < 4 else float("nan")}
            for i, (label, t, e) in enumerate(zip(labels, truth, ens, strict=True))]


#: Number of equal-count bins of the cell area in :func:`jumps_by_cell_size`.
CELL_SIZE_BINS = 6


def jumps_by_cell_size(config: PipelineConfig) -> list[dict[str, float | str]]:
    """Whether the grid-scale variability follows the cell size: the mean |jump| between rook neighbours inside
    a tile (both directions, the model's normalized log units), in :data:`CELL_SIZE_BINS` equal-count bins of
    the pair's mean cell area (as a fraction of the mean cell area), for the truth and as a ratio to it for each
    ensemble (members pooled). Unweighted over pairs."""
    ds = open_output(config.generate.output)
    area = ds.area.values / float(ds.area.mean())
    pair_area = np.concatenate([0.5 * (area[..., 1:] + area[..., :-1]).ravel(),
                                0.5 * (area[..., 1:, :] + area[..., :-1, :]).ravel()])
    edges = np.quantile(pair_area, np.linspace(0, 1, CELL_SIZE_BINS + 1))
    which = np.clip(np.digitize(pair_area, edges[1:-1]), 0, CELL_SIZE_BINS - 1)
    counts = np.bincount(which, minlength=CELL_SIZE_BINS)

    def per_bin(name: str) -> np.ndarray:
        z = _log_frames(str(config.generate.output), str(config.generate.bundle), name)
        jumps = np.concatenate([np.abs(np.diff(z, axis=-1)).reshape(len(z), -1),
                                np.abs(np.diff(z, axis=-2)).reshape(len(z), -1)], axis=1).mean(0)
        return np.bincount(which, weights=jumps, minlength=CELL_SIZE_BINS) / counts

    truth = per_bin(TRUTH)
    rows = [{"bin": f"{lo:.2f}–{hi:.2f}", "truth": truth[i]} for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    for src, name in _ensembles(ds).items():
        for row, value in zip(rows, per_bin(name) / truth, strict=True):
            row[src] = value
    return rows


def seam_by_edge_kind(config: PipelineConfig) -> list[dict[str, float | str]]:
    """Whether the seam excess depends on the tiles' orientation: the seam ratio (the jump across a tile edge
    over the jump across the coarse-cell edge f cells in, on the same lines: the like-for-like reference of
    :func:`downscale.diagnostics.consistency.seam_statistics`) of the cube's 12 tile edges (the E and N edge of
    every tile), split into the 6 edges where the neighbour's grid runs the same way ("straight": E↔W, N↔S) and
    the 6 where it is turned by 90° ("turned": E↔S, N↔W; a convolution's learned, direction-bound features
    change meaning across those). Mean |jump| in normalized log units for the truth; ensembles as ratio to the
    truth (members pooled)."""
    ds = open_output(config.generate.output)
    meta = read_bundle_metadata(config.generate.bundle)
    f = meta.factor
    turned_e, turned_n = (np.array([turned_edge(t, edge) != 0 for t in range(6)]) for edge in ("E", "N"))

    def per_kind(name: str) -> dict[str, float]:
        z = _log_frames(str(config.generate.output), str(config.generate.bundle), name)
        halo = halo_pad(z, 1)
        pairs = {"across the tile edge": (np.abs(z[..., :, -1] - halo[..., 1:-1, -1]),
                                          np.abs(z[..., -1, :] - halo[..., -1, 1:-1])),
                 f"across the coarse-cell edge {f} cells in": (np.abs(z[..., :, -f] - z[..., :, -f - 1]),
                                                               np.abs(z[..., -f, :] - z[..., -f - 1, :]))}
        out = {}
        for kind, sel_e, sel_n in (("straight", ~turned_e, ~turned_n), ("turned", turned_e, turned_n)):
            for where, (e, n) in pairs.items():
                out[f"{kind} edges, jump {where}"] = float(np.concatenate([e[:, sel_e].ravel(), n[:, sel_n].ravel()]).mean())
            across, inner = (out[f"{kind} edges, jump {where}"] for where in pairs)
            out[f"{kind} edges, seam ratio"] = across / inner
        return out

    truth = per_kind(TRUTH)
    rows = [{"pair": key, "truth": value} for key, value in truth.items()]
    for src, name in _ensembles(ds).items():
        for row, (key, value) in zip(rows, per_kind(name).items(), strict=True):
            row[src] = value / truth[key]
    return rows


def edge_distance_groups(n: int, f: int, s: int) -> list[tuple[str, np.ndarray]]:
    """The pair groups of :func:`jumps_by_edge_distance` on a tile of n × n cells: ``(label, mask over the
    n + 1 pairs)``, pair i = (cell i − 1, cell i) along a line, pairs 0 and n the ones across the tile edges.
    One group per distance d = 0 … f from the nearest edge, then the rest: inside one s × s fold block
    (i % s ≠ 0) or across."""
    d = np.minimum(np.arange(n + 1), n - np.arange(n + 1))
    groups = [(f"{k}" + (" (across the tile edge)" if k == 0 else ""), d == k) for k in range(f + 1)]
    if s > 1:
        rest = d > f
        return groups + [(f"{f + 1}–{n // 2}, inside a {s}×{s} fold block", rest & (d % s != 0)),
                         (f"{f + 1}–{n // 2}, across fold blocks", rest & (d % s == 0))]
    return groups + [(f"{f + 1}–{n // 2}", d > f)]


def jump_profile(z: np.ndarray) -> np.ndarray:
    """``z (..., 6, n, n)`` → ``(n + 1,)``: the mean |jump| of each pair i = (cell i − 1, cell i) along every
    line of every tile, both directions together; pairs 0 and n cross the tile edges (the neighbour's cell from
    the halo)."""
    p = halo_pad(z, 1)
    lead = tuple(range(p.ndim - 3))
    return 0.5 * (np.abs(np.diff(p[..., 1:-1, :], axis=-1)).mean(axis=(*lead, -3, -2))
                  + np.abs(np.diff(p[..., :, 1:-1], axis=-2)).mean(axis=(*lead, -3, -1)))


def jumps_by_edge_distance(config: PipelineConfig) -> list[dict[str, float | str]]:
    """Where across a tile the grid-scale excess sits: :func:`jump_profile` (normalized log units) averaged over
    the groups of :func:`edge_distance_groups` (s = the bundle's ``space_to_depth``: a fold imprint makes the pairs
    inside a block and across blocks differ). Truth as is; ensembles (members pooled) and μ as given
    (``deterministic_raw``) as ratios to it."""
    ds = open_output(config.generate.output)
    meta = read_bundle_metadata(config.generate.bundle)
    groups = edge_distance_groups(ds.sizes["grid_xt"], meta.factor, meta.model.network.space_to_depth)

    def per_group(name: str) -> list[float]:
        profile = jump_profile(_log_frames(str(config.generate.output), str(config.generate.bundle), name))
        return [float(profile[sel].mean()) for _, sel in groups]

    truth = per_group(TRUTH)
    rows: list[dict[str, float | str]] = [{"pair": label, "truth": t} for (label, _), t in zip(groups, truth)]
    for src, name in {**_ensembles(ds), MU_RAW: baseline_variable(MU_RAW)}.items():
        for row, value, t in zip(rows, per_group(name), truth, strict=True):
            row[src] = value / t
    return rows


def fine_power_by_band(tile: xr.DataArray, sphere: xr.DataArray, n: int) -> list[dict[str, float | str]]:
    """Where in the fine band the spectra's excess sits: each half of the per-tile band (index k, n/4 … n/2) and
    each third of the sphere's (total wavenumber l, n … the end; l = 2n is a wavelength of 2 mean cells, what
    only the cells smaller than the mean resolve beyond it). Per band the truth's share of its fine-band power
    and every other source's ln ratio to the truth's band power. ``tile``/``sphere``: the evaluation's
    ``power_spectrum`` / ``sphere_power_spectrum`` curves (dims ``source`` × wavenumber), C-``n`` fine grid."""
    k_lo, k_hi = fine_band_tile(n)
    l_lo, _ = fine_band_sphere(n)
    l_end = int(sphere.total_wavenumber[-1])
    spectra = [("per tile", tile, "wavenumber", "k", k_lo, [(k_lo, n * 3 // 8 - 1), (n * 3 // 8, k_hi)]),
               ("sphere", sphere, "total_wavenumber", "l", l_lo,
                [(l_lo, n * 3 // 2 - 1), (n * 3 // 2, 2 * n - 1), (2 * n, l_end)])]
    rows: list[dict[str, float | str]] = []
    for kind, spec, dim, symbol, fine_lo, pieces in spectra:
        truth = spec.sel(source="truth", drop=True)
        fine = float(truth.sel({dim: slice(fine_lo, None)}).sum())
        for a, b in pieces:
            ratio = band_power_ratio(spec, truth, a, b, dim=dim)
            share = float(truth.sel({dim: slice(a, b)}).sum()) / fine
            rows.append({"band": f"{kind}, {symbol} {a}–{b}", "share": share,
                         **{str(src): float(ratio.sel(source=src)) for src in spec.source.values if src != "truth"}})
    return rows


def learning_curve(config: PipelineConfig) -> list[dict[str, str]]:
    path = Path(config.train.output_dir) / "logs" / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return [r for r in csv.DictReader(f) if r.get("val/crps_fair")]


def _row(label: str, shown: str, goal: str, ok: bool | None) -> str:
    verdict = "—" if ok is None else "pass" if ok else "miss"
    return f"| {label} | {shown} | {goal.replace('|', chr(92) + '|')} | {verdict} |"


def _target_row(label: str, target: str, value: float, shown: str | None = None) -> str:
    """A row checked by the report's target ``target`` (:data:`downscale.evaluation.targets.TARGETS`)."""
    t = TARGETS[target]
    return _row(label, fmt(value) if shown is None else shown, t.text, math.isfinite(value) and t.check(value))


def target_rows(s: xr.Dataset, floor: dict[str, dict[str, float]], res_ratio: float) -> list[str]:
    """The issue's target table, computed from the scalars (ensemble = the corrected production ensemble). The
    report's targets are checked against the better μ rather than the best baseline; the rest are this
    benchmark's own."""
    v = lambda var, src="ensemble": _value(s, var, src)  # noqa: E731
    mu = lambda var: min(v(var, m) for m in MU_VARIANTS)  # noqa: E731  (the better μ for this metric)
    ratio = lambda var: v(var) / mu(var)  # noqa: E731
    rows = []
    rows.append(_row("sampled residual std ÷ truth's (normalized, raw members)", fmt(res_ratio), "within 5 %",
                     abs(res_ratio - 1) <= 0.05))
    for var, label in (("fine_power_log_ratio", "per tile"), ("fine_power_log_ratio_sphere", "sphere")):
        x = v(var)
        rows.append(_row(f"fine-scale power ln ratio to truth ({label})", f"{x:+.3f}", "|·| ≤ 0.2",
                         math.isfinite(x) and abs(x) <= 0.2))
    for var in ("crps_fair", "crps_standard"):
        rows.append(_target_row(f"{var.replace('_', ' ')} ÷ μ's", f"{var}_ratio", ratio(var)))
    rows.append(_target_row("spread–skill", "spread_skill", v("spread_skill")))
    for tag, label in (("q999", "q99.9"), ("q9999", "q99.99")):
        inside = v(f"{tag}_in_truth_interval")
        lo, hi = (v(f"truth_{tag}_{b}", "truth") * MM_DAY for b in ("lower", "upper"))
        shown = f"{v(tag) * MM_DAY:.1f} mm/day (truth 95 %: {lo:.1f} – {hi:.1f})"
        rows.append(_row(f"{label} of the corrected ensemble", shown, "inside the truth's interval", inside == 1))
    for var, label, target in (("pe_q9999", "PE at q99.99", "pe_ratio"), ("emd", "EMD", "emd_ratio")):
        rows.append(_target_row(f"{label} ÷ μ's", target, ratio(var)))
    for var, label in (("pe_q9999", "PE at q99.99"), ("pe", "PE at q99.999"), ("emd", "EMD")):
        level = float(np.mean([f[var] for f in floor.values()])) if floor else float("nan")
        x = v(var)
        beside = "; ".join(f"{src} {v(var, src) * MM_DAY:.3g}" for src in ("qm", "ensemble_qm")
                           if src in s.source.values)
        shown = f"{x * MM_DAY:.3g} mm/day (floor {level * MM_DAY:.3g}; {beside})"
        rows.append(_row(f"{label}, absolute", shown, "≤ the inter-member noise floor (mean over members)",
                         x <= level if math.isfinite(level) else None))
    rows.append(_target_row("SAE ÷ best baseline's", "sae_ratio", v("sae_ratio")))
    for tag in ("q99", "q999"):
        b, m, qm = v(f"brier_{tag}"), mu(f"brier_{tag}"), v(f"brier_{tag}", "qm")
        rows.append(_row(f"Brier score > truth's {tag} (ensemble; μ, qm)", f"{b:.4g} ({m:.4g}; {qm:.4g})",
                         "lower than both", b < m and b < qm))
    for var, label in (("seam_ratio_vs_truth", "seam ratio ÷ truth's"),
                       ("coarse_imprint_vs_truth", "coarse-cell imprint ÷ truth's")):
        rows.append(_target_row(label, var, v(var)))
    raw = v("relative_bias", "ensemble_raw")
    rows.append(_target_row("area-mean bias, ensemble_raw", "relative_bias", raw, f"{100 * raw:+.1f} %"))
    rows.append(_row("area-mean bias, ensemble", f"{100 * v('relative_bias'):+.1f} %", "(exact by construction)",
                     None))
    return rows


def section(name: str, config: PipelineConfig, timings: list[tuple[str, bool, float]]) -> str:
    """The markdown section of one config: the target table, then absolute values per source, the noise floor
    and the learning curve."""
    diags = read_diagnostics(config.diagnostics_dir)
    s, ev = diags.scalars, diags.evaluation
    kinds = dict(zip(map(str, s.source.values), map(str, s.source_kind.values), strict=True))
    truth_hist = diags.curves["histogram"].sel(source="truth", region="global", drop=True).drop_vars(
        "source_kind", errors="ignore")
    floor, res = noise_floor(config, truth_hist), residual_std_ratio(config)
    g = config.generate
    scale = "" if config.train.residual_scale == "none" else f", residual scale {config.train.residual_scale}"
    lines = [f"## `{name}` config", "",
             f"Held-out member {g.member}, {ev['n_times']} frames ({ev['period'][0]} … {ev['period'][1]}), "
             f"{ev['n_members']} members, sampler {g.sampler.kind} {g.sampler.num_steps} steps (NFE {g.sampler.nfe}, "
             f"σ {g.sampler.sigma_max:g} → {g.sampler.sigma_min:g}, ρ {g.sampler.rho:g}), mass correction bounded at "
             f"{g.mass_correction_max_ratio:g}×, {config.train.max_steps} training steps "
             f"({config.train.mode}{scale}) of the `{config.train.network.preset}` network"
             + "".join(f", {k}: {v}" for k, v in config.train.network.overrides.items()) + ". Stage times (s): "
             + ", ".join(f"{n} {'skipped' if sk else f'{t:.0f}'}" for n, sk, t in timings) + ".",
             "", "| target | ensemble | goal | |", "|---|---|---|---|", *target_rows(s, floor, res)]
    sources = [x for x, k in kinds.items() if k == "ensemble"] + [x for x, k in kinds.items() if k == "baseline"]
    sources += [x for x in ("coarse",) if x in kinds]
    lines += ["", "Every source (global; CRPS of a deterministic source = its MAE):", "",
              "| metric | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for var, label, factor in ABSOLUTE:
        lines.append(f"| {label} | " + " | ".join(fmt(_value(s, var, x) * factor) for x in sources) + " |")
    if floor:
        lines += ["", "Inter-member noise floor (another member's truth against the held-out truth, same dates):", "",
                  "| member | PE q99.99 (mm/day) | PE q99.999 (mm/day) | EMD (mm/day) |", "|---|---|---|---|"]
        lines += [f"| {m} | {fmt(f['pe_q9999'] * MM_DAY)} | {fmt(f['pe'] * MM_DAY)} | {fmt(f['emd'] * MM_DAY)} |"
                  for m, f in floor.items()]
    sub = subgrid_variability(config)
    ens = [src for src in ("ensemble", "ensemble_raw", "ensemble_qm") if f"{src}_phys" in sub[0]]
    lines += ["", "Sub-grid variability by the coarse cell's rain rate (variance of the f × f fine cells about their "
              "mean, averaged over the coarse cells of a bin; ensembles as ratio to the truth, physical / normalized "
              "log units):", "",
              "| coarse rain (mm/day) | coarse cells | truth (mm/day)² | share of truth's | "
              + " | ".join(f"{src} phys / log" for src in ens) + " |", "|---" * (4 + len(ens)) + "|"]
    for r in sub:
        lines.append(f"| {r['bin']} | {r['cells']:.0f} | {fmt(r['truth_var'])} | {100 * r['truth_share']:.1f} % | "
                     + " | ".join(f"{fmt(r[f'{src}_phys'])} / {fmt(r[f'{src}_log'])}" for src in ens) + " |")
    by_scale = residual_by_scale(config)
    if by_scale:
        lines += ["", "The sampled residual by scale (raw members and truth minus the raw μ, normalized log units, "
                  "area-weighted; coarse blocks of f × f cells; the last column is the ratio of root mean squares, "
                  "the target row's statistic for the total):", "",
                  "| quantity | truth | ensemble_raw | ratio |", "|---|---|---|---|"]
        lines += [f"| {r['quantity']} | {r['truth']:.4f} | {r['ensemble_raw']:.4f} | "
                  f"{'—' if math.isnan(r['ratio']) else fmt(r['ratio'])} |" for r in by_scale]
    jumps = jumps_by_cell_size(config)
    ens = [src for src in ("ensemble", "ensemble_raw", "ensemble_qm") if src in jumps[0]]
    lines += ["", "Neighbour jumps by cell size (mean |jump| between neighbouring fine cells inside a tile, normalized "
              "log units, in equal-count bins of the pair's cell area ÷ the mean cell area; ensembles as ratio to "
              "the truth). Small cells sit at tile edges and corners, where the seam and the sphere's highest "
              "wavenumbers are:", "", "| cell area ÷ mean | truth | " + " | ".join(ens) + " |",
              "|---" * (2 + len(ens)) + "|"]
    lines += [f"| {r['bin']} | {fmt(r['truth'])} | " + " | ".join(fmt(r[src]) for src in ens) + " |" for r in jumps]
    seams = seam_by_edge_kind(config)
    ens = [src for src in ("ensemble", "ensemble_raw", "ensemble_qm") if src in seams[0]]
    lines += ["", "Seams by edge kind (the 6 tile edges where the neighbour's grid runs the same way, \"straight\", and "
              "the 6 where it is turned by 90°, \"turned\"; mean |jump| in normalized log units and the seam ratio "
              "per kind; ensembles as ratio to the truth):", "",
              "| pair | truth | " + " | ".join(ens) + " |", "|---" * (2 + len(ens)) + "|"]
    lines += [f"| {r['pair']} | {fmt(r['truth'])} | " + " | ".join(fmt(r[src]) for src in ens) + " |" for r in seams]
    edges = jumps_by_edge_distance(config)
    cols = [src for src in ("ensemble", "ensemble_raw", "ensemble_qm", MU_RAW) if src in edges[0]]
    lines += ["", "Neighbour jumps by distance from the tile edge (mean |jump| between neighbouring fine cells, "
              "normalized log units, by the pair's distance d from the nearest tile edge: d = 0 across the edge, d "
              "the pair of cells d − 1 and d in; the rest of the tile split by the network's space-to-depth fold; "
              "ensembles and μ as given, as ratio to the truth):", "",
              "| d | truth | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    lines += [f"| {r['pair']} | {fmt(r['truth'])} | " + " | ".join(fmt(r[src]) for src in cols) + " |" for r in edges]
    bands = fine_power_by_band(diags.curves["power_spectrum"], diags.curves["sphere_power_spectrum"],
                               open_output(config.generate.output).sizes["grid_xt"])
    cols = [src for src in ("ensemble", "ensemble_raw", "ensemble_qm", MU_RAW, "qm") if src in bands[0]]
    lines += ["", "Fine-scale power by band (physical units; the truth's share of its fine-band power, and each "
              "source's ln ratio to the truth's power in the band; l ≥ 2n are wavelengths under 2 mean cells):", "",
              "| band | truth's share | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    lines += [f"| {r['band']} | {fmt(r['share'])} | " + " | ".join(f"{r[src]:+.3f}" for src in cols) + " |"
              for r in bands]
    curve = learning_curve(config)
    if curve:
        lines += ["", "Learning curve (validation clips, EMA weights, production sampler, no mass correction):", "",
                  "| step | fair CRPS (mm/day) | standard CRPS (mm/day) | MAE of μ (mm/day) | q99.9 ratio | "
                  "q99.99 ratio | residual std ratio |", "|---|---|---|---|---|---|---|"]
        for r in curve:
            lines.append(f"| {int(r['step']) + 1} | {fmt(float(r['val/crps_fair']) * MM_DAY)} | "
                         f"{fmt(float(r['val/crps_standard']) * MM_DAY)} | {fmt(float(r['val/mae_mean']) * MM_DAY)} | "
                         f"{fmt(float(r['val/q999_ratio']))} | {fmt(float(r['val/q9999_ratio']))} | "
                         f"{fmt(float(r['val/residual_std_ratio']))} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the ``## `name` config`` section of ``path``."""
    replace_section(path, f"## `{name}` config", text, new_document=(
        "# Skill on the synthetic validation split\n\nEach section is reproduced (and rewritten) by "
        "`python bench/skill.py NAME --markdown docs/skill.md`.\n\n"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", choices=["skill", "demo"])
    p.add_argument("--workdir", type=Path, help="default: skill-runs/<config>")
    p.add_argument("--markdown", type=Path, help="write this config's section into this file (e.g. docs/skill.md)")
    p.add_argument("--pipeline", type=Path, help="a pipeline YAML to run and score instead of the preset (an "
                                                 "experiment: `downscale config --preset skill` edited)")
    args = p.parse_args()
    configure_logging()   # progress lines with timestamps, no library noise (as `downscale run`)
    if args.pipeline:
        config = PipelineConfig.from_yaml(args.pipeline)
    else:
        config = config_for(args.config, args.workdir or REPO / "skill-runs" / args.config)
    try:
        timings = run(config)
    except stages.StageChangedError as e:     # a workdir made with other settings: say so in one line
        print(f"bench/skill.py: {e}", file=sys.stderr)
        return 2
    text = section(args.config, config, timings)
    print(text)
    if args.markdown:
        write_section(args.markdown, args.config, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
