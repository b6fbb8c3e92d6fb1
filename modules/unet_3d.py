"""The V-Express denoising UNet: SD1.5's layout applied per frame, with reference and audio
attention in every spatial transformer, AnimateDiff motion modules, and V-Kps features."""

import inspect
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .transformer_3d import FrameConditions, VExpressTransformerBlock
from .unet_3d_blocks import UNetBlock3D, UNetMidBlock3DCrossAttn

_BLOCKS_2D_TO_3D = {
    "CrossAttnDownBlock2D": "CrossAttnDownBlock3D",
    "DownBlock2D": "DownBlock3D",
    "CrossAttnUpBlock2D": "CrossAttnUpBlock3D",
    "UpBlock2D": "UpBlock3D",
}


class UNet3DConditionModel(ModelMixin, ConfigMixin):
    """Video latents (batch, 4, frames, h, w) -> v-prediction of the same shape."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types: tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 768,
        attention_head_dim: int = 8,  # SD1.5's name for the number of heads
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        center_input_sample: bool = False,
        use_motion_module: bool = True,
        motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8),
        motion_module_mid_block: bool = True,
        motion_module_decoder_only: bool = False,
        motion_module_type: str = "Vanilla",
        motion_module_kwargs: dict | None = None,
        use_inflated_groupnorm: bool = True,
        unet_use_cross_frame_attention: bool = False,
        unet_use_temporal_attention: bool = False,
    ):
        super().__init__()
        unsupported = {
            "act_fn": act_fn != "silu", "mid_block_scale_factor": mid_block_scale_factor != 1,
            "center_input_sample": center_input_sample, "motion_module_type": motion_module_type != "Vanilla",
            "use_inflated_groupnorm": not use_inflated_groupnorm,
            "unet_use_cross_frame_attention": bool(unet_use_cross_frame_attention),
            "unet_use_temporal_attention": bool(unet_use_temporal_attention),
        }
        if any(unsupported.values()):
            raise ValueError(f"unsupported UNet3DConditionModel settings: {[k for k, bad in unsupported.items() if bad]}")
        heads, groups = attention_head_dim, norm_num_groups
        temb_channels = block_out_channels[0] * 4
        motion_kwargs = dict(motion_module_kwargs or {})

        def motion(resolution, is_encoder):
            wanted = use_motion_module and resolution in motion_module_resolutions
            return motion_kwargs if wanted and not (is_encoder and motion_module_decoder_only) else None

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], temb_channels)

        self.down_blocks = nn.ModuleList()
        for i, block_type in enumerate(down_block_types):
            self.down_blocks.append(UNetBlock3D(
                "down", block_out_channels[max(i - 1, 0)], block_out_channels[i], temb_channels, layers_per_block,
                has_cross_attention=block_type.startswith("CrossAttn"), has_sampler=i < len(block_out_channels) - 1,
                num_attention_heads=heads, cross_attention_dim=cross_attention_dim,
                motion_module_kwargs=motion(2**i, True), groups=groups, eps=norm_eps, downsample_padding=downsample_padding,
            ))
        self.mid_block = UNetMidBlock3DCrossAttn(
            block_out_channels[-1], temb_channels, heads, cross_attention_dim,
            motion_kwargs if use_motion_module and motion_module_mid_block else None, groups, norm_eps,
        )
        reversed_channels = list(reversed(block_out_channels))
        self.up_blocks = nn.ModuleList()
        for i, block_type in enumerate(up_block_types):
            self.up_blocks.append(UNetBlock3D(
                "up", reversed_channels[min(i + 1, len(block_out_channels) - 1)], reversed_channels[i], temb_channels,
                layers_per_block + 1, has_cross_attention=block_type.startswith("CrossAttn"),
                has_sampler=i < len(block_out_channels) - 1, num_attention_heads=heads,
                cross_attention_dim=cross_attention_dim, motion_module_kwargs=motion(2 ** (len(up_block_types) - 1 - i), False),
                groups=groups, eps=norm_eps, prev_output_channel=reversed_channels[max(i - 1, 0)],
            ))
        self.conv_norm_out = nn.GroupNorm(groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

        for path, module in self.named_modules():
            if isinstance(module, VExpressTransformerBlock):
                module.reference_path = path

    @classmethod
    def from_config_2d(cls, config_2d: dict, unet_additional_kwargs: dict | None = None) -> "UNet3DConditionModel":
        """Build from an SD1.5-style 2D UNet config (a dict, or the path of its config.json) plus the
        published `unet_additional_kwargs` (motion-module settings)."""
        if not isinstance(config_2d, dict):
            config_2d = cls.load_config(str(config_2d))
        accepted = inspect.signature(cls.__init__).parameters
        config = {key: value for key, value in config_2d.items() if key in accepted}
        config["down_block_types"] = [_BLOCKS_2D_TO_3D.get(t, t) for t in config.get("down_block_types", ())] or None
        config["up_block_types"] = [_BLOCKS_2D_TO_3D.get(t, t) for t in config.get("up_block_types", ())] or None
        config = {key: value for key, value in config.items() if value is not None}
        config.update(dict(unet_additional_kwargs or {}))
        return cls(**config)

    @torch.no_grad()
    def zero_audio_and_motion_outputs(self) -> None:
        """Zero the motion modules' `proj_out` and the audio attention's `to_out`: both paths become identities,
        the network as stage 1 trains it (the published code does this at the start of every training stage)."""
        for name, param in self.named_parameters():
            if "temporal_transformer.proj_out" in name or "attn2.to_out" in name:
                param.zero_()

    @property
    def reference_block_paths(self) -> list[str]:
        """Module paths of the spatial transformer blocks, the keys of the reference bank."""
        return [path for path, module in self.named_modules() if isinstance(module, VExpressTransformerBlock)]

    def project_reference_bank(self, reference_bank: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Reference bank {block path: (batch, tokens, channels)} -> that block's reference-attention
        keys and values. Done once per video: every frame and every denoising step reuses them."""
        missing = sorted(set(self.reference_block_paths) - set(reference_bank))
        if missing:
            raise ValueError(f"the reference bank has no tensor for {len(missing)} transformer blocks, e.g. {missing[:3]}")
        return {path: self.get_submodule(path).project_reference(reference_bank[path]) for path in self.reference_block_paths}

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        audio_tokens: torch.Tensor | None = None,
        kps_features: torch.Tensor | None = None,
        reference_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        reference_attention_weight: float = 1.0,
        audio_attention_weight: float = 1.0,
        num_unconditional: int = 0,
        reference_keep: torch.Tensor | None = None,
        deep_cache: "DeepFeatureCache | None" = None,
    ) -> torch.Tensor:
        """
        sample: (batch, 4, frames, h, w) noisy latents. timestep: scalar or (batch,).
        audio_tokens: (conditional_batch * frames, tokens, cross_attention_dim), rows in (sample, frame) order.
        kps_features: (conditional_batch, 320, frames, h, w), added after `conv_in`.
        reference_kv: from `project_reference_bank`, batch conditional_batch.
        num_unconditional: the leading samples of the batch whose conditions are all zero
            (classifier-free guidance); the conditions above then cover only the samples after them.
        reference_keep: (conditional_batch * frames,) 1 to use the reference bank, 0 for a zero bank (training's dropout).
        deep_cache: with `reuse` False this forward stores the input of the last up block in it; with `reuse` True only
            the shallow branch runs (conv_in, the first down block's layers, the last up block) on the stored input.
        Returns (batch, 4, frames, h, w).
        """
        batch, _, num_frames, height, width = sample.shape
        conditions = FrameConditions(
            num_frames, audio_tokens, reference_kv, reference_attention_weight, audio_attention_weight, num_unconditional,
            reference_keep,
        )
        if audio_tokens is not None and audio_tokens.ndim == 4:
            conditions.audio_tokens = audio_tokens.flatten(0, 1)

        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype)).repeat_interleave(num_frames, dim=0)

        hidden_states = self.conv_in(fold_frames(sample))
        if kps_features is not None:
            zero_rows = num_unconditional * num_frames
            hidden_states = torch.cat([hidden_states[:zero_rows], hidden_states[zero_rows:] + fold_frames(kps_features)])

        skips = [hidden_states]
        if deep_cache is not None and deep_cache.reuse:
            hidden_states, outputs = self.down_blocks[0](hidden_states, temb, conditions, downsample=False)
            skips.extend(outputs)
            hidden_states, up_blocks = deep_cache.features, self.up_blocks[-1:]
        else:
            for block in self.down_blocks:
                hidden_states, outputs = block(hidden_states, temb, conditions)
                skips.extend(outputs)
            hidden_states = self.mid_block(hidden_states, temb, conditions)
            up_blocks = self.up_blocks

        # Latent sizes that are not multiples of the total down-sampling factor need explicit up-sample sizes.
        forward_upsample_size = any(size % 2 ** (len(self.up_blocks) - 1) for size in (height, width))
        for block in up_blocks:
            if deep_cache is not None and not deep_cache.reuse and block is self.up_blocks[-1]:
                deep_cache.features = hidden_states
            block_skips = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            upsample_size = skips[-1].shape[2:] if forward_upsample_size and skips else None
            hidden_states = block(hidden_states, temb, conditions, block_skips, upsample_size)

        hidden_states = self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))
        return unfold_frames(hidden_states, num_frames)


@dataclass
class DeepFeatureCache:
    """DeepCache (Ma et al., 2023) for one batch of windows: the deep features (the last up block's input,
    (batch * frames, block_out_channels[1], h, w)) of the last full forward, reused by shallow-only forwards."""

    features: torch.Tensor | None = None
    reuse: bool = False


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """(batch, channels, frames, h, w) -> (batch * frames, channels, h, w)."""
    batch, channels, frames, height, width = video.shape
    return video.transpose(1, 2).reshape(batch * frames, channels, height, width)


def unfold_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch * frames, channels, h, w) -> (batch, channels, frames, h, w)."""
    rows, channels, height, width = frames.shape
    return frames.reshape(rows // num_frames, num_frames, channels, height, width).transpose(1, 2)
