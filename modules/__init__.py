"""The V-Express networks. The ReferenceNet is diffusers' own `UNet2DConditionModel`."""

import logging

# diffusers imports bitsandbytes when installed (8-bit AdamW), whose CPU backend then warns about a 4-bit kernel
# this project never uses.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from diffusers import UNet2DConditionModel

from .audio_projection import AudioProjection
from .reference_net import ReferenceBankRecorder, compute_reference_bank, reference_net_from_config
from .unet_3d import UNet3DConditionModel
from .v_kps_guider import VKpsGuider

__all__ = [
    "AudioProjection",
    "ReferenceBankRecorder",
    "UNet2DConditionModel",
    "UNet3DConditionModel",
    "VKpsGuider",
    "compute_reference_bank",
    "reference_net_from_config",
]
