"""The seasonal climate the weather lives in: ITCZ, storm tracks, subtropical highs and the mean winds.

All functions of latitude (degrees) and of the day of the year; no randomness. A ``Season`` is the
state on one day; :func:`zonal_profiles` turns it into regime weights and mean winds at given latitudes.

Mean 10 m winds (m/s), with ``g(x, w) = exp(−½ (x/w)²)`` and φ_I the ITCZ latitude:

    ū(φ) = cos φ · [−7 g(φ − φ_I, 14) + U_N g(φ − φ_N, 11) + U_S g(φ − φ_S, 11)
                   − 3 g(|φ| − 72, 8)]
    v̄(φ) = −3.5 tanh((φ − φ_I)/5) g(φ − φ_I, 18) + sgn(φ) g(|φ| − 40, 10)

(easterly trades converging on the ITCZ, westerlies over the storm tracks φ_N, φ_S, weak polar
easterlies). The cos φ factor makes the angular velocity ū / (R cos φ) of the large-scale patterns
finite at the poles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_catalog.synthetic.solar import DAYS_PER_YEAR


def gauss(x: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * (np.asarray(x) / width) ** 2)


@dataclass(frozen=True)
class Season:
    """The large-scale climate on one day (angles in degrees, speeds in m/s)."""

    north_summer: float     #: +1 in mid-July, −1 in mid-January
    itcz_lat: float         #: ITCZ latitude: ≈ 12°N in August, ≈ 2°S in February
    track_lat_n: float      #: northern storm-track latitude (equatorward in winter)
    track_lat_s: float      #: southern storm-track latitude (negative)
    jet_n: float            #: westerly amplitude of the northern storm track
    jet_s: float
    storms_n: float         #: storm-track precipitation strength (stronger in winter)
    storms_s: float


def season(doy: float) -> Season:
    """The climate on fractional day of the year ``doy`` (0 = 1 January)."""
    north_summer = float(np.sin(2 * np.pi * (doy - 105.0) / DAYS_PER_YEAR))
    itcz = 5.0 + 7.0 * float(np.sin(2 * np.pi * (doy - 130.0) / DAYS_PER_YEAR))
    return Season(
        north_summer=north_summer,
        itcz_lat=itcz,
        track_lat_n=45.0 + 4.0 * north_summer,
        track_lat_s=-(45.0 - 4.0 * north_summer),
        jet_n=11.0 - 3.0 * north_summer,
        jet_s=11.0 + 3.0 * north_summer,
        storms_n=1.0 - 0.3 * north_summer,
        storms_s=1.0 + 0.3 * north_summer,
    )


@dataclass(frozen=True)
class ZonalProfiles:
    """Regime weights (0..1) and mean winds at a set of latitudes (arrays of the latitudes' shape)."""

    itcz: np.ndarray        #: narrow ITCZ band
    tropics: np.ndarray     #: broad tropical belt around the ITCZ
    storm_tracks: np.ndarray  #: both storm tracks, scaled by their seasonal strength
    subtropics: np.ndarray  #: the dry subtropical highs near ±27°, following half the ITCZ's migration
    u: np.ndarray           #: mean zonal wind ū (m/s, eastward)
    v: np.ndarray           #: mean meridional wind v̄ (m/s, northward)
    angular_velocity: np.ndarray  #: ū / (R cos φ) (rad/s), the drift of large-scale patterns


def zonal_profiles(lat_deg: np.ndarray, s: Season, radius: float) -> ZonalProfiles:
    """:class:`ZonalProfiles` at latitudes ``lat_deg`` in season ``s`` on a sphere of ``radius`` m."""
    phi = np.asarray(lat_deg, dtype=np.float64)
    from_itcz = phi - s.itcz_lat
    track_n, track_s = gauss(phi - s.track_lat_n, 12.0), gauss(phi - s.track_lat_s, 12.0)
    bracket = (-7.0 * gauss(from_itcz, 14.0) + s.jet_n * gauss(phi - s.track_lat_n, 11.0)
               + s.jet_s * gauss(phi - s.track_lat_s, 11.0) - 3.0 * gauss(np.abs(phi) - 72.0, 8.0))
    cos_phi = np.cos(np.deg2rad(phi))
    v = -3.5 * np.tanh(from_itcz / 5.0) * gauss(from_itcz, 18.0) + np.sign(phi) * gauss(np.abs(phi) - 40.0, 10.0)
    return ZonalProfiles(
        itcz=gauss(from_itcz, 6.0),
        tropics=gauss(from_itcz, 15.0),
        storm_tracks=s.storms_n * track_n + s.storms_s * track_s,
        subtropics=gauss(np.abs(phi - 0.5 * (s.itcz_lat - 5.0)) - 27.0, 7.0),
        u=cos_phi * bracket,
        v=v,
        angular_velocity=bracket / radius,
    )


def climatological_temperature(lat_deg: np.ndarray, s: Season) -> np.ndarray:
    """Zonal-mean surface temperature (K) at sea level: 300 K at the equator, ≈ 250–270 K at the poles,
    the summer hemisphere warmer."""
    phi = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    return 300.0 - 40.0 * np.sin(phi) ** 2 + 12.0 * s.north_summer * np.sin(phi) * np.abs(np.sin(phi)) ** 0.5


#: Fixed zonal asymmetry of tropical convection: (lat, lon, radius deg, shift of μ_c). A warm pool over
#: the maritime continent, cold tongues in the eastern Pacific and Atlantic.
TROPICAL_ANOMALIES: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 135.0, 35.0, 0.5), (-3.0, 255.0, 25.0, -0.7), (-3.0, 345.0, 18.0, -0.4),
)


def tropical_asymmetry(p: np.ndarray) -> np.ndarray:
    """Shift (latent units) of the convective latent at positions ``p (..., 3)``, before the tropical
    weight is applied: Σ shift · g(angle to centre, radius / 2)."""
    from data_catalog.cubesphere import lat_lon_to_unit_vectors

    out = np.zeros(p.shape[:-1])
    for lat, lon, radius, shift in TROPICAL_ANOMALIES:
        angle = np.rad2deg(np.arccos(np.clip(p @ lat_lon_to_unit_vectors(np.array(lat), np.array(lon)), -1, 1)))
        out += shift * gauss(angle, radius / 2.0)
    return out
