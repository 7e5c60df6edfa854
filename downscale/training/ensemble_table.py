"""The ensemble's own quantile-mapping table: what turns the raw members into the ``ensemble_qm`` source.

Quantile mapping (:mod:`downscale.baselines`) maps a value ``x`` to ``Q_t(F_s(x))``, with ``F_s`` the CDF of the
field being mapped and ``Q_t`` the quantile function of the truth, both on the training split. The
quantile-mapping *baseline* fits ``F_s`` on the interpolated coarse field; a table for the *ensemble* must be
fitted on the ensemble's own distribution — the bilinear table applied to the members would map a
distribution it was not fitted on. So, when the bundle is exported:

1. ``clips`` training clips with the fine target are taken, spread evenly over the split (the first, the
   last and equal steps between), each a whole cube sphere;
2. ``members`` raw members of each are sampled with the training's validation sampler (the production
   sampler unless configured otherwise), from the bundled (EMA) weights, before any mass correction;
3. the members' values and the truth of the same frames are binned into the area-weighted
   :data:`~downscale.baselines.FIT_BINS` histograms, and the table is read off them
   (:func:`~downscale.baselines.table_from_histograms`).

``generate`` applies it to each raw member (``ensemble_variants: [qm]``): the mapped members are an extra,
separately named ensemble (``PRATEsfc_ensemble_qm``), never a replacement for the production ensemble.

Cost: ``clips × members`` sampled clips, as many as validation samples for ``clips × members /
ensemble_size`` validation batches. The table's tail knots need enough values: ``clips · T · 6 · n²`` per
member (the table's top probability is 1 − 1e-6).
"""

from __future__ import annotations

import logging

import torch
import xarray as xr

from data_catalog.clips import ClipDataset, collate_clips
from data_catalog.prepare import PreparedDataset
from data_catalog.schema import TILE, X, Y
from downscale.baselines import FIT_BINS, QuantileTable, table_from_histograms
from downscale.dataset_info import DatasetInfo
from downscale.diagnostics.histogram import histogram
from downscale.models.conditioning import build_conditioning
from downscale.models.downscaler import VideoDownscaler
from downscale.training.config import TrainConfig

log = logging.getLogger(__name__)


def _histogram(values: torch.Tensor, area: xr.DataArray) -> xr.DataArray:
    """Area-weighted :data:`FIT_BINS` histogram of ``values (…, 6, n, n)`` kg m-2 s-1."""
    v = values.detach().double().cpu().numpy().reshape(-1, *values.shape[-3:])
    return histogram(xr.DataArray(v, dims=("sample", TILE, Y, X)), area, FIT_BINS)


@torch.no_grad()
def fit_ensemble_quantile_table(net: VideoDownscaler, config: TrainConfig, info: DatasetInfo,
                                prepared: PreparedDataset) -> QuantileTable:
    """The ensemble's quantile-mapping table (module docstring) for the weights in ``net``, with the
    clips and members of ``config.ensemble_quantile_mapping`` and the sampler of ``config.validation``.

    Raises:
        ValueError: ``clips`` is 0, or the training split has no clip with the fine target.
    """
    q, v = config.ensemble_quantile_mapping, config.validation
    if q.clips < 1:
        raise ValueError("fit_ensemble_quantile_table: ensemble_quantile_mapping.clips is 0 (no table wanted)")
    dataset = ClipDataset(prepared, "train", "cube")
    chosen = dataset.spread_with_target(q.clips)
    if not chosen:
        raise ValueError(f"fit_ensemble_quantile_table: the train split of {prepared} has no clip with the fine "
                         f"target")
    area = prepared.fine_area()
    device = next(net.parameters()).device
    generator = torch.Generator(device="cpu")
    generator.manual_seed(v.seed)
    net.eval()
    source = target = None
    for index in chosen:
        batch = collate_clips([dataset[index]])
        cond = build_conditioning(batch["coarse"].to(device), batch["static"].to(device), info.factor, "cube")
        members = net.sample_members(cond, q.members, v.sampler, generator, members_per_batch=v.members_per_batch)
        s = _histogram(info.physical_target(members), area)
        t = _histogram(info.physical_target(batch["target"]), area)
        source, target = (s, t) if source is None else (source + s, target + t)
    frames = len(chosen) * info.clip_frames
    n_values = frames * q.members * 6 * info.fine_resolution ** 2
    note = (f"ensemble: {q.members} raw members (sampler {v.sampler.kind}, {v.sampler.num_steps} steps) on "
            f"{len(chosen)} of {len(dataset)} training clips ({frames} frames), area-weighted, against the truth of "
            f"the same frames; histogram bins {FIT_BINS.floor:g}..{FIT_BINS.ceiling:g} kg m-2 s-1, "
            f"{FIT_BINS.bins} log bins")
    log.info("ensemble quantile-mapping table: %d members on %d training clips", q.members, len(chosen))
    return table_from_histograms(source, target, split="train", n_values=n_values, note=note)
