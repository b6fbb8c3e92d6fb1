"""Down, mid and up blocks of the denoising UNet. Frames are folded into the batch,
(batch * frames, channels, h, w); only the motion modules look across frames."""

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .motion_module import MotionModule
from .transformer_3d import FrameConditions, Transformer3DModel


def _resnet(in_channels, out_channels, temb_channels, groups, eps):
    return ResnetBlock2D(in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels, groups=groups, eps=eps)


def _motion_modules(count, channels, motion_module_kwargs, groups):
    if motion_module_kwargs is None:
        return None
    return nn.ModuleList([MotionModule(channels, norm_num_groups=groups, **motion_module_kwargs) for _ in range(count)])


class UNetBlock3D(nn.Module):
    """One down or up block: `num_layers` x (resnet [-> spatial transformer] [-> motion module]),
    then an optional down/up sampler. Up blocks first concatenate a skip connection to each resnet's input."""

    gradient_checkpointing = False

    def __init__(
        self, kind: str, in_channels: int, out_channels: int, temb_channels: int, num_layers: int,
        has_cross_attention: bool, has_sampler: bool, num_attention_heads: int, cross_attention_dim: int,
        motion_module_kwargs: dict | None, groups: int, eps: float, prev_output_channel: int = 0,
        downsample_padding: int = 1,
    ):
        super().__init__()
        self.is_up = kind == "up"
        resnets = []
        for i in range(num_layers):
            if self.is_up:
                skip_channels = in_channels if i == num_layers - 1 else out_channels
                resnet_in = (prev_output_channel if i == 0 else out_channels) + skip_channels
            else:
                resnet_in = in_channels if i == 0 else out_channels
            resnets.append(_resnet(resnet_in, out_channels, temb_channels, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = (
            nn.ModuleList([Transformer3DModel(out_channels, num_attention_heads, cross_attention_dim, groups) for _ in range(num_layers)])
            if has_cross_attention else None
        )
        self.motion_modules = _motion_modules(num_layers, out_channels, motion_module_kwargs, groups)
        if has_sampler and self.is_up:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        elif has_sampler:
            self.downsamplers = nn.ModuleList(
                [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op")]
            )

    def _layer(self, i, hidden_states, temb, conditions):
        hidden_states = self.resnets[i](hidden_states, temb)
        if self.attentions is not None:
            hidden_states = self.attentions[i](hidden_states, conditions)
        if self.motion_modules is not None:
            hidden_states = self.motion_modules[i](hidden_states, conditions.num_frames)
        return hidden_states

    def _run_layer(self, i, hidden_states, temb, conditions):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(self._layer, i, hidden_states, temb, conditions)
        return self._layer(i, hidden_states, temb, conditions)

    def forward(self, hidden_states, temb, conditions: FrameConditions, skips=None, upsample_size=None, downsample=True):
        """Down: returns (hidden_states, outputs for the skip connections); `downsample` False stops before the
        down-sampler. Up: pops its skips from the end of `skips`."""
        outputs = []
        for i in range(len(self.resnets)):
            if self.is_up:
                hidden_states = torch.cat([hidden_states, skips.pop()], dim=1)
            hidden_states = self._run_layer(i, hidden_states, temb, conditions)
            outputs.append(hidden_states)
        if self.is_up:
            if hasattr(self, "upsamplers"):
                hidden_states = self.upsamplers[0](hidden_states, upsample_size)
            return hidden_states
        if hasattr(self, "downsamplers") and downsample:
            hidden_states = self.downsamplers[0](hidden_states)
            outputs.append(hidden_states)
        return hidden_states, outputs


class UNetMidBlock3DCrossAttn(nn.Module):
    """resnet -> (spatial transformer -> motion module -> resnet) x num_layers."""

    gradient_checkpointing = False

    def __init__(
        self, channels: int, temb_channels: int, num_attention_heads: int, cross_attention_dim: int,
        motion_module_kwargs: dict | None, groups: int, eps: float, num_layers: int = 1,
    ):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(channels, channels, temb_channels, groups, eps) for _ in range(num_layers + 1)])
        self.attentions = nn.ModuleList(
            [Transformer3DModel(channels, num_attention_heads, cross_attention_dim, groups) for _ in range(num_layers)]
        )
        self.motion_modules = _motion_modules(num_layers, channels, motion_module_kwargs, groups)

    def _layer(self, i, hidden_states, temb, conditions):
        hidden_states = self.attentions[i](hidden_states, conditions)
        if self.motion_modules is not None:
            hidden_states = self.motion_modules[i](hidden_states, conditions.num_frames)
        return self.resnets[i + 1](hidden_states, temb)

    def forward(self, hidden_states, temb, conditions: FrameConditions):
        hidden_states = self.resnets[0](hidden_states, temb)
        for i in range(len(self.attentions)):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                hidden_states = self._gradient_checkpointing_func(self._layer, i, hidden_states, temb, conditions)
            else:
                hidden_states = self._layer(i, hidden_states, temb, conditions)
        return hidden_states
