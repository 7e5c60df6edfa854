"""The validation report: score an output store (:func:`evaluate`) and render one offline HTML page of
tables and figures from the diagnostics folder (:func:`render_report`).

Example::

    >>> from downscale.report import evaluate, render_report
    >>> evaluate("outputs.zarr", "diagnostics/")
    >>> render_report("diagnostics/", "outputs.zarr", "report.html")
"""

from downscale.report.evaluate import evaluate
from downscale.report.render import render_report

__all__ = ["evaluate", "render_report"]
