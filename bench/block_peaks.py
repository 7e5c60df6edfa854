"""How peaked is the rain inside a heavy-rain coarse block? Members against the truth (a benchmark, not a test).

    python bench/block_peaks.py skill-runs/RUN/outputs/0003.zarr [--quantile 0.99] [--json out.json]

On a complete ``generate`` store that holds the truth, the coarse input and the raw members
(``PRATEsfc_ensemble_raw``), per source (truth, raw members, corrected members ``PRATEsfc``) and per coarse block
(``f × f`` fine cells) and frame:

* ``peak ÷ block mean``: the largest fine value over the source's own area-weighted block mean — the shape of
  the rain inside the block. The multiplicative mass correction rescales a block as a whole, so it leaves this
  ratio as it is (up to its bound), and the corrected members' peaks are this ratio times the coarse value;
* ``peak ÷ coarse``: the largest fine value over the coarse input's value;
* ``block mean ÷ coarse``: how much more (or less) rain the source puts in the block than the input says
  (1 for the truth and the corrected members by construction);

in the heavy blocks (coarse input above its ``--quantile`` over the store's frames; the same blocks for every
source), and for the blocks that hold a value above the truth's q99.99 (the blocks that make the tail).
Quantiles (inverted CDF: a repeated value counts once per copy) pool members, frames and blocks. Every figure is a
ratio of two rain rates (dimensionless).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from downscale.inference.store import open_output  # noqa: E402

SOURCES = {"truth": "PRATEsfc_truth", "ensemble_raw": "PRATEsfc_ensemble_raw", "ensemble": "PRATEsfc"}


def block_stats(field: xr.DataArray, area: xr.DataArray, factor: int) -> tuple[xr.DataArray, xr.DataArray]:
    """Area-weighted mean and maximum of ``field (..., tile, grid_yt, grid_xt)`` over ``factor × factor``
    blocks: two arrays ``(..., tile, grid_yt, grid_xt)`` on the coarse grid (same units as ``field``)."""
    blocks = {"grid_yt": factor, "grid_xt": factor}
    mean = (field * area).coarsen(blocks).sum() / area.coarsen(blocks).sum()
    return mean, field.coarsen(blocks).max()


def peak_table(ds: xr.Dataset, quantile: float = 0.99) -> dict[str, dict[str, float]]:
    """Per source: quantiles (q50, q90, q99) of peak ÷ block mean and peak ÷ coarse and the mean of block
    mean ÷ coarse in the heavy blocks, and in the blocks holding a value above the truth's q99.99 their
    number per member and mean block mean ÷ coarse (module docstring)."""
    missing = [v for v in (*SOURCES.values(), "PRATEsfc_coarse") if v not in ds]
    if missing:
        raise ValueError(f"the store lacks {', '.join(missing)} (needs the truth, the coarse input and the raw "
                         f"members: generate with include_truth and ensemble_variants [raw])")
    factor = ds.sizes["grid_xt"] // ds.sizes["grid_xt_coarse"]
    area = ds["area"].load()
    coarse = ds["PRATEsfc_coarse"].load().rename(grid_yt_coarse="grid_yt", grid_xt_coarse="grid_xt")
    coarse = coarse.drop_vars(list(coarse.coords))      # block means come with the fine grid's coordinates
    heavy = coarse > float(coarse.quantile(quantile))
    truth_q9999 = float(ds["PRATEsfc_truth"].quantile(0.9999))
    out: dict[str, dict[str, float]] = {}
    for name, var in SOURCES.items():
        field = ds[var].load()
        mean, peak = block_stats(field, area, factor)
        mean, peak = (a.drop_vars(list(a.coords)) for a in (mean, peak))
        in_heavy = heavy.broadcast_like(mean)
        shape = (peak / mean.where(mean > 0)).where(in_heavy)
        to_coarse = (peak / coarse).where(in_heavy)
        excess = (mean / coarse).where(in_heavy)
        tail_blocks = peak > truth_q9999
        n_members = field.sizes.get("member", 1)
        row = {f"{label} q{int(q * 100)}": float(ratio.quantile(q, method="inverted_cdf"))
               for label, ratio in (("peak/mean", shape), ("peak/coarse", to_coarse)) for q in (0.5, 0.9, 0.99)}
        row["mean/coarse, heavy"] = float(excess.mean())
        row["tail blocks per member"] = float(tail_blocks.sum()) / n_members
        row["mean/coarse, tail blocks"] = float((mean / coarse).where(tail_blocks & (coarse > 0)).mean())
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a complete generate store with truth, coarse and raw members")
    parser.add_argument("--quantile", type=float, default=0.99, help="heavy blocks: coarse input above this quantile")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if not 0 < args.quantile < 1:
        parser.error(f"--quantile must lie in (0, 1), got {args.quantile}")
    try:
        table = peak_table(open_output(args.store), args.quantile)
    except (OSError, ValueError) as err:
        print(f"error: {args.store}: {err}", file=sys.stderr)
        return 2
    columns = list(next(iter(table.values())))
    print(f"{args.store}: heavy blocks = coarse input above its q{args.quantile * 100:g}")
    print("| source | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3g}" for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
