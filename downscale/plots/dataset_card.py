"""Figures of the dataset card: frames of fine and coarse precipitation, topography and climatology.

``data`` and ``config`` come from :func:`data_catalog.synthetic.card.measure_card`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_catalog.synthetic.config import STEP_HOURS, SyntheticConfig
from data_catalog.synthetic.topography import LAND_BASE_HEIGHT
from downscale.plots.globe import add_coastlines, plot_cube, precipitation_norm, zoom, zoom_window


def card_figures(data: dict, config: SyntheticConfig, out_dir: Path) -> list[Path]:
    """Write ``synthetic-{preset}-frames.png`` and ``synthetic-{preset}-climate.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    grid, cgrid = data["grid"], data["cgrid"]
    lonb, latb = grid.lonb.values, grid.latb.values
    fine, coarse, times = data["fine"][0], data["coarse"][0], data["times"][0]
    t0 = min(len(fine) - 9, int(20 * 24 / STEP_HOURS))
    norm = precipitation_norm(0.1, 200.0)
    style = dict(norm=norm, cmap="YlGnBu", mask_below=0.1)

    fig, axes = plt.subplots(2, 2, figsize=(15, 8.2), layout="constrained")
    panels = [(fine[t0], lonb, latb, f"fine C{config.fine_n} PRATEsfc, {times[t0]}"),
              (fine[t0 + 1], lonb, latb, f"fine, 3 h later ({times[t0 + 1]})"),
              (coarse[t0], cgrid.lonb.values, cgrid.latb.values,
               f"coarse C{config.coarse_n} PRATEsfc_coarse, {times[t0]}"),
              (fine[t0 + 8], lonb, latb, f"fine, 24 h later ({times[t0 + 8]})")]
    for ax, (values, xb, yb, title) in zip(axes.flat, panels, strict=True):
        meshes = plot_cube(ax, xb, yb, values, **style)
        add_coastlines(ax)
        ax.set_title(title, fontsize=10)
    fig.colorbar(meshes[0], ax=axes, shrink=0.7, label="precipitation (mm/day, log scale; < 0.1 blank)")
    fig.suptitle(f"synthetic FV3GFS '{config.name}', member {config.members[0]}: weather systems, ITCZ, "
                 "sub-coarse convection (tiles drawn separately from their corners)")
    frames = out_dir / f"synthetic-{config.name}-frames.png"
    fig.savefig(frames, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(15, 8.2), layout="constrained")
    axes[0, 0].set_facecolor("lightsteelblue")
    mesh = plot_cube(axes[0, 0], lonb, latb, data["zsurf"], cmap="gist_earth", vmin=-800.0, vmax=6000.0,
                     mask_below=0.5 * LAND_BASE_HEIGHT)
    add_coastlines(axes[0, 0])
    fig.colorbar(mesh[0], ax=axes[0, 0], shrink=0.8, label="zsurf (m)")
    axes[0, 0].set_title("zsurf (m); land fraction < 1/2 blank",
                         fontsize=10)
    mean = np.mean(np.stack(data["fine"]), axis=(0, 1))
    mesh = plot_cube(axes[0, 1], lonb, latb, mean, **style)
    add_coastlines(axes[0, 1])
    fig.colorbar(mesh[0], ax=axes[0, 1], shrink=0.8, label="mm/day")
    axes[0, 1].set_title(f"mean precipitation over {len(data['fine'])} members x {len(fine)} records", fontsize=10)
    for ax, region in zip(axes[1], ("california", "himalayas"), strict=True):
        mesh = plot_cube(ax, lonb, latb, mean, **style)
        ax.contour(*_contour_grid(grid, data["zsurf"], region), levels=[1000, 2500, 4000], colors="saddlebrown",
                   linewidths=0.8)
        add_coastlines(ax, linewidth=0.8)
        zoom(ax, region)
        ax.set_title(f"{region}: mean precipitation, zsurf contours 1000/2500/4000 m", fontsize=10)
    climate = out_dir / f"synthetic-{config.name}-climate.png"
    fig.savefig(climate, dpi=90)
    plt.close(fig)
    return [frames, climate]


def _contour_grid(grid, zsurf: np.ndarray, region: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """zsurf on a regular lon-lat grid around ``region`` (nearest cell centre), for contour lines."""
    from scipy.spatial import cKDTree

    from data_catalog.cubesphere import lat_lon_to_unit_vectors

    lon0, lon1, lat0, lat1 = zoom_window(region)
    lon, lat = np.meshgrid(np.linspace(lon0, lon1, 121), np.linspace(lat0, lat1, 121))
    centres = lat_lon_to_unit_vectors(grid.lat.values.ravel(), grid.lon.values.ravel())
    _, idx = cKDTree(centres).query(lat_lon_to_unit_vectors(lat, lon).reshape(-1, 3))
    return lon, lat, zsurf.ravel()[idx].reshape(lon.shape)
