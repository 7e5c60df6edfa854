"""CF cell bounds of the output store (CF 1.10 §7.1): the 4 vertices of every cube-sphere cell, taken from FV3's
N + 1 corner arrays; the coarse cells' centres and vertices, taken from the fine corners; and the interval of
every time-mean frame.

Cell ``(j, i)`` of a tile has the corners ``(j, i)``, ``(j, i+1)``, ``(j+1, i+1)``, ``(j+1, i)`` of the
``(N+1, N+1)`` corner arrays, in that order: counterclockwise seen from outside the sphere, because FV3's
tiles are right-handed (grid x, grid y, outward normal). FV3 coarsens by whole blocks of cells, so a coarse
cell's corners are every ``factor``-th fine corner, and its centre is (as FV3 defines centres) the
normalized sum of its 4 corner unit vectors. FMS stamps a time mean at the middle of its interval (01:30
for 00:00–03:00), so frame ``t`` covers ``[t − Δ/2, t + Δ/2]`` for a frame interval Δ.

Example::

    >>> grid = cube_sphere_grid(4)
    >>> cell_vertices(grid.latb.values).shape
    (6, 4, 4, 4)
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from data_catalog.cubesphere import lat_lon_to_unit_vectors, unit_vectors_to_lat_lon

#: CF time units this module may choose, coarsest first, with their length in microseconds.
_TIME_UNITS = (("hours", 3_600_000_000), ("minutes", 60_000_000), ("seconds", 1_000_000),
               ("milliseconds", 1_000), ("microseconds", 1))


def cell_vertices(corners: np.ndarray) -> np.ndarray:
    """The vertices of every cell, in CF order (module docstring).

    ``corners``: ``(6, N+1, N+1)`` corner values (degrees); returns ``(6, N, N, 4)``."""
    c = np.asarray(corners)
    return np.stack([c[:, :-1, :-1], c[:, :-1, 1:], c[:, 1:, 1:], c[:, 1:, :-1]], axis=-1)


def coarse_cells(latb: np.ndarray, lonb: np.ndarray, factor: int) -> dict[str, np.ndarray]:
    """Centres and vertices of the coarse cells of a fine grid coarsened by ``factor``.

    ``latb``, ``lonb``: fine corners ``(6, N+1, N+1)`` in degrees. Returns ``lat``, ``lon`` ``(6, Nc, Nc)``
    and their vertices ``lat_vertices``, ``lon_vertices`` ``(6, Nc, Nc, 4)``, degrees (lon in [0, 360))."""
    clat, clon = np.asarray(latb)[:, ::factor, ::factor], np.asarray(lonb)[:, ::factor, ::factor]
    p = lat_lon_to_unit_vectors(clat, clon)
    centre = p[:, :-1, :-1] + p[:, :-1, 1:] + p[:, 1:, :-1] + p[:, 1:, 1:]
    lat, lon = unit_vectors_to_lat_lon(centre / np.linalg.norm(centre, axis=-1, keepdims=True))
    return {"lat": lat, "lon": lon, "lat_vertices": cell_vertices(clat), "lon_vertices": cell_vertices(clon)}


def time_bounds(times: np.ndarray, interval: timedelta) -> np.ndarray:
    """``(T, 2)`` cftime object array: the interval ``[t − interval/2, t + interval/2]`` of every frame ``t``."""
    half = interval / 2
    return np.array([[t - half, t + half] for t in times], dtype=object).reshape(len(times), 2)


def time_units(times: np.ndarray, bounds: np.ndarray) -> str:
    """CF units ``"<unit> since <first bound>"`` in which every frame and every bound is a whole number: the
    coarsest of hours, minutes, seconds, milliseconds and microseconds that fits.

    ``times``: ``(T,)`` cftime; ``bounds``: their ``(T, 2)`` intervals (:func:`time_bounds`)."""
    origin = bounds[0, 0]
    micro = [(t - origin) // timedelta(microseconds=1) for t in (*times, *np.asarray(bounds).ravel())]
    unit = next(u for u, length in _TIME_UNITS if all(m % length == 0 for m in micro))
    return f"{unit} since {origin.isoformat(sep=' ')}"
