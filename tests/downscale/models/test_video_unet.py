"""VideoUNet: shapes in both geometries, seams, temporal mixing, noise conditioning, checkpointing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from downscale.models.blocks import ChannelLinear, TemporalConv
from downscale.models.config import network_preset
from downscale.models.cube_conv import CubeConv2d
from downscale.models.video_unet import VideoUNet

B, T, C_IN, C_OUT, N = 2, 3, 4, 2, 16


def randomized(net: VideoUNet) -> VideoUNet:
    """Give the near-zero-initialized last layers ordinary weights, as after training, so that every path
    of the network carries signal (the tests then probe the architecture, not the initialization)."""
    torch.manual_seed(123)
    for m in net.modules():
        if isinstance(m, (CubeConv2d, ChannelLinear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.normal_(m.bias, std=0.1)
        if isinstance(m, TemporalConv):
            nn.init.xavier_uniform_(m.weight)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.5)
    return net


@pytest.mark.parametrize("mixing", ["attention", "conv", "none"])
@pytest.mark.parametrize("noise", [False, True])
def test_shapes_in_cube_and_patch_geometry(mixing, noise):
    net = VideoUNet(network_preset("tiny", temporal_mixing=mixing), C_IN, C_OUT, noise_conditioning=noise)
    c_noise = torch.randn(B) if noise else None
    assert net(torch.randn(B, T, C_IN, 6, N, N), c_noise).shape == (B, T, C_OUT, 6, N, N)
    net.geometry = "patch"
    assert net(torch.randn(B, T, C_IN, 12, 20), c_noise).shape == (B, T, C_OUT, 12, 20)


def test_space_to_depth_stem_keeps_shapes():
    net = VideoUNet(network_preset("tiny", space_to_depth=2), C_IN, C_OUT)
    assert net(torch.randn(1, T, C_IN, 6, N, N)).shape == (1, T, C_OUT, 6, N, N)


def test_full_res_head_starts_at_zero_and_learns_from_there():
    torch.manual_seed(0)
    plain = VideoUNet(network_preset("tiny", space_to_depth=2), C_IN, C_OUT)
    torch.manual_seed(0)
    headed = VideoUNet(network_preset("tiny", space_to_depth=2, full_res_channels=3), C_IN, C_OUT)
    x = torch.randn(1, T, C_IN, 6, N, N)
    out = headed(x)
    torch.testing.assert_close(out, plain(x), rtol=0, atol=0)          # built alike, the head adds exactly 0
    out.square().sum().backward()
    assert headed.full_res_conv.weight.grad.abs().max() > 0            # ... and its weights get gradients


def test_full_res_head_adds_a_full_resolution_convolution_of_the_unfolded_output():
    net = randomized(VideoUNet(network_preset("tiny", space_to_depth=2, full_res_channels=3), C_IN, C_OUT))
    x = torch.randn(1, T, C_IN, 6, N, N)
    with torch.no_grad():
        net.full_res_conv.weight.zero_()
        net.full_res_conv.bias.zero_()
        folded = net(x)                                   # the head off: the unfolded output alone
        for o in range(C_OUT):                            # centre tap on output o's own channel (after the 3 features)
            net.full_res_conv.weight[o, 3 + o, 1, 1] = 1.0
        doubled = net(x)
        net.full_res_conv.weight[0, 3, 0, 1] = 0.5        # + half of output 0's neighbour one row up (halo at row 0)
        shifted = net(x)
    torch.testing.assert_close(doubled, 2 * folded)
    up = torch.cat([folded[..., :1, :], folded[..., :-1, :]], dim=-2)      # row i-1 (row 0: checked in the interior)
    torch.testing.assert_close(shifted[:, :, 0, :, 1:], (2 * folded + 0.5 * up)[:, :, 0, :, 1:])


def test_bad_inputs_are_refused_with_clear_messages():
    net = VideoUNet(network_preset("tiny"), C_IN, C_OUT)
    with pytest.raises(ValueError, match=r"cube size 18×18 is not divisible by 2\*\*2 = 4"):
        net(torch.randn(B, T, C_IN, 6, 18, 18))
    with pytest.raises(ValueError, match="built for 4 input channels, got 3"):
        net(torch.randn(B, T, 3, 6, N, N))
    with pytest.raises(ValueError, match=r"needs \(B, T, C, 6, H, W\)"):
        net(torch.randn(B, C_IN, 6, N, N))
    with pytest.raises(ValueError, match="no noise conditioning"):
        net(torch.randn(B, T, C_IN, 6, N, N), torch.randn(B))
    noisy = VideoUNet(network_preset("tiny"), C_IN, C_OUT, noise_conditioning=True)
    with pytest.raises(ValueError, match=r"needs c_noise of shape \(2,\), got None"):
        noisy(torch.randn(B, T, C_IN, 6, N, N))
    with pytest.raises(ValueError, match="geometry must be"):
        net.geometry = "sphere"


def test_tile_edge_perturbation_crosses_the_seam_unlike_a_tile_independent_forward():
    """Bump tile 0's E edge (which joins tile 1's W edge). In cube geometry tile 1 responds most right at
    the seam. The same weights run tile by tile (patch geometry, tiles folded into the batch) cannot
    respond at all: that is the seam-blind network this test would catch."""
    net = randomized(VideoUNet(network_preset("tiny"), C_IN, C_OUT)).double().eval()
    torch.manual_seed(0)
    x = torch.randn(1, T, C_IN, 6, N, N, dtype=torch.float64)
    bumped = x.clone()
    bumped[..., 0, :, N - 1] += 1.0
    with torch.no_grad():
        effect = (net(bumped) - net(x)).abs().amax(dim=(0, 1, 2))        # (6, N, N)
        net.geometry = "patch"

        def per_tile(v):
            return net(v.permute(3, 0, 1, 2, 4, 5).reshape(6, T, C_IN, N, N))   # tiles as batch
        blind = (per_tile(bumped) - per_tile(x)).abs().amax(dim=(1, 2))       # (6, N, N)
    seam = effect[1, :, :2].mean()
    far = effect[1, :, N // 2:].mean()
    assert seam > 3 * far > 0, (seam, far)                   # GroupNorm/attention reach far, but weakly
    assert effect[1].mean() > 2 * effect[3].mean()           # the neighbour feels more than the far side (tile 4)
    assert blind[1].max() == 0 and blind[0].max() > 0


@pytest.mark.parametrize("mixing", ["attention", "conv"])
def test_temporal_mixing_carries_information_between_frames(mixing):
    net = randomized(VideoUNet(network_preset("tiny", temporal_mixing=mixing), C_IN, C_OUT)).eval()
    x = torch.randn(1, T, C_IN, 6, N, N)
    bumped = x.clone()
    bumped[:, 0] += 1.0
    with torch.no_grad():
        assert (net(bumped) - net(x))[:, T - 1].abs().max() > 1e-3
    frozen = randomized(VideoUNet(network_preset("tiny", temporal_mixing="none"), C_IN, C_OUT)).eval()
    with torch.no_grad():
        assert torch.equal(frozen(bumped)[:, T - 1], frozen(x)[:, T - 1])   # frames independent without it


def test_temporal_attention_knows_frame_order():
    """Relative-position bias: reversing the clip does not just reverse the output."""
    net = randomized(VideoUNet(network_preset("tiny"), C_IN, C_OUT)).eval()
    for p in net.parameters():
        if p.ndim == 2 and p.shape[-1] == 2 * T - 1:           # the relative-position bias tables
            nn.init.normal_(p, std=1.0)
    x = torch.randn(1, T, C_IN, 6, N, N)
    with torch.no_grad():
        assert not torch.allclose(net(x.flip(1)), net(x).flip(1), atol=1e-4)


def test_noise_level_conditions_the_output():
    net = randomized(VideoUNet(network_preset("tiny"), C_IN, C_OUT, noise_conditioning=True)).eval()
    x = torch.randn(B, T, C_IN, 6, N, N)
    with torch.no_grad():
        a, b = net(x, torch.tensor([-1.0, -1.0])), net(x, torch.tensor([1.0, -1.0]))
    assert (a[0] - b[0]).abs().max() > 1e-3
    assert torch.equal(a[1], b[1])                             # each clip has its own σ


@pytest.mark.parametrize("geometry", ["cube", "patch"])
def test_activation_checkpointing_gives_identical_outputs_and_gradients(geometry):
    cfg = network_preset("tiny", dropout=0.2, geometry=geometry)
    torch.manual_seed(0)
    plain = VideoUNet(cfg, C_IN, C_OUT, noise_conditioning=True)
    ckpt = VideoUNet(cfg.model_copy(update={"activation_checkpointing": True}), C_IN, C_OUT, noise_conditioning=True)
    ckpt.load_state_dict(plain.state_dict())
    shape = (B, T, C_IN, 6, N, N) if geometry == "cube" else (B, T, C_IN, 12, 8)
    x, c_noise = torch.randn(shape), torch.randn(B)
    results = []
    for net in (plain, ckpt):
        torch.manual_seed(7)                                    # same dropout masks
        out = net(x, c_noise)
        out.square().mean().backward()
        results.append((out.detach(), {k: p.grad for k, p in net.named_parameters()}))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys()
    for name, grad in results[0][1].items():
        assert torch.equal(grad, results[1][1][name]), name
