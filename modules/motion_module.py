"""AnimateDiff v2 ("Vanilla") temporal module: attention across the frames at each spatial position."""

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import nn


class TemporalSelfAttention(Attention):
    """Self-attention over frames, (sequences, frames, dim), with a sinusoidal frame-position encoding
    (buffer `pos_encoder.pe`, persistent, so that the published files carry it) added to its input."""

    def __init__(self, dim: int, num_attention_heads: int, max_frames: int):
        super().__init__(dim, heads=num_attention_heads, dim_head=dim // num_attention_heads)
        self.pos_encoder = SinusoidalPositionalEmbedding(dim, max_seq_length=max_frames)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pos_encoder(hidden_states))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_attention_heads: int, num_attention_blocks: int, max_frames: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, num_attention_heads, max_frames) for _ in range(num_attention_blocks)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_attention_blocks)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            hidden_states = hidden_states + attention(norm(hidden_states))
        return hidden_states + self.ff(self.ff_norm(hidden_states))


class TemporalTransformer(nn.Module):
    def __init__(
        self, channels: int, num_attention_heads: int, num_transformer_blocks: int, num_attention_blocks: int,
        max_frames: int, norm_num_groups: int = 32,
    ):
        super().__init__()
        self.max_frames = max_frames
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, num_attention_heads, num_attention_blocks, max_frames) for _ in range(num_transformer_blocks)]
        )
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # a new module starts as the identity (AnimateDiff)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(batch * frames, channels, h, w) -> same shape."""
        if num_frames > self.max_frames:
            raise ValueError(f"{num_frames} frames in one UNet forward; the motion modules take at most {self.max_frames}")
        rows, channels, height, width = hidden_states.shape
        batch = rows // num_frames
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        # Every layer but the attention acts per token, so go to (batch * h * w, frames, channels) once.
        hidden_states = hidden_states.view(batch, num_frames, channels, height * width).permute(0, 3, 1, 2)
        hidden_states = self.proj_in(hidden_states.reshape(batch * height * width, num_frames, channels))
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.view(batch, height, width, num_frames, channels).permute(0, 3, 4, 1, 2)
        return hidden_states.reshape(rows, channels, height, width) + residual


class MotionModule(nn.Module):
    def __init__(
        self, channels: int, num_attention_heads: int = 8, num_transformer_block: int = 1,
        attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding_max_len: int = 32, norm_num_groups: int = 32, **unused_published_kwargs,
    ):
        super().__init__()
        if any(kind != "Temporal_Self" for kind in attention_block_types):
            raise ValueError(f"only Temporal_Self attention blocks are supported, got {list(attention_block_types)}")
        self.temporal_transformer = TemporalTransformer(
            channels, num_attention_heads, num_transformer_block, len(attention_block_types),
            temporal_position_encoding_max_len, norm_num_groups,
        )

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal_transformer(hidden_states, num_frames)
