"""The downscale tests run tiny tensors: one torch thread is as fast as two and immune to a busy machine
(two OpenMP threads on two shared cores can be >10× slower). Restored after each test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
