"""How the pipeline's processes log: the one place the command line (``downscale``), the Prefect flows
(``flows.pipeline``) and the training script set it up.

* every line has a timestamp: ``2026-12-04 18:02:11 INFO downscale.stages: train: run — …``;
* credentials are masked in every record (:func:`data_catalog.redaction.install_log_redaction`);
* Python warnings become log records (``py.warnings``);
* library noise that tells a user of this pipeline nothing is dropped here, and only here
  (:data:`QUIET_WARNINGS`, :data:`QUIET_RECORDS`, :data:`QUIET_BELOW_WARNING`); Zarr's note that consolidated metadata is not part of
  the Zarr v3 specification is silenced where our writers consolidate on purpose
  (:func:`data_catalog.zarr_metadata.consolidated_v3`), and the coastline file is read without the
  attribute table pyshp would comment on (:func:`downscale.plots.globe.load_coastlines`);
* Lightning's loggers lose the console handler Lightning gives them at import and pass their records
  to ours, so each Lightning line is printed once (:func:`share_lightning_logs`, called by the trainer
  once Lightning is imported).
"""

from __future__ import annotations

import logging
import warnings

from data_catalog.redaction import install_log_redaction

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Warnings dropped: (category, start of the message as a regular expression, why it says nothing to a user).
QUIET_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "Lightning's own use of a torch API torch deprecated (lightning/pytorch/utilities/_pytree.py)"),
)

#: Log records dropped: logger name → starts of their messages. Lightning advertises its cloud logger
#: at every ``Trainer`` it builds.
QUIET_RECORDS: dict[str, tuple[str, ...]] = {
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",),
    "lightning.fabric.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",),
}

#: Loggers whose INFO lines are a library's housekeeping, shown from WARNING on: Dask's scheduler and workers
#: log every start, connection, plugin and shutdown of a cluster (some 45 lines per generate stage).
QUIET_BELOW_WARNING = ("distributed",)

#: Loggers Lightning gives a console handler of its own at import.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class _DropMessages(logging.Filter):
    """Drops the records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_libraries() -> None:
    """Drop the library noise of :data:`QUIET_WARNINGS` and :data:`QUIET_RECORDS` in this process
    (idempotent; needs no library imported yet)."""
    for category, message, _why in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, starts in QUIET_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))
    import dask  # distributed sets its loggers' levels from dask's config when it is imported …

    dask.config.set({f"logging.{name}": "warning" for name in QUIET_BELOW_WARNING})
    for name in QUIET_BELOW_WARNING:    # … or has set them already
        logging.getLogger(name).setLevel(logging.WARNING)


def share_lightning_logs() -> None:
    """Once logging is configured (the root logger has a handler), remove the console handlers Lightning
    added to its loggers at import and let their records propagate to ours: one line each, our format.
    Does nothing when logging is not configured (Lightning's own handlers are then all there is)."""
    if not logging.getLogger().handlers:
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def configure(verbose: bool = False) -> None:
    """Set up this process's logging: INFO (DEBUG with ``verbose``) to stderr with timestamps, unless the
    application configured handlers already (Prefect does, at import: its format has timestamps too);
    redaction, warnings as records, no library noise (module docstring). Idempotent."""
    install_log_redaction()
    quiet_libraries()
    logging.captureWarnings(True)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, datefmt=DATE_FORMAT)
    share_lightning_logs()

