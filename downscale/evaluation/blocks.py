"""Time blocks of whole days, and the running totals that blocks of a record add up to.

Evaluation streams: :func:`~downscale.evaluation.score.compare` reads a store one block of whole calendar days
at a time (:func:`day_blocks`, at most ``max_frames`` frames each), scores it in memory and keeps only running
totals (:class:`Totals`), so a year needs the memory of one block plus the totals, not of the year. Every
statistic is kept in a form that blocks add up to exactly (sums, weighted means with their weights, maxima,
per-day series): scoring a record in one block or in many gives the same numbers to rounding.

Example::

    >>> blocks = day_blocks(ds.time, max_frames=160)       # [slice(0, 160), slice(160, 320), …]
    >>> totals = Totals()
    >>> for b in blocks:
    ...     totals.mean("mse", block_mse(ds.isel(time=b)), weight=b.stop - b.start)
    >>> totals["mse"]                                      # the record's frame-weighted mean
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


def day_blocks(time: xr.DataArray, max_frames: int) -> list[slice]:
    """Consecutive slices of ``time`` (sorted) that each hold whole calendar days and at most ``max_frames``
    frames (a single day longer than that is a block of its own); together they cover the record.

    Example: ``day_blocks(ds.time, 80)  # 10-day blocks of a 3-hourly record``
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    days = np.asarray(time.dt.floor("D").values)
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]]).tolist() + [len(days)]
    blocks, begin = [], 0
    for end, after in zip(starts[1:], starts[2:] + [None]):
        if after is None or after - begin > max_frames:
            blocks.append(slice(begin, end))
            begin = end
    return blocks


def _zero_nan(value: xr.DataArray, weight: Any) -> xr.DataArray:
    """``value · weight`` with 0 where the weight is 0 (an absent season's NaN mean adds nothing)."""
    product = value * weight
    return product.where(xr.DataArray(weight) > 0, 0.0) if isinstance(weight, xr.DataArray) else \
        (product if weight > 0 else xr.zeros_like(value, dtype=np.float64))


class Totals:
    """Named running totals over blocks: weighted means (:meth:`mean`), sums (:meth:`add`), maxima
    (:meth:`maximum`) and pieces kept in order (:meth:`append`); ``totals[name]`` gives the record's value
    (the mean, the sum, the maximum, or the list of pieces)."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._weights: dict[str, Any] = {}
        self._kind: dict[str, str] = {}
        self._pieces: dict[str, list] = {}

    def _check(self, name: str, kind: str) -> bool:
        known = self._kind.setdefault(name, kind)
        if known != kind:
            raise ValueError(f"total {name!r} is a {known}, not a {kind}")
        return name in self._sums or name in self._pieces

    def mean(self, name: str, value: xr.DataArray, weight: float | xr.DataArray) -> None:
        """Add a block's mean ``value`` with its ``weight`` (frames, days, or a count per element)."""
        seen = self._check(name, "mean")
        with xr.set_options(keep_attrs=True):
            part = _zero_nan(value, weight)
            self._sums[name] = self._sums[name] + part if seen else part
            self._weights[name] = self._weights[name] + weight if seen else weight

    def add(self, name: str, value: Any) -> None:
        """Add a block's sum (counts, histograms, weighted sums)."""
        with xr.set_options(keep_attrs=True):
            self._sums[name] = self._sums[name] + value if self._check(name, "sum") else value

    def maximum(self, name: str, value: xr.DataArray) -> None:
        """Keep the element-wise maximum."""
        self._sums[name] = np.fmax(self._sums[name], value) if self._check(name, "maximum") else value

    def append(self, name: str, piece: Any) -> None:
        """Keep a block's piece (a per-day series, the values above a threshold) in block order."""
        if not self._check(name, "pieces"):
            self._pieces[name] = []
        self._pieces[name].append(piece)

    def pop(self, name: str) -> Any:
        """``totals[name]``, forgotten here (a large total handed on is not held twice)."""
        value = self[name]
        for store in (self._sums, self._weights, self._pieces, self._kind):
            store.pop(name, None)
        return value

    def __contains__(self, name: str) -> bool:
        return name in self._kind

    def __getitem__(self, name: str) -> Any:
        kind = self._kind[name]
        if kind == "pieces":
            return self._pieces[name]
        if kind == "mean":
            weight = self._weights[name]
            with xr.set_options(keep_attrs=True):
                if isinstance(weight, xr.DataArray):
                    return self._sums[name] / weight.where(weight > 0)
                return self._sums[name] / weight if weight > 0 else self._sums[name] * np.nan
        return self._sums[name]
