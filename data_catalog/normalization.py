"""Normalization of model inputs and targets: a log transform for precipitation, then standardization.

Precipitation (the fine target ``PRATEsfc`` and precipitation predictors such as ``PRATEsfc_coarse``,
``CPRATsfc_coarse``), in kg m-2 s-1, is first log-transformed as in STVD (Srivastava et al. 2024),

    z = log1p(P / ε) = log(P + ε) − log ε,     ε = 1 mm/day = 1 / 86400 kg m-2 s-1 ≈ 1.157e-5,

then every variable (transformed precipitation, other predictors, ``zsurf``) is standardized,

    x̂ = (z − μ) / σ,

with μ, σ the mean and standard deviation over the **training split only** (see
:func:`compute_stats`). The inverse is ``P = ε · expm1(σ x̂ + μ)``.

Why ε = 1 mm/day: below ε the transform is linear (``z ≈ P/ε``), above it logarithmic, so relative
errors from moderate rain (10 mm/day → z ≈ 2.4) to extremes (1000 mm/day → z ≈ 6.9) weigh alike, while
the contrast between dry and light rain (0 … 1 mm/day, z 0 … 0.7) stays small. With the earlier
ε = 0.1 mm/day that contrast spanned z 0 … 2.4 and dominated the log-space variance the diffusion learns:
on the ``skill`` benchmark (same network, steps and seed; docs/skill.md) its samples came out too wet in
light rain (raw area-mean bias +11.9 %) and grainy (fine-scale power +0.42 per tile, SAE
1.11× the best baseline); with ε = 1 mm/day they give +2.1 %, −0.11 and 0.34×, with the CRPS, tails and
Brier scores as good or better. Drizzle and numerical noise (1e-9 … 1e-7 kg m-2 s-1) stay in the linear part.
``log1p`` rather than ``log(P + ε)``: the same transform up to the
constant ``log ε`` (which standardization removes), but dry cells map to exactly 0 and ``expm1`` inverts
small values without cancellation.

Statistics are a small JSON document (:class:`NormalizationStats`), so they travel into the model
bundle. :meth:`NormalizationStats.normalize` / :meth:`~NormalizationStats.denormalize` are exact
inverses on numpy arrays, torch tensors and xarray objects (dtype kept; exact up to float rounding).

Example::

    >>> stats = NormalizationStats.from_json(path.read_text())
    >>> y = stats.normalize("PRATEsfc", precip)          # numpy, torch or xarray
    >>> precip_again = stats.denormalize("PRATEsfc", y)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator

from data_catalog.schema import SECONDS_PER_DAY

log = logging.getLogger(__name__)

#: Log-transform offset ε of precipitation: 1 mm/day in kg m-2 s-1 (module docstring).
PRECIPITATION_EPSILON = 1.0 / SECONDS_PER_DAY

#: A standard deviation below this (in transformed units) is treated as a constant field: σ := 1.
_MIN_STD = 1e-12

Transform = Literal["log1p", "identity"]


class VariableStats(BaseModel):
    """How one variable is normalized: ``x̂ = (T(x) − mean) / std``, ``T = log1p(x/epsilon)`` or identity.

    ``mean``/``std`` are in transformed units; ``minimum``/``maximum`` are of the raw values (for
    information); ``count`` is the number of values the statistics were computed from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    transform: Transform
    epsilon: float | None = Field(default=None, description="log-transform offset in kg m-2 s-1")
    mean: float
    std: float = Field(gt=0)
    minimum: float | None = None
    maximum: float | None = None
    count: int = 0
    units: str | None = None

    @field_validator("epsilon")
    @classmethod
    def _positive_epsilon(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError(f"log-transform offset epsilon must be > 0 kg m-2 s-1, got {v}")
        return v

    def model_post_init(self, _: Any) -> None:
        if self.transform == "log1p" and self.epsilon is None:
            raise ValueError("a log1p transform needs its offset 'epsilon' (kg m-2 s-1)")


class NormalizationStats(BaseModel):
    """Per-variable normalization statistics; a JSON document (``to_json`` / ``from_json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variables: dict[str, VariableStats]
    split: str = "train"
    note: str = ""

    def __getitem__(self, name: str) -> VariableStats:
        try:
            return self.variables[name]
        except KeyError:
            raise KeyError(
                f"no normalization statistics for '{name}' (have: {', '.join(self.variables)})"
            ) from None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NormalizationStats":
        return cls.model_validate_json(text)

    def normalize(self, name: str, x):
        """``(T(x) − mean) / std`` of variable ``name``; ``x`` a numpy array, torch tensor or xarray object."""
        s = self[name]
        z = _log1p(x / s.epsilon) if s.transform == "log1p" else x
        return (z - s.mean) / s.std

    def denormalize(self, name: str, y):
        """The exact inverse of :meth:`normalize`: ``T⁻¹(std · y + mean)``, ``T⁻¹(z) = ε · expm1(z)``."""
        s = self[name]
        z = y * s.std + s.mean
        return _expm1(z) * s.epsilon if s.transform == "log1p" else z

    def normalize_(self, name: str, x: np.ndarray) -> np.ndarray:
        """In-place :meth:`normalize` of a float numpy array, for data loaders (no temporaries).

        Computes ``log(1 + P/ε)`` with the SIMD ``log`` (6× faster than ``log1p`` on float32): the
        absolute error of ``z`` is at most one float32 rounding of ``1 + P/ε`` (≤ 6e-8), no more than
        storing ``z`` in float32 costs anyway.
        """
        s = self[name]
        if s.transform == "log1p":
            np.multiply(x, 1.0 / s.epsilon, out=x)
            x += x.dtype.type(1)
            np.log(x, out=x)
        x -= x.dtype.type(s.mean)
        x *= x.dtype.type(1.0 / s.std)
        return x


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _log1p(x):
    if _is_torch(x):
        import torch

        return torch.log1p(x)
    return np.log1p(x)  # numpy, and xarray through __array_ufunc__


def _expm1(x):
    if _is_torch(x):
        import torch

        return torch.expm1(x)
    return np.expm1(x)


def _variable_stats(transform: Transform, epsilon: float | None, units: str | None,
                    mean: float, std: float, lo: float, hi: float, count: int, name: str) -> VariableStats:
    if not np.isfinite(std) or std < _MIN_STD:
        log.warning("variable %s is constant over the training data (std %.3g): std set to 1", name, std)
        std = 1.0
    return VariableStats(transform=transform, epsilon=epsilon, mean=float(mean), std=float(std),
                         minimum=float(lo), maximum=float(hi), count=int(count), units=units)


def _pool(sizes: Sequence[int], pieces: Sequence[tuple[float, float, float, float]]
          ) -> tuple[float, float, float, float, int]:
    """Pool per-piece (mean, variance, min, max) of ``sizes`` values each (Chan et al. parallel variance):
    returns mean, std, min, max, count of all values together."""
    n = np.asarray(sizes, dtype=np.float64)
    means = np.array([p[0] for p in pieces], dtype=np.float64)
    variances = np.array([p[1] for p in pieces], dtype=np.float64)
    total = n.sum()
    mean = float((n * means).sum() / total)
    m2 = float((n * variances).sum() + (n * (means - mean) ** 2).sum())
    lo = min(float(p[2]) for p in pieces)
    hi = max(float(p[3]) for p in pieces)
    return mean, float(np.sqrt(m2 / total)), lo, hi, int(total)


def compute_stats(
    fields: Mapping[str, Sequence[xr.DataArray]],
    precipitation: Sequence[str],
    epsilon: float = PRECIPITATION_EPSILON,
    static: Mapping[str, xr.DataArray] | None = None,
    identity: Sequence[str] = (),
    split: str = "train",
) -> NormalizationStats:
    """Mean and std (after the log transform for ``precipitation`` names) in one out-of-core dask pass.

    Args:
        fields: variable name → the pieces to pool (e.g. one lazily selected ``(time, tile, y, x)``
            array of training frames per training member). Dask-backed arrays are reduced chunk by chunk
            and every piece is read once for all statistics (one ``dask.compute``).
        precipitation: names that are precipitation rates in kg m-2 s-1 (log-transformed first).
        epsilon: the log-transform offset ε in kg m-2 s-1.
        static: time-independent fields (e.g. ``zsurf (tile, y, x)``) standardized as they are.
        identity: names passed through unchanged (mean 0, std 1), e.g. unit-vector geometry features.
        split: the split the statistics come from (recorded).
    """
    names, lazy = [], []
    for name, pieces in list(fields.items()) + [(k, [v]) for k, v in (static or {}).items()]:
        pieces = [p for p in pieces if p.size]
        if not pieces:
            raise ValueError(f"no {split} data to compute normalization statistics of '{name}' from")
        per_piece = []
        for piece in pieces:
            raw = piece.data if isinstance(piece.data, dask.array.Array) else dask.array.from_array(piece.values)
            raw = raw.astype(np.float64)
            z = dask.array.log1p(raw / epsilon) if name in precipitation else raw
            per_piece.append((z.mean(), z.var(), raw.min(), raw.max()))
        names.append(name)
        lazy.append(([p.size for p in pieces], per_piece, pieces[0].attrs.get("units")))
    results = dask.compute([item[1] for item in lazy])[0]
    variables = {
        name: _variable_stats("log1p" if name in precipitation else "identity",
                              epsilon if name in precipitation else None, units,
                              *_pool(sizes, res), name)
        for name, (sizes, _, units), res in zip(names, lazy, results, strict=True)
    }
    for name in identity:
        variables[name] = VariableStats(transform="identity", mean=0.0, std=1.0)
    return NormalizationStats(
        variables=variables, split=split,
        note=f"log1p(P/epsilon) with epsilon = {epsilon:.6g} kg m-2 s-1 for precipitation; "
             f"mean/std over the {split} split",
    )
