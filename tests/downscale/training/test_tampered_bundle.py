"""A trained bundle with one changed value in its metadata (σ_data 0.5 → 0.9: every sample would change, and
silently) is refused by ``downscale generate``: exit 2, one line naming the file and the problem, and no
output store created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tiny_training import tiny_config

from downscale.bundle import BundleError, load_model, read_bundle_metadata
from downscale.training.trainer import train

REPO = Path(__file__).resolve().parents[3]


def test_generate_refuses_a_bundle_with_tampered_metadata(tiny_prepared, tmp_path):
    bundle = train(tiny_config(tiny_prepared, tmp_path / "train", max_steps=2))
    assert read_bundle_metadata(bundle).model.sigma_data == 0.5
    raw = bundle.read_bytes()
    old, new = b'sigma_data\\": 0.5', b'sigma_data\\": 0.9'  # JSON inside the safetensors header's JSON
    assert raw.index(old) < raw.index(b'training\\": ')  # the first is the model spec's
    bundle.write_bytes(raw.replace(old, new, 1))
    with pytest.raises(BundleError, match="metadata checksum mismatch"):
        load_model(bundle)

    out = tmp_path / "gen" / "out.zarr"
    catalog = Path(tiny_prepared).parent / "synthetic" / "catalog.yaml"
    proc = subprocess.run([sys.executable, "-m", "downscale.cli", "generate", "--bundle", str(bundle),
                           "--catalog", str(catalog), "--member", "0002", "--out", str(out), "--members", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [f"error: bundle {bundle}: metadata checksum mismatch (the header was modified or corrupted "
                      f"after it was written); re-export the bundle from its training checkpoint"], proc.stderr
    assert not out.exists() and not out.parent.exists()
