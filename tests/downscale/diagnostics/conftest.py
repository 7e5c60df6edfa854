"""Fixtures of the diagnostics tests."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from diag_helpers import output_grid


@pytest.fixture
def grid8() -> xr.Dataset:
    return output_grid(8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
