"""Fixtures of the training tests: one tiny prepared dataset per session, subprocess runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_training import prepare_tiny_dataset

from downscale.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[3]
HARNESS = Path(__file__).resolve().with_name("ddp_harness.py")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """Synthetic ``tests`` preset, C4 → C16, 2 members (0002 held out), clips of 3 frames."""
    return prepare_tiny_dataset(tmp_path_factory.mktemp("tiny-data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_command(config: TrainConfig, report: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    """Command and environment of ``python tests/downscale/training/ddp_harness.py`` for ``config``."""
    report.mkdir(parents=True, exist_ok=True)
    cfg = report / "config.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "PYTHONPATH": str(REPO)}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_NTASKS", "SLURM_JOB_ID"):
        env.pop(key, None)
    return [sys.executable, str(HARNESS), "--config", str(cfg), "--report", str(report),
            *extra], env


def run_script(config: TrainConfig, report: Path, *extra: str, timeout: float = 240) -> list[dict]:
    """Run the script to completion; returns the per-rank reports."""
    cmd, env = script_command(config, report, *extra)
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"training script failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return [json.loads(p.read_text()) for p in sorted(report.glob("rank*.json"))]


def batch_log(path: Path) -> dict[int, tuple]:
    """Step → (members, starts) from a batches-rank*.jsonl file; a later line for a step wins."""
    out = {}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out[d["step"]] = (tuple(d["member"]), tuple(d["start"]))
    return out


class ScriptRunner:
    """The helpers above, handed to tests as a fixture (conftest modules are not imported by name)."""

    command = staticmethod(script_command)
    run = staticmethod(run_script)
    batch_log = staticmethod(batch_log)
    repo = REPO


@pytest.fixture
def script() -> ScriptRunner:
    return ScriptRunner()
