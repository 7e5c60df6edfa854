"""Gradient of a cell-centred field on the cube sphere, seamless across tile edges (halo exchange).

At every cell the tangent gradient ``g`` (a 3-vector per unit length on the unit sphere) is the one
that reproduces the centred differences along the two grid directions:

    g · (p[i+1] − p[i−1]) = f[i+1] − f[i−1],   g · (p[j+1] − p[j−1]) = f[j+1] − f[j−1],   g · p = 0

The neighbours across a tile edge come from :func:`data_catalog.halo.halo_pad`, so a seam is treated
like the interior. The 3 × 3 systems depend on the grid only and are inverted once.
"""

from __future__ import annotations

import numpy as np

from data_catalog.cubesphere import cell_centre_unit_vectors
from data_catalog.halo import halo_pad


class SurfaceGradient:
    """``SurfaceGradient(n)(f)``: gradient of ``f (..., 6, n, n)`` as ``(..., 6, n, n, 3)`` per radian.

    Divide by the sphere radius (m) for a gradient per metre.
    """

    def __init__(self, n: int) -> None:
        p = cell_centre_unit_vectors(n)
        padded = halo_pad(np.moveaxis(p, -1, 0), 1)                  # (3, 6, n + 2, n + 2)
        dx = np.moveaxis(padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2], 0, -1)
        dy = np.moveaxis(padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1], 0, -1)
        inverse = np.linalg.inv(np.stack([dx, dy, p], axis=-2))     # rows: dx, dy, p
        self.n = n
        self._along_x = np.ascontiguousarray(inverse[..., :, 0])     # (6, n, n, 3)
        self._along_y = np.ascontiguousarray(inverse[..., :, 1])

    def __call__(self, f: np.ndarray) -> np.ndarray:
        padded = halo_pad(np.asarray(f), 1)
        fx = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
        fy = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
        return fx[..., None] * self._along_x + fy[..., None] * self._along_y
