"""A checked coarse run: the catalog member to downscale, opened lazily and checked against the bundle.

:func:`open_run` opens the member and its grids and refuses what the bundle cannot downscale (another
resolution, a missing predictor, another time step) and periods that are too short or have gaps; every
failure names the store, the variable and the problem. :meth:`RunInput.read_block` reads the raw
predictors of a few frames, checked as the catalog's validation checks them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import cftime
import numpy as np
import xarray as xr

from data_catalog.catalog import Catalog, load_catalog
from data_catalog.errors import DataError
from data_catalog.member_reader import MemberData, open_grid, open_member, open_topography
from data_catalog.schema import TIME
from data_catalog.store_reader import is_precipitation
from data_catalog.validation import check_values, time_step_seconds
from downscale.bundle import BundleError, BundleMetadata, check_inputs, read_bundle_metadata
from downscale.inference.config import GenerateConfig
from downscale.inference.store_schema import COARSE


@dataclass(frozen=True)
class RunInput:
    """A checked coarse run: the member's data restricted to the period, its grids and the bundle."""

    catalog: Catalog
    data: MemberData
    times: np.ndarray                 # cftime, the period's frames
    first: int                        # index of the period's first frame in the member's time axis
    meta: BundleMetadata
    fine_grid: xr.Dataset
    coarse_area: xr.DataArray
    topography: np.ndarray | None

    @property
    def store_names(self) -> str:
        return ", ".join(self.data.stores)

    def over(self, times: np.ndarray) -> RunInput:
        """This run over ``times``, the period a store was planned for: the same first frame, the run's
        frames cut to that many (an input that grew since the plan keeps its later frames for a later run).
        Raises :class:`ValueError` if the run's frames do not begin with ``times``."""
        n = len(times)
        if len(self.times) < n or not all(a == b for a, b in zip(self.times[:n], times, strict=True)):
            raise ValueError(f"{self.store_names}: the input's frames ({self.times[0]} … {self.times[-1]}, "
                             f"{len(self.times)}) no longer begin with the planned ones ({times[0]} … {times[-1]}, "
                             f"{n}); plan the run again")
        return self if len(self.times) == n else replace(self, times=self.times[:n])

    def read_block(self, names: tuple[str, ...], lo: int, hi: int) -> np.ndarray:
        """Raw coarse predictors ``(hi − lo, C, 6, nc, nc)`` float32 of period frames ``lo … hi − 1``, checked as
        :func:`data_catalog.validation.check_values` does (NaN/inf and large negative precipitation refused,
        tiny negatives clipped)."""
        sel = {TIME: slice(self.first + lo, self.first + hi)}
        out = []
        for name in names:
            da = self.data.coarse[name].isel(sel).load()
            da, _ = check_values(da, self.store_names, precipitation=is_precipitation(name, da.attrs))
            out.append(np.asarray(da.values, dtype=np.float32))
        return np.stack(out, axis=1)

    def check_frames(self, lo: int, hi: int, block: int, truth: bool) -> None:
        """Read and check the predictors (and with ``truth`` the fine precipitation) of period frames
        ``lo … hi − 1``, ``block`` frames at a time, as :meth:`read_block` and :meth:`read_truth` do: what
        the work items would refuse is refused before any of them runs."""
        for a in range(lo, hi, block):
            b = min(a + block, hi)
            self.read_block(self.meta.predictors, a, b)
            if truth:
                self.read_truth(a, b)

    def read_truth(self, lo: int, hi: int) -> np.ndarray:
        """The fine precipitation ``(hi − lo, 6, nf, nf)`` float32 kg m-2 s-1 of period frames ``lo … hi − 1``,
        checked as the predictors are (the run must have a fine store)."""
        fine = self.data.fine[self.catalog.precipitation].isel({TIME: slice(self.first + lo, self.first + hi)})
        return np.asarray(check_values(fine.load(), self.store_names, precipitation=True)[0].values, np.float32)


def _parse_time(text: str, calendar: str, field: str) -> cftime.datetime:
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"generate config: {field} {text!r} is not an ISO date like 2016-08-05") from None
    return cftime.datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, calendar=calendar)


def _period(times: np.ndarray, config: GenerateConfig, store_name: str, step: float, frames: int) -> slice:
    """Indices of the configured period; refuses gaps and periods shorter than one clip."""
    calendar = times[0].calendar
    lo = 0 if config.start is None else int(np.searchsorted(times, _parse_time(config.start, calendar, "start")))
    hi = len(times) if config.end is None else int(
        np.searchsorted(times, _parse_time(config.end, calendar, "end"), side="right"))
    chosen = times[lo:hi]
    if len(chosen) < frames:
        raise DataError(store_name, f"the period {config.start or times[0]} … {config.end or times[-1]} holds "
                        f"{len(chosen)} frames; the model needs at least one clip of {frames}", TIME)
    steps = np.array([(b - a).total_seconds() for a, b in zip(chosen[:-1], chosen[1:], strict=True)])
    gaps = np.flatnonzero(steps != step)
    if gaps.size:
        where = ", ".join(f"{chosen[i]} → {chosen[i + 1]}" for i in gaps[:3])
        raise DataError(store_name, f"the period has {gaps.size} gap(s) in time (expected a {step / 3600:g} h step): "
                        f"{where}; downscale each gap-free part separately (start/end)", TIME)
    return slice(lo, hi)


def open_run(config: GenerateConfig) -> RunInput:
    """Open the catalog member lazily and check it against the bundle (module docstring)."""
    meta = read_bundle_metadata(config.bundle)
    catalog = load_catalog(config.catalog)
    res = catalog.resolution
    source = f"catalog '{catalog.name}' member '{config.member}'"
    if res.fine != meta.fine_resolution:
        raise BundleError(f"{source}: fine grid C{res.fine} but bundle {meta.bundle_id} downscales to "
                          f"C{meta.fine_resolution}")
    if COARSE not in meta.predictors:
        raise BundleError(f"bundle {meta.bundle_id}: has no {COARSE} predictor; the baselines and "
                          f"the mass check need the coarse precipitation")
    data = open_member(catalog, config.member, check=False)
    check_inputs(meta, catalog.predictors, res.coarse, time_step_seconds(data.coarse, ", ".join(data.stores)),
                 source)
    times = np.asarray(data.coarse.indexes[TIME])
    period = _period(times, config, ", ".join(data.stores), meta.time_step_seconds, meta.clip_frames)
    grid = open_grid(catalog, "fine")
    topography = open_topography(catalog).values if catalog.static is not None else None
    return RunInput(catalog, data, times[period], period.start, meta, grid, open_grid(catalog, "coarse")["area"],
                    topography)
