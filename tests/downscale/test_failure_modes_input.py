"""I/O faults of input stores and of a finished output store, and secrets of remote stores, as a user meets
them on the command line (docs/failure-modes.md): exit code 2 and one line naming the store, the variable
and the problem, never a traceback; a secret in a store URL or in ``storage_options`` appears in no stream
and no file, at any log level.

The stores are the synthetic ``tests`` preset (C4 → C16) and a tiny bundle trained on it for 4 steps;
remote stores are served over HTTP on 127.0.0.1 by a server that refuses chosen paths with 403.
"""

from __future__ import annotations

import base64
import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from tiny_training import prepare_tiny_dataset, tiny_config

from downscale.inference import store
from downscale.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
COARSE_0002 = Path("members/0002/sfc_8xdaily_ave_coarse.zarr")
USER, URL_SECRET, HEADER_SECRET = "AKIAFAULTTEST", "url-Secret-4f9c2e", "header-Secret-7b1d0a"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """The synthetic stores (``synthetic/``, catalog with relative paths) and a tiny trained bundle."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faults")
    bundle = train(tiny_config(prepare_tiny_dataset(root, days=2), root / "train", max_steps=4))
    return {"synthetic": root / "synthetic", "bundle": bundle}


def _copy_stores(setup, tmp_path: Path) -> Path:
    """A private copy of the synthetic stores (to damage); returns its folder (``catalog.yaml`` inside)."""
    return Path(shutil.copytree(setup["synthetic"], tmp_path / "stores"))


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "downscale.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2, no traceback, one ``error:`` line (stderr's last) that holds every ``expected`` text."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]], proc.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _first_chunk(array: Path) -> Path:
    return sorted(p for p in (array / "c").rglob("*") if p.is_file())[0]


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_input_chunk_is_one_line_naming_store_and_variable(setup, tmp_path, damage):
    stores = _copy_stores(setup, tmp_path)
    chunk = _first_chunk(stores / COARSE_0002 / "TMPsfc_coarse")
    data = chunk.read_bytes()
    chunk.write_bytes(os.urandom(len(data)) if damage == "random bytes" else data[: len(data) // 2])
    proc = _cli("validate", "--catalog", str(stores / "catalog.yaml"))
    _one_line_error(proc, f"store '{stores / COARSE_0002}'", "variable 'TMPsfc_coarse'", "corrupt chunk")


def test_a_deleted_array_folder_is_missing_data_not_nan(setup, tmp_path):
    stores = _copy_stores(setup, tmp_path)
    shutil.rmtree(stores / COARSE_0002 / "TMPsfc_coarse")           # the consolidated metadata still lists it
    line = _one_line_error(_cli("validate", "--catalog", str(stores / "catalog.yaml")),
                           f"store '{stores / COARSE_0002}'", "variable 'TMPsfc_coarse'", "data is missing")
    assert "NaN" not in line


@pytest.fixture
def serve(setup) -> Iterator[callable]:
    """``serve(folder, deny="")`` → the base URL of an HTTP server on 127.0.0.1 for ``folder`` that answers
    403 to every path containing ``deny``; records the Authorization header of each request."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path, deny: str = "") -> str:
        class Handler(http.server.SimpleHTTPRequestHandler):
            def _refused(self) -> bool:
                if deny and deny in self.path:
                    self.send_error(403)
                    return True
                return False

            def do_GET(self):  # noqa: N802 - http.server's names
                if not self._refused():
                    super().do_GET()

            def do_HEAD(self):  # noqa: N802
                if not self._refused():
                    super().do_HEAD()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _remote_catalog(stores: Path, base: str, path: Path, storage_options: dict | None = None) -> Path:
    """``stores``' catalog with every store read over HTTP from ``base``."""
    doc = yaml.safe_load((stores / "catalog.yaml").read_text())

    def remote(ref: dict) -> dict:
        return {**ref, "urlpath": f"{base}/{ref['urlpath']}", **({"storage_options": storage_options}
                                                                   if storage_options else {})}

    doc["static"] = remote(doc["static"])
    doc["grid"] = {k: remote(v) for k, v in doc["grid"].items()}
    doc["members"] = {m: {k: remote(v) for k, v in s.items()} for m, s in doc["members"].items()}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_http_403_in_the_middle_of_a_remote_read(setup, tmp_path, serve):
    # Member 0001, the metadata and the first time block of member 0002 are read; its second block is refused.
    base = serve(setup["synthetic"], deny=f"/{COARSE_0002.as_posix()}/TMPsfc_coarse/c/0/1/")
    catalog = _remote_catalog(setup["synthetic"], base, tmp_path / "remote.yaml")
    proc = _cli("validate", "--catalog", str(catalog))
    _one_line_error(proc, f"store '{base}/{COARSE_0002.as_posix()}'", "variable 'TMPsfc_coarse'", "HTTP 403",
                    "access denied", "time 8:16")


def test_a_truncated_shard_of_a_finished_output_store_read_by_evaluate(setup, tmp_path):
    out = tmp_path / "out.zarr"
    done = _cli("generate", "--bundle", str(setup["bundle"]), "--catalog", str(setup["synthetic"] / "catalog.yaml"),
                "--member", "0002", "--members", "2", "--steps", "2", "--out", str(out))
    assert done.returncode == 0 and store.is_complete(out), done.stderr[-3000:]
    shard = _first_chunk(out / "PRATEsfc")
    shard.write_bytes(shard.read_bytes()[:-64])
    proc = _cli("evaluate", "--output", str(out), "--diagnostics", str(tmp_path / "diag"), "--n-boot", "5")
    _one_line_error(proc, f"store '{out}'", "variable 'PRATEsfc'", "corrupt chunk")
    assert not (tmp_path / "diag").exists()


@pytest.mark.parametrize(("scheme", "package"), [("s3", "s3fs"), ("gs", "gcsfs")])
def test_a_cloud_store_without_its_package_names_the_extra(setup, tmp_path, scheme, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed: the refusal cannot happen here")
    stores = _copy_stores(setup, tmp_path)
    catalog = stores / "catalog.yaml"
    doc = yaml.safe_load(catalog.read_text())
    doc["members"]["0002"]["coarse"] = {"urlpath": f"{scheme}://bucket/run/coarse.zarr"}
    catalog.write_text(yaml.safe_dump(doc))
    _one_line_error(_cli("validate", "--catalog", str(catalog)), f"store '{scheme}://bucket/run/coarse.zarr'",
                    package, "pip install 'fv3-downscale[cloud]'")


def _secrets() -> list[str]:
    basic = base64.b64encode(f"{USER}:{URL_SECRET}".encode()).decode()
    return [URL_SECRET, HEADER_SECRET, basic]


def _files_holding(folder: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return hits


@pytest.mark.parametrize("command", ["validate", "generate"])
def test_secrets_of_remote_stores_appear_nowhere_with_debug_logging(setup, tmp_path, serve, command):
    base = serve(setup["synthetic"]).replace("http://", f"http://{USER}:{URL_SECRET}@")
    work = tmp_path / "work"
    work.mkdir()
    catalog = _remote_catalog(setup["synthetic"], base, work / "remote.yaml",
                              storage_options={"headers": {"X-Api-Key": HEADER_SECRET}})
    args = ["--catalog", str(catalog)]
    if command == "generate":
        args += ["--bundle", str(setup["bundle"]), "--member", "0002", "--members", "2", "--steps", "2",
                 "--out", str(work / "out.zarr")]
    proc = _cli("-v", command, *args, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DEBUG fsspec.http" in proc.stderr and "http://***@127.0.0.1" in proc.stderr, \
        "the remote reads must have been logged (with the credentials masked)"
    catalog.unlink()                                                    # the user's own file holds them
    for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert not [s for s in _secrets() if s in text], name
    assert _files_holding(work, _secrets()) == []
    if command == "generate":
        assert store.is_complete(work / "out.zarr")
