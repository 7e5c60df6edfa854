"""Locks that let several ``generate`` processes share one output store: one for the store's set-up and
finalization, one per work item while it runs. Both are ``flock`` locks on small files, so the kernel
releases them when a process dies (a killed run never leaves a stale lock), and every lock file is
removed by the process that releases it::

    <store>.lock                                  held while a store is created, resumed, grown, finalized or swapped
    <store>/.downscale/claims/<item key>.lock     held while the item is sampled and written

    with store_lock(root):                        # waits for another process's set-up or finalization
        ...
    with claim_item(root, item, wait=False) as claim:
        if claim is Claim.MINE:                   # not written, and no other process is writing it
            write it

On a file system without ``flock`` support (some parallel file systems), the locks degrade to nothing
with one warning: concurrent runs on one store are then not coordinated (single runs are unaffected).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from downscale.inference.store_faults import check_parents, io_faults
from downscale.inference.store_plan import BOOKKEEPING, WorkItem, is_marked

log = logging.getLogger(__name__)

CLAIMS = "claims"
LOCK_SUFFIX = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class Claim(Enum):
    """What a process may do with a work item (the value says it in words)."""

    MINE = "claimed"
    DONE = "already written"
    HELD = "held by another process"


def _acquire(path: Path, wait: bool) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path`` (created if missing), or None if another holder has
    it and ``wait`` is False. A lock file removed by its last holder while we waited is opened anew."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            log.warning("%s: the file system does not support locks (%s); concurrent runs on this store are "
                        "not coordinated", path, err.strerror)
            return fd
        held = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)


def _release(path: Path, fd: int) -> None:
    """Remove the lock file (while still holding it, so no one can hold a lock on the removed file), then
    release it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)


def lock_path(root: Path) -> Path:
    """The lock file of the store at ``root``: ``<store>.lock`` beside it (present only while held)."""
    return root.with_name(root.name + LOCK_SUFFIX)


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold the lock of the store at ``root`` (waiting for it): its set-up, finalization and swap are done
    by one process at a time. Creates the store's parent folder if missing."""
    check_parents(root)
    path = lock_path(root)
    with io_faults(root, "create its folder or lock file"):
        root.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, wait=True)
    try:
        yield
    finally:
        _release(path, fd)


@contextmanager
def claim_item(root: Path, item: WorkItem, wait: bool) -> Iterator[Claim]:
    """Claim ``item`` of the store at ``root`` while inside: :attr:`Claim.MINE` if it is not written and this
    process now holds it; :attr:`Claim.DONE` if it is written (or the store has moved away: another process
    finished it and swapped it in); :attr:`Claim.HELD` if another process holds it and ``wait`` is False.
    With ``wait`` a held item is waited for, then reported as written (or claimed, if its holder died)."""
    path = root / BOOKKEEPING / CLAIMS / f"{item.key}{LOCK_SUFFIX}"
    fd: int | None = None
    with io_faults(root, "claim a work item"):
        try:  # no parents made: a store that moved away (swapped in by another process) is not made again
            path.parent.mkdir(exist_ok=True)
            moved, fd = False, _acquire(path, wait)
        except FileNotFoundError:
            moved = True
    if fd is None:
        yield Claim.DONE if moved else Claim.HELD
        return
    try:
        yield Claim.DONE if is_marked(root, item) else Claim.MINE
    finally:
        _release(path, fd)
