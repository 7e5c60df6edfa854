"""Deterministic baselines written beside the diffusion ensemble, from the same coarse inputs.

Torch functions on cube tensors ``(..., 6, n, n)`` (tile, y, x last), precipitation in kg m-2 s-1:

* :func:`interpolate_baseline` — cube-aware bilinear upsampling with halos
  (:func:`data_catalog.upsample.upsample_coarse`), then a multiplicative, area-weighted mass correction
  so that the area-weighted mean over every ``f × f`` block equals the coarse value.
* :func:`quantile_mapping_baseline` — the interpolation, then empirical quantile mapping
  (:func:`quantile_map`) with a :class:`QuantileTable` fitted on the training climatology: the
  "bias correction" step of BCSD (Wood et al. 2004), without the spatial disaggregation step (the
  interpolation already gives the fine grid).

Quantile mapping. With ``F_s`` the CDF of the interpolated coarse field and ``Q_t`` the quantile function
of the fine truth (both pooled over the training split), a value is mapped to ``Q_t(F_s(x))``. The
table holds the pairs ``(Q_s(p), Q_t(p))`` at probabilities ``p``; :func:`quantile_map` is piecewise
linear between them (monotone), and above the top source quantile it is multiplicative,
``x · Q_t(p_max) / Q_s(p_max)``. The default probabilities resolve the tail: every 0.005 in the body and
20 per decade of ``1 − p`` from 1e-2 down to 1e-6 (:func:`default_probabilities`).

One pooled table (every cell, every training frame, area-weighted: a quantile ``p`` splits the
area × time of the training data, not the number of cells, so cube corners are not over-counted).
Pooled because the synthetic climate has no fixed local biases to correct (its fields are functions of
position and time seen identically at coarse and fine resolution), and a per-cell table needs decades
of data for its tail. To extend it per region, fit one table per region mask — the histograms accept
region weights ``(region, tile, y, x)`` (:func:`downscale.diagnostics.histogram.regional_histograms`),
so all regions cost one pass — and map each cell with the table of its region.

Dry values. Precipitation has a point mass at 0, where the empirical CDF is a step and ``Q_t(F_s(0))``
is ill-defined. Rule: a value is **dry** when it lies in the histograms' zero bin, below
``wet_threshold`` (the bin floor, 1e-10 kg m-2 s-1 = 8.6e-6 mm/day); dry inputs map to exactly 0,
and so do mapped values below ``wet_threshold``. The dry fractions ``p_s`` (source) and ``p_t`` (target)
are knots of the table, so when the interpolation is too often wet (``p_s < p_t``, the usual drizzle of
interpolated fields), its lightest wet values, up to ``Q_s(p_t)``, map to 0 and the mapped dry fraction
is ``p_t``. A deterministic map cannot make dry cells wet: if ``p_s > p_t`` the mapped dry fraction
stays ``p_s``. In general it is ``max(p_s, p_t)``.

Fitting (:func:`fit_quantile_table`) is one streaming dask pass over the split's frames: the coarse
field is interpolated block by block (one store chunk of frames at a time) and every block is binned
into the log-spaced, area-weighted histogram of :mod:`downscale.diagnostics.histogram` (8000 bins from
1e-10 to 1e-1 kg m-2 s-1, relative bin width 0.26 %, which bounds the error of each table quantile);
counts add across blocks and members, so memory does not grow with the number of frames.

Example::

    >>> table = fit_quantile_table(PreparedDataset.open("data/prepared"))
    >>> qm = quantile_mapping_baseline(coarse, 8, area, table)        # (..., 6, 384, 384) from (..., 6, 48, 48)
"""

from __future__ import annotations

import json
from typing import Self

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_catalog.member_reader import COARSE_SUFFIX
from data_catalog.prepare import PreparedDataset
from data_catalog.schema import N_TILES, TILE, TIME, X, Y
from data_catalog.splits import SPLITS
from data_catalog.upsample import upsample_coarse
from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import BIN_DIM, DEFAULT_BINS, LogBins, histogram

#: Histogram bins of the fit: bin 0 = [0, 1e-10) is "dry", then 8000 log bins up to 1e-1 kg m-2 s-1.
FIT_BINS: LogBins = DEFAULT_BINS


def default_probabilities() -> tuple[float, ...]:
    """Body ``0.005, 0.010, …, 0.995`` and tail ``1 − 10^-k`` for k = 2 … 6 in steps of 0.05 (20 per decade)."""
    body = np.linspace(0.005, 0.995, 199)
    tail = 1.0 - np.logspace(-2.0, -6.0, 81)
    return tuple(float(p) for p in np.unique(np.round(np.concatenate([body, tail]), 12)))


# --- interpolation ---------------------------------------------------------------------------------

def interpolate_baseline(coarse: torch.Tensor, factor: int, fine_area: torch.Tensor) -> torch.Tensor:
    """Bilinear, mass-conserving upsampling of precipitation ``coarse (..., 6, nc, nc)`` in kg m-2 s-1
    to ``(..., 6, nc·factor, nc·factor)``, with fine cell ``fine_area (6, nf, nf)`` in m².

    Negative coarse values (unphysical) are clamped to 0 first. Cube-aware bilinear interpolation with
    halos (:func:`~data_catalog.upsample.upsample_coarse`) is a convex combination of coarse and halo
    values on the padded grid, so it never overshoots below 0 (nor above the local maximum). The
    multiplicative correction ``y ← y · c / ⟨y⟩_A`` of upsample_coarse then makes the area-weighted mean
    over each ``factor × factor`` block equal the coarse value ``c``: exactly up to float rounding of the
    input's dtype (measured 8e-8 of the largest coarse value in float32, 2e-16 in float64, C8 → C32),
    and the result is ≥ 0.
    """
    nf = coarse.shape[-1] * factor
    if tuple(fine_area.shape) != (N_TILES, nf, nf):
        raise ValueError(f"interpolate_baseline: fine_area must be ({N_TILES}, {nf}, {nf}) for coarse "
                         f"{tuple(coarse.shape)} and factor {factor}, got {tuple(fine_area.shape)}")
    area = fine_area.to(device=coarse.device, dtype=coarse.dtype)
    return upsample_coarse(coarse.clamp_min(0.0), factor, "bilinear", mass_correct=True,
                           correction="multiplicative", fine_area=area)


# --- the quantile table ----------------------------------------------------------------------------

def _check_monotone(name: str, values: tuple[float, ...], strict: bool) -> None:
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"quantile table: '{name}' has non-finite values")
    steps = np.diff(v)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if bad.size:
        k = int(bad[0])
        order = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(f"quantile table: '{name}' must be {order}, but {name}[{k}] = {v[k]!r} and "
                         f"{name}[{k + 1}] = {v[k + 1]!r}")


class QuantileTable(BaseModel):
    """Empirical quantile mapping from the interpolated coarse field to the fine truth (module docstring).

    ``source[i]`` and ``target[i]`` are the ``probabilities[i]`` quantiles (kg m-2 s-1, area-weighted,
    pooled over every cell and frame of ``split``) of the interpolated coarse field and of the truth.
    Values below ``wet_threshold`` are dry; ``source_dry_fraction`` / ``target_dry_fraction`` are the
    area-weighted fractions of dry values. ``n_values`` counts the fine values of each field fitted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    probabilities: tuple[float, ...]
    source: tuple[float, ...] = Field(description="quantiles of the interpolated coarse field, kg m-2 s-1")
    target: tuple[float, ...] = Field(description="quantiles of the fine truth, kg m-2 s-1")
    wet_threshold: float = Field(FIT_BINS.floor, gt=0, description="values below are dry, kg m-2 s-1")
    source_dry_fraction: float = Field(0.0, ge=0, le=1)
    target_dry_fraction: float = Field(0.0, ge=0, le=1)
    split: str = "train"
    n_values: int = Field(0, ge=0)
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        n = len(self.probabilities)
        if n < 2 or len(self.source) != n or len(self.target) != n:
            raise ValueError(f"quantile table: probabilities, source and target need the same length ≥ 2, got "
                             f"{n}, {len(self.source)}, {len(self.target)}")
        _check_monotone("probabilities", self.probabilities, strict=True)
        if not (0.0 < self.probabilities[0] and self.probabilities[-1] < 1.0):
            raise ValueError(f"quantile table: probabilities must lie in (0, 1), got {self.probabilities[0]!r} … "
                             f"{self.probabilities[-1]!r}")
        for name in ("source", "target"):
            values = getattr(self, name)
            _check_monotone(name, values, strict=False)
            if values[0] < 0:
                raise ValueError(f"quantile table: '{name}' must be ≥ 0 kg m-2 s-1, got {values[0]!r}")
        if not self.source[-1] > 0:
            raise ValueError("quantile table: the top 'source' quantile must be > 0 (it scales the extrapolation "
                             f"above the table), got {self.source[-1]!r}")
        return self

    @property
    def top_ratio(self) -> float:
        """``target[-1] / source[-1]``: the multiplicative map above the top source quantile."""
        return self.target[-1] / self.source[-1]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "QuantileTable":
        return cls.model_validate_json(text)


def quantile_map(x: torch.Tensor, table: QuantileTable) -> torch.Tensor:
    """Map precipitation ``x`` (any shape, kg m-2 s-1) through ``table``; same shape, dtype and device.

    Dry values (``x < wet_threshold``) map to 0. Between the knots ``(0, 0), (source[i], target[i])``
    the map is linear; above ``source[-1]`` it is ``x · target[-1] / source[-1]``. It is monotone
    non-decreasing, continuous except at tied source quantiles, and ≥ 0; mapped values below
    ``wet_threshold`` are set to 0 (module docstring: dry values).
    """
    s = torch.tensor((0.0, *table.source), dtype=x.dtype, device=x.device)
    t = torch.tensor((0.0, *table.target), dtype=x.dtype, device=x.device)
    flat = x.reshape(-1).contiguous()
    hi = torch.searchsorted(s, flat, right=True).clamp(1, s.numel() - 1)    # s[hi-1] ≤ x < s[hi] inside
    lo = hi - 1
    frac = (flat - s[lo]) / (s[hi] - s[lo])
    inside = t[lo] + frac * (t[hi] - t[lo])
    y = torch.where(flat >= s[-1], flat * table.top_ratio, inside).reshape(x.shape)
    dry = (x < table.wet_threshold) | (y < table.wet_threshold)
    return torch.where(dry, torch.zeros_like(y), y)


def quantile_mapping_baseline(coarse: torch.Tensor, factor: int, fine_area: torch.Tensor,
                              table: QuantileTable) -> torch.Tensor:
    """``quantile_map(interpolate_baseline(coarse, factor, fine_area), table)``: ``(..., 6, nc, nc)`` →
    ``(..., 6, nc·factor, nc·factor)``, kg m-2 s-1. Not mass-conserving (quantile mapping changes means)."""
    return quantile_map(interpolate_baseline(coarse, factor, fine_area), table)


# --- fitting ---------------------------------------------------------------------------------------

def _dry_fraction(hist: xr.DataArray) -> float:
    total = float(hist.sum())
    if not total > 0:
        raise ValueError(f"histogram {hist.name!r} is empty: no values to fit a quantile table from")
    return float(hist.isel({BIN_DIM: 0})) / total


def table_from_histograms(source: xr.DataArray, target: xr.DataArray, probabilities: tuple[float, ...] | None = None,
                          split: str = "train", n_values: int = 0, note: str = "") -> QuantileTable:
    """A :class:`QuantileTable` read off two (area-weighted) histograms ``(bin,)`` of the same
    :data:`FIT_BINS`: the source (interpolated coarse field) and the target (fine truth).

    The two dry fractions are added to ``probabilities`` (default :func:`default_probabilities`), so the
    dry/wet transition of both distributions is a knot of the table.
    """
    upper = FIT_BINS.edges()[1:]
    for name, hist in (("source", source), ("target", target)):
        if hist.dims != (BIN_DIM,) or "upper" not in hist.coords or not np.array_equal(hist["upper"].values, upper):
            raise ValueError(f"table_from_histograms: the {name} histogram must be ({BIN_DIM},) on FIT_BINS "
                             f"({FIT_BINS.size} bins from {FIT_BINS.floor:g} kg m-2 s-1), got dims {hist.dims}")
    dry_s, dry_t = _dry_fraction(source), _dry_fraction(target)
    grid = np.asarray(probabilities if probabilities is not None else default_probabilities(), dtype=np.float64)
    knots = np.unique(np.concatenate([grid, [p for p in (dry_s, dry_t) if 0.0 < p < 1.0]]))
    q_s = histogram_quantiles(source, knots).values
    q_t = histogram_quantiles(target, knots).values
    return QuantileTable(probabilities=tuple(knots.tolist()), source=tuple(q_s.tolist()), target=tuple(q_t.tolist()),
                         wet_threshold=FIT_BINS.floor, source_dry_fraction=dry_s, target_dry_fraction=dry_t,
                         split=split, n_values=n_values, note=note)


def _split_frames(prepared: PreparedDataset, split: str) -> dict[str, np.ndarray]:
    """Member → sorted frame indices covered by the clips of ``split`` (for ``train``: exactly
    :meth:`~data_catalog.splits.Splits.training_frames`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    frames: dict[str, set[int]] = {}
    for member, frame in prepared.splits.frames(split):
        frames.setdefault(member, set()).add(frame)
    return {m: np.array(sorted(v), dtype=np.int64) for m, v in sorted(frames.items())}


def _interpolate_block(block: np.ndarray, factor: int, area: np.ndarray) -> np.ndarray:
    """One dask block: coarse ``(t, 6, nc, nc)`` → :func:`interpolate_baseline` ``(t, 6, nf, nf)``, numpy."""
    out = interpolate_baseline(torch.from_numpy(np.ascontiguousarray(block)), factor, torch.from_numpy(area))
    return out.numpy()


def lazy_interpolation(coarse: xr.DataArray, factor: int, area: xr.DataArray) -> xr.DataArray:
    """:func:`interpolate_baseline` of a (dask-backed) ``coarse (time, tile, yc, xc)`` DataArray, lazily,
    one time chunk per task: ``(time, tile, y, x)`` with the fine ``area (tile, y, x)`` in m²."""
    data = coarse.data if isinstance(coarse.data, dsa.Array) else dsa.from_array(coarse.values)
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    nf = coarse.shape[-1] * factor
    fine = dsa.map_blocks(_interpolate_block, data, factor=factor, area=np.asarray(area.values),
                          chunks=(data.chunks[0], (N_TILES,), (nf,), (nf,)), dtype=data.dtype)
    return xr.DataArray(fine, dims=(TIME, TILE, Y, X), name=f"{coarse.name}_interpolated",
                        attrs={"units": "kg m-2 s-1"})


def fit_quantile_table(prepared: PreparedDataset, split: str = "train",
                       probabilities: tuple[float, ...] | None = None,
                       coarse_variable: str | None = None) -> QuantileTable:
    """Fit the pooled, area-weighted :class:`QuantileTable` on the frames of ``split`` (default ``train``).

    Reads each member of the split lazily (store chunks of frames), interpolates the coarse precipitation
    ``coarse_variable`` (default ``{target}_coarse``) with :func:`interpolate_baseline` block by block and
    bins it and the fine target into :data:`FIT_BINS` histograms, in one ``dask.compute``; memory is that
    of a few chunks, whatever the number of frames. Only frames of the split's clips are read.

    Raises:
        ValueError: an unknown split, a split without frames, a member of it without a fine target, or a
            coarse variable that is not a predictor of the dataset.
    """
    m = prepared.manifest
    coarse_name = coarse_variable or f"{m.target}{COARSE_SUFFIX}"
    if coarse_name not in m.predictors:
        raise ValueError(f"fit_quantile_table: '{coarse_name}' is not a predictor of {prepared} "
                         f"(predictors: {', '.join(m.predictors)})")
    frames = _split_frames(prepared, split)
    if not frames:
        raise ValueError(f"fit_quantile_table: split {split!r} of {prepared} has no clips")
    without_target = [e.name for e in m.members if e.name in frames and not e.has_target]
    if without_target:
        raise ValueError(f"fit_quantile_table: members {without_target} of split {split!r} have no fine "
                         f"target {m.target} to fit against")
    area = prepared.fine_area()
    source_hists, target_hists = [], []
    for member, index in frames.items():
        ds = prepared.open_member(member).isel({TIME: index})
        source_hists.append(histogram(lazy_interpolation(ds[coarse_name], m.factor, area), area, FIT_BINS))
        target_hists.append(histogram(ds[m.target], area, FIT_BINS))
    source_hists, target_hists = dask.compute(source_hists, target_hists)
    n_values = int(sum(i.size for i in frames.values())) * N_TILES * m.fine_resolution ** 2
    note = (f"pooled over every cell and frame of the {split} split ({len(frames)} members), area-weighted; "
            f"source = bilinear mass-corrected {coarse_name}, target = {m.target}; histogram bins "
            f"{FIT_BINS.floor:g}..{FIT_BINS.ceiling:g} kg m-2 s-1, {FIT_BINS.bins} log bins")
    return table_from_histograms(sum(source_hists[1:], source_hists[0]), sum(target_hists[1:], target_hists[0]),
                                 probabilities, split=split, n_values=n_values, note=note)
