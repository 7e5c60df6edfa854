"""Downscaling needs no training stack: importing ``downscale.inference`` (every module of it) and the model
bundle loads no Lightning module. (A whole ``generate`` run in a subprocess is checked in test_generate.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

#: Top-level names of the Lightning distributions (lightning, its fabric, and the older package name).
LIGHTNING = ("lightning", "lightning_fabric", "pytorch_lightning")

#: Appended to a script: prints the Lightning modules the process has loaded, as JSON, on its last line.
REPORT = f"""
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {LIGHTNING!r})))
"""


def lightning_modules_after(script: str) -> list[str]:
    """The Lightning modules a fresh interpreter has loaded after running ``script`` (which must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script + REPORT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_every_inference_module_and_the_bundle_loads_no_lightning():
    script = """
import importlib, pkgutil
import downscale.inference
import downscale.bundle, downscale.baselines
names = [m.name for m in pkgutil.iter_modules(downscale.inference.__path__, "downscale.inference.")]
assert "downscale.inference.generate" in names and "downscale.inference.runtime" in names, names
for name in names:
    importlib.import_module(name)
"""
    assert lightning_modules_after(script) == []


def test_the_check_sees_lightning_when_the_trainer_is_imported():
    """The probe itself: importing the trainer does load Lightning, and the check reports it."""
    assert "lightning" in lightning_modules_after("import downscale.training.trainer")
