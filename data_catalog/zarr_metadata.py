"""Consolidated metadata in Zarr v3 stores, written on purpose.

Zarr v3 does not define consolidated metadata; zarr-python writes it anyway (in the root ``zarr.json``)
and warns at every write that other implementations may not read it. Our stores consolidate on purpose:
the synthetic FV3GFS stores as the real (consolidated) ones are, the prepared dataset so that every reader
opens it with one request, and the output store to mark it complete (``downscale.inference.store``). A
reader without consolidated support lists the store instead. So the writes go through
:func:`consolidated_v3`, which silences that warning, and only it, around them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from zarr.errors import ZarrUserWarning

#: The start of zarr-python's warning at every consolidation of a v3 store.
CONSOLIDATED_V3_WARNING = "Consolidated metadata is currently not part in the Zarr format 3 specification"


@contextmanager
def consolidated_v3() -> Iterator[None]:
    """Inside, consolidating a Zarr v3 store's metadata does not warn that v3 does not define it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CONSOLIDATED_V3_WARNING, category=ZarrUserWarning)
        yield
