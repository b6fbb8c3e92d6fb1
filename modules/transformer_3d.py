"""Spatial transformer of the denoising UNet: per-frame self-attention, reference attention, audio attention."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


@dataclass
class FrameConditions:
    """Everything the spatial transformer blocks of one denoising-UNet forward attend to.

    The first `num_unconditional` samples of the batch are the unconditional branch of
    classifier-free guidance: their reference bank and audio tokens are zero, so
    `audio_tokens` and `reference_kv` cover only the samples after them. A missing
    condition (`None`) is a zero condition for every sample.
    """

    num_frames: int
    audio_tokens: torch.Tensor | None = None  # (conditional_batch * frames, tokens, cross_attention_dim)
    reference_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # block path -> (key, value)
    reference_attention_weight: float = 1.0
    audio_attention_weight: float = 1.0
    num_unconditional: int = 0
    reference_keep: torch.Tensor | None = None  # (conditional_batch * frames,)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads * head_dim) -> (batch, heads, tokens, head_dim)."""
    batch, tokens, _ = x.shape
    return x.view(batch, tokens, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head_dim) -> (batch, tokens, heads * head_dim)."""
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def zero_context_output(attn: Attention, like: torch.Tensor) -> torch.Tensor:
    """What `attn` returns for a zero context: with bias-free key/value projections the
    values are all zero, so only the output projection's bias is left."""
    return attn.to_out[0].bias.to(like.dtype).expand_as(like)


class VExpressTransformerBlock(nn.Module):
    """SD1.5 transformer block with a reference-attention layer (`attn1_5`) between the
    self-attention and the (audio) cross-attention. Tokens: (batch * frames, h * w, dim)."""

    def __init__(self, dim: int, num_attention_heads: int, cross_attention_dim: int):
        super().__init__()
        head_dim = dim // num_attention_heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=num_attention_heads, dim_head=head_dim)
        self.norm1_5 = nn.LayerNorm(dim)
        self.attn1_5 = Attention(dim, heads=num_attention_heads, dim_head=head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, heads=num_attention_heads, dim_head=head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.reference_path = None  # set by the UNet: the module path of this block, the key of its reference bank

    def project_reference(self, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference-bank tokens (batch, tokens, dim) -> key, value (batch, heads, tokens, head_dim)."""
        heads = self.attn1_5.heads
        return split_heads(self.attn1_5.to_k(bank), heads), split_heads(self.attn1_5.to_v(bank), heads)

    def forward(self, hidden_states: torch.Tensor, conditions: FrameConditions) -> torch.Tensor:
        hidden_states = hidden_states + self.attn1(self.norm1(hidden_states))

        reference_kv = None if conditions.reference_kv is None else conditions.reference_kv[self.reference_path]
        hidden_states = hidden_states + conditions.reference_attention_weight * self._conditioned(
            self.attn1_5, self.norm1_5(hidden_states), reference_kv, conditions, self._reference_attention
        )
        hidden_states = hidden_states + conditions.audio_attention_weight * self._conditioned(
            self.attn2, self.norm2(hidden_states), conditions.audio_tokens, conditions, self._audio_attention
        )
        return hidden_states + self.ff(self.norm3(hidden_states))

    @staticmethod
    def _conditioned(attn, queries, context, conditions, attend):
        """Attention output for every row; rows with a zero context take the bias shortcut."""
        if context is None:
            return zero_context_output(attn, queries)
        num_zero_rows = conditions.num_unconditional * conditions.num_frames
        if num_zero_rows == 0:
            return attend(queries, context, conditions)
        return torch.cat([zero_context_output(attn, queries[:num_zero_rows]), attend(queries[num_zero_rows:], context, conditions)])

    def _reference_attention(self, queries, reference_kv, conditions):
        # Every frame of a video attends to the same bank: treat the frames' queries as one
        # long sequence so the bank's keys/values are used as they are, with no per-frame copies.
        key, value = reference_kv
        num_frames = conditions.num_frames
        rows, tokens, dim = queries.shape
        query = split_heads(self.attn1_5.to_q(queries).reshape(rows // num_frames, num_frames * tokens, dim), self.attn1_5.heads)
        if key.shape[0] != query.shape[0]:  # several windows per call, one bank: a batch the fused kernels take (views)
            key, value = key.expand(query.shape[0], -1, -1, -1), value.expand(query.shape[0], -1, -1, -1)
        out = merge_heads(F.scaled_dot_product_attention(query, key, value)).reshape(rows, tokens, dim)
        if conditions.reference_keep is not None:  # a zero bank has zero values: only the output bias remains
            out = out * conditions.reference_keep[:, None, None].to(out.dtype)
        return self.attn1_5.to_out[0](out)

    def _audio_attention(self, queries, audio_tokens, conditions):
        return self.attn2(queries, encoder_hidden_states=audio_tokens)


class Transformer3DModel(nn.Module):
    """GroupNorm -> 1x1 conv in -> transformer blocks -> 1x1 conv out, plus the input.
    Frames are folded into the batch: (batch * frames, channels, h, w)."""

    def __init__(self, channels: int, num_attention_heads: int, cross_attention_dim: int, norm_num_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([VExpressTransformerBlock(channels, num_attention_heads, cross_attention_dim)])
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, conditions: FrameConditions) -> torch.Tensor:
        rows, channels, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.proj_in(self.norm(hidden_states))
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(rows, height * width, channels)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, conditions)
        hidden_states = hidden_states.reshape(rows, height, width, channels).permute(0, 3, 1, 2)
        return self.proj_out(hidden_states) + residual
