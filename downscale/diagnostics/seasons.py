"""Seasons of a record and what is counted per season: which days belong to DJF/MAM/JJA/SON, how many days of
each season the record holds, wet-day fractions and dry spells per season, and day-block bootstrap indices.

Season of a day: its calendar month (DJF = December, January, February …). The *season year* of a day is its
calendar year, except December, which opens the next year's winter: December 2016 and January–February
2017 form the DJF of 2017. A season is *absent* from a record that holds none of its days; a record of 20
August days holds JJA only (:func:`season_days` says how many days of each season are there, so a report can
mark a partial season).

Dry spells are runs of consecutive days with a total ≤ the wet-day threshold (1 mm); a spell belongs to the
season of its first day, and a spell cut by the record's end is counted at the length it has.

Example::

    >>> season_index(daily.time)                    # 0 DJF, 1 MAM, 2 JJA, 3 SON per day
    >>> spell_lengths(np.array([1, 1, 0, 1, 0, 0, 0]) > 0)
    (array([0, 3]), array([2, 1]))
    >>> seasonal_dry_spells(daily_totals(truth), area)   # (season, spell_length) relative counts
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downscale.diagnostics.dims import TIME_DIM, require_dims
from downscale.diagnostics.histogram import reduce_blocks

SEASONS = ("DJF", "MAM", "JJA", "SON")
#: Month (1..12) → index in :data:`SEASONS`.
MONTH_SEASON = np.array([-1, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])
WET_DAY_MM = 1.0


def _months(time: xr.DataArray) -> np.ndarray:
    return np.asarray(time.dt.month.values, dtype=np.int64)


def season_index(time: xr.DataArray) -> np.ndarray:
    """Index in :data:`SEASONS` (0 DJF … 3 SON) of each time (cftime or numpy datetimes)."""
    return MONTH_SEASON[_months(time)]


def season_year(time: xr.DataArray) -> np.ndarray:
    """The year each time's season belongs to: its calendar year, December's the next one (DJF spans the
    turn of the year)."""
    return np.asarray(time.dt.year.values, dtype=np.int64) + (_months(time) == 12)


def season_days(time: xr.DataArray) -> xr.DataArray:
    """Number of calendar days of each season that ``time`` touches, dim ``season`` (0: the season is absent).

    Example: ``season_days(ds.time).sel(season="JJA")  # 92 for a whole summer``
    """
    days = np.unique(np.asarray(time.dt.floor("D").values))
    index = season_index(xr.DataArray(days, dims="day"))
    counts = np.bincount(index, minlength=len(SEASONS))
    return xr.DataArray(counts, dims="season", coords={"season": list(SEASONS)}, name="season_days",
                        attrs={"units": "days"})


def seasonal_means(series: np.ndarray, season: np.ndarray) -> np.ndarray:
    """Mean of ``series (..., day)`` over the days of each season (``season (day,)`` from
    :func:`season_index`): ``(..., 4)``, NaN for an absent season."""
    series = np.asarray(series, dtype=np.float64)
    out = np.full(series.shape[:-1] + (len(SEASONS),), np.nan)
    for s in range(len(SEASONS)):
        if np.any(season == s):
            out[..., s] = np.nanmean(series[..., season == s], axis=-1)
    return out


def spell_lengths(dry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths (days) of the runs of True in a 1-D boolean series.

    Example: ``spell_lengths(np.array([True, True, False, True]))  # (array([0, 3]), array([2, 1]))``
    """
    d = np.concatenate([[False], np.asarray(dry, dtype=bool), [False]]).astype(np.int8)
    edges = np.diff(d)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return starts, ends - starts


def _seasonal_spell_counts(dry: np.ndarray, weights: np.ndarray, season: np.ndarray, max_length: int) -> np.ndarray:
    """(R, 4 · max_length) weighted counts of dry-spell lengths per season of the spell's first day, in a
    block with time last (:class:`DrySpellCounter` over the whole block); lengths above ``max_length`` are
    counted in the last bin."""
    w = np.broadcast_to(weights, (weights.shape[0],) + dry.shape)[..., 0]
    counter = DrySpellCounter(w.reshape(w.shape[0], -1), max_length)
    counter.add(dry > 0, season)
    return counter.counts().reshape(w.shape[0], -1)


class DrySpellCounter:
    """Area-weighted counts of dry-spell lengths by the season of the spell's first day, fed the dry days of a
    record in consecutive pieces (a spell that spans two pieces counts once, at its whole length).

    ``weights (R, *cells)`` (R weight sets, e.g. regions); :meth:`add` takes ``dry (*lead, *cells, day)``
    (booleans; lead dims such as members pooled) and the ``season (day,)`` index of each day;
    :meth:`counts` gives ``(R, 4, max_length)`` with the spells still open counted at the length they have.

    Example::

        >>> counter = DrySpellCounter(area[None], max_length=60)
        >>> for piece in pieces: counter.add(piece <= 1.0, season_index(piece.time))
        >>> counter.counts()[0].sum(0)        # every spell of the record by length
    """

    def __init__(self, weights: np.ndarray, max_length: int) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1 day, got {max_length}")
        self.weights = np.asarray(weights, dtype=np.float64)
        self.max_length = max_length
        self._closed = np.zeros((self.weights.shape[0], len(SEASONS), max_length))
        self._run: np.ndarray | None = None      # (lead · cells,) length of the spell open so far (0: none)
        self._start: np.ndarray | None = None    # (lead · cells,) season of its first day
        self._w = np.empty(0)

    def _count(self, out: np.ndarray, rows: np.ndarray) -> None:
        """Count the spells of ``rows`` (open or just ended) into ``out``."""
        length = np.minimum(self._run[rows], self.max_length) - 1
        np.add.at(out, (slice(None), self._start[rows], length), self._w[:, rows])

    def add(self, dry: np.ndarray, season: np.ndarray) -> None:
        """Count the spells that end within ``dry`` and carry the open ones on."""
        dry = np.asarray(dry, dtype=bool)
        flat = dry.reshape(-1, dry.shape[-1])                                # (lead · cells, day)
        if self._run is None:
            sets = self.weights.reshape(self.weights.shape[0], -1)
            self._w = np.tile(sets, (1, flat.shape[0] // sets.shape[1]))     # lead dims first, cells last
            self._run = np.zeros(flat.shape[0], dtype=np.int64)
            self._start = np.zeros(flat.shape[0], dtype=np.int64)
        for t, s in enumerate(np.asarray(season, dtype=np.int64)):
            d = flat[:, t]
            ended = np.flatnonzero(~d & (self._run > 0))
            if ended.size:
                self._count(self._closed, ended)
            self._start[d & (self._run == 0)] = s
            self._run = np.where(d, self._run + 1, 0)

    def counts(self) -> np.ndarray:
        """``(R, 4, max_length)``: the spells so far, the open ones at their length to date."""
        out = self._closed.copy()
        if self._run is not None:
            self._count(out, np.flatnonzero(self._run > 0))
        return out


def seasonal_dry_spells(daily: xr.DataArray, weights: xr.DataArray | None = None, threshold_mm: float = WET_DAY_MM,
                        max_length: int = 60, time_dim: str = TIME_DIM) -> xr.DataArray:
    """Area-weighted counts of dry-spell lengths (days ≤ ``threshold_mm``) by the season of the spell's
    first day: ``([region,] season, spell_length)``, ``spell_length`` = 1..``max_length`` days (the last holds
    every longer spell), pooled over cells and members. ``daily`` in mm/day (``daily_totals``). On dask the
    time axis is gathered into one chunk per spatial block. NaN days break a spell.

    Example: ``mean_spell_length(seasonal_dry_spells(daily_totals(truth), area))  # (season,) days``
    """
    require_dims(daily, [time_dim], "seasonal_dry_spells")
    season = season_index(daily[time_dim])
    order = [d for d in daily.dims if d != time_dim] + [time_dim]
    dry = (daily <= threshold_mm).astype(np.int8).transpose(*order)
    if dry.chunks is not None:
        dry = dry.chunk({d: ("auto" if d != time_dim else -1) for d in dry.dims})
    counts, extra = reduce_blocks(lambda v, w: _seasonal_spell_counts(v, w, season, max_length), dry, weights,
                                  len(SEASONS) * max_length)
    counts = counts.reshape((counts.shape[0], len(SEASONS), max_length))
    coords = {"season": list(SEASONS), "spell_length": np.arange(1, max_length + 1)}
    if extra is None:
        out = xr.DataArray(counts[0], dims=("season", "spell_length"), coords=coords)
    else:
        coords[extra] = weights[extra].values
        out = xr.DataArray(counts, dims=(extra, "season", "spell_length"), coords=coords)
    return out.rename("dry_spell_counts").assign_attrs(units="m2" if weights is not None else "1",
                                                       threshold_mm_day=threshold_mm)


def mean_spell_length(counts: xr.DataArray) -> xr.DataArray:
    """Mean spell length (days) of spell-length counts over ``spell_length`` (NaN without any spell)."""
    total = counts.sum("spell_length")
    return ((counts * counts.spell_length).sum("spell_length") / total.where(total > 0)).assign_attrs(units="days")


def block_bootstrap_days(n_days: int, block_days: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_days)`` day indices of a circular block bootstrap: blocks of ``block_days`` consecutive
    days drawn with replacement (wrapping at the end) until ``n_days`` days are drawn. Blocks keep the
    day-to-day persistence of weather that independent days would break.

    Example: ``series[..., block_bootstrap_days(365, 5, 200)].mean(-1)  # 200 resampled annual means``
    """
    if n_days < 1 or n_boot < 1 or block_days < 1:
        raise ValueError(f"need n_days, n_boot and block_days >= 1, got {n_days}, {n_boot}, {block_days}")
    block = min(block_days, n_days)
    n_blocks = -(-n_days // block)
    starts = np.random.default_rng(seed).integers(0, n_days, size=(n_boot, n_blocks))
    index = (starts[..., None] + np.arange(block)) % n_days
    return index.reshape(n_boot, -1)[:, :n_days]
