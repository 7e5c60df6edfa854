"""The model bundle round-trips, never unpickles, and refuses what does not fit."""

from __future__ import annotations

import pytest
import torch

from downscale.bundle import BundleError, BundleMetadata, check_inputs, load_bundle, read_bundle_metadata, save_bundle

PREDICTORS = ("PRATEsfc_coarse", "TMPsfc_coarse")


def _meta(**kw) -> BundleMetadata:
    base = dict(network={"preset": "tiny"}, model={"sigma_data": 1.0}, target="PRATEsfc", predictors=PREDICTORS,
                static_features=("zsurf",), coarse_resolution=4, fine_resolution=16, factor=4, clip_frames=3,
                time_step_seconds=10800.0, normalization={"PRATEsfc": {"mean": 0.0, "std": 1.0}},
                provenance={"catalog": "test"})
    return BundleMetadata(**{**base, **kw})


def _state():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    return net.state_dict()


def test_round_trip(tmp_path):
    state = _state()
    meta = save_bundle(tmp_path / "m.safetensors", state, _meta())
    loaded_meta, loaded = load_bundle(tmp_path / "m.safetensors")
    assert loaded_meta == meta and len(meta.bundle_id) == 12
    assert loaded_meta.factor == 4 and loaded_meta.predictors == PREDICTORS
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_tampered_weights_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_bundle(path, _state(), _meta())
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="do not match their recorded SHA-256"):
        load_bundle(path)


def test_pickle_file_is_not_a_bundle(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(BundleError, match="not a safetensors bundle"):
        read_bundle_metadata(path)


def test_incompatible_version_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_bundle(path, _state(), _meta(software_version="99.0.0"))
    with pytest.raises(BundleError, match="written by version 99.0.0, incompatible"):
        load_bundle(path)


def test_inconsistent_factor_is_refused():
    with pytest.raises(ValueError, match="fine resolution C16 != factor 8 x coarse C4"):
        _meta(factor=8)


def test_inputs_that_do_not_fit(tmp_path):
    meta = save_bundle(tmp_path / "m.safetensors", _state(), _meta())
    check_inputs(meta, list(PREDICTORS) + ["UGRD10m_coarse"], 4, 10800.0)
    with pytest.raises(BundleError, match="lacks predictor\\(s\\) TMPsfc_coarse"):
        check_inputs(meta, ["PRATEsfc_coarse"], 4)
    with pytest.raises(BundleError, match="is C48 but bundle .* downscales C4 -> C16"):
        check_inputs(meta, PREDICTORS, 48)
    with pytest.raises(BundleError, match="time step 6 h but bundle .* 3 h steps"):
        check_inputs(meta, PREDICTORS, 4, 21600.0)
