"""Precipitation-rate units: recognise the spellings real stores use and convert to kg m-2 s-1.

1 kg m-2 s-1 of water = 1 mm s-1 = 86400 mm day-1 = 3600 mm h-1.
"""

from __future__ import annotations

import re

#: Spellings of kg m-2 s-1 (== mm s-1) seen in FV3GFS stores and elsewhere.
_SI = {"kg/m**2/s", "kg/m^2/s", "kg m-2 s-1", "kg m**-2 s**-1", "kg/m2/s", "kg.m-2.s-1", "mm/s", "mm s-1"}
#: Convertible rates: factor that turns the value into kg m-2 s-1.
_CONVERTIBLE = {
    "mm/day": 1 / 86400.0,
    "mm/d": 1 / 86400.0,
    "mm day-1": 1 / 86400.0,
    "mm d-1": 1 / 86400.0,
    "mm/h": 1 / 3600.0,
    "mm/hr": 1 / 3600.0,
    "mm h-1": 1 / 3600.0,
    "mm hr-1": 1 / 3600.0,
}


def _normal(units: str) -> str:
    return re.sub(r"\s+", " ", units.strip().lower())


def precipitation_scale(units: str | None) -> float | None:
    """Factor turning a precipitation rate in ``units`` into kg m-2 s-1.

    Returns 1.0 for kg m-2 s-1 spellings, the conversion factor for mm/day or mm/h, and ``None`` for
    anything that is not a precipitation rate (including missing units).
    """
    if units is None:
        return None
    u = _normal(units)
    if u in _SI:
        return 1.0
    return _CONVERTIBLE.get(u)
