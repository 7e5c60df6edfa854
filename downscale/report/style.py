"""The look shared by every report figure and table: one colour per source, display units, PNG encoding.

Precipitation is stored in kg m-2 s-1 and shown in mm/day (1 kg m-2 s-1 = 86400 mm/day). Colours are
fixed per source kind so that the ensemble, each baseline, the coarse input and the truth look the same in
every figure: truth black, ensemble blue (extra ensembles light and dark blue), coarse grey, baselines from
a qualitative palette in order.

Example::

    >>> colors = source_colors(["ensemble", "bilinear", "coarse", "truth"])
    >>> colors["truth"]
    'black'
    >>> to_display(1.0 / 86400, "kg m-2 s-1")
    (1.0, 'mm/day')
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # the report is rendered headless, never on screen

import numpy as np  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from data_catalog.schema import SECONDS_PER_DAY  # noqa: E402,F401  (re-exported for the report modules)

MM_DAY = "mm/day"
FLUX = "kg m-2 s-1"
DPI = 90

_FIXED = {"truth": "black", "ensemble": "tab:blue", "ensemble_raw": "#6baed6", "ensemble_qm": "#08306b",
          "coarse": "0.55"}
_BASELINE_PALETTE = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                     "tab:cyan")
LABELS = {"ensemble": "ensemble (mean)", "coarse": "coarse input", "truth": "truth"}


def source_colors(sources: Sequence[str]) -> dict[str, str]:
    """A colour per source name: fixed for truth/ensemble/coarse, the palette in order for baselines."""
    colors, i = {}, 0
    for s in sources:
        if s in _FIXED:
            colors[s] = _FIXED[s]
        else:
            colors[s] = _BASELINE_PALETTE[i % len(_BASELINE_PALETTE)]
            i += 1
    return colors


def source_style(source: str, colors: dict[str, str]) -> dict:
    """Line style of a source in curve plots: the truth thicker, the coarse input dashed."""
    return {"color": colors[source], "label": source,
            "linewidth": 2.2 if source == "truth" else 1.5,
            "linestyle": "--" if source == "coarse" else "-", "zorder": 3 if source == "truth" else 2}


def to_display(value: float | np.ndarray, units: str) -> tuple[float | np.ndarray, str]:
    """A value in readable units: fluxes in mm/day, squared fluxes in (mm/day)², fractions unchanged."""
    if units == FLUX:
        return value * SECONDS_PER_DAY, MM_DAY
    if units == f"({FLUX})2":
        return value * SECONDS_PER_DAY**2, f"({MM_DAY})²"
    return value, units


def log_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    """Readable ticks 1, 2, 5 × 10^k within [lo, hi] (only the powers of ten if that gives too many)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= lo:
        return []
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1, 2, 5), (1,)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        if len(ticks) <= max_ticks:
            return ticks
    return ticks[:: int(np.ceil(len(ticks) / max_ticks))]


def tidy_log_axis(axis: Axis) -> None:
    """Label a log axis with plain numbers (0.1, 2, 50 …) at 1-2-5 ticks instead of 2×10⁰-style labels.
    Call after the limits are final."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = log_ticks(lo, hi)
    if len(ticks) >= 2:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot's global state (closed by garbage collection, never shown)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def panel_grid(n: int, ncols: int, panel: tuple[float, float], margin: tuple[float, float] = (0.0, 0.3)
               ) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` axes, ``ncols`` per row, each ``panel`` inches plus ``margin`` for the whole figure
    (e.g. a colour bar); returns the figure and its ``n`` visible axes (spare grid cells are hidden)."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = new_figure(panel[0] * ncols + margin[0], panel[1] * nrows + margin[1])
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def png_base64(fig: Figure) -> str:
    """The figure as a base64-encoded PNG (for a ``data:image/png;base64,`` URI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")
