"""The pipeline and a deployment run against a real `prefect server start` on localhost (slow: ~2-3 min)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from downscale.inference import store

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pipeline_and_a_deployment_run_against_a_local_server(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run([str(REPO / "infra" / "prefect" / "run_against_server.sh"), str(workdir), "tests"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "deployment run" in proc.stdout and ": COMPLETED" in proc.stdout
    assert store.is_complete(workdir / "outputs" / "0002.zarr")
    assert (workdir / "report.html").exists()
