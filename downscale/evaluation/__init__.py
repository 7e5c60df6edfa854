"""Evaluation: the one owner of how downscaled precipitation is scored. It composes the metric functions of
:mod:`downscale.diagnostics` (pure, area-weighted, streaming) into the score of an output store, and holds what
every consumer must agree on:

* :mod:`~downscale.evaluation.regions` — the named regions (one definition each; the report's zoom maps too);
* :mod:`~downscale.evaluation.score` — :func:`compare`: every metric of every source of a store, on the report's
  bins (:data:`~downscale.diagnostics.histogram.DEFAULT_BINS`) and regions;
* :mod:`~downscale.evaluation.results` — the diagnostics folder: its files, writer and reader;
* :mod:`~downscale.evaluation.evaluate` — :func:`evaluate`: open a store, score it, write the folder atomically;
* :mod:`~downscale.evaluation.targets` — the pass/miss validation targets;
* :mod:`~downscale.evaluation.pooled` — :class:`PooledScores`: the report's CRPS and tail-quantile statistic
  summed over batches and ranks, for training validation.

Consumers: ``downscale evaluate`` and the pipeline's evaluate stage, :mod:`downscale.report` (which only
renders a diagnostics folder), training validation and ``bench/skill.py``.

Example::

    >>> from downscale.evaluation.evaluate import evaluate
    >>> from downscale.evaluation.results import read_diagnostics
    >>> evaluate("outputs.zarr", "diagnostics/")
    >>> read_diagnostics("diagnostics/").scalars.crps_fair_ratio.sel(source="ensemble", region="global")

The package itself imports nothing, so that training (which needs only :mod:`~downscale.evaluation.pooled`)
does not load the store readers; import from the submodules.
"""
