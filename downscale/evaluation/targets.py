"""The validation targets: what a downscaled ensemble must achieve, each checked on one scalar of one source.

Each target (:data:`TARGETS`) is checked on one source — the ensemble (what it must achieve relative to the best
deterministic baseline: ``{metric}_ratio`` = metric / that baseline's, lower is better; or relative to the
truth's own value: ``{metric}_vs_truth``), except the area-mean bias, which is checked on the raw ensemble
(``ensemble_raw``): the mass-corrected ensemble's is zero by construction. Values are in the stored units of
:func:`downscale.evaluation.score.compare` (``relative_bias`` a fraction). The report shows the checks
(:mod:`downscale.report.tables`); ``bench/skill.py`` checks the same table.

Example::

    >>> t = TARGETS["crps_fair_ratio"]
    >>> t.check(float(scalars.crps_fair_ratio.sel(source=target_source(scalars, t), region="global")))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import xarray as xr


@dataclass(frozen=True)
class Target:
    """A validation target on one scalar of one source: its text and the check of a value (stored units)."""

    text: str
    check: Callable[[float], bool]
    source: str = "ensemble"


#: scalar → its target (checked on ``Target.source``).
TARGETS: dict[str, Target] = {
    "crps_fair_ratio": Target("≤ 0.75", lambda v: v <= 0.75),
    "crps_standard_ratio": Target("≤ 0.85", lambda v: v <= 0.85),
    "pe_ratio": Target("≤ 0.5", lambda v: v <= 0.5),
    "emd_ratio": Target("≤ 0.5", lambda v: v <= 0.5),
    "sae_ratio": Target("≤ 0.7", lambda v: v <= 0.7),
    "spread_skill": Target("0.8 – 1.2", lambda v: 0.8 <= v <= 1.2),
    "seam_ratio_vs_truth": Target("≤ 1.05", lambda v: v <= 1.05),
    "coarse_imprint_vs_truth": Target("≤ 1.05", lambda v: v <= 1.05),
    "relative_bias": Target("|·| ≤ 10 % (raw ensemble)", lambda v: abs(v) <= 0.10, source="ensemble_raw"),
}


def target_source(scalars: xr.Dataset, target: Target) -> str:
    """The source ``target`` is checked on: its own, or the ensemble when the store has no such source (e.g. no
    raw variant: mass correction off, or a store written before variants existed — the ensemble is raw then)."""
    return target.source if target.source in scalars.source.values else "ensemble"
