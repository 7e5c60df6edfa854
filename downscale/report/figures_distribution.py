"""Distribution and extreme-value figures: pure functions (curves/scalars Dataset) → matplotlib Figure.

Histograms are drawn as probability densities per mm/day on log–log axes (the stored fine log bins are
merged ~80 at a time so that a short record still reads as a curve); Q–Q curves are read off the same
histograms at quantiles 0.9 … 0.99999 (the stored ``quantile_value`` points are marked). Return levels of
regional daily totals come with their bootstrap CI; a source without a GPD fit (fewer than 10 days above
the truth's threshold) is named in the legend instead of drawn. The reliability diagram of heavy rain shows
the observed frequency of exceeding the truth's 99th / 99.9th percentile against the forecast probability.

Example::

    >>> fig = histogram_figure(diags.curves, source_colors(diags.curves.source.values))
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from downscale.diagnostics.distribution import histogram_quantiles
from downscale.report.style import MM_DAY, SECONDS_PER_DAY, new_figure, panel_grid, source_style, tidy_log_axis

PLOT_BINS = 100
REGION_PANEL = (4.0, 3.2)
MIN_RATE_MM_DAY = 1e-2
QQ_QUANTILES = 1.0 - np.logspace(-1, -5, 33)


def merged_density(hist: xr.DataArray, n_plot: int = PLOT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Density per mm/day of a ``(bin,)`` histogram on ~``n_plot`` merged log bins, and the bin centres in
    mm/day; bin 0 (dry, under the floor) counts in the total but is not drawn."""
    counts = hist.values[1:]
    lower, upper = hist["lower"].values[1:] * SECONDS_PER_DAY, hist["upper"].values[1:] * SECONDS_PER_DAY
    g = max(1, counts.size // n_plot)
    m = counts.size // g * g
    merged = counts[:m].reshape(-1, g).sum(axis=1)
    lo, hi = lower[:m:g], upper[g - 1:m:g]
    total = float(hist.values.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        dens = merged / (total * (hi - lo))
    return np.sqrt(lo * hi), np.where(dens > 0, dens, np.nan)


def histogram_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Area-weighted density of precipitation rates per region, log–log, every source."""
    regions = [str(r) for r in curves.region.values]
    fig, axes = panel_grid(len(regions), 3, REGION_PANEL)
    for ax, region in zip(axes, regions, strict=True):
        for s in curves.source.values:
            x, d = merged_density(curves.histogram.sel(source=s, region=region))
            ax.plot(x, d, **source_style(str(s), colors))
        ax.set(xscale="log", yscale="log", title=region, xlabel=f"precipitation rate ({MM_DAY})",
               ylabel=f"density (per {MM_DAY})")
        ax.set_xlim(left=MIN_RATE_MM_DAY)
        tidy_log_axis(ax.xaxis)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def qq_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Quantiles of every source against the truth's (0.9 … 0.99999), log axes, with the 1:1 line."""
    regions = [str(r) for r in curves.region.values]
    dense = histogram_quantiles(curves.histogram, QQ_QUANTILES) * SECONDS_PER_DAY
    stored = curves.quantile_value * SECONDS_PER_DAY
    fig, axes = panel_grid(len(regions), 3, REGION_PANEL)
    for ax, region in zip(axes, regions, strict=True):
        t, ts = dense.sel(source="truth", region=region).values, stored.sel(source="truth", region=region).values
        for s in curves.source.values:
            if s == "truth":
                continue
            style = source_style(str(s), colors)
            ax.plot(t, dense.sel(source=s, region=region).values, **style)
            ax.plot(ts, stored.sel(source=s, region=region).values, "o", color=style["color"], markersize=4)
        finite = np.concatenate([t[np.isfinite(t) & (t > 0)], [1.0]])
        lims = [finite.min() / 1.5, finite.max() * 1.5]
        ax.plot(lims, lims, color="black", linewidth=1, linestyle=":", label="1:1")
        ax.set(xscale="log", yscale="log", xlim=lims, ylim=lims, title=region,
               xlabel=f"truth quantile ({MM_DAY})", ylabel=f"source quantile ({MM_DAY})")
        tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def return_level_figure(curves: xr.Dataset, colors: dict[str, str], tail_region: str) -> Figure:
    """GPD return levels of daily totals in one tail region against return period, with bootstrap CIs."""
    rl = curves.sel(tail_region=tail_region)
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    periods = rl.return_period.values
    skipped = []
    for s in rl.source.values:
        level = rl.return_level.sel(source=s).values
        n = int(rl.return_n_exceedances.sel(source=s))
        if not np.isfinite(level).any():
            skipped.append(f"{s} ({n} d)")
            continue
        style = source_style(str(s), colors)
        style["label"] = f"{s} ({n} days above)"
        ax.plot(periods, level, marker="o", markersize=3, **style)
        ax.fill_between(periods, rl.return_lower.sel(source=s).values, rl.return_upper.sel(source=s).values,
                        color=style["color"], alpha=0.15, linewidth=0)
    ax.set(xscale="log", title=f"{tail_region}: return levels of daily precipitation",
           xlabel="return period (years)", ylabel="daily total (mm/day)")
    ax.set_xlim(periods.min() / 1.2, periods.max() * 1.2)
    tidy_log_axis(ax.xaxis)
    ax.grid(True, which="both", alpha=0.3)
    if len(skipped) == rl.sizes["source"]:
        ax.text(0.5, 0.5, "no source has ≥ 10 days above the truth's threshold", transform=ax.transAxes,
                ha="center", va="center", fontsize=10, color="0.3")
    else:
        ax.legend(fontsize=8, title=("no fit: " + ", ".join(skipped)) if skipped else None, title_fontsize=8)
    return fig


def dry_spell_figure(curves: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Distribution of dry-spell lengths (consecutive days under 1 mm), log frequency."""
    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for s in curves.source.values:
        f = curves.dry_spell_frequency.sel(source=s)
        ax.plot(f.spell_length.values, np.where(f.values > 0, f.values, np.nan), marker="o", markersize=3,
                **source_style(str(s), colors))
    ax.set(yscale="log", title="dry-spell length distribution", xlabel="dry-spell length (days)",
           ylabel="fraction of dry spells")
    last = int(curves.spell_length.max())          # the last point pools every longer spell
    ticks = [int(t) for t in ax.get_xticks() if 1 <= t <= last - 3] + [last]
    ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + [f"≥ {last}"])
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def wet_day_figure(scalars: xr.Dataset, colors: dict[str, str]) -> Figure:
    """Wet-day frequency (%) and intensity (mm/day) per source as bars, the truth's as a dashed line."""
    fig = new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    sources = [str(s) for s in scalars.source.values]
    for ax, var, scale, label in ((axes[0], "wet_day_frequency", 100.0, "wet-day frequency (%)"),
                                  (axes[1], "wet_day_intensity", 1.0, "wet-day intensity (mm/day)")):
        values = scalars[var].values * scale
        ax.bar(range(len(sources)), values, color=[colors[s] for s in sources])
        if "truth" in sources:
            ax.axhline(values[sources.index("truth")], color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(sources)), sources, rotation=20, fontsize=8)
        ax.set(ylabel=label, title=label.split(" (")[0])
        ax.grid(True, axis="y", alpha=0.3)
    return fig


def reliability_figure(curves: xr.Dataset, colors: dict[str, str], region: str = "global") -> Figure:
    """Reliability diagram of heavy rain in ``region``: one panel per threshold (the truth's quantile), the
    observed frequency of the event against the forecast probability for every source but the truth; marker
    area ∝ the bin's share of the cells × times, the diagonal is perfect reliability."""
    freq = curves.reliability_frequency.sel(region=region)
    weight = curves.reliability_weight.sel(region=region)
    levels = freq.threshold_quantile.values
    fig, axes = panel_grid(len(levels), 3, (4.2, 4.0))
    for ax, q in zip(axes, levels, strict=True):
        u = float(curves.brier_threshold.sel(region=region, threshold_quantile=q)) * SECONDS_PER_DAY
        for s in freq.source.values:
            if s == "truth":
                continue
            f, w = freq.sel(source=s, threshold_quantile=q).values, weight.sel(source=s, threshold_quantile=q).values
            used = w > 0
            style = source_style(str(s), colors)
            p = freq.probability.values
            ax.plot(p[used], f[used], color=style["color"], linestyle=style["linestyle"], linewidth=1.2,
                    label=style["label"])
            ax.scatter(p[used], f[used], s=8 + 150 * np.sqrt(w[used]), color=style["color"], alpha=0.6, zorder=3)
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1, label="perfect")
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), aspect="equal", xlabel="forecast probability",
               ylabel="observed frequency",
               title=f"{region}: rate > {u:.3g} {MM_DAY} (truth's {100 * float(q):.6g}th pct.)")
        ax.title.set_fontsize(9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
