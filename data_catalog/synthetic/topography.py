"""A fixed synthetic Earth: continents (a land fraction) and mountain ranges, as functions of position.

Everything is a function of the unit vector ``p`` of a point, so any grid gets the same, seamless
geography. Continents are soft spherical caps placed roughly where the real ones are (so that maps
with real coastlines read naturally); ranges are Gaussian ridges along great-circle arcs, among them
a Sierra-Nevada-like ridge through California (≈ 37°N, 240°E) and a Himalaya–Tibet block
(≈ 30°N, 85°E), the two regions the report zooms on.
"""

from __future__ import annotations

import numpy as np

from data_catalog.cubesphere import lat_lon_to_unit_vectors

#: Continents: (lat, lon, angular radius) in degrees of soft caps whose union is the land.
CONTINENTS: tuple[tuple[float, float, float], ...] = (
    (48, 258, 20), (62, 255, 14), (35, 262, 12), (20, 258, 7), (10, 277, 5),   # North America
    (-8, 298, 16), (-28, 296, 10), (-42, 290, 6),                              # South America
    (10, 20, 20), (-10, 25, 14), (-24, 25, 9), (22, 8, 12),                    # Africa
    (50, 15, 10), (58, 45, 18), (55, 95, 22), (62, 125, 16), (40, 105, 16),    # Eurasia
    (30, 60, 12), (22, 78, 9), (15, 102, 8),
    (-25, 134, 13),                                                            # Australia
    (72, 318, 9),                                                              # Greenland
    (-85, 0, 20), (-75, 60, 12), (-75, 140, 12), (-78, 250, 10),               # Antarctica
)
#: Width (degrees) of the coastal transition of the land fraction.
COAST_WIDTH = 3.0
#: Height (m) of land away from mountains.
LAND_BASE_HEIGHT = 300.0

#: Ridges: (lat1, lon1, lat2, lon2, height m, half-width deg) along great-circle arcs.
RIDGES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (41.0, 238.5, 35.0, 241.5, 2800.0, 1.3),      # Sierra Nevada, California
    (48.5, 238.5, 41.0, 238.5, 2200.0, 1.3),      # Cascades
    (60.0, 235.0, 35.0, 253.0, 2600.0, 3.0),      # Rocky Mountains
    (35.5, 73.0, 27.5, 95.0, 5500.0, 2.0),        # Himalaya
    (36.0, 80.0, 33.0, 98.0, 4500.0, 5.5),        # Tibetan plateau
    (10.0, 286.0, -50.0, 287.5, 4000.0, 2.0),     # Andes
    (45.5, 6.0, 47.0, 14.0, 2200.0, 1.5),         # Alps
    (12.0, 38.0, -4.0, 36.0, 2000.0, 4.0),        # East African highlands
    (76.0, 318.0, 66.0, 318.0, 2500.0, 6.0),      # Greenland ice sheet
    (-90.0, 0.0, -75.0, 90.0, 3000.0, 10.0),      # East Antarctic plateau
)


def _angle_to_points(p: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Great-circle angle (degrees) from positions ``p (..., 3)`` to one point."""
    c = lat_lon_to_unit_vectors(np.array(lat), np.array(lon))
    return np.rad2deg(np.arccos(np.clip(p @ c, -1.0, 1.0)))


def _angle_to_arc(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angle (degrees) from ``p (..., 3)`` to the shorter arc from unit vector a to b."""
    n = np.cross(a, b)
    n /= np.linalg.norm(n)
    off = np.arcsin(np.clip(p @ n, -1.0, 1.0))                     # angle off the great circle
    foot = p - (p @ n)[..., None] * n                               # projection onto its plane
    inside = (np.cross(a, foot) @ n >= 0) & (np.cross(foot, b) @ n >= 0)
    to_a = np.arccos(np.clip(p @ a, -1.0, 1.0))
    to_b = np.arccos(np.clip(p @ b, -1.0, 1.0))
    return np.rad2deg(np.where(inside, np.abs(off), np.minimum(to_a, to_b)))


def land_fraction(p: np.ndarray) -> np.ndarray:
    """Land fraction in [0, 1] at positions ``p (..., 3)``: a smooth union of the continent caps."""
    land = np.zeros(p.shape[:-1])
    for lat, lon, radius in CONTINENTS:
        inside = (radius - _angle_to_points(p, lat, lon)) / COAST_WIDTH
        land = np.maximum(land, 0.5 * (1.0 + np.tanh(inside)))
    return land


def surface_height(p: np.ndarray, land: np.ndarray | None = None) -> np.ndarray:
    """Surface height ``zsurf`` (m) at positions ``p (..., 3)``: land base plus the highest ridge."""
    land = land_fraction(p) if land is None else land
    mountains = np.zeros(p.shape[:-1])
    for lat1, lon1, lat2, lon2, height, width in RIDGES:
        a, b = lat_lon_to_unit_vectors(np.array([lat1, lat2]), np.array([lon1, lon2]))
        d = _angle_to_arc(p, a, b)
        mountains = np.maximum(mountains, height * np.exp(-0.5 * (d / width) ** 2))
    return LAND_BASE_HEIGHT * land + mountains
