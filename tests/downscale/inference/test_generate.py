"""``generate`` end to end on a tiny trained bundle: a complete CF store, reproducible members, resume after
kill, concurrent writers, and bad inputs refused with messages that name the problem."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from tiny_training import prepare_tiny_dataset, tiny_config

from data_catalog.catalog import load_catalog
from data_catalog.coarsen import coarse_grain
from data_catalog.member_reader import open_member
from data_catalog.synthetic.growing import GrowingInput, absolute_catalog
from downscale.bundle import BundleError
from downscale.cli import main as cli
from downscale.inference import store
from downscale.inference.config import GenerateConfig
from downscale.inference.generate import generate, local_cluster_options, window_joins
from downscale.inference.store_plan import BOOKKEEPING, ITEMS, WorkItem, time_ranges
from downscale.evaluation.evaluate import evaluate
from downscale.training.trainer import train

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny bundle (C4 → C16, T = 3) trained for a few steps, and the catalog it came from."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen")
    prepared = prepare_tiny_dataset(root, days=2)
    bundle = train(tiny_config(prepared, root / "train", max_steps=4))
    return {"root": root, "bundle": bundle, "catalog": root / "synthetic" / "catalog.yaml"}


def _config(setup, out: Path, **kw) -> GenerateConfig:
    doc = {"bundle": setup["bundle"], "catalog": setup["catalog"], "member": "0002", "output": out, "members": 3,
           "sampler": {"kind": "dpmpp_2m", "num_steps": 3}, "time_block": 6, "members_per_batch": 1, **kw}
    return GenerateConfig.model_validate(doc)


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    """One uninterrupted serial run: 16 frames in items of 6 → 3 time blocks."""
    return generate(_config(setup, setup["root"] / "reference.zarr"))


def _equal_stores(a: Path, b: Path) -> None:
    x, y = xr.open_zarr(a), xr.open_zarr(b)
    assert set(x.data_vars) == set(y.data_vars)
    for name in x.data_vars:
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


def test_output_is_a_complete_cf_store_with_baselines_truth_and_provenance(reference, setup):
    ds = store.open_output(reference)
    assert ds.PRATEsfc.dims == ("member", "time", "tile", "grid_yt", "grid_xt")
    assert ds.PRATEsfc.shape == (3, 16, 6, 16, 16)
    for name in ("PRATEsfc_bilinear", "PRATEsfc_deterministic", "PRATEsfc_deterministic_raw", "PRATEsfc_qm",
                 "PRATEsfc_truth"):
        assert ds[name].dims == ("time", "tile", "grid_yt", "grid_xt"), name
    assert ds.PRATEsfc_ensemble_raw.dims == ds.PRATEsfc.dims
    assert ds.PRATEsfc_coarse.dims == ("time", "tile", "grid_yt_coarse", "grid_xt_coarse")
    assert "PRATEsfc" in ds.cf[["precipitation_flux"]].data_vars
    assert ds.PRATEsfc.attrs["units"] == "kg m-2 s-1"
    values = ds.PRATEsfc.values
    assert np.isfinite(values).all() and (values >= 0).all()
    assert values.std(axis=0).mean() > 0, "members must differ"
    attrs = ds.attrs
    assert attrs["factor"] == 4 and attrs["sampler_nfe"] == 3 and attrs["sampler_kind"] == "dpmpp_2m"
    assert attrs["bundle_id"] and attrs["input_member"] == "0002"
    # the truth is the catalog member's fine precipitation; the coarse input its coarse precipitation
    catalog = yaml.safe_load(setup["catalog"].read_text())
    fine = xr.open_zarr(setup["catalog"].parent / catalog["members"]["0002"]["fine"]["urlpath"])
    np.testing.assert_allclose(ds.PRATEsfc_truth.values, fine.PRATEsfc.transpose("time", "tile", ...).values,
                               rtol=1e-6, atol=1e-12)
    # the bilinear baseline, the members and μ are mass-corrected: their block means are the coarse input;
    # the raw members and raw μ are not
    area = ds.area.rename(grid_yt="y", grid_xt="x")
    coarse = ds.PRATEsfc_coarse.values

    def block_means(name: str) -> np.ndarray:
        return coarse_grain(ds[name].rename(grid_yt="y", grid_xt="x"), area, 4).values

    for name in ("PRATEsfc_bilinear", "PRATEsfc", "PRATEsfc_deterministic"):
        np.testing.assert_allclose(block_means(name), np.broadcast_to(coarse, block_means(name).shape),
                                   rtol=1e-4, atol=1e-10, err_msg=name)
    for name in ("PRATEsfc_ensemble_raw", "PRATEsfc_deterministic_raw"):
        assert np.abs(block_means(name) - coarse).max() > 1e-3 * np.abs(coarse).max(), name
    # the correction is bounded (max_ratio 2): no corrected value beyond 2 × its raw value + the coarse value
    raw, corrected = ds.PRATEsfc_ensemble_raw.values, ds.PRATEsfc.values
    up = np.repeat(np.repeat(coarse, 4, axis=-2), 4, axis=-1)
    assert (corrected <= 2 * raw + up * (1 + 1e-5) + 1e-12).all()
    seeds = ds.seed.values
    assert seeds.shape == (3, 16) and len(np.unique(seeds)) == seeds.size


def test_a_member_regenerates_bit_for_bit_from_its_recorded_seeds(reference, setup, tmp_path):
    """Noise is keyed to (seed, member, frame): member 1 of a 3-member run is member 1 of a 1-member run. Bits
    match at equal members_per_batch (kernels may differ by batch size); batched, it agrees to float32 rounding."""
    alone = generate(_config(setup, tmp_path / "one.zarr", members=1, baselines=("bilinear",)))
    a, b = xr.open_zarr(reference), xr.open_zarr(alone)
    np.testing.assert_array_equal(a.seed.isel(member=[0]).values, b.seed.values)
    np.testing.assert_array_equal(a.PRATEsfc.isel(member=0).values, b.PRATEsfc.isel(member=0).values)
    batched = xr.open_zarr(generate(_config(setup, tmp_path / "batched.zarr", members_per_batch=3)))
    np.testing.assert_allclose(batched.PRATEsfc.values, a.PRATEsfc.values, rtol=1e-4, atol=1e-9)


def test_concurrent_dask_workers_write_the_same_store(reference, setup, tmp_path):
    parallel = generate(_config(setup, tmp_path / "par.zarr", workers=2, member_block=1))
    _equal_stores(reference, parallel)


def test_a_complete_output_is_not_overwritten_unless_asked(reference, setup):
    with pytest.raises(FileExistsError, match=r"complete; pass --overwrite \(overwrite: true"):
        generate(_config(setup, reference))


def _cli_process(config: GenerateConfig, path: Path, *flags: str) -> subprocess.Popen:
    """``downscale generate --config path`` in its own process (``config`` written to ``path`` first)."""
    path.write_text(config.to_yaml())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "downscale.cli", "generate", "--config", str(path), *flags],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_processes_on_one_path_share_the_items_and_both_succeed(reference, setup, tmp_path):
    """Started together with the same settings: one creates the store, both run items (each item once),
    both exit 0, and the store equals a serial run's."""
    out = tmp_path / "shared.zarr"
    config = _config(setup, out, member_block=1)   # 9 items
    procs = [_cli_process(config, tmp_path / f"gen{k}.yaml") for k in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for e in errors]
    written = [set(re.findall(r"item (t\S+) written$", e, flags=re.MULTILINE)) for e in errors]
    assert written[0] | written[1] == {i for i in store.done_items(out)} and len(written[0] | written[1]) == 9
    assert written[0] and written[1] and not written[0] & written[1], written   # shared, none done twice
    assert store.is_complete(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shared")) == ["shared.zarr"]
    _equal_stores(reference, out)


def test_a_killed_overwrite_keeps_the_finished_store(reference, setup, tmp_path):
    """``--overwrite`` builds the new store beside the finished one: killed once it has begun, the old store
    is intact and complete; run again, the new one replaces it."""
    out = tmp_path / "done.zarr"
    shutil.copytree(reference, out)
    before = xr.open_zarr(out).load()
    config = _config(setup, out, seed=1)           # another configuration: the values change
    proc = _cli_process(config, tmp_path / "gen.yaml", "--overwrite")
    staging = tmp_path / "done.zarr.new"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (staging / "zarr.json").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (staging / "zarr.json").exists(), "the kill should land once the new store is begun"
    assert store.is_complete(out)
    xr.testing.assert_identical(store.open_output(out).load(), before)
    generate(config.model_copy(update={"overwrite": True}))
    assert store.is_complete(out) and not staging.exists()
    assert store.root_attributes(out)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("done")) == ["done.zarr"]


def test_killed_run_resumes_and_ends_equal_to_an_uninterrupted_one(reference, setup, tmp_path):
    out = tmp_path / "killed.zarr"
    config = _config(setup, out, member_block=1)   # 9 items, so the kill lands mid-run
    path = tmp_path / "gen.yaml"
    path.write_text(config.to_yaml())
    proc = subprocess.Popen([sys.executable, "-m", "downscale.cli", "generate", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "zarr.json").exists() and len(store.done_items(out)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = store.done_items(out)
    assert 2 <= len(done) < 9, f"the kill should land mid-run ({len(done)} items done)"
    assert not store.is_complete(out)
    with pytest.raises(ValueError, match="in progress"):
        store.open_output(out)
    with pytest.raises(ValueError, match="is in progress: finish it first"):
        evaluate(out, tmp_path / "diagnostics")         # NaN fill values are never scored as results
    generate(config)
    assert store.is_complete(out)
    _equal_stores(reference, out)


def test_a_growing_input_in_a_relative_folder_opens_from_anywhere(setup, tmp_path, monkeypatch):
    """The copies' catalog names them by absolute path: a relative folder once gave doubled paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    growing = GrowingInput(setup["catalog"], Path("rel"), "0002", frames=10)
    monkeypatch.chdir(setup["root"])
    member = open_member(load_catalog(tmp_path / growing.catalog), "0002")
    assert member.fine.sizes["time"] == 10


def test_an_incremental_run_writes_only_the_appended_frames(setup, tmp_path):
    """10 of the run's 16 frames, then 6 appended to the input stores: ``append`` samples only those."""
    growing = GrowingInput(setup["catalog"], tmp_path, "0002", frames=10)
    out = tmp_path / "grown.zarr"
    config = _config(setup, out, catalog=growing.catalog, append=True)
    generate(config)
    before = store.open_output(out).load()
    markers = {p.name: p.read_bytes() for p in (out / BOOKKEEPING / ITEMS).iterdir()}
    assert before.sizes["time"] == 10 and len(markers) == 2            # frames [0, 6), [6, 10), all members

    growing.append()                                                   # the input grows to 16 frames
    generate(config)
    after = store.open_output(out).load()
    written = {p.name: p.read_bytes() for p in (out / BOOKKEEPING / ITEMS).iterdir()}
    assert {k: v for k, v in written.items() if k in markers} == markers   # no old item was redone
    assert sorted(set(written) - set(markers)) == ["t000010-000012-m0000.json", "t000012-000016-m0000.json"]
    assert after.sizes["time"] == 16
    xr.testing.assert_identical(after.drop_attrs().isel(time=slice(0, 10)), before.drop_attrs())
    assert np.isfinite(after.PRATEsfc.isel(time=slice(10, None))).all()
    assert (after.seed.isel(time=slice(10, None)) >= 0).all()
    assert json.loads(after.attrs["window_joins"]) == [6, 10, 12]

    generate(config)                                                   # nothing new: nothing runs
    assert {p.name: p.read_bytes() for p in (out / BOOKKEEPING / ITEMS).iterdir()} == written
    with pytest.raises(FileExistsError, match="complete.*append"):
        generate(config.model_copy(update={"append": False}))


# ---- bad input ---------------------------------------------------------------------------------------------
def _edited_catalog(setup, tmp_path: Path, edit) -> Path:
    doc = absolute_catalog(setup["catalog"])
    edit(doc, tmp_path)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_wrong_resolution_for_the_bundle_is_refused(setup, tmp_path):
    def other_grid(doc, _):
        doc["resolution"] = {"coarse": 8, "fine": 32}

    cat = _edited_catalog(setup, tmp_path, other_grid)
    with pytest.raises(BundleError, match=r"C32 but bundle .* downscales to C16"):
        generate(_config(setup, tmp_path / "o.zarr", catalog=cat))
    assert not (tmp_path / "o.zarr").exists()


def test_missing_predictor_is_refused(setup, tmp_path):
    def fewer(doc, _):
        doc["predictors"] = [p for p in doc["predictors"] if p != "TMPsfc_coarse"]

    cat = _edited_catalog(setup, tmp_path, fewer)
    with pytest.raises(BundleError, match="lacks predictor.*TMPsfc_coarse"):
        generate(_config(setup, tmp_path / "o.zarr", catalog=cat))


def test_quantile_mapped_members_need_the_bundles_ensemble_table(setup, tmp_path):
    with pytest.raises(BundleError, match=r"holds no ensemble quantile-mapping table; drop 'qm' from ensemble_variants "
                                          r"or train with ensemble_quantile_mapping.clips > 0"):
        generate(_config(setup, tmp_path / "o.zarr", ensemble_variants=["raw", "qm"]))
    assert not (tmp_path / "o.zarr").exists()


def test_a_period_with_gaps_is_refused(setup, tmp_path):
    def with_gap(doc, tmp):
        member = doc["members"]["0002"]
        for role in ("coarse", "fine"):
            src = xr.open_zarr(member[role]["urlpath"], decode_times=False)
            keep = [i for i in range(src.sizes["time"]) if i != 7]
            dst = tmp / f"gap-{role}.zarr"
            src.isel(time=keep).to_zarr(dst, mode="w", zarr_format=3, consolidated=True)
            member[role]["urlpath"] = str(dst)

    cat = _edited_catalog(setup, tmp_path, with_gap)
    with pytest.raises(ValueError, match=r"1 gap\(s\) in time"):
        generate(_config(setup, tmp_path / "o.zarr", catalog=cat))


def test_nan_in_a_predictor_is_refused_naming_store_and_variable(setup, tmp_path):
    def with_nan(doc, tmp):
        member = doc["members"]["0002"]
        src = xr.open_zarr(member["coarse"]["urlpath"], decode_times=False).load()
        src["TMPsfc_coarse"][..., 1, 2, 3] = np.nan
        dst = tmp / "nan-coarse.zarr"
        src.to_zarr(dst, mode="w", zarr_format=3, consolidated=True)
        member["coarse"]["urlpath"] = str(dst)

    cat = _edited_catalog(setup, tmp_path, with_nan)
    with pytest.raises(ValueError, match=r"nan-coarse.zarr.*TMPsfc_coarse.*NaN"):
        generate(_config(setup, tmp_path / "o.zarr", catalog=cat))
    assert not store.is_complete(tmp_path / "o.zarr")


def test_cli_exits_2_with_one_line_on_bad_input(setup, tmp_path, capsys):
    code = cli(["generate", "--bundle", str(setup["bundle"]), "--catalog", str(setup["catalog"]),
                "--member", "0099", "--out", str(tmp_path / "o.zarr")])
    assert code == 2
    err = capsys.readouterr().err
    assert "0099" in err and err.startswith("error:")
    assert cli(["generate", "--catalog", str(setup["catalog"]), "--member", "0002",
                "--out", str(tmp_path / "o.zarr")]) == 2
    assert "bundle" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "o.zarr", ignore_errors=True)


def test_a_second_local_cluster_at_once_prints_no_port_warning():
    """Two runs at once: the second LocalCluster's HTTP server takes another free port without a warning."""
    from distributed import LocalCluster

    with socket.socket() as busy:
        try:
            busy.bind(("", 8787))
            busy.listen()
        except OSError:            # another process holds it already: the same situation
            pass
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with LocalCluster(**local_cluster_options(1)):
                pass
    assert not [w for w in caught if "already in use" in str(w.message)]


def test_window_joins_are_item_boundaries_and_independent_window_boundaries():
    def items(n_times, time_block):
        return [WorkItem(a, b, 0) for a, b in time_ranges(0, n_times, time_block)]

    assert window_joins(items(80, 40), 5, 5, 2, 80) == [40]           # fused windows: items only
    assert window_joins(items(30, 12), 5, 5, 5, 30) == [5, 10, 12, 17, 22, 24, 25]
    grown = [*items(20, 12), *(WorkItem(a, b, 0) for a, b in time_ranges(20, 30, 12))]
    assert [(i.start, i.stop) for i in grown] == [(0, 12), (12, 20), (20, 24), (24, 30)]
    assert window_joins(grown, 5, 5, 2, 30) == [12, 20, 24]           # a grown store: its new items' starts


def test_the_raw_members_are_written_only_beside_a_mass_corrected_ensemble():
    paths = {"bundle": "b.safetensors", "catalog": "c.yaml", "member": "0001", "output": "o.zarr"}
    assert GenerateConfig.model_validate(paths).ensemble_variants == ("raw",)
    assert GenerateConfig.model_validate({**paths, "mass_correction": False}).ensemble_variants == ()
    with pytest.raises(ValueError, match="needs mass_correction"):
        GenerateConfig.model_validate({**paths, "mass_correction": False, "ensemble_variants": ["raw"]})


def test_a_generate_run_in_a_fresh_process_loads_no_lightning(setup, tmp_path):
    """``downscale generate`` end to end (CLI → bundle → model → store) in a subprocess never imports Lightning."""
    out = tmp_path / "o.zarr"
    args = ["generate", "--bundle", str(setup["bundle"]), "--catalog", str(setup["catalog"]), "--member", "0002",
            "--out", str(out), "--members", "2", "--sampler", "dpmpp_2m", "--steps", "2"]
    script = (f"import json, sys\nfrom downscale.cli import main\nassert main({args!r}) == 0\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('lightning', 'lightning_fabric', 'pytorch_lightning'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert store.is_complete(out)
