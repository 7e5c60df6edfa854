"""The internal form every store is standardized into, once, at the edge.

Fields      ``(time, tile, y, x)`` float32; precipitation in kg m-2 s-1.
Statics     ``(tile, y, x)`` (e.g. ``zsurf`` in m, ``area`` in m**2, ``lat``/``lon`` in degrees).
Corners     ``(tile, yb, xb)`` (``latb``, ``lonb`` in degrees), ``yb = y + 1``.
Coordinates ``tile`` = 0..5 (int); ``time`` = ``cftime.DatetimeJulian`` rounded to the second;
            ``y`` and ``x`` carry no coordinate (they are 0-based positions on a tile).

Variable names keep the FV3 spelling of the store (``PRATEsfc``, ``PRATEsfc_coarse``,
``TMPsfc_coarse`` …); only dims, coordinates, dtype and units are standardized.
"""

from __future__ import annotations

N_TILES = 6

TIME, TILE, Y, X = "time", "tile", "y", "x"
YB, XB = "yb", "xb"
FIELD_DIMS = (TIME, TILE, Y, X)
STATIC_DIMS = (TILE, Y, X)
CORNER_DIMS = (TILE, YB, XB)

#: Names a store may give its horizontal dims, mapped onto the internal ones (docs/catalog.md).
Y_ALIASES = ("grid_yt", "grid_yt_coarse", "y")
X_ALIASES = ("grid_xt", "grid_xt_coarse", "x")
YB_ALIASES = ("grid_y", "grid_y_coarse", "y_interface", "yb")
XB_ALIASES = ("grid_x", "grid_x_coarse", "x_interface", "xb")

#: Grid variables; stores may carry them with a ``_coarse`` suffix.
GRID_VARIABLES = ("lat", "lon", "latb", "lonb", "area")

PRECIPITATION = "PRATEsfc"
PRECIPITATION_UNITS = "kg m-2 s-1"
PRECIPITATION_STANDARD_NAME = "precipitation_flux"
SECONDS_PER_DAY = 86400.0

#: Earth radius of FV3 (m).
EARTH_RADIUS = 6.3712e6
