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

import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from downscale.diagnostics.consistency import on_coarse_blocks  # noqa: E402
from downscale.diagnostics.dims import COARSE_SPATIAL_DIMS, SPATIAL_DIMS, drop_coords_on  # noqa: E402
from downscale.inference.store import open_output  # noqa: E402
from downscale.inference.store_schema import COARSE, PRECIPITATION, TRUTH, ensemble_variant_variable  # noqa: E402

SOURCES = {"truth": TRUTH, "ensemble_raw": ensemble_variant_variable("raw"), "ensemble": PRECIPITATION}
_, Y_FINE, X_FINE = SPATIAL_DIMS
_, Y_COARSE, X_COARSE = COARSE_SPATIAL_DIMS


def _block_max(field: xr.DataArray, factor: int) -> xr.DataArray:
    """The largest value of each ``factor × factor`` block, on the coarse dims without coordinates."""
    peak = field.coarsen({Y_FINE: factor, X_FINE: factor}).max().rename({Y_FINE: Y_COARSE, X_FINE: X_COARSE})
    return drop_coords_on(peak, [Y_COARSE, X_COARSE])


def peak_table(ds: xr.Dataset, quantile: float = 0.99) -> dict[str, dict[str, float]]:
    """Per source: quantiles (q50, q90, q99) of peak ÷ block mean and peak ÷ coarse and the mean of block
    mean ÷ coarse in the heavy blocks, and in the blocks holding a value above the truth's q99.99 their
    number per member and mean block mean ÷ coarse (module docstring)."""
    missing = [v for v in (*SOURCES.values(), COARSE) if v not in ds]
    if missing:
        raise ValueError(f"the store lacks {', '.join(missing)} (needs the truth, the coarse input and the raw "
                         f"members: generate with include_truth and ensemble_variants [raw])")
    factor = ds.sizes[X_FINE] // ds.sizes[X_COARSE]
    area = ds["area"].load()
    coarse = drop_coords_on(ds[COARSE].load(), [Y_COARSE, X_COARSE])
    heavy = coarse > float(coarse.quantile(quantile))
    fields = {name: ds[var].load() for name, var in SOURCES.items()}
    truth_q9999 = float(fields["truth"].quantile(0.9999))
    out: dict[str, dict[str, float]] = {}
    for name, field in fields.items():
        mean, _ = on_coarse_blocks(field, area, factor)               # the area-weighted block mean
        peak = _block_max(field, factor)
        in_heavy = heavy.broadcast_like(mean)
        shape = (peak / mean.where(mean > 0)).where(in_heavy)
        to_coarse = (peak / coarse).where(in_heavy)
        to_input = mean / coarse.where(coarse > 0)
        tail_blocks = peak > truth_q9999
        row = {f"{label} q{int(q * 100)}": float(ratio.quantile(q, method="inverted_cdf"))
               for label, ratio in (("peak/mean", shape), ("peak/coarse", to_coarse)) for q in (0.5, 0.9, 0.99)}
        row["mean/coarse, heavy"] = float(to_input.where(in_heavy).mean())
        row["tail blocks per member"] = float(tail_blocks.sum()) / field.sizes.get("member", 1)
        row["mean/coarse, tail blocks"] = float(to_input.where(tail_blocks).mean())
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
