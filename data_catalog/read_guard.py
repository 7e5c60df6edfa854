"""Reading a store's values: a fault names the store, the variable and the problem.

Values are read lazily (dask) and long after a store was opened, so a ``try`` around the opening
catches nothing. :func:`guarded` makes the dataset that ``chunks={}`` would give, except that each dask
block is read through a :class:`GuardedArray`: whatever fails in that read (a chunk that cannot be
decoded, an HTTP 403, a connection reset, an array whose folder is gone while the metadata lists it)
is raised as one :class:`~data_catalog.errors.DataError` with the store's display name, the variable and
the problem, wherever the values are materialised (``.load()``, ``dask.compute``, ``to_zarr``).
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import dask.array
import fsspec
import numpy as np
import xarray as xr

from data_catalog.errors import DataError
from data_catalog.redaction import redact

#: Path fragments of the frames that decode a chunk: an exception raised there means corrupt bytes.
_CODEC_FRAMES = ("numcodecs", "/zarr/codecs/", "/h5py/", "/h5netcdf/")
_DENIED = (401, 403)


def read_problem(err: BaseException, scrub: Callable[[str], str] = redact) -> str:
    """One line saying what went wrong in a failed read of stored values (credentials removed)."""
    status = getattr(err, "status", None)  # aiohttp's ClientResponseError: the HTTP status of a remote read
    status = status if isinstance(status, int) else None
    text = f"HTTP {status} {getattr(err, 'message', '')}" if status else f"{type(err).__name__}: {err}"
    detail = " ".join(scrub(text).split())
    if isinstance(err, PermissionError) or status in _DENIED:
        return f"access denied while reading its data ({detail}): check the store's credentials and permissions"
    transport = isinstance(err, ConnectionError | TimeoutError) or type(err).__module__.startswith("aiohttp")
    if transport or status is not None:
        return f"read failed ({detail}); retry, or check that the store is reachable"
    frames = [f.filename.replace("\\", "/") for f in traceback.extract_tb(err.__traceback__)]
    if any(part in name for name in frames for part in _CODEC_FRAMES):
        return f"corrupt chunk: its bytes cannot be decoded ({detail}); restore the store or write it again"
    return f"cannot be read ({detail})"


def zarr_presence(url: str, storage_options: dict[str, Any] | None = None) -> Callable[[str], bool]:
    """``present(name)``: whether array ``name`` of the Zarr store at ``url`` has its own metadata
    document (``zarr.json`` or ``.zarray``), not only an entry in the consolidated metadata."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return partial(_array_present, fs, root.rstrip("/"))


def _array_present(fs: fsspec.AbstractFileSystem, root: str, name: str) -> bool:
    for doc in ("zarr.json", ".zarray"):
        try:
            fs.info(f"{root}/{name}/{doc}")
            return True
        except FileNotFoundError:
            continue
    return False


class GuardedArray:
    """One variable's values as dask reads them, block by block (``arr[slices]`` → ``numpy`` array).

    The first read checks that the array is present (``present``); every read failure becomes a
    :class:`DataError` naming ``store``, the variable and the block's position.
    """

    def __init__(self, variable: xr.Variable, store: str, name: str, scrub: Callable[[str], str],
                 present: Callable[[str], bool] | None):
        self.variable, self.store, self.name, self.scrub = variable, store, name, scrub
        self.shape, self.dtype, self.ndim = variable.shape, variable.dtype, variable.ndim
        self._present = present

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        try:
            if self._present is not None:
                if not self._present(self.name):
                    raise DataError(self.store, "its data is missing: the store's metadata lists the variable but "
                                    "its array folder is gone (it would read as fill values, not data); restore "
                                    "the store", self.name)
                self._present = None
            return np.asarray(self.variable[key].values)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - every backend, codec and transport raises its own type
            where = ", ".join(f"{d} {s.start or 0}:{s.stop if s.stop is not None else n}"
                              for d, s, n in zip(self.variable.dims, _slices(key), self.shape, strict=False))
            problem = read_problem(err, self.scrub)
            raise DataError(self.store, problem + (f" [block {where}]" if where else ""), self.name) from None


def _slices(key: Any) -> tuple[slice, ...]:
    key = key if isinstance(key, tuple) else (key,)
    return tuple(k if isinstance(k, slice) else slice(None) for k in key)


def _block_shape(var: xr.Variable) -> tuple[int, ...]:
    """One dask block per stored (inner) chunk, as ``chunks={}`` gives. Never a whole shard: a Zarr read
    that spans several chunks and fails in one leaves the others pending on Zarr's event loop, and they
    print tracebacks when the process exits."""
    preferred = var.encoding.get("preferred_chunks") or {}
    return tuple(int(preferred.get(d, n)) for d, n in zip(var.dims, var.shape, strict=True))


def guarded(ds: xr.Dataset, store: str, scrub: Callable[[str], str] = redact,
            present: Callable[[str], bool] | None = None) -> xr.Dataset:
    """``ds`` (opened with ``chunks=None``) with every variable but the indexes as dask arrays whose
    reads raise :class:`DataError` naming ``store`` (a display name without credentials) and the variable.

    Args:
        ds: a lazily opened dataset (backend arrays, not dask).
        store: display name for errors.
        scrub: removes the store's secrets from a backend's error message.
        present: ``present(name)`` checks, at a variable's first read, that its data exists
            (:func:`zarr_presence`); ``None`` skips the check.
    """
    variables: dict[str, xr.Variable] = {}
    for name, var in ds.variables.items():
        if name in ds.indexes:
            variables[str(name)] = var
            continue
        source = GuardedArray(var, store, str(name), scrub, present)
        data = dask.array.from_array(source, chunks=_block_shape(var), name=f"read-{name}-{uuid.uuid4().hex}",
                                     lock=False, asarray=False, fancy=False, inline_array=True,
                                     meta=np.empty((0,) * var.ndim, dtype=var.dtype))
        variables[str(name)] = xr.Variable(var.dims, data, var.attrs, var.encoding)
    coords = {str(k): variables[str(k)] for k in ds.coords}
    out = xr.Dataset({str(k): variables[str(k)] for k in ds.data_vars}, coords=coords, attrs=ds.attrs)
    out.encoding = dict(ds.encoding)
    return out
