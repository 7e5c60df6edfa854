"""Clip throughput of the DataModule's train loader vs reading the same chunks raw with zarr (never a test).

For the same clips (same members and start frames, in the loader's order), times:

* ``raw zarr``: ``zarr.open_array`` per variable, then ``arr[start:start + T]`` for the target and every
  predictor, in one process — the floor of what reading costs;
* ``xarray isel``: ``xr.open_zarr(..., chunks=None)`` (and with dask, ``chunks={}``) and
  ``.isel(time=slice(...))`` of the same variables (the alternatives the ClipDataset could have used);
* ``DataModule``: ``DownscalingDataModule.train_dataloader()`` (cube mode, batch 1) with 0 and 2 workers,
  i.e. read + normalize + geometry + collate into float32 tensors.

and prints clips/s and the ratios to raw (goal ≥ 0.8). Every reader first makes one pass over the same
chunks so all of them read from a warm page cache. Data: a prepared dataset (``--prepared``), a catalog to
prepare into a temporary folder (``--catalog``), the demo synthetic data if ``demo-run/`` holds it, else
the synthetic ``--preset`` (default ``tests``) generated and prepared in a temporary folder.

    .venv/bin/python bench/bench_datamodule.py [--prepared DIR | --catalog YAML] [--clips 200] [--write-doc]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
import zarr

from data_catalog.catalog import load_catalog
from data_catalog.prepare import PrepareConfig, PreparedDataset, prepare_dataset
from downscale.training.datamodule import DownscalingDataModule

REPO = Path(__file__).resolve().parents[1]
HEADING = "## DataModule throughput"


def _find_demo() -> tuple[Path | None, Path | None]:
    """A complete prepared dataset under ``demo-run/``, else the demo's catalog, else nothing."""
    demo = REPO / "demo-run"
    if not demo.is_dir():
        return None, None
    for manifest in sorted(demo.rglob("manifest.json")):
        if PreparedDataset.is_complete(manifest.parent):
            return manifest.parent, None
    return None, next(iter(sorted(demo.rglob("catalog.yaml"))), None)


def _prepared(args: argparse.Namespace, tmp: Path) -> tuple[PreparedDataset, str]:
    if args.prepared:
        return PreparedDataset.open(args.prepared), "given prepared"
    catalog_path = Path(args.catalog) if args.catalog else None
    label = "given catalog's"
    if catalog_path is None:
        demo, catalog_path = _find_demo()
        if demo is not None:
            return PreparedDataset.open(demo), "demo prepared"
        label = "demo catalog's"
    if catalog_path is None:
        label = f"synthetic `{args.preset}`"
        from data_catalog.synthetic import generate_synthetic, preset

        layout = generate_synthetic(preset(args.preset), tmp / "synthetic")
        catalog_path = tmp / "synthetic" / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(layout.catalog_document()))
    catalog = load_catalog(catalog_path)
    members = list(catalog.members)
    config = PrepareConfig(splits={"validation_members": members[-1:]} if len(members) > 1 else {})
    return prepare_dataset(catalog, tmp / "prepared", config), label


def _clip_order(dm: DownscalingDataModule, n: int) -> list[tuple[str, int]]:
    loader = dm.train_dataloader()
    dataset = dm.datasets["train"]
    order = [i % len(dataset) for i in loader.sampler]
    return [dataset.clips[i] for i in order[:n]]


def _raw_zarr(prepared: PreparedDataset, clips: list[tuple[str, int]]) -> float:
    m, t = prepared.manifest, prepared.splits.clip_frames
    names = [m.target, *m.predictors]
    arrays = {member: {v: zarr.open_array(store=str(prepared.member_path(member)), path=v, mode="r") for v in names}
              for member in {c[0] for c in clips}}  # opened once, before the clock (as the loader's warm-up)
    start_time = time.perf_counter()
    for member, start in clips:
        for v in names:
            arrays[member][v][start:start + t]
    return time.perf_counter() - start_time


def _xarray_isel(prepared: PreparedDataset, clips: list[tuple[str, int]], dask: bool = False) -> float:
    m, t = prepared.manifest, prepared.splits.clip_frames
    names = [m.target, *m.predictors]
    opened = {member: xr.open_zarr(prepared.member_path(member), chunks={} if dask else None, decode_times=False)
              for member in {c[0] for c in clips}}
    start_time = time.perf_counter()
    for member, start in clips:
        window = opened[member][names].isel(time=slice(start, start + t))
        for v in names:
            np.asarray(window[v].values)
    return time.perf_counter() - start_time


def _loader(prepared: PreparedDataset, workers: int, n: int) -> float:
    dm = DownscalingDataModule(prepared.path, batch_size=1, num_workers=workers, seed=0)
    loader = dm.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up and opening the stores are not throughput
    start_time = time.perf_counter()
    count = 0
    for _ in range(n):
        try:
            next(iterator)
        except StopIteration:
            break
        count += 1
    elapsed = time.perf_counter() - start_time
    del iterator
    return elapsed / max(count, 1) * n


def _write_doc(text: str) -> Path:
    path = REPO / "docs" / "performance.md"
    body = path.read_text() if path.exists() else "# Performance\n"
    start = body.find(HEADING)
    if start >= 0:
        end = body.find("\n## ", start + len(HEADING))
        body = body[:start] + text + (body[end + 1:] if end >= 0 else "")
    else:
        body = body.rstrip("\n") + "\n\n" + text
    path.write_text(body if body.endswith("\n") else body + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", help="a complete prepared dataset")
    parser.add_argument("--catalog", help="a catalog to prepare into a temporary folder")
    parser.add_argument("--preset", default="tests", help="synthetic preset if no data is given (default tests)")
    parser.add_argument("--clips", type=int, default=200, help="clips per measurement (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--write-doc", action="store_true", help=f"write the numbers to docs/performance.md ({HEADING})")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        prepared, source = _prepared(args, Path(tmp))
        dm = DownscalingDataModule(prepared.path, batch_size=1, seed=0)
        clips = _clip_order(dm, args.clips)
        n = len(clips)
        m = prepared.manifest
        load_before = os.getloadavg()[0]
        _raw_zarr(prepared, clips)  # warm the page cache for every reader
        readers = {
            "raw zarr (slices of the same T frames)": lambda: _raw_zarr(prepared, clips),
            "xarray .isel (zarr-backed, no dask)": lambda: _xarray_isel(prepared, clips),
            "xarray .isel through dask (open_zarr chunks={})": lambda: _xarray_isel(prepared, clips, dask=True),
            "DataModule train loader, num_workers=0": lambda: _loader(prepared, 0, n),
            "DataModule train loader, num_workers=2": lambda: _loader(prepared, 2, n),
        }
        # Rounds that measure every reader once, so a busy moment of the machine hits all of them alike.
        runs: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.repeats):
            for name, read in readers.items():
                runs[name].append(read())
        timings = {name: min(values) for name, values in runs.items()}
        load_after = os.getloadavg()[0]
    raw = n / timings["raw zarr (slices of the same T frames)"]
    t = prepared.splits.clip_frames
    clip_mb = 4 * t * 6 * (m.fine_resolution ** 2 + len(m.predictors) * m.coarse_resolution ** 2) / 1e6
    rows = [f"| {name} | {n / s:.1f} | {n / s / raw:.2f} |" for name, s in timings.items()]
    text = "\n".join([
        HEADING, "",
        f"`bench/bench_datamodule.py` on the {source} data (catalog '{m.catalog_name}', "
        f"{len(m.members)} members): C{m.coarse_resolution} → "
        f"C{m.fine_resolution}, clips of T = {t} frames × 6 tiles, {len(m.predictors)} predictors "
        f"({clip_mb:.1f} MB of float32 read per clip), cube mode, batch 1, {n} training clips in the "
        f"loader's shuffled order, warm page cache, best of {args.repeats}; "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load_before:.1f} before and "
        f"{load_after:.1f} after (other jobs shared the machine: repeated runs differ by tens of percent).",
        "",
        "| reader | clips/s | ratio to raw zarr |",
        "|---|---|---|",
        *rows,
        "",
        "The loader also normalizes (log1p + standardization), adds the static features and area weights "
        "and collates into tensors; raw zarr only reads. Goal: ≥ 0.8 of raw.",
        "",
    ])
    print(f"data: {source} {prepared.path}")
    print(text)
    if args.write_doc:
        print(f"written to {_write_doc(text)}")


if __name__ == "__main__":
    main()
