"""Fixtures of the report tests: one tiny output store, evaluated and rendered once per session through the
CLI (the expensive part: scoring and drawing), shared by every test."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from downscale.cli import main
from report_helpers import write_output_store


@dataclass(frozen=True)
class ReportRun:
    """The store, its diagnostics folder, the report and what the two commands printed."""

    store: Path
    diagnostics: Path
    html: Path
    stdout: str


@pytest.fixture(scope="session")
def report_run(tmp_path_factory) -> ReportRun:
    root = tmp_path_factory.mktemp("report")
    store = write_output_store(root / "outputs.zarr")
    diagnostics, html = root / "diagnostics", root / "report.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", "--output", str(store), "--diagnostics", str(diagnostics), "--n-boot", "20"]) == 0
        assert main(["report", "--diagnostics", str(diagnostics), "--output", str(store), "--html", str(html)]) == 0
    return ReportRun(store, diagnostics, html, out.getvalue())
