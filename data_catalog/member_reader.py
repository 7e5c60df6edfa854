"""Open what a catalog names, per member, standardized and validated.

:func:`open_member` gives the fine target and the coarse predictors of one ensemble member on the
internal form, lazily. Predictors missing from the coarse stores are coarse-grained from the fine
store when it holds the fine variable (``X_coarse`` from ``X``); a member without any coarse store is
thus fully derived from its fine data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import xarray as xr

from data_catalog.catalog import Catalog, StoreRef
from data_catalog.coarsen import coarse_grain
from data_catalog.errors import DataError
from data_catalog.store_reader import is_precipitation, open_store, standardize, standardize_grid
from data_catalog.validation import check_factor, check_resolution, check_same_times, check_values

log = logging.getLogger(__name__)

COARSE_SUFFIX = "_coarse"


@dataclass(frozen=True)
class MemberData:
    """One member on the internal form: ``fine`` holds the target, ``coarse`` the predictors.

    ``fine`` is ``None`` for a coarse run without truth. ``derived`` lists predictors that were
    coarse-grained from fine data; ``stores`` the display names of every store read.
    """

    name: str
    fine: xr.Dataset | None
    coarse: xr.Dataset
    derived: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    clipped_negatives: dict[str, int] = field(default_factory=dict)


def open_grid(catalog: Catalog, which: str) -> xr.Dataset:
    """Grid (``lat, lon, area, latb, lonb``) of the ``fine`` or ``coarse`` resolution.

    Without a grid store in the catalog, the FV3 cube-sphere geometry is computed.
    """
    n = getattr(catalog.resolution, which)
    ref: StoreRef | None = getattr(catalog.grid, which)
    if ref is None:
        from data_catalog.cubesphere import cube_sphere_grid

        return cube_sphere_grid(n)
    return standardize_grid(open_store(ref), ref.display, n).load()


def open_topography(catalog: Catalog) -> xr.DataArray:
    """Fine surface height ``(tile, y, x)`` in m from the catalog's static store."""
    if catalog.static is None:
        raise DataError(f"catalog '{catalog.name}'", "no 'static' store for the fine topography", catalog.topography)
    ref = catalog.static
    ds = standardize(open_store(ref), ref.display, [catalog.topography])
    check_resolution(ds, ref.display, catalog.resolution.fine, "fine")
    da = ds[catalog.topography]
    if "time" in da.dims:
        da = da.isel(time=0, drop=True)
    return da.load()


def _checked(ds: xr.Dataset, store: str, clipped: dict[str, int]) -> xr.Dataset:
    for name in list(ds.data_vars):
        da, report = check_values(ds[name], store, precipitation=is_precipitation(str(name), ds[name].attrs))
        ds[name] = da
        if report.n_clipped_negatives:
            clipped[f"{store}:{name}"] = report.n_clipped_negatives
    return ds


def open_member(catalog: Catalog, name: str, check: bool = True) -> MemberData:
    """Fine target and coarse predictors of member ``name``; lazy unless ``check`` (one pass over values).

    Raises :class:`DataError` for a missing variable, a wrong resolution, time axes that differ,
    duplicate/unsorted times, NaN/inf, large negative precipitation or non-precipitation units.
    """
    stores = catalog.member(name)
    res = catalog.resolution
    clipped: dict[str, int] = {}
    read: list[str] = []

    fine = None
    fine_raw = None
    if stores.fine is not None:
        fine_raw = open_store(stores.fine)
        read.append(stores.fine.display)
        fine = standardize(fine_raw, stores.fine.display, [catalog.precipitation])
        check_resolution(fine, stores.fine.display, res.fine, "fine")
        if check:
            fine = _checked(fine, stores.fine.display, clipped)

    parts: list[xr.Dataset] = []
    wanted = list(catalog.predictors)
    for ref in stores.coarse:
        raw = open_store(ref)
        read.append(ref.display)
        here = [v for v in wanted if v in raw.variables]
        if not here:
            continue
        ds = standardize(raw, ref.display, here)
        check_resolution(ds, ref.display, res.coarse, "coarse")
        if fine is not None:
            check_factor(fine, ds, res.factor, stores.fine.display, ref.display)
            check_same_times(fine, ds, stores.fine.display, ref.display)
        if check:
            ds = _checked(ds, ref.display, clipped)
        parts.append(ds)
        wanted = [v for v in wanted if v not in here]

    derived: list[str] = []
    if wanted:
        derivable = [v for v in wanted if fine_raw is not None and v.removesuffix(COARSE_SUFFIX) in fine_raw.variables]
        missing = [v for v in wanted if v not in derivable]
        if missing:
            where = ", ".join(r.display for r in stores.coarse) or "no coarse store"
            raise DataError(
                where,
                f"predictor(s) not found in member '{name}' ({where}) and no fine variable to coarse-grain them from",
                ", ".join(missing),
            )
        parts.append(_coarse_grain_predictors(catalog, stores.fine, fine_raw, derivable, check, clipped))
        derived = derivable
        log.info("member %s: coarse-grained %s from the fine store", name, ", ".join(derivable))

    coarse = xr.merge(parts, compat="override", join="exact", combine_attrs="drop_conflicts")[list(catalog.predictors)]
    return MemberData(name, fine, coarse, tuple(derived), tuple(read), clipped)


def _coarse_grain_predictors(
    catalog: Catalog, ref: StoreRef, raw: xr.Dataset, names: list[str], check: bool, clipped: dict[str, int]
) -> xr.Dataset:
    fine_names = [v.removesuffix(COARSE_SUFFIX) for v in names]
    fine = standardize(raw, ref.display, fine_names)
    check_resolution(fine, ref.display, catalog.resolution.fine, "fine")
    if check:
        fine = _checked(fine, ref.display, clipped)
    area = open_grid(catalog, "fine")["area"].astype("float64")
    out = {
        c: coarse_grain(fine[f], area, catalog.resolution.factor).rename(c).assign_attrs(
            fine[f].attrs, derived_from=f"{f} coarse-grained (area-weighted block mean) from {ref.display}"
        )
        for c, f in zip(names, fine_names, strict=True)
    }
    return xr.Dataset(out)
