"""Incremental downscaling against a full run, measured in the same process (ratios; machines are noisy).

A copy of the held-out member's stores first holds ``--first`` of its N frames; ``generate --append``
downscales them, the copy gains the other k = N − first frames and ``--append`` runs again. Reported:
the append run's wall time against a full run of all N frames (goal: close to the share of frames it
samples, not 1), which frames each run wrote (work-item markers) and whether the first frames kept
their bits.

    .venv/bin/python bench/bench_incremental.py --workdir demo-run [--first 60] [--json /tmp/incremental.json]

Needs ``make demo``'s outputs (``demo-run``: data and the trained bundle).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from data_catalog.synthetic.growing import GrowingInput
from downscale.pipeline_config import demo_config
from downscale.inference import store
from downscale.inference.coarse_run import open_run
from downscale.inference.generate import generate


def _timed(config) -> float:
    t0 = time.perf_counter()
    generate(config)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo-run"))
    parser.add_argument("--first", type=int, default=60, help="frames the input holds at the first run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
    base = demo_config(args.workdir).generate.with_absolute_paths()
    n = len(open_run(base).times)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        growing = GrowingInput(base.catalog, tmp, base.member, frames=args.first, total=n)
        grow = base.model_copy(update={"catalog": growing.catalog, "output": tmp / "grown.zarr", "end": None,
                                       "append": True})
        full = base.model_copy(update={"output": tmp / "full.zarr"})
        t_full = _timed(full)
        t_first = _timed(grow)
        before = store.open_output(grow.output).PRATEsfc.values
        first_items = store.done_items(grow.output)
        growing.append()
        t_append = _timed(grow)
        after = store.open_output(grow.output).PRATEsfc.values
        new_items = sorted(store.done_items(grow.output) - first_items)
    k = n - args.first
    result = {
        "frames_total": n, "frames_first": args.first, "frames_appended": k,
        "wall_full_s": round(t_full, 1), "wall_first_s": round(t_first, 1), "wall_append_s": round(t_append, 1),
        "append_over_full": round(t_append / t_full, 3), "appended_share_of_frames": round(k / n, 3),
        "items_written_by_append": new_items,
        "first_frames_bit_identical": bool(np.array_equal(before, after[:, : args.first], equal_nan=True)),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
