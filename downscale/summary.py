"""A plain-text summary of a catalog after opening, standardizing and validating every member."""

from __future__ import annotations

from pathlib import Path

from data_catalog.catalog import load_catalog
from data_catalog.member_reader import open_member, open_topography
from data_catalog.schema import TIME
from data_catalog.validation import time_step_seconds


def summarize_catalog(path: str | Path, check_values: bool = True) -> str:
    """Open every member of the catalog at ``path`` (raising on bad input) and describe what was found."""
    catalog = load_catalog(path)
    res = catalog.resolution
    lines = [
        f"catalog {catalog.name}: C{res.coarse} -> C{res.fine} (factor {res.factor}), {len(catalog.members)} member(s)",
        f"  target {catalog.precipitation}; predictors {', '.join(catalog.predictors)}",
    ]
    if catalog.static is not None:
        z = open_topography(catalog)
        lines.append(f"  {catalog.topography}: {float(z.min()):.0f} .. {float(z.max()):.0f} m")
    for name in catalog.members:
        m = open_member(catalog, name, check=check_values)
        ref = m.fine if m.fine is not None else m.coarse
        times = ref.indexes[TIME]
        step = time_step_seconds(ref, m.stores[0]) / 3600
        truth = "with fine truth" if m.fine is not None else "coarse only"
        lines.append(
            f"  member {name}: {len(times)} times {times[0]} .. {times[-1]} every {step:g} h, {truth}"
            + (f"; coarse-grained from fine: {', '.join(m.derived)}" if m.derived else "")
        )
        for store, n in m.clipped_negatives.items():
            lines.append(f"    clipped {n} tiny negative values in {store}")
    lines.append("all stores valid" + (" (values checked)" if check_values else " (values not checked)"))
    return "\n".join(lines)
