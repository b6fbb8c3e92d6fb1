"""Audio Projection: a perceiver resampler from 10 audio vectors to 5 audio tokens per video frame."""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .transformer_3d import merge_heads, split_heads


class PerceiverAttention(nn.Module):
    """The latents attend to [input; latents]. No biases; softmax in float32."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_kv = nn.Linear(dim, dim_head * heads * 2, bias=False)
        self.to_out = nn.Linear(dim_head * heads, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        query = split_heads(self.to_q(latents), self.heads)
        key, value = (split_heads(t, self.heads) for t in self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1))
        # Scaling both sides by dim_head ** -0.25 keeps fp16 logits in range.
        scale = self.dim_head ** -0.25
        weights = ((query * scale) @ (key * scale).transpose(-2, -1)).float().softmax(dim=-1).to(query.dtype)
        return self.to_out(merge_heads(weights @ value))


class AudioProjection(ModelMixin, ConfigMixin):
    """Audio vectors (n, max_seq_len, embedding_dim) -> audio tokens (n, num_queries, output_dim)."""

    @register_to_config
    def __init__(
        self,
        dim: int = 768,
        depth: int = 4,
        dim_head: int = 64,
        heads: int = 12,
        num_queries: int = 5,
        embedding_dim: int = 768,
        output_dim: int = 768,
        ff_mult: int = 4,
        max_seq_len: int = 10,
    ):
        super().__init__()
        self.pos_emb = nn.Embedding(max_seq_len, embedding_dim)
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([
                PerceiverAttention(dim, dim_head, heads),
                nn.Sequential(
                    nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(), nn.Linear(dim * ff_mult, dim, bias=False)
                ),
            ])
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)

    def forward(self, audio_vectors: torch.Tensor) -> torch.Tensor:
        x = audio_vectors + self.pos_emb.weight[: audio_vectors.shape[1]]
        x = self.proj_in(x)
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = latents + attention(x, latents)
            latents = latents + feed_forward(latents)
        return self.norm_out(self.proj_out(latents))
