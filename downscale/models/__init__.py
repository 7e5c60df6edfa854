"""Neural networks of the downscaler: cube-sphere convolutions, the video UNet, EDM diffusion parts.

Public API: :class:`NetworkConfig` / :func:`network_preset` (architecture), :class:`VideoUNet`,
:class:`EDMPrecond`, :func:`edm_loss`, :func:`edm_heun_sampler`, :class:`VideoDownscaler` and its
serializable :class:`DownscalerSpec`.
"""

from downscale.models.config import PRESETS, NetworkConfig, network_preset
from downscale.models.downscaler import DownscalerSpec, VideoDownscaler
from downscale.models.edm import EDMPrecond, edm_heun_sampler, edm_loss, edm_sigma_steps
from downscale.models.video_unet import VideoUNet

__all__ = [
    "PRESETS", "NetworkConfig", "network_preset", "DownscalerSpec", "VideoDownscaler", "EDMPrecond",
    "edm_heun_sampler", "edm_loss", "edm_sigma_steps", "VideoUNet",
]
