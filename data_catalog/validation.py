"""Checks on standardized data: values, and the fit of a fine and a coarse dataset.

Every failure raises :class:`~data_catalog.errors.DataError` naming store, variable and problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from data_catalog.errors import DataError
from data_catalog.schema import TIME, X, Y

log = logging.getLogger(__name__)

#: Negative precipitation down to this value (kg m-2 s-1, ≈ 1e-4 mm/day) is model numerics: clipped to 0.
NEGATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ValueReport:
    """What a value check found in one variable."""

    n_values: int
    n_clipped_negatives: int
    minimum: float
    maximum: float


def check_values(da: xr.DataArray, store: str, precipitation: bool) -> tuple[xr.DataArray, ValueReport]:
    """Reject NaN/inf (and large negatives for precipitation); clip tiny negatives to 0.

    One pass over the data (a single dask compute). Returns the (lazily) clipped array and a report.
    """
    name = str(da.name)
    finite = np.isfinite(da)
    n_bad, lo, hi, n_neg = dask.compute(
        (~finite).sum(),
        da.where(finite).min(),
        da.where(finite).max(),
        ((da < 0) & (da >= -NEGATIVE_TOLERANCE)).sum() if precipitation else 0,
    )
    n_bad, n_neg = int(n_bad), int(n_neg)
    if n_bad:
        first = np.argwhere(~finite.values)[0] if da.size < 50_000_000 else None
        where = f"; first at index {dict(zip(da.dims, map(int, first), strict=True))}" if first is not None else ""
        raise DataError(store, f"{n_bad} NaN or infinite values of {da.size}{where}", name)
    lo, hi = float(lo), float(hi)
    if precipitation and lo < -NEGATIVE_TOLERANCE:
        raise DataError(
            store,
            f"negative precipitation down to {lo:.3g} kg m-2 s-1 ({lo * 86400:.3g} mm/day); "
            f"only numerical noise above -{NEGATIVE_TOLERANCE:g} is tolerated (and clipped)",
            name,
        )
    if n_neg:
        log.warning("store %s: variable %s: clipped %d tiny negative values (>= -%g) to 0", store, name, n_neg,
                    NEGATIVE_TOLERANCE)
        da = da.clip(min=0).assign_attrs(da.attrs)
    return da, ValueReport(int(da.size), n_neg, lo, hi)


def check_resolution(ds: xr.Dataset, store: str, n: int, role: str) -> None:
    """Every variable of ``ds`` lies on C-``n`` tiles."""
    for name, da in ds.data_vars.items():
        shape = (da.sizes.get(Y), da.sizes.get(X))
        if shape != (n, n):
            raise DataError(
                store, f"is on {shape[0]}x{shape[1]} tiles but the catalog's {role} grid is C{n} ({n}x{n})", name
            )


def check_factor(fine: xr.Dataset, coarse: xr.Dataset, factor: int, fine_store: str, coarse_store: str) -> None:
    """The fine tiles are exactly ``factor`` times the coarse ones."""
    for dim in (Y, X):
        nf, nc = fine.sizes[dim], coarse.sizes[dim]
        if nf != factor * nc:
            raise DataError(
                f"{fine_store} / {coarse_store}",
                f"fine size {nf} along '{dim}' is not the factor {factor} x the coarse size {nc} "
                f"(= {factor * nc})",
            )


def check_same_times(fine: xr.Dataset, coarse: xr.Dataset, fine_store: str, coarse_store: str) -> None:
    """The coarse and fine time axes are identical (after rounding to the second)."""
    tf, tc = fine.indexes[TIME], coarse.indexes[TIME]
    if len(tf) == len(tc) and (tf == tc).all():
        return
    only_fine, only_coarse = tf.difference(tc), tc.difference(tf)
    detail = []
    if len(only_fine):
        detail.append(f"{len(only_fine)} times only in the fine store (first {only_fine[0]})")
    if len(only_coarse):
        detail.append(f"{len(only_coarse)} times only in the coarse store (first {only_coarse[0]})")
    if not detail:
        detail.append(f"the fine store has {len(tf)} times and the coarse {len(tc)}")
    raise DataError(f"{fine_store} / {coarse_store}", "time axes do not match: " + "; ".join(detail), TIME)


def time_step_seconds(ds: xr.Dataset, store: str) -> float:
    """The most common time step (s); gaps are allowed (clips never span them), irregular steps are not."""
    times = ds.indexes[TIME]
    if len(times) < 2:
        return float("nan")
    steps = np.array([(b - a).total_seconds() for a, b in zip(times[:-1], times[1:], strict=True)])
    step = float(np.median(steps))
    odd = steps[(steps % step) != 0]
    if odd.size:
        raise DataError(store, f"irregular time steps: {sorted(set(odd.tolist()))[:5]} s with a base step {step} s",
                        TIME)
    return step
