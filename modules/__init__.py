"""The V-Express networks. The ReferenceNet is diffusers' own `UNet2DConditionModel`."""

from .quiet import quiet_library_logs

quiet_library_logs()  # before diffusers loads: no library log lines on the user's terminal

from diffusers import UNet2DConditionModel  # noqa: E402

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
