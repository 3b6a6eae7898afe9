"""Perceiver resampler: any number of modality tokens -> a fixed number of latents.

Learned latents attend to the (masked) tokens and to themselves, so a row with no valid token
still gives finite numbers; its latents are then zeroed and masked out. A learned modality
embedding is added so the language model can tell the modalities apart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medmm.fusion.xattn import FeedForward, head_size, masked_attention, merge_heads, split_heads


class PerceiverAttention(nn.Module):
    """Latents (B, K, D) attend to [tokens; latents] with a key padding mask over the tokens."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int | None = None):
        super().__init__()
        self.heads = heads
        inner = heads * head_size(dim, heads, dim_head, where="perceiver resampler")
        self.norm_tokens = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.attn_probs = nn.Identity()  # (B, H, K, N + K) probabilities, for hooks

    def forward(self, tokens: Tensor, latents: Tensor, mask: Tensor) -> Tensor:
        x = self.norm_tokens(tokens)  # (B, N, D)
        lat = self.norm_latents(latents)  # (B, K, D)
        q = split_heads(self.to_q(lat), self.heads)  # (B, H, K, Dh)
        k, v = self.to_kv(torch.cat([x, lat], dim=1)).chunk(2, dim=-1)  # (B, N + K, inner) each
        key_mask = torch.cat([mask, mask.new_ones(lat.shape[:2])], dim=1)  # (B, N + K)
        out = masked_attention(q, split_heads(k, self.heads), split_heads(v, self.heads), key_mask, self.attn_probs)
        return self.to_out(merge_heads(out))  # (B, K, D)


class PerceiverResampler(nn.Module):
    """tokens (B, N, dim_in) and mask (B, N) -> latents (B, K, dim_out) and latent_mask (B, K)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        num_latents: int = 32,
        depth: int = 2,
        heads: int = 8,
        dim_head: int | None = None,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.num_latents = num_latents
        self.proj_in = nn.Linear(dim_in, dim_out)
        self.latents = nn.Parameter(torch.randn(num_latents, dim_out) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim_out, heads, dim_head), FeedForward(dim_out, ff_mult)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim_out)
        self.modality_embedding = nn.Parameter(torch.randn(dim_out) * 0.02)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Resample; rows with no valid token give zero latents and latent_mask False."""
        batch = tokens.shape[0]
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        mask = mask.to(device=tokens.device, dtype=torch.bool)  # (B, N)
        dtype = self.proj_in.weight.dtype
        zero = torch.zeros((), dtype=dtype, device=tokens.device)
        # Masked tokens are zeroed first so a NaN there cannot reach the latents through 0 * NaN.
        x = self.proj_in(torch.where(mask[..., None], tokens.to(dtype), zero))  # (B, N, D)
        lat = self.latents[None].expand(batch, -1, -1)  # (B, K, D)
        for attn, ff in self.layers:
            lat = lat + attn(x, lat, mask)  # (B, K, D)
            lat = lat + ff(lat)  # (B, K, D)
        lat = self.norm(lat) + self.modality_embedding  # (B, K, D)
        has_tokens = mask.any(dim=1)  # (B,)
        lat = torch.where(has_tokens[:, None, None], lat, zero)  # (B, K, D)
        latent_mask = has_tokens[:, None].expand(batch, self.num_latents).contiguous()  # (B, K)
        return lat, latent_mask
