"""Shared fixtures: the real FV3GFS C48 files (tests/fixtures, MIT, see its README) and a session-wide Prefect
test harness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
C48 = FIXTURES / "fv3gfs-c48"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not C48.is_dir():
        pytest.fail(f"real FV3GFS fixtures not found at {C48}: they ship with the repository (tests/fixtures)")
    return FIXTURES


@pytest.fixture(scope="session")
def c48_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "fv3gfs-c48"


# Keep Prefect, Dask and torch quiet and local in every test process.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect API for the whole session (it takes ~15 s to start)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
