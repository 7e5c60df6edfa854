"""What goes wrong with an output store, as one line naming the store (and the variable, where there is one)
and the problem: the errors of :mod:`downscale.inference.store` and the translation of the file system's
refusals (a read-only mount, no permission, a path under a file, a full disk) into them.

    with io_faults(root, "write", variable="PRATEsfc"):
        group["PRATEsfc"][selection] = data
    # StoreIOError: output store '/data/o.zarr': variable 'PRATEsfc': cannot write: the disk is full
    #   ([Errno 28] No space left on device: 'PRATEsfc/c/0/0/0/0/0'); free space …

Every one is a :class:`ValueError`, so the command line prints it as one line and exits with code 2.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputStoreError(ValueError):
    """An output store that cannot be used as asked; the message names the store and the problem."""


class IncompleteStoreError(OutputStoreError):
    """An output store with work items not yet written; the message names them."""


class StoreIOError(OutputStoreError):
    """The file system refused to read or write an output store; the message names the store, the variable
    (where there is one), the problem and what to do. Work items written before it are kept."""


_FULL = ("free space (or choose another --out) and run the same command again: the work items already written "
         "are kept and only the missing ones run")
#: errno → (the problem in words, what to do)
_PROBLEMS: dict[int, tuple[str, str]] = {
    errno.EROFS: ("the file system is read-only", "write the output to a writable location (--out)"),
    errno.EACCES: ("permission denied", "choose a folder you may write to (--out), or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to (--out), or change its permissions"),
    errno.ENOTDIR: ("a part of its path is a file, not a folder", "choose another output path (--out)"),
    errno.ENOSPC: ("the disk is full", _FULL),
    errno.EDQUOT: ("the disk quota is exceeded", _FULL),
}


def describe(root: Path, action: str, err: OSError, variable: str | None = None) -> str:
    """One line: ``output store '<root>'[: variable '<v>']: cannot <action>: <problem> (<error>); <advice>``."""
    problem, advice = _PROBLEMS.get(err.errno or 0, ("I/O error", "check the disk or mount, then run again"))
    name = err.filename
    if name is not None:
        try:
            name = Path(os.fsdecode(name)).relative_to(root).as_posix()
        except ValueError:
            name = os.fsdecode(name)
    detail = f"[Errno {err.errno}] {err.strerror}" + (f": '{name}'" if name is not None else "")
    where = f"output store '{root}'" + (f": variable '{variable}'" if variable else "")
    return f"{where}: cannot {action}: {problem} ({detail}); {advice}"


@contextmanager
def io_faults(root: Path, action: str, variable: str | None = None) -> Iterator[None]:
    """Raise an operating-system error inside as a :class:`StoreIOError` (see :func:`describe`). Errors
    this package raises itself (no ``errno``, e.g. "store does not exist") pass unchanged."""
    try:
        yield
    except StoreIOError:
        raise
    except OSError as err:
        if err.errno is None:
            raise
        raise StoreIOError(describe(root, action, err, variable)) from None


def check_parents(root: Path) -> None:
    """Refuse an output path under a file (``out.txt/o.zarr``) naming the file; a missing folder is fine."""
    for parent in root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreIOError(f"output store '{root}': {parent} is a file, not a folder; choose another "
                                   f"output path (--out)")
            return
