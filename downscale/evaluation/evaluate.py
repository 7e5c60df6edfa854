"""Score an inference output store and write its diagnostics folder, atomically.

The scale factor comes from the store's global attribute ``factor`` (or an explicit argument when the
store lacks it) — never from array shapes. Window joins (frame indices where one generated video window
meets the next) come from the store attribute ``window_joins`` (a JSON list) when present. The folder is
written into a temporary sibling and renamed into place, so a crash never leaves a half-written folder
that looks complete (:func:`downscale.evaluation.results.is_complete`). Its phases (reading, scoring,
writing) are logged as they begin, and a long one at least every 30 s (:mod:`downscale.progress_log`). Scoring is
:func:`downscale.evaluation.score.compare`; the folder's layout is :mod:`downscale.evaluation.results`.

Example::

    >>> paths = evaluate("outputs.zarr", "diagnostics/")          # factor from the store's attributes
    >>> sorted(paths)
    ['curves', 'evaluation', 'maps', 'metrics']
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import xarray as xr

from data_catalog.errors import DataError
from data_catalog.read_guard import guarded, zarr_presence
from data_catalog.redaction import redact, redact_url
from data_catalog.store_reader import require_filesystem
from downscale.evaluation.results import DIAGNOSTIC_FILES, EVALUATION_FILE, is_complete, write_comparison
from downscale.evaluation.score import CompareConfig, compare
from downscale.inference.store_schema import COMPLETE, STATUS
from downscale.inference.store import require_format
from downscale.progress_log import ProgressLog
from downscale.version import __version__

#: The store is read and scored in blocks of whole days of about this many bytes (as stored; at least one day):
#: the evaluation's memory is that of one block plus running totals, whatever the record's length (160 frames,
#: 20 days, of a C32 store with 4 members; one day of a C384 store with 11 members).
BLOCK_BYTES = 64 * 1024**2


def _is_url(path: str | Path) -> bool:
    return "://" in str(path)


def open_output_store(path: str | Path) -> xr.Dataset:
    """Open an output store lazily (consolidated metadata if it has it), one dask block per shard; a read
    of its values that fails raises :class:`~data_catalog.errors.DataError` naming the store and the
    variable (:func:`data_catalog.read_guard.guarded`).

    Raises ``FileNotFoundError`` naming the store if a local path does not exist, and ``ValueError`` for a
    store that ``downscale generate`` has not finished (its unwritten frames are NaN, not results).
    """
    if not _is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"output store {path} not found")
    name = redact_url(str(path))
    require_filesystem(str(path), name)
    with warnings.catch_warnings():     # a store without consolidated metadata opens all the same
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            ds = guarded(xr.open_zarr(path, chunks=None), name, present=zarr_presence(str(path)))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"output store {name} is not a readable Zarr store: {redact(str(err))}") from None
    status = ds.attrs.get(STATUS)
    if status is not None:  # written by `downscale generate` (a store assembled by other means is read as is)
        require_format(ds.attrs, name)
    if status is not None and status != COMPLETE:
        raise ValueError(f"output store {path} is {status}: finish it first (rerun the same `downscale generate`, "
                         f"which writes only the missing work items)")
    return ds


def store_factor(ds: xr.Dataset, store: str | Path) -> int | None:
    """The store's ``factor`` attribute as an int (None if absent); ``ValueError`` if not a positive int."""
    value = ds.attrs.get("factor")
    if value is None:
        return None
    try:
        factor = int(value) if float(value).is_integer() else None
    except (TypeError, ValueError):
        factor = None
    if factor is None or factor < 1:
        raise ValueError(f"output store {store}: global attribute factor={value!r} is not a positive integer")
    return factor


def store_window_joins(ds: xr.Dataset, store: str | Path) -> tuple[int, ...]:
    """The store's ``window_joins`` attribute (JSON list of frame indices, or a list) as a tuple; () if absent."""
    value = ds.attrs.get("window_joins")
    if value is None:
        return ()
    try:
        joins = json.loads(value) if isinstance(value, str) else list(value)
        return tuple(int(j) for j in joins)
    except (TypeError, ValueError) as err:
        raise ValueError(f"output store {store}: global attribute window_joins={value!r} is not a JSON list "
                         f"of frame indices") from err


def resolve_config(ds: xr.Dataset, store: str | Path, config: CompareConfig | None,
                   factor: int | None) -> tuple[CompareConfig, str]:
    """The config to score with and where its factor came from (``store attribute``, ``argument`` or
    ``config``). Any two stated factors must agree; window joins from the store fill an empty config's."""
    stored = store_factor(ds, store)
    stated = {"store attribute": stored, "argument": factor, "config": config.factor if config else None}
    given = {k: v for k, v in stated.items() if v is not None}
    if not given:
        raise ValueError(f"output store {store} has no global attribute 'factor' (the fine/coarse ratio, never "
                         "inferred from shapes): pass it, e.g. `--factor 8`")
    if len(set(given.values())) > 1:
        raise ValueError(f"output store {store}: conflicting scale factors "
                         + ", ".join(f"{k} {v}" for k, v in given.items()))
    origin = next(iter(given))
    config = config or CompareConfig(factor=next(iter(given.values())))
    if not config.window_joins:
        config = dataclasses.replace(config, window_joins=store_window_joins(ds, store))
    return config, origin


def _check_variables(ds: xr.Dataset, store: str | Path, config: CompareConfig) -> None:
    for name, what in ((config.variable, "ensemble"), (config.truth, "truth")):
        if name not in ds.variables:
            raise ValueError(f"output store {store}: no {what} variable {name!r}; validation scores the ensemble "
                             f"against the truth stored beside it (variables: {sorted(map(str, ds.data_vars))})")


def _record_extent(ds: xr.Dataset, config: CompareConfig) -> dict:
    """Period, number of times and of members of the scored ensemble (for the report's summary)."""
    ens, time = ds[config.variable], config.dims.time
    return {"period": [str(ens[time].values[0]), str(ens[time].values[-1])], "n_times": int(ens.sizes[time]),
            "n_members": int(ens.sizes.get(config.dims.member, 1))}


def _extent(ds: xr.Dataset, config: CompareConfig) -> str:
    """``"4 members × 80 frames"`` of the scored ensemble, for the progress lines."""
    ens = ds[config.variable]
    return f"{ens.sizes.get(config.dims.member, 1)} members × {ens.sizes[config.dims.time]} frames"


def _prepare_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"diagnostics path {out} exists and is not a folder")
    contents = {p.name for p in out.iterdir()}
    if not contents:
        return
    if not contents <= set(DIAGNOSTIC_FILES):
        others = sorted(contents - set(DIAGNOSTIC_FILES))
        raise FileExistsError(f"diagnostics folder {out} holds other files ({', '.join(others)}): choose an empty "
                              "or new folder")
    if not overwrite:
        state = "a complete" if is_complete(out) else "an incomplete"
        raise FileExistsError(f"diagnostics folder {out} already holds {state} evaluation: pass --overwrite "
                              "(overwrite=True) to replace it")


def evaluate(output_store: str | Path, out_dir: str | Path, config: CompareConfig | None = None,
             overwrite: bool = False, *, factor: int | None = None, n_boot: int | None = None,
             land_fraction: xr.DataArray | None = None, block_bytes: int = BLOCK_BYTES) -> dict[str, Path]:
    """Score every source of ``output_store`` against its truth and write the diagnostics folder.

    ``out_dir`` receives ``metrics.json``, ``maps.zarr``, ``curves.nc`` and ``evaluation.json``; an existing
    evaluation there is replaced only with ``overwrite``. ``factor`` is needed only when the store lacks the
    ``factor`` attribute (it must agree with it otherwise); ``n_boot`` overrides the config's number of
    bootstrap resamples for the return-level CIs and the day-block intervals of extreme quantiles (fewer is
    faster); ``land_fraction`` (0..1 on the store's fine cells) adds land and ocean to the climatology's
    regions. The store is scored in blocks of whole days of about ``block_bytes`` (:data:`BLOCK_BYTES`). Returns the written paths by
    kind.

    Example: ``evaluate("outputs.zarr", "diagnostics/", factor=8)["metrics"]``
    """
    out = Path(out_dir)
    ds = open_output_store(output_store)
    config, origin = resolve_config(ds, output_store, config, factor)
    if n_boot is not None:
        if n_boot < 1:
            raise ValueError(f"n_boot must be a positive number of bootstrap resamples, got {n_boot}")
        config = dataclasses.replace(config, n_boot=n_boot)
    _check_variables(ds, output_store, config)
    _prepare_target(out, overwrite)
    name = redact_url(str(output_store))
    progress = ProgressLog(f"evaluate {name}", 3, "phases", eta=False)
    n_frames = ds.sizes[config.dims.time]
    block_frames = max(1, int(block_bytes / max(ds.nbytes / n_frames, 1)))
    progress.update(0, f"reading {_extent(ds, config)}, {ds.nbytes / 1e6:.0f} MB, in blocks of whole days of up "
                       f"to {min(block_frames, n_frames)} frames")
    blocks = ProgressLog(f"evaluate {name} scoring", 0, "blocks of days")
    with progress.heartbeat():      # a line at least every 30 s however long the scoring takes
        progress.update(1, "scoring the ensemble, the baselines and the coarse input against the truth")

        def on_block(done: int, total: int) -> None:
            blocks.total = total
            blocks.update(done)

        try:
            result = compare(ds, config, land_fraction, max_block_frames=block_frames, on_block=on_block)
        except DataError:   # a read of the store failed: it names the store and the variable already
            raise
        except ValueError as err:
            raise ValueError(f"output store {output_store}: {err}") from err
    progress.update(2, f"writing {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        paths = write_comparison(result, tmp)
        record = {"output_store": redact_url(str(output_store)), "factor": config.factor, "factor_from": origin,
                  "window_joins": list(config.window_joins), "sources": [str(s) for s in result.scalars.source.values],
                  **_record_extent(ds, config),
                  "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "software_version": __version__, "store_attrs": {str(k): str(v) for k, v in ds.attrs.items()}}
        (tmp / EVALUATION_FILE).write_text(json.dumps(record, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress.update(3, f"wrote {out}")
    return {**{k: out / p.name for k, p in paths.items()}, "evaluation": out / EVALUATION_FILE}
