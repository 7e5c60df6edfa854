"""A tiny ensemble output store for the report tests (a uniquely named module: test files import it directly),
written by the real store writer (:mod:`downscale.inference.store`, as ``downscale generate`` does): C16 from
C8, 12 days 3-hourly, 3 members ``0001…0003``, an ensemble variant (``ensemble_raw``), two baselines, truth,
coarse input, per-frame seeds, cell corners, ``factor``, ``window_joins`` and provenance attributes named as
``generate`` names them (the sampler's from :meth:`SamplerConfig.attrs`)."""

from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from data_catalog.coarsen import coarse_grain
from data_catalog.cubesphere import cell_centre_unit_vectors, cube_sphere_grid
from downscale.inference.store import create_store, finalize_store, write_item
from downscale.inference.store_plan import plan_items
from downscale.inference.store_schema import OutputSpec
from downscale.models.samplers import PRODUCTION_SAMPLER

N, FACTOR, NT, K = 16, 2, 8 * 12, 3
WINDOW = 8                                 # frames per generated window: joins at 8, 16, …
SEED = 11
#: Provenance as ``generate`` writes it (a subset), shown verbatim in the report's provenance table.
PROVENANCE = {"bundle_id": "bundle-test-0001", "input_catalog": "c8-test", "input_member": "0001", "members": K,
              "seed": SEED, "sampler_kind": PRODUCTION_SAMPLER.kind, "sampler_num_steps": PRODUCTION_SAMPLER.num_steps,
              "window_frames": WINDOW, "mass_correction": "true"}


def _times(n: int) -> np.ndarray:
    t0 = cftime.DatetimeJulian(2017, 1, 1)
    return np.array([t0 + np.timedelta64(i * 3 * 3600, "s").item() for i in range(n)])


def _fields(grid: xr.Dataset) -> dict[str, np.ndarray]:
    """Truth, coarse input, members, raw members and the two baselines, kg m-2 s-1, float32."""
    rng = np.random.default_rng(7)
    v = cell_centre_unit_vectors(N)
    pattern = 1.2 + np.sin(2.0 * v[..., 0]) + v[..., 1] * v[..., 2]
    truth = (np.clip(pattern, 0.1, None)[None] * rng.gamma(0.6, 3e-5, size=(NT, 6, N, N))).astype(np.float32)
    truth[rng.random(truth.shape) < 0.3] = 0.0
    coarse = coarse_grain(xr.DataArray(truth, dims=("time", "tile", "y", "x")),
                          grid.area.drop_vars("tile"), FACTOR).values.astype(np.float32)
    members = truth[None] * rng.lognormal(0.0, 0.5, size=(K,) + truth.shape).astype(np.float32)
    return {"truth": truth, "coarse": coarse, "members": members, "raw": members * np.float32(1.1),
            "deterministic": truth * np.float32(0.9) + np.float32(2e-6),
            "bilinear": np.repeat(np.repeat(coarse, FACTOR, -2), FACTOR, -1) * np.float32(1.05)}


def write_output_store(path: Path) -> Path:
    """Write the store to ``path`` through the store writer, finalized, and return it."""
    grid = cube_sphere_grid(N)
    f = _fields(grid)
    spec = OutputSpec(members=tuple(f"{k + 1:04d}" for k in range(K)), times=_times(NT), grid=grid,
                      coarse_area=cube_sphere_grid(N // FACTOR).area, factor=FACTOR,
                      baselines=("bilinear", "deterministic"), has_truth=True, time_block=NT // 2, member_block=K,
                      attrs={**PROVENANCE, **PRODUCTION_SAMPLER.attrs()}, ensemble_variants=("raw",))
    create_store(path, spec)
    for item in plan_items(spec):
        t = item.frames
        seeds = SEED * 1000 + np.arange(K)[:, None] * NT + np.arange(t.start, t.stop)[None]
        write_item(path, spec, item, f["members"][:, t], seeds,
                   deterministic={b: f[b][t] for b in spec.baselines}, truth=f["truth"][t], coarse=f["coarse"][t],
                   variants={"raw": f["raw"][:, t]})
    finalize_store(path, spec, {"window_joins": list(range(WINDOW, NT, WINDOW))})
    return path
