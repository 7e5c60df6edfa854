"""Replacing an output store without losing it on the way: the new store is built beside the old one, at
``<store>.new``, and swapped in once it is complete, so a run killed at any moment leaves either the old
finished store or the new one at ``<store>`` — never an empty skeleton.

The swap is two renames and a removal (``<store>`` → ``<store>.old``, ``<store>.new`` → ``<store>``, remove
``<store>.old``); :func:`recover_swap`, called before every set-up and swap (under the store's lock,
:func:`downscale.inference.store_locks.store_lock`), finishes one that was interrupted.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from downscale.inference import store
from downscale.inference.store_faults import io_faults

log = logging.getLogger(__name__)

STAGING_SUFFIX, RETIRED_SUFFIX = ".new", ".old"


def staging_path(root: Path) -> Path:
    """Where the store that replaces the one at ``root`` is built: ``<store>.new`` beside it."""
    return root.with_name(root.name + STAGING_SUFFIX)


def _retired_path(root: Path) -> Path:
    return root.with_name(root.name + RETIRED_SUFFIX)


def recover_swap(root: Path) -> None:
    """Finish a swap into ``root`` that was interrupted: the new store goes into place if the old one was
    already moved aside (else the old one goes back), and the old one is removed."""
    old = _retired_path(root)
    if not old.exists():
        return
    with io_faults(root, "finish replacing it"):
        if not root.exists():
            new = staging_path(root)
            back = new if store.is_complete(new) else old
            os.replace(back, root)
            log.warning("%s: finished an interrupted replacement (%s is in place)", root, back.name)
        shutil.rmtree(old, ignore_errors=True)


def swap_in(staging: Path, root: Path) -> None:
    """Put the complete store at ``staging`` in place of the one at ``root`` (if any), then remove the old."""
    recover_swap(root)
    old = _retired_path(root)
    with io_faults(root, "replace it"):
        if root.exists():
            os.replace(root, old)
        os.replace(staging, root)
        shutil.rmtree(old)
