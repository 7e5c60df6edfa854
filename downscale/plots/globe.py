"""Cube-sphere fields on a longitude–latitude map (matplotlib only, no download at run time).

Each tile is drawn with ``pcolormesh`` from its **corner** coordinates ``(n + 1)²``; quads whose corners
straddle the map's antimeridian (longitude span > 180° after wrapping) are masked, otherwise they would
smear across the whole map. Coastlines come from the Natural Earth 1:110m zip kept in the fixtures
(read with ``pyshp``).

Example::

    >>> fig, ax = plt.subplots(figsize=(8, 4))
    >>> plot_cube(ax, grid.lonb.values, grid.latb.values, precip_mm_day, norm=precipitation_norm())  # doctest: +SKIP
    >>> add_coastlines(ax)                                                                            # doctest: +SKIP
"""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, QuadMesh
from matplotlib.colors import LogNorm, Normalize

#: Natural Earth 1:110m coastlines (public domain), shipped with the package.
COASTLINE_ZIP = Path(__file__).resolve().parent / "data" / "ne_110m_coastline.zip"

#: Regions the reports zoom on: (lon_min, lon_max, lat_min, lat_max), degrees east / north.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "globe": (0.0, 360.0, -90.0, 90.0),
    "california": (225.0, 255.0, 25.0, 50.0),
    "himalayas": (65.0, 105.0, 15.0, 45.0),
}


def wrap_longitude(lon: np.ndarray, central_longitude: float = 180.0) -> np.ndarray:
    """Longitudes mapped into ``[central − 180, central + 180)``."""
    return (np.asarray(lon) - central_longitude + 180.0) % 360.0 + central_longitude - 180.0


def straddling_quads(x_corners: np.ndarray) -> np.ndarray:
    """Mask ``(n, n)`` of quads whose 4 corner map longitudes ``(n + 1, n + 1)`` span more than 180°."""
    quads = np.stack([x_corners[:-1, :-1], x_corners[:-1, 1:], x_corners[1:, :-1], x_corners[1:, 1:]])
    return (quads.max(axis=0) - quads.min(axis=0)) > 180.0


def plot_cube(ax: Axes, lonb: np.ndarray, latb: np.ndarray, values: np.ndarray, *, central_longitude: float = 180.0,
              norm: Normalize | None = None, cmap: str = "viridis", mask_below: float | None = None,
              **kwargs) -> list[QuadMesh]:
    """Draw a cube-sphere field ``values (6, n, n)`` with corners ``lonb, latb (6, n + 1, n + 1)`` (degrees).

    ``mask_below`` hides values under a threshold (e.g. dry cells of a precipitation map). Extra keyword
    arguments go to ``pcolormesh``. Returns one ``QuadMesh`` per tile (use any of them for a colour bar).
    """
    lonb, latb, values = np.asarray(lonb), np.asarray(latb), np.asarray(values)
    if lonb.shape != latb.shape or lonb.ndim != 3 or values.shape != (lonb.shape[0], lonb.shape[1] - 1,
                                                                         lonb.shape[2] - 1):
        raise ValueError(f"plot_cube needs corners (6, n+1, n+1) and values (6, n, n); got lonb {lonb.shape}, "
                         f"latb {latb.shape}, values {values.shape}")
    if norm is None:   # one colour scale for all six tiles, not one per pcolormesh call
        finite = values[np.isfinite(values)]
        vmin = kwargs.pop("vmin", finite.min() if finite.size else 0.0)
        vmax = kwargs.pop("vmax", finite.max() if finite.size else 1.0)
        norm = Normalize(vmin=vmin, vmax=vmax)
    meshes = []
    kwargs.setdefault("rasterized", True)
    for t in range(values.shape[0]):
        x = wrap_longitude(lonb[t], central_longitude)
        mask = straddling_quads(x) | ~np.isfinite(values[t])
        if mask_below is not None:
            mask |= values[t] < mask_below
        data = np.ma.masked_array(values[t], mask=mask)
        meshes.append(ax.pcolormesh(x, latb[t], data, norm=norm, cmap=cmap, shading="flat", **kwargs))
    ax.set_xlim(central_longitude - 180.0, central_longitude + 180.0)
    ax.set_ylim(-90.0, 90.0)
    ax.set_aspect("equal")
    return meshes


@lru_cache(maxsize=2)
def load_coastlines(path: str | None = None) -> tuple[np.ndarray, ...]:
    """Coastline polylines ``(k, 2)`` of (lon, lat) in degrees from a Natural Earth shapefile zip."""
    import shapefile  # pyshp

    zpath = Path(path) if path else COASTLINE_ZIP
    if not zpath.exists():
        raise FileNotFoundError(f"coastline file {zpath} not found (expected the Natural Earth 1:110m zip)")
    with zipfile.ZipFile(zpath) as z:
        names = {Path(n).suffix: n for n in z.namelist()}
        if not {".shp", ".shx", ".dbf"} <= names.keys():
            raise ValueError(f"coastline zip {zpath} lacks a .shp/.shx/.dbf shapefile")
        reader = shapefile.Reader(**{k: io.BytesIO(z.read(names[f".{k}"])) for k in ("shp", "shx", "dbf")})
        lines = []
        for shape in reader.shapes():
            points = np.asarray(shape.points, dtype=float)
            for start, stop in zip(shape.parts, list(shape.parts[1:]) + [len(points)], strict=True):
                lines.append(points[start:stop])
    return tuple(lines)


@lru_cache(maxsize=4)
def coastline_segments(central_longitude: float = 180.0, path: str | None = None) -> tuple[np.ndarray, ...]:
    """Coastline polylines ``(k, 2)`` in map longitudes, split wherever a line crosses the map's antimeridian."""
    segments = []
    for line in load_coastlines(path):
        x = wrap_longitude(line[:, 0], central_longitude)
        breaks = np.flatnonzero(np.abs(np.diff(x)) > 180.0) + 1
        segments += [np.column_stack([xs, ys]) for xs, ys in zip(np.split(x, breaks), np.split(line[:, 1], breaks),
                                                                 strict=True) if len(xs) > 1]
    return tuple(segments)


def add_coastlines(ax: Axes, central_longitude: float = 180.0, path: str | None = None, color: str = "0.25",
                   linewidth: float = 0.5) -> None:
    """Draw coastlines as one ``LineCollection`` (one artist, not ~130 lines: panels draw much faster)."""
    ax.add_collection(LineCollection(coastline_segments(central_longitude, path), colors=color,
                                     linewidths=linewidth), autolim=False)


def zoom(ax: Axes, region: str | tuple[float, float, float, float], central_longitude: float = 180.0) -> None:
    """Limit the axes to a named region of :data:`REGIONS` or to ``(lon_min, lon_max, lat_min, lat_max)``
    (degrees east / north; a region may cross the map's antimeridian only if ``central_longitude`` puts it
    inside the map)."""
    lon0, lon1, lat0, lat1 = REGIONS[region] if isinstance(region, str) else region
    width = (lon1 - lon0) % 360.0 or 360.0
    start = central_longitude - 180.0 if width == 360.0 else float(wrap_longitude(lon0, central_longitude))
    ax.set_xlim(start, start + width)
    ax.set_ylim(lat0, lat1)


def precipitation_norm(vmin: float = 0.1, vmax: float = 200.0) -> LogNorm:
    """Log colour scale for precipitation in mm/day (dry cells below ``vmin`` are best masked)."""
    return LogNorm(vmin=vmin, vmax=vmax)
