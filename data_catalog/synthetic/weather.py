"""The synthetic weather: precipitation, winds, temperature and sunshine on the fine grid at any time.

Every field is a function of the position ``p`` of a cell on the sphere and of time (the random parts
are :class:`~data_catalog.synthetic.noise.EvolvingField` s), so the tiles join without seams and each
time can be computed alone (time chunks are generated in parallel and reproducibly).

Ingredients, per cell and time (φ latitude, w_* regime weights of :mod:`~data_catalog.synthetic.climate`):

* ψ — large-scale "pressure" pattern (≈ 4500 km, life 2·H_syn = 60 h), drifting with the zonal-mean
  wind; evaluated on a helper cube sphere and remapped smoothly (C²) to the fine cells. Its rotational
  wind ``u_e = A_e(φ) · tanh(φ/8°) · p × ∇ψ / σ_∇`` is the eddy part of the 10 m wind, and
  ``v_n = (p × ∇ψ)·north / σ_∇`` (unit variance) marks the poleward flow ahead of troughs.
* T_c — tropical cluster pattern (≈ 2000 km, life 36 h), drifting with the trade easterlies.
* S — sub-coarse convective texture: power-law spectrum between two coarse cells and 2.5 fine cells,
  life ``2·H_conv`` (9 h), carried by the full local wind ``U = ū e + v̄ n + u_e``.
* w = U · ∇zsurf — upslope (> 0) or downslope (< 0) surface flow (m/s).

Precipitation (mm/day) is the sum of a large-scale part and a convective part, each an exponential of
a shifted Gaussian latent cut at zero (intermittent, heavy-tailed):

    X_ls   = (a (0.8 v_n − 0.6 ψ) + b T_c) / √(a² + b²),   a = w_storm + 0.15,  b = w_trop + 0.15
    P_ls   = A_ls q · (exp(c(σ_ls (X_ls + 0.3 S + μ_ls + o(w)))) − 1)
    P_conv = A_c  q · (exp(c(σ_c (√(1 − s²) X_ls + s S + μ_c + d + 0.6 o(w)))) − 1)

with c(z) = max(z, 0) bent smoothly above 4.5 (:func:`soft_cap`), μ and A climatological shifts and
amplitudes (wet ITCZ and storm tracks, dry subtropics, a warm pool and cold tongues, monsoon land),
d the diurnal cycle (afternoon peak over land, early-morning peak over sea), o(w) the orographic term
(upslope wetter, lee side drier) and q = exp(0.025 K⁻¹ (T_clim − 300 K)) a moisture factor. All the
constants are in :class:`Knobs`. Fields are instantaneous at the middle of each 3-hour interval
(a proxy for the 3-hour mean), except the TOA flux (a true 3-hour mean).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import cftime
import numpy as np
from scipy import sparse

from data_catalog.cubesphere import cell_areas, cell_centre_unit_vectors, local_east_north, unit_vectors_to_lat_lon
from data_catalog.schema import EARTH_RADIUS, N_TILES, SECONDS_PER_DAY
from data_catalog.synthetic.climate import (Season, climatological_temperature, gauss, season, tropical_asymmetry,
                                            zonal_profiles)
from data_catalog.synthetic.config import STEP_HOURS, SyntheticConfig
from data_catalog.synthetic.gradient import SurfaceGradient
from data_catalog.synthetic.noise import EvolvingField, log_normal_band, power_law_band, spectral_volume
from data_catalog.synthetic.remap import shepard_matrix
from data_catalog.synthetic.solar import SunGeometry
from data_catalog.synthetic.topography import land_fraction, surface_height

#: Fine fields a model step returns (SI units; precipitation in kg m-2 s-1).
FINE_FIELDS = ("PRATEsfc", "CPRATsfc", "TMPsfc", "UGRD10m", "VGRD10m", "DSWRFtoa")
#: Temperature lapse rate (K/m) applied to zsurf.
LAPSE_RATE = 0.0065


@dataclass(frozen=True)
class Knobs:
    """Constants of the precipitation and temperature formulas (module docstring). Shifts μ are in
    units of the latent's standard deviation, amplitudes A in mm/day; each is a constant plus
    coefficients on the regime weights (ITCZ, tropics, storm tracks, subtropics)."""

    small_scale_share: float = 0.78      # s: weight of the convective texture S in the convective latent
    stratiform_texture: float = 0.3      # weight of S in the large-scale latent (ragged edges, embedded cells)
    exponent_knee: float = 4.5           # σX above which the exponent is bent (soft_cap)
    sigma_ls: float = 0.9                # σ_ls
    sigma_conv: float = 1.15             # σ_c
    mu_ls: tuple[float, float, float, float, float] = (-0.9, 0.3, 0.0, 1.0, -0.6)    # const, itcz, trop, storm, subtr
    mu_conv: tuple[float, float, float, float, float] = (-0.85, 1.2, 0.35, 0.35, -0.7)
    amp_ls: tuple[float, float, float, float, float] = (1.5, 0.0, 0.0, 6.0, 0.0)
    amp_conv: tuple[float, float, float, float, float] = (0.9, 1.2, 1.5, 1.0, 0.0)
    tropical_asymmetry: float = 1.0      # weight of the fixed warm-pool / cold-tongue pattern in μ_c
    orographic_up: float = 1.3           # o(w) = up · tanh(w⁺/w0) − down · tanh(w⁻/w0)
    orographic_down: float = 0.8
    orographic_w0: float = 0.04          # m/s
    diurnal_land: float = 0.9            # amplitude of d over land (latent units), peak at 15:30 LST
    diurnal_sea: float = 0.15            # over sea, peak at 05:00 LST
    eddy_wind: float = 5.5               # m/s, rms of each eddy wind component over the storm tracks
    monsoon_wind: float = 6.0            # m/s, peak of the South-Asian summer monsoon flow
    moisture_rate: float = 0.025         # 1/K, q = exp(rate (T_clim − 300 K))
    negative_fraction: float = 2e-3      # share of dry cells set to −1e-13 when negative_noise is on


def soft_cap(z: np.ndarray, knee: float, width: float = 1.5) -> np.ndarray:
    """``max(z, 0)``, bent smoothly above ``knee`` so that it never exceeds ``knee + width``: keeps the
    exponential tail from producing absurd maxima (≈ 1000 mm/day at most) while leaving z < knee alone."""
    z = np.maximum(z, 0.0)
    return np.where(z > knee, knee + width * np.tanh((z - knee) / width), z)


def _regimes(c: tuple[float, ...], zp) -> np.ndarray:
    return c[0] + c[1] * zp.itcz + c[2] * zp.tropics + c[3] * zp.storm_tracks + c[4] * zp.subtropics


@dataclass(frozen=True)
class Geography:
    """The fixed fine-grid geometry and surface, flattened over (tile, y, x) = P cells."""

    n: int
    p: np.ndarray           #: (P, 3) cell-centre unit vectors
    lat: np.ndarray         #: (P,) degrees
    lon: np.ndarray         #: (P,) degrees in [0, 360)
    east: np.ndarray        #: (P, 3) local unit east
    north: np.ndarray       #: (P, 3) local unit north
    area: np.ndarray        #: (P,) m**2
    land: np.ndarray        #: (P,) land fraction
    zsurf: np.ndarray       #: (P,) m
    grad_z: np.ndarray      #: (P, 3) m per m
    asymmetry: np.ndarray   #: (P,) fixed warm-pool / cold-tongue shift of the convective latent
    gradient: SurfaceGradient
    sun: SunGeometry

    @property
    def lat_rad(self) -> np.ndarray:
        return np.deg2rad(self.lat)

    @property
    def lon_rad(self) -> np.ndarray:
        return np.deg2rad(self.lon)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (N_TILES, self.n, self.n)


@lru_cache(maxsize=4)
def geography(n: int) -> Geography:
    """Geometry, land and topography of the C-``n`` grid (cached)."""
    p = cell_centre_unit_vectors(n)
    lat, lon = unit_vectors_to_lat_lon(p)
    east, north = local_east_north(p)
    land = land_fraction(p)
    z = surface_height(p, land)
    grad = SurfaceGradient(n)
    flat = lambda a: np.ascontiguousarray(a.reshape(N_TILES * n * n, *a.shape[3:]))  # noqa: E731
    return Geography(n, flat(p), flat(lat), flat(lon), flat(east), flat(north), flat(cell_areas(n)),
                     flat(land), flat(z), flat(grad(z) / EARTH_RADIUS), flat(tropical_asymmetry(p)), grad,
                     SunGeometry(np.deg2rad(flat(lat)), np.deg2rad(flat(lon))))


@dataclass(frozen=True)
class DayState:
    """Everything of the formulas that changes only with the season, on the fine cells (P,) or (P, 3)."""

    season: Season
    omega_helper: np.ndarray     #: (H,) angular drift of large-scale patterns on the helper grid, rad/s
    omega_fine: np.ndarray       #: (P,) the same on the fine cells
    mean_wind: np.ndarray        #: (P, 3) ū east + v̄ north, m/s
    eddy_amp: np.ndarray         #: A_e(φ) · sgn(φ), m/s
    weight_storm: np.ndarray     #: a / √(a² + b²)
    weight_trop: np.ndarray      #: b / √(a² + b²)
    storm_clipped: np.ndarray    #: min(w_storm, 1)
    mu_ls: np.ndarray
    mu_c: np.ndarray
    amp_ls: np.ndarray           #: A_ls · q, mm/day
    amp_c: np.ndarray            #: A_c · q, mm/day
    diurnal_land: np.ndarray     #: amplitude of the afternoon convective peak (land)
    diurnal_sea: np.ndarray      #: amplitude of the early-morning peak (sea)
    temperature: np.ndarray      #: T_clim − lapse rate · zsurf + summer land warming, K
    diurnal_temperature: np.ndarray  #: K


def day_state(g: Geography, helper_lat: np.ndarray, doy: float, k: Knobs) -> DayState:
    """The :class:`DayState` of day of year ``doy`` on geography ``g``."""
    s = season(doy)
    zp = zonal_profiles(g.lat, s, EARTH_RADIUS)
    t_clim = climatological_temperature(g.lat, s)
    moisture = np.exp(k.moisture_rate * (t_clim - 300.0))
    a, b = zp.storm_tracks + 0.15, zp.tropics + 0.15
    norm = np.sqrt(a**2 + b**2)
    storm = np.minimum(zp.storm_tracks, 1.0)
    monsoon = 0.4 * g.land * s.north_summer * np.tanh(g.lat / 10.0)   # summer-hemisphere land wetter
    sin_lat = np.sin(np.deg2rad(g.lat))
    # South-Asian summer monsoon: south-westerlies over the Arabian Sea and Bay of Bengal that run up the
    # Himalayan front (so the Himalayas get their upslope rain in the northern summer).
    summer = max(s.north_summer, 0.0)
    east_of = lambda lon0: (g.lon - lon0 + 180.0) % 360.0 - 180.0  # noqa: E731
    monsoon_u = k.monsoon_wind * summer * gauss(east_of(75.0), 20.0) * gauss(g.lat - 12.0, 6.0)
    monsoon_v = k.monsoon_wind * summer * gauss(east_of(85.0), 15.0) * gauss(g.lat - 20.0, 7.0)
    return DayState(
        season=s,
        omega_helper=zonal_profiles(helper_lat, s, EARTH_RADIUS).angular_velocity,
        omega_fine=zp.angular_velocity,
        mean_wind=(zp.u + monsoon_u)[:, None] * g.east + (zp.v + monsoon_v)[:, None] * g.north,
        eddy_amp=k.eddy_wind * (0.3 + 0.7 * storm) * np.tanh(g.lat / 8.0),
        weight_storm=a / norm, weight_trop=b / norm, storm_clipped=storm,
        mu_ls=_regimes(k.mu_ls, zp),
        mu_c=_regimes(k.mu_conv, zp) + zp.tropics * (k.tropical_asymmetry * g.asymmetry + monsoon),
        amp_ls=_regimes(k.amp_ls, zp) * moisture,
        amp_c=_regimes(k.amp_conv, zp) * moisture,
        diurnal_land=k.diurnal_land * g.land,
        diurnal_sea=k.diurnal_sea * (1.0 - g.land),
        temperature=t_clim - LAPSE_RATE * g.zsurf + 5.0 * g.land * s.north_summer * sin_lat,
        diurnal_temperature=0.6 + 4.5 * g.land,
    )


def mean_cell_size(n: int) -> float:
    """Mean cell width of C-``n`` on the unit sphere (radians): √(4π / 6) / n."""
    return float(np.sqrt(4 * np.pi / 6) / n)


def helper_resolution(fine_n: int) -> int:
    """C-N of the helper grid on which ψ is evaluated: ≥ C48 (≈ 200 km, 20 points per wavelength of the
    ≈ 4500 km pressure pattern) and ≥ half the fine resolution, but never finer than the fine grid."""
    return min(fine_n, max(48, fine_n // 2))


@lru_cache(maxsize=4)
def helper_grid(fine_n: int) -> tuple[np.ndarray, np.ndarray, sparse.csr_matrix]:
    """Helper-grid positions ``(H, 3)``, latitudes ``(H,)`` and the remapping ``(P, H)`` to the fine cells."""
    n_help = helper_resolution(fine_n)
    p = cell_centre_unit_vectors(n_help).reshape(-1, 3)
    lat = unit_vectors_to_lat_lon(p)[0]
    return p, lat, shepard_matrix(p, geography(fine_n).p, 1.7 * mean_cell_size(n_help))


class WeatherModel:
    """The weather of one ensemble member: ``model.fields(i)`` gives the fine fields of record ``i``.

    Members share geography and climate; they differ only through their seed (the random volumes and
    the draws of every pattern generation). All three random fields read periodic 64³ volumes: ψ and
    T_c with lattice spacing 0.04 (period 2.56 > the sphere's diameter: no repetition), S with half a
    fine cell (period 32 fine cells, ≥ 4 coarse cells). ψ is evaluated on a helper cube sphere
    (:func:`helper_resolution`) and carried to the fine cells by a fixed C² remapping
    (:mod:`~data_catalog.synthetic.remap`), so that its gradient — the eddy wind — is smooth; T_c and S
    are evaluated on the fine cells themselves (a fixed remapping would imprint the helper grid on the
    variance of these shorter patterns, hence on the mean precipitation).
    """

    def __init__(self, config: SyntheticConfig, member: str, knobs: Knobs = Knobs()) -> None:
        self.config, self.member, self.knobs = config, member, knobs
        self.geo = geography(config.fine_n)
        self.helper_p, self.helper_lat, self.remap = helper_grid(config.fine_n)
        self.seed = seed = config.member_seed(member)
        rng = np.random.default_rng(seed)
        fine = mean_cell_size(config.fine_n)
        syn_h = 0.5 * config.synoptic_lifetime_hours * 3600
        self.synoptic = EvolvingField(spectral_volume(rng, 64, 0.04, log_normal_band(9.0, 0.35)), syn_h, seed + 1)
        self.tropical = EvolvingField(spectral_volume(rng, 64, 0.04, log_normal_band(20.0, 0.4)),
                                      0.6 * syn_h, seed + 2)
        k_coarse = 2 * np.pi / (2 * config.factor * fine)   # wavelength of two coarse cells
        k_fine = 2 * np.pi / (2.5 * fine)                   # wavelength of 2.5 fine cells
        self.convective = EvolvingField(
            spectral_volume(rng, 64, 0.5 * fine, power_law_band(k_coarse, k_fine, -1.2)),
            0.5 * config.convective_lifetime_hours * 3600, seed + 3)
        self._days: dict[int, DayState] = {}
        self._scales = self._pattern_scales()

    # -- time and climate ---------------------------------------------------------------------------
    def date(self, i: int) -> cftime.datetime:
        """Middle of record ``i``'s 3-hour interval."""
        return self.config.start_date + dt.timedelta(hours=STEP_HOURS * (i + 0.5))

    def day(self, date: cftime.datetime) -> DayState:
        """The climate of ``date``'s day (cached: it moves ≤ 0.15° of latitude a day)."""
        key = date.toordinal()
        state = self._days.get(key)
        if state is None:                  # thread-safe enough: at worst two threads compute the same day
            state = day_state(self.geo, self.helper_lat, float(date.dayofyr - 1) + 0.5, self.knobs)
            if len(self._days) >= 3:
                self._days.clear()
            self._days[key] = state
        return state

    # -- the large-scale patterns -------------------------------------------------------------------
    def _raw_patterns(self, t: float, omega_helper: np.ndarray, omega_fine: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ψ, T_c (fine, not normalized) and p × ∇ψ (fine, per radian) at time ``t`` (s)."""
        def zonal_drift(omega: np.ndarray):
            def departure(p: np.ndarray, age: float) -> np.ndarray:
                a = omega * age                     # departure point: rotated back about the polar axis
                ca, sa = np.cos(a), np.sin(a)
                return np.stack([p[:, 0] * ca + p[:, 1] * sa, -p[:, 0] * sa + p[:, 1] * ca, p[:, 2]], axis=1)
            return departure

        g = self.geo
        psi = self.remap @ self.synoptic(self.helper_p, t, zonal_drift(omega_helper))
        tropical = self.tropical(g.p, t, zonal_drift(omega_fine))
        rot = np.cross(g.p, g.gradient(psi.reshape(g.shape)).reshape(-1, 3))
        return psi, tropical, rot

    def _pattern_scales(self) -> tuple[float, float, float]:
        """Standard deviations of ψ, T_c and of one component of p × ∇ψ, measured on 4 days of this member
        (the remapping smooths the volumes a little)."""
        d = self.day(self.date(0))
        samples = [self._raw_patterns(t * SECONDS_PER_DAY, d.omega_helper, d.omega_fine) for t in range(4)]
        psi, trop, rot = (np.concatenate([s[j].ravel() for s in samples]) for j in range(3))
        return float(psi.std()), float(trop.std()), float(np.sqrt(np.mean(rot**2) * 1.5))

    # -- one record ---------------------------------------------------------------------------------
    def fields(self, i: int) -> dict[str, np.ndarray]:
        """The fine fields of record ``i``, each ``(6, n, n)`` float32 (see :data:`FINE_FIELDS`)."""
        g, k = self.geo, self.knobs
        date = self.date(i)
        t = STEP_HOURS * 3600 * (i + 0.5)
        d = self.day(date)

        psi, tropical, rot = self._raw_patterns(t, d.omega_helper, d.omega_fine)
        psi /= self._scales[0]
        tropical /= self._scales[1]
        rot /= self._scales[2]                                          # unit rms per component
        v_n = np.einsum("pk,pk->p", rot, g.north)
        wind = d.mean_wind + d.eddy_amp[:, None] * rot
        u = np.einsum("pk,pk->p", wind, g.east)
        v = np.einsum("pk,pk->p", wind, g.north)

        def carried(p: np.ndarray, age: float) -> np.ndarray:
            q = p - wind * (age / EARTH_RADIUS)
            return q / np.sqrt(np.einsum("pk,pk->p", q, q))[:, None]

        texture = self.convective(g.p, t, carried)

        x_ls = d.weight_storm * (0.8 * v_n - 0.6 * psi) + d.weight_trop * tropical
        w = np.einsum("pk,pk->p", wind, g.grad_z)
        oro = np.where(w > 0, k.orographic_up, k.orographic_down) * np.tanh(w / k.orographic_w0)
        diurnal = (d.diurnal_land * g.sun.cos_local_hour(date, 15.5) + d.diurnal_sea * g.sun.cos_local_hour(date, 5.0))
        ss = k.small_scale_share
        x_s = x_ls + k.stratiform_texture * texture + d.mu_ls + oro
        p_ls = d.amp_ls * np.expm1(soft_cap(k.sigma_ls * x_s, k.exponent_knee))
        x_c = np.sqrt(1 - ss**2) * x_ls + ss * texture + d.mu_c + diurnal + 0.6 * oro
        p_c = d.amp_c * np.expm1(soft_cap(k.sigma_conv * x_c, k.exponent_knee))
        total = (p_ls + p_c) / SECONDS_PER_DAY
        convective = p_c / SECONDS_PER_DAY
        if self.config.negative_noise:
            rng = np.random.default_rng([self.seed, i, 7])
            total = np.where((total == 0) & (rng.random(total.shape) < k.negative_fraction), -1e-13, total)

        temperature = (d.temperature + d.diurnal_temperature * g.sun.cos_local_hour(date, 14.5)
                       + d.storm_clipped * (2.5 * v_n + 1.5 * psi) + 0.8 * tropical)
        sun = g.sun.mean_flux(date - dt.timedelta(hours=STEP_HOURS / 2), STEP_HOURS)
        out = dict(PRATEsfc=total, CPRATsfc=convective, TMPsfc=temperature, UGRD10m=u, VGRD10m=v, DSWRFtoa=sun)
        return {name: np.asarray(out[name], dtype=np.float32).reshape(g.shape) for name in FINE_FIELDS}

    def chunk(self, indices: range) -> dict[str, np.ndarray]:
        """Fields of records ``indices``, each ``(6, len(indices), n, n)`` float32 (tile first)."""
        steps = [self.fields(i) for i in indices]
        return {name: np.stack([s[name] for s in steps], axis=1) for name in FINE_FIELDS}
