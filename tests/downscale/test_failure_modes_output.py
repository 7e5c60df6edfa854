"""Faults of the output store as a user meets them on the command line (docs/failure-modes.md): exit code 2
and one line naming the store (and the variable, where there is one) and the problem; nothing finished lost;
and an input that is refused leaves no output behind at all.

``downscale generate`` runs in this process (``downscale.cli.main``) on the synthetic ``tests`` preset
(C4 → C16) with a tiny bundle trained on it for 4 steps. Faults the tests cannot make for real — a
read-only mount, a full disk, a folder without write permission while the tests run as root — are raised
by the storage layer itself (:mod:`storage_faults`); a path under a file and, for a non-root user, a
chmod'ed folder are real.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from storage_faults import fail_writes
from tiny_training import prepare_tiny_dataset, tiny_config

from data_catalog.synthetic.growing import absolute_catalog
from downscale.cli import main as cli
from downscale.inference import store
from downscale.inference.store_plan import BOOKKEEPING, ITEMS
from downscale.training.trainer import train

COARSE_0002 = Path("members/0002/sfc_8xdaily_ave_coarse.zarr")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """The synthetic stores and their catalog, and a tiny trained bundle."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("output-faults")
    bundle = train(tiny_config(prepare_tiny_dataset(root, days=2), root / "train", max_steps=4))
    return {"root": root, "bundle": bundle, "catalog": root / "synthetic" / "catalog.yaml"}


def _args(setup, out: Path, catalog: Path | None = None, bundle: Path | None = None) -> list[str]:
    """``downscale generate`` of member 0002 (16 frames, 4 work items of 4 frames, 2 members, 2 steps)."""
    return ["generate", "--bundle", str(bundle or setup["bundle"]), "--catalog", str(catalog or setup["catalog"]),
            "--member", "0002", "--out", str(out), "--members", "2", "--sampler", "dpmpp_2m", "--steps", "2",
            "--time-block", "4"]


def _one_line_error(code: int, err: str, *expected: str) -> str:
    """Exit code 2, no traceback, one ``error:`` line that holds every ``expected`` text."""
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _nothing_at(out: Path) -> None:
    """No output store, lock file, temporary or staged store of ``out``."""
    left = sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name))
    assert left == [], left


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    """An uninterrupted run, to compare with."""
    out = setup["root"] / "reference.zarr"
    assert cli(_args(setup, out)) == 0
    return out


def _equal_stores(a: Path, b: Path) -> None:
    x, y = xr.open_zarr(a), xr.open_zarr(b)
    assert set(x.data_vars) == set(y.data_vars)
    for name in x.data_vars:
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


# ---- an output the file system refuses ---------------------------------------------------------------------


def test_disk_full_after_two_items_is_one_line_and_the_rerun_ends_equal(setup, reference, tmp_path, capsys,
                                                                       monkeypatch):
    out = tmp_path / "o.zarr"
    markers = out / BOOKKEEPING / ITEMS
    fail_writes(monkeypatch, errno.ENOSPC, after=lambda: len(list(markers.glob("*.json"))) >= 2)
    code = cli(_args(setup, out))
    _one_line_error(code, capsys.readouterr().err, f"output store '{out}'", "variable 'PRATEsfc", "the disk is full",
                    "No space left on device", "free space")
    assert len(store.done_items(out)) == 2 and not store.is_complete(out)
    monkeypatch.undo()                                         # space freed: the same command again
    assert cli(_args(setup, out)) == 0
    assert store.is_complete(out)
    _equal_stores(reference, out)


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "the file system is read-only"),
                                           (errno.EACCES, "permission denied")])
def test_an_unwritable_output_is_one_line_and_leaves_nothing(setup, tmp_path, capsys, monkeypatch, code, problem):
    """A read-only mount or a folder without write permission, injected at Zarr's storage layer (a real
    ``chmod`` does not stop root, who runs CI)."""
    out = tmp_path / "o.zarr"
    fail_writes(monkeypatch, code)
    _one_line_error(cli(_args(setup, out)), capsys.readouterr().err, f"output store '{out}'", problem)
    _nothing_at(out)


def test_an_output_under_a_file_is_one_line(setup, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "o.zarr"
    _one_line_error(cli(_args(setup, out)), capsys.readouterr().err, f"output store '{out}'",
                    f"{tmp_path / 'notes.txt'} is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "a file"


# ---- a refused input leaves no output ----------------------------------------------------------------------


def _edited_inputs(setup, tmp_path: Path, edit) -> Path:
    """A catalog whose member 0002 reads a copy of its coarse store changed by ``edit(path)``."""
    doc = absolute_catalog(setup["catalog"])
    coarse = Path(shutil.copytree(setup["catalog"].parent / COARSE_0002, tmp_path / "coarse.zarr"))
    edit(coarse)
    doc["members"]["0002"]["coarse"]["urlpath"] = str(coarse)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _rewritten(path: Path, name: str, change) -> None:
    ds = xr.open_zarr(path, decode_times=False).load()
    values = ds[name].values.copy()
    change(values)
    ds[name].values = values
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True)


def _corrupt_chunk(path: Path) -> None:
    chunk = next(p for p in sorted((path / "TMPsfc_coarse").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(np.random.default_rng(0).bytes(chunk.stat().st_size))


def _late_nan(values: np.ndarray) -> None:
    values[-1, ..., 0, 0] = np.nan                             # the last frame: the last work item's input


def _negative(values: np.ndarray) -> None:
    values[-1, ..., 0, 0] = -1e-3


@pytest.mark.parametrize("what, edit, expected", [
    ("NaN in the last frame", lambda p: _rewritten(p, "TMPsfc_coarse", _late_nan), ("TMPsfc_coarse", "NaN")),
    ("negative precipitation", lambda p: _rewritten(p, "PRATEsfc_coarse", _negative), ("PRATEsfc_coarse", "negative")),
    ("a chunk of random bytes", _corrupt_chunk, ("TMPsfc_coarse",)),
])
def test_a_refused_input_leaves_no_output_path(setup, tmp_path, capsys, what, edit, expected):
    out = tmp_path / "o.zarr"
    catalog = _edited_inputs(setup, tmp_path, edit)
    _one_line_error(cli(_args(setup, out, catalog=catalog)), capsys.readouterr().err, "coarse.zarr", *expected)
    _nothing_at(out)


def _tampered(bundle: Path, tmp_path: Path, where: str) -> Path:
    """A copy of ``bundle`` with one byte changed: a digit of ``sigma_data`` in the metadata, or the last
    byte of the weights."""
    data = bytearray(bundle.read_bytes())
    if where == "metadata":
        at = data.index(b"0.5", data.index(b"sigma_data"))      # sigma_data 0.5 → 0.9
        data[at + 2] = ord("9")
    else:
        data[-1] ^= 0xFF
    path = tmp_path / "tampered.safetensors"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("where, expected", [("metadata", "metadata checksum"), ("weights", "weights")])
def test_a_tampered_bundle_leaves_no_output_path(setup, tmp_path, capsys, where, expected):
    out = tmp_path / "o.zarr"
    bundle = _tampered(setup["bundle"], tmp_path, where)
    _one_line_error(cli(_args(setup, out, bundle=bundle)), capsys.readouterr().err, str(bundle), expected)
    _nothing_at(out)
