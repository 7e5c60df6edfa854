"""Translate an fv3net-style intake-v1 ``catalog.yaml`` into the native catalog document.

:func:`native_document` is pure translation, mapping to mapping: :func:`data_catalog.catalog.load_catalog`
validates its result like any native catalog, so both forms meet the same checks and error messages.
Each source ``{driver: zarr, args: {urlpath, storage_options, consolidated}, metadata: {...}}`` becomes a
store reference (``urlpath``, ``storage_options``, ``consolidated``) named after the source. Its role
and member come from ``metadata.role`` and ``metadata.member``; where ``role`` is absent it is inferred
from ``metadata.grid`` (fv3net writes ``grid: c48`` / ``c384``) and the source's name:

* ``grid`` equal to the coarse resolution → ``coarse``; equal to the fine one → ``fine``;
* a source whose name contains ``static`` → ``static``; ``grid_spec`` / ``latLonArea`` → a grid store.

Sources that still have no role (fv3net's catalog lists many unrelated datasets) are ignored with a
log line. The top-level ``metadata`` may hold ``resolution``, ``precipitation`` and ``predictors``;
``resolution`` is otherwise taken from the ``grid`` metadata of the sources.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from data_catalog.errors import CatalogError

log = logging.getLogger(__name__)

_GRID = re.compile(r"^c(\d+)$", re.IGNORECASE)

#: What a source can be: a member's fine or coarse store, the static store, or a grid store.
ROLES = ("fine", "coarse", "static", "grid_fine", "grid_coarse")


def _ref(name: str, source: dict[str, Any]) -> dict[str, Any]:
    driver = source.get("driver", "zarr")
    if driver not in ("zarr", "netcdf"):
        raise CatalogError(f"source '{name}': driver '{driver}' is not supported (zarr or netcdf)")
    args = source.get("args") or {}
    if "urlpath" not in args:
        raise CatalogError(f"source '{name}': args.urlpath is missing")
    return {"urlpath": str(args["urlpath"]), "storage_options": args.get("storage_options") or {},
            "consolidated": args.get("consolidated"), "name": name}


def _grid_n(meta: dict[str, Any]) -> int | None:
    m = _GRID.match(str(meta.get("grid", "")))
    return int(m.group(1)) if m else None


def _role(name: str, meta: dict[str, Any], resolution: dict[str, int]) -> str | None:
    if meta.get("role"):
        return str(meta["role"])
    lowered = name.lower()
    n = _grid_n(meta)
    if "grid_spec" in lowered or "latlonarea" in lowered:
        return "grid_fine" if n == resolution.get("fine") else "grid_coarse" if n == resolution.get("coarse") else None
    if "static" in lowered:
        return "static"
    if n == resolution.get("coarse"):
        return "coarse"
    if n == resolution.get("fine"):
        return "fine"
    return None


def native_document(doc: dict[str, Any], default_name: str = "intake") -> dict[str, Any]:
    """The native catalog mapping (``name``, ``resolution``, ``members`` …) of a parsed intake-v1 document.

    Raises :class:`CatalogError` for what the translation itself needs: non-empty ``sources``, the two
    resolutions, a supported driver and an ``args.urlpath`` per used source, one fine source per member.
    """
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise CatalogError("'sources' must be a non-empty mapping")
    top = doc.get("metadata") or {}
    resolution = dict(top.get("resolution") or {})
    if not resolution:
        grids = sorted({n for s in sources.values() if (n := _grid_n((s or {}).get("metadata") or {}))})
        if len(grids) < 2:
            raise CatalogError("cannot tell the coarse and fine resolutions: give metadata.resolution {coarse, fine}")
        resolution = {"coarse": grids[0], "fine": grids[-1]}

    members: dict[str, dict[str, Any]] = {}
    grid: dict[str, dict[str, Any]] = {}
    static = None
    for name, source in sources.items():
        meta = (source or {}).get("metadata") or {}
        role = _role(name, meta, resolution)
        if role is None:
            log.info("intake source %s: no role (not fine, coarse, static or grid); ignored", name)
            continue
        if role not in ROLES:
            raise CatalogError(f"source '{name}': unknown role '{role}' (one of {', '.join(ROLES)})")
        ref = _ref(name, source or {})
        if role == "static":
            static = ref
        elif role in ("grid_fine", "grid_coarse"):
            grid[role.removeprefix("grid_")] = ref
        else:
            member = members.setdefault(str(meta.get("member", "0000")), {"coarse": []})
            if role == "fine":
                if "fine" in member:
                    raise CatalogError(f"member '{meta.get('member', '0000')}' has two fine sources")
                member["fine"] = ref
            else:
                member["coarse"].append(ref)

    fields = {k: top[k] for k in ("precipitation", "predictors", "topography") if k in top}
    return {"name": str(top.get("name", default_name)), "resolution": resolution, "static": static, "grid": grid,
            "members": members, **fields}
