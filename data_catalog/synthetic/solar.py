"""Sun–Earth geometry: day of year, declination, local solar time and top-of-atmosphere shortwave flux.

Dates are ``cftime`` Julian-calendar date-times (FV3GFS runs on the Julian calendar). The equation of
time is neglected (≤ 16 min); everything else is the textbook geometry:

    cos Z = sin φ sin δ + cos φ cos δ cos h,   h = 2π (UTC hours / 24) + λ − π
    δ = 23.44° · sin(2π (d − 80) / 365.25),    S = 1361 W m-2 · (1 + 0.033 cos(2π d / 365.25))

with φ latitude, λ longitude, d the (fractional, 0-based) day of the year.
"""

from __future__ import annotations

import datetime as dt

import cftime
import numpy as np

SOLAR_CONSTANT = 1361.0  # W m-2
OBLIQUITY_DEG = 23.44
DAYS_PER_YEAR = 365.25


def day_of_year(date: cftime.datetime) -> float:
    """Fractional day of the year, 0 at 1 January 00:00."""
    return date.dayofyr - 1 + (date.hour + date.minute / 60 + date.second / 3600) / 24


def utc_hours(date: cftime.datetime) -> float:
    return date.hour + date.minute / 60 + date.second / 3600


def declination(doy: float) -> float:
    """Solar declination (radians) on fractional day of year ``doy``."""
    return np.deg2rad(OBLIQUITY_DEG) * np.sin(2 * np.pi * (doy - 80.0) / DAYS_PER_YEAR)


def local_solar_hours(date: cftime.datetime, lon_deg: np.ndarray) -> np.ndarray:
    """Local (mean) solar time in hours, in [0, 24), at longitudes ``lon_deg``."""
    return np.mod(utc_hours(date) + np.asarray(lon_deg) / 15.0, 24.0)


def toa_shortwave(date: cftime.datetime, lat_rad: np.ndarray, lon_rad: np.ndarray) -> np.ndarray:
    """Instantaneous downward shortwave flux at the top of the atmosphere (W m-2) at ``date``."""
    return mean_toa_shortwave(date, 0.0, lat_rad, lon_rad, samples=1)


def mean_toa_shortwave(start: cftime.datetime, hours: float, lat_rad: np.ndarray, lon_rad: np.ndarray,
                       samples: int = 6) -> np.ndarray:
    """Mean TOA shortwave flux (W m-2) over ``[start, start + hours)``, midpoint rule with ``samples``
    sub-intervals (6 over 3 hours: every 30 min), as an ``8xdaily_ave`` diagnostic would hold.

    ``cos h = cos θ cos λ − sin θ sin λ`` (θ the hour angle at longitude 0), so only four
    trigonometric functions of the positions are evaluated per call.
    """
    sin_lat, cos_lat = np.sin(lat_rad), np.cos(lat_rad)
    cos_lon, sin_lon = np.cos(lon_rad), np.sin(lon_rad)
    step = hours / samples
    total = np.zeros(np.broadcast(lat_rad, lon_rad).shape)
    for i in range(samples):
        date = start + dt.timedelta(hours=(i + 0.5) * step)
        doy = day_of_year(date)
        delta = declination(doy)
        theta = 2 * np.pi * utc_hours(date) / 24.0 - np.pi
        cos_h = np.cos(theta) * cos_lon - np.sin(theta) * sin_lon
        cos_zenith = sin_lat * np.sin(delta) + cos_lat * np.cos(delta) * cos_h
        flux = SOLAR_CONSTANT * (1.0 + 0.033 * np.cos(2 * np.pi * doy / DAYS_PER_YEAR))
        total += flux * np.maximum(cos_zenith, 0.0)
    return total / samples


class SunGeometry:
    """TOA shortwave on a fixed set of positions, with their trigonometric functions computed once.

    ``SunGeometry(lat_rad, lon_rad).mean_flux(start, hours)`` equals :func:`mean_toa_shortwave`.
    """

    def __init__(self, lat_rad: np.ndarray, lon_rad: np.ndarray) -> None:
        self.sin_lat, self.cos_lat = np.sin(lat_rad), np.cos(lat_rad)
        self.cos_lon, self.sin_lon = np.cos(lon_rad), np.sin(lon_rad)

    def cos_local_hour(self, date: cftime.datetime, phase_hours: float = 0.0) -> np.ndarray:
        """cos(2π (local solar time − phase_hours) / 24) at every position."""
        theta = 2 * np.pi * (utc_hours(date) - phase_hours) / 24.0
        return np.cos(theta) * self.cos_lon - np.sin(theta) * self.sin_lon

    def mean_flux(self, start: cftime.datetime, hours: float, samples: int = 6) -> np.ndarray:
        step = hours / samples
        total = np.zeros_like(self.sin_lat)
        for i in range(samples):
            date = start + dt.timedelta(hours=(i + 0.5) * step)
            doy = day_of_year(date)
            delta = declination(doy)
            cos_zenith = self.sin_lat * np.sin(delta) + self.cos_lat * np.cos(delta) * self.cos_local_hour(date, 12.0)
            flux = SOLAR_CONSTANT * (1.0 + 0.033 * np.cos(2 * np.pi * doy / DAYS_PER_YEAR))
            total += flux * np.maximum(cos_zenith, 0.0)
        return total / samples
