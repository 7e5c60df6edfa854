"""FV3 cube-sphere geometry (``grid_type = 0``): corners, centres, cell areas and grid directions at any C-N.

The grid is gnomonic and **equal-edge** (docs/cube-sphere.md). Along a tile edge the N + 1 nodes sit at

    s_k = √2 · tan(−α + 2αk/N),   k = 0..N,   α = asin(1/√3)

(so s runs from −1 to 1 on the face plane at unit distance from the centre), and corner ``(t, j, i)`` is

    p_tji = normalize(c_t + s_i · ex_t + s_j · ey_t)

with the tile frames ``c, ex, ey`` of :data:`TILE_FRAMES`. A cell centre is the normalized sum of its
four corner unit vectors; ``lon = atan2(y, x) mod 360``, ``lat = asin(z)``. A cell's area is that of
the spherical quadrilateral of its corners, computed exactly as two spherical triangles.

Example::

    >>> grid = cube_sphere_grid(48)
    >>> grid.lat.dims, grid.latb.shape
    (('tile', 'y', 'x'), (6, 49, 49))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xarray as xr

from data_catalog.schema import EARTH_RADIUS, N_TILES, STATIC_DIMS, CORNER_DIMS, TILE

#: Half the angle a tile edge subtends at the centre of the sphere: asin(1/√3) (radians).
ALPHA = float(np.arcsin(1.0 / np.sqrt(3.0)))


def _east(lon_deg: float) -> tuple[float, float, float]:
    lam = np.deg2rad(lon_deg)
    return (float(np.cos(lam)), float(np.sin(lam)), 0.0)


_Z = (0.0, 0.0, 1.0)
_MINUS_Z = (0.0, 0.0, -1.0)

#: Tile frames (0-based tile → face centre c, grid +x direction ex, grid +y direction ey), the docs/cube-sphere.md
#: frames table. E(λ) = (cos λ, sin λ, 0): the whole cube is turned 10° west of the usual 0°/90° layout.
TILE_FRAMES: dict[int, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    0: (_east(350.0), _east(80.0), _Z),          # equatorial, 305°E–35°E
    1: (_east(80.0), _east(170.0), _Z),          # equatorial, 35°E–125°E
    2: (_Z, _east(170.0), _east(260.0)),         # north polar cap
    3: (_east(170.0), _MINUS_Z, _east(260.0)),   # equatorial, +x runs north→south
    4: (_east(260.0), _MINUS_Z, _east(350.0)),   # equatorial, +x runs north→south
    5: (_MINUS_Z, _east(80.0), _east(350.0)),    # south polar cap
}


def _frames() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``c, ex, ey`` as arrays of shape (6, 3)."""
    c, ex, ey = (np.array([TILE_FRAMES[t][k] for t in range(N_TILES)]) for k in range(3))
    return c, ex, ey


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _check_resolution(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"cube-sphere resolution must be a positive integer C-N, got {n!r}")


def edge_node_coordinates(n: int) -> np.ndarray:
    """Equal-edge gnomonic node coordinates ``s_k = √2 tan(−α + 2αk/N)``, shape (n + 1,), from −1 to 1."""
    _check_resolution(n)
    k = np.arange(n + 1, dtype=np.float64)
    s = np.sqrt(2.0) * np.tan(-ALPHA + 2.0 * ALPHA * k / n)
    s[0], s[-1] = -1.0, 1.0  # exact ends, so tiles share their edge nodes bit for bit
    return s


@lru_cache(maxsize=8)
def _corner_unit_vectors(n: int) -> np.ndarray:
    s = edge_node_coordinates(n)
    c, ex, ey = _frames()
    v = (c[:, None, None, :]
         + s[None, None, :, None] * ex[:, None, None, :]     # s_i along x (last axis of the tile)
         + s[None, :, None, None] * ey[:, None, None, :])    # s_j along y
    out = _normalize(v)
    out.setflags(write=False)
    return out


def corner_unit_vectors(n: int) -> np.ndarray:
    """Cell-corner positions as unit vectors, shape (6, n + 1, n + 1, 3), axes (tile, yb, xb, xyz)."""
    _check_resolution(n)
    return _corner_unit_vectors(int(n))


def cell_centre_unit_vectors(n: int) -> np.ndarray:
    """Cell-centre positions (normalized sum of the 4 corners) as unit vectors, shape (6, n, n, 3)."""
    p = corner_unit_vectors(n)
    return _normalize(p[:, :-1, :-1] + p[:, :-1, 1:] + p[:, 1:, :-1] + p[:, 1:, 1:])


def unit_vectors_to_lat_lon(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``(..., 3)`` → ``(lat, lon)`` in degrees, lat in [−90, 90], lon in [0, 360)."""
    lat = np.rad2deg(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))
    lon = np.mod(np.rad2deg(np.arctan2(v[..., 1], v[..., 0])), 360.0)
    lon = np.where(lon >= 360.0, lon - 360.0, lon)  # mod of a tiny negative number rounds up to 360
    return lat, lon


def lat_lon_to_unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``lat``, ``lon`` in degrees (any equal shapes) → unit vectors of shape ``(..., 3)``."""
    phi, lam = np.deg2rad(np.asarray(lat, dtype=np.float64)), np.deg2rad(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def _triangle_excess(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Spherical excess (steradians) of unit-vector triangles, Van Oosterom–Strackee:
    tan(E/2) = |a · (b × c)| / (1 + a·b + b·c + c·a)."""
    triple = np.abs(np.einsum("...k,...k->...", a, np.cross(b, c)))
    denom = 1.0 + np.einsum("...k,...k->...", a, b) + np.einsum("...k,...k->...", b, c) \
        + np.einsum("...k,...k->...", c, a)
    return 2.0 * np.arctan2(triple, denom)


def cell_areas(n: int, radius: float = EARTH_RADIUS) -> np.ndarray:
    """Cell areas in m**2 (for ``radius`` in m), shape (6, n, n): each spherical quadrilateral as two
    spherical triangles, (p00, p01, p11) + (p00, p11, p10)."""
    p = corner_unit_vectors(n)
    p00, p01, p10, p11 = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]
    return radius**2 * (_triangle_excess(p00, p01, p11) + _triangle_excess(p00, p11, p10))


def local_east_north(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local unit east and north vectors at unit-vector positions ``v (..., 3)``, each ``(..., 3)``.

    At a pole east is taken as E(lon + 90°) with the lon ``atan2`` gives there (0°), so it is defined.
    """
    lam = np.arctan2(v[..., 1], v[..., 0])
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)], axis=-1)
    north = np.cross(v, east)
    return east, north


def grid_direction_vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangent vectors of grid +x and grid +y at the cell centres, each (6, n, n, 3).

    The tangent of ``normalize(c + s ex + t ey)`` along s at a point p is ``ex − (p·ex) p`` (likewise ey):
    exact for the gnomonic map, whatever the node spacing.
    """
    p = cell_centre_unit_vectors(n)
    _, ex, ey = _frames()
    tx = ex[:, None, None, :] - np.einsum("tyxk,tk->tyx", p, ex)[..., None] * p
    ty = ey[:, None, None, :] - np.einsum("tyxk,tk->tyx", p, ey)[..., None] * p
    return _normalize(tx), _normalize(ty)


def grid_angle_from_east(n: int) -> np.ndarray:
    """Angle (radians, counter-clockwise, in (−π, π]) from local east to grid +x at each cell centre,
    shape (6, n, n). Rotates a grid-relative vector (u_x, u_y) to earth-relative east/north:
    ``u_east = cos θ u_x − sin θ u_y``, ``u_north = sin θ u_x + cos θ u_y`` (the grid is right-handed:
    +y is +x turned 90° counter-clockwise, seen from outside the sphere). E.g. θ = 0 on tiles 0 and 1,
    θ ≈ −90° (+x points south) on tiles 3 and 4."""
    p = cell_centre_unit_vectors(n)
    tx, _ = grid_direction_vectors(n)
    east, north = local_east_north(p)
    return np.arctan2(np.einsum("...k,...k->...", tx, north), np.einsum("...k,...k->...", tx, east))


def checked_cell_area(area: xr.DataArray, where: str, error: type[ValueError] = ValueError) -> xr.DataArray:
    """``area`` (m², any dims) as float64, loaded (a static field is small), after checking that every cell is
    finite and > 0; else raises ``error`` naming ``where`` and the number of bad cells."""
    area = area.astype(np.float64).load()
    values = area.values
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise error(f"{where} has {int(bad.sum())} of {bad.size} cells not finite and > 0 m² "
                    f"(min {np.nanmin(values)!r})")
    return area


def cube_sphere_grid(n: int, radius: float = EARTH_RADIUS) -> xr.Dataset:
    """The C-``n`` FV3 cube-sphere grid in the internal form (float64).

    Returns ``lat``, ``lon`` (tile, y, x) in degrees (lon in [0, 360)), ``latb``, ``lonb``
    (tile, yb, xb) corners, (n + 1)² per tile, and ``area`` (tile, y, x) in m**2 on a sphere of
    ``radius`` m (the cell areas sum to 4π radius²). ``tile`` is a coordinate 0..5.
    """
    _check_resolution(n)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"sphere radius must be a positive number of metres, got {radius!r}")
    lat, lon = unit_vectors_to_lat_lon(cell_centre_unit_vectors(n))
    latb, lonb = unit_vectors_to_lat_lon(corner_unit_vectors(n))
    lat_attrs = {"units": "degrees_north", "standard_name": "latitude"}
    lon_attrs = {"units": "degrees_east", "standard_name": "longitude"}
    return xr.Dataset(
        {
            "lat": (STATIC_DIMS, lat, {**lat_attrs, "long_name": "cell-centre latitude"}),
            "lon": (STATIC_DIMS, lon, {**lon_attrs, "long_name": "cell-centre longitude"}),
            "latb": (CORNER_DIMS, latb, {**lat_attrs, "long_name": "cell-corner latitude"}),
            "lonb": (CORNER_DIMS, lonb, {**lon_attrs, "long_name": "cell-corner longitude"}),
            "area": (STATIC_DIMS, cell_areas(n, radius),
                     {"units": "m2", "standard_name": "cell_area", "long_name": "cell area",
                      "sphere_radius_m": float(radius)}),
        },
        coords={TILE: (TILE, np.arange(N_TILES))},
        attrs={"grid": f"C{int(n)}", "grid_type": "FV3 gnomonic equal-edge cube sphere (grid_type = 0)"},
    )
