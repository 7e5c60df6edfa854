"""The dataset card: measured statistics of a synthetic dataset.

:func:`measure_card` generates a preset under a root if it is not there, reads the stores back with the
project's own store reader (as a user's data would be read) and measures them; :func:`render` writes the
card as text. Precipitation in mm/day (1 kg m-2 s-1 = 86400 mm/day). The command line is
``downscale card --preset demo --root DIR [--json FILE] [--figure-dir DIR]``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import xarray as xr

from data_catalog.catalog import StoreRef
from data_catalog.schema import SECONDS_PER_DAY
from data_catalog.store_reader import open_store, standardize, standardize_grid
from data_catalog.synthetic import generate_synthetic
from data_catalog.synthetic import statistics as st
from data_catalog.synthetic.config import STEP_HOURS, SyntheticConfig, preset
from data_catalog.synthetic.gradient import SurfaceGradient
from data_catalog.synthetic.stores import MARKER, SyntheticLayout, layout_for
from data_catalog.synthetic.weather import geography

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 99, 99.9, 99.99, 99.999)
BAND_EDGES = np.arange(-90, 91, 15)


def _open(path: Path, names: list[str]) -> xr.Dataset:
    ref = StoreRef(urlpath=str(path))
    return standardize(open_store(ref), ref.display, names)


def load(layout: SyntheticLayout, config: SyntheticConfig) -> dict:
    """Fine and coarse fields of every member, stacked ``(member · time, tile, y, x)``, plus the grid."""
    fine, coarse, wind_u, wind_v, conv, times = [], [], [], [], [], []
    for m in layout.members:
        f = _open(layout.fine(m), ["PRATEsfc"])
        c = _open(layout.coarse(m), ["PRATEsfc_coarse", "CPRATsfc_coarse", "UGRD10m_coarse", "VGRD10m_coarse"])
        fine.append(f.PRATEsfc.values * SECONDS_PER_DAY)
        coarse.append(c.PRATEsfc_coarse.values * SECONDS_PER_DAY)
        conv.append(c.CPRATsfc_coarse.values * SECONDS_PER_DAY)
        wind_u.append(c.UGRD10m_coarse.values)
        wind_v.append(c.VGRD10m_coarse.values)
        times.append(f.indexes["time"])
    grid = standardize_grid(open_store(StoreRef(urlpath=str(layout.grid("fine")))), "grid", config.fine_n).load()
    cgrid = standardize_grid(open_store(StoreRef(urlpath=str(layout.grid("coarse")))), "grid", config.coarse_n).load()
    zsurf = _open(layout.static, ["zsurf"]).zsurf.values.astype(np.float64)
    return dict(fine=fine, coarse=coarse, conv=conv, u=wind_u, v=wind_v, times=times, grid=grid, cgrid=cgrid,
                zsurf=zsurf)


def measure(data: dict, config: SyntheticConfig) -> dict:
    """Every number of the card (see ``docs/dataset-card.md`` for their definitions)."""
    grid, factor = data["grid"], config.factor
    area, lat, lon = grid.area.values, grid.lat.values, grid.lon.values
    fine = np.concatenate(data["fine"])
    coarse = np.concatenate(data["coarse"])
    out: dict = {"preset": config.name, "grids": f"C{config.coarse_n} -> C{config.fine_n}",
                 "members": len(data["fine"]), "records_per_member": int(data["fine"][0].shape[0]),
                 "values": int(fine.size)}
    out["wet_fraction"] = st.wet_fraction(fine)
    out["percentiles_mm_day"] = dict(zip(map(str, PERCENTILES),
                                         np.percentile(fine, PERCENTILES).astype(float).round(3).tolist(), strict=True))
    out["mean_mm_day"] = float(fine.mean(dtype=np.float64))
    out["area_mean_mm_day"] = st.area_mean(fine, area)
    out["max_mm_day"] = float(fine.max())
    out["min_kg_m2_s"] = float(fine.min()) / SECONDS_PER_DAY
    conv = np.concatenate(data["conv"])
    coarse_area = data["cgrid"].area.values
    out["convective_fraction"] = st.area_mean(conv, coarse_area) / st.area_mean(coarse, coarse_area)
    k_lo, k_hi = config.coarse_n // 2, config.fine_n // 2
    out["spectral_slope"] = {"slope": st.spectral_slope(fine[::4], k_lo, k_hi), "k_range": [k_lo, k_hi]}
    per_member = [np.asarray(f) for f in data["fine"]]
    out["lag3h_autocorrelation"] = float(np.mean([st.lag_autocorrelation(f) for f in per_member]))
    out["lag24h_autocorrelation"] = float(np.mean([st.lag_autocorrelation(f, 8) for f in per_member]))
    residual = [f - np.repeat(np.repeat(c, factor, axis=-2), factor, axis=-1)
                for f, c in zip(per_member, data["coarse"], strict=True)]
    out["lag3h_autocorrelation_subcoarse"] = float(np.mean([st.lag_autocorrelation(r) for r in residual]))
    out["unexplained_fine_variance"] = st.unexplained_fraction(fine, coarse, area)
    out["coarse_equals_block_mean_max_abs_kg_m2_s"] = float(
        np.max(np.abs(st.block_mean(fine, area, factor) - coarse)) / SECONDS_PER_DAY)
    band_mean = st.band_means(fine, lat, area, BAND_EDGES)
    band_wet = st.band_means((fine > st.WET_THRESHOLD_MM_DAY).astype(np.float32), lat, area, BAND_EDGES)
    out["zonal_bands"] = {f"{lo:+d}..{hi:+d}": {"mean_mm_day": float(m), "wet_fraction": float(w)}
                          for lo, hi, m, w in zip(BAND_EDGES[:-1], BAND_EDGES[1:], band_mean, band_wet, strict=True)}
    f0 = data["fine"][0]
    ten_days = int(10 * 24 / STEP_HOURS)
    out["itcz_latitude"] = {"first_10_days": st.itcz_latitude(f0[:ten_days], lat, area),
                            "last_10_days": st.itcz_latitude(f0[-ten_days:], lat, area)}
    u = np.concatenate(data["u"])
    up_u = np.repeat(np.repeat(u, factor, axis=-2), factor, axis=-1)
    speeds = {}
    for name, band in (("southern_storm_track", (-60.0, -40.0)), ("northern_storm_track", (40.0, 60.0)),
                       ("tropics", (-5.0, 20.0))):
        sel = (lat >= band[0]) & (lat < band[1])
        speeds[name] = {"pattern_speed_m_s": float(np.mean([st.zonal_pattern_speed(f, lat, lon, band, 4, STEP_HOURS)
                                                            for f in per_member])),
                        "mean_UGRD10m_m_s": float(np.sum(up_u.mean(axis=0)[sel] * area[sel]) / np.sum(area[sel]))}
    out["zonal_drift"] = speeds
    land = geography(config.fine_n).land.reshape(area.shape) > 0.5
    hours = np.concatenate([[t.hour + t.minute / 60 for t in ts] for ts in data["times"]])
    out["diurnal_land_mm_day_by_lst"] = st.diurnal_composite(fine, lon, hours, land).round(3).tolist()
    out["diurnal_sea_mm_day_by_lst"] = st.diurnal_composite(fine, lon, hours, ~land).round(3).tolist()
    grad_z = SurfaceGradient(config.fine_n)(data["zsurf"]) / 6.3712e6
    v = np.concatenate(data["v"])
    w = st.upslope_winds(up_u, np.repeat(np.repeat(v, factor, axis=-2), factor, axis=-1), grad_z, config.fine_n)
    mountains = np.broadcast_to(data["zsurf"] > 500.0, w.shape)
    up, down = mountains & (w > 0.02), mountains & (w < -0.02)
    out["orographic"] = {"upslope_mean_mm_day": float(fine[up].mean()),
                         "downslope_mean_mm_day": float(fine[down].mean()),
                         "upslope_wet_fraction": st.wet_fraction(fine[up]),
                         "downslope_wet_fraction": st.wet_fraction(fine[down])}
    sample = np.log1p(f0[:: max(1, len(f0) // 40)])
    out["seam_ratio_log1p"] = st.seam_ratio(sample)
    return out


def render(stats: dict) -> str:
    """The card as plain text."""
    pct, slope = stats["percentiles_mm_day"], stats["spectral_slope"]
    lines = [
        f"synthetic FV3GFS '{stats['preset']}': {stats['grids']}, {stats['members']} members x "
        f"{stats['records_per_member']} 3-hourly records ({stats['values']:,} fine values)",
        f"wet fraction (> 0.1 mm/day)          {stats['wet_fraction']:.3f}",
        "percentiles (mm/day)                 " + "  ".join(f"p{k}={v:.4g}" for k, v in pct.items()),
        f"mean / area-weighted mean (mm/day)   {stats['mean_mm_day']:.3f} / {stats['area_mean_mm_day']:.3f}",
        f"max (mm/day), min (kg m-2 s-1)       {stats['max_mm_day']:.1f}, {stats['min_kg_m2_s']:.3g}",
        f"convective fraction (area mean)      {stats['convective_fraction']:.3f}",
        f"spectral slope, k in {slope['k_range']} (cycles/tile)  {slope['slope']:.2f}",
        f"lag-3h / lag-24h autocorrelation      {stats['lag3h_autocorrelation']:.3f} / "
        f"{stats['lag24h_autocorrelation']:.3f}",
        f"lag-3h autocorr. of fine - up(coarse) {stats['lag3h_autocorrelation_subcoarse']:.3f}",
        f"fine variance unexplained by nearest-upsampled coarse  {stats['unexplained_fine_variance']:.3f}",
        "max |block mean(fine) - PRATEsfc_coarse| (kg m-2 s-1)  "
        f"{stats['coarse_equals_block_mean_max_abs_kg_m2_s']:.3g}",
        f"ITCZ latitude, first / last 10 days  {stats['itcz_latitude']['first_10_days']:+.0f} / "
        f"{stats['itcz_latitude']['last_10_days']:+.0f} deg",
        f"tile-edge / interior neighbour differences (log1p)  {stats['seam_ratio_log1p']:.3f}",
        "zonal bands        mean mm/day   wet fraction",
    ]
    lines += [f"  {band:>10}     {v['mean_mm_day']:8.2f}      {v['wet_fraction']:.2f}"
              for band, v in stats["zonal_bands"].items()]
    lines.append("zonal drift of patterns vs mean UGRD10m (m/s)")
    lines += [f"  {k:22} {v['pattern_speed_m_s']:+6.1f}   {v['mean_UGRD10m_m_s']:+6.1f}"
              for k, v in stats["zonal_drift"].items()]
    lst = [f"{3 * i:02d}-{3 * i + 3:02d}h" for i in range(8)]
    lines.append("diurnal cycle by local solar time (mm/day): " + " ".join(lst))
    lines.append("  land  " + " ".join(f"{x:7.2f}" for x in stats["diurnal_land_mm_day_by_lst"]))
    lines.append("  sea   " + " ".join(f"{x:7.2f}" for x in stats["diurnal_sea_mm_day_by_lst"]))
    o = stats["orographic"]
    lines.append(f"mountains (zsurf > 500 m): upslope (w > 0.02 m/s) {o['upslope_mean_mm_day']:.2f} mm/day, wet "
                 f"{o['upslope_wet_fraction']:.2f}; downslope (w < -0.02) {o['downslope_mean_mm_day']:.2f} mm/day, wet "
                 f"{o['downslope_wet_fraction']:.2f}")
    return "\n".join(lines)


def measure_card(preset_name: str, root: Path) -> tuple[dict, SyntheticConfig, dict]:
    """Generate the preset under ``root`` if missing, then load it and measure the card's statistics.

    Returns ``(data, config, stats)``. Raises ``FileExistsError`` if ``root`` holds another dataset.
    """
    config = preset(preset_name)
    layout = layout_for(config, root)
    if not layout.marker.exists():
        t0 = time.perf_counter()
        generate_synthetic(config, root)
        log.info("generated %s in %.1f s", root, time.perf_counter() - t0)
    elif json.loads(layout.marker.read_text()).get("fingerprint") != config.fingerprint():
        raise FileExistsError(f"{root} holds another synthetic dataset ({MARKER} differs from preset '{preset_name}')")
    data = load(layout, config)
    return data, config, measure(data, config)
