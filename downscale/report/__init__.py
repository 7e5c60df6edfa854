"""The validation report: render one offline HTML page of tables and figures from a diagnostics folder
(:func:`render_report`). It only renders: scoring is :mod:`downscale.evaluation`.

Example::

    >>> from downscale.evaluation.evaluate import evaluate
    >>> from downscale.report import render_report
    >>> evaluate("outputs.zarr", "diagnostics/")
    >>> render_report("diagnostics/", "outputs.zarr", "report.html")
"""

from downscale.report.render import render_report

__all__ = ["render_report"]
