"""Scores of an ensemble pooled over many batches (and ranks): training validation's share of the report.

:class:`PooledScores` keeps area-weighted sums and histograms that add across batches and ranks, and gives the
report's statistics of everything added, each computed by the one function the report uses:

* ``crps_fair``, ``crps_standard``: ``Σ w · CRPS / Σ w`` over every point, time and clip, the pointwise CRPS
  of :func:`downscale.diagnostics.skill.crps_estimators` — the report's ``crps_fair`` / ``crps_standard``
  (:func:`~downscale.diagnostics.weights.weighted_mean` of the same field);
* ``mae_point``: ``Σ w · |point − truth| / Σ w`` of a deterministic forecast (the report's ``mae``);
* the pooled quantiles of the members and of the truth (every point, time and member, each value counted with
  its cell's area), read off counts on :data:`~downscale.diagnostics.histogram.DEFAULT_BINS` by
  :func:`~downscale.diagnostics.distribution.histogram_quantiles` — the report's ``quantile_value`` curves and
  its PE statistic (bin 0 holds values ``< floor``, :class:`~downscale.diagnostics.histogram.LogBins`).
  :data:`TAIL_QUANTILES` are the ones validation logs.

Weights ``w`` are the cell area (or any positive multiple: the ratios do not change), broadcast to the truth.
Rates in kg m-2 s-1. The whole state is one float64 vector (:attr:`PooledScores.state`), so a distributed
validation sums it over ranks in one reduction.

Example::

    >>> scores = PooledScores()
    >>> scores.update(ensemble, truth, area, point=mean)       # numpy (K, *S), (*S), broadcastable, (*S)
    >>> scores.results()["crps_fair"], scores.quantile_ratios()[0.9999]
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downscale.diagnostics.distribution import histogram_quantiles
from downscale.diagnostics.histogram import BIN_DIM, DEFAULT_BINS, LogBins, weighted_counts
from downscale.diagnostics.skill import crps_estimators
from downscale.diagnostics.uncertainty import quantile_tag

#: The pooled quantiles training validation compares (``val/q999_ratio``, ``val/q9999_ratio``).
TAIL_QUANTILES = (0.999, 0.9999)
_SUMS = ("crps_fair", "crps_standard", "mae_point", "weight", "point_weight")


class PooledScores:
    """Area-weighted CRPS, MAE and tail counts of an ensemble, summed over :meth:`update` calls (module
    docstring). ``bins``: the log bins of the tail counts (the report's by default)."""

    def __init__(self, bins: LogBins = DEFAULT_BINS) -> None:
        self.bins = bins
        self.state = np.zeros(len(_SUMS) + 2 * bins.size)

    def _sums(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(_SUMS, self.state[:len(_SUMS)], strict=True)}

    def counts(self, which: str) -> np.ndarray:
        """The summed counts ``(bins.size,)`` of the ``"ensemble"`` members or of the ``"truth"``."""
        start = len(_SUMS) + {"ensemble": 0, "truth": self.bins.size}[which]
        return self.state[start:start + self.bins.size]

    def update(self, ensemble: np.ndarray, truth: np.ndarray, weights: np.ndarray,
               point: np.ndarray | None = None) -> None:
        """Add ``ensemble (K, *S)``, ``truth (*S)`` and, optionally, a deterministic ``point (*S)`` forecast
        (kg m-2 s-1, finite), each value weighted by ``weights`` (broadcastable to ``S``, e.g. the cell area
        ``(6, n, n)``)."""
        ensemble, truth = np.asarray(ensemble, np.float64), np.asarray(truth, np.float64)
        if ensemble.shape[1:] != truth.shape:
            raise ValueError(f"ensemble {ensemble.shape} (members first) and truth {truth.shape} do not match")
        w = np.broadcast_to(np.asarray(weights, np.float64), truth.shape)
        fair, standard = crps_estimators(np.moveaxis(ensemble, 0, -1), truth)
        n = len(_SUMS)
        self.state[:n] += [np.sum(w * fair), np.sum(w * standard),
                           np.sum(w * np.abs(point - truth)) if point is not None else 0.0,
                           np.sum(w), np.sum(w) if point is not None else 0.0]
        self.state[n:n + self.bins.size] += weighted_counts(ensemble, w[None], self.bins)[0]
        self.state[n + self.bins.size:] += weighted_counts(truth, w[None], self.bins)[0]

    def quantiles(self, which: str, quantiles: tuple[float, ...] = TAIL_QUANTILES) -> dict[float, float]:
        """Pooled quantiles (kg m-2 s-1) of the ``"ensemble"`` or the ``"truth"``, as the report reads them off
        its histogram; NaN when nothing was added."""
        edges = self.bins.edges()
        hist = xr.DataArray(self.counts(which), dims=[BIN_DIM],
                            coords={"lower": (BIN_DIM, edges[:-1]), "upper": (BIN_DIM, edges[1:])})
        values = np.atleast_1d(histogram_quantiles(hist, quantiles).values)
        return {q: float(v) for q, v in zip(quantiles, values, strict=True)}

    def quantile_ratios(self, quantiles: tuple[float, ...] = TAIL_QUANTILES) -> dict[float, float]:
        """The ensemble's pooled quantile / the truth's, per quantile (NaN where the truth's is 0)."""
        p, t = self.quantiles("ensemble", quantiles), self.quantiles("truth", quantiles)
        return {q: p[q] / t[q] if t[q] > 0 else float("nan") for q in quantiles}

    def results(self, quantiles: tuple[float, ...] = TAIL_QUANTILES) -> dict[str, float]:
        """``crps_fair``, ``crps_standard``, ``mae_point`` (kg m-2 s-1; NaN without data or points),
        ``q{tag}_ratio`` per quantile (e.g. ``q9999_ratio``) and ``tail_error`` = mean |ratio − 1|."""
        s = self._sums()
        mean = (lambda key, by: s[key] / s[by] if s[by] > 0 else float("nan"))
        ratios = self.quantile_ratios(quantiles)
        out = {"crps_fair": mean("crps_fair", "weight"), "crps_standard": mean("crps_standard", "weight"),
               "mae_point": mean("mae_point", "point_weight")}
        out |= {f"{quantile_tag(q)}_ratio": r for q, r in ratios.items()}
        out["tail_error"] = float(np.mean([abs(r - 1.0) for r in ratios.values()]))
        return out

    @property
    def empty(self) -> bool:
        """True before anything with a positive weight was added."""
        return not self._sums()["weight"] > 0
