"""Plotting helpers (matplotlib): cube-sphere fields on maps, with coastlines that need no download."""

from downscale.plots.globe import add_coastlines, plot_cube, precipitation_norm, zoom

__all__ = ["add_coastlines", "plot_cube", "precipitation_norm", "zoom"]
