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

from downscale.diagnostics.weights import Region
from downscale.evaluation.regions import get_region

#: Natural Earth 1:110m coastlines (public domain), shipped with the package.
COASTLINE_ZIP = Path(__file__).resolve().parent / "data" / "ne_110m_coastline.zip"

#: Degrees of context a zoom window shows on each side of a region's box.
ZOOM_MARGIN_DEG = 10.0


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
    """Coastline polylines ``(k, 2)`` of (lon, lat) in degrees from a Natural Earth shapefile zip. Only the
    geometry is read (``.shp`` and its index ``.shx``): the attribute table (``.dbf``) is not needed, and
    pyshp would note that Natural Earth's lacks its end-of-file byte."""
    import shapefile  # pyshp

    zpath = Path(path) if path else COASTLINE_ZIP
    if not zpath.exists():
        raise FileNotFoundError(f"coastline file {zpath} not found (expected the Natural Earth 1:110m zip)")
    with zipfile.ZipFile(zpath) as z:
        names = {Path(n).suffix: n for n in z.namelist()}
        if not {".shp", ".shx"} <= names.keys():
            raise ValueError(f"coastline zip {zpath} lacks a .shp/.shx shapefile")
        reader = shapefile.Reader(**{k: io.BytesIO(z.read(names[f".{k}"])) for k in ("shp", "shx")})
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


def zoom_window(region: str | Region, margin: float = ZOOM_MARGIN_DEG) -> tuple[float, float, float, float]:
    """``(lon_min, lon_max, lat_min, lat_max)`` (degrees east / north) of a region of
    :data:`downscale.evaluation.regions.REGIONS` (or a :class:`Region`) with ``margin`` degrees around its box,
    latitudes clipped to ±90; a band around the globe (``global``, ``tropics``) keeps every longitude.

    Example: ``zoom_window("california")  # (225.0, 256.0, 22.0, 52.0)``
    """
    r = get_region(region)
    lat0, lat1 = (-r.lat_max, r.lat_max) if r.abs_lat else (r.lat_min, r.lat_max)
    lat0, lat1 = max(lat0 - margin, -90.0), min(lat1 + margin, 90.0)
    if (r.lon_max - r.lon_min) % 360.0 == 0.0 or (r.lon_max - r.lon_min) + 2 * margin >= 360.0:
        return 0.0, 360.0, lat0, lat1
    return r.lon_min - margin, r.lon_max + margin, lat0, lat1


def zoom(ax: Axes, region: str | Region | tuple[float, float, float, float], central_longitude: float = 180.0) -> None:
    """Limit the axes to a region's :func:`zoom_window` or to ``(lon_min, lon_max, lat_min, lat_max)``
    (degrees east / north; a region may cross the map's antimeridian only if ``central_longitude`` puts it
    inside the map)."""
    lon0, lon1, lat0, lat1 = region if isinstance(region, tuple) else zoom_window(region)
    width = (lon1 - lon0) % 360.0 or 360.0
    start = central_longitude - 180.0 if width == 360.0 else float(wrap_longitude(lon0, central_longitude))
    ax.set_xlim(start, start + width)
    ax.set_ylim(lat0, lat1)


def precipitation_norm(vmin: float = 0.1, vmax: float = 200.0) -> LogNorm:
    """Log colour scale for precipitation in mm/day (dry cells below ``vmin`` are best masked)."""
    return LogNorm(vmin=vmin, vmax=vmax)
