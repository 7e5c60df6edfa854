"""The model bundle round-trips its typed metadata, rebuilds its model from the spec, never unpickles, and
refuses what does not fit (another format, other software, tampered weights or metadata, inputs the model
cannot take)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from data_catalog.normalization import NormalizationStats, VariableStats
from downscale.baselines import QuantileTable
from downscale.bundle import (
    BUNDLE_FORMAT,
    BaselineTables,
    BundleError,
    BundleMetadata,
    TrainingRecord,
    check_inputs,
    load_bundle,
    load_model,
    metadata_digest,
    read_bundle_metadata,
    save_bundle,
    verify_bundle,
    weights_digest,
)
from downscale.models.config import network_preset
from downscale.models.downscaler import DownscalerSpec
from downscale.version import __version__

PREDICTORS = ("PRATEsfc_coarse", "TMPsfc_coarse")
SPEC = DownscalerSpec(network=network_preset("tiny"), in_channels=3, sigma_data=0.8, detach_mean=True, P_mean=-0.6)
TABLE = QuantileTable(probabilities=(0.5, 0.9), source=(1e-6, 1e-5), target=(2e-6, 3e-5), n_values=10)


def _meta(**kw) -> BundleMetadata:
    unit = VariableStats(transform="identity", mean=0.0, std=1.0)
    stats = NormalizationStats(variables={name: unit for name in (*PREDICTORS, "PRATEsfc")})
    training = TrainingRecord(steps=4, max_steps=4, seed=0, mode="two_stage", spatial_mode="cube", patch_size=None,
                              ema_decay=0.999, ema_updates=4, checkpoint=None, train_config={"max_steps": 4})
    base = dict(path="/data/prepared", fingerprint="abc", catalog_name="test", target="PRATEsfc",
                predictors=PREDICTORS, static_features=("zsurf",), coarse_resolution=4, fine_resolution=16, factor=4,
                clip_frames=3, time_step_seconds=10800.0, normalization=stats, train_members=("0001",),
                validation_members=("0002",), model=SPEC, training=training,
                baselines=BaselineTables(quantile_mapping=TABLE))
    return BundleMetadata(**{**base, **kw})


def _state(spec: DownscalerSpec = SPEC) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return spec.build().state_dict()


def _write_header(path, document: dict) -> None:
    """A safetensors file whose bundle header is ``document`` (e.g. one of an older format), its metadata
    checksum recorded: what is refused is the document, not its checksum."""
    signed = {**document, "metadata_sha256": metadata_digest(document)}
    save_file({"w": torch.ones(2)}, str(path), metadata={"fv3_downscale_bundle": json.dumps(signed)})


def _tamper_header(path, key: str, old: str, new: str) -> None:
    """Overwrite the first ``"key": old`` of the bundle's header in place with ``new`` (same length: the file
    stays a valid safetensors file). The metadata is JSON inside the safetensors header's JSON: quotes escaped."""
    before, after = (f'{key}\\": {value}'.encode() for value in (old, new))
    raw = path.read_bytes()
    assert len(before) == len(after) and before in raw, before
    path.write_bytes(raw.replace(before, after, 1))


def test_round_trip_keeps_every_typed_field(tmp_path):
    state = _state()
    meta = save_bundle(tmp_path / "m.safetensors", state, _meta())
    loaded_meta, loaded = load_bundle(tmp_path / "m.safetensors")
    assert loaded_meta == meta and len(meta.bundle_id) == 12 and meta.format == BUNDLE_FORMAT == 4
    assert loaded_meta.model == SPEC and loaded_meta.model.network.frames == 3
    assert loaded_meta.baselines.quantile_mapping == TABLE
    assert loaded_meta.normalization["PRATEsfc"].std == 1.0 and loaded_meta.training.mode == "two_stage"
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_load_model_rebuilds_the_network_from_its_spec(tmp_path):
    torch.manual_seed(1)
    original = SPEC.build().eval()
    save_bundle(tmp_path / "m.safetensors", original.state_dict(), _meta())
    net, meta = load_model(tmp_path / "m.safetensors")
    assert not net.training and meta.model == SPEC
    assert net.detach_mean is True and net.P_mean == -0.6 and net.sigma_data == 0.8
    cond = torch.randn(1, 3, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.forward_mean(cond), original.forward_mean(cond))


def test_a_network_with_the_full_resolution_head_round_trips(tmp_path):
    spec = SPEC.model_copy(update={"network": network_preset("tiny", space_to_depth=2, full_res_channels=2)})
    torch.manual_seed(1)
    original = spec.build().eval()
    with torch.no_grad():
        original.mean_net.full_res_conv.weight.normal_()          # the head in use (it starts at zero)
    save_bundle(tmp_path / "m.safetensors", original.state_dict(), _meta(model=spec))
    net, meta = load_model(tmp_path / "m.safetensors")
    assert meta.model.network.full_res_channels == 2
    cond = torch.randn(1, 3, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.forward_mean(cond), original.forward_mean(cond))


def test_a_network_with_seam_maps_on_every_edge_round_trips(tmp_path):
    spec = SPEC.model_copy(update={"network": network_preset("tiny", seam_transform=True, seam_transform_edges="all")})
    torch.manual_seed(1)
    original = spec.build().eval()
    straight = [m for name, m in original.named_parameters() if name.endswith("straight_map")]
    assert straight                                                # every 3×3 convolution has one
    with torch.no_grad():
        for m in straight:
            m.add_(0.1 * torch.randn_like(m))                      # the maps in use (they start at the identity)
    save_bundle(tmp_path / "m.safetensors", original.state_dict(), _meta(model=spec))
    net, meta = load_model(tmp_path / "m.safetensors")
    assert meta.model.network.seam_transform_edges == "all"
    cond = torch.randn(1, 3, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.forward_mean(cond), original.forward_mean(cond))


def test_weights_that_do_not_fit_the_spec_are_refused(tmp_path):
    other = SPEC.model_copy(update={"network": network_preset("tiny", base_channels=16)})
    save_bundle(tmp_path / "m.safetensors", _state(other), _meta())
    with pytest.raises(BundleError, match="weights do not fit the model spec"):
        load_model(tmp_path / "m.safetensors")


def test_an_older_format_is_refused_by_name_and_version(tmp_path):
    """A format-1 bundle (untyped metadata) is refused before its layout is read, saying what reads it."""
    path = tmp_path / "old.safetensors"
    _write_header(path, {"format": 1, "software_version": "0.1.0", "network": {},
                         "model": {"class": "VideoDownscaler"}})
    with pytest.raises(BundleError) as err:
        load_model(path)
    message = str(err.value)
    assert f"bundle {path} has format 1, this software (fv3-downscale {__version__}) reads format 4" in message
    assert "export_bundle" in message and "commit 4cbd43d" in message


def test_a_format_2_bundle_is_read_without_the_ensemble_table_and_rewritten_as_format_3(tmp_path):
    """Format 3 only added ``baselines.ensemble_quantile_mapping``: a format-2 header (which lacks it) reads."""
    state = _state()
    meta = save_bundle(tmp_path / "m.safetensors", state, _meta())
    document = meta.model_dump(mode="json")
    document.pop("metadata_sha256")
    document["format"] = 2
    del document["baselines"]["ensemble_quantile_mapping"]
    old = tmp_path / "format2.safetensors"
    signed = {**document, "metadata_sha256": metadata_digest(document)}
    save_file(state, str(old), metadata={"fv3_downscale_bundle": json.dumps(signed)})
    read, loaded = load_bundle(old)
    assert read.format == 2 and read.baselines.ensemble_quantile_mapping is None
    assert read.baselines.quantile_mapping == TABLE
    rewritten = save_bundle(tmp_path / "again.safetensors", loaded, read)
    assert rewritten.format == BUNDLE_FORMAT == 4 and read_bundle_metadata(tmp_path / "again.safetensors") == rewritten


def test_a_format_3_bundle_loads_with_residual_scale_1_and_a_per_cell_scale_round_trips(tmp_path):
    """Format 4 added the weight ``residual_scale``; a format-3 bundle (weights without it) loads with the scale 1."""
    state = _state()
    assert float(state["residual_scale"]) == 1.0
    meta = save_bundle(tmp_path / "m.safetensors", state, _meta())
    document = meta.model_dump(mode="json")
    document.pop("metadata_sha256")
    document["format"] = 3
    old = tmp_path / "format3.safetensors"
    weights = {k: v for k, v in state.items() if k != "residual_scale"}
    document["weights_sha256"] = weights_digest(weights)
    save_file(weights, str(old), metadata={"fv3_downscale_bundle": json.dumps(
        {**document, "metadata_sha256": metadata_digest(document)})})
    net, read = load_model(old)
    assert read.format == 3 and net.residual_scale.shape == () and float(net.residual_scale) == 1.0

    scaled = SPEC.build()
    scaled.load_state_dict(state)
    scale = 0.5 + torch.rand(6, 16, 16, generator=torch.Generator().manual_seed(2))
    scaled.set_residual_scale(scale)
    save_bundle(tmp_path / "scaled.safetensors", scaled.state_dict(), _meta())
    net, read = load_model(tmp_path / "scaled.safetensors")
    assert read.format == 4 and torch.equal(net.residual_scale, scale)


def test_a_newer_or_missing_format_is_refused(tmp_path):
    path = tmp_path / "new.safetensors"
    _write_header(path, {"format": 5})
    with pytest.raises(BundleError, match="has format 5, .* reads format 4; update fv3-downscale"):
        read_bundle_metadata(path)
    _write_header(path, {"software_version": "0.1.0"})
    with pytest.raises(BundleError, match="names no format"):
        read_bundle_metadata(path)


def test_tampered_weights_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_bundle(path, _state(), _meta())
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="do not match their recorded SHA-256"):
        load_bundle(path)
    with pytest.raises(BundleError, match=f"bundle {path}: weights do not match their recorded SHA-256"):
        verify_bundle(path)  # tensor by tensor, without building the model


@pytest.mark.parametrize(("key", "old", "new"), [
    ("sigma_data", "0.8", "0.9"),   # the model spec: silently changes every sample
    ("std", "1.0", "9.0"),          # one normalization statistic (the first variable's)
    ("steps", "4", "5"),            # even a field nothing computes with
])
def test_tampered_metadata_is_refused(tmp_path, key, old, new):
    """One changed value in the header (the file stays a valid safetensors file) is refused by every reader,
    naming the file; the weights are untouched and their own checksum still matches."""
    path = tmp_path / "m.safetensors"
    save_bundle(path, _state(), _meta())
    _tamper_header(path, key, old, new)
    for read in (read_bundle_metadata, verify_bundle, load_bundle, load_model):
        with pytest.raises(BundleError, match=f"bundle {path}: metadata checksum mismatch"):
            read(path)


def test_metadata_without_checksum_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={"fv3_downscale_bundle": _meta().model_dump_json()})
    with pytest.raises(BundleError, match="metadata has no checksum"):
        read_bundle_metadata(path)


def test_bundle_id_changes_with_metadata_or_weights(tmp_path):
    """The id covers the whole bundle: the same weights with other metadata, or other weights with the same
    metadata, get other ids; the same weights and metadata the same id."""
    state = _state()
    meta = _meta(created="2024-01-01T00:00:00+00:00")
    first = save_bundle(tmp_path / "a.safetensors", state, meta)
    assert save_bundle(tmp_path / "b.safetensors", state, meta).bundle_id == first.bundle_id
    other_sigma = meta.model_copy(update={"model": SPEC.model_copy(update={"sigma_data": 0.9})})
    assert save_bundle(tmp_path / "c.safetensors", state, other_sigma).bundle_id != first.bundle_id
    other_weights = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    assert save_bundle(tmp_path / "d.safetensors", other_weights, meta).bundle_id != first.bundle_id
    assert verify_bundle(tmp_path / "a.safetensors") == first


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


def test_untyped_metadata_is_refused(tmp_path):
    """A field of the wrong type (here: a string where the spec wants channels) never reaches the model."""
    path = tmp_path / "m.safetensors"
    document = json.loads(_meta().model_dump_json())
    document["model"]["in_channels"] = "three"
    _write_header(path, document)
    with pytest.raises(BundleError, match="(?s)metadata invalid.*model.in_channels"):
        read_bundle_metadata(path)


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
