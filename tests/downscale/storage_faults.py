"""File-system faults injected at the storage layer, for tests that cannot make them for real (a read-only
mount, a full disk; a chmod'ed folder stops no one when the tests run as root): every write of a Zarr
``LocalStore`` whose key ``matches`` raises the ``OSError`` the kernel would, once ``after()`` is true.
Imported by name (pytest puts ``tests/downscale`` on ``sys.path`` for its conftest)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from zarr.storage import LocalStore


def fail_writes(monkeypatch: pytest.MonkeyPatch, code: int, after: Callable[[], bool] = lambda: True,
                matches: Callable[[str], bool] = lambda key: True) -> list[str]:
    """From now on (until ``monkeypatch`` is undone) a ``LocalStore`` write of a key that ``matches`` raises
    ``OSError(code)`` naming the file, once ``after()`` is true; returns the keys refused so far."""
    original = LocalStore.set
    refused: list[str] = []

    async def set_(self: LocalStore, key: str, value) -> None:
        if matches(key) and after():
            refused.append(key)
            raise OSError(code, os.strerror(code), str(self.root / key))
        return await original(self, key, value)

    monkeypatch.setattr(LocalStore, "set", set_)
    return refused
