"""V-Kps Guider: encodes keypoint images into features added to the denoising UNet's input."""

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .unet_3d import fold_frames, unfold_frames


class VKpsGuider(ModelMixin, ConfigMixin):
    """Keypoint images (batch, 3, frames, H, W) in [0, 1] -> (batch, conditioning_embedding_channels, frames, H/8, W/8)."""

    @register_to_config
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            self.blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # a new guider adds nothing until trained
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, kps_images: torch.Tensor) -> torch.Tensor:
        num_frames = kps_images.shape[2]
        features = F.silu(self.conv_in(fold_frames(kps_images)))
        for block in self.blocks:
            features = F.silu(block(features))
        return unfold_frames(self.conv_out(features), num_frames)
