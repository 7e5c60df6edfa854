"""NetworkConfig: presets, validation with messages that say what to change."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from downscale.models.config import PRESETS, NetworkConfig, network_preset


def test_paper_preset_is_the_stvd_setup():
    paper = network_preset("paper")
    assert (paper.base_channels, paper.channel_mult, paper.frames) == (64, (1, 1, 2, 2, 3, 4), 5)
    assert paper.downsampling_factor == 32
    paper.check_spatial_shape(384, 384)                       # C384 whole tiles
    assert 384 // paper.downsampling_factor == 12             # lowest level: 12 × 12 per tile


@pytest.mark.parametrize("name, size", [("tiny", 16), ("demo", 96), ("paper", 384)])
def test_presets_accept_their_tile_size(name, size):
    network_preset(name).check_spatial_shape(size, size)


def test_spatial_shape_error_names_the_factor_and_the_levels():
    cfg = NetworkConfig(channel_mult=(1, 2, 2, 4))
    with pytest.raises(ValueError, match=r"cube size 20×20 is not divisible by 2\*\*3 = 8.*channel_mult \(1, 2, 2, 4\)"):
        cfg.check_spatial_shape(20, 20)
    with pytest.raises(ValueError, match="square tiles"):
        cfg.check_spatial_shape(16, 32)
    NetworkConfig(channel_mult=(1, 2, 2, 4), geometry="patch").check_spatial_shape(16, 32)
    with pytest.raises(ValueError, match=r"space_to_depth 2 × 2\*\*3 = 16"):
        cfg.model_copy(update={"space_to_depth": 2}).check_spatial_shape(24, 24)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"attention_levels": (4,)}, r"attention_levels \(4,\) names level\(s\) \[4\] but channel_mult \(1, 2\) has levels 0..1"),
        ({"temporal_levels": (0, 7)}, r"temporal_levels .* names level\(s\) \[7\]"),
        ({"temporal_kernel": 4}, "temporal_kernel must be odd"),
        ({"channel_mult": (1, 0)}, r"channel_mult entries must be >= 1"),
        ({"dropout": 1.0}, "dropout"),
        ({"geometry": "sphere"}, "geometry"),
        ({"base_chanels": 8}, "base_chanels"),
        ({"temporal_levels": ()}, "mixes nothing"),
        ({"seam_transform": True, "geometry": "patch"}, "seam_transform needs cube geometry"),
        ({"seam_transform_edges": "all"}, "seam_transform_edges 'all' needs seam_transform: true"),
        ({"full_res_channels": 4}, r"full_res_channels 4 needs a space-to-depth stem \(space_to_depth > 1\)"),
    ],
)
def test_invalid_configs_are_refused_with_a_message(fields, message):
    with pytest.raises(ValidationError, match=message):
        NetworkConfig.model_validate({"channel_mult": (1, 2), **fields})


def test_preset_lookup_and_validated_overrides():
    assert set(PRESETS) == {"tiny", "demo", "paper"}
    assert network_preset("tiny", activation_checkpointing=True).activation_checkpointing
    with pytest.raises(ValueError, match=r"unknown network preset 'huge'; choose one of \['demo', 'paper', 'tiny'\]"):
        network_preset("huge")
    with pytest.raises(ValidationError, match="names level"):
        network_preset("tiny", attention_levels=(9,))
