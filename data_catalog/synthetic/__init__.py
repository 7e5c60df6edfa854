"""Synthetic FV3GFS data: 3-hourly precipitation that behaves like weather, in the real store layout.

The embedded default dataset and the test data of the project. Fields are functions of position on
the sphere and time (seamless across tiles, reproducible from a seed, any time computable alone):
moving and ageing large-scale systems, a seasonal ITCZ, storm tracks and dry subtropics, a diurnal
cycle over land, orographic enhancement on a fixed topography, and sub-coarse convective texture that
the coarse fields do not determine. See ``docs/dataset-card.md`` for measured statistics.

Example::

    >>> from data_catalog.synthetic import generate_synthetic, preset
    >>> layout = generate_synthetic(preset("tests"), "/tmp/synthetic")      # doctest: +SKIP
    >>> layout.fine("0001")                                                   # doctest: +SKIP
    PosixPath('/tmp/synthetic/members/0001/sfc_8xdaily_ave.zarr')
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from data_catalog.synthetic.config import PRESETS, SyntheticConfig, preset
from data_catalog.synthetic.stores import SyntheticLayout, layout_for, write_marker, write_stores

__all__ = ["PRESETS", "SyntheticConfig", "SyntheticLayout", "generate_synthetic", "preset"]

log = logging.getLogger(__name__)


def generate_synthetic(config: SyntheticConfig, root: str | Path, overwrite: bool = False) -> SyntheticLayout:
    """Write the synthetic dataset of ``config`` under ``root`` and return its paths.

    A root is complete once its ``synthetic.json`` marker exists (written last). A complete root is
    never touched unless ``overwrite`` (then only the stores and the marker this generator writes are
    replaced; other files in ``root`` stay). An incomplete root (an interrupted run) is resumed: stores
    already written with the same config are kept, half-written ``*.tmp-*`` stores are removed.

    Raises:
        FileExistsError: ``root`` already holds a complete synthetic dataset and ``overwrite`` is false.
    """
    layout = layout_for(config, root)
    if layout.marker.exists():
        if not overwrite:
            raise FileExistsError(
                f"{layout.root}: already holds a complete synthetic dataset ({layout.marker.name}); "
                "pass overwrite=True (CLI: --overwrite) to replace it"
            )
        layout.marker.unlink()
        for sub in ("grid", "static", "members"):
            shutil.rmtree(layout.root / sub, ignore_errors=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = write_stores(config, layout)
    timings["total_s"] = time.perf_counter() - t0
    write_marker(config, layout, timings)
    log.info("synthetic %s: C%d -> C%d, %d members x %d records written to %s in %.1f s", config.name,
             config.coarse_n, config.fine_n, len(config.members), config.n_times, layout.root, timings["total_s"])
    return layout
